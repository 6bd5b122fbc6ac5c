//! The adaptive freeze schedule: it fires bottom-up, one group per check, when the
//! similarity reaches the threshold (threshold 0: at every check); `freeze.start` and
//! `freeze.end` bound it; each traced similarity is the one recomputed independently from
//! the checkpoints; frozen parameters stay put bit for bit; the backward-work estimate
//! uses the steps actually taken; a run resumed mid-schedule ends bitwise equal to an
//! uninterrupted one; bad settings are refused naming the key.

mod common;

use common::{assert_refused, svcca};
use std::collections::HashMap;
use std::path::Path;
use svcca::config::{Config, FreezeSchedule};
use tch::{Device, Tensor};

/// The tiny run (a probe of 64) with the adaptive schedule at `threshold`, checking every
/// `check_every` steps.
fn tiny(threshold: f64, check_every: u64) -> Config {
    let mut c = common::tiny();
    c.analysis.probe_size = 64;
    c.freeze.schedule = FreezeSchedule::Adaptive;
    c.freeze.threshold = threshold;
    c.freeze.check_every = Some(check_every);
    c
}

fn ckpt(dir: &Path, step: u64) -> HashMap<String, Tensor> {
    let p = dir.join("checkpoints").join(format!("step-{step:08}.safetensors"));
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap()
}

/// `freeze_checks.csv` as (step, layer, similarity, decision).
fn checks(dir: &Path) -> Vec<(u64, String, Option<f64>, String)> {
    let text = read(dir, "freeze_checks.csv");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("step,fraction,layer,index,similarity,decision"));
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            (f[0].parse().unwrap(), f[2].to_string(), f[4].parse().ok(), f[5].to_string())
        })
        .collect()
}

#[test]
fn threshold_zero_freezes_one_group_per_check_from_the_bottom() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tiny(0.0, 5);
    let s = svcca::train::train(c.clone(), tmp.path()).unwrap();
    // Checks at 5, 10, ..., 25; one group each: c1, c2, bn1 with the pool above it, c3, c4.
    assert_eq!(
        read(tmp.path(), "freeze.csv"),
        "layer,index,step,fraction\nc1,0,5,0.1667\nc2,1,10,0.3333\nbn1,2,15,0.5000\np1,3,15,0.5000\nc3,4,20,0.6667\nc4,5,25,0.8333\n"
    );
    let trace = checks(tmp.path());
    let layers: Vec<(u64, &str, &str)> = trace.iter().map(|(s, l, _, d)| (*s, l.as_str(), d.as_str())).collect();
    assert_eq!(layers, [(5, "c1", "froze"), (10, "c2", "froze"), (15, "bn1", "froze"), (20, "c3", "froze"), (25, "c4", "froze")]);
    for (_, l, sim, _) in &trace {
        let sim = sim.unwrap_or_else(|| panic!("{l}: no similarity"));
        assert!((0.0..=1.0 + 1e-9).contains(&sim), "{l}: {sim}");
    }

    // Frozen parameters (and their momentum buffers) stay put bit for bit; the rest trains.
    let (c0, c10, c20, c30) = (ckpt(tmp.path(), 0), ckpt(tmp.path(), 10), ckpt(tmp.path(), 20), ckpt(tmp.path(), 30));
    let same = |a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, n: &str| a[n].equal(&b[n]);
    for n in ["model.c1.weight", "momentum.c1.weight", "model.c2.bias", "model.bn1.weight", "model.bn1.running_mean"] {
        assert!(!same(&c0, &c10, n), "{n} did not train before its freeze");
        assert!(same(&c20, &c30, n), "{n} changed after its freeze");
    }
    assert!(same(&c10, &c20, "model.c1.weight") && same(&c10, &c20, "model.c2.weight"));
    assert!(!same(&c10, &c20, "model.c3.weight") && same(&c20, &c30, "model.c3.weight"));
    for n in ["model.c4.weight", "model.c5.weight", "model.fc1.weight", "model.logits.weight"] {
        assert!(!same(&c20, &c30, n), "{n} stopped training");
    }

    // The backward-work estimate uses these steps: the frozen prefix's share of the
    // layers' costs, layer i saving (30 - step_i) of 30 steps.
    let data = svcca::data::Dataset::load(&c.data, Device::Cpu).unwrap();
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = svcca::model::build(&vs.root(), &c.model, data.shape, data.classes).unwrap();
    let costs: Vec<f64> = svcca::train::layer_costs(&vs, &net, &data).iter().map(|c| c.0).collect();
    let frozen_for = [25.0, 20.0, 15.0, 15.0, 10.0, 5.0];
    let expected = frozen_for.iter().zip(&costs).map(|(f, c)| c * f / 30.0).sum::<f64>() / costs.iter().sum::<f64>();
    assert!(expected > 0.0 && (s.backward_saved - expected).abs() < 1e-12, "{} vs {expected}", s.backward_saved);
    // A finished run asked again reports the same estimate (decisions read back).
    let again = svcca::train::train(c, tmp.path()).unwrap();
    assert_eq!(again.backward_saved, s.backward_saved);
}

#[test]
fn start_and_end_bound_the_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    // Freezing from step 15 on; no check from step 21 (0.7 of 30) on.
    let mut c = tiny(0.0, 5);
    (c.freeze.start, c.freeze.end) = (0.5, 0.7);
    svcca::train::train(c, tmp.path()).unwrap();
    let trace: Vec<(u64, String, String)> = checks(tmp.path()).into_iter().map(|(s, l, _, d)| (s, l, d)).collect();
    let expect = [(5, "c1", "early"), (10, "c1", "early"), (15, "c1", "froze"), (20, "c2", "froze")];
    assert_eq!(trace, expect.map(|(s, l, d)| (s, l.to_string(), d.to_string())));
    assert_eq!(read(tmp.path(), "freeze.csv"), "layer,index,step,fraction\nc1,0,15,0.5000\nc2,1,20,0.6667\n");
}

/// Trains a 60-step adaptive run (a check every 10 steps) with `threshold`, then checks
/// its trace against an independent recomputation: each similarity from the checkpoints,
/// each decision from the similarity, `freeze.csv` from the decisions. Returns the trace.
fn checked_run(threshold: f64) -> Vec<(u64, String, Option<f64>, String)> {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny(threshold, 10);
    c.train.steps = Some(60);
    svcca::train::train(c.clone(), tmp.path()).unwrap();
    let trace = checks(tmp.path());
    assert_eq!(trace.iter().map(|t| t.0).collect::<Vec<_>>(), [10, 20, 30, 40, 50]);

    // Each check's similarity, recomputed from the checkpoints: the checked layer at
    // that step against itself 10 steps before, on the probe of training images.
    let data = svcca::data::Dataset::load(&c.data, Device::Cpu).unwrap();
    let probe = svcca::activations::probe::Probe::of_training_set(&data, &c.analysis);
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = svcca::model::build(&vs.root(), &c.model, data.shape, data.classes).unwrap();
    let mut sgd = svcca::train::sgd::Sgd::new(&vs, 0.9, true, 5e-4);
    let mut acts = |step: u64, layer: &str| {
        let p = tmp.path().join("checkpoints").join(format!("step-{step:08}.safetensors"));
        svcca::train::checkpoint::load(&p, &vs, &mut sgd).unwrap();
        svcca::activations::record::record(&net, &probe, &[layer.to_string()]).unwrap().remove(0)
    };
    let names = ["c1", "c2", "bn1", "p1", "c3", "c4", "c5", "bn2", "p2", "fc1", "bn3", "fc2", "bn4", "logits"];
    let mut frozen = 0; // layers frozen so far, bottom-up
    let mut expect_csv = "layer,index,step,fraction\n".to_string();
    for (step, layer, sim, decision) in &trace {
        // The checked layer is the lowest one still training (pools go with the layer below).
        assert_eq!(layer, names[frozen], "threshold {threshold} step {step}");
        let (before, now) = (acts(step - 10, layer), acts(*step, layer));
        let expected = svcca::activations::pair(&before, &now, &c, ["before", "now"]);
        assert_eq!(*sim, expected, "threshold {threshold} step {step} layer {layer}");
        let passes = expected.unwrap() >= threshold;
        assert_eq!(decision, if passes { "froze" } else { "below" }, "threshold {threshold} step {step}");
        if passes {
            let upto = if names[frozen + 1].starts_with('p') { frozen + 2 } else { frozen + 1 };
            for (i, n) in names.iter().enumerate().take(upto).skip(frozen) {
                expect_csv += &format!("{n},{i},{step},{:.4}\n", *step as f64 / 60.0);
            }
            frozen = upto;
        }
    }
    assert_eq!(read(tmp.path(), "freeze.csv"), expect_csv, "threshold {threshold}");
    trace
}

#[test]
fn decisions_follow_the_similarity_to_the_previous_check() {
    // Thresholds whose decisions are known on any machine, whatever its float trajectory:
    // 1 freezes nothing (a layer that trains is never exactly as it was 10 steps before),
    // 0 freezes at every check, and the highest similarity of the first run freezes c1
    // exactly at that check: both runs are the same up to their first freeze.
    let never = checked_run(1.0);
    assert!(never.iter().all(|t| t.1 == "c1" && t.3 == "below"), "{never:?}");
    let always = checked_run(0.0);
    assert!(always.iter().all(|t| t.3 == "froze"), "{always:?}");
    let sims: Vec<f64> = never.iter().map(|t| t.2.unwrap()).collect();
    let highest = sims.iter().copied().fold(f64::MIN, f64::max);
    let mixed = checked_run(highest);
    let at = sims.iter().position(|&s| s == highest).unwrap();
    assert_eq!(mixed[..at], never[..at], "the runs differ before the first freeze");
    assert_eq!((mixed[at].1.as_str(), mixed[at].3.as_str()), ("c1", "froze"), "{mixed:?}");
}

#[test]
fn resumed_mid_schedule_equals_uninterrupted() {
    // Frozen batch norm keeping its statistics (the frozen prefix's output on the probe is
    // kept between checks), or still updating them (it is recomputed at every check); a
    // layer frozen at every check (threshold 0), or the same layer judged again and again
    // (threshold 1: a layer that trains never reaches similarity 1). Both hold on any
    // machine, so the resume is tested mid-schedule whatever the float trajectory.
    for bn in [true, false] {
        for (threshold, decision) in [(0.0, "froze"), (1.0, "below")] {
            let what = format!("bn {bn}, threshold {threshold:?}");
            let tmp = tempfile::tempdir().unwrap();
            let (straight, resumed) = (tmp.path().join("a"), tmp.path().join("b"));
            let config = || {
                let mut c = tiny(threshold, 5);
                c.freeze.freeze_bn_stats = bn;
                c.train.steps = Some(50);
                c
            };
            svcca::train::train(config(), &straight).unwrap();
            svcca::train::train(config(), &resumed).unwrap();
            // As if killed after the step-20 checkpoint: later checkpoints gone, but freeze.csv
            // and freeze_checks.csv as the killed run left them, with rows after step 20.
            for s in [30, 40, 50] {
                std::fs::remove_file(resumed.join("checkpoints").join(format!("step-{s:08}.safetensors"))).unwrap();
            }
            let trace = checks(&straight);
            assert_eq!(trace.len(), 9, "{what}: {trace:?}");
            assert!(trace.iter().all(|t| t.3 == decision), "{what}: {trace:?}");
            let s = svcca::train::train(config(), &resumed).unwrap();
            assert_eq!(s.resumed_from, Some(20));
            let (a, b) = (ckpt(&straight, 50), ckpt(&resumed, 50));
            assert_eq!(a.len(), b.len());
            for n in a.keys().filter(|n| *n != "meta.wall_seconds") {
                assert!(a[n].equal(&b[n]), "{what}: {n} differs after resume");
            }
            // Same decisions, same similarities to the last digit (the previous check's
            // activations were recomputed from the step-20 checkpoint).
            for f in ["freeze.csv", "freeze_checks.csv"] {
                assert_eq!(read(&straight, f), read(&resumed, f), "{what}: {f}");
            }
            if bn && decision == "froze" {
                // Without freeze.csv the decisions before the checkpoint are lost: refused.
                std::fs::remove_file(resumed.join("checkpoints").join("step-00000050.safetensors")).unwrap();
                std::fs::remove_file(resumed.join("freeze.csv")).unwrap();
                let e = svcca::train::train(config(), &resumed).unwrap_err();
                assert!(e.to_string().contains("freeze.csv"), "{e}");
                assert!(e.downcast_ref::<svcca::error::InputError>().is_some());
            }
        }
    }
}

#[test]
fn bad_settings_are_refused_naming_the_key() {
    let parse = |freeze: &str| Config::parse(&format!("[checkpoints]\nevery = 10\n\n[freeze]\n{freeze}\n"), "x.toml", &[]);
    for (body, key) in [
        ("schedule = \"adaptive\"\nthreshold = 1.5", "x.toml:6: freeze.threshold"),
        ("schedule = \"adaptive\"\nthreshold = -0.1", "freeze.threshold"),
        ("schedule = \"adaptive\"\ncheck_every = 0", "freeze.check_every"),
        ("schedule = \"adaptive\"\ncheck_every = 3", "freeze.check_every"),
        ("schedule = \"adaptive\"\nstart = 0.8\nend = 0.5", "freeze.start"),
        ("schedule = \"linear\"\ncheck_every = 5", "freeze.check_every"),
    ] {
        let e = parse(body).unwrap_err().to_string();
        assert!(e.contains(key), "{body}: {e}");
    }
    assert!(parse("schedule = \"adaptive\"\ncheck_every = 3").unwrap_err().to_string().contains("does not divide checkpoints.every (10)"));
    // check_every defaults to the checkpoint interval.
    let c = parse("schedule = \"adaptive\"").unwrap().resolve(1000);
    assert_eq!((c.freeze.check_every, c.freeze.threshold), (Some(10), 0.98));
    assert_eq!(parse("schedule = \"adaptive\"\ncheck_every = 5").unwrap().resolve(1000).freeze.check_every, Some(5));

    // Through the CLI: exit status 2, the key named, no run folder made.
    let tmp = tempfile::tempdir().unwrap();
    let mut bad = Config::default();
    bad.train.device = svcca::device::DeviceChoice::Cpu;
    bad.train.steps = Some(2);
    bad.freeze.schedule = FreezeSchedule::Adaptive;
    bad.freeze.threshold = 2.0;
    let cfg = common::write_config(tmp.path(), "bad.toml", &bad);
    let out = svcca(&["train", &cfg, "--out", tmp.path().join("run").to_str().unwrap()]);
    assert_refused(&out, &["freeze.threshold"]);
    assert!(!tmp.path().join("run").exists());
}

#[test]
fn ready_adaptive_config_parses() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/fashion_mnist_freeze_adaptive.toml");
    let c = Config::load(&path, &[]).unwrap();
    assert_eq!(c.freeze.schedule, svcca::config::FreezeSchedule::Adaptive);
}

#[test]
fn experiment_runs_the_adaptive_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny(0.0, 5);
    c.train.steps = Some(20);
    c.checkpoints.every = 20;
    let s = svcca::experiment::freeze(c, &[0], tmp.path()).unwrap();
    // c1 frozen at 5, c2 at 10, bn1 and p1 at 15: the estimate reflects those steps.
    assert!(s.backward_saved > 0.0, "{}", s.backward_saved);
    assert_eq!(read(&tmp.path().join("freeze/seed-0"), "freeze.csv").lines().count(), 5);
    assert!(!tmp.path().join("base/seed-0/freeze_checks.csv").exists());
    assert!(tmp.path().join("freeze/seed-0/freeze_checks.csv").exists());
}
