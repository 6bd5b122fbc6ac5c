//! `--compression` with `--distributedness` (Figure 2b) and `--jointly` (Appendix 5) on
//! tiny runs, against independent references: every neuron kept is the plain SVCCA sweep
//! at every k; the m most important neurons picked by hand from the projected output's
//! variance give the same accuracy; every direction of every layer at once is the
//! unchanged network; one layer "jointly" is its own sweep; and the CLI's errors.

mod common;

use common::{assert_refused, svcca, Tiny};
use std::path::{Path, PathBuf};
use svcca::analysis::compression::{self, CompressionMethod as Kept, Extras, LayerSpec, Neurons, Reference};
use svcca::analysis::runs::Run;
use svcca::config::Config;
use svcca::data::rng::Rng;
use svcca::similarity::Keep;
use tch::{Kind, Tensor};

/// A layer's activations as datapoints x neurons, as the analysis folds a conv layer
/// (docs/analysis.md): one row per image and position, image-major, C neurons.
fn as_rows(t: &Tensor) -> Tensor {
    match t.size()[..] {
        [_, c, _, _] => t.permute([0, 2, 3, 1]).reshape([-1, c]),
        _ => t.shallow_clone(),
    }
}

/// Positions per image (1 for a dense layer).
fn positions(t: &Tensor) -> i64 {
    match t.size()[..] {
        [_, _, h, w] => h * w,
        _ => 1,
    }
}

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
        let p = f.fitted.directions.projection(k);
        let projected = (&x - &f.fitted.directions.mean).matmul(&p);
        let variance: Vec<f64> = Vec::try_from(&projected.square().sum_dim_intlist(0, false, Kind::Double)).unwrap();
        let mut order: Vec<usize> = (0..f.fitted.units()).collect();
        order.sort_by(|&a, &b| variance[b].total_cmp(&variance[a]));
        let mut mask = vec![0.0f64; f.fitted.units()];
        for &i in &order[..8] {
            mask[i] = 1.0;
        }
        // The map by hand: P_k, then a diagonal keeping the 8 neurons.
        let by_hand = p.matmul(&Tensor::from_slice(&mask).diag(0));
        let compression::Map::Project(distributed) = f.distributed(k, 8) else { panic!("k = {k}: a projection") };
        assert!((&by_hand - distributed).abs().max().double_value(&[]) < 1e-12);
        let acc = compression::layer_accuracies(&run, None, "fc1", &f.fitted.directions.mean, &[compression::Map::Project(by_hand)], false)
            .unwrap()[0];
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

/// `ac` (datapoints x m, centred, float64): the orthonormal basis of its principal
/// directions holding `fraction` of its variance (the fewest), by a plain SVD.
fn kept_basis(ac: &Tensor, fraction: f64) -> Tensor {
    let (u, s, _) = ac.svd(true, true);
    let variances: Vec<f64> = Vec::try_from(&s.square()).unwrap();
    let total: f64 = variances.iter().sum();
    let mut sum = 0.0;
    let k = variances.iter().position(|v| {
        sum += v;
        sum >= fraction * total
    });
    u.narrow(1, 0, k.unwrap() as i64 + 1)
}

fn centre(t: &Tensor) -> Tensor {
    let t = t.to_kind(Kind::Double);
    &t - t.mean_dim(0, true, Kind::Double)
}

/// The sweep's numbers against a computation made here: each layer's fitted directions
/// against SVCCA written out by plain float64 SVDs (the projection onto the span of the
/// top k canonical variates, the least-squares reconstruction), the most active units
/// against their mean |output| summed on the host, and every point of the sweep, and its
/// line in `compression.csv`, against those maps built by hand (the random draws by the
/// seeded stream) and evaluated one at a time.
#[test]
fn sweep_against_an_independent_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = train(&tmp.path().join("run"), tiny(0.99));
    let eval_images = Some(120);
    let c = compression::compression(&dir, &specs(&["c3", "fc1"]), &Reference::Logits, eval_images, None).unwrap();
    let run = Run::open(&dir, None).unwrap();
    let seed = run.config.analysis.seed;
    let names = ["c3".to_string(), "fc1".to_string(), "logits".to_string()];
    let acts = svcca::activations::record::record(&run.net, &run.fit_set(), &names).unwrap();
    let fitted = compression::fit(&run, &names[..2], None, Keep::Variance(0.99)).unwrap();
    let csv = std::fs::read_to_string(dir.join("analysis/compression-logits/compression.csv")).unwrap();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("layer,method,k,accuracy"));
    for (i, s) in c.layers.iter().enumerate() {
        let f = &fitted[i];
        assert_eq!((f.layer.as_str(), s.layer.as_str()), (names[i].as_str(), names[i].as_str()));
        let ac = centre(&as_rows(&acts[i]));
        let bc = centre(&acts[2].repeat_interleave_self_int(positions(&acts[i]), 0, None));
        // SVCCA by hand: each side's kept principal basis, then the SVD of their product.
        let (ua, ub) = (kept_basis(&ac, 0.99), kept_basis(&bc, 0.99));
        let ka = ua.size()[1] as usize;
        let (m, rho, _) = ua.tr().matmul(&ub).svd(true, true);
        let rho: Vec<f64> = Vec::try_from(&rho).unwrap();
        assert_eq!((s.directions, f.fitted.directions.len(), s.units), (ka, ka, f.fitted.units()), "{}", s.layer);
        assert_eq!(s.correlations.len(), rho.len(), "{}", s.layer);
        for (got, want) in s.correlations.iter().zip(&rho) {
            assert!((got - want.min(1.0)).abs() < 1e-8, "{}: correlations {:?} by hand {rho:?}", s.layer, s.correlations);
        }
        let scale = ac.abs().max().double_value(&[]);
        for k in 0..=rho.len() {
            // The span of the top k variates is defined where the k-th and the next
            // correlation differ.
            if k > 0 && k < rho.len() && rho[k - 1] - rho[k] < 1e-6 {
                continue;
            }
            let z = ua.matmul(&m.narrow(1, 0, k as i64));
            let want = z.matmul(&z.tr().matmul(&ac));
            let got = ac.matmul(&f.fitted.directions.projection(k));
            let off = (&got - &want).abs().max().double_value(&[]);
            assert!(off < 1e-8 * scale, "{} k = {k}: {off} from the projection by hand", s.layer);
        }
        let all = ac.matmul(&f.fitted.directions.projection(ka));
        let want = ua.matmul(&ua.tr().matmul(&ac));
        assert!((&all - &want).abs().max().double_value(&[]) < 1e-8 * scale, "{}: every direction", s.layer);
        // The most active units: mean |output| over the fit set (per channel), on the host.
        let rows = as_rows(&acts[i]).to_kind(Kind::Double);
        let n = rows.size()[0] as usize;
        let flat: Vec<f64> = Vec::try_from(&rows.contiguous().view(-1)).unwrap();
        let activity: Vec<f64> =
            (0..f.fitted.units()).map(|u| (0..n).map(|r| flat[r * f.fitted.units() + u].abs()).sum::<f64>() / n as f64).collect();
        let mut active: Vec<usize> = (0..f.fitted.units()).collect();
        active.sort_by(|&x, &y| activity[y].total_cmp(&activity[x]));
        let keeping = |units: &[usize]| {
            let mut keep = vec![false; f.fitted.units()];
            for &u in units {
                keep[u] = true;
            }
            compression::Map::Keep(keep)
        };
        // Every point against its maps by hand, one at a time.
        for p in &s.points {
            let maps: Vec<compression::Map> = match p.method {
                Kept::Svcca if p.k == 0 => vec![keeping(&[])],
                Kept::Svcca => vec![compression::Map::Project(f.fitted.directions.projection(p.k))],
                Kept::Active => vec![keeping(&active[..p.k])],
                Kept::Random => (0..compression::DRAWS)
                    .map(|draw| {
                        let perm = Rng::stream(seed, &[0x7261_6e64, draw]).permutation(f.fitted.units());
                        keeping(&perm[..p.k].iter().map(|&u| u as usize).collect::<Vec<_>>())
                    })
                    .collect(),
            };
            let acc = compression::layer_accuracies(&run, eval_images, &s.layer, &f.fitted.directions.mean, &maps, false).unwrap();
            let mut sum = 0.0;
            for a in &acc {
                sum += a;
            }
            let want = sum / acc.len() as f64;
            assert!((p.accuracy - want).abs() < 1e-12, "{} {} k = {}: {} by hand {want}", s.layer, p.method, p.k, p.accuracy);
            assert_eq!(lines.next().unwrap(), format!("{},{},{},{want:.6}", s.layer, p.method, p.k));
        }
    }
    assert_eq!(lines.next(), None, "only the sweeps' points (no joint rows without fractions)");
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
