//! `svcca data fetch cifar10`: download the official archive, check its MD5, unpack it.
//!
//! Nothing half-done is ever left under the final name: the download goes to a temporary
//! file, is checked, is unpacked into a temporary folder, is read back as CIFAR-10, and
//! only then is the folder renamed to `DIR/cifar-10-batches-bin`.
//!
//! Without internet access the archive can come from elsewhere: placed by hand at
//! `DIR/cifar-10-binary.tar.gz` (used instead of downloading), or named by
//! `--url file:///path/to/cifar-10-binary.tar.gz`. A download that cannot start says so.

use super::cifar;
use crate::error::InputError;
use anyhow::Context;
use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub(crate) const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
pub(crate) const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// Environment variables that replace the URL and checksum (mirrors, tests).
pub(crate) const URL_ENV: &str = "SVCCA_CIFAR10_URL";
pub(crate) const MD5_ENV: &str = "SVCCA_CIFAR10_MD5";
/// The archive's file name: where `DIR/` may hold it, placed by hand.
pub(crate) const ARCHIVE: &str = "cifar-10-binary.tar.gz";

/// Fetches CIFAR-10 into `dir/cifar-10-batches-bin` unless it is already there; returns
/// that folder.
pub(crate) fn cifar10(dir: &Path, url: &str, md5: &str) -> anyhow::Result<PathBuf> {
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
    let created = !dir.exists();
    std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let fetched = fetch_into(dir, &target, url, md5);
    if fetched.is_err() && created {
        // Only the folder this call made, and only if empty (a failed fetch leaves
        // nothing in it): remove_dir refuses a folder with anything inside.
        let _ = std::fs::remove_dir(dir);
    }
    fetched
}

/// Where the archive comes from.
enum Source {
    Http(String),
    File(PathBuf),
}

/// [`cifar10`]'s work once `dir` exists: the archive (placed in `dir`, a `file://` URL or
/// a download) copied to a temporary file while its MD5 is computed, checked, unpacked,
/// read back, and renamed into `target`.
fn fetch_into(dir: &Path, target: &Path, url: &str, md5: &str) -> anyhow::Result<PathBuf> {
    let placed = dir.join(ARCHIVE);
    let source = if placed.is_file() {
        tracing::info!("using the archive placed at {} (no download)", placed.display());
        Source::File(placed.clone())
    } else if let Some(path) = url.strip_prefix("file://") {
        Source::File(PathBuf::from(path))
    } else {
        Source::Http(url.to_string())
    };
    let named = match &source {
        Source::File(p) => p.display().to_string(),
        Source::Http(u) => u.clone(),
    };
    let mut archive = tempfile::NamedTempFile::new_in(dir).with_context(|| format!("{}: cannot write", dir.display()))?;
    let digest = match &source {
        Source::Http(u) => download(u, archive.as_file_mut(), &placed)?,
        Source::File(p) => {
            let file = std::fs::File::open(p).map_err(|e| InputError::new(format!("{}: cannot read the archive: {e}", p.display())))?;
            let len = file.metadata().map(|m| m.len()).ok();
            copy_hashing(file, len, archive.as_file_mut(), &named)?
        }
    };
    if !digest.eq_ignore_ascii_case(md5) {
        return Err(InputError::new(format!(
            "{named}: the archive's MD5 is {digest}, expected {md5} (corrupted or not the CIFAR-10 binary archive); nothing was kept"
        ))
        .into());
    }
    let url = named;
    let unpacked = tempfile::Builder::new().prefix(".cifar10-unpack").tempdir_in(dir)?;
    let file = std::fs::File::open(archive.path())?;
    tar::Archive::new(flate2::read::GzDecoder::new(std::io::BufReader::new(file)))
        .unpack(unpacked.path())
        .map_err(|e| InputError::new(format!("{url}: the archive does not unpack: {e}")))?;
    let inner = unpacked.path().join(cifar::FOLDER);
    cifar::load(&inner).map_err(|e| InputError::new(format!("{url}: the archive is not CIFAR-10: {e}")))?;
    std::fs::rename(&inner, target).with_context(|| format!("cannot move the unpacked files to {}", target.display()))?;
    tracing::info!("CIFAR-10 is in {}", target.display());
    Ok(target.to_path_buf())
}

/// Streams `url` into `out`; returns the MD5 as lowercase hex. A download that cannot
/// start (offline, a bad URL) says how to fetch without one: `placed`, or a file URL.
fn download(url: &str, out: &mut std::fs::File, placed: &Path) -> anyhow::Result<String> {
    tracing::info!("downloading {url}");
    let response = ureq::get(url).call().map_err(|e| {
        InputError::new(format!(
            "cannot download {url}: {e}. Without internet access, download {CIFAR10_URL} elsewhere and place it at {} \
             (then rerun this command), or give --url file:///path/to/{ARCHIVE}",
            placed.display()
        ))
    })?;
    let total = response.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    copy_hashing(response.into_body().into_reader(), total, out, url)
}

/// Copies `reader` (`total` bytes when known) into `out` with a progress bar; returns
/// the MD5 of what was copied, as lowercase hex. `what` names the source in errors.
fn copy_hashing(mut reader: impl Read, total: Option<u64>, out: &mut std::fs::File, what: &str) -> anyhow::Result<String> {
    let bar = match total {
        Some(n) => indicatif::ProgressBar::new(n),
        None => indicatif::ProgressBar::new_spinner(),
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}").expect("a valid template"),
    );
    let mut hasher = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut writer = std::io::BufWriter::new(out);
    loop {
        let n = reader.read(&mut buf).with_context(|| format!("reading {what} broke off"))?;
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
