//! The DFT method for conv layers: against google/svcca's `fourier_ccas` (fixtures), the
//! paper's Theorem 1 on data made here (it must hold on translation-invariant data with
//! circular structure, and must not on data that breaks it), and the CPU (rustfft)
//! spectrum against the CUDA path's libtorch FFT run on CPU tensors.

mod common;
use common::*;
use svcca::similarity::dft::FrequencyPlan;
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
fn rustfft_spectrum_equals_the_libtorch_fft_path() {
    for (sa, sb) in [((6, 8), (6, 8)), ((8, 8), (4, 4)), ((7, 5), (7, 5)), ((6, 6), (3, 5))] {
        let plan = FrequencyPlan::new(sa, sb);
        let x = randn(9, 5 * 3, sa.0 * sa.1).view([5, 3, sa.0, sa.1]);
        let shift = randn(10, 3, sa.0 * sa.1).view([3, sa.0, sa.1]);
        let cpu = plan.spectrum_rustfft(&x, &shift, Kind::Double);
        let torch = plan.spectrum_torch(&x, &shift, Kind::Double);
        assert_eq!((cpu.kind(), torch.kind()), (Kind::Double, Kind::Double));
        assert_eq!(cpu.size(), torch.size());
        assert_eq!(cpu.size()[0] as usize, plan.computed.len());
        let diff = (&cpu - &torch).abs().max().double_value(&[]);
        assert!(diff < 1e-12, "{sa:?} vs {sb:?}: {diff}");

        // In float32 (analysis.precision): written straight from the float64 transform,
        // no float64 copy made. rustfft's is its float64 spectrum rounded as libtorch
        // rounds; libtorch's within a rounding of it.
        let rounded = cpu.to_kind(Kind::Float);
        let (cpu32, torch32) = (plan.spectrum_rustfft(&x, &shift, Kind::Float), plan.spectrum_torch(&x, &shift, Kind::Float));
        assert_eq!((cpu32.kind(), torch32.kind()), (Kind::Float, Kind::Float));
        assert!(
            bool::try_from(cpu32.eq_tensor(&rounded).all()).unwrap(),
            "{sa:?} vs {sb:?}: rustfft's float32 spectrum is not float64's rounded"
        );
        let (diff, scale) = ((&torch32 - &rounded).abs().max().double_value(&[]), cpu.abs().max().double_value(&[]));
        assert!(diff <= f64::from(f32::EPSILON) * scale, "{sa:?} vs {sb:?}: libtorch's float32 spectrum {diff} from rustfft's");
    }
}

#[test]
fn frequency_plan_pairs_conjugates_and_keeps_cropped_nyquist() {
    // Same sizes: (u, v) pairs with (-u, -v); self-conjugate ones stand alone.
    let p = FrequencyPlan::new((4, 4), (4, 4));
    assert_eq!(p.source.len(), 16);
    assert_eq!(p.multiplicity.iter().sum::<usize>(), 16);
    assert_eq!(p.computed.len(), 10); // 4 self-conjugate + 12 / 2
    assert_eq!(p.source[1], p.source[3]); // (0, 1) and (0, -1)
    assert_eq!(p.source[4 + 2], p.source[3 * 4 + 2]); // (1, -2) and (-1, 2 = -2 mod 4)
                                                      // Cropped 8 -> 4: frequency 2 was cropped away, so (1, -2) has no mirror.
    let p = FrequencyPlan::new((8, 8), (4, 4));
    assert_eq!(p.multiplicity.iter().sum::<usize>(), 16);
    assert_ne!(p.source[4 + 2], p.source[3 * 4 + 2]);
    assert_eq!(p.source[1], p.source[3]);
    // 9 locations without a -2: (0, 0) alone and 4 pairs; the 7 with a -2 alone.
    assert_eq!(p.computed.len(), 12);
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
