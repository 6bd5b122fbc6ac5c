//! The input as an analysed layer (`in`, the paper's Figure 4 row and column): it is the
//! probe's normalised images, in every architecture, first in the default layer list; its
//! row of each checkpoint's matrix is the same at every step; store mode takes it from the
//! probe rather than the files; freezing does not count or accept it; a folder analysed
//! before it was a default layer goes on without it.

mod common;

use common::{assert_refused, svcca, Tiny};
use svcca::activations::probe::Probe;
use svcca::analysis::dynamics::Dynamics;
use svcca::config::{ActivationMode, Arch, Config, FreezeAt, FreezeSchedule};
use svcca::data::Dataset;
use svcca::model::INPUT;
use tch::{Device, Kind, Tensor};

/// 10 steps of a narrow convnet, probe of 64, analysed in `mode` over `layers` (`None`:
/// the default list).
fn tiny(mode: ActivationMode, layers: Option<&[&str]>) -> Config {
    let mut c = Tiny { width: 4, fc1: 16, fc2: 8, steps: 10, every: 5, probe_size: Some(64), ..Tiny::default() }.config();
    c.analysis.mode = mode;
    c.analysis.layers = layers.map(|l| l.iter().map(|s| s.to_string()).collect());
    c
}

fn max_abs(a: &Tensor, b: &Tensor) -> f64 {
    (a - b).abs().max().double_value(&[])
}

#[test]
fn the_input_is_the_normalised_probe_in_every_architecture() {
    let mut c = tiny(ActivationMode::Replay, None);
    let data = Dataset::load(&c.data, Device::Cpu).unwrap();
    let probe = Probe::new(&data, &c.analysis);
    let idx = Tensor::from_slice(&probe.indices);
    let normalised = data.normalise(&data.test.images.index_select(0, &idx));
    for (arch, depth) in [(Arch::Convnet, 20), (Arch::Resnet, 8), (Arch::Linear, 20)] {
        (c.model.arch, c.model.depth) = (arch, depth);
        let vs = tch::nn::VarStore::new(Device::Cpu);
        let net = svcca::model::build(&vs.root(), &c.model, data.shape, data.classes).unwrap();
        // First of the analysable layers, none of the network's own (nothing to freeze).
        let all = net.analysable_layers();
        assert_eq!(all[0], INPUT, "{arch:?}");
        assert_eq!(&all[1..], net.layer_names().as_slice(), "{arch:?}");
        assert!(!net.layer_names().contains(&INPUT));
        assert_eq!(net.freeze_units().last().unwrap().end, net.layer_names().len());
        // Recorded: the probe's images as the network sees them, N x C x H x W float.
        let layers: Vec<String> = vec![INPUT.into(), "logits".into()];
        let acts = svcca::activations::record::record(&net, &probe, &layers).unwrap();
        assert_eq!(acts[0].size(), [64, 3, 32, 32]);
        assert_eq!(acts[0].kind(), Kind::Float);
        assert_eq!(max_abs(&acts[0], &normalised), 0.0, "{arch:?}");
        // The tap, where the network runs anyway.
        let (_, taps) = net.forward_taps(&normalised, false, &[INPUT]).unwrap();
        assert_eq!(max_abs(&taps[0], &normalised), 0.0);
        // Only the input: the network need not run, and is not needed.
        let only = svcca::activations::record::record(&net, &probe, &[INPUT.to_string()]).unwrap();
        assert_eq!(max_abs(&only[0], &normalised), 0.0);
    }
}

/// The row of layer `i` at every step.
fn rows(d: &Dynamics, i: usize) -> Vec<Vec<Option<f64>>> {
    d.steps.iter().map(|s| s.matrix[i].clone()).collect()
}

fn assert_rows_close(a: &[Option<f64>], b: &[Option<f64>], tol: f64, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    for (x, y) in a.iter().zip(b) {
        assert!((x.unwrap() - y.unwrap()).abs() <= tol, "{what}: {a:?} vs {b:?}");
    }
}

#[test]
fn by_default_the_input_row_is_first_and_the_same_at_every_step() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    svcca::train::train(tiny(ActivationMode::Replay, None), &run).unwrap();
    let d = svcca::analysis::analyze(&run, None).unwrap().dynamics;
    let layers = &d.settings.layers;
    assert_eq!(layers[0], INPUT);
    assert_eq!(&layers[1..3], ["c1", "c2"]);
    assert_eq!(layers.len(), 15);
    assert_eq!(d.steps.iter().map(|s| s.step).collect::<Vec<_>>(), [0, 5, 10]);
    // The input row: the same at every step; against itself 1; defined everywhere (DFT
    // against the conv layers, avgpool against the dense ones).
    let input = rows(&d, 0);
    assert!(input.iter().all(|r| r == &input[0]), "{input:?}");
    assert!((input[0][0].unwrap() - 1.0).abs() < 1e-6);
    assert!(input[0].iter().all(|v| v.is_some_and(|v| (0.0..=1.0 + 1e-9).contains(&v))), "{:?}", input[0]);
    // Its column (each layer at the step against the final input) changes.
    assert_ne!(d.steps[0].matrix[1][0], d.steps[2].matrix[1][0]);
    assert_eq!(d.baseline[0].init.map(|v| (v - 1.0).abs() < 1e-6), Some(true));
    // Computed afresh (another call, which computes its first input row anew): equal up
    // to rounding.
    std::fs::remove_file(run.join("analysis/steps/step-00000010.json")).unwrap();
    let again = svcca::analysis::analyze(&run, None).unwrap();
    assert_eq!((again.computed, again.skipped), (1, 2));
    assert_rows_close(&rows(&again.dynamics, 0)[2], &input[0], 1e-9, "the input row recomputed");
    // Across runs (another seed, the same probe): the input against itself is 1.
    let other = tmp.path().join("other");
    let mut c = tiny(ActivationMode::Replay, None);
    c.train.seed = 1;
    svcca::train::train(c, &other).unwrap();
    let cr = svcca::analysis::compare_runs::compare_runs(&[run.clone(), other], &tmp.path().join("cr"), None).unwrap();
    let summary = cr.summary.unwrap();
    assert_eq!(summary.layers[0], INPUT);
    assert!((summary.mean[0][0].unwrap() - 1.0).abs() < 1e-6);
    // The plots draw it: the heatmaps' axes and the to-final legend name it.
    let svg = svcca::report::plot(&run, &d).unwrap().into_iter().filter(|f| f.extension().unwrap() == "svg");
    for f in svg {
        let text = std::fs::read_to_string(&f).unwrap();
        let labels: Vec<&str> = text.split('>').filter_map(|t| t.split('<').next()).map(str::trim).filter(|t| !t.is_empty()).collect();
        assert!(labels.contains(&INPUT), "{}: {labels:?}", f.display());
    }
}

#[test]
fn store_mode_takes_the_input_from_the_probe() {
    let tmp = tempfile::tempdir().unwrap();
    let (store, replay) = (tmp.path().join("store"), tmp.path().join("replay"));
    let layers = [INPUT, "c3", "fc1", "logits"];
    svcca::train::train(tiny(ActivationMode::Store, Some(&layers)), &store).unwrap();
    // Not stored: the files and the manifest hold the other layers only.
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(store.join("activations/manifest.json")).unwrap()).unwrap();
    let entries = manifest["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3 * 3);
    assert!(entries.iter().all(|e| e["layer"] != INPUT));
    let saved = Tensor::read_safetensors(store.join("activations/step-00000005.safetensors")).unwrap();
    assert_eq!(saved.len(), 3);
    // The same run replayed gives the same numbers, the input included.
    std::fs::create_dir_all(replay.join("checkpoints")).unwrap();
    for e in std::fs::read_dir(store.join("checkpoints")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), replay.join("checkpoints").join(e.file_name())).unwrap();
    }
    let config = std::fs::read_to_string(store.join("config.toml")).unwrap();
    std::fs::write(replay.join("config.toml"), config.replace("mode = \"store\"", "mode = \"replay\"")).unwrap();
    let s = svcca::analysis::analyze(&store, None).unwrap().dynamics;
    let r = svcca::analysis::analyze(&replay, None).unwrap().dynamics;
    assert_eq!(s.settings.layers, layers);
    for (a, b) in s.steps.iter().zip(&r.steps) {
        for (x, y) in a.matrix.iter().zip(&b.matrix) {
            assert_rows_close(x, y, 1e-9, &format!("step {}", a.step));
        }
    }
    assert!(rows(&s, 0).iter().all(|r| r == &rows(&s, 0)[0]));

    // The input alone: store files with no tensor, and the analysis still works.
    let only = tmp.path().join("only");
    svcca::train::train(tiny(ActivationMode::Store, Some(&[INPUT])), &only).unwrap();
    let d = svcca::analysis::analyze(&only, None).unwrap().dynamics;
    assert_eq!(d.steps.len(), 3);
    assert!(d.steps.iter().all(|s| (s.matrix[0][0].unwrap() - 1.0).abs() < 1e-6));
}

#[test]
fn analysis_layers_accept_the_input_and_freeze_at_refuses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let at = |l: &str, s: u64| FreezeAt { layer: l.into(), step: Some(s), fraction: None };
    let mut c = tiny(ActivationMode::Replay, Some(&[INPUT, "c1", "logits"]));
    c.freeze.schedule = FreezeSchedule::Explicit;
    c.freeze.at = vec![at(INPUT, 5), at("c1", 5)];
    let cfg = common::write_config(tmp.path(), "bad.toml", &c);
    let out = tmp.path().join("bad");
    assert_refused(&svcca(&["train", &cfg, "--out", out.to_str().unwrap()]), &["freeze.at", "'in'", "input", "nothing to freeze"]);
    // The same with the network's own layers: `in` is fine in analysis.layers.
    c.freeze.at = vec![at("c1", 5)];
    let cfg = common::write_config(tmp.path(), "good.toml", &c);
    let out = tmp.path().join("good");
    let o = svcca(&["run", &cfg, "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", common::stderr(&o));
    let freeze = std::fs::read_to_string(out.join("freeze.csv")).unwrap();
    assert!(!freeze.contains("\nin,"), "{freeze}");
    assert!(freeze.contains("\nc1,0,5,"), "{freeze}");
    // A layer that is not there: the message lists the input too.
    c.analysis.layers = Some(vec!["c9".into()]);
    c.freeze = Default::default();
    let cfg = common::write_config(tmp.path(), "c9.toml", &c);
    let out = tmp.path().join("c9");
    assert_refused(&svcca(&["train", &cfg, "--out", out.to_str().unwrap()]), &["analysis.layers", "'c9'", "in c1 c2"]);
    // --compression has no use for it.
    let good = tmp.path().join("good");
    assert_refused(
        &svcca(&["analyze", good.to_str().unwrap(), "--compression", "in"]),
        &["--compression, in the network of", "'in' is the network's input"],
    );
}

#[test]
fn a_folder_analysed_before_the_input_was_a_default_layer_goes_on_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    // An analysis made under the old default (every layer of the network, no input)...
    let all = ["c1", "c2", "bn1", "p1", "c3", "c4", "c5", "bn2", "p2", "fc1", "bn3", "fc2", "bn4", "logits"];
    let mut c = tiny(ActivationMode::Replay, Some(&all));
    c.train.steps = Some(5);
    svcca::train::train(c.clone(), &run).unwrap();
    let old = svcca::analysis::analyze(&run, None).unwrap();
    // ...in a folder whose config has no analysis.layers, as an old default run's has.
    let text = std::fs::read_to_string(run.join("config.toml")).unwrap();
    let kept: Vec<&str> = text.lines().filter(|l| !l.starts_with("layers = ")).collect();
    assert_eq!(kept.len() + 1, text.lines().count());
    std::fs::write(run.join("config.toml"), kept.join("\n") + "\n").unwrap();
    // Neither refused nor redone: it keeps its layers.
    let again = svcca::analysis::analyze(&run, None).unwrap();
    assert_eq!((again.computed, again.skipped), (0, 2));
    assert_eq!(again.dynamics, old.dynamics);
    // Deleted, it is redone with the input.
    std::fs::remove_dir_all(run.join("analysis")).unwrap();
    let new = svcca::analysis::analyze(&run, None).unwrap().dynamics;
    assert_eq!(new.settings.layers[0], INPUT);
    assert_eq!(&new.settings.layers[1..], all);
}
