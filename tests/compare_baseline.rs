//! `svcca compare --baseline`: the chance level of a similarity, A's datapoints shuffled
//! against B's. Independent random layers score high by construction when one side is
//! wide (flatten) yet sit at their chance level; a dependent pair sits far above it;
//! every shuffle's similarity is the plain comparison of a file holding A's rows in
//! that shuffle's order, for every comparison form (dense, the conv methods, a conv
//! layer against a dense one by both routes, streamed); the seed reproduces the
//! shuffles; misuse is refused.

mod common;
use common::*;
use std::path::Path;
use svcca::compare::{Baseline, CompareJob};
use svcca::similarity::{ConvDense, ConvMethod, ConvOptions, Keep, Layout, Method, Options};
use tch::{Device, Kind, Tensor};

/// Writes a matrix as float32 `.npy` in Fortran (column-major) order.
fn write_fortran(dir: &Path, name: &str, t: &Tensor) -> String {
    let (rows, cols) = (t.size()[0] as usize, t.size()[1] as usize);
    let columns = Vec::<f32>::try_from(&t.to_kind(Kind::Float).tr().contiguous().flatten(0, -1)).unwrap();
    let array = ndarray::Array2::from_shape_vec((cols, rows), columns).unwrap().reversed_axes();
    assert!(!array.is_standard_layout());
    let path = dir.join(name);
    ndarray_npy::write_npy(&path, &array).unwrap();
    path.display().to_string()
}

fn f(v: &serde_json::Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

/// `sqrt(max(k_a, k_b) / (n - 1))`: about where the mean canonical correlation of
/// independent data lies, `k` the directions kept on each side, `n` the datapoints. The
/// squared correlations sum to `tr(P_a P_b)`, the projections on two independent random
/// subspaces of the `n - 1` centred dimensions, whose expectation is `k_a k_b / (n - 1)`;
/// over `min(k_a, k_b)` correlations that is a mean square of `max(k_a, k_b) / (n - 1)`,
/// and the mean is at most its root (Jensen), close below it when the correlations are
/// alike.
fn independent_level(out: &serde_json::Value) -> f64 {
    let (ka, kb, n) = (out["kept_a"].as_f64().unwrap(), out["kept_b"].as_f64().unwrap(), out["datapoints"].as_f64().unwrap());
    (ka.max(kb) / (n - 1.0)).sqrt()
}

/// Independent standard normal inputs, 4000 datapoints: a 16x7x7 conv layer (784
/// neurons flattened) against a 128-wide dense one. Flattened, SVCCA reads above 0.4
/// where nothing is shared: a wide layer finds directions that correlate by chance. The
/// shuffles score the same, since shuffling independent data changes nothing of its
/// distribution: the similarity is one more draw of what they are draws of, so it lies
/// within a few of their standard deviations of their mean, and that mean is near the
/// closed form above. Channel means (16 neurons) have less room: against a 10-wide
/// vector, both low.
#[test]
fn independent_layers_sit_at_their_chance_level_however_high_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let conv = write_npy(d, "conv.npy", &randn(1, 4000, 16 * 7 * 7).view([4000, 16, 7, 7]));
    let fc = write_npy(d, "fc.npy", &randn(2, 4000, 128));
    let vector = write_npy(d, "vector.npy", &randn(3, 4000, 10));
    // --baseline alone, before the files: 5 shuffles, no file taken for its value.
    let flat = json(&svcca(&["compare", "--baseline", &conv, &fc, "--conv-dense", "flatten", "--json"]));
    let (sim, chance) = (f(&flat["mean"]), &flat["chance"]);
    let (mean, std) = (f(&chance["mean"]), f(&chance["std"]));
    assert!(sim > 0.3, "flatten: {sim}");
    assert_eq!((chance["shuffles"].as_u64(), chance["seed"].as_u64()), (Some(5), Some(0)));
    assert!(std > 0.0 && std < 0.02, "spread {std}");
    assert!((sim - mean).abs() < 4.0 * std + 0.01, "similarity {sim} vs chance {mean} +- {std}");
    assert!((f(&chance["above"]) - (sim - mean)).abs() < 1e-12);
    let level = independent_level(&flat);
    assert!(mean < 1.01 * level && mean > 0.9 * level, "chance {mean} vs {level}");
    // The reported mean and spread are those of the listed similarities (n - 1).
    let values: Vec<f64> = chance["similarities"].as_array().unwrap().iter().map(f).collect();
    assert_eq!(values.len(), 5);
    let m = values.iter().sum::<f64>() / 5.0;
    let s = (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 4.0).sqrt();
    assert!((m - mean).abs() < 1e-12 && (s - std).abs() < 1e-12, "{values:?}: {m} {s} vs {mean} {std}");

    for (dense, below) in [(&fc, 0.25), (&vector, 0.15)] {
        let pooled = json(&svcca(&["compare", &conv, dense, "--conv-dense", "avgpool", "--baseline=3", "--json"]));
        let (sim, mean, std) = (f(&pooled["mean"]), f(&pooled["chance"]["mean"]), f(&pooled["chance"]["std"]));
        assert!(sim < below && mean < below, "avgpool against {dense}: {sim}, chance {mean}");
        assert!((sim - mean).abs() < 4.0 * std + 0.01, "avgpool against {dense}: {sim} vs chance {mean} +- {std}");
        let level = independent_level(&pooled);
        assert!(mean < 1.01 * level && mean > 0.85 * level, "avgpool against {dense}: chance {mean} vs {level}");
    }
}

/// B a noisy linear map of A: the similarity far above its chance level, which is near
/// what independent layers of these sizes give; the summary says so.
#[test]
fn a_dependent_pair_sits_far_above_chance() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a = randn(3, 1000, 30);
    let b = a.mm(&randn(4, 30, 10)) + randn(5, 1000, 10) * 0.5;
    let (fa, fb) = (write_npy(d, "a.npy", &a), write_npy(d, "b.npy", &b));
    let out = json(&svcca(&["compare", &fa, &fb, "--baseline=4", "--json"]));
    let (sim, mean, std) = (f(&out["mean"]), f(&out["chance"]["mean"]), f(&out["chance"]["std"]));
    assert!(sim > 0.9, "{sim}");
    assert!(mean < 0.2, "chance {mean}");
    assert!(sim - mean > 20.0 * std && sim - mean > 0.7, "{sim} vs {mean} +- {std}");
    let text = stdout(&svcca(&["compare", &fa, &fb, "--baseline=4"]));
    assert!(text.contains(&format!("chance level {mean:.6} (std {std:.6} over 4 shuffles")), "{text}");
    assert!(text.contains(&format!("similarity - chance = {:.6}", sim - mean)), "{text}");
    // Without --baseline: no chance level, in the JSON or the summary.
    let plain = json(&svcca(&["compare", &fa, &fb, "--json"]));
    assert!(plain.get("chance").is_none(), "{plain}");
    assert!(!stdout(&svcca(&["compare", &fa, &fb])).contains("chance"));
}

/// The job for `a` and `b` under `method`, `conv` (4-D pairs), `conv_dense` (mixed).
fn job(a: &str, b: &str, method: Method, conv: Option<ConvOptions>, conv_dense: Option<ConvDense>, budget: u64) -> CompareJob {
    CompareJob {
        a: a.into(),
        b: b.into(),
        options: Options { method, keep: if method == Method::Svcca { Keep::Variance(0.99) } else { Keep::All }, ..Options::default() },
        conv,
        conv_dense,
        layout: Layout::Nchw,
        device: Device::Cpu,
        memory_budget: budget,
        baseline: None,
    }
}

/// Each shuffle's similarity is the comparison, without a baseline, of a file holding
/// A's rows in that shuffle's order against B: for dense layers by every method, for
/// two conv layers by dft, avgpool and flatten (positions subsampled, drawn by place),
/// for a conv layer against a dense one by flatten (the scatter route and, wider than
/// the datapoints, the Gram route) and avgpool, and streamed in blocks (from C- and
/// Fortran-order files).
#[test]
fn every_shuffle_is_the_comparison_of_the_shuffled_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Related layers, so the pairings differ from one another.
    let latent = randn(10, 200, 8);
    let mix = |seed: i64, width: i64| latent.mm(&randn(seed, 8, width)) + randn(seed + 1, 200, width) * 0.7;
    let dense_a = mix(11, 20);
    let dense_b = mix(13, 12);
    let conv_a = mix(15, 4 * 6 * 6).view([200, 4, 6, 6]);
    let conv_b = mix(17, 3 * 6 * 6).view([200, 3, 6, 6]);
    let wide = mix(19, 4 * 8 * 8).view([200, 4, 8, 8]);
    // Longer, to stream: blocks are at least 256 datapoints.
    let long = randn(21, 600, 8);
    let (long_a, long_b) = (long.mm(&randn(22, 8, 20)) + randn(23, 600, 20), long.mm(&randn(24, 8, 12)) + randn(25, 600, 12));
    let conv = |method: ConvMethod, max_datapoints: usize| Some(ConvOptions { method, max_datapoints, seed: 3, ..ConvOptions::default() });
    let files: Vec<(&str, &Tensor)> = vec![
        ("da", &dense_a),
        ("db", &dense_b),
        ("ca", &conv_a),
        ("cb", &conv_b),
        ("wide", &wide),
        ("la", &long_a),
        ("lb", &long_b),
        ("lf", &long_a),
    ];
    let path = |name: &str| d.join(format!("{name}.npy")).display().to_string();
    for (name, t) in &files {
        match *name {
            "lf" => write_fortran(d, "lf.npy", t),
            _ => write_npy(d, &format!("{name}.npy"), t),
        };
    }
    let big = 1 << 30;
    // (A's name, the comparison without a baseline.)
    let case = |a: &'static str, b: &str, method, conv, conv_dense, budget| (a, job(&path(a), &path(b), method, conv, conv_dense, budget));
    let cases = [
        case("da", "db", Method::Svcca, None, None, big),
        case("da", "db", Method::Pwcca, None, None, big),
        case("da", "db", Method::Cka, None, None, big),
        // The smallest budget: blocks of 256 datapoints, the shuffled rows read from
        // across the file.
        case("la", "lb", Method::Cca, None, None, 1),
        // The same from a Fortran-order file: each block's rows picked from its columns.
        case("lf", "lb", Method::Cca, None, None, 1),
        case("ca", "cb", Method::Svcca, conv(ConvMethod::Dft, 100_000), None, big),
        case("ca", "cb", Method::Cca, conv(ConvMethod::Avgpool, 100_000), None, big),
        // 2000 of 200 x 36 positions: 10 a datapoint, drawn by the datapoint's place.
        case("ca", "cb", Method::Svcca, conv(ConvMethod::Flatten, 2000), None, big),
        case("ca", "db", Method::Svcca, None, Some(ConvDense::Flatten), big),
        case("ca", "db", Method::Svcca, None, Some(ConvDense::Avgpool), big),
        // 256 neurons against 200 datapoints: the Gram route, summaries reused.
        case("wide", "db", Method::Svcca, None, Some(ConvDense::Flatten), big),
    ];
    let baseline = Baseline { shuffles: 3, seed: 7 };
    for (a, plain) in cases {
        let what = format!("{plain:?}");
        let with = CompareJob { baseline: Some(baseline), ..plain.clone() }.run().unwrap();
        let chance = with.chance.as_ref().unwrap_or_else(|| panic!("{what}: no chance level"));
        let x = files.iter().find(|(n, _)| *n == a).unwrap().1;
        assert_eq!(with.blocks > 1, plain.memory_budget == 1, "{what}: {} blocks", with.blocks);
        let mut seen = Vec::new();
        for (k, &got) in chance.similarities.iter().enumerate() {
            let order = Tensor::from_slice(&baseline.order(k, x.size()[0] as usize));
            let shuffled = write_npy(d, "shuffled.npy", &x.index_select(0, &order));
            let want = CompareJob { a: shuffled.into(), ..plain.clone() }.run().unwrap().similarity.mean;
            assert!((got - want).abs() < 1e-8, "{what}, shuffle {k}: {got} vs the shuffled file's {want}");
            seen.push(want);
        }
        assert!(seen.iter().all(|&s| (s - with.similarity.mean).abs() > 1e-6), "{what}: a shuffle scored as the pairing {seen:?}");
        assert!((seen[0] - seen[1]).abs() > 1e-9, "{what}: two shuffles alike {seen:?}");
    }
}

/// The same seed gives the same shuffles and numbers; another seed, other ones.
#[test]
fn the_seed_reproduces_the_shuffles() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (fa, fb) = (write_npy(d, "a.npy", &randn(21, 300, 12)), write_npy(d, "b.npy", &randn(22, 300, 9)));
    let chance = |seed: &str| json(&svcca(&["compare", &fa, &fb, "--baseline=3", "--seed", seed, "--json"]))["chance"].clone();
    let (first, again, other) = (chance("5"), chance("5"), chance("6"));
    assert_eq!(first["similarities"], again["similarities"]);
    assert_eq!((first["mean"].clone(), first["std"].clone()), (again["mean"].clone(), again["std"].clone()));
    assert_eq!(other["seed"].as_u64(), Some(6));
    let (x, y) = (first["similarities"].as_array().unwrap(), other["similarities"].as_array().unwrap());
    assert!(x.iter().zip(y).all(|(x, y)| f(x) != f(y)), "{x:?} vs {y:?}");
    assert!(f(&first["mean"]) != f(&other["mean"]));
    assert_eq!(Baseline { shuffles: 3, seed: 5 }.order(0, 300), Baseline { shuffles: 3, seed: 5 }.order(0, 300));
}

#[test]
fn a_baseline_without_a_spread_or_anything_to_shuffle_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (fa, fb) = (write_npy(d, "a.npy", &randn(31, 50, 4)), write_npy(d, "b.npy", &randn(32, 50, 3)));
    for n in ["0", "1"] {
        let flag = format!("--baseline={n}");
        assert_refused_silent(&svcca(&["compare", &fa, &fb, &flag]), &[&format!("--baseline {n}"), "at least 2 shuffles"]);
    }
    assert_refused_silent(&svcca(&["compare", &fa, &fb, "--baseline=many"]), &["many"]);
    let (ta, tb) = (write_npy(d, "ta.npy", &randn(33, 2, 4)), write_npy(d, "tb.npy", &randn(34, 2, 3)));
    assert_refused_silent(&svcca(&["compare", &ta, &tb, "--baseline"]), &["--baseline", "2 datapoints"]);
}
