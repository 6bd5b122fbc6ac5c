//! The trainer through the library: a few steps lower the loss, and the run folder holds
//! what the README says.

mod common;

use common::Tiny;
use std::path::Path;
use svcca::config::{ActivationMode, Config};

fn tiny() -> Config {
    Tiny { train_size: 1024, test_size: 256, width: 16, fc1: 64, fc2: 32, steps: 80, eval_every: 20, every: 30, ..Tiny::default() }.config()
}

fn rows(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn a_few_steps_lower_the_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let summary = svcca::train::train(tiny(), tmp.path()).unwrap();
    let rows = rows(tmp.path());
    assert_eq!(rows[0].join(","), svcca::train::metrics::HEADER);
    let steps: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(steps, ["0", "20", "30", "40", "60", "80"]);
    let test_loss = |r: &Vec<String>| r[5].parse::<f64>().unwrap();
    let (first, last) = (test_loss(&rows[1]), test_loss(rows.last().unwrap()));
    assert!(last < 0.85 * first, "test loss {first} -> {last}");
    assert!(rows[3][5].is_empty(), "step 30 is a checkpoint-only row");
    assert!((summary.test_loss - last).abs() < 1e-4);
    let ckpts: Vec<String> = std::fs::read_dir(tmp.path().join("checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(ckpts, ["step-00000000.safetensors", "step-00000030.safetensors", "step-00000060.safetensors", "step-00000080.safetensors"]);
    // The resolved config is written out whole and reads back as the same config.
    let written = std::fs::read_to_string(tmp.path().join("config.toml")).unwrap();
    assert!(written.contains("momentum = 0.9") && written.contains("steps = 80"), "{written}");
    let back = Config::parse(&written, "config.toml", &[]).unwrap();
    assert_eq!(back, tiny().resolve(1024));
}

#[test]
fn keep_last_prunes_old_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny();
    c.checkpoints.keep_last = Some(1);
    c.analysis.mode = ActivationMode::Store;
    c.analysis.probe_size = 16;
    c.train.steps = Some(31);
    svcca::train::train(c, tmp.path()).unwrap();
    let names: Vec<String> =
        std::fs::read_dir(tmp.path().join("checkpoints")).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    assert_eq!(names, ["step-00000031.safetensors"]);
}

/// The loop copies nothing between host and device per step: one upload when an epoch
/// starts (its batch order and augmentation together) and one read of the train
/// statistics when they are due (every 10 steps, and at evaluations and checkpoints).
#[test]
fn the_loop_uploads_once_per_epoch_and_reads_only_the_due_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    // 256 images in batches of 16: 16 steps an epoch; 40 steps touch epochs 0, 1 and 2.
    let mut c = Tiny::augmented(40).config();
    c.train.eval_every = 20;
    c.checkpoints.every = 20;
    let s = svcca::train::train(c, tmp.path()).unwrap();
    assert_eq!(s.transfers, svcca::train::Transfers { steps: 40, uploads: 3, reads: 4 });
}
