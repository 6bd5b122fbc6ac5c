//! `svcca data fetch cifar10`: download the official archive, check its MD5, unpack it.
//!
//! Nothing half-done is ever left under the final name: the download goes to a temporary
//! file, is checked, is unpacked into a temporary folder, is read back as CIFAR-10, and
//! only then is the folder renamed to `DIR/cifar-10-batches-bin`.

use super::cifar;
use crate::error::InputError;
use anyhow::Context;
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Environment variables that replace the URL and checksum (mirrors, tests).
pub const URL_ENV: &str = "SVCCA_CIFAR10_URL";
pub const MD5_ENV: &str = "SVCCA_CIFAR10_MD5";

/// Fetches CIFAR-10 into `dir/cifar-10-batches-bin` unless it is already there; returns
/// that folder.
pub fn cifar10(dir: &Path, url: &str, md5: &str) -> anyhow::Result<PathBuf> {
    let target = dir.join(cifar::FOLDER);
    if target.is_dir() && cifar::load(&target).is_ok() {
        tracing::info!("{} already holds CIFAR-10; nothing to do", target.display());
        return Ok(target);
    }
    if target.exists() {
        return Err(InputError::new(format!(
            "{}: exists but is not a complete CIFAR-10 folder; move it away and fetch again",
            target.display()
        ))
        .into());
    }
    std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let mut archive = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("{}: cannot write", dir.display()))?;
    let digest = download(url, archive.as_file_mut())?;
    if !digest.eq_ignore_ascii_case(md5) {
        return Err(InputError::new(format!(
            "{url}: the download's MD5 is {digest}, expected {md5} (corrupted or not the CIFAR-10 binary archive); nothing was kept"
        ))
        .into());
    }
    let unpacked = tempfile::Builder::new().prefix(".cifar10-unpack").tempdir_in(dir)?;
    let file = std::fs::File::open(archive.path())?;
    tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        .unpack(unpacked.path())
        .map_err(|e| InputError::new(format!("{url}: the archive does not unpack: {e}")))?;
    let inner = unpacked.path().join(cifar::FOLDER);
    cifar::load(&inner).map_err(|e| InputError::new(format!("{url}: the archive is not CIFAR-10: {e}")))?;
    std::fs::rename(&inner, &target).with_context(|| format!("cannot move the unpacked files to {}", target.display()))?;
    tracing::info!("CIFAR-10 is in {}", target.display());
    Ok(target)
}

/// Streams `url` into `out`, with a progress bar; returns the MD5 as lowercase hex.
fn download(url: &str, out: &mut std::fs::File) -> anyhow::Result<String> {
    tracing::info!("downloading {url}");
    let response = ureq::get(url).call().with_context(|| format!("cannot download {url}"))?;
    let total = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").expect("a valid template"),
    );
    let mut reader = response.into_body().into_reader();
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut writer = std::io::BufWriter::new(out);
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("download of {url} broke off"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        writer.write_all(&buf[..n])?;
        bar.inc(n as u64);
    }
    writer.flush()?;
    bar.finish_and_clear();
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
