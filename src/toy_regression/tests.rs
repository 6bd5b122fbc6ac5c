//! The toy regression on tiny nets: what the figures claim holds within each test's own
//! run (no numbers recorded elsewhere, so any CPU gives a pass): projections reproduce
//! the output with every direction and give its mean with none, their error falls as
//! directions are added, Figure 3's SVCCA panels keep k directions each (the paper's k
//! by default), and the top SVCCA directions of two initialisations correlate more than
//! their most active neurons. The command itself: tests/toy_regression.rs.

use super::{grid, pairs, relative_error, targets, Basis, Net, Projector, Settings};
use crate::similarity::{directions, Keep};
use std::sync::{Mutex, MutexGuard, OnceLock};
use tch::{Kind, Tensor};

/// Small enough for a second or two in a debug build. Also sets libtorch to one thread,
/// as `svcca experiment toy-regression` runs: on matrices this small a second thread
/// only contends, the more so with the tests running side by side.
fn tiny() -> Settings {
    crate::host::set_libtorch_threads(1);
    Settings { width: 16, points: 160, steps: 600, ks: vec![2, 4, 8], figure3_svd: 8, ..Settings::default() }
}

/// Two tiny nets from seeds 0 and 1 trained on the targets: net A, each net's hidden
/// layers and net A's output.
struct Trained {
    net: Net,
    ha: Vec<Tensor>,
    out: Tensor,
    hb: Vec<Tensor>,
}

/// The one [`Trained`] pair the tests share (trained once, on first use).
fn trained() -> MutexGuard<'static, Trained> {
    static PAIR: OnceLock<Mutex<Trained>> = OnceLock::new();
    let pair = PAIR.get_or_init(|| {
        let s = tiny();
        let x = grid(s.points);
        let y = targets(&x);
        let a = Net::new(0, s.width);
        let b = Net::new(1, s.width);
        for net in [&a, &b] {
            let losses = net.train(&x, &y, s.steps, s.learning_rate, |_| {}).unwrap();
            assert!(losses.last().unwrap().1 < 0.5 * losses[0].1, "training does not lower the loss: {losses:?}");
        }
        let _guard = tch::no_grad_guard();
        let (ha, out) = a.forward(&x);
        let (hb, _) = b.forward(&x);
        Mutex::new(Trained { net: a, ha, out, hb })
    });
    pair.lock().unwrap_or_else(|p| p.into_inner())
}

fn max_abs(t: &Tensor) -> f64 {
    f64::try_from(t.abs().max()).unwrap()
}

#[test]
fn projections_give_the_output_with_every_direction_and_its_mean_with_none() {
    let t = trained();
    let (net, ha, out, hb) = (&t.net, &t.ha, &t.out, &t.hb);
    let _guard = tch::no_grad_guard();
    let h = &ha[3];
    let mean = out.mean_dim(0, true, Kind::Double);
    let scale = max_abs(out);
    // Every direction above rounding noise kept: each basis gives the output back.
    let all = Projector::new(h, &hb[3], Keep::All).unwrap();
    for basis in Basis::ALL {
        let most = all.most(basis);
        let full = net.readout(&all.project(basis, most));
        let e = relative_error(&full, out);
        assert!(e < 1e-6, "{basis:?}: all {most} directions leave a relative error {e}");
        // None: every point gets the mean output.
        let none = net.readout(&all.project(basis, 0));
        let off = max_abs(&(none - &mean));
        assert!(off < 1e-9 * scale, "{basis:?}: 0 directions are {off} off the mean output");
    }
    assert_eq!(all.most(Basis::Neurons), 16);
    // SVCCA's own cut (99% of the variance): fewer directions, and the output still
    // close, far closer than with one direction.
    let kept = Projector::new(h, &hb[3], Keep::Variance(0.99)).unwrap();
    let k = kept.most(Basis::Svcca);
    assert!((1..16).contains(&k), "{k} directions hold 99% of the variance");
    let at = |k| relative_error(&net.readout(&kept.project(Basis::Svcca, k)), out);
    assert!(at(k) < 0.1 && at(k) < 0.5 * at(1), "1 direction: {}, all {k} kept: {}", at(1), at(k));
}

/// The neurons basis by hand: each of the k neurons with the largest mean |activation|
/// (summed on the host) kept, the others at their mean; and the SVCCA basis the centred
/// layer times the fitted projection, plus the mean.
#[test]
fn the_neurons_and_svcca_bases_by_hand() {
    let t = trained();
    let _guard = tch::no_grad_guard();
    let h = &t.ha[3];
    let p = Projector::new(h, &t.hb[3], Keep::TopK(8)).unwrap();
    let width = h.size()[1] as usize;
    let points = h.size()[0] as usize;
    let flat = Vec::<f64>::try_from(h.contiguous().view(-1)).unwrap();
    let activity: Vec<f64> = (0..width).map(|u| (0..points).map(|r| flat[r * width + u].abs()).sum()).collect();
    let mut order: Vec<usize> = (0..width).collect();
    order.sort_by(|&x, &y| activity[y].total_cmp(&activity[x]));
    let mean = h.mean_dim(0, true, Kind::Double);
    let directions = directions(h, &t.hb[3], Keep::TopK(8)).unwrap();
    for k in [0, 1, 5, width] {
        let mut keep = vec![0.0f64; width];
        for &u in &order[..k] {
            keep[u] = 1.0;
        }
        let want = (h - &mean) * Tensor::from_slice(&keep).unsqueeze(0) + &mean;
        assert!(max_abs(&(p.project(Basis::Neurons, k) - want)) < 1e-12, "neurons, k = {k}");
    }
    for k in [0, 3, 8] {
        let want = (h - &mean).matmul(&directions.projection(k)) + &mean;
        assert!(max_abs(&(p.project(Basis::Svcca, k) - want)) < 1e-12, "svcca, k = {k}");
    }
}

#[test]
fn more_directions_never_raise_the_output_error() {
    let t = trained();
    let (net, ha, out, hb) = (&t.net, &t.ha, &t.out, &t.hb);
    let _guard = tch::no_grad_guard();
    // The SVCCA and SVD projections are orthogonal projections of the centred layer onto
    // nested subspaces, so the output's error can only fall as k grows.
    for keep in [Keep::Variance(0.99), Keep::All, Keep::TopK(8)] {
        let p = Projector::new(&ha[3], &hb[3], keep).unwrap();
        for basis in [Basis::Svcca, Basis::Svd] {
            let errors: Vec<f64> = (0..=p.most(basis)).map(|k| relative_error(&net.readout(&p.project(basis, k)), out)).collect();
            assert!((errors[0] - 1.0).abs() < 1e-9, "{basis:?}: {errors:?}");
            for w in errors.windows(2) {
                assert!(w[1] <= w[0] + 1e-9, "{basis:?} (keep {keep:?}): the error rises with k: {errors:?}");
            }
            assert!(errors[errors.len() - 1] < 0.1, "{basis:?}: {errors:?}");
        }
    }
}

#[test]
fn svcca_directions_of_two_initialisations_agree_where_their_neurons_do_not() {
    let t = trained();
    let (ha, hb) = (&t.ha, &t.hb);
    let layer = 3;
    let (ps, (kept_a, kept_b)) = pairs(&ha[layer], &hb[layer], 4, 0.99).unwrap();
    let of = |b: Basis| ps.iter().filter(|p| p.basis == b).collect::<Vec<_>>();
    let mean = |b: Basis| of(b).iter().map(|p| p.correlation).sum::<f64>() / of(b).len() as f64;
    assert!(!of(Basis::Svcca).is_empty() && of(Basis::Neurons).len() == 4 && of(Basis::Svd).len() == 4);
    assert!(
        mean(Basis::Svcca) > mean(Basis::Neurons) + 0.05,
        "SVCCA directions {:.3} vs most active neurons {:.3}",
        mean(Basis::Svcca),
        mean(Basis::Neurons)
    );
    assert!(of(Basis::Svcca)[0].correlation > 0.95, "top SVCCA pair: {}", of(Basis::Svcca)[0].correlation);
    // Net B's curve is A's canonical variate seen in B: it correlates with A's by exactly
    // the canonical correlation.
    let d = directions(&ha[layer], &hb[layer], Keep::Variance(0.99)).unwrap();
    assert_eq!(d.len(), kept_a);
    assert!(kept_b >= 1);
    for (p, rho) in of(Basis::Svcca).iter().zip(&d.correlations) {
        assert!((p.correlation - rho).abs() < 1e-6, "pair {}: {} vs canonical correlation {rho}", p.rank, p.correlation);
    }
    // The curves are standardised.
    for p in &ps {
        let n = p.a.len() as f64;
        let m: f64 = p.a.iter().sum::<f64>() / n;
        let v: f64 = p.a.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n;
        assert!(m.abs() < 1e-9 && (v - 1.0).abs() < 1e-9, "{:?} {}: mean {m}, variance {v}", p.basis, p.rank);
    }
    // A best match is at least as good as the rank-paired neuron.
    for p in of(Basis::Neurons) {
        assert!(p.best_match.unwrap() >= p.correlation - 1e-12);
    }
}

#[test]
fn run_summarises_every_layer_and_the_figure_3_panels() {
    let tmp = tempfile::tempdir().unwrap();
    let s = Settings { steps: 300, ..tiny() };
    let summary = super::run(&s, tmp.path()).unwrap();
    assert_eq!(summary.layers.len(), 4);
    assert_eq!(summary.figure3.len(), 3 * s.ks.len());
    for p in &summary.figure3 {
        assert_eq!(Some(p.relative_error), summary.error(p.basis, p.k), "{p:?}");
    }
    assert_eq!(summary.error(Basis::Neurons, 0).map(|e| (e - 1.0).abs() < 1e-9), Some(true));
    assert!(summary.final_loss.iter().all(|l| l.is_finite()));
    // The same folder again is fine (files replaced).
    super::run(&s, tmp.path()).unwrap();
}

/// The rank of `t` (points x units): its singular values above 1e-9 of the largest.
fn rank(t: &Tensor) -> usize {
    let (_, s, _) = t.to_kind(Kind::Double).svd(true, false);
    let s = Vec::<f64>::try_from(s).unwrap();
    s.iter().filter(|&&v| v > 1e-9 * s[0]).count()
}

/// Figure 3 keeps SVCCA directions by number, not by a variance rule: by default the
/// paper's panels of 2, 6, 15 and 30, of the top 30 principal directions of each net;
/// each panel's projection holds exactly k directions, the smaller panels' inside the
/// larger's, and the output's error falls from panel to panel.
#[test]
fn figure_3_keeps_k_svcca_directions_in_each_panel() {
    let d = Settings::default();
    assert_eq!((d.ks.as_slice(), d.figure3_svd), ([2, 6, 15, 30].as_slice(), 30));
    d.check().unwrap();
    let s = tiny();
    figure_3_panels_of_the_shared_pair(&s);
    let tmp = tempfile::tempdir().unwrap();
    let summary = super::run(&Settings { steps: 300, ..s.clone() }, tmp.path()).unwrap();
    let svcca: Vec<usize> = summary.figure3.iter().filter(|f| f.basis == Basis::Svcca).map(|f| f.k).collect();
    assert_eq!(svcca, s.ks);
    assert_eq!(summary.figure3_correlations.len(), s.figure3_svd);
}

/// [`figure_3_keeps_k_svcca_directions_in_each_panel`] on the shared pair of nets.
fn figure_3_panels_of_the_shared_pair(s: &Settings) {
    let t = trained();
    let (net, ha, out, hb) = (&t.net, &t.ha, &t.out, &t.hb);
    let _guard = tch::no_grad_guard();
    let p = Projector::new(&ha[3], &hb[3], Keep::TopK(s.figure3_svd)).unwrap();
    assert_eq!((p.most(Basis::Svcca), p.correlations().len()), (8, 8));
    assert!(p.correlations().windows(2).all(|w| w[0] >= w[1]), "{:?}", p.correlations());
    let centred = |k: usize| p.project(Basis::Svcca, k) - ha[3].to_kind(Kind::Double).mean_dim(0, true, Kind::Double);
    let mut errors = Vec::new();
    for (i, &k) in s.ks.iter().enumerate() {
        assert_eq!(rank(&centred(k)), k, "the panel of {k} keeps {k} directions");
        if i > 0 {
            // The previous panel's directions are among this one's: together they span k.
            let both = Tensor::cat(&[centred(k), centred(s.ks[i - 1])], 1);
            assert_eq!(rank(&both), k, "panel {} is not inside panel {k}", s.ks[i - 1]);
        }
        errors.push(relative_error(&net.readout(&p.project(Basis::Svcca, k)), out));
    }
    assert!(errors.windows(2).all(|w| w[1] <= w[0] + 1e-12), "the error rises with k: {errors:?}");
    assert!(errors[errors.len() - 1] < errors[0], "{errors:?}");
}
