//! Issue 30's hardening: inputs that were silently accepted, half-done or crashed are
//! refused up front (exit 2, nothing written), and the long commands that lacked them
//! stop on SIGUSR1/SIGTERM with their state saved (exit 75) and resume when rerun.

mod common;

use common::{assert_refused, snapshot, stderr, stdout, svcca, svcca_command, svcca_env, write_config, write_file, Tiny};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn wait_for(path: &Path, limit: Duration) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn usr1(child: &std::process::Child) {
    assert!(Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
}

fn ok(out: &Output) {
    assert!(out.status.success(), "status {:?}\nstdout: {}\nstderr: {}", out.status.code(), stdout(out), stderr(out));
}

fn steps(dir: &Path) -> Vec<u64> {
    common::steps_in(dir)
}

// Item 7: duplicates, and layers out of order.

#[test]
fn a_sweep_that_repeats_a_value_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let base = common::to_toml(&Tiny::default().config());
    let cfg = write_file(dir.path(), "seeds.toml", &format!("{base}\n[sweep]\ntrain.seed = [0, 0]\n"));
    assert_refused(&svcca(&["sweep", &cfg, "--list"]), &["sweep.train.seed", "0 is given twice"]);
    assert_refused(&svcca(&["sweep", &cfg, "--report", "--out", s(&dir.path().join("o"))]), &["sweep.train.seed", "twice"]);
    assert!(!dir.path().join("o").exists());
    // Zip: a row repeated is the same run; a value repeated beside different ones is not.
    let zip = write_file(
        dir.path(),
        "zip.toml",
        &format!("{base}\n[sweep]\nmode = \"zip\"\ntrain.seed = [0, 0, 1]\ntrain.lr = [0.1, 0.1, 0.1]\n"),
    );
    assert_refused(&svcca(&["sweep", &zip, "--list"]), &["variants 0", "and 1", "the same run"]);
    let fine =
        write_file(dir.path(), "fine.toml", &format!("{base}\n[sweep]\nmode = \"zip\"\ntrain.seed = [0, 0]\ntrain.lr = [0.1, 0.2]\n"));
    ok(&svcca(&["sweep", &fine, "--list"]));
    // Values that mean the same config: 1 and 1.0 epochs.
    let same =
        write_file(dir.path(), "same.toml", &format!("{}\n[sweep]\n\"train.epochs\" = [1, 1.0]\n", base.replace("steps = 30\n", "")));
    assert_refused(&svcca(&["sweep", &same, "--list"]), &["the same run"]);
}

#[test]
fn classes_named_twice_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = svcca(&["analyze", s(&dir.path().join("no-run")), "--classes", "1,1"]);
    assert_refused(&out, &["--classes", "class 1 is given twice"]);
    let out = svcca(&["analyze", s(&dir.path().join("no-run")), "--classes", "3, 03"]);
    assert_refused(&out, &["class 03 is given twice"]);
}

#[test]
fn analysis_layers_named_twice_or_out_of_order_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut c = Tiny::default().config();
    c.analysis.layers = Some(vec!["c1".into(), "c1".into()]);
    let cfg = write_config(dir.path(), "twice.toml", &c);
    assert_refused(&svcca(&["train", &cfg, "--out", s(&out)]), &["analysis.layers", "'c1' is named twice"]);
    c.analysis.layers = Some(vec!["in".into(), "fc1".into(), "c1".into()]);
    let cfg = write_config(dir.path(), "order.toml", &c);
    assert_refused(
        &svcca(&["train", &cfg, "--out", s(&out)]),
        &["analysis.layers", "'c1' is listed after 'fc1'", "[\"in\", \"c1\", \"fc1\"]"],
    );
    assert_refused(
        &svcca(&["experiment", "freeze", &cfg, "--seeds", "1", "--out", s(&out), "--set", "freeze.schedule=\"linear\""]),
        &["bottom-up"],
    );
    assert!(!out.exists(), "a refused config wrote {}", out.display());
}

// Item 9: signals.

/// A signal during a freeze experiment's run stops it with a checkpoint (exit 75); the
/// rerun resumes that run from it and finishes the experiment.
#[test]
fn a_signal_stops_a_freeze_experiment_which_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "frz.toml", &common::signal_run(20));
    let out = dir.path().join("exp");
    let child = svcca_command(&["experiment", "freeze", &cfg, "--seeds", "1", "--out", s(&out)])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let base = out.join("base/seed-0");
    wait_for(&base.join("checkpoints/step-00000050.safetensors"), Duration::from_secs(120));
    std::thread::sleep(Duration::from_millis(100));
    usr1(&child);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(75), "{}", stderr(&stopped));
    assert!(stderr(&stopped).contains("stopped by SIGUSR1"), "{}", stderr(&stopped));
    let at = *steps(&base.join("checkpoints")).last().unwrap();
    assert!(at > 50 && at < 300, "stopped at step {at}");
    assert!(!out.join("summary.json").exists());

    let rerun = svcca_env(&["experiment", "freeze", &cfg, "--seeds", "1", "--out", s(&out)], &[("SVCCA_LOG", "info")]);
    ok(&rerun);
    assert!(stderr(&rerun).contains(&format!("(step {at})")), "the base run did not resume from step {at}: {}", stderr(&rerun));
    assert!(out.join("summary.json").exists() && out.join("freeze/seed-0/metrics.csv").exists());
    let metrics = std::fs::read_to_string(base.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 1 + 300 / 20 + 3, "{metrics}");
}

/// A signal during compare-runs stops it between pairs of runs (exit 75), the pairs done
/// kept; the rerun computes the rest only.
#[test]
fn a_signal_stops_compare_runs_between_pairs_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    // Every layer, conv layers by the DFT, on 400 images: a pair takes a while.
    let mut c = Tiny { steps: 10, test_size: 400, probe_size: Some(400), ..Tiny::default() }.config();
    c.checkpoints.at_start = false;
    let cfg = write_config(dir.path(), "cr.toml", &c);
    let run = dir.path().join("run");
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    let out = dir.path().join("cr");
    let runs: Vec<&str> = vec![s(&run); 5];
    let mut args = vec!["compare-runs"];
    args.extend(&runs);
    args.extend(["--out", s(&out), "--no-plots"]);
    let child = svcca_command(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&out.join("pair-0-1.json"), Duration::from_secs(120));
    usr1(&child);
    let stopped = child.wait_with_output().unwrap();
    assert_eq!(stopped.status.code(), Some(75), "{}", stderr(&stopped));
    assert!(stderr(&stopped).contains("stopped by SIGUSR1"), "{}", stderr(&stopped));
    let done = std::fs::read_dir(&out).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with("pair-")).count();
    assert!((1..10).contains(&done), "{done} pairs done");
    assert!(!out.join("pairs.csv").exists());
    let kept = std::fs::read(out.join("pair-0-1.json")).unwrap();

    let rerun = svcca(&args);
    ok(&rerun);
    assert!(out.join("pairs.csv").exists() && out.join("pair-3-4.json").exists());
    assert_eq!(std::fs::read(out.join("pair-0-1.json")).unwrap(), kept, "a pair done before the signal was redone");
}

// Item 10.

#[test]
fn compare_runs_refuses_a_run_with_fewer_test_images_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let tiny = |test_size| Tiny { steps: 10, test_size, probe_size: Some(32), ..Tiny::default() }.config();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    ok(&svcca(&["train", &write_config(dir.path(), "a.toml", &tiny(128)), "--out", s(&a)]));
    ok(&svcca(&["train", &write_config(dir.path(), "b.toml", &tiny(64)), "--out", s(&b)]));
    let before = snapshot(&a);
    let out = svcca(&["compare-runs", s(&a), s(&b)]);
    assert_refused(&out, &[s(&b), "64 test images", "128", s(&a)]);
    assert_eq!(snapshot(&a), before, "the refused comparison wrote into {}", a.display());
    assert!(!a.join("analysis").exists());
    let o = dir.path().join("o");
    assert_refused(&svcca(&["compare-runs", s(&a), s(&b), "--out", s(&o)]), &["64 test images"]);
    assert!(!o.exists());
}

// Item 11.

#[test]
fn sizes_that_cannot_fit_the_memory_are_refused_up_front() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "t.toml", &Tiny::default().config());
    let out = dir.path().join("run");
    let r = svcca(&["train", &cfg, "--out", s(&out), "--set", "data.train_size=100000000"]);
    assert_refused(&r, &["would need about", "GiB", "the images", "data.train_size", "available"]);
    // An evaluation batch of 10000 images at width 4096: over 400 GiB, on any machine.
    let r = svcca(&[
        "run",
        &cfg,
        "--out",
        s(&out),
        "--set",
        "model.width=4096",
        "--set",
        "data.test_size=10000",
        "--set",
        "train.eval_batch_size=10000",
    ]);
    assert_refused(&r, &["would need about", "model.width", "available"]);
    assert!(!out.exists());
    // The estimate leaves sizes that train alone.
    let c = Tiny::default().config();
    let (images, network, acts) = svcca::train::memory_estimate(&c);
    assert!(images + network + acts < 64 << 20, "{images} {network} {acts}");
}

// Item 12.

#[test]
fn a_run_refused_for_its_analysis_settings_leaves_the_folder_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let c = Tiny { steps: 10, probe_size: Some(64), ..Tiny::default() }.config();
    let cfg = write_config(dir.path(), "t.toml", &{
        let mut c = c.clone();
        c.analysis.layers = Some(vec!["c3".into(), "fc1".into(), "logits".into()]);
        c.analysis.conv = svcca::similarity::ConvMethod::Avgpool;
        c
    });
    let run = dir.path().join("run");
    ok(&svcca(&["run", &cfg, "--out", s(&run)]));
    let before = snapshot(&run);
    let r = svcca(&["run", &cfg, "--out", s(&run), "--set", "analysis.keep=0.9"]);
    assert_refused(&r, &["settings.json", "keep", "0.9"]);
    assert_eq!(snapshot(&run), before, "the refused run changed the folder");
    let r = svcca(&["run", &cfg, "--out", s(&run), "--set", "analysis.layers=[\"fc1\", \"logits\"]"]);
    assert_refused(&r, &["settings.json", "layers"]);
    assert_eq!(snapshot(&run), before, "the refused run changed the folder");
    ok(&svcca(&["analyze", s(&run), "--no-plots"]));
}

// Item 15.

#[test]
fn set_refuses_numbers_out_of_range_and_whole_tables() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(dir.path(), "t.toml", &Tiny::default().config());
    let out = dir.path().join("run");
    let r = svcca(&["train", &cfg, "--out", s(&out), "--set", "train.steps=18446744073709551615"]);
    assert_refused(&r, &["--set train.steps=18446744073709551615", "out of range", "9223372036854775807"]);
    let r = svcca(&["train", &cfg, "--out", s(&out), "--set", "train={lr=0.1}"]);
    assert_refused(&r, &["--set train={lr=0.1}", "whole table", "train.KEY=VALUE"]);
    let r = svcca(&["train", &cfg, "--out", s(&out), "--set", "train.milestones={a=1}"]);
    assert_refused(&r, &["whole table"]);
    assert!(!out.exists());
}

/// The memory estimate's parameter counts are the networks' own.
#[test]
fn the_footprint_counts_the_parameters_the_networks_have() {
    use svcca::config::{Arch, ModelConfig};
    let mut configs = vec![(ModelConfig { width: Some(8), fc1: 32, fc2: 16, ..ModelConfig::default() }, [3, 32, 32])];
    configs.push((ModelConfig { width: Some(8), fc1: 32, fc2: 16, ..ModelConfig::default() }, [1, 28, 28]));
    for final_bn in [false, true] {
        configs.push((ModelConfig { arch: Arch::Resnet, width: Some(4), depth: 14, final_bn, ..ModelConfig::default() }, [3, 32, 32]));
    }
    configs.push((ModelConfig { arch: Arch::Linear, ..ModelConfig::default() }, [1, 28, 28]));
    for (m, shape) in configs {
        let vs = tch::nn::VarStore::new(tch::Device::Cpu);
        svcca::model::build(&vs.root(), &m, shape, 10).unwrap();
        let have: i64 = vs.variables().values().map(|t| t.numel() as i64).sum();
        assert_eq!(svcca::model::footprint(&m, shape, 10).parameters as i64, have, "{m:?} on {shape:?}");
    }
}
