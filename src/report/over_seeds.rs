//! Runs over seeds: finished runs in groups (a sweep's groups of variants, `experiment
//! freeze`'s base and freeze runs), each group's final accuracy and wall-clock as mean and
//! standard deviation (n − 1) over its runs, its accuracy curve at the steps its runs
//! share, written as `runs.csv`, `summary.csv`, `curves.csv` and `plots/accuracy.{png,svg}`
//! (the curves with a ±1 std band). `svcca sweep --report` and `svcca experiment freeze`
//! both write through [`write`]; what differs between them is a [`Layout`].
//!
//! With validation, the tables gain the final validation accuracy, and the curves (given
//! by the caller) are validation accuracy.

use crate::error::InputError;
use crate::io::write_atomic;
use crate::stats::mean_std;
use serde::Serialize;
use std::path::Path;

/// One finished run.
#[derive(Debug, Clone)]
pub(crate) struct Run {
    pub group: String,
    pub seed: u64,
    pub final_test_acc: f64,
    /// With validation: the final validation accuracy.
    pub final_val_acc: Option<f64>,
    pub wall_seconds: f64,
    /// `(step, accuracy)`: validation accuracy with validation, test accuracy without.
    pub curve: Vec<(u64, f64)>,
    /// The caller's columns of `runs.csv`, as written: those of [`Layout::runs_lead`]
    /// (before the group), then those of [`Layout::runs_tail`] (after the wall-clock).
    pub lead: Vec<String>,
    pub tail: Vec<String>,
}

/// A group over its runs (the seeds in run order).
#[derive(Debug, Clone, Serialize)]
pub struct GroupSummary {
    pub group: String,
    pub runs: usize,
    pub seeds: Vec<u64>,
    pub final_acc_mean: f64,
    pub final_acc_std: f64,
    /// With validation: the final validation accuracy, mean and std.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_acc_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub final_val_acc_std: Option<f64>,
    pub wall_seconds_mean: f64,
    pub wall_seconds_std: f64,
}

/// The shape of `curves.csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Curves {
    /// `group,step,acc_mean,acc_std`: each group at the steps all its runs evaluated at.
    Long,
    /// `step,G_acc_mean,G_acc_std,...` per group G (`G_val_acc_mean`, ... with
    /// validation): the steps every run of every group evaluated at, groups side by side.
    Wide,
}

/// A caller's column of `summary.csv`: its name and each group's value, as written.
pub(crate) type Column<'a> = (&'a str, &'a dyn Fn(&GroupSummary) -> String);

/// What a report names and adds; the numbers and their formats are [`write`]'s.
pub(crate) struct Layout<'a> {
    /// The group column's name in `runs.csv`, `summary.csv` and (long) `curves.csv`.
    pub group: &'a str,
    /// The name of `summary.csv`'s column of the number of runs in each group.
    pub count: &'a str,
    /// `runs.csv`: the names of each [`Run::lead`] and [`Run::tail`] column.
    pub runs_lead: &'a [&'a str],
    pub runs_tail: &'a [&'a str],
    /// `summary.csv`: columns after the wall-clock's.
    pub summary_tail: &'a [Column<'a>],
    pub curves: Curves,
    /// The plot's title after what it shows ("test accuracy", "validation accuracy");
    /// " (mean ± std over seeds)" follows.
    pub title: &'a str,
    /// Steps at which layers froze: the plot's dashed lines.
    pub freeze_steps: &'a [u64],
}

/// Writes the tables and the plot of `runs` (at least one) into `dir` (made if missing),
/// under `layout`, with the final validation accuracy where `validation`; returns the
/// groups in the order of their first run.
pub(crate) fn write(dir: &Path, runs: &[Run], validation: bool, layout: &Layout) -> anyhow::Result<Vec<GroupSummary>> {
    let mut names: Vec<&str> = Vec::new();
    for r in runs {
        if !names.contains(&r.group.as_str()) {
            names.push(&r.group);
        }
    }
    let groups: Vec<Vec<&Run>> = names.iter().map(|g| runs.iter().filter(|r| r.group == *g).collect()).collect();
    let summaries: Vec<GroupSummary> = groups.iter().map(|g| summary(g, validation)).collect();
    let bands: Vec<super::Band> = match layout.curves {
        Curves::Long => groups.iter().map(|g| (g[0].group.clone(), band(g, &common_steps(g)))).collect(),
        Curves::Wide => {
            let steps = common_steps(&runs.iter().collect::<Vec<_>>());
            groups.iter().map(|g| (g[0].group.clone(), band(g, &steps))).collect()
        }
    };

    std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let val_col = |v: Option<f64>| if validation { format!("{:.6},", v.unwrap_or(f64::NAN)) } else { String::new() };

    let mut text = format!(
        "{}{},seed,final_test_acc,{}wall_seconds{}\n",
        leading(layout.runs_lead),
        layout.group,
        if validation { "final_val_acc," } else { "" },
        trailing(layout.runs_tail)
    );
    for r in runs {
        text += &format!(
            "{}{},{},{:.6},{}{:.3}{}\n",
            leading(&r.lead),
            r.group,
            r.seed,
            r.final_test_acc,
            val_col(r.final_val_acc),
            r.wall_seconds,
            trailing(&r.tail)
        );
    }
    write_atomic(&dir.join("runs.csv"), text.as_bytes())?;

    let mut text = format!(
        "{},{},final_acc_mean,final_acc_std,{}wall_seconds_mean,wall_seconds_std{}\n",
        layout.group,
        layout.count,
        if validation { "final_val_acc_mean,final_val_acc_std," } else { "" },
        trailing(&layout.summary_tail.iter().map(|c| c.0).collect::<Vec<_>>())
    );
    for s in &summaries {
        text += &format!(
            "{},{},{:.6},{:.6},{}{:.3},{:.3}{}\n",
            s.group,
            s.runs,
            s.final_acc_mean,
            s.final_acc_std,
            val_col(s.final_val_acc_mean) + &val_col(s.final_val_acc_std),
            s.wall_seconds_mean,
            s.wall_seconds_std,
            trailing(&layout.summary_tail.iter().map(|c| (c.1)(s)).collect::<Vec<_>>())
        );
    }
    write_atomic(&dir.join("summary.csv"), text.as_bytes())?;

    let text = match layout.curves {
        Curves::Long => {
            let mut text = String::from("group,step,acc_mean,acc_std\n");
            for (g, points) in &bands {
                for &(s, m, sd) in points {
                    text += &format!("{g},{s},{m:.6},{sd:.6}\n");
                }
            }
            text
        }
        Curves::Wide => {
            let acc = if validation { "val_acc" } else { "acc" };
            let mut text = String::from("step");
            for (g, _) in &bands {
                text += &format!(",{g}_{acc}_mean,{g}_{acc}_std");
            }
            text += "\n";
            for (i, &(step, ..)) in bands[0].1.iter().enumerate() {
                text += &step.to_string();
                for (_, points) in &bands {
                    text += &format!(",{:.6},{:.6}", points[i].1, points[i].2);
                }
                text += "\n";
            }
            text
        }
    };
    write_atomic(&dir.join("curves.csv"), text.as_bytes())?;

    let what = if validation { "validation accuracy" } else { "test accuracy" };
    super::accuracy_plot_of(
        &dir.join(super::FOLDER),
        &format!("{what} (%)"),
        &format!("{what}{} (mean ± std over seeds)", layout.title),
        &bands,
        layout.freeze_steps,
    )?;
    Ok(summaries)
}

/// Cells each followed by a comma.
fn leading(cells: &[impl std::fmt::Display]) -> String {
    cells.iter().map(|c| format!("{c},")).collect()
}

/// Cells each preceded by a comma.
fn trailing(cells: &[impl std::fmt::Display]) -> String {
    cells.iter().map(|c| format!(",{c}")).collect()
}

/// The group of `runs` (one group, at least one run) over its seeds.
fn summary(runs: &[&Run], validation: bool) -> GroupSummary {
    let over = |f: &dyn Fn(&Run) -> f64| mean_std(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    let (final_acc_mean, final_acc_std) = over(&|r| r.final_test_acc);
    let (wall_seconds_mean, wall_seconds_std) = over(&|r| r.wall_seconds);
    let val = validation.then(|| over(&|r| r.final_val_acc.unwrap_or(f64::NAN)));
    GroupSummary {
        group: runs[0].group.clone(),
        runs: runs.len(),
        seeds: runs.iter().map(|r| r.seed).collect(),
        final_acc_mean,
        final_acc_std,
        final_val_acc_mean: val.map(|v| v.0),
        final_val_acc_std: val.map(|v| v.1),
        wall_seconds_mean,
        wall_seconds_std,
    }
}

/// The steps of the first run's curve that every run's curve has.
fn common_steps(runs: &[&Run]) -> Vec<u64> {
    let mut steps: Vec<u64> = runs[0].curve.iter().map(|p| p.0).collect();
    steps.retain(|s| runs.iter().all(|r| r.curve.iter().any(|p| p.0 == *s)));
    steps
}

/// `(step, mean, std)` of the runs' curves at `steps` (which every run has).
fn band(runs: &[&Run], steps: &[u64]) -> Vec<(u64, f64, f64)> {
    steps
        .iter()
        .map(|&s| {
            let vals: Vec<f64> = runs.iter().filter_map(|r| r.curve.iter().find(|p| p.0 == s).map(|p| p.1)).collect();
            let (m, sd) = mean_std(&vals);
            (s, m, sd)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(group: &str, curve: &[(u64, f64)]) -> Run {
        Run {
            group: group.into(),
            seed: 0,
            final_test_acc: 0.5,
            final_val_acc: None,
            wall_seconds: 1.0,
            curve: curve.to_vec(),
            lead: Vec::new(),
            tail: Vec::new(),
        }
    }

    #[test]
    fn long_curves_share_steps_within_a_group_wide_ones_across_all() {
        let runs =
            [run("a", &[(0, 0.1), (10, 0.2), (20, 0.3)]), run("a", &[(0, 0.3), (10, 0.4), (20, 0.5)]), run("b", &[(0, 0.1), (20, 0.2)])];
        let layout = |curves| Layout {
            group: "group",
            count: "runs",
            runs_lead: &[],
            runs_tail: &[],
            summary_tail: &[],
            curves,
            title: "",
            freeze_steps: &[],
        };
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), &runs, false, &layout(Curves::Long)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("curves.csv")).unwrap();
        assert_eq!(text.lines().filter(|l| l.starts_with("a,")).count(), 3, "{text}");
        write(dir.path(), &runs, false, &layout(Curves::Wide)).unwrap();
        let text = std::fs::read_to_string(dir.path().join("curves.csv")).unwrap();
        assert_eq!(text, "step,a_acc_mean,a_acc_std,b_acc_mean,b_acc_std\n0,0.200000,0.141421,0.100000,0.000000\n20,0.400000,0.141421,0.200000,0.000000\n");
    }
}
