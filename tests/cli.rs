//! `svcca compare` and `svcca example` end to end, through the real binary: the JSON a
//! user parses, and every kind of bad input refused with one line and status 2.

mod common;

use common::{assert_refused_silent, svcca, with_singular_values};
use ndarray::{Array, Array1, Array2, Array3};
use ndarray_npy::write_npy;
use std::path::{Path, PathBuf};
use std::process::Output;

/// A deterministic pair (datapoints x neurons) sharing a signal, without an RNG crate.
fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) as f32 - 0.5
    };
    let signal: Vec<f32> = (0..rows * 4).map(|_| next()).collect();
    Array2::from_shape_fn((rows, cols), |(r, c)| {
        let shared: f32 = (0..4).map(|k| signal[r * 4 + k] * ((c * 7 + k * 3) % 5) as f32).sum();
        shared + 0.5 * next()
    })
}

struct Dir(tempfile::TempDir);

impl Dir {
    fn new() -> Self {
        Dir(tempfile::tempdir().unwrap())
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(name)
    }
    fn write<A: ndarray_npy::WritableElement, D: ndarray::Dimension>(&self, name: &str, a: &Array<A, D>) -> String {
        let p = self.path(name);
        write_npy(&p, a).unwrap();
        p.display().to_string()
    }
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is one JSON object")
}

#[test]
fn json_output_has_the_documented_fields() {
    let d = Dir::new();
    let a = d.write("a.npy", &matrix(1200, 20, 1));
    let b = d.write("b.npy", &matrix(1200, 12, 2));
    let v = json(&svcca(&["compare", &a, &b, "--json"]));
    assert_eq!(v["method"], "svcca");
    assert_eq!(v["datapoints"], 1200);
    assert_eq!(v["device"], "cpu");
    let corr: Vec<f64> = v["correlations"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    let (ka, kb) = (v["kept_a"].as_u64().unwrap() as usize, v["kept_b"].as_u64().unwrap() as usize);
    assert_eq!(corr.len(), ka.min(kb));
    assert!(corr.windows(2).all(|w| w[0] >= w[1]), "descending: {corr:?}");
    let mean = corr.iter().sum::<f64>() / corr.len() as f64;
    assert!((v["mean"].as_f64().unwrap() - mean).abs() < 1e-12);
    for method in ["cca", "pwcca", "cka"] {
        let v = json(&svcca(&["compare", &a, &b, "--method", method, "--json"]));
        assert_eq!(v["method"], method);
        let m = v["mean"].as_f64().unwrap();
        assert!(m > 0.0 && m <= 1.0, "{method}: {m}");
    }
    // Without --json: a readable summary.
    let out = svcca(&["compare", &a, &b]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.starts_with("SVCCA similarity"), "{text}");
}

/// `--keep-rule singular` keeps the directions holding 99% of the sum of the singular
/// values (the paper's Appendix A), the default 99% of the variance, and the JSON says
/// which. Singular values 2^-i, i < 12: the closed forms give 7 and 4 (see
/// tests/properties.rs `keep_rules_count_the_directions_of_a_known_spectrum`).
#[test]
fn keep_rule_through_the_cli() {
    let d = Dir::new();
    let s: Vec<f64> = (0..12).map(|i| 0.5f64.powi(i)).collect();
    let npy = |name: &str, seed: i64| {
        let t = with_singular_values(seed, 600, &s);
        let values = Vec::<f64>::try_from(&t.flatten(0, -1)).unwrap();
        d.write(name, &Array2::from_shape_vec((600, 12), values).unwrap())
    };
    let (a, b) = (npy("a.npy", 7), npy("b.npy", 9));
    for (args, rule, kept) in [
        (vec!["--keep-rule", "singular"], "singular", 7),
        (vec!["--keep-rule", "variance"], "variance", 4),
        (vec![], "variance", 4),
        (vec!["--keep-rule", "singular", "--keep", "0.5"], "singular", 1),
    ] {
        let mut cmd = vec!["compare", &a, &b, "--json"];
        cmd.extend(&args);
        let v = json(&svcca(&cmd));
        assert_eq!(v["keep"]["rule"], rule, "{args:?}");
        assert_eq!((v["kept_a"].as_i64(), v["kept_b"].as_i64()), (Some(kept), Some(kept)), "{args:?}");
    }
    let out = svcca(&["compare", &a, &b, "--keep-rule", "singular"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("of the sum of the singular values"));
    assert_refused_silent(&svcca(&["compare", &a, &b, "--method", "cca", "--keep-rule", "singular"]), &["--keep-rule", "svcca only"]);
    let bad = svcca(&["compare", &a, &b, "--keep-rule", "squared"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn reference_fixture_through_the_cli() {
    let f = common::fixtures();
    let a = f.join("case2_A.npy").display().to_string();
    let b = f.join("case2_B.npy").display().to_string();
    let v = json(&svcca(&["compare", &a, &b, "--keep", "0.99", "--json"]));
    assert_eq!((v["kept_a"].as_i64(), v["kept_b"].as_i64()), (Some(26), Some(25)));
    assert!((v["mean"].as_f64().unwrap() - 0.6026758871610534).abs() < 1e-6);
    let v = json(&svcca(&["compare", &a, &b, "--top-k", "20", "--json"]));
    assert!((v["mean"].as_f64().unwrap() - 0.5148915085945183).abs() < 1e-6);
}

#[test]
fn streaming_fortran_order_and_float64_files_agree_with_the_plain_run() {
    let d = Dir::new();
    let (ma, mb) = (matrix(3000, 16, 3), matrix(3000, 10, 4));
    let a = d.write("a.npy", &ma);
    let b = d.write("b.npy", &mb);
    let whole = json(&svcca(&["compare", &a, &b, "--method", "cca", "--json"]));
    assert_eq!(whole["blocks"], 1);
    let streamed = json(&svcca(&["compare", &a, &b, "--method", "cca", "--memory-budget", "64K", "--json"]));
    assert!(streamed["blocks"].as_u64().unwrap() > 1, "{streamed}");
    // Column-major storage of the same matrix, and float64 values.
    let columns: Vec<f32> = ma.t().iter().copied().collect();
    let fortran = Array2::from_shape_vec((16, 3000), columns).unwrap().reversed_axes();
    assert!(fortran.t().is_standard_layout());
    let af = d.write("a_fortran.npy", &fortran);
    let b64 = d.write("b64.npy", &mb.mapv(f64::from));
    let other = json(&svcca(&["compare", &af, &b64, "--method", "cca", "--memory-budget", "100K", "--json"]));
    for v in [&streamed, &other] {
        let diff = (v["mean"].as_f64().unwrap() - whole["mean"].as_f64().unwrap()).abs();
        assert!(diff < 1e-10, "mean differs by {diff}");
    }
}

#[test]
fn bad_files_are_refused_naming_the_file() {
    let d = Dir::new();
    let good = d.write("good.npy", &matrix(500, 8, 5));
    let missing = d.path("missing.npy").display().to_string();
    assert_refused_silent(&svcca(&["compare", &missing, &good]), &["missing.npy", "cannot open"]);

    let text = d.path("text.npy");
    std::fs::write(&text, "datapoint,neuron\n1,2\n").unwrap();
    let text = text.display().to_string();
    assert_refused_silent(&svcca(&["compare", &good, &text]), &["text.npy", "not a .npy, .safetensors or torch.save file"]);

    let empty = d.path("empty.npy");
    std::fs::write(&empty, b"").unwrap();
    assert_refused_silent(
        &svcca(&["compare", &empty.display().to_string(), &good]),
        &["empty.npy", "not a .npy, .safetensors or torch.save file"],
    );

    let cut = d.path("cut.npy");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    assert_refused_silent(&svcca(&["compare", &good, &cut.display().to_string()]), &["cut.npy", "truncated"]);

    let ints = d.write("ints.npy", &Array2::<i64>::zeros((500, 8)));
    assert_refused_silent(&svcca(&["compare", &ints, &good]), &["ints.npy", "dtype '<i8'"]);

    let flat = d.write("flat.npy", &Array1::<f32>::zeros(500));
    assert_refused_silent(&svcca(&["compare", &good, &flat]), &["flat.npy", "expected a 2-D array"]);
    let cube = d.write("cube.npy", &Array3::<f32>::zeros((500, 2, 4)));
    assert_refused_silent(&svcca(&["compare", &cube, &good]), &["cube.npy", "expected a 2-D array"]);

    let short = d.write("short.npy", &matrix(499, 8, 6));
    assert_refused_silent(&svcca(&["compare", &good, &short]), &["good.npy", "short.npy", "datapoints"]);
}

/// A `.npy` file written by hand: a version 1.0 header with `shape`, then `data_len` zero
/// bytes, so a test can make a header that promises more than any file could hold.
fn raw_npy(path: &Path, descr: &str, shape: &str, data_len: usize) -> String {
    let mut dict = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    while (10 + dict.len() + 1) % 64 != 0 {
        dict.push(' ');
    }
    dict.push('\n');
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend((dict.len() as u16).to_le_bytes());
    bytes.extend(dict.as_bytes());
    bytes.resize(bytes.len() + data_len, 0);
    std::fs::write(path, &bytes).unwrap();
    path.display().to_string()
}

#[test]
fn shapes_whose_size_overflows_are_refused_naming_the_file() {
    let d = Dir::new();
    let good = d.write("good.npy", &matrix(200, 8, 5));
    // 200 * (2**59 + 20) * 4 bytes wraps around 64 bits to 16,000: a 16 kB file would pass
    // a wrapping size check and then be read as an impossible matrix.
    let wraps = raw_npy(&d.path("wraps.npy"), "<f4", "(200, 576460752303423508)", 16_000);
    assert_refused_silent(&svcca(&["compare", &good, &wraps]), &["wraps.npy", "too large"]);
    assert_refused_silent(&svcca(&["compare", &wraps, &good, "--memory-budget", "8K"]), &["wraps.npy", "too large"]);
    // The columns alone overflow, with rows that multiply it back to a small number.
    let cols = raw_npy(&d.path("cols.npy"), "<f8", "(256, 72057594037927936, 256)", 16_000);
    assert_refused_silent(&svcca(&["compare", &good, &cols]), &["cols.npy", "too large"]);
    // Every axis fits a 64-bit integer but their product does not (2**32 * 2**32).
    let product = raw_npy(&d.path("product.npy"), "<f4", "(4294967296, 4294967296)", 64);
    assert_refused_silent(&svcca(&["compare", &product, &good]), &["product.npy", "too large"]);
    // An axis that does not fit 64 bits at all is an invalid shape.
    let huge = raw_npy(&d.path("huge.npy"), "<f4", "(200, 99999999999999999999999)", 64);
    assert_refused_silent(&svcca(&["compare", &good, &huge]), &["huge.npy", "invalid shape"]);
}

#[test]
fn bad_values_are_refused_naming_the_file() {
    let d = Dir::new();
    let good = d.write("good.npy", &matrix(500, 8, 7));
    for (name, value) in [("nan.npy", f32::NAN), ("inf.npy", f32::INFINITY)] {
        let mut m = matrix(500, 6, 8);
        m[[321, 2]] = value;
        let bad = d.write(name, &m);
        assert_refused_silent(&svcca(&["compare", &good, &bad]), &[name, "datapoint 321"]);
        // Also when the NaN arrives in a later block of a streamed file.
        assert_refused_silent(&svcca(&["compare", &good, &bad, "--memory-budget", "8K"]), &[name, "datapoint 321"]);
    }
}

#[test]
fn too_few_datapoints_refuse_or_warn() {
    let d = Dir::new();
    let a = d.write("a.npy", &matrix(40, 60, 9));
    let b = d.write("b.npy", &matrix(40, 10, 10));
    // More kept directions than datapoints: refused.
    assert_refused_silent(&svcca(&["compare", &a, &b, "--top-k", "50"]), &["a.npy", "40 datapoints"]);
    // Fewer datapoints than neurons: computed, with a warning naming the file.
    let out = svcca(&["compare", &a, &b, "--method", "cca", "--json"]);
    let v = json(&out);
    let warnings = v["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{v}");
    assert!(warnings[0].as_str().unwrap().contains("a.npy"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer datapoints (40) than neurons (60)"));
}

#[test]
fn constant_neurons_are_dropped_and_reported() {
    let d = Dir::new();
    let mut m = matrix(800, 10, 11);
    m.column_mut(3).fill(0.0);
    m.column_mut(7).fill(2.5);
    let a = d.write("a.npy", &m);
    let b = d.write("b.npy", &matrix(800, 6, 12));
    let v = json(&svcca(&["compare", &a, &b, "--method", "cca", "--json"]));
    assert_eq!((v["constant_a"].as_i64(), v["kept_a"].as_i64()), (Some(2), Some(8)));
    assert!(v["correlations"].as_array().unwrap().iter().all(|c| c.as_f64().unwrap().is_finite()));
    let text = String::from_utf8_lossy(&svcca(&["compare", &a, &b]).stdout).to_string();
    assert!(text.contains("2 constant neurons dropped"), "{text}");
}

#[test]
fn bad_flags_are_refused() {
    let d = Dir::new();
    let a = d.write("a.npy", &matrix(300, 8, 13));
    let b = d.write("b.npy", &matrix(300, 8, 14));
    assert_refused_silent(&svcca(&["compare", &a, &b, "--keep", "1.5"]), &["--keep", "(0, 1]"]);
    assert_refused_silent(&svcca(&["compare", &a, &b, "--method", "cka", "--top-k", "3"]), &["--top-k", "svcca only"]);
    assert_refused_silent(&svcca(&["compare", &a, &b, "--memory-budget", "lots"]), &[]);
    if !svcca::device::cuda_available() {
        assert_refused_silent(&svcca(&["compare", &a, &b, "--device", "cuda"]), &["--device cuda", "no CUDA device"]);
    }
}

#[test]
fn example_writes_a_pair_and_never_overwrites() {
    let d = Dir::new();
    let dir = d.path("ex").display().to_string();
    let out = svcca(&["example", &dir, "--datapoints", "600", "--neurons-a", "20", "--neurons-b", "15", "--rank", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let a = format!("{dir}/a.npy");
    let b = format!("{dir}/b.npy");
    let before = std::fs::read(&a).unwrap();
    let v = json(&svcca(&["compare", &a, &b, "--json"]));
    assert_eq!((v["datapoints"].as_i64(), v["neurons_a"].as_i64(), v["neurons_b"].as_i64()), (Some(600), Some(20), Some(15)));
    // The rank-4 shared signal shows as 4 near-perfect correlations.
    let corr = v["correlations"].as_array().unwrap();
    assert!(corr[..4].iter().all(|c| c.as_f64().unwrap() > 0.95), "{v}");
    assert!(corr[4].as_f64().unwrap() < 0.5, "{v}");
    let again = svcca(&["example", &dir, "--seed", "5"]);
    assert_refused_silent(&again, &["a.npy", "already exists"]);
    assert_eq!(std::fs::read(&a).unwrap(), before, "the existing file is untouched");
}

/// A conv layer (datapoints x C x H x W) as an NCHW array, from `matrix`.
fn conv_layer(n: usize, c: usize, h: usize, w: usize, seed: u64) -> ndarray::Array4<f32> {
    matrix(n, c * h * w, seed).into_shape_with_order((n, c, h, w)).unwrap()
}

#[test]
fn conv_layers_through_the_cli() {
    let d = Dir::new();
    let a = conv_layer(600, 4, 6, 6, 20);
    let b = conv_layer(600, 3, 3, 3, 21);
    let (pa, pb) = (d.write("a.npy", &a), d.write("b.npy", &b));
    let v = json(&svcca(&["compare", &pa, &pb, "--conv", "dft", "--method", "cca", "--json"]));
    let conv = &v["conv"];
    assert_eq!(conv["method"], "dft");
    assert_eq!(conv["size"], serde_json::json!([3, 3]));
    let freqs = conv["frequencies"].as_array().unwrap();
    assert_eq!(freqs.len(), 9);
    assert_eq!(freqs[1]["location"], serde_json::json!([0, 1]));
    assert_eq!(v["correlations"].as_array().unwrap().len(), 9 * 3);
    // NHWC storage of the same layers gives the same answer.
    let nhwc = |x: &ndarray::Array4<f32>| x.view().permuted_axes([0, 2, 3, 1]).as_standard_layout().to_owned();
    let (qa, qb) = (d.write("a_nhwc.npy", &nhwc(&a)), d.write("b_nhwc.npy", &nhwc(&b)));
    let w = json(&svcca(&["compare", &qa, &qb, "--conv", "dft", "--method", "cca", "--layout", "nhwc", "--json"]));
    assert!((w["mean"].as_f64().unwrap() - v["mean"].as_f64().unwrap()).abs() < 1e-10);
    // Fortran (column-major) storage of the same layer too.
    let fortran = {
        use ndarray::ShapeBuilder;
        let mut f = ndarray::Array4::<f32>::zeros((600, 4, 6, 6).f());
        f.assign(&a);
        f
    };
    assert!(!fortran.is_standard_layout());
    let fa = d.write("a_fortran.npy", &fortran);
    let x = json(&svcca(&["compare", &fa, &pb, "--conv", "dft", "--method", "cca", "--json"]));
    assert!((x["mean"].as_f64().unwrap() - v["mean"].as_f64().unwrap()).abs() < 1e-10);
    // Streaming in blocks gives the same answer too.
    let s = json(&svcca(&["compare", &pa, &pb, "--conv", "dft", "--method", "cca", "--memory-budget", "100K", "--json"]));
    assert!(s["blocks"].as_u64().unwrap() > 1);
    assert!((s["mean"].as_f64().unwrap() - v["mean"].as_f64().unwrap()).abs() < 1e-10);
    // flatten and avgpool; avgpool also takes a dense side.
    let f = json(&svcca(&["compare", &pa, &pb, "--conv", "flatten", "--max-datapoints", "3000", "--json"]));
    assert_eq!((f["datapoints"].as_i64(), f["conv"]["positions_per_datapoint"].as_i64()), (Some(3000), Some(5)));
    let dense = d.write("dense.npy", &matrix(600, 7, 22));
    let p = json(&svcca(&["compare", &pa, &dense, "--conv", "avgpool", "--method", "cka", "--json"]));
    assert_eq!((p["neurons_a"].as_i64(), p["neurons_b"].as_i64()), (Some(4), Some(7)));
}

#[test]
fn conv_misuse_is_refused_naming_the_file() {
    let d = Dir::new();
    let a = d.write("conv.npy", &conv_layer(300, 4, 4, 4, 23));
    let dense = d.write("dense.npy", &matrix(300, 8, 24));
    assert_refused_silent(&svcca(&["compare", &a, &dense]), &["conv.npy", "pass --conv"]);
    assert_refused_silent(&svcca(&["compare", &a, &dense, "--conv", "dft"]), &["dense.npy", "4-D"]);
    assert_refused_silent(&svcca(&["compare", &dense, &dense, "--conv", "avgpool"]), &["dense.npy", "both files are 2-D"]);
    let tiny = d.write("tiny.npy", &conv_layer(300, 4, 1, 1, 25));
    assert_refused_silent(&svcca(&["compare", &tiny, &tiny, "--conv", "dft"]), &["tiny.npy", "too small"]);
    let fewer = d.write("fewer.npy", &conv_layer(299, 4, 4, 4, 26));
    assert_refused_silent(&svcca(&["compare", &a, &fewer, "--conv", "dft"]), &["conv.npy", "fewer.npy", "datapoints"]);
    assert_refused_silent(&svcca(&["compare", &a, &a, "--conv", "dft", "--method", "pwcca"]), &["conv.npy", "per frequency"]);
}

#[test]
fn a_large_pair_streams_on_the_cpu_whatever_the_budget() {
    // 12500 x 512: each side's float64 copy (51.2 MB) is over the CPU block cap (48 MiB),
    // so even a budget that holds both files streams them in two blocks.
    let d = Dir::new();
    let (ma, mb) = (matrix(12500, 512, 7), matrix(12500, 64, 8));
    let a = d.write("a.npy", &ma);
    let b = d.write("b.npy", &mb);
    let v = json(&svcca(&["compare", &a, &b, "--method", "cca", "--device", "cpu", "--memory-budget", "4G", "--json"]));
    assert_eq!(v["blocks"], 2, "{}", v["blocks"]);
    // The same answer as the library's in-memory comparison of the whole matrices.
    let tensor = |m: &Array2<f32>| tch::Tensor::from_slice(m.as_slice().unwrap()).reshape([m.nrows() as i64, m.ncols() as i64]);
    let options = svcca::similarity::Options {
        method: svcca::similarity::Method::Cca,
        keep: svcca::similarity::Keep::All,
        ..svcca::similarity::Options::default()
    };
    let whole = svcca::similarity::compare(&tensor(&ma), &tensor(&mb), &options).unwrap();
    let diff = (v["mean"].as_f64().unwrap() - whole.mean).abs();
    assert!(diff < 1e-10, "streamed mean {} vs whole {}: {diff}", v["mean"], whole.mean);
}
