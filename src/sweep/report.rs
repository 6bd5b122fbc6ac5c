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
//! The statistics and the metrics reader are those of `svcca experiment freeze`.

use super::{Sweep, Variant};
use crate::error::InputError;
use crate::io::{write_atomic, write_json_atomic};
use crate::stats::mean_std;
use crate::train::metrics::test_accuracy;
use serde::Serialize;
use std::path::PathBuf;

pub const FOLDER: &str = "report";

#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub runs: usize,
    pub seeds: Vec<u64>,
    pub final_acc_mean: f64,
    pub final_acc_std: f64,
    /// With `data.validation`: the final validation accuracy, mean and std.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_acc_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_acc_std: Option<f64>,
    pub wall_seconds_mean: f64,
    pub wall_seconds_std: f64,
}

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

struct Finished {
    variant: Variant,
    group: String,
    seed: u64,
    curve: Vec<(u64, f64)>,
    final_acc: f64,
    /// With `data.validation`: the validation curve.
    val_curve: Option<Vec<(u64, f64)>>,
    wall: f64,
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
            Some((curve, final_acc, wall)) => {
                let val_curve =
                    config.data.has_validation().then(|| crate::train::metrics::validation_accuracy(&v.dir).map(|c| c.0)).transpose()?;
                finished.push(Finished {
                    group: group_of(v),
                    seed: config.train.seed,
                    variant: v.clone(),
                    curve,
                    final_acc,
                    val_curve,
                    wall,
                })
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
    let mut groups: Vec<String> = Vec::new();
    for f in &finished {
        if !groups.contains(&f.group) {
            groups.push(f.group.clone());
        }
    }
    // Validation in every run: its curves and the choice of the best group.
    let validation = finished.iter().all(|f| f.val_curve.is_some());
    let final_val = |f: &Finished| f.val_curve.as_ref().and_then(|c| c.last()).map_or(f64::NAN, |p| p.1);
    let mut summaries = Vec::new();
    let mut bands: Vec<crate::report::Band> = Vec::new();
    for g in &groups {
        let runs: Vec<&Finished> = finished.iter().filter(|f| &f.group == g).collect();
        let (final_acc_mean, final_acc_std) = mean_std(&runs.iter().map(|f| f.final_acc).collect::<Vec<_>>());
        let (wall_seconds_mean, wall_seconds_std) = mean_std(&runs.iter().map(|f| f.wall).collect::<Vec<_>>());
        let val = validation.then(|| mean_std(&runs.iter().map(|f| final_val(f)).collect::<Vec<_>>()));
        summaries.push(GroupSummary {
            group: g.clone(),
            runs: runs.len(),
            seeds: runs.iter().map(|f| f.seed).collect(),
            final_acc_mean,
            final_acc_std,
            final_val_acc_mean: val.map(|v| v.0),
            final_val_acc_std: val.map(|v| v.1),
            wall_seconds_mean,
            wall_seconds_std,
        });
        let curve = |f: &'_ Finished| -> Vec<(u64, f64)> {
            match (&f.val_curve, validation) {
                (Some(c), true) => c.clone(),
                _ => f.curve.clone(),
            }
        };
        let curves: Vec<Vec<(u64, f64)>> = runs.iter().map(|f| curve(f)).collect();
        let mut steps: Vec<u64> = curves[0].iter().map(|p| p.0).collect();
        steps.retain(|s| curves.iter().all(|c| c.iter().any(|p| p.0 == *s)));
        let points = steps
            .iter()
            .map(|&s| {
                let vals: Vec<f64> = curves.iter().filter_map(|c| c.iter().find(|p| p.0 == s).map(|p| p.1)).collect();
                let (m, sd) = mean_std(&vals);
                (s, m, sd)
            })
            .collect();
        bands.push((g.clone(), points));
    }

    let dir = sweep.out.join(FOLDER);
    std::fs::create_dir_all(&dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let val_col = |v: Option<f64>| if validation { format!("{:.6},", v.unwrap_or(f64::NAN)) } else { String::new() };
    let mut runs = format!("variant,group,seed,final_test_acc,{}wall_seconds,dir\n", if validation { "final_val_acc," } else { "" });
    for f in &finished {
        runs += &format!(
            "{},{},{},{:.6},{}{:.3},{}\n",
            f.variant.index,
            f.group,
            f.seed,
            f.final_acc,
            val_col(Some(final_val(f))),
            f.wall,
            f.variant.dir.display()
        );
    }
    write_atomic(&dir.join("runs.csv"), runs.as_bytes())?;
    let mut summary = format!(
        "group,runs,final_acc_mean,final_acc_std,{}wall_seconds_mean,wall_seconds_std\n",
        if validation { "final_val_acc_mean,final_val_acc_std," } else { "" }
    );
    for s in &summaries {
        summary += &format!(
            "{},{},{:.6},{:.6},{}{:.3},{:.3}\n",
            s.group,
            s.runs,
            s.final_acc_mean,
            s.final_acc_std,
            val_col(s.final_val_acc_mean) + &val_col(s.final_val_acc_std),
            s.wall_seconds_mean,
            s.wall_seconds_std
        );
    }
    write_atomic(&dir.join("summary.csv"), summary.as_bytes())?;
    let mut curves = String::from("group,step,acc_mean,acc_std\n");
    for (g, points) in &bands {
        for &(s, m, sd) in points {
            curves += &format!("{g},{s},{m:.6},{sd:.6}\n");
        }
    }
    write_atomic(&dir.join("curves.csv"), curves.as_bytes())?;
    let best_by_validation = summaries
        .iter()
        .filter_map(|s| s.final_val_acc_mean.map(|v| (v, &s.group)))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, g)| g.clone());
    let report = Report { groups: summaries, unfinished, best_by_validation, dir: dir.clone() };
    write_json_atomic(&dir.join("summary.json"), &report)?;
    let what = if validation { "validation accuracy" } else { "test accuracy" };
    crate::report::accuracy_plot_of(
        &dir.join(crate::report::FOLDER),
        &format!("{what} (%)"),
        &format!("{what} of the sweep's groups (mean ± std over seeds)"),
        &bands,
        &[],
    )?;
    Ok(report)
}
