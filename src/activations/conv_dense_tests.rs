//! A conv layer against a dense one (`analysis.conv_dense`) along the analysis's route:
//! `flatten` against SVCCA of the explicitly reshaped layer (brute force) and, for layers
//! wider than the datapoints (the Gram route), against a direct float64 SVD made here;
//! `avgpool` against the channel means; the fallback to `avgpool` on a small probe, and
//! its warning. The command's side: tests/conv_dense.rs.

use super::{conv_dense_fallbacks, similarity, LayerSet, Names};
use crate::config::Config;
use crate::similarity::summary::{self, Layers};
use crate::similarity::{compare, compare_conv, ConvDense, ConvOptions, Keep, Method, Options};
use crate::test_support::*;
use std::sync::{Arc, Mutex};
use tch::{Kind, Tensor};

/// The analysis's similarity of layer `i` of `a` with layer `j` of `b`.
fn analysis_similarity(a: &mut LayerSet, i: usize, b: &mut LayerSet, j: usize) -> Option<f64> {
    let names: Vec<String> = (0..=j).map(|k| format!("b{k}")).collect();
    similarity(a, i, b, j, &Names { a: format!("a{i}"), b: &names })
}

fn flat(x: &Tensor) -> Tensor {
    x.reshape([x.size()[0], -1])
}

fn pooled(x: &Tensor) -> Tensor {
    x.mean_dim(&[2i64, 3][..], false, Kind::Double)
}

fn options() -> [Options; 4] {
    [
        Options { method: Method::Svcca, keep: Keep::Variance(0.99), ..Options::default() },
        Options { method: Method::Svcca, keep: Keep::Singular(0.9), ..Options::default() },
        Options { method: Method::Svcca, keep: Keep::TopK(3), ..Options::default() },
        Options { method: Method::Cca, keep: Keep::All, ..Options::default() },
    ]
}

fn dense_only(dense: ConvDense) -> ConvOptions {
    ConvOptions { dense, ..ConvOptions::default() }
}

#[test]
fn flatten_is_svcca_of_the_reshaped_layer_and_avgpool_of_the_channel_means() {
    // 600 datapoints, 4x4x4 = 64 neurons: enough for the analysis to flatten (>= 5 per
    // neuron).
    let (conv, dense) = conv_and_dense_pair(1, 600, [4, 4, 4], 20);
    for options in options() {
        let brute = compare(&flat(&conv), &dense, &options).unwrap();
        let means = compare(&pooled(&conv), &dense, &options).unwrap();
        let apart = (brute.mean - means.mean).abs() > 0.02 || options.method == Method::Cca;
        assert!(apart, "{options:?}: flatten {} and avgpool {} tell nothing apart", brute.mean, means.mean);
        for (dense_mode, want) in [(ConvDense::Flatten, &brute), (ConvDense::Avgpool, &means)] {
            let what = format!("{options:?} {dense_mode:?}");
            // One pair in memory, either side.
            let (s, report) = compare_conv(&conv, &dense, dense_only(dense_mode), &options).unwrap();
            assert_eq!(report.conv_dense, Some(dense_mode), "{what}");
            assert!((s.mean - want.mean).abs() < 1e-9, "{what}: {} vs brute force {}", s.mean, want.mean);
            assert_eq!((s.kept_a, s.kept_b, s.neurons_a), (want.kept_a, want.kept_b, want.neurons_a), "{what}");
            let (t, _) = compare_conv(&dense, &conv, dense_only(dense_mode), &options).unwrap();
            assert!((t.mean - want.mean).abs() < 1e-9, "{what}: dense first {} vs {}", t.mean, want.mean);
            // The analyses' route: per-layer summaries, cached, both orders.
            let mut a = Layers::new(vec![conv.shallow_clone(), dense.shallow_clone()], options, dense_only(dense_mode));
            let mut b = Layers::new(vec![dense.shallow_clone(), conv.shallow_clone()], options, dense_only(dense_mode));
            for (i, j) in [(0, 0), (1, 1)] {
                let got = summary::similarity(&mut a, i, &mut b, j).unwrap();
                assert!((got - want.mean).abs() < 1e-9, "{what}: summaries {got} vs brute force {}", want.mean);
            }
        }
    }
    // PWCCA and CKA go pair by pair (scatter matrices): the same numbers as the reshaped
    // layer.
    for method in [Method::Pwcca, Method::Cka] {
        let options = Options { method, keep: Keep::All, ..Options::default() };
        let want = compare(&flat(&conv), &dense, &options).unwrap().mean;
        let got = compare_conv(&conv, &dense, dense_only(ConvDense::Flatten), &options).unwrap().0.mean;
        assert!((got - want).abs() < 1e-9, "{method}: {got} vs {want}");
    }
}

/// SVCCA by a direct float64 SVD of each centred layer: the top left singular vectors
/// kept by the rule, then the singular values of `U_a' U_b`.
fn svd_svcca(a: &Tensor, b: &Tensor, keep: Keep) -> (usize, usize, Vec<f64>) {
    let top = |x: &Tensor| {
        let x = x.to_kind(Kind::Double);
        let xc = &x - x.mean_dim(0, true, Kind::Double);
        let (u, s, _) = xc.svd(true, true);
        let s = Vec::<f64>::try_from(&s).unwrap();
        let k = match keep {
            Keep::TopK(k) => k,
            Keep::Variance(f) => {
                let total: f64 = s.iter().map(|v| v * v).sum();
                let mut acc = 0.0;
                s.iter()
                    .position(|v| {
                        acc += v * v;
                        acc / total >= f
                    })
                    .unwrap()
                    + 1
            }
            _ => unreachable!("the rules used here"),
        };
        (k, u.narrow(1, 0, k as i64))
    };
    let ((ka, ua), (kb, ub)) = (top(a), top(b));
    let (_, c, _) = ua.tr().mm(&ub).svd(true, false);
    let c = Vec::<f64>::try_from(&c.clamp_max(1.0)).unwrap();
    (ka, kb, c[..ka.min(kb)].to_vec())
}

#[test]
fn a_layer_wider_than_the_datapoints_takes_the_gram_route_to_the_same_numbers() {
    // 200 datapoints, 8x8x8 = 512 neurons: the summaries work from the 200 x 200 Gram
    // matrix; the 512 x 512 scatter matrix still fits, for the brute force.
    let (conv, dense) = conv_and_dense_pair(11, 200, [8, 8, 8], 30);
    // Two constant neurons: dropped (and counted) by either route.
    let conv = conv.flatten(1, -1);
    let _ = conv.narrow(1, 7, 2).fill_(1.5);
    let conv = conv.view([200, 8, 8, 8]);
    for keep in [Keep::TopK(12), Keep::Variance(0.9), Keep::Variance(0.99)] {
        let options = Options { method: Method::Svcca, keep, ..Options::default() };
        let (s, report) = compare_conv(&conv, &dense, dense_only(ConvDense::Flatten), &options).unwrap();
        assert_eq!(report.conv_dense, Some(ConvDense::Flatten));
        let (ka, kb, c) = svd_svcca(&flat(&conv), &dense, keep);
        assert_eq!((s.kept_a, s.kept_b), (ka as i64, kb as i64), "{keep:?}");
        assert!(ka > 5 && ka < 100, "{keep:?}: kept {ka}: the cut says nothing");
        assert_close(&s.correlations, &c, 1e-9, &format!("{keep:?}: correlations against the direct SVD"));
        let brute = compare(&flat(&conv), &dense, &options).unwrap();
        assert!((s.mean - brute.mean).abs() < 1e-9, "{keep:?}: {} vs the scatter route {}", s.mean, brute.mean);
        assert_eq!((s.neurons_a, s.constant_a, s.datapoints), (512, 2, 200), "{keep:?}");
        assert_eq!(s.warnings.len(), 1, "{keep:?}: fewer datapoints than neurons is said: {:?}", s.warnings);
        // Any wide dense layer takes the same route in the analyses' summaries.
        let mut a = Layers::new(vec![flat(&conv)], options, ConvOptions::default());
        let mut b = Layers::new(vec![dense.shallow_clone()], options, ConvOptions::default());
        let got = summary::similarity(&mut a, 0, &mut b, 0).unwrap();
        assert!((got - brute.mean).abs() < 1e-9, "{keep:?}: wide dense summary {got} vs {}", brute.mean);
    }
    // CCA keeps every direction the 200 datapoints hold (199): each of the dense
    // layer's 30 is then explained perfectly.
    let cca = Options { method: Method::Cca, keep: Keep::All, ..Options::default() };
    let (s, _) = compare_conv(&conv, &dense, dense_only(ConvDense::Flatten), &cca).unwrap();
    assert_eq!((s.kept_a, s.kept_b), (199, 30));
    assert!(s.correlations.iter().all(|&c| c > 1.0 - 1e-9), "{:?}", s.correlations);
}

/// A tracing subscriber's output, for the warnings.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn warnings_of<T>(f: impl FnOnce() -> T) -> (T, String) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt().with_writer(captured.clone()).with_ansi(false).finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    (out, text)
}

#[test]
fn the_analysis_falls_back_to_avgpool_on_a_small_probe_and_says_so_once() {
    let mut config = Config::default();
    assert_eq!(config.analysis.conv_dense, ConvDense::Flatten, "flatten is the default");
    let names: Vec<String> = ["c1", "c2", "fc"].map(String::from).to_vec();
    // 4x4x4 = 64 neurons flatten from 320 datapoints on (5 per neuron); 2x2x2 = 8 from 40.
    for (n, falls_back) in [(319, true), (320, false)] {
        let (conv, dense) = conv_and_dense_pair(21, n, [4, 4, 4], 20);
        let small = pooled(&conv).narrow(1, 0, 2).unsqueeze(2).unsqueeze(3).repeat([1, 1, 2, 2]) + randn(5, n, 8).view([n, 2, 2, 2]);
        let layers = vec![conv.shallow_clone(), small.shallow_clone(), dense.shallow_clone()];
        let (fallen, log) = warnings_of(|| conv_dense_fallbacks(&config, &names, &layers, true));
        let options = Options::default();
        let want = if falls_back { compare(&pooled(&conv), &dense, &options) } else { compare(&flat(&conv), &dense, &options) };
        let mut a = LayerSet::new(layers.iter().map(Tensor::shallow_clone).collect(), &config);
        let mut b = LayerSet::new(layers.iter().map(Tensor::shallow_clone).collect(), &config);
        let got = analysis_similarity(&mut a, 0, &mut b, 2).unwrap();
        assert!((got - want.unwrap().mean).abs() < 1e-9, "{n} datapoints: {got}");
        let small_flat = compare(&flat(&small), &dense, &options).unwrap().mean;
        assert!((analysis_similarity(&mut a, 1, &mut b, 2).unwrap() - small_flat).abs() < 1e-9, "the small layer flattens");
        if falls_back {
            assert_eq!(fallen, vec!["c1".to_string()]);
            assert_eq!(log.matches("WARN").count(), 1, "one warning for the analysis: {log}");
            for needle in ["c1 (4x4x4 = 64 neurons)", "319 datapoints", "analysis.probe_size", "analysis.conv_dense = \"avgpool\""] {
                assert!(log.contains(needle), "the warning lacks {needle:?}: {log}");
            }
            assert!(!log.contains("c2"), "{log}");
        } else {
            assert!(fallen.is_empty() && log.is_empty(), "{fallen:?} {log}");
        }
        // Without a dense layer to meet, or with avgpool asked, nothing is said.
        let (none, quiet) = warnings_of(|| conv_dense_fallbacks(&config, &names, &layers, false));
        assert!(none.is_empty() && quiet.is_empty());
    }
    config.analysis.conv_dense = ConvDense::Avgpool;
    let (conv, dense) = conv_and_dense_pair(21, 319, [4, 4, 4], 20);
    let layers = vec![conv.shallow_clone(), dense.shallow_clone()];
    let (fallen, log) = warnings_of(|| conv_dense_fallbacks(&config, &names[..2], &layers, true));
    assert!(fallen.is_empty() && log.is_empty());
    // PWCCA and CKA, pair by pair, fall back alike.
    config.analysis.conv_dense = ConvDense::Flatten;
    config.analysis.method = Method::Cka;
    config.analysis.conv = crate::similarity::ConvMethod::Avgpool;
    let mut a = LayerSet::new(layers.iter().map(Tensor::shallow_clone).collect(), &config);
    let mut b = LayerSet::new(layers.iter().map(Tensor::shallow_clone).collect(), &config);
    let want = compare(&pooled(&conv), &dense, &Options { method: Method::Cka, keep: Keep::All, ..Options::default() }).unwrap().mean;
    assert!((analysis_similarity(&mut a, 0, &mut b, 1).unwrap() - want).abs() < 1e-9);
}
