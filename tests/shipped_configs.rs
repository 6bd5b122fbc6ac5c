//! Every config shipped in configs/ and experiments/ runs end to end, as a user would run
//! it, shortened only on the command line: a few steps, small splits and probe, and
//! generated data in the config's own dataset format (`svcca data synthetic`). Through
//! `svcca run`, then `svcca analyze` and `svcca train` on the finished folder, which must
//! read its config.toml back as what ran (the bug where an epochs config wrote both
//! train.steps and train.epochs, so that nothing could read the folder after training).

mod common;

use common::{stderr, stdout, svcca};
use std::path::{Path, PathBuf};
use svcca::config::{Config, DatasetName, FreezeSchedule};

const STEPS: u64 = 4;

/// The shipped configs whose file name starts with one of `prefixes` (relative to the
/// repository), sorted.
fn shipped(prefixes: &[&str]) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut out = Vec::new();
    for dir in [root.join("configs")].into_iter().chain(std::fs::read_dir(root.join("experiments")).unwrap().flatten().map(|e| e.path())) {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.extension().is_some_and(|x| x == "toml") && prefixes.iter().any(|pre| rel.starts_with(pre)) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The folder of generated files for `dataset` under `data` (written once).
fn data_for(dataset: DatasetName, data: &Path) -> Option<PathBuf> {
    let (name, arg) = match dataset {
        DatasetName::Synthetic => return None,
        DatasetName::Cifar10 => ("cifar10", "cifar10"),
        DatasetName::Mnist => ("mnist", "mnist"),
        DatasetName::FashionMnist => ("fashion-mnist", "fashion-mnist"),
    };
    let dir = data.join(name);
    if !dir.exists() {
        let out = svcca(&["data", "synthetic", arg, "--dir", dir.to_str().unwrap(), "--train", "80", "--test", "40"]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    Some(dir)
}

/// Runs `config` shortened, then reads its folder back through `analyze` and `train`.
fn run_shortened(config: &Path, tmp: &Path) {
    // experiments/*/config.toml share a file name: the folder is named by the path.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let name = config.strip_prefix(root).unwrap().with_extension("").display().to_string().replace('/', "-");
    let c = Config::load(config, &[]).unwrap_or_else(|e| panic!("{}: {e}", config.display()));
    let mut set: Vec<String> = vec![
        format!("train.steps={STEPS}"),
        "train.batch_size=16".into(),
        "train.eval_every=2".into(),
        "train.eval_batch_size=40".into(),
        "data.train_size=64".into(),
        "data.test_size=40".into(),
        "checkpoints.every=2".into(),
        "analysis.probe_size=24".into(),
        "train.device=\"cpu\"".into(),
    ];
    if let Some(dir) = data_for(c.data.dataset, &tmp.join("data")) {
        set.push(format!("data.path={}", dir.display()));
    }
    if c.data.validation > 0 {
        set.push("data.validation=16".into());
    }
    let mut args: Vec<String> = Vec::new();
    for s in &set {
        args.extend(["--set".into(), s.clone()]);
    }
    if c.freeze.schedule == FreezeSchedule::Adaptive && c.freeze.check_every.is_some() {
        // Its check interval must divide checkpoints.every: back to the default, which does.
        args.extend(["--unset".into(), "freeze.check_every".into()]);
    }
    let out_dir = tmp.join(&name);
    let mut run_dir = out_dir.clone();
    if c.sweep.is_some() {
        args.extend(["--variant".into(), "0".into()]);
    }
    let with = |cmd: &str| -> Vec<String> {
        let mut v = vec![cmd.to_string(), config.display().to_string(), "--out".into(), out_dir.display().to_string()];
        v.extend(args.iter().cloned());
        v
    };
    let call = |v: Vec<String>| svcca(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let out = call(with("run"));
    assert!(out.status.success(), "{name}: svcca run failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("{STEPS} steps")), "{name}: {}", stdout(&out));
    if c.sweep.is_some() {
        // A sweep's variant has a folder of its own inside the sweep's.
        run_dir = std::fs::read_dir(&out_dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("config.toml").exists())
            .unwrap_or_else(|| panic!("{name}: no variant folder in {}", out_dir.display()));
    }

    // The folder's config reads back as what ran: steps, not epochs.
    let text = std::fs::read_to_string(run_dir.join("config.toml")).unwrap();
    let kept = Config::parse(&text, "config.toml", &[]).unwrap_or_else(|e| panic!("{name}: the run's config.toml does not read back: {e}"));
    assert_eq!((kept.train.steps, kept.train.epochs), (Some(STEPS), None), "{name}");
    let similarity = std::fs::read_to_string(run_dir.join("analysis/similarity.csv")).unwrap();
    assert!(similarity.lines().count() > 1, "{name}: {similarity}");

    // A plain analyze of the folder, as a user would after training: already done.
    let out = svcca(&["analyze", run_dir.to_str().unwrap(), "--no-plots"]);
    assert!(out.status.success(), "{name}: svcca analyze failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains("(0 now,"), "{name}: {}", stdout(&out));
    // The same command line again: finished, nothing retrained.
    let out = call(with("train"));
    assert!(out.status.success(), "{name}: svcca train (resume) failed:\n{}", stderr(&out));
    assert!(stdout(&out).contains("already trained"), "{name}: {}", stdout(&out));
}

fn run_all(prefixes: &[&str]) {
    let configs = shipped(prefixes);
    assert!(!configs.is_empty(), "no config matches {prefixes:?}");
    let tmp = tempfile::tempdir().unwrap();
    for c in &configs {
        run_shortened(c, tmp.path());
    }
}

#[test]
fn cifar10_convnet_configs_run_end_to_end() {
    run_all(&["configs/cifar10_convnet"]);
}

#[test]
fn cifar10_resnet_configs_run_end_to_end() {
    run_all(&["configs/cifar10_resnet"]);
}

#[test]
fn fashion_mnist_configs_run_end_to_end() {
    run_all(&["configs/fashion_mnist"]);
}

#[test]
fn synthetic_configs_run_end_to_end() {
    run_all(&["configs/quickstart", "configs/synthetic"]);
}

#[test]
fn experiment_configs_run_end_to_end() {
    run_all(&["experiments/"]);
}

#[test]
fn every_shipped_config_is_covered_above() {
    let all = shipped(&["configs/", "experiments/"]);
    let covered = shipped(&[
        "configs/cifar10_convnet",
        "configs/cifar10_resnet",
        "configs/fashion_mnist",
        "configs/quickstart",
        "configs/synthetic",
        "experiments/",
    ]);
    assert_eq!(all, covered, "a config in configs/ or experiments/ that no test above runs");
    assert!(all.len() >= 18, "{all:?}");
}

#[test]
fn set_steps_on_an_epochs_config_trains_those_steps_and_the_folder_reads_back() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::write_file(
        tmp.path(),
        "epochs.toml",
        "[data]\ntrain_size = 64\ntest_size = 32\n[model]\nwidth = 4\nfc1 = 8\nfc2 = 8\n[train]\nbatch_size = 16\nepochs = 0.3\ndevice = \"cpu\"\n\
         [checkpoints]\nevery = 1\n[analysis]\nprobe_size = 16\n",
    );
    let out_dir = tmp.path().join("run");
    let out = svcca(&["run", &cfg, "--out", out_dir.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    // 0.3 epochs of 64 images in batches of 16: ceil(0.3 * 4) = 2 steps, recorded as such.
    let kept = Config::load(&out_dir.join("config.toml"), &[]).unwrap();
    assert_eq!((kept.train.steps, kept.train.epochs), (Some(2), None));
    assert!(svcca(&["analyze", out_dir.to_str().unwrap(), "--no-plots"]).status.success());

    let other = tmp.path().join("run3");
    let out = svcca(&["train", &cfg, "--out", other.to_str().unwrap(), "--set", "train.steps=3"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": 3 steps"), "{}", stdout(&out));
    // Removing the key instead: the default length (10 epochs of 4 steps).
    let unset = tmp.path().join("unset");
    let out = svcca(&["train", &cfg, "--out", unset.to_str().unwrap(), "--unset", "train.epochs", "--set", "checkpoints.every=100"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains(": 40 steps"), "{}", stdout(&out));
}

#[test]
fn a_folder_written_with_both_steps_and_epochs_is_read_as_its_steps() {
    // What svcca wrote before the fix: the derived steps beside the config's epochs.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = common::write_file(
        tmp.path(),
        "c.toml",
        "[data]\ntrain_size = 64\ntest_size = 32\n[model]\nwidth = 4\nfc1 = 8\nfc2 = 8\n[train]\nbatch_size = 16\nsteps = 2\ndevice = \"cpu\"\n\
         [checkpoints]\nevery = 1\n[analysis]\nprobe_size = 16\n",
    );
    let run = tmp.path().join("run");
    assert!(svcca(&["train", &cfg, "--out", run.to_str().unwrap()]).status.success());
    let path = run.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap().replace("steps = 2\n", "steps = 2\nepochs = 0.3\n");
    std::fs::write(&path, text).unwrap();
    assert!(Config::parse(&std::fs::read_to_string(&path).unwrap(), "x", &[]).is_err(), "the old file is not a plain config");
    let out = svcca(&["analyze", run.to_str().unwrap(), "--no-plots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = svcca(&["train", &cfg, "--out", run.to_str().unwrap()]);
    assert!(stdout(&out).contains("already trained"), "{}{}", stdout(&out), stderr(&out));
}
