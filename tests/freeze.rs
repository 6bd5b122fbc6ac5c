//! Freeze training: frozen layers stay put bit for bit (momentum and weight decay on),
//! layers above still train, the schedule fires at the right steps, frozen batch-norm
//! statistics stay put when configured, the backward pass does not reach the frozen
//! prefix, and a run resumed mid-schedule ends as an uninterrupted one. The adaptive
//! schedule: tests/freeze_adaptive.rs.

mod common;

use common::{assert_refused, svcca};
use std::collections::HashMap;
use std::path::Path;
use svcca::config::{Config, FreezeAt, FreezeSchedule};
use tch::Tensor;

/// The tiny run with an explicit schedule: c1, c2, bn1 frozen at step 10, c3 at 2/3.
fn tiny() -> Config {
    let at = |layer: &str, step: Option<u64>, fraction: Option<f64>| FreezeAt { layer: layer.into(), step, fraction };
    let mut c = common::tiny();
    c.freeze.schedule = FreezeSchedule::Explicit;
    c.freeze.at = vec![at("c1", Some(10), None), at("c2", Some(10), None), at("bn1", Some(10), None), at("c3", None, Some(0.6667))];
    c
}

fn ckpt(dir: &Path, step: u64) -> HashMap<String, Tensor> {
    let p = dir.join("checkpoints").join(format!("step-{step:08}.safetensors"));
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

fn same(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>, name: &str) -> bool {
    a[name].equal(&b[name])
}

#[test]
fn frozen_layers_stay_put_and_the_rest_trains() {
    let tmp = tempfile::tempdir().unwrap();
    let s = svcca::train::train(tiny(), tmp.path()).unwrap();
    assert!(s.backward_saved > 0.0 && s.backward_saved < 1.0, "{}", s.backward_saved);
    let (c0, c10, c20, c30) = (ckpt(tmp.path(), 0), ckpt(tmp.path(), 10), ckpt(tmp.path(), 20), ckpt(tmp.path(), 30));
    for n in ["model.c1.weight", "model.c1.bias", "model.c2.weight", "model.bn1.weight", "model.bn1.bias"] {
        assert!(!same(&c0, &c10, n), "{n} did not train before its freeze");
        assert!(same(&c10, &c20, n) && same(&c20, &c30, n), "{n} changed after step 10");
        // Momentum buffers are kept as they were at the freeze.
        let m = n.replace("model.", "momentum.");
        assert!(same(&c10, &c30, &m), "{m} changed after the freeze");
    }
    // Frozen batch norm keeps its running statistics.
    for n in ["model.bn1.running_mean", "model.bn1.running_var"] {
        assert!(!same(&c0, &c10, n) && same(&c10, &c30, n), "{n}");
    }
    // c3 freezes at round(0.6667 * 30) = 20: it trains until then, not after.
    assert!(!same(&c10, &c20, "model.c3.weight") && same(&c20, &c30, "model.c3.weight"));
    // Layers above still train.
    for n in ["model.c4.weight", "model.fc1.weight", "model.logits.weight", "model.bn2.running_mean"] {
        assert!(!same(&c20, &c30, n), "{n} stopped training");
    }
    let log = std::fs::read_to_string(tmp.path().join("freeze.csv")).unwrap();
    assert_eq!(log, "layer,index,step,fraction\nc1,0,10,0.3333\nc2,1,10,0.3333\nbn1,2,10,0.3333\np1,3,20,0.6667\nc3,4,20,0.6667\n");
}

#[test]
fn frozen_batch_norm_can_keep_updating_its_statistics() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny();
    c.freeze.freeze_bn_stats = false;
    c.train.steps = Some(20);
    svcca::train::train(c, tmp.path()).unwrap();
    let (c10, c20) = (ckpt(tmp.path(), 10), ckpt(tmp.path(), 20));
    assert!(same(&c10, &c20, "model.bn1.weight"));
    assert!(!same(&c10, &c20, "model.bn1.running_mean"));
}

#[test]
fn resumed_mid_schedule_equals_uninterrupted() {
    let tmp = tempfile::tempdir().unwrap();
    let (straight, resumed) = (tmp.path().join("a"), tmp.path().join("b"));
    svcca::train::train(tiny(), &straight).unwrap();
    svcca::train::train(tiny(), &resumed).unwrap();
    // As if killed after the step-10 checkpoint, before c3's freeze at step 20.
    for s in [20, 30] {
        std::fs::remove_file(resumed.join("checkpoints").join(format!("step-{s:08}.safetensors"))).unwrap();
    }
    std::fs::remove_file(resumed.join("freeze.csv")).unwrap();
    let s = svcca::train::train(tiny(), &resumed).unwrap();
    assert_eq!(s.resumed_from, Some(10));
    let (a, b) = (ckpt(&straight, 30), ckpt(&resumed, 30));
    assert_eq!(a.len(), b.len());
    for n in a.keys().filter(|n| *n != "meta.wall_seconds") {
        assert!(a[n].equal(&b[n]), "{n} differs after resume");
    }
    assert_eq!(std::fs::read_to_string(straight.join("freeze.csv")).unwrap(), std::fs::read_to_string(resumed.join("freeze.csv")).unwrap());
}

#[test]
fn backward_stops_at_the_first_trainable_layer() {
    let c = tiny();
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = svcca::model::build(&vs.root(), &c.model, [3, 32, 32], 10).unwrap();
    let x = Tensor::randn([4, 3, 32, 32], (tch::Kind::Float, tch::Device::Cpu));
    // c1 c2 bn1 p1 frozen: c3 is the first trainable layer.
    let loss = net.forward_frozen(&x, true, 4, true).sum(tch::Kind::Float);
    loss.backward();
    let vars = vs.variables();
    for n in ["c1.weight", "c2.weight", "bn1.weight"] {
        assert!(!vars[n].grad().defined(), "{n} got a gradient");
    }
    for n in ["c3.weight", "fc1.weight", "logits.weight"] {
        assert!(vars[n].grad().defined(), "{n} got no gradient");
    }
}

#[test]
fn bad_schedules_are_refused() {
    let e = Config::parse("[freeze]\nschedule = \"linear\"\nstart = 0.8\nend = 0.5\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("freeze.start"), "{e}");
    let e = Config::parse("[freeze]\nschedule = \"explicit\"\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("freeze.at"), "{e}");
    let mut c = tiny();
    c.freeze.at[0].layer = "c9".into();
    let tmp = tempfile::tempdir().unwrap();
    let e = svcca::train::train(c, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("no layer 'c9'"), "{e}");
}

#[test]
fn experiment_compares_base_and_freeze_over_seeds() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny();
    c.train.steps = Some(20);
    c.checkpoints.every = 20;
    let s = svcca::experiment::freeze(c.clone(), &[0, 1], tmp.path()).unwrap();
    assert_eq!(s.seeds, [0, 1]);
    assert!(s.backward_saved > 0.0 && s.base.acc_mean > 0.0 && s.freeze.acc_mean > 0.0);
    let runs = std::fs::read_to_string(tmp.path().join("runs.csv")).unwrap();
    assert_eq!(runs.lines().count(), 5, "{runs}");
    assert!(runs.lines().nth(1).unwrap().starts_with("base,0,") && runs.lines().nth(4).unwrap().starts_with("freeze,1,"));
    // Same seed, same start: base and freeze runs begin from the same weights.
    let (b, f) = (ckpt(&tmp.path().join("base/seed-1"), 0), ckpt(&tmp.path().join("freeze/seed-1"), 0));
    assert!(same(&b, &f, "model.c1.weight"));
    assert!(!tmp.path().join("base/seed-0/freeze.csv").exists() && tmp.path().join("freeze/seed-0/freeze.csv").exists());
    let curves = std::fs::read_to_string(tmp.path().join("curves.csv")).unwrap();
    assert_eq!(curves.lines().map(|l| l.split(',').next().unwrap()).collect::<Vec<_>>(), ["step", "0", "10", "20"]);
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("summary.json")).unwrap()).unwrap();
    assert!(json["wall_saved"].is_number() && json["freeze"]["acc_std"].is_number());
    for f in ["summary.csv", "plots/accuracy.png", "plots/accuracy.svg"] {
        assert!(tmp.path().join(f).metadata().unwrap().len() > 100, "{f}");
    }
    // Figure 5's freeze lines: one per distinct freeze step of freeze.csv (c1, c2, bn1
    // (and p1 with it) at 10, c3 at 13), each drawn dashed: the vertical dashes in the
    // freeze colour stand at two places.
    let frozen = svcca::train::freeze::steps(&tmp.path().join("freeze/seed-0")).unwrap();
    assert_eq!(svcca::report::freeze_lines(&frozen, 20), [10, 13], "{frozen:?}");
    let svg = std::fs::read_to_string(tmp.path().join("plots/accuracy.svg")).unwrap();
    let g = svcca::report::FREEZE_LINE;
    let stroke = format!("stroke=\"#{:02X}{:02X}{:02X}\"", g.0, g.1, g.2);
    let mut xs: Vec<&str> = svg
        .lines()
        .filter(|l| l.contains(&stroke) && l.contains("<polyline"))
        .filter_map(|l| {
            let points: Vec<&str> = l.split("points=\"").nth(1)?.split('"').next()?.split_whitespace().collect();
            let x = points.first()?.split(',').next()?;
            points.iter().all(|p| p.split(',').next() == Some(x)).then_some(x)
        })
        .collect();
    xs.sort_unstable();
    xs.dedup();
    assert_eq!(xs.len(), 2, "dashed freeze lines at {xs:?}");
    // A config without a schedule is refused.
    c.freeze = Default::default();
    let e = svcca::experiment::freeze(c, &[0], &tmp.path().join("x")).unwrap_err();
    assert!(e.downcast_ref::<svcca::error::InputError>().is_some(), "{e}");
}

#[test]
fn cli_refuses_a_config_without_a_schedule() {
    let tmp = tempfile::tempdir().unwrap();
    let mut plain = Config::default();
    plain.train.device = svcca::device::DeviceChoice::Cpu;
    plain.train.steps = Some(2);
    let cfg = common::write_config(tmp.path(), "plain.toml", &plain);
    let out = svcca(&["experiment", "freeze", &cfg, "--seeds", "2", "--out", tmp.path().join("o").to_str().unwrap()]);
    assert_refused(&out, &["freeze.schedule"]);
    assert_refused(&svcca(&["experiment", "freeze", "x.toml", "--seeds", "0"]), &[]);
}

#[test]
fn cli_refuses_duplicate_seeds() {
    // A repeated seed would be one run counted twice (and a standard deviation of 0).
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::tiny();
    c.freeze.schedule = FreezeSchedule::Linear;
    let cfg = common::write_config(tmp.path(), "freeze.toml", &c);
    let out_dir = tmp.path().join("o");
    for seeds in ["0,0", "3, 1, 3"] {
        let out = svcca(&["experiment", "freeze", &cfg, "--seeds", seeds, "--out", out_dir.to_str().unwrap()]);
        let dup = seeds.split(',').next().unwrap();
        assert_refused(&out, &[&format!("seed {dup} is given twice")]);
        assert!(!out_dir.exists(), "nothing is trained");
    }
}

#[test]
fn ready_freeze_configs_parse() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
    let names = ["synthetic_freeze", "fashion_mnist_freeze", "cifar10_convnet_freeze", "cifar10_resnet20_freeze"];
    for n in names {
        let c = Config::load(&dir.join(format!("{n}.toml")), &[]).unwrap();
        assert_eq!(c.freeze.schedule, svcca::config::FreezeSchedule::Linear, "{n}");
    }
}

/// A tiny ResNet-14 (two blocks a stage, width 4) with the final batch norm, under the
/// linear schedule: 30 steps, a checkpoint every 5.
fn tiny_resnet() -> Config {
    let mut c = common::Tiny { width: 4, steps: 30, every: 5, eval_every: 30, ..common::Tiny::default() }.config();
    c.model.arch = svcca::config::Arch::Resnet;
    c.model.depth = 14;
    c.model.final_bn = true;
    c.freeze.schedule = FreezeSchedule::Linear;
    c
}

#[test]
fn resnets_freeze_per_residual_block_bottom_up() {
    let tmp = tempfile::tempdir().unwrap();
    svcca::train::train(tiny_resnet(), tmp.path()).unwrap();
    // Six blocks: block b of 6 frozen at b/6 of 30 steps, the stem with the first; the
    // last block trains with the head (bn_final, pool, logits).
    let log = std::fs::read_to_string(tmp.path().join("freeze.csv")).unwrap();
    assert_eq!(
        log,
        "layer,index,step,fraction\nconv1,0,5,0.1667\nbn1,1,5,0.1667\ns1b1,2,5,0.1667\ns1b2,3,10,0.3333\n\
         s2b1,4,15,0.5000\ns2b2,5,20,0.6667\ns3b1,6,25,0.8333\n"
    );
    let ckpts: Vec<HashMap<String, Tensor>> = (0..=6).map(|k| ckpt(tmp.path(), 5 * k)).collect();
    let params = |prefix: &str| -> Vec<String> {
        let mut v: Vec<String> = ckpts[0].keys().filter(|k| k.starts_with(&format!("model.{prefix}."))).cloned().collect();
        v.sort();
        v
    };
    let units: [(&[&str], usize); 6] = [
        (&["conv1", "bn1", "s1b1"], 1),
        (&["s1b2"], 2),
        (&["s2b1"], 3),
        (&["s2b2"], 4),
        (&["s3b1"], 5),
        (&["s3b2", "bn_final", "logits"], 7),
    ];
    for (layers, k) in units {
        for layer in layers {
            let names = params(layer);
            // Everything in the block: both convs, both batch norms (weights, biases and
            // running statistics).
            if layer.starts_with('s') {
                for part in ["conv1.weight", "bn1.weight", "bn1.running_mean", "conv2.weight", "bn2.bias", "bn2.running_var"] {
                    assert!(names.contains(&format!("model.{layer}.{part}")), "{layer}: {names:?}");
                }
            }
            assert!(!names.is_empty(), "{layer}");
            for n in names.iter().filter(|n| !n.ends_with("num_batches_tracked")) {
                // Trained in every interval before its freeze step (5k), unchanged after.
                for j in 1..k.min(7) {
                    assert!(!same(&ckpts[j - 1], &ckpts[j], n), "{n} did not train in steps {}..{}", 5 * (j - 1), 5 * j);
                }
                for j in k..7 {
                    assert!(same(&ckpts[k], &ckpts[j], n), "{n} changed after its freeze at step {}", 5 * k);
                }
            }
        }
    }
}

#[test]
fn final_bn_is_a_named_layer_and_old_resnet_folders_still_load() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny_resnet();
    c.model.final_bn = false;
    c.freeze = Default::default();
    c.train.steps = Some(5);
    let cfg = common::write_config(tmp.path(), "r.toml", &c);
    let out = tmp.path().join("run");
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    // A folder made before model.final_bn existed: its config.toml has no such key, and
    // reads as a ResNet without the final batch norm, as it was trained.
    let path = out.join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains("final_bn = false"), "{text}");
    std::fs::write(&path, text.replace("final_bn = false\n", "")).unwrap();
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("already trained"), "{}", common::stdout(&o));
    // Adding the final batch norm to that folder is refused, naming the key.
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap(), "--set", "model.final_bn=true"]);
    assert_refused(&o, &["model.final_bn: false vs true"]);
    // It is for ResNets only.
    let o = svcca(&["train", &cfg, "--set", "model.arch=\"convnet\"", "--set", "model.final_bn=true"]);
    assert_refused(&o, &["model.final_bn"]);
}

#[test]
fn a_folder_frozen_under_another_schedule_is_refused_on_resume() {
    // As a ResNet folder begun by a version that froze layer by layer (conv1 at 2/9 of
    // training, ...), resumed at step 10 by this one (conv1, bn1 and s1b1 at step 5).
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny_resnet();
    c.train.steps = Some(30);
    svcca::train::train(c.clone(), tmp.path()).unwrap();
    for s in [15, 20, 25, 30] {
        std::fs::remove_file(tmp.path().join("checkpoints").join(format!("step-{s:08}.safetensors"))).unwrap();
    }
    // Resuming as it was made works.
    svcca::train::train(c.clone(), tmp.path()).unwrap();
    for s in [15, 20, 25, 30] {
        std::fs::remove_file(tmp.path().join("checkpoints").join(format!("step-{s:08}.safetensors"))).unwrap();
    }
    let old = "layer,index,step,fraction\nconv1,0,3,0.1000\nbn1,1,7,0.2333\n";
    std::fs::write(tmp.path().join("freeze.csv"), old).unwrap();
    let e = svcca::train::train(c, tmp.path()).unwrap_err();
    assert!(e.downcast_ref::<svcca::error::InputError>().is_some(), "{e}");
    let e = e.to_string();
    assert!(e.contains("conv1@3 bn1@7") && e.contains("conv1@5 bn1@5 s1b1@5 s1b2@10"), "{e}");
    assert_eq!(std::fs::read_to_string(tmp.path().join("freeze.csv")).unwrap(), old, "nothing rewritten");
    // A finished run is reported whatever schedule froze it.
    let mut done = tiny_resnet();
    done.train.steps = Some(10);
    let other = tempfile::tempdir().unwrap();
    svcca::train::train(done.clone(), other.path()).unwrap();
    std::fs::write(other.path().join("freeze.csv"), old).unwrap();
    assert_eq!(svcca::train::train(done, other.path()).unwrap().resumed_from, Some(10));
}
