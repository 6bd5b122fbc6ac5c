//! `svcca analyze RUN_DIR --shard I/N`: the learning-dynamics analysis split into units of
//! work, so that the tasks of a job array share it (`scripts/slurm/analyze-shards.sbatch`).
//!
//! The units are, in order: the shuffled baseline of each layer, then each (analysed
//! checkpoint, layer) pair, whose result is one row of that checkpoint's matrix (the layer
//! against every final layer). Unit k belongs to shard k mod N: a pure function of the run
//! folder, so every task agrees without talking to the others. Each unit's result is
//! written on its own, atomically, to `analysis/units/` (`shuffled-LLL.json`,
//! `step-SSSSSSSS-LLL.json`, L the layer's index) and skipped when present, so a
//! requeued task redoes nothing finished, and a unit whose whole step is already in
//! `analysis/steps/` (an unsharded analysis) is not redone either.
//!
//! When every unit is on disk the shard that sees it merges them (and `--merge` does it
//! by hand): the rows become `analysis/steps/step-N.json` and the baselines
//! `analysis/shuffled.json`, exactly what an unsharded analysis writes, and the tables are
//! built from those by the same code; so the tables equal an unsharded run's. (A merge
//! from two shards at once writes the same bytes twice, each atomically.)

use super::dynamics::{self, comparisons_bar, AnalyzeSummary, Plan, StepResult};
use crate::io::write_json_atomic;
use crate::device::DeviceChoice;
use crate::error::InputError;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::Tensor;

/// Shard `index` of `count` (0-based), written `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl std::str::FromStr for Shard {
    type Err = String;
    fn from_str(text: &str) -> Result<Shard, String> {
        let bad = || format!("'{text}': give I/N, shard I (0-based) of N, e.g. 0/4");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(format!("'{text}': the shard index must be in 0..N"));
        }
        Ok(Shard { index, count })
    }
}

/// A unit of the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// The shuffled baseline of layer i.
    Shuffled(usize),
    /// Row i of the matrix of a step.
    Row(u64, usize),
}

/// All units of an analysis of `steps` over `layers` layers, in shard order.
pub fn units(steps: &[u64], layers: usize) -> Vec<Unit> {
    let mut u: Vec<Unit> = (0..layers).map(Unit::Shuffled).collect();
    u.extend(steps.iter().flat_map(|&s| (0..layers).map(move |i| Unit::Row(s, i))));
    u
}

/// The units of `shard`.
pub fn of_shard(all: &[Unit], shard: Shard) -> Vec<Unit> {
    all.iter().enumerate().filter(|(k, _)| k % shard.count == shard.index).map(|(_, u)| *u).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RowResult {
    step: u64,
    layer: String,
    row: Vec<Option<f64>>,
    seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct ShuffledResult {
    layer: String,
    shuffled: Option<f64>,
}

fn unit_path(plan: &Plan, u: Unit) -> PathBuf {
    let dir = plan.dir.join("units");
    match u {
        Unit::Shuffled(i) => dir.join(format!("shuffled-{i:03}.json")),
        Unit::Row(s, i) => dir.join(format!("step-{s:08}-{i:03}.json")),
    }
}

fn done(plan: &Plan, u: Unit) -> bool {
    unit_path(plan, u).exists()
        || match u {
            Unit::Shuffled(_) => plan.baseline_path().exists(),
            Unit::Row(s, _) => plan.step_path(s).exists(),
        }
}

/// What one shard did.
#[derive(Debug)]
pub struct ShardSummary {
    pub shard: Shard,
    /// Units of this shard computed now, and found done.
    pub computed: usize,
    pub skipped: usize,
    /// Units of all shards still missing after this one.
    pub missing: usize,
    /// The merged analysis, when this shard completed it.
    pub merged: Option<AnalyzeSummary>,
}

/// Computes `shard`'s units of the analysis of `run`; merges when all are done.
pub fn analyze_shard(run: &Path, device: Option<DeviceChoice>, shard: Shard) -> anyhow::Result<ShardSummary> {
    let mut plan = dynamics::plan(run, device)?;
    let all = units(&plan.steps, plan.layers.len());
    let mine = of_shard(&all, shard);
    let todo: Vec<Unit> = mine.iter().copied().filter(|&u| !done(&plan, u)).collect();
    let units_dir = plan.dir.join("units");
    std::fs::create_dir_all(&units_dir).with_context(|| format!("cannot create {}", units_dir.display()))?;
    if !todo.is_empty() {
        tracing::info!("shard {}/{}: {} of its {} units to do ({} in all)", shard.index, shard.count, todo.len(), mine.len(), all.len());
        let layers = plan.layers.clone();
        let finals = plan.activations(plan.total, &layers)?;
        let rows = todo.iter().filter(|u| matches!(u, Unit::Row(..))).count();
        let bar = comparisons_bar((rows * layers.len()) as u64);
        let mut by_step: Vec<(u64, Vec<usize>)> = Vec::new();
        for &u in &todo {
            crate::preempt::check(|| format!("in shard {}/{} of {} (finished units are kept)", shard.index, shard.count, run.display()))?;
            match u {
                Unit::Shuffled(i) => {
                    let r = ShuffledResult { layer: layers[i].clone(), shuffled: plan.shuffled(&finals[i]) };
                    write_json_atomic(&unit_path(&plan, u), &r)?;
                }
                Unit::Row(s, i) => match by_step.last_mut() {
                    Some((last, is)) if *last == s => is.push(i),
                    _ => by_step.push((s, vec![i])),
                },
            }
        }
        for (step, is) in by_step {
            crate::preempt::check(|| format!("in shard {}/{} of {} (finished units are kept)", shard.index, shard.count, run.display()))?;
            bar.set_message(format!("step {step}"));
            // Only this shard's layers of the step are recorded.
            let names: Vec<String> = is.iter().map(|&i| layers[i].clone()).collect();
            let acts: Vec<Tensor> = if step == plan.total {
                is.iter().map(|&i| finals[i].shallow_clone()).collect()
            } else {
                plan.activations(step, &names)?
            };
            for (x, &i) in acts.iter().zip(&is) {
                let t = Instant::now();
                let row = plan.row(x, &finals, &bar);
                let r = RowResult { step, layer: layers[i].clone(), row, seconds: t.elapsed().as_secs_f64() };
                write_json_atomic(&unit_path(&plan, Unit::Row(step, i)), &r)?;
            }
        }
        bar.finish_and_clear();
    }
    let missing = all.iter().filter(|&&u| !done(&plan, u)).count();
    let merged = if missing == 0 { Some(merge_plan(plan)?) } else { None };
    Ok(ShardSummary { shard, computed: todo.len(), skipped: mine.len() - todo.len(), missing, merged })
}

/// `svcca analyze RUN_DIR --merge`: joins the shards' units into the tables; refuses
/// while units are missing.
pub fn merge(run: &Path, device: Option<DeviceChoice>) -> anyhow::Result<AnalyzeSummary> {
    merge_plan(dynamics::plan(run, device)?)
}

fn merge_plan(plan: Plan) -> anyhow::Result<AnalyzeSummary> {
    let all = units(&plan.steps, plan.layers.len());
    let missing = all.iter().filter(|&&u| !done(&plan, u)).count();
    if missing > 0 {
        return Err(InputError::new(format!(
            "{}: {missing} of {} units of the analysis are not done yet: run the missing shards (svcca analyze RUN --shard I/N)",
            plan.dir.display(),
            all.len()
        ))
        .into());
    }
    let read = |path: PathBuf| -> anyhow::Result<String> { std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display())) };
    let n = plan.layers.len();
    if !plan.baseline_path().exists() {
        let mut shuffled = Vec::with_capacity(n);
        for i in 0..n {
            let path = unit_path(&plan, Unit::Shuffled(i));
            let r: ShuffledResult = serde_json::from_str(&read(path.clone())?).map_err(|e| InputError::new(format!("{}: {e}", path.display())))?;
            shuffled.push(r.shuffled);
        }
        write_json_atomic(&plan.baseline_path(), &shuffled)?;
    }
    let mut merged = 0;
    for &step in &plan.steps {
        if plan.step_path(step).exists() {
            continue;
        }
        let (mut matrix, mut seconds) = (Vec::with_capacity(n), 0.0);
        for i in 0..n {
            let path = unit_path(&plan, Unit::Row(step, i));
            let r: RowResult = serde_json::from_str(&read(path.clone())?).map_err(|e| InputError::new(format!("{}: {e}", path.display())))?;
            if r.layer != plan.layers[i] || r.row.len() != n {
                return Err(InputError::new(format!("{}: made for other layers ({}); delete analysis/units to redo it", path.display(), r.layer)).into());
            }
            matrix.push(r.row);
            seconds += r.seconds;
        }
        let result = StepResult { step, fraction: step as f64 / plan.total as f64, layers: plan.layers.clone(), matrix, seconds };
        write_json_atomic(&plan.step_path(step), &result)?;
        merged += 1;
    }
    tracing::info!("merged the units of {merged} checkpoints into {}", plan.dir.display());
    let dynamics = dynamics::tables(&plan)?;
    let steps = plan.steps.len();
    Ok(AnalyzeSummary { dir: plan.dir, dynamics, computed: merged, skipped: steps - merged, seconds_recording: 0.0, seconds_analysing: 0.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_partition_the_units() {
        let all = units(&[0, 10, 20], 4);
        assert_eq!(all.len(), 4 + 12);
        assert_eq!(all[4], Unit::Row(0, 0));
        for n in 1..6 {
            let mut joined: Vec<Unit> = (0..n).flat_map(|i| of_shard(&all, Shard { index: i, count: n })).collect();
            assert_eq!(joined.len(), all.len());
            joined.sort_by_key(|u| all.iter().position(|v| v == u).unwrap());
            assert_eq!(joined, all);
        }
        assert_eq!("1/3".parse::<Shard>(), Ok(Shard { index: 1, count: 3 }));
        assert!("3/3".parse::<Shard>().is_err());
        assert!("1-3".parse::<Shard>().is_err());
        assert!("0/0".parse::<Shard>().is_err());
    }
}
