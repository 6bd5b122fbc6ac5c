//! `svcca train` and `svcca data fetch` through the real binary: config errors with file,
//! line and key; a run killed mid-way and resumed ends bitwise equal to one that was not;
//! a run folder of another config is refused; the fetch checks its download.

mod common;

use common::{assert_refused, stderr, svcca, svcca_command, svcca_env, write_config, write_file as write, Tiny};
use md5::{Digest, Md5};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use svcca::config::{Config, DatasetName, Schedule};
use tch::Tensor;

/// The config the error messages below point into (file:line:key): kept as TOML.
const BASE: &str = r#"[data]
dataset = "synthetic"
train_size = 256
test_size = 64

[model]
width = 4
fc1 = 16
fc2 = 8

[train]
device = "cpu"
threads = 1
batch_size = 16
steps = 4
"#;

#[test]
fn config_errors_name_file_line_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run").display().to_string();
    let cfg = write(tmp.path(), "typo.toml", &format!("{BASE}learning_rate = 0.1\n"));
    let out = svcca(&["train", &cfg, "--out", &run]);
    assert_refused(&out, &["typo.toml:16", "train.learning_rate", "unknown field"]);
    assert!(!Path::new(&run).exists(), "nothing is created for a bad config");

    let cfg = write(tmp.path(), "neg.toml", &format!("{BASE}lr = -0.5\n"));
    assert_refused(&svcca(&["train", &cfg, "--out", &run]), &["neg.toml:16", "train.lr", "-0.5"]);

    let cfg = write(tmp.path(), "type.toml", &BASE.replace("steps = 4", "steps = \"ten\""));
    assert_refused(&svcca(&["train", &cfg, "--out", &run]), &["type.toml:15", "train.steps"]);

    let cfg = write(tmp.path(), "arch.toml", &BASE.replace("width = 4", "arch = \"vgg\""));
    assert_refused(&svcca(&["train", &cfg, "--out", &run]), &["arch.toml:7", "model.arch", "vgg"]);

    let cfg = write(tmp.path(), "depth.toml", &BASE.replace("width = 4", "arch = \"resnet\"\ndepth = 21"));
    assert_refused(&svcca(&["train", &cfg, "--out", &run]), &["depth.toml:8", "model.depth", "6n+2"]);

    let ok = write(tmp.path(), "ok.toml", BASE);
    assert_refused(&svcca(&["train", &ok, "--out", &run, "--set", "train.stepz=3"]), &["--set train.stepz=3", "stepz"]);
    assert_refused(&svcca(&["train", &ok, "--out", &run, "--set", "train.momentum=2"]), &["--set train.momentum=2", "[0, 1)"]);
    assert_refused(&svcca(&["train", &ok, "--out", &run, "--set", "oops"]), &["--set oops", "key=value"]);

    let missing =
        write(tmp.path(), "fm.toml", &BASE.replace("dataset = \"synthetic\"", "dataset = \"fashion-mnist\"\npath = \"/nonexistent/fm\""));
    assert_refused(&svcca(&["train", &missing, "--out", &run]), &["/nonexistent/fm", "dataset-fashion-mnist"]);

    let big = write(tmp.path(), "big.toml", &BASE.replace("batch_size = 16", "batch_size = 1000"));
    assert_refused(&svcca(&["train", &big, "--out", &run]), &["train.batch_size", "1000", "256"]);
}

/// 400 steps (augmented, with a warm-up): long enough to be killed mid-run.
fn resumable() -> Config {
    let mut c = Tiny { test_size: 64, crop_padding: 2, flip: true, steps: 400, eval_every: 25, every: 20, ..Tiny::default() }.config();
    c.train.warmup_steps = 10;
    c
}

/// BASE's run (16 images a batch, augmented, the default lr) for `steps`, evaluated and
/// checkpointed every 10.
fn base(steps: u64) -> Config {
    Tiny::augmented(steps).config()
}

fn checkpoint(dir: &Path, step: u64) -> PathBuf {
    dir.join("checkpoints").join(format!("step-{step:08}.safetensors"))
}

fn tensors(path: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(path).unwrap().into_iter().collect()
}

/// `metrics.csv` without its wall-clock column.
fn metrics(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().map(|l| l.rsplit_once(',').unwrap().0.to_string()).collect()
}

#[test]
fn killed_and_resumed_equals_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "resume.toml", &resumable());
    let straight = tmp.path().join("straight");
    let killed = tmp.path().join("killed");

    let out = svcca(&["train", &cfg, "--out", straight.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));

    // Kill the second run once its step-40 checkpoint is on disk: mid-run, between
    // checkpoints, with metrics rows past the checkpoint already written.
    let mut child =
        svcca_command(&["train", &cfg, "--out", killed.to_str().unwrap()]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let began = Instant::now();
    while !checkpoint(&killed, 40).exists() {
        assert!(began.elapsed() < Duration::from_secs(120), "no checkpoint appeared");
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
        std::thread::sleep(Duration::from_millis(2));
    }
    std::thread::sleep(Duration::from_millis(30));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!checkpoint(&killed, 400).exists(), "the run was not interrupted");

    let out = svcca(&["train", &cfg, "--out", killed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("resumed from step"), "{said}");

    let (a, b) = (tensors(&checkpoint(&straight, 400)), tensors(&checkpoint(&killed, 400)));
    let mut names: Vec<&String> = a.keys().collect();
    names.sort();
    assert_eq!(a.len(), b.len());
    assert!(names.iter().any(|n| n.starts_with("momentum.")) && names.iter().any(|n| n.ends_with("running_var")));
    for n in names.into_iter().filter(|n| *n != "meta.wall_seconds") {
        assert!(a[n].equal(&b[n]), "{n} differs after resume");
    }
    assert_eq!(metrics(&straight), metrics(&killed), "metrics.csv differs (or holds a step twice)");

    // A finished run is left alone; a different config is refused, nothing touched.
    let before = std::fs::read(killed.join("config.toml")).unwrap();
    let out = svcca(&["train", &cfg, "--out", killed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("already trained"));
    let out = svcca(&["train", &cfg, "--out", killed.to_str().unwrap(), "--set", "train.lr=0.1"]);
    assert_refused(&out, &["config.toml", "train.lr: 0.05 vs 0.1"]);
    assert_eq!(std::fs::read(killed.join("config.toml")).unwrap(), before);
    assert!(checkpoint(&killed, 400).exists());
}

/// Every tensor of a checkpoint holds only finite values.
fn all_finite(path: &Path) -> bool {
    tensors(path).values().all(|t| t.isfinite().all().int64_value(&[]) == 1)
}

#[test]
fn diverging_training_stops_without_saving_nan() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = base(40);
    c.train.schedule = Schedule::Constant;
    let cfg = write_config(tmp.path(), "diverge.toml", &c);
    let run = tmp.path().join("run");
    let out = svcca(&["train", &cfg, "--out", run.to_str().unwrap(), "--set", "train.lr=1e10"]);
    assert_refused(&out, &["training diverged", "(lr 1e10)", "Lower train.lr", "step-00000000.safetensors"]);
    let err = stderr(&out);
    let line = err.lines().find(|l| l.starts_with("error:")).unwrap();
    assert!(line.contains("NaN") || line.contains("infinite"), "{line}");
    assert!(!err.contains("panicked"), "{err}");
    // The first step the error names; nothing from it on is saved.
    let named = line.split(" step").nth(1).unwrap();
    let first: u64 =
        named.chars().skip_while(|c| !c.is_ascii_digit()).take_while(char::is_ascii_digit).collect::<String>().parse().unwrap();
    let saved: Vec<(u64, PathBuf)> = svcca::train::checkpoint::list(&run.join("checkpoints")).unwrap();
    assert!(saved.iter().any(|(s, _)| *s == 0), "the step-0 checkpoint is kept: {saved:?}");
    for (step, path) in &saved {
        assert!(*step < first, "{} is from the diverged steps ({line})", path.display());
        assert!(all_finite(path), "{} holds NaN or Inf", path.display());
    }
    let csv = std::fs::read_to_string(run.join("metrics.csv")).unwrap().to_lowercase();
    assert!(!csv.contains("nan") && !csv.contains("inf"), "metrics.csv: {csv}");
    for row in csv.lines().skip(1) {
        let step: u64 = row.split(',').next().unwrap().parse().unwrap();
        assert!(step < first, "row of step {step} after the divergence ({line})");
    }
}

/// Cuts `path` to half its length, as a full disk might have left it.
fn truncate_to_half(path: &Path) {
    let len = std::fs::metadata(path).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(len / 2).unwrap();
}

#[test]
fn a_damaged_newest_checkpoint_is_set_aside_and_the_run_resumes_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "damaged.toml", &base(30));
    let (straight, damaged) = (tmp.path().join("straight"), tmp.path().join("damaged"));
    for run in [&straight, &damaged] {
        let out = svcca(&["train", &cfg, "--out", run.to_str().unwrap()]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let newest = checkpoint(&damaged, 30);
    truncate_to_half(&newest);
    let cut = std::fs::read(&newest).unwrap();

    let out = svcca(&["train", &cfg, "--out", damaged.to_str().unwrap()]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let warning = err.lines().find(|l| l.contains("WARN")).unwrap_or_else(|| panic!("no warning: {err}"));
    assert!(warning.contains(&newest.display().to_string()) && warning.contains("damaged"), "{warning}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("resumed from step 20"), "{}", String::from_utf8_lossy(&out.stdout));
    // Set aside, not deleted.
    let aside = damaged.join("checkpoints").join("step-00000030.safetensors.damaged");
    assert_eq!(std::fs::read(&aside).unwrap(), cut);
    // Trained again from step 20, to the same end as the run that was never damaged.
    let (a, b) = (tensors(&checkpoint(&straight, 30)), tensors(&checkpoint(&damaged, 30)));
    assert_eq!(a.len(), b.len());
    for n in a.keys().filter(|n| *n != "meta.wall_seconds") {
        assert!(a[n].equal(&b[n]), "{n} differs after resuming before the damaged checkpoint");
    }
    assert_eq!(metrics(&straight), metrics(&damaged), "metrics.csv differs (or holds a step twice)");
    // Analyses list the checkpoints without the damaged file.
    let listed: Vec<u64> = svcca::train::checkpoint::list(&damaged.join("checkpoints")).unwrap().iter().map(|c| c.0).collect();
    assert_eq!(listed, [0, 10, 20, 30]);

    // When no checkpoint loads, the run is refused naming them (all set aside, none lost).
    for s in [0, 10, 20, 30] {
        truncate_to_half(&checkpoint(&damaged, s));
    }
    let out = svcca(&["train", &cfg, "--out", damaged.to_str().unwrap()]);
    assert_refused(&out, &["step-00000000.safetensors", "step-00000030.safetensors", "damaged"]);
    let names: Vec<String> =
        std::fs::read_dir(damaged.join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    for s in [0, 10, 20] {
        assert!(names.contains(&format!("step-{s:08}.safetensors.damaged")), "{names:?}");
    }
    assert!(
        names.contains(&"step-00000030.safetensors.damaged".to_string())
            && names.iter().filter(|n| n.starts_with("step-00000030")).count() == 2,
        "the earlier damaged copy is kept: {names:?}"
    );
}

/// Serves `body` to every request on a local port; returns the URL.
fn serve(body: Vec<u8>) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut request = [0u8; 4096];
            let _ = s.read(&mut request);
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nContent-Type: application/gzip\r\nConnection: close\r\n\r\n", body.len());
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(&body);
        }
    });
    format!("http://127.0.0.1:{port}/cifar-10-binary.tar.gz")
}

/// A CIFAR-10 archive in the official layout, with `n` records per file.
fn small_cifar_archive(n: usize) -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
    let files = [
        "data_batch_1.bin",
        "data_batch_2.bin",
        "data_batch_3.bin",
        "data_batch_4.bin",
        "data_batch_5.bin",
        "test_batch.bin",
        "batches.meta.txt",
    ];
    for (k, name) in files.iter().enumerate() {
        let bytes: Vec<u8> = if name.ends_with(".txt") {
            b"airplane\n".to_vec()
        } else {
            (0..n).flat_map(|i| std::iter::once(((i + k) % 10) as u8).chain((0..3072).map(move |j| ((i * 31 + j) % 256) as u8))).collect()
        };
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, format!("cifar-10-batches-bin/{name}"), &bytes[..]).unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

#[test]
fn fetch_checks_and_unpacks_then_trains() {
    let archive = small_cifar_archive(8);
    let md5: String = Md5::digest(&archive).iter().map(|b| format!("{b:02x}")).collect();
    let url = serve(archive);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let d = dir.to_str().unwrap();

    let out = svcca(&["data", "fetch", "cifar10", "--dir", d, "--url", &url, "--md5", "0123456789abcdef0123456789abcdef"]);
    assert_refused(&out, &["MD5", &md5, "0123456789abcdef0123456789abcdef"]);
    assert!(!dir.exists(), "a failed fetch leaves nothing behind, not even the folder it made");

    let out = svcca(&["data", "fetch", "cifar10", "--dir", d, "--url", &url, "--md5", &md5]);
    assert!(out.status.success(), "{}", stderr(&out));
    let folder = dir.join("cifar-10-batches-bin");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), folder.display().to_string());
    let (train, test) = svcca::data::cifar::load(&folder).unwrap();
    assert_eq!((train.len(), test.len()), (40, 8));
    let entries: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(entries, ["cifar-10-batches-bin"], "no temporary files are left");

    // Fetching again is a no-op (the environment variable route, and no download).
    let out = svcca_env(&["data", "fetch", "cifar10", "--dir", d], &[("SVCCA_CIFAR10_URL", "http://127.0.0.1:1/unreachable")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let mut c = Config::default();
    (c.data.dataset, c.data.path) = (DatasetName::Cifar10, Some(dir.clone()));
    (c.model.width, c.model.fc1, c.model.fc2) = (Some(4), 8, 8);
    c.train.device = svcca::device::DeviceChoice::Cpu;
    (c.train.batch_size, c.train.steps) = (8, Some(3));
    let cfg = write_config(tmp.path(), "cifar.toml", &c);
    let out = svcca(&["train", &cfg, "--out", tmp.path().join("run").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 steps"));
}

/// Offline: a download that cannot start is refused with the ways round it, and leaves
/// no folder behind; the archive then comes from a `file://` URL, or from the folder
/// where it was placed by hand.
#[test]
fn fetch_without_internet_says_how_and_takes_a_local_archive() {
    let archive = small_cifar_archive(4);
    let md5: String = Md5::digest(&archive).iter().map(|b| format!("{b:02x}")).collect();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("dl");
    let d = dir.to_str().unwrap();
    let unreachable = "http://127.0.0.1:1/cifar-10-binary.tar.gz";
    let out = svcca(&["data", "fetch", "cifar10", "--dir", d, "--url", unreachable, "--md5", &md5]);
    let placed = dir.join("cifar-10-binary.tar.gz");
    assert_refused(&out, &["cannot download", &placed.display().to_string(), "--url file://"]);
    assert!(!dir.exists(), "a failed fetch left the folder it made");

    let elsewhere = tmp.path().join("cifar-10-binary.tar.gz");
    std::fs::write(&elsewhere, &archive).unwrap();
    let url = format!("file://{}", elsewhere.display());
    let out = svcca(&["data", "fetch", "cifar10", "--dir", d, "--url", &url, "--md5", &md5]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(svcca::data::cifar::load(&dir.join("cifar-10-batches-bin")).is_ok());

    let by_hand = tmp.path().join("by-hand");
    std::fs::create_dir(&by_hand).unwrap();
    std::fs::write(by_hand.join("cifar-10-binary.tar.gz"), &archive).unwrap();
    let out = svcca_env(
        &["data", "fetch", "cifar10", "--dir", by_hand.to_str().unwrap(), "--url", unreachable, "--md5", &md5],
        &[("SVCCA_LOG", "info")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("using the archive placed at"), "{}", stderr(&out));
    assert!(by_hand.join("cifar-10-batches-bin").is_dir() && by_hand.join("cifar-10-binary.tar.gz").is_file(), "the user's archive stays");
}
