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
    pub wall_seconds_mean: f64,
    pub wall_seconds_std: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub groups: Vec<GroupSummary>,
    /// Indices of the variants not (yet) trained to the end.
    pub unfinished: Vec<usize>,
    pub dir: PathBuf,
}

struct Finished {
    variant: Variant,
    group: String,
    seed: u64,
    curve: Vec<(u64, f64)>,
    final_acc: f64,
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
                finished.push(Finished { group: group_of(v), seed: config.train.seed, variant: v.clone(), curve, final_acc, wall })
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
    let mut summaries = Vec::new();
    let mut bands: Vec<crate::report::Band> = Vec::new();
    for g in &groups {
        let runs: Vec<&Finished> = finished.iter().filter(|f| &f.group == g).collect();
        let (final_acc_mean, final_acc_std) = mean_std(&runs.iter().map(|f| f.final_acc).collect::<Vec<_>>());
        let (wall_seconds_mean, wall_seconds_std) = mean_std(&runs.iter().map(|f| f.wall).collect::<Vec<_>>());
        summaries.push(GroupSummary {
            group: g.clone(),
            runs: runs.len(),
            seeds: runs.iter().map(|f| f.seed).collect(),
            final_acc_mean,
            final_acc_std,
            wall_seconds_mean,
            wall_seconds_std,
        });
        let mut steps: Vec<u64> = runs[0].curve.iter().map(|p| p.0).collect();
        steps.retain(|s| runs.iter().all(|f| f.curve.iter().any(|p| p.0 == *s)));
        let points = steps
            .iter()
            .map(|&s| {
                let vals: Vec<f64> = runs.iter().filter_map(|f| f.curve.iter().find(|p| p.0 == s).map(|p| p.1)).collect();
                let (m, sd) = mean_std(&vals);
                (s, m, sd)
            })
            .collect();
        bands.push((g.clone(), points));
    }

    let dir = sweep.out.join(FOLDER);
    std::fs::create_dir_all(&dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let mut runs = String::from("variant,group,seed,final_test_acc,wall_seconds,dir\n");
    for f in &finished {
        runs += &format!("{},{},{},{:.6},{:.3},{}\n", f.variant.index, f.group, f.seed, f.final_acc, f.wall, f.variant.dir.display());
    }
    write_atomic(&dir.join("runs.csv"), runs.as_bytes())?;
    let mut summary = String::from("group,runs,final_acc_mean,final_acc_std,wall_seconds_mean,wall_seconds_std\n");
    for s in &summaries {
        summary += &format!(
            "{},{},{:.6},{:.6},{:.3},{:.3}\n",
            s.group, s.runs, s.final_acc_mean, s.final_acc_std, s.wall_seconds_mean, s.wall_seconds_std
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
    let report = Report { groups: summaries, unfinished, dir: dir.clone() };
    write_json_atomic(&dir.join("summary.json"), &report)?;
    crate::report::accuracy_plot(
        &dir.join(crate::report::FOLDER),
        "test accuracy of the sweep's groups (mean ± std over seeds)",
        &bands,
        &[],
    )?;
    Ok(report)
}
