//! The DFT method for conv layers: against google/svcca's `fourier_ccas` (fixtures), the
//! paper's Theorem 1 on data made here (it must hold on translation-invariant data with
//! circular structure, and must not on data that breaks it), and the CPU (rustfft)
//! spectrum against the CUDA path's libtorch FFT run on CPU tensors.

mod common;
use common::*;
use svcca::similarity::{compare, compare_conv, ConvMethod, ConvOptions, Keep, Layout, Method, Options};
use tch::{Kind, Tensor};

fn dft() -> ConvOptions {
    ConvOptions { method: ConvMethod::Dft, ..ConvOptions::default() }
}

fn cca() -> Options {
    Options { method: Method::Cca, keep: Keep::All, ..Options::default() }
}

fn nchw(name: &str) -> Tensor {
    Layout::Nhwc.to_nchw(&load(name))
}

/// Checks per-frequency correlations and the overall mean against a fixture case.
fn check_case(case_name: &str, a: &str, b: &str) {
    let c = case(case_name);
    let e = &c["expected"];
    let (s, report) = compare_conv(&nchw(a), &nchw(b), dft(), &cca()).unwrap();
    let freqs = report.frequencies.unwrap();
    let want = e["per_frequency"].as_array().unwrap();
    assert_eq!(freqs.len(), want.len());
    assert_eq!(freqs.len() as u64, e["n_frequencies"].as_u64().unwrap());
    for (got, want) in freqs.iter().zip(want) {
        let loc: Vec<i64> = want["location"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
        assert_eq!(got.location.to_vec(), loc);
        assert_close(&got.correlations, &floats(&want["cca_coef1"]), 1e-6, &format!("{case_name} at {loc:?}"));
    }
    let mean = e["mean_over_all_frequencies_and_coefs"].as_f64().unwrap();
    assert!((s.mean - mean).abs() < 1e-6, "{case_name}: mean {} vs {mean}", s.mean);
    // About half the frequencies are computed, the rest mirror them.
    assert!(report.frequencies_computed.unwrap() <= freqs.len() / 2 + 4);
}

#[test]
fn case5_matches_the_reference_per_frequency() {
    check_case("case5_dft_conv", "case5_A_nhwc.npy", "case5_B_nhwc.npy");
}

#[test]
fn case5b_different_sizes_crop_the_larger_spectrum() {
    check_case("case5b_dft_resize", "case5_A_nhwc.npy", "case5b_B_pooled_nhwc.npy");
}

#[test]
fn case5exact_dft_equals_full_flattened_cca() {
    let e = case("case5exact_dft_equals_full")["expected"].clone();
    let (a, b) = (nchw("case5exact_A_nhwc.npy"), nchw("case5exact_B_nhwc.npy"));
    let (s, _) = compare_conv(&a, &b, dft(), &cca()).unwrap();
    assert_close(&s.correlations, &floats(&e["dft_all_coefs_sorted_desc"]), 1e-6, "dft coefficients");
    assert_close(&s.correlations, &floats(&e["full_cca_coef1"]), 1e-6, "full CCA coefficients");
}

#[test]
fn theorem_holds_on_translation_invariant_data_and_fails_without() {
    let (n0, c1, c2, h, w) = (60, 3, 2, 4, 4);
    let a0 = randn(1, n0 * c1, h * w).view([n0, c1, h, w]);
    let k = randn(2, c2 * c1, 9).view([c2, c1, 3, 3]);
    let b0 = circular_conv(&a0, &k).relu() + randn(3, n0 * c2, h * w).view([n0, c2, h, w]) * 0.3;
    let (a, b) = (all_shifts(&a0), all_shifts(&b0));
    let flat = |x: &Tensor| x.permute([0, 2, 3, 1]).reshape([x.size()[0], -1]);
    let brute = compare(&flat(&a), &flat(&b), &cca()).unwrap();
    let (s, _) = compare_conv(&a, &b, dft(), &cca()).unwrap();
    assert_eq!(s.correlations.len(), (h * w * c2) as usize);
    assert_close(&s.correlations, &brute.correlations, 1e-8, "dft vs brute force");
    assert!((s.mean - brute.mean).abs() < 1e-9);

    // The same layers without the shifts break translation invariance: the
    // per-frequency blocks no longer hold all the structure, and the answers part.
    let (s, _) = compare_conv(&a0, &b0, dft(), &cca()).unwrap();
    let brute = compare(&flat(&a0), &flat(&b0), &cca()).unwrap();
    let worst = s.correlations.iter().zip(&brute.correlations).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
    assert!(worst > 0.05, "without translation invariance dft still equals brute force ({worst})");
}

#[test]
fn svcca_per_frequency_and_the_other_conv_methods() {
    let (a, b) = (nchw("case5_A_nhwc.npy"), nchw("case5_B_nhwc.npy"));
    // SVCCA applies the keep rule per frequency: fewer coefficients, higher mean.
    let sv = Options { method: Method::Svcca, keep: Keep::TopK(4), ..Options::default() };
    let (s, r) = compare_conv(&a, &b, dft(), &sv).unwrap();
    assert!(r.frequencies.unwrap().iter().all(|f| f.correlations.len() == 4));
    assert_eq!(s.correlations.len(), 64 * 4);
    // avgpool equals dense CCA of the spatial means.
    let opts = ConvOptions { method: ConvMethod::Avgpool, ..ConvOptions::default() };
    let (s, _) = compare_conv(&a, &b, opts, &cca()).unwrap();
    let means = |x: &Tensor| x.mean_dim(&[2i64, 3][..], false, Kind::Double);
    let dense = compare(&means(&a), &means(&b), &cca()).unwrap();
    assert_close(&s.correlations, &dense.correlations, 1e-12, "avgpool");
    // flatten with every position equals dense CCA of positions-as-datapoints.
    let opts = ConvOptions { method: ConvMethod::Flatten, max_datapoints: 1 << 30, seed: 0, ..ConvOptions::default() };
    let (s, r) = compare_conv(&a, &b, opts, &cca()).unwrap();
    assert_eq!((s.datapoints, r.positions_per_datapoint), (256 * 64, Some(64)));
    let folded = |x: &Tensor| x.permute([0, 2, 3, 1]).reshape([-1, x.size()[1]]);
    let dense = compare(&folded(&a), &folded(&b), &cca()).unwrap();
    assert_close(&s.correlations, &dense.correlations, 1e-10, "flatten");
    // ...and a budget subsamples positions, the same for a given seed.
    let small = ConvOptions { method: ConvMethod::Flatten, max_datapoints: 256 * 10, seed: 7, ..ConvOptions::default() };
    let (s1, r1) = compare_conv(&a, &b, small, &cca()).unwrap();
    let (s2, _) = compare_conv(&a, &b, small, &cca()).unwrap();
    assert_eq!((s1.datapoints, r1.positions_per_datapoint), (2560, Some(10)));
    assert_eq!(s1.correlations, s2.correlations);
    let other_seed = ConvOptions { seed: 8, ..small };
    assert_ne!(compare_conv(&a, &b, other_seed, &cca()).unwrap().0.correlations, s1.correlations);
}

#[test]
fn conv_misuse_is_refused() {
    let a = randn(1, 40, 3 * 16).view([40, 3, 4, 4]);
    let dense = randn(2, 40, 5);
    // A conv layer against a dense one is `ConvOptions::dense`'s (tests/conv_dense.rs);
    // two dense layers are no conv comparison.
    let e = compare_conv(&dense, &dense, dft(), &cca()).unwrap_err().to_string();
    assert!(e.contains("layer A") && e.contains("4-D"), "{e}");
    assert!(compare_conv(&a, &dense, dft(), &cca()).is_ok());
    let one = randn(3, 40, 3).view([40, 3, 1, 1]);
    let e = compare_conv(&one, &one, dft(), &cca()).unwrap_err().to_string();
    assert!(e.contains("too small"), "{e}");
    let pw = Options { method: Method::Pwcca, keep: Keep::All, ..Options::default() };
    assert!(compare_conv(&a, &a, dft(), &pw).unwrap_err().to_string().contains("per frequency"));
}
