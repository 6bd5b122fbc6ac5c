//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use svcca::npy::NpyFile;
use tch::{Kind, Tensor};

pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/svcca_ref")
}

/// A fixture's `expected.json` entry for one case.
pub fn case(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join("expected.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    all["cases"][name].clone()
}

/// Loads a fixture `.npy` whole as a float64 tensor of its own shape.
pub fn load(name: &str) -> Tensor {
    let mut f = NpyFile::open(&fixtures().join(name)).unwrap();
    let shape: Vec<i64> = f.header().shape.iter().map(|&d| d as i64).collect();
    let rows = f.rows();
    let values = f.read_rows_f64(0, rows).unwrap();
    Tensor::from_slice(&values).reshape(shape.as_slice())
}

pub fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

/// Asserts two sequences agree elementwise within `tol`.
pub fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: {} values, expected {}", got.len(), want.len());
    let worst = got
        .iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f64::max);
    assert!(worst <= tol, "{what}: max abs difference {worst:e} > {tol:e}");
}

/// A seeded standard normal matrix (float64).
pub fn randn(seed: i64, rows: i64, cols: i64) -> Tensor {
    tch::manual_seed(seed);
    Tensor::randn([rows, cols], (Kind::Double, tch::Device::Cpu))
}

/// The tiny training config of the freeze tests (synthetic data, a narrow convnet, 30
/// steps, a checkpoint every 10, momentum and weight decay on), without `[freeze]`.
pub const TINY_FREEZE_TRAINING: &str = r#"
[data]
dataset = "synthetic"
train_size = 512
test_size = 128
crop_padding = 0
flip = false

[model]
width = 8
fc1 = 32
fc2 = 16

[train]
device = "cpu"
threads = 1
batch_size = 32
steps = 30
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
eval_every = 10

[checkpoints]
every = 10
"#;

/// Runs the `svcca` binary with `args` (logging at warn level).
pub fn svcca(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_svcca")).args(args).env("SVCCA_LOG", "warn").output().expect("the svcca binary runs")
}

/// Status 2 and one `error:` line containing every one of `needles`.
pub fn assert_refused(out: &std::process::Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{}' lacks '{n}'", lines[0]);
    }
    assert!(!err.contains("panicked"), "stderr: {err}");
}

/// Every file under `dir` (recursively, relative path) with its bytes and modification
/// time, but the lock file: what "nothing was written" compares.
pub fn snapshot(dir: &Path) -> std::collections::BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = std::collections::BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if e.file_name() != ".svcca.lock" {
                let meta = std::fs::metadata(&p).unwrap();
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), (std::fs::read(&p).unwrap(), meta.modified().unwrap()));
            }
        }
    }
    out
}
