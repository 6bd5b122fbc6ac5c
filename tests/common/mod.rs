//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use svcca::config::{Config, DatasetName};
use svcca::device::DeviceChoice;
use svcca::npy::NpyFile;
use tch::{Kind, Tensor};

#[path = "../../src/test_support.rs"]
mod support;
#[allow(unused_imports)]
pub use support::*;

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

/// The `svcca` binary of this build.
pub const BIN: &str = env!("CARGO_BIN_EXE_svcca");

/// The `svcca` binary with `args`, logging at warn level: to add environment variables,
/// pipes or a spawn.
pub fn svcca_command(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).env("SVCCA_LOG", "warn");
    c
}

/// Runs the `svcca` binary with `args` (logging at warn level).
pub fn svcca(args: &[&str]) -> Output {
    svcca_command(args).output().expect("the svcca binary runs")
}

/// As [`svcca`], with environment variables set (they may override `SVCCA_LOG`).
pub fn svcca_env(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = svcca_command(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the svcca binary runs")
}

/// Runs the `svcca` binary with `args` as user and group 65534 (nobody), logging at warn
/// level: for folders another user may only read. Needs root (`setpriv`).
pub fn as_nobody(args: &[&str]) -> Output {
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(args)
        .env("SVCCA_LOG", "warn")
        .output()
        .expect("setpriv runs")
}

/// A command's standard error, as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A command's standard output, as text.
pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Status 2 and one `error:` line containing every one of `needles`; no panic.
pub fn assert_refused(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    for n in needles {
        assert!(lines[0].contains(n), "'{}' lacks '{n}'", lines[0]);
    }
    assert!(!err.contains("panicked"), "stderr: {err}");
}

/// As [`assert_refused`], with nothing on stdout and no backtrace either.
pub fn assert_refused_silent(out: &Output, needles: &[&str]) {
    assert!(out.stdout.is_empty(), "stdout: {}", stdout(out));
    assert_refused(out, needles);
    assert!(!stderr(out).contains("backtrace"), "stderr: {}", stderr(out));
}

/// What the tests' tiny training configs vary; [`Tiny::config`] sets the rest (synthetic
/// data, the CPU, one thread). The default is the freeze tests' run: 30 steps of a
/// narrow convnet, a checkpoint and an evaluation every 10.
#[derive(Debug, Clone, Copy)]
pub struct Tiny {
    pub train_size: usize,
    pub test_size: usize,
    pub crop_padding: i64,
    pub flip: bool,
    pub width: i64,
    pub fc1: i64,
    pub fc2: i64,
    pub batch_size: usize,
    pub steps: u64,
    pub lr: f64,
    pub eval_every: u64,
    /// `checkpoints.every`.
    pub every: u64,
    /// `analysis.probe_size` (`None`: the default).
    pub probe_size: Option<usize>,
}

impl Default for Tiny {
    fn default() -> Self {
        Tiny {
            train_size: 512,
            test_size: 128,
            crop_padding: 0,
            flip: false,
            width: 8,
            fc1: 32,
            fc2: 16,
            batch_size: 32,
            steps: 30,
            lr: 0.05,
            eval_every: 10,
            every: 10,
            probe_size: None,
        }
    }
}

impl Tiny {
    /// The CLI tests' run (train_cli, run_folders): 256 training and 64 test images,
    /// augmented (crop after 4-pixel padding, flip), 16 a batch, lr 0.1, a narrow convnet
    /// (width 4, fc 16/8), `steps` steps, an evaluation and a checkpoint every 10.
    pub fn augmented(steps: u64) -> Tiny {
        Tiny {
            train_size: 256,
            test_size: 64,
            crop_padding: 4,
            flip: true,
            width: 4,
            fc1: 16,
            fc2: 8,
            batch_size: 16,
            steps,
            lr: 0.1,
            eval_every: 10,
            every: 10,
            probe_size: None,
        }
    }

    /// `Config::default()` with these values, on the synthetic set, the CPU and one thread.
    pub fn config(self) -> Config {
        let mut c = Config::default();
        c.data.dataset = DatasetName::Synthetic;
        c.data.train_size = Some(self.train_size);
        c.data.test_size = Some(self.test_size);
        c.data.crop_padding = self.crop_padding;
        c.data.flip = self.flip;
        c.model.width = Some(self.width);
        c.model.fc1 = self.fc1;
        c.model.fc2 = self.fc2;
        c.train.device = DeviceChoice::Cpu;
        c.train.threads = Some(1);
        c.train.batch_size = self.batch_size;
        c.train.steps = Some(self.steps);
        c.train.lr = self.lr;
        c.train.eval_every = self.eval_every;
        c.checkpoints.every = self.every;
        if let Some(n) = self.probe_size {
            c.analysis.probe_size = n;
        }
        c
    }
}

/// The default tiny config (see [`Tiny`]).
pub fn tiny() -> Config {
    Tiny::default().config()
}

/// `config` as the TOML a user would write (every key), for the CLI.
pub fn to_toml(config: &Config) -> String {
    config.to_toml()
}

/// Writes `text` to `dir/name`; returns the path.
pub fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

/// Writes `config` as TOML to `dir/name`; returns the path.
pub fn write_config(dir: &Path, name: &str, config: &Config) -> String {
    write_file(dir, name, &to_toml(config))
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

/// The preemption tests' run (preempt, slurm): long enough (a few seconds) for a signal
/// to land mid-run: 300 steps of 64 images, a checkpoint every 50, an evaluation every
/// `eval_every`, the linear freeze schedule, on the default device; four layers analysed,
/// conv layers by avgpool.
pub fn signal_run(eval_every: u64) -> Config {
    let mut c = Tiny {
        train_size: 1000,
        test_size: 200,
        width: 4,
        fc1: 16,
        fc2: 16,
        batch_size: 64,
        steps: 300,
        eval_every,
        every: 50,
        probe_size: Some(100),
        ..Tiny::default()
    }
    .config();
    c.train.device = svcca::device::DeviceChoice::Auto;
    c.freeze.schedule = svcca::config::FreezeSchedule::Linear;
    c.analysis.conv = svcca::similarity::ConvMethod::Avgpool;
    c.analysis.layers = Some(["c1", "c3", "fc1", "logits"].map(String::from).to_vec());
    c
}

/// Writes `t` as a float32 `.npy` of its own shape in `dir`; returns its path.
pub fn write_npy(dir: &Path, name: &str, t: &Tensor) -> String {
    let shape: Vec<usize> = t.size().iter().map(|&d| d as usize).collect();
    let values = Vec::<f32>::try_from(&t.to_kind(Kind::Float).flatten(0, -1)).unwrap();
    let path = dir.join(name);
    ndarray_npy::write_npy(&path, &ndarray::ArrayD::from_shape_vec(shape, values).unwrap()).unwrap();
    path.display().to_string()
}

/// The JSON a successful command printed on stdout.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "svcca failed: {}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The steps of the step files in `dir` (`step-NNNNNNNN.safetensors`, the name
/// docs/run-folders.md gives them), in order; temporaries and other files left out.
pub fn steps_in(dir: &Path) -> Vec<u64> {
    let step = |name: &str| name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse::<u64>().ok();
    let mut s: Vec<u64> = std::fs::read_dir(dir).unwrap().filter_map(|e| step(e.unwrap().file_name().to_str()?)).collect();
    s.sort();
    s
}
