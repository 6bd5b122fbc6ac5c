//! `metrics.csv` in the run folder: one row per evaluation or checkpoint step.
//!
//! On resume from step s the rows after s (written by the run that was killed) are
//! dropped before training continues, so the file never holds a step twice; the rewrite
//! is atomic, and says how many rows it dropped. Rows are appended one `write` at a
//! time; a row cut short by a kill (the last line only) is dropped on the next resume.
//! Any other line that is not a row svcca writes (not UTF-8 text, or not a row in the
//! middle of the file) is refused, the file and line named, rather than dropped with the
//! rows around it.

use crate::error::InputError;
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
    let text = read(&path)?.with_context(|| format!("cannot read {}: no such file", path.display()))?;
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

/// The text of the metrics file `path` (`None` where there is none). Refused where it
/// cannot be read or a line is not UTF-8 text (the line named): svcca writes none such,
/// and taking the file as absent would drop every row.
fn read(path: &Path) -> anyhow::Result<Option<String>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(InputError::new(format!("{}: cannot read: {e}", path.display())).into()),
    };
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some(text)),
        Err(e) => {
            let good = e.utf8_error().valid_up_to();
            let line = e.as_bytes()[..good].iter().filter(|&&b| b == b'\n').count() + 1;
            Err(InputError::new(format!(
                "{}: line {line} is not UTF-8 text, so not a row svcca wrote; remove that line (or restore the file), then run again",
                path.display()
            ))
            .into())
        }
    }
}

#[derive(Debug)]
pub(crate) struct Metrics {
    path: PathBuf,
    validation: bool,
}

impl Metrics {
    /// Opens `dir/metrics.csv` for a run continuing after step `resume` (`None`: from
    /// scratch), keeping only the rows up to that step; `validation`: the run has a
    /// validation set (its columns, [`HEADER_VALIDATION`]).
    pub(crate) fn open(dir: &Path, resume: Option<u64>, validation: bool) -> anyhow::Result<Metrics> {
        let path = dir.join(FILE);
        let header = header(validation);
        let mut text = format!("{header}\n");
        if let Some(old) = read(&path)? {
            let lines: Vec<&str> = old.lines().collect();
            let (mut kept, mut after, mut cut) = (0, 0, false);
            for (i, line) in lines.iter().enumerate().skip(1) {
                let complete = line.split(',').count() == header.split(',').count();
                match line.split(',').next().and_then(|v| v.parse::<u64>().ok()) {
                    Some(step) if complete && resume.is_some_and(|s| step <= s) => {
                        text.push_str(line);
                        text.push('\n');
                        kept += 1;
                    }
                    Some(_) if complete => after += 1,
                    // A row cut short by a kill: the last line, without its newline.
                    _ if i + 1 == lines.len() && !old.ends_with('\n') => cut = true,
                    _ => {
                        return Err(InputError::new(format!(
                            "{}: line {} is not a row of this run's metrics ('{}'); correct or remove that line (or restore the file), then run again",
                            path.display(),
                            i + 1,
                            line.chars().take(60).collect::<String>()
                        ))
                        .into())
                    }
                }
            }
            match resume {
                _ if after == 0 => {}
                Some(s) => tracing::info!(
                    "{}: dropped {after} of its {} rows, those after step {s}, where training resumes",
                    path.display(),
                    kept + after
                ),
                None => tracing::warn!(
                    "{}: dropped its {after} rows: there is no checkpoint to resume them from, so training starts over",
                    path.display()
                ),
            }
            if cut {
                tracing::warn!("{}: dropped its last line, a row cut short ('{}')", path.display(), lines[lines.len() - 1]);
            }
        }
        crate::io::write_atomic(&path, text.as_bytes())?;
        Ok(Metrics { path, validation })
    }

    pub(crate) fn append(&mut self, row: &Row) -> anyhow::Result<()> {
        let mut options = std::fs::OpenOptions::new();
        options.append(true);
        #[cfg(unix)]
        {
            // The file [`Metrics::open`] wrote: never a link put in its place.
            use std::os::unix::fs::OpenOptionsExt;
            options.custom_flags(libc::O_NOFOLLOW);
        }
        let mut f = options.open(&self.path).with_context(|| format!("cannot append to {}", self.path.display()))?;
        f.write_all(format!("{}\n", row.csv(self.validation)).as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: u64) -> String {
        let mut text = format!("{HEADER}\n");
        for s in 0..n {
            text += &format!("{},0.1,1e-1,,,0.5,0.5,1.0\n", s * 10);
        }
        text
    }

    #[test]
    fn rows_after_the_resumed_step_are_dropped_and_a_cut_row_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, rows(5) + "50,0.1").unwrap();
        Metrics::open(dir.path(), Some(20), false).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), rows(3));
    }

    #[test]
    fn a_line_that_is_not_utf8_is_refused_with_every_row_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut bytes = rows(17).into_bytes();
        bytes.extend_from_slice(b"\xff\xfe garbage\n");
        std::fs::write(&path, &bytes).unwrap();
        for resume in [Some(160), None] {
            let e = Metrics::open(dir.path(), resume, false).unwrap_err();
            assert!(e.is::<InputError>() && e.to_string().contains("metrics.csv: line 19 is not UTF-8"), "{e}");
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "rewritten");
        }
        let e = test_accuracy(dir.path()).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("line 19"), "{e}");
    }

    #[test]
    fn a_foreign_line_amid_the_rows_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let text = rows(2) + "a note of mine\n" + "30,0.1,1e-1,,,0.5,0.5,1.0\n";
        std::fs::write(&path, &text).unwrap();
        let e = Metrics::open(dir.path(), Some(30), false).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("line 4 is not a row"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), text);
    }
}
