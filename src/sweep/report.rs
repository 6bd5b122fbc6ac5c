//! `svcca sweep CONFIG --report`: a sweep's runs aggregated over seeds.
//!
//! Variants that differ only in `train.seed` form a group (named by their other values,
//! e.g. `schedule=linear`; `all` when the sweep varies nothing else). In `OUT/report/`:
//!
//! - `runs.csv`: one row per finished variant: index, group, seed, final test accuracy,
//!   wall-clock seconds of training, folder.
//! - `summary.csv`, `summary.json`: per group the number of runs, the mean and standard
//!   deviation (n − 1) of the final test accuracy and of the wall-clock; the JSON also
//!   lists the variants not finished yet (left out of the numbers).
//! - `curves.csv`: per group, test accuracy against step, mean and std over its runs (at
//!   the steps all of them evaluated at).
//! - `plots/accuracy.png`, `.svg`: those curves with a ±1 std band.
//!
//! With a validation set (`data.validation`) in every finished variant, the curves are
//! validation accuracy (the test set is read once per run, at the end), the tables gain
//! the final validation accuracy, and `summary.json` names the group with the highest
//! mean final validation accuracy (`best_by_validation`): a choice among variants made
//! without looking at the test set.
//!
//! The tables and the plot are written by `report::over_seeds`, as those of `svcca
//! experiment freeze` (groups by variant values here, long curves).

use super::{Sweep, Variant};
use crate::error::InputError;
use crate::io::write_json_atomic;
use crate::report::over_seeds::{self, Curves, Layout, Run};
use crate::train::metrics::{test_accuracy, validation_accuracy};
use serde::Serialize;
use std::path::PathBuf;

pub use crate::report::over_seeds::GroupSummary;

pub const FOLDER: &str = "report";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub groups: Vec<GroupSummary>,
    /// Indices of the variants not (yet) trained to the end.
    pub unfinished: Vec<usize>,
    /// With `data.validation` in every finished variant: the group with the highest mean
    /// final validation accuracy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub best_by_validation: Option<String>,
    pub dir: PathBuf,
}

/// The group of a variant: its values other than the seed.
fn group_of(v: &Variant) -> String {
    let parts: Vec<String> = v
        .assignments
        .iter()
        .filter(|(k, _)| k != "train.seed")
        .map(|(k, val)| {
            let key = k.rsplit('.').next().unwrap_or(k);
            match val {
                toml::Value::String(s) => format!("{key}={s}"),
                other => format!("{key}={other}"),
            }
        })
        .collect();
    if parts.is_empty() {
        "all".into()
    } else {
        parts.join(",")
    }
}

/// Writes the report of `sweep` into `OUT/report`.
pub fn write(sweep: &Sweep) -> anyhow::Result<Report> {
    // The finished variants, each with its validation curve (with `data.validation`).
    let mut finished = Vec::new();
    let mut unfinished = Vec::new();
    for v in &sweep.variants {
        let config = sweep.config_of(v)?;
        let total = match crate::run_dir::read_config(&v.dir) {
            Ok(resolved) => resolved.train.steps,
            Err(_) => None,
        };
        let done = total.and_then(|t| {
            let (curve, wall) = test_accuracy(&v.dir).ok()?;
            let &(last, acc) = curve.last()?;
            (last == t).then_some((curve, acc, wall))
        });
        match done {
            Some((curve, final_test_acc, wall_seconds)) => {
                let val_curve = config.data.has_validation().then(|| validation_accuracy(&v.dir).map(|c| c.0)).transpose()?;
                let run = Run {
                    group: group_of(v),
                    seed: config.train.seed,
                    final_test_acc,
                    final_val_acc: val_curve.as_ref().and_then(|c| c.last()).map(|p| p.1),
                    wall_seconds,
                    curve,
                    lead: vec![v.index.to_string()],
                    tail: vec![v.dir.display().to_string()],
                };
                finished.push((run, val_curve))
            }
            None => unfinished.push(v.index),
        }
    }
    if finished.is_empty() {
        return Err(InputError::new(format!("{}: no variant of the sweep has finished training yet", sweep.out.display())).into());
    }
    if !unfinished.is_empty() {
        tracing::warn!("variants {unfinished:?} have not finished: the report leaves them out");
    }
    // Validation in every run: its curves and the choice of the best group.
    let validation = finished.iter().all(|f| f.1.is_some());
    let runs: Vec<Run> = finished
        .into_iter()
        .map(|(run, val_curve)| match val_curve {
            Some(curve) if validation => Run { curve, ..run },
            _ => run,
        })
        .collect();
    let dir = sweep.out.join(FOLDER);
    let layout = Layout {
        group: "group",
        count: "runs",
        runs_lead: &["variant"],
        runs_tail: &["dir"],
        summary_tail: &[],
        curves: Curves::Long,
        title: " of the sweep's groups",
        freeze_steps: &[],
    };
    let groups = over_seeds::write(&dir, &runs, validation, &layout)?;
    let best_by_validation = groups
        .iter()
        .filter_map(|s| s.final_val_acc_mean.map(|v| (v, &s.group)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, g)| g.clone());
    let report = Report { groups, unfinished, best_by_validation, dir: dir.clone() };
    write_json_atomic(&dir.join("summary.json"), &report)?;
    Ok(report)
}
