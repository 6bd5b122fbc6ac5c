//! `metrics.csv` in the run folder: one row per evaluation or checkpoint step.
//!
//! On resume from step s the rows after s (written by the run that was killed) are
//! dropped before training continues, so the file never holds a step twice; the rewrite
//! is atomic. Rows are appended one `write` at a time; a row cut short by a kill is
//! dropped on the next resume.

use anyhow::Context;
use std::io::Write;
use std::path::{Path, PathBuf};

pub const FILE: &str = "metrics.csv";
pub const HEADER: &str = "step,epoch,lr,train_loss,train_acc,test_loss,test_acc,wall_seconds";
/// The header of a run with a validation set (`data.validation`): validation loss and
/// accuracy at every evaluation, the test columns on the last row only.
pub const HEADER_VALIDATION: &str = "step,epoch,lr,train_loss,train_acc,val_loss,val_acc,test_loss,test_acc,wall_seconds";

/// The header of a run with (`true`) or without a validation set.
pub fn header(validation: bool) -> &'static str {
    if validation {
        HEADER_VALIDATION
    } else {
        HEADER
    }
}

#[derive(Debug, Clone, Default)]
pub struct Row {
    pub step: u64,
    pub epoch: f64,
    pub lr: f64,
    /// Means over the steps since the previous row (absent at step 0).
    pub train: Option<(f64, f64)>,
    /// Validation loss and accuracy (runs with `data.validation`; absent on
    /// checkpoint-only rows).
    pub validation: Option<(f64, f64)>,
    /// Test-set loss and accuracy (absent on checkpoint-only rows; with a validation
    /// set, on the last row only).
    pub test: Option<(f64, f64)>,
    pub wall_seconds: f64,
}

impl Row {
    fn csv(&self, validation: bool) -> String {
        let pair = |p: Option<(f64, f64)>| p.map_or(",".to_string(), |(l, a)| format!("{l:.6},{a:.6}"));
        let val = if validation { format!("{},", pair(self.validation)) } else { String::new() };
        format!("{},{:.4},{:.6e},{},{val}{},{:.3}", self.step, self.epoch, self.lr, pair(self.train), pair(self.test), self.wall_seconds)
    }
}

/// The rows of `run`'s `metrics.csv` with a test accuracy, as `(step, test_acc)`, and the
/// last row's wall-clock seconds; columns found by the header's names.
pub fn test_accuracy(run: &Path) -> anyhow::Result<(Vec<(u64, f64)>, f64)> {
    accuracy(run, "test_acc")
}

/// As [`test_accuracy`], for the validation accuracy (`val_acc`) of a run with
/// `data.validation`; an error for a run without (no such column).
pub fn validation_accuracy(run: &Path) -> anyhow::Result<(Vec<(u64, f64)>, f64)> {
    accuracy(run, "val_acc")
}

/// The rows of `run`'s `metrics.csv` with a value in column `name`, as `(step, value)`,
/// and the last row's wall-clock seconds.
pub fn accuracy(run: &Path, name: &str) -> anyhow::Result<(Vec<(u64, f64)>, f64)> {
    let path = run.join(FILE);
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| crate::error::InputError::new(format!("{}: no column '{name}' in its header", path.display())))
    };
    let (step, acc, wall_col) = (column("step")?, column(name)?, column("wall_seconds")?);
    let mut out = Vec::new();
    let mut wall = 0.0;
    for line in lines {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() != header.len() {
            continue; // a row cut short by a kill
        }
        if let (Ok(s), Ok(a)) = (f[step].parse::<u64>(), f[acc].parse::<f64>()) {
            out.push((s, a));
        }
        wall = f[wall_col].parse().unwrap_or(wall);
    }
    Ok((out, wall))
}

#[derive(Debug)]
pub struct Metrics {
    path: PathBuf,
    validation: bool,
}

impl Metrics {
    /// Opens `dir/metrics.csv` for a run continuing after step `resume` (`None`: from
    /// scratch), keeping only the rows up to that step; `validation`: the run has a
    /// validation set (its columns, [`HEADER_VALIDATION`]).
    pub fn open(dir: &Path, resume: Option<u64>, validation: bool) -> anyhow::Result<Metrics> {
        let path = dir.join(FILE);
        let header = header(validation);
        let mut text = format!("{header}\n");
        if let (Some(s), Ok(old)) = (resume, std::fs::read_to_string(&path)) {
            for line in old.lines().skip(1) {
                let complete = line.split(',').count() == header.split(',').count();
                match line.split(',').next().and_then(|v| v.parse::<u64>().ok()) {
                    Some(step) if complete && step <= s => {
                        text.push_str(line);
                        text.push('\n');
                    }
                    _ => {}
                }
            }
        }
        crate::io::write_atomic(&path, text.as_bytes())?;
        Ok(Metrics { path, validation })
    }

    pub fn append(&mut self, row: &Row) -> anyhow::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.path)
            .with_context(|| format!("cannot append to {}", self.path.display()))?;
        f.write_all(format!("{}\n", row.csv(self.validation)).as_bytes())?;
        Ok(())
    }
}
