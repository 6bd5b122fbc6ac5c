//! `--compression` with `--distributedness` (Figure 2b) and `--jointly` (Appendix 5) on
//! tiny runs, against independent references: every neuron kept is the plain SVCCA sweep
//! at every k; the m most important neurons picked by hand from the projected output's
//! variance give the same accuracy; every direction of every layer at once is the
//! unchanged network; one layer "jointly" is its own sweep; and the CLI's errors.

mod common;

use common::{assert_refused, svcca, Tiny};
use std::path::{Path, PathBuf};
use svcca::analysis::compression::{self, Extras, LayerSpec, Method as Kept, Neurons, Reference};
use svcca::analysis::runs::{as_rows, Run};
use svcca::config::Config;
use svcca::similarity::Keep;
use tch::{Kind, Tensor};

/// 20 steps of a narrow convnet (fc1 16 units, fc2 8), fit set of 160, `keep` of the variance.
fn tiny(keep: f64) -> Config {
    let mut c = Tiny { test_size: 200, width: 4, fc1: 16, fc2: 8, steps: 20, probe_size: Some(160), ..Tiny::default() }.config();
    c.analysis.keep = keep;
    c.analysis.layers = Some(["c3", "fc1", "fc2", "logits"].iter().map(|l| l.to_string()).collect());
    c
}

fn train(dir: &Path, config: Config) -> PathBuf {
    svcca::train::train(config, dir).unwrap();
    dir.to_path_buf()
}

fn specs(list: &[&str]) -> Vec<LayerSpec> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

#[test]
fn distributedness_and_joint_sweeps_against_references() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(1.0));
    let extras = Extras { distributedness: vec![Neurons::Fraction(0.5), Neurons::Fraction(1.0), Neurons::Count(1)], jointly: true };
    let c = compression::compression_with(&dir, &specs(&["c3", "fc1", "fc2"]), &Reference::Logits, None, None, &extras).unwrap();
    assert_eq!(c.distributedness.len(), 3);
    for (d, s) in c.distributedness.iter().zip(&c.layers) {
        assert_eq!(d.layer, s.layer);
        assert_eq!(d.neurons, vec![1, d.units.div_ceil(2), d.units]);
        let svcca: Vec<_> = s.points.iter().filter(|p| p.method == Kept::Svcca).collect();
        // m = every neuron: the plain SVCCA sweep at every k.
        let all: Vec<_> = d.points.iter().filter(|p| p.m == d.units).collect();
        assert_eq!(all.len(), svcca.len(), "{}", d.layer);
        for (a, b) in all.iter().zip(&svcca) {
            assert_eq!(a.k, b.k);
            assert!((a.accuracy - b.accuracy).abs() < 1e-9, "{} k={}: {} vs {}", d.layer, a.k, a.accuracy, b.accuracy);
        }
        // keep = 1, every direction and every neuron: the unchanged network.
        let top = all.last().unwrap();
        assert_eq!(top.k, d.directions);
        assert!((top.accuracy - c.full_accuracy).abs() < 1e-12, "{}: {} vs {}", d.layer, top.accuracy, c.full_accuracy);
    }

    // An independent reference for m < units: the projected fit-set output's variance
    // per neuron picks the m kept, the others held at their mean; evaluated one map at a time.
    let run = Run::open(&dir, None).unwrap();
    let layers = ["fc1".to_string()];
    let fitted = compression::fit(&run, &layers, None, Keep::Variance(1.0)).unwrap();
    let f = &fitted[0];
    let acts = svcca::activations::record::record(&run.net, &run.fit_set(), &layers).unwrap();
    let x = as_rows(&acts[0]).to_kind(Kind::Double);
    let d = c.distributedness.iter().find(|d| d.layer == "fc1").unwrap();
    for k in [1, 3, 6] {
        let p = f.directions.projection(k);
        let projected = (&x - &f.directions.mean).matmul(&p);
        let variance: Vec<f64> = Vec::try_from(&projected.square().sum_dim_intlist(0, false, Kind::Double)).unwrap();
        let mut order: Vec<usize> = (0..f.units).collect();
        order.sort_by(|&a, &b| variance[b].total_cmp(&variance[a]));
        let mut mask = vec![0.0f64; f.units];
        for &i in &order[..8] {
            mask[i] = 1.0;
        }
        // The map by hand: P_k, then a diagonal keeping the 8 neurons.
        let by_hand = p.matmul(&Tensor::from_slice(&mask).diag(0));
        let compression::Map::Project(distributed) = f.distributed(k, 8) else { panic!("k = {k}: a projection") };
        assert!((&by_hand - distributed).abs().max().double_value(&[]) < 1e-12);
        let acc =
            compression::layer_accuracies(&run, None, "fc1", &f.directions.mean, &[compression::Map::Project(by_hand)], false).unwrap()[0];
        let got = d.points.iter().find(|p| p.m == 8 && p.k == k).unwrap().accuracy;
        assert!((acc - got).abs() < 1e-9, "fc1 k={k} m=8: {got} vs {acc} by hand");
    }

    // Every layer at once (c3, fc1, fc2), k swept: each layer at min(k, its directions or
    // units); every direction (keep = 1) or every unit of each layer: the unchanged network.
    let j = c.jointly.as_ref().unwrap();
    assert_eq!(j.layers, ["c3", "fc1", "fc2"]);
    for p in &j.points {
        let cap = if p.method == Kept::Svcca { &j.directions } else { &j.units };
        assert_eq!(p.ks, cap.iter().map(|&c| p.k.min(c)).collect::<Vec<_>>(), "{p:?}");
    }
    for method in Kept::ALL {
        let last = j.points.iter().rfind(|p| p.method == method).unwrap();
        assert_eq!(&last.ks, if method == Kept::Svcca { &j.directions } else { &j.units });
        assert!((last.accuracy - c.full_accuracy).abs() < 1e-12, "{method} all: {} vs {}", last.accuracy, c.full_accuracy);
    }
    let folder = dir.join("analysis/compression-logits");
    for f in ["distributedness.csv", "jointly.csv", "jointly-c3+fc1+fc2.json", "distributedness-fc1-m1_8_16.json", "compression.json"] {
        assert!(folder.join(f).exists(), "{f}");
    }
    let table = std::fs::read_to_string(folder.join("jointly.csv")).unwrap();
    assert_eq!(table.lines().next().unwrap(), "layers,method,k,accuracy");

    // One layer "jointly" is its own sweep, every method and k.
    let one = compression::compression_with(&dir, &specs(&["fc1"]), &Reference::Logits, None, None, &extras).unwrap();
    let j = one.jointly.as_ref().unwrap();
    let s = &one.layers[0];
    assert_eq!(j.points.len(), s.points.len());
    for (a, b) in j.points.iter().zip(&s.points) {
        assert_eq!((a.method, a.k), (b.method, b.k));
        assert!((a.accuracy - b.accuracy).abs() < 1e-9, "{a:?} vs {b:?}");
    }

    // A rerun reads the saved sweeps: the same numbers.
    let again = compression::compression_with(&dir, &specs(&["c3", "fc1", "fc2"]), &Reference::Logits, None, None, &extras).unwrap();
    assert_eq!(again, c);
}

#[test]
fn cli_distributedness_jointly_and_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(0.99));
    let d = dir.to_str().unwrap();
    assert_refused(&svcca(&["analyze", d, "--compression", "fc1", "--distributedness", "0"]), &["--distributedness", "'0'"]);
    assert_refused(&svcca(&["analyze", d, "--compression", "fc1", "--distributedness", "1.5"]), &["--distributedness", "(0, 1]"]);
    assert_refused(&svcca(&["analyze", d, "--compression", "fc1", "--distributedness", "x"]), &["--distributedness", "'x'"]);
    assert_refused(
        &svcca(&["analyze", d, "--compression", "fc1,fc2", "--distributedness", "4,12"]),
        &["--distributedness 12", "fc2", "8 units"],
    );
    // Both need --compression.
    assert_refused(&svcca(&["analyze", d, "--jointly"]), &[]);
    assert_refused(&svcca(&["analyze", d, "--distributedness", "4"]), &[]);
    assert!(!dir.join("analysis/compression-logits").exists(), "a refused command wrote results");

    let out = svcca(&["analyze", d, "--compression", "fc1,fc2", "--distributedness", "4,0.5", "--jointly", "--eval-images", "100"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("distributedness of fc1") && text.contains("fc1+fc2 at once"), "{text}");
    for f in ["compression-logits-distributedness.png", "compression-logits-distributedness.svg", "compression-logits-jointly.png"] {
        assert!(dir.join("plots").join(f).exists(), "{f}");
    }
    let table = std::fs::read_to_string(dir.join("analysis/compression-logits/distributedness.csv")).unwrap();
    assert_eq!(table.lines().next().unwrap(), "layer,m,k,accuracy");
    // 0.5 of fc2's 8 units is 4: one curve there.
    assert!(table.lines().any(|l| l.starts_with("fc1,8,")) && !table.lines().any(|l| l.starts_with("fc2,8,")), "{table}");

    // Against another run's same layers.
    let other = train(&tmp.path().join("b"), tiny(0.99));
    let out = svcca(&["analyze", d, "--compression", "fc1,fc2", "--jointly", "--against", other.to_str().unwrap(), "--no-plots"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.join("analysis/compression-run-b/jointly.csv").exists());
}
