//! `model.taps = "all"`: the convs and batch norms inside a ResNet's residual blocks as
//! analysable layers. They equal the block recomputed by hand from its own weights; the
//! block outputs and training are bit for bit those of `model.taps = "blocks"`; `svcca
//! analyze` gives them rows and columns; what cannot use them says so.

mod common;

use common::{assert_refused, svcca, Tiny};
use std::collections::HashMap;
use std::path::Path;
use svcca::config::{Arch, Config, FreezeAt, FreezeSchedule, ModelConfig, Taps};
use svcca::model::{build, Network, INPUT};
use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};

/// ResNet-8 (one block a stage), width 4: `s1b1` keeps the shape, `s2b1` and `s3b1`
/// have stride 2 and pad the shortcut's channels.
fn resnet8(taps: Taps) -> ModelConfig {
    ModelConfig { arch: Arch::Resnet, depth: 8, width: Some(4), taps, ..Default::default() }
}

/// The network of `config` on 3 x 8 x 8 images, its batch norms given random weights and
/// running statistics (so inference mode is no identity), seeded.
fn make(config: &ModelConfig) -> (VarStore, Network) {
    let _init = svcca::model::init_lock();
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let net = build(&vs.root(), config, [3, 8, 8], 10).unwrap();
    tch::no_grad(|| {
        let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, mut t) in vars {
            if name.contains("bn") {
                let r = Tensor::rand(t.size(), (Kind::Float, Device::Cpu));
                let v = if name.ends_with("running_var") || name.ends_with("weight") { r + 0.5 } else { r - 0.5 };
                t.copy_(&v);
            }
        }
    });
    (vs, net)
}

/// Four seeded random 3 x 8 x 8 images (drawn under the lock that keeps the draws of
/// tests running at once apart).
fn images(seed: i64) -> Tensor {
    let _init = svcca::model::init_lock();
    tch::manual_seed(seed);
    Tensor::randn([4, 3, 8, 8], (Kind::Float, Device::Cpu))
}

fn var(vs: &VarStore, name: &str) -> Tensor {
    vs.variables()[name].shallow_clone()
}

fn conv(vs: &VarStore, x: &Tensor, name: &str, stride: i64) -> Tensor {
    x.conv2d(&var(vs, &format!("{name}.weight")), None::<Tensor>, [stride, stride], [1, 1], [1, 1], 1)
}

fn bn(vs: &VarStore, x: &Tensor, name: &str) -> Tensor {
    let v = |s: &str| Some(var(vs, &format!("{name}.{s}")));
    Tensor::batch_norm(x, v("weight"), v("bias"), v("running_mean"), v("running_var"), false, 0.1, 1e-5, false)
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn inner_taps_are_the_block_recomputed_from_its_weights() {
    let (vs, net) = make(&resnet8(Taps::All));
    let mut expected = vec![INPUT.to_string(), "conv1".into(), "bn1".into()];
    for block in ["s1b1", "s2b1", "s3b1"] {
        expected.extend(["conv1", "bn1", "conv2", "bn2"].map(|i| format!("{block}.{i}")));
        expected.push(block.into());
    }
    expected.extend(["pool".into(), "logits".into()]);
    assert_eq!(net.analysable_layers(), expected);
    // The sequence and its freeze units are those of "blocks".
    let (_, blocks) = make(&resnet8(Taps::Blocks));
    assert_eq!(net.layer_names(), blocks.layer_names());
    assert_eq!(net.freeze_units(), blocks.freeze_units());
    assert_eq!(net.enclosing("s2b1.bn1"), Some("s2b1"));
    assert_eq!(net.enclosing("s2b1"), None);

    let x = images(5);
    // (block, the layer feeding it, stride, channels in, out)
    for (block, below, stride, cin, cout) in [("s1b1", "bn1", 1, 4, 4), ("s2b1", "s1b1", 2, 4, 8)] {
        let names: Vec<String> = [below.to_string(), block.to_string()]
            .into_iter()
            .chain(["conv1", "bn1", "conv2", "bn2"].map(|i| format!("{block}.{i}")))
            .collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let (_, taps) = tch::no_grad(|| net.forward_taps(&x, false, &refs)).unwrap();
        let input = &taps[0];
        assert_eq!(input.size()[1], cin);
        let c1 = conv(&vs, input, &format!("{block}.conv1"), stride);
        let b1 = bn(&vs, &c1, &format!("{block}.bn1")).relu();
        let c2 = conv(&vs, &b1, &format!("{block}.conv2"), 1);
        let b2 = bn(&vs, &c2, &format!("{block}.bn2"));
        let shortcut = if stride == 1 {
            input.shallow_clone()
        } else {
            let pad = (cout - cin) / 2;
            input.slice(2, 0, None, 2).slice(3, 0, None, 2).constant_pad_nd([0, 0, 0, 0, pad, cout - cin - pad])
        };
        let out = (&b2 + shortcut).relu();
        for (name, (got, want)) in names[1..].iter().zip(taps[1..].iter().zip([&out, &c1, &b1, &c2, &b2])) {
            let d = max_diff(got, want);
            assert!(d < 1e-6, "{name}: differs from the recomputation by {d:e}");
        }
        assert_eq!(taps[2].size(), [4, cout, 8 / stride, 8 / stride]);
        assert!(taps[3].min().double_value(&[]) >= 0.0, "{block}.bn1 is after its ReLU");
        assert!(taps[5].min().double_value(&[]) < 0.0, "{block}.bn2 is before the addition and ReLU");
    }
}

#[test]
fn block_outputs_are_bit_identical_with_and_without_inner_taps() {
    let (vs_all, all) = make(&resnet8(Taps::All));
    let (vs_blocks, blocks) = make(&resnet8(Taps::Blocks));
    for (name, t) in vs_all.variables() {
        assert!(t.equal(&vs_blocks.variables()[&name]), "{name}: the same seed, the same weights");
    }
    let x = images(6);
    let sequence = blocks.layer_names();
    let every = all.analysable_layers();
    for train in [false, true] {
        let (logits_b, b) = tch::no_grad(|| blocks.forward_taps(&x, train, &sequence)).unwrap();
        // Every analysable layer asked for: the blocks run through their inner-tap path.
        let (logits_a, a) = tch::no_grad(|| all.forward_taps(&x, train, &every)).unwrap();
        assert!(logits_a.equal(&logits_b), "train {train}");
        for (name, t) in sequence.iter().zip(&b) {
            let i = every.iter().position(|l| l == name).unwrap();
            assert!(a[i].equal(t), "{name} (train {train})");
        }
    }
}

/// ResNet-8, width 4, 4 steps of 16 on 64 synthetic images, checkpoints at 0, 2, 4,
/// probed on 32 test images, with `taps`.
fn tiny_run(taps: Taps) -> Config {
    let mut c = Tiny {
        train_size: 64,
        test_size: 32,
        width: 4,
        batch_size: 16,
        steps: 4,
        every: 2,
        eval_every: 4,
        probe_size: Some(32),
        ..Tiny::default()
    }
    .config();
    c.data.crop_padding = 2;
    c.data.flip = true;
    c.model.arch = Arch::Resnet;
    c.model.depth = 8;
    c.model.taps = taps;
    c
}

fn checkpoint(dir: &Path, step: u64) -> HashMap<String, Tensor> {
    let p = dir.join("checkpoints").join(format!("step-{step:08}.safetensors"));
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

#[test]
fn training_is_the_same_and_analyze_gives_the_inner_layers_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (blocks, all) = (tmp.path().join("blocks"), tmp.path().join("all"));
    svcca::train::train(tiny_run(Taps::Blocks), &blocks).unwrap();
    svcca::train::train(tiny_run(Taps::All), &all).unwrap();
    let (a, b) = (checkpoint(&all, 4), checkpoint(&blocks, 4));
    assert_eq!(a.len(), b.len());
    for (name, t) in a.iter().filter(|(n, _)| n.starts_with("model.") || n.starts_with("momentum.")) {
        assert!(t.equal(&b[name]), "{name} differs after training with taps all vs blocks");
    }
    assert!(a.keys().any(|n| n.starts_with("momentum.s3b1.bn2")));
    assert!(std::fs::read_to_string(all.join("config.toml")).unwrap().contains("taps = \"all\""));

    // A finished "blocks" folder may take model.taps = "all": training is the same.
    svcca::train::train(tiny_run(Taps::All), &blocks).unwrap();
    assert!(std::fs::read_to_string(blocks.join("config.toml")).unwrap().contains("taps = \"all\""));
    assert!(checkpoint(&blocks, 4)["model.s1b1.conv1.weight"].equal(&b["model.s1b1.conv1.weight"]));

    let out = svcca(&["analyze", blocks.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    let csv = std::fs::read_to_string(blocks.join("analysis/similarity.csv")).unwrap();
    let at_end: Vec<&str> = csv.lines().filter(|l| l.starts_with("4,")).collect();
    let n = 1 + 2 + 3 * 5 + 2;
    assert_eq!(at_end.len(), n * n, "a layers x layers matrix over every analysable layer");
    for row in ["4,1.000000,s2b1.conv1,s2b1.conv1,", "4,1.000000,s1b1.bn2,s3b1.bn1,", "4,1.000000,s3b1,s1b1.conv2,"] {
        assert!(csv.contains(row), "no row {row}");
    }
    let own = at_end.iter().find(|l| l.starts_with("4,1.000000,s2b1.bn1,s2b1.bn1,")).unwrap();
    let v: f64 = own.rsplit(',').next().unwrap().parse().unwrap();
    assert!((v - 1.0).abs() < 1e-6, "s2b1.bn1 against itself: {v}");
    assert!(blocks.join("plots/heatmaps.png").exists());

    // Compression edits whole layers: an inner tap is refused, naming its block.
    let out = svcca(&["analyze", blocks.to_str().unwrap(), "--compression", "s2b1.bn1"]);
    assert_refused(&out, &["--compression, in the network of", "'s2b1.bn1' is a tap inside layer 's2b1'", "name 's2b1'"]);
}

#[test]
fn store_mode_keeps_the_taps_it_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny_run(Taps::All);
    c.analysis.mode = svcca::config::ActivationMode::Store;
    svcca::train::train(c.clone(), tmp.path()).unwrap();
    let manifest = std::fs::read_to_string(tmp.path().join("activations/manifest.json")).unwrap();
    assert!(manifest.contains("\"s2b1.conv2\""), "{manifest}");
    // Its recorded activations are of the inner taps too: a change is refused.
    c.model.taps = Taps::Blocks;
    let e = svcca::train::train(c, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("model.taps: all vs blocks") && e.contains("store mode"), "{e}");
}

#[test]
fn what_cannot_use_inner_taps_says_so() {
    for arch in ["convnet", "linear"] {
        let e = Config::parse(&format!("[model]\narch = \"{arch}\"\ntaps = \"all\"\n"), "x.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("x.toml:3: model.taps:") && e.contains("every layer is already a tap"), "{e}");
    }
    let e = Config::parse("[model]\narch = \"resnet\"\ntaps = \"some\"\n", "x.toml", &[]).unwrap_err().to_string();
    assert!(e.contains("taps") && e.contains("some"), "{e}");
    // Old folders' configs, without the key: "blocks".
    assert_eq!(Config::parse("[model]\narch = \"resnet\"\n", "x.toml", &[]).unwrap().model.taps, Taps::Blocks);

    // Freezing is per residual block.
    let mut c = tiny_run(Taps::All);
    c.freeze.schedule = FreezeSchedule::Explicit;
    c.freeze.at = vec![FreezeAt { layer: "s1b1.conv1".into(), step: Some(2), fraction: None }];
    let tmp = tempfile::tempdir().unwrap();
    let e = svcca::train::train(c, tmp.path()).unwrap_err().to_string();
    assert!(e.contains("freeze.at: 's1b1.conv1' is inside residual block 's1b1'") && e.contains("per residual block"), "{e}");

    // Edits and runs from an inner tap are refused by the network too.
    let (_, net) = make(&resnet8(Taps::All));
    let x = images(7);
    let id = |h: &Tensor| h.shallow_clone();
    let e = net.forward_edited(&x, false, &[("s1b1.bn2", &id)]).unwrap_err().message;
    assert!(e.contains("'s1b1.bn2' is a tap inside layer 's1b1'") && e.contains("name 's1b1'"), "{e}");
    assert!(net.forward_after(&x, "s1b1.conv1", false).is_err());
}
