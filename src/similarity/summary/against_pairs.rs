//! Per-layer summaries (computed once, reused for every pair) against the one-pair
//! scatter-matrix route they replace, and the DFT's global cut against SVCCA of the
//! flattened layers (Theorem 1).

use crate::similarity::summary::{similarities, similarity, summarise_rows, Layers};
use crate::similarity::{compare, compare_conv, ConvDense, ConvMethod, ConvOptions, DftCut, Keep, Method, Options};
use crate::test_support::*;
use tch::{Kind, Tensor};

fn conv_layer(seed: i64, n: i64, c: i64, h: i64, w: i64) -> Tensor {
    randn(seed, n, c * h * w).view([n, c, h, w])
}

/// The mean `compare`/`compare_conv` report, with the settings a multi-layer analysis
/// applies to the pair (avgpool where the chosen method does not apply).
fn direct(x: &Tensor, y: &Tensor, conv: ConvOptions, options: &Options) -> f64 {
    if x.dim() == 2 && y.dim() == 2 {
        return compare(x, y, options).unwrap().mean;
    }
    let shape = crate::similarity::conv::LayerShape::of;
    let applied = crate::similarity::conv::applicable(conv, [shape(x), shape(y)], x.size()[0]);
    compare_conv(x, y, applied, options).unwrap().0.mean
}

#[test]
fn summaries_give_the_numbers_of_the_pairwise_route_for_every_method_and_form() {
    let n = 300;
    // A mixed network: two conv layers of different sizes and channel counts (the DFT
    // crops the larger), a 1x1 map, a dense layer, all related so that similarities are
    // far from 0 and 1; one side is the same layers perturbed.
    let c1 = conv_layer(1, n, 4, 8, 8);
    let c2 =
        (c1.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>).repeat([1, 2, 1, 1]) + conv_layer(2, n, 8, 4, 4) * 0.5).relu();
    let tiny = c2.mean_dim(&[2i64, 3][..], true, Kind::Float);
    let dense = c2.flatten(1, -1).narrow(1, 0, 20) + randn(3, n, 20) * 0.3;
    let layers = [c1, c2, tiny, dense];
    let noisy: Vec<Tensor> = layers.iter().enumerate().map(|(i, t)| t + Tensor::randn_like(t) * 0.4 * (i + 1) as f64).collect();
    for options in [
        Options { method: Method::Svcca, keep: Keep::Variance(0.99), ..Options::default() },
        Options { method: Method::Svcca, keep: Keep::Singular(0.9), ..Options::default() },
        Options { method: Method::Svcca, keep: Keep::TopK(2), ..Options::default() },
        Options { method: Method::Cca, keep: Keep::All, ..Options::default() },
    ] {
        for method in [ConvMethod::Dft, ConvMethod::Flatten, ConvMethod::Avgpool] {
            for (cut, dense) in [(DftCut::Global, ConvDense::Flatten), (DftCut::PerFrequency, ConvDense::Avgpool)] {
                // The 1x1 map (8 neurons) flattens against the dense layer; the others,
                // too wide for 300 datapoints, fall back to avgpool.
                let conv = ConvOptions { method, cut, max_datapoints: 4000, seed: 3, dense };
                let mut a = Layers::new(layers.iter().map(Tensor::shallow_clone).collect(), options, conv);
                let mut b = Layers::new(noisy.iter().map(Tensor::shallow_clone).collect(), options, conv);
                // Rows (one product against the b layers side by side, per form) with and
                // without the side-by-side copies, and pairs one at a time.
                let mut rows = Layers::new(noisy.iter().map(Tensor::shallow_clone).collect(), options, conv);
                let mut apart = Layers::new(noisy.iter().map(Tensor::shallow_clone).collect(), options, conv).with_joined_budget(0);
                let all: Vec<usize> = (0..noisy.len()).collect();
                // The rows' summaries made all at once, side by side, before the rows:
                // every one the rows ask for, the same numbers.
                let mut ahead = Layers::new(layers.iter().map(Tensor::shallow_clone).collect(), options, conv);
                let mut rows_ahead = Layers::new(noisy.iter().map(Tensor::shallow_clone).collect(), options, conv);
                summarise_rows(&mut ahead, &all, &rows_ahead, &all);
                let made = ahead.summaries_made();
                assert!(made >= layers.len(), "{options:?} {method:?} {cut:?} {dense:?}: {made} summaries made ahead");
                for (i, x) in layers.iter().enumerate() {
                    let row = similarities(&mut a, i, &mut rows, &all);
                    let row_apart = similarities(&mut a, i, &mut apart, &all);
                    let row_ahead = similarities(&mut ahead, i, &mut rows_ahead, &all);
                    assert_eq!(ahead.summaries_made(), made, "{options:?} {method:?} {cut:?} {dense:?}: row {i} made a summary");
                    for (j, (r, r_ahead)) in row.iter().zip(&row_ahead).enumerate() {
                        let (r, r_ahead) = (r.as_ref().unwrap(), r_ahead.as_ref().unwrap());
                        assert!((r - r_ahead).abs() < 1e-12, "layer {i} vs {j}, summarised ahead: {r_ahead} vs {r}");
                    }
                    for (j, y) in noisy.iter().enumerate() {
                        let got = similarity(&mut a, i, &mut b, j).unwrap();
                        let want = direct(x, y, conv, &options);
                        let what = format!("{options:?} {method:?} {cut:?} {dense:?} layer {i} vs {j}");
                        assert!((got - want).abs() < 1e-10, "{what}: {got} vs {want}");
                        assert!(got > 0.01 && got < 0.999, "{what}: {got} says nothing");
                        for (how, row) in [("row", &row), ("row without copies", &row_apart)] {
                            let r = *row[j].as_ref().unwrap();
                            assert!((r - want).abs() < 1e-10, "{what}, {how}: {r} vs {want}");
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_constant_layer_is_an_error_of_its_side_for_every_pair() {
    let options = Options::default();
    let conv = ConvOptions::default();
    let mut a = Layers::new(vec![Tensor::ones([50, 6], (Kind::Float, tch::Device::Cpu))], options, conv);
    let mut b = Layers::new(vec![randn(1, 50, 6), randn(2, 50, 3)], options, conv);
    for j in 0..2 {
        let e = similarity(&mut a, 0, &mut b, j).unwrap_err().to_string();
        assert!(e.contains("layer A") && e.contains("constant"), "{e}");
        // The same cached summary, now on the other side of a comparison.
        let e = similarity(&mut b, j, &mut a, 0).unwrap_err().to_string();
        assert!(e.contains("layer B") && e.contains("constant"), "{e}");
    }
    // In a row, the constant layer's pair is its error and the others are answered.
    let mut c = Layers::new(vec![randn(3, 50, 6), Tensor::ones([50, 4], (Kind::Float, tch::Device::Cpu)), randn(4, 50, 5)], options, conv);
    let row = similarities(&mut b, 0, &mut c, &[0, 1, 2]);
    assert!(row[0].as_ref().is_ok_and(|s| s.is_finite()) && row[2].as_ref().is_ok_and(|s| s.is_finite()), "{row:?}");
    let e = row[1].as_ref().unwrap_err().to_string();
    assert!(e.contains("layer B") && e.contains("constant"), "{e}");
    assert_eq!(*row[2].as_ref().unwrap(), similarity(&mut b, 0, &mut c, 2).unwrap());
}

#[test]
fn the_global_dft_cut_is_svcca_of_the_flattened_layers() {
    // Channels of very different scales, so that the 99% cut lands inside the spectrum
    // and keeps different numbers of directions at different frequencies and sides.
    let (n0, c1, c2, h, w) = (40, 4, 3, 4, 4);
    let scales = Tensor::from_slice(&[3.0f32, 1.0, 0.2, 0.05]).view([1, c1, 1, 1]);
    let a0 = randn(1, n0 * c1, h * w).view([n0, c1, h, w]) * scales;
    let k = randn(2, c2 * c1, 9).view([c2, c1, 3, 3]);
    let b0 = circular_conv(&a0, &k).relu() + randn(3, n0 * c2, h * w).view([n0, c2, h, w]) * 0.3;
    let (a, b) = (all_shifts(&a0), all_shifts(&b0));
    let flat = |x: &Tensor| x.permute([0, 2, 3, 1]).reshape([x.size()[0], -1]);
    let (mut checked, mut padded, mut differs) = (0, false, false);
    for keep in [Keep::Variance(0.99), Keep::Variance(0.9), Keep::Singular(0.99), Keep::Singular(0.8)] {
        let options = Options { method: Method::Svcca, keep, ..Options::default() };
        let global = ConvOptions { cut: DftCut::Global, ..ConvOptions::default() };
        let (s, report) = compare_conv(&a, &b, global, &options).unwrap();
        assert_eq!(report.cut, Some(DftCut::Global));
        let brute = compare(&flat(&a), &flat(&b), &options).unwrap();
        // A mirrored pair of frequencies holds two equal variances: the global cut keeps
        // or drops both, where the flattened layer's count may stop between the two.
        for (ours, theirs) in [(s.kept_a, brute.kept_a), (s.kept_b, brute.kept_b)] {
            assert!(ours == theirs || ours == theirs + 1, "{keep:?}: kept {ours} directions, flattened SVCCA {theirs}");
        }
        let same_count = (s.kept_a, s.kept_b) == (brute.kept_a, brute.kept_b);
        let brute = if same_count {
            brute
        } else {
            // Compare at the same count: the flattened layers cut to ours on each side.
            let top = |x: &Tensor, k: i64| {
                let (xc, kk) = (x.to_kind(Kind::Double), k as usize);
                let xc = &xc - xc.mean_dim(0, true, Kind::Double);
                let (u, sv, _) = xc.svd(true, true);
                u.narrow(1, 0, kk as i64) * sv.narrow(0, 0, kk as i64)
            };
            compare(
                &top(&flat(&a), s.kept_a),
                &top(&flat(&b), s.kept_b),
                &Options { method: Method::Cca, keep: Keep::All, ..Options::default() },
            )
            .unwrap()
        };
        // The flattened problem has min(K_a, K_b) correlations, the per-frequency ones
        // padded with zeros where a frequency keeps fewer on one side: the mean's
        // denominator.
        let mut ours = s.correlations.clone();
        ours.resize(brute.correlations.len(), 0.0);
        assert_close(&ours, &brute.correlations, 1e-8, &format!("{keep:?}: correlations"));
        assert!((s.mean - brute.mean).abs() < 1e-9, "{keep:?}: mean {} vs flattened {}", s.mean, brute.mean);
        checked += same_count as usize;
        padded |= s.correlations.len() < s.kept_a.min(s.kept_b) as usize;

        // Per frequency, each keeps its own fraction: other counts, another number.
        let per = ConvOptions { cut: DftCut::PerFrequency, ..global };
        let (p, report) = compare_conv(&a, &b, per, &options).unwrap();
        assert_eq!(report.cut, Some(DftCut::PerFrequency));
        differs |= (p.mean - s.mean).abs() > 1e-3;
    }
    assert!(checked > 0, "every rule stopped inside a mirrored pair: the plain comparison was never made");
    assert!(padded, "no case where frequencies keep fewer on one side than the other: the denominator went untested");
    assert!(differs, "the per-frequency cut gave the global cut's numbers every time");
}

/// `Precision::Float32` (products in float32, decompositions and sums in float64) against
/// float64, on layers of realistic scale: 4000 datapoints, a 256-neuron dense layer, a
/// 512-neuron wide one taking the Gram route... and conv layers under the DFT, with
/// channel means far from zero (as ReLU layers' are) so that the shift matters. The cost
/// is well under a part in a million of each similarity here (at most 2e-7 measured on
/// an AMD EPYC; docs/analysis.md, "Precision"); the test allows 1e-5.
#[test]
fn float32_products_stay_within_a_few_parts_in_a_million_of_float64() {
    use crate::similarity::Precision;
    let n = 4000;
    let signal = randn(20, n, 32);
    let mix = |seed: i64, width: i64, noise: f64| (signal.matmul(&randn(seed, 32, width)) + randn(seed + 1, n, width) * noise).relu() + 3.0;
    let dense_a = mix(21, 256, 1.0);
    let dense_b = mix(23, 128, 2.0);
    let wide = randn(25, 600, 5000).relu() + 1.0;
    let wide_b = wide.narrow(1, 0, 64) + randn(26, 600, 64);
    let conv_a = conv_layer(27, 1000, 16, 8, 8).relu() + 2.0;
    let conv_b = (conv_a.roll([1], [2]) + conv_layer(28, 1000, 16, 8, 8) * 0.5).relu();
    let mut worst: f64 = 0.0;
    for (keep, method) in [(Keep::Variance(0.99), Method::Svcca), (Keep::All, Method::Cca)] {
        let of = |precision| Options { method, keep, precision };
        let conv = ConvOptions { method: ConvMethod::Dft, ..ConvOptions::default() };
        for (x, y) in [(&dense_a, &dense_b), (&wide, &wide_b), (&conv_a, &conv_b)] {
            let pair = |p| {
                let mut a = Layers::new(vec![x.shallow_clone()], of(p), conv);
                let mut b = Layers::new(vec![y.shallow_clone()], of(p), conv);
                similarity(&mut a, 0, &mut b, 0).unwrap()
            };
            let (f64_, f32_) = (pair(Precision::Float64), pair(Precision::Float32));
            assert!(f64_ > 0.05, "{method:?} {f64_}: a pair far from 0");
            let diff = (f64_ - f32_).abs();
            println!("{method:?} {:?} x {:?}: float64 {f64_:.9}, float32 {f32_:.9}, |diff| {diff:.2e}", x.size(), y.size());
            worst = worst.max(diff);
        }
    }
    println!("worst |float32 - float64|: {worst:.2e}");
    assert!(worst < 1e-5, "float32 products moved a similarity by {worst:.2e}");
    // Not a no-op: the float32 route does compute in float32.
    assert!(worst > 0.0, "float32 products gave float64's numbers to the bit: the setting is not applied");
}

/// `Precision::Float32` along an analysis's paths, where the spectra and each `Z` are
/// made in float32 (not rounded from float64 copies): a conv layer against partners of
/// two sizes (one FFT, its full grid and a crop), a wide dense layer (the Gram route),
/// rows against the final layers with and without their side-by-side copies, and against
/// them compacted to their `Z`s (as a streamed analysis keeps them). Every similarity
/// within 1e-5 of float64's.
#[test]
fn float32_along_an_analysis_paths_stays_within_a_few_parts_in_a_million_of_float64() {
    use crate::similarity::Precision;
    let n = 600;
    let c1 = (conv_layer(31, n, 8, 8, 8) + 1.0).relu();
    let c2 = (c1.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>) + conv_layer(32, n, 8, 4, 4) * 0.5).relu() + 2.0;
    let dense = c2.flatten(1, -1).narrow(1, 0, 24) + randn(33, n, 24) * 0.3;
    let wide = Tensor::cat(&[c1.flatten(1, -1), c2.flatten(1, -1)], 1); // 640 neurons, 600 datapoints
    let layers = [c1, c2, dense, wide];
    let finals: Vec<Tensor> = layers.iter().enumerate().map(|(i, t)| t + Tensor::randn_like(t) * 0.3 * (i + 1) as f64).collect();
    let all: Vec<usize> = (0..layers.len()).collect();
    let conv = ConvOptions { method: ConvMethod::Dft, ..ConvOptions::default() };
    // Each row of the matrix three ways: [with copies, without, against compacted finals].
    let matrix = |precision| -> Vec<[Vec<f64>; 3]> {
        let options = Options { method: Method::Svcca, keep: Keep::Variance(0.99), precision };
        let set = |l: &[Tensor]| Layers::new(l.iter().map(Tensor::shallow_clone).collect(), options, conv);
        let (mut rows, mut joined, mut apart) = (set(&layers), set(&finals), set(&finals).with_joined_budget(0));
        let mut compacted = set(&finals).with_joined_budget(0);
        summarise_rows(&mut compacted, &all, &set(&layers), &all);
        for j in &all {
            compacted.compact(*j);
        }
        let answers = |r: Vec<Result<f64, _>>| r.into_iter().map(|s| s.unwrap()).collect::<Vec<f64>>();
        all.iter()
            .map(|&i| {
                [
                    answers(similarities(&mut rows, i, &mut joined, &all)),
                    answers(similarities(&mut rows, i, &mut apart, &all)),
                    answers(similarities(&mut rows, i, &mut compacted, &all)),
                ]
            })
            .collect()
    };
    let (wide_, narrow) = (matrix(Precision::Float64), matrix(Precision::Float32));
    let mut worst: f64 = 0.0;
    for (i, (w, n)) in wide_.iter().zip(&narrow).enumerate() {
        for (how, (w, n)) in ["with copies", "without", "compacted"].iter().zip(w.iter().zip(n)) {
            for (j, (w, n)) in w.iter().zip(n).enumerate() {
                assert!(*w > 0.05, "layer {i} vs {j}: {w}, a pair far from 0");
                assert!((w - n).abs() < 1e-5, "layer {i} vs {j}, {how}: float64 {w}, float32 {n}");
                worst = worst.max((w - n).abs());
            }
        }
    }
    println!("worst |float32 - float64| along the analysis's paths: {worst:.2e}");
    assert!(worst > 0.0, "float32 gave float64's numbers to the bit: the setting is not applied");
}
