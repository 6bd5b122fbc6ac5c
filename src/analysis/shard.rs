//! `svcca analyze RUN_DIR --shard I/N`: the learning-dynamics analysis split into units of
//! work, so that the tasks of a job array share it (`scripts/slurm/analyze-shards.sbatch`).
//!
//! The units are, in order: each row of the chance matrix (a final layer with the
//! probe's datapoints shuffled against every final layer), then each (analysed
//! checkpoint, layer) pair, whose result is one row of that checkpoint's matrix (the layer
//! against every final layer). Unit k belongs to shard k mod N: a pure function of the run
//! folder, so every task agrees without talking to the others. Each unit's result is
//! written on its own, atomically, to `analysis/units/` (`chance-LLL.json`,
//! `step-SSSSSSSS-LLL.json`, L the layer's index; see [`super::results`]) and skipped when present, so a
//! requeued task redoes nothing finished, and a unit whose whole matrix is already in
//! `analysis/` (an unsharded analysis) is not redone either.
//!
//! When every unit is on disk the shard that sees it merges them (and `--merge` does it
//! by hand): the rows become `analysis/steps/step-N.json` and the chance rows
//! `analysis/chance.json`, exactly what an unsharded analysis writes, and the tables are
//! built from those by the same code; so the tables equal an unsharded run's. (A merge
//! from two shards at once writes the same bytes twice, each atomically.)

use super::dynamics::{self, comparisons_bar, AnalyzeSummary, Plan, Rows, StepResult};
use super::results::Results;
use crate::activations::LayerSet;
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::io::write_json_atomic;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;
use tch::Tensor;

/// Shard `index` of `count` (0-based), written `I/N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shard {
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
pub(crate) enum Unit {
    /// Row i of the chance matrix.
    Chance(usize),
    /// Row i of the matrix of a step.
    Row(u64, usize),
}

/// All units of an analysis of `steps` over `layers` layers, in shard order.
pub(crate) fn units(steps: &[u64], layers: usize) -> Vec<Unit> {
    let mut u: Vec<Unit> = (0..layers).map(Unit::Chance).collect();
    u.extend(steps.iter().flat_map(|&s| (0..layers).map(move |i| Unit::Row(s, i))));
    u
}

/// The units of `shard`.
pub(crate) fn of_shard(all: &[Unit], shard: Shard) -> Vec<Unit> {
    all.iter().enumerate().filter(|(k, _)| k % shard.count == shard.index).map(|(_, u)| *u).collect()
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct RowResult {
    step: u64,
    layer: String,
    row: Vec<Option<f64>>,
    seconds: f64,
}

/// The units' results in `analysis/units/`: `chance-LLL.json` and `step-SSSSSSSS-LLL.json`
/// (a chance row's `step` is the final step, whose layers it shuffles).
struct UnitResults {
    chance: Results<usize, RowResult>,
    rows: Results<(u64, usize), RowResult>,
}

impl UnitResults {
    fn new(plan: &Plan) -> UnitResults {
        let dir = plan.dir.join("units");
        UnitResults {
            chance: Results::new(&dir, |i| format!("chance-{i:03}.json")),
            rows: Results::new(&dir, |&(s, i)| format!("step-{s:08}-{i:03}.json")),
        }
    }

    /// Whether `u` is done: its own file, or the merged file it goes into.
    fn done(&self, plan: &Plan, u: Unit) -> bool {
        match u {
            Unit::Chance(i) => self.chance.is_done(&i) || plan.chance_path().exists(),
            Unit::Row(s, i) => self.rows.is_done(&(s, i)) || plan.results.is_done(&s),
        }
    }

    /// Row `i` of `rows` as computed by a shard, checked to be of that layer and width.
    fn row(&self, plan: &Plan, rows: Rows, i: usize) -> anyhow::Result<RowResult> {
        let (r, path) = match rows {
            Rows::Shuffled => (self.chance.load(&i)?, self.chance.path(&i)),
            Rows::Step(s) => (self.rows.load(&(s, i))?, self.rows.path(&(s, i))),
        };
        if r.layer != plan.layers[i] || r.row.len() != plan.layers.len() {
            return Err(InputError::new(format!(
                "{}: made for other layers ({}); delete analysis/units to redo it",
                path.display(),
                r.layer
            ))
            .into());
        }
        Ok(r)
    }
}

/// What one shard did.
#[derive(Debug)]
pub(crate) struct ShardSummary {
    /// Units of this shard computed now, and found done.
    pub computed: usize,
    pub skipped: usize,
    /// Units of all shards still missing after this one.
    pub missing: usize,
    /// The merged analysis, when this shard completed it.
    pub merged: Option<AnalyzeSummary>,
}

/// Computes `shard`'s units of the analysis of `run`; merges when all are done.
pub(crate) fn analyze_shard(run: &Path, device: Option<DeviceChoice>, shard: Shard) -> anyhow::Result<ShardSummary> {
    let mut plan = dynamics::plan(run, device)?;
    let units = UnitResults::new(&plan);
    let all = self::units(&plan.steps, plan.layers.len());
    let mine = of_shard(&all, shard);
    let todo: Vec<Unit> = mine.iter().copied().filter(|&u| !units.done(&plan, u)).collect();
    let units_dir = plan.dir.join("units");
    std::fs::create_dir_all(&units_dir).with_context(|| format!("cannot create {}", units_dir.display()))?;
    if !todo.is_empty() {
        tracing::info!("shard {}/{}: {} of its {} units to do ({} in all)", shard.index, shard.count, todo.len(), mine.len(), all.len());
        let layers = plan.layers.clone();
        let finals = plan.activations(plan.total, &layers)?;
        crate::activations::conv_dense_fallbacks(&plan.config, &layers, &finals, finals.iter().any(|f| f.dim() == 2));
        let at = || format!("in shard {}/{} of {} (finished units are kept)", shard.index, shard.count, run.display());
        let mut final_set = LayerSet::new(finals.iter().map(Tensor::shallow_clone).collect(), &plan.config);
        let keys: Vec<(Rows, usize)> = todo
            .iter()
            .map(|u| match *u {
                Unit::Chance(i) => (Rows::Shuffled, i),
                Unit::Row(s, i) => (Rows::Step(s), i),
            })
            .collect();
        let bar = comparisons_bar((keys.len() * layers.len()) as u64);
        // This shard's rows of the matrix in hand: only their layers are recorded, once.
        let mut recorded: Option<(Rows, Vec<usize>, LayerSet)> = None;
        let mut row_of = |rows: Rows, i: usize| -> anyhow::Result<RowResult> {
            if recorded.as_ref().is_none_or(|r| r.0 != rows) {
                bar.set_message(match rows {
                    Rows::Shuffled => "chance".to_string(),
                    Rows::Step(step) => format!("step {step}"),
                });
                let is: Vec<usize> = keys.iter().filter(|k| k.0 == rows).map(|k| k.1).collect();
                let names: Vec<String> = is.iter().map(|&i| layers[i].clone()).collect();
                let held = || is.iter().map(|&i| finals[i].shallow_clone()).collect();
                let acts: Vec<Tensor> = match rows {
                    Rows::Shuffled => plan.shuffled(held()),
                    Rows::Step(step) if step == plan.total => held(),
                    Rows::Step(step) => plan.activations(step, &names)?,
                };
                let mut set = LayerSet::new(acts, &plan.config);
                plan.summarise_rows(rows, &mut set, &names, &final_set);
                recorded = Some((rows, is, set));
            }
            let (_, is, acts) = recorded.as_mut().expect("recorded above");
            let x = is.iter().position(|&j| j == i).expect("a row of this matrix");
            let t = Instant::now();
            let row = plan.row(rows, acts, x, &layers[i], &mut final_set, &bar);
            let step = if let Rows::Step(step) = rows { step } else { plan.total };
            Ok(RowResult { step, layer: layers[i].clone(), row, seconds: t.elapsed().as_secs_f64() })
        };
        let chance: Vec<usize> = todo.iter().filter_map(|u| if let Unit::Chance(i) = *u { Some(i) } else { None }).collect();
        units.chance.compute(&chance, at, |&i| row_of(Rows::Shuffled, i))?;
        let rows: Vec<(u64, usize)> = todo.iter().filter_map(|u| if let Unit::Row(s, i) = *u { Some((s, i)) } else { None }).collect();
        units.rows.compute(&rows, at, |&(step, i)| row_of(Rows::Step(step), i))?;
        bar.finish_and_clear();
    }
    let missing = all.iter().filter(|&&u| !units.done(&plan, u)).count();
    let merged = if missing == 0 { Some(merge_plan(plan)?) } else { None };
    Ok(ShardSummary { computed: todo.len(), skipped: mine.len() - todo.len(), missing, merged })
}

/// `svcca analyze RUN_DIR --merge`: joins the shards' units into the tables; refuses
/// while units are missing.
pub(crate) fn merge(run: &Path, device: Option<DeviceChoice>) -> anyhow::Result<AnalyzeSummary> {
    merge_plan(dynamics::plan(run, device)?)
}

fn merge_plan(plan: Plan) -> anyhow::Result<AnalyzeSummary> {
    let units = UnitResults::new(&plan);
    let all = self::units(&plan.steps, plan.layers.len());
    let missing = all.iter().filter(|&&u| !units.done(&plan, u)).count();
    if missing > 0 {
        return Err(InputError::new(format!(
            "{}: {missing} of {} units of the analysis are not done yet: run the missing shards (svcca analyze RUN --shard I/N)",
            plan.dir.display(),
            all.len()
        ))
        .into());
    }
    // Every unit is done: a temporary left in units/ is a killed task's, whose unit a
    // task run again has written since. Shards share the folder, so the lock's clean-up
    // (exclusive holders only) never runs there.
    for p in crate::io::remove_superseded_temporaries(&plan.dir.join("units"))? {
        tracing::info!("removed {}, left by a shard task that was stopped", p.display());
    }
    let n = plan.layers.len();
    if !plan.chance_path().exists() {
        let chance: Vec<Vec<Option<f64>>> =
            (0..n).map(|i| units.row(&plan, Rows::Shuffled, i).map(|r| r.row)).collect::<anyhow::Result<_>>()?;
        write_json_atomic(&plan.chance_path(), &chance)?;
    }
    let at = || format!("while merging the units of {}", plan.dir.display());
    let merged = plan.results.compute_missing(&plan.steps, at, |&step| {
        let (mut matrix, mut seconds) = (Vec::with_capacity(n), 0.0);
        for i in 0..n {
            let r = units.row(&plan, Rows::Step(step), i)?;
            matrix.push(r.row);
            seconds += r.seconds;
        }
        Ok(StepResult { step, fraction: step as f64 / plan.total as f64, layers: plan.layers.clone(), matrix, seconds })
    })?;
    tracing::info!("merged the units of {} checkpoints into {}", merged.computed, plan.dir.display());
    let dynamics = dynamics::tables(&plan)?;
    let (computed, skipped) = (merged.computed, merged.skipped);
    Ok(AnalyzeSummary { dir: plan.dir, dynamics, computed, skipped, seconds_recording: 0.0, seconds_analysing: 0.0, memory: None })
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
