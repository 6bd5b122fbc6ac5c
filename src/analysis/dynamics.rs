//! `svcca analyze RUN_DIR`: for every analysed checkpoint, the similarity of each layer
//! to each layer of the final network (a layers x layers matrix; its diagonal is each
//! layer against its own final state), and the chance level of every cell: one more
//! layers x layers matrix, the final network's layers with the probe's datapoints
//! shuffled (one permutation for all layers) against the final layers as they are
//! (`chance.json`, `chance.csv`). SVCCA between layers that share nothing is not 0: it
//! grows with the layers' widths against the probe's size (a wide layer against a narrow
//! one scores high by construction), so a cell is read against its chance. The
//! diagonal is the shuffled baseline of each layer against itself; the network at
//! initialisation (step 0, `checkpoints.at_start`) is the other baseline.
//!
//! Resumable ([`super::results`]): each checkpoint's matrix is written to
//! `analysis/steps/step-N.json` as soon as it is done and skipped on the next run; the
//! tables are rebuilt from those files.
//! `analysis/settings.json` records the settings; a folder analysed with other settings
//! is refused rather than mixed.
//!
//! Conv layers are compared by `analysis.conv` (a conv pair too small for the DFT, 1 x 1,
//! by `avgpool`: channels averaged over positions), a conv-vs-dense pair (c5 vs fc1,
//! say) by `analysis.conv_dense` (see [`crate::activations::similarity`]).
//!
//! The input layer (`in`, the probe's normalised images; analysed by default) is the
//! same at every checkpoint, so its row (the input against each final layer) is too: it
//! is computed once per call and copied into every step's matrix. Its column varies.

use super::results::{read_json, Results};
use super::runs::Run;
use super::settings::Similarity;
use crate::activations::probe::Probe;
use crate::activations::record;
use crate::activations::store;
use crate::activations::{similarities, summarise_rows, LayerSet, Names};
use crate::config::{ActivationMode, Config};
use crate::device::DeviceChoice;
use crate::io::{write_atomic, write_json_atomic};
use crate::model::INPUT;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Tensor};

pub const FOLDER: &str = "analysis";

/// What the numbers depend on; a folder analysed with other settings is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(flatten)]
    pub similarity: Similarity,
    pub layers: Vec<String>,
    pub final_step: u64,
}

impl Settings {
    /// The settings of `analysis` for `layers` of a run whose final step is `final_step`.
    pub fn new(analysis: &crate::config::AnalysisConfig, layers: Vec<String>, final_step: u64) -> Settings {
        Settings { similarity: Similarity::of(analysis), layers, final_step }
    }
}

/// Whose layers a row of a matrix is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rows {
    /// A checkpoint's.
    Step(u64),
    /// The final network's with the probe's datapoints shuffled: the chance level.
    Shuffled,
}

/// One checkpoint's results: `matrix[i][j]` is layer i at this step against layer j of
/// the final network (`null` where the comparison failed, e.g. every neuron constant).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepResult {
    pub step: u64,
    pub fraction: f64,
    pub layers: Vec<String>,
    pub matrix: Vec<Vec<Option<f64>>>,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub layer: String,
    /// The final layer against itself with the probe's datapoints shuffled (the
    /// diagonal of [`Dynamics::chance`]).
    pub shuffled: Option<f64>,
    /// The layer at step 0 against its final state (absent without a step-0 checkpoint).
    pub init: Option<f64>,
}

/// Everything `analysis/dynamics.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dynamics {
    pub settings: Settings,
    pub steps: Vec<StepResult>,
    pub baseline: Vec<Baseline>,
    /// `chance[i][j]`: final layer i with the probe's datapoints shuffled against final
    /// layer j, the chance level of cell (i, j) of every step's matrix. Empty in a
    /// `dynamics.json` written before it was computed.
    #[serde(default)]
    pub chance: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone)]
pub struct AnalyzeSummary {
    pub dir: PathBuf,
    pub dynamics: Dynamics,
    /// Checkpoints analysed by this call, and found already done.
    pub computed: usize,
    pub skipped: usize,
    pub seconds_recording: f64,
    pub seconds_analysing: f64,
    /// How this call went through its memory budget (none when nothing was left to do).
    pub memory: Option<super::memory::MemoryPlan>,
}

/// Where activations come from.
enum Source {
    /// The run's checkpoints, each loaded and run on the probe set; `spilled` holds the
    /// steps recorded into temporary files ([`Source::spill`]).
    Replay { run: Box<Run>, probe: Probe, spilled: Vec<(u64, tempfile::NamedTempFile)> },
    /// Activations recorded during training (`store` mode), the input layer from the
    /// probe; or an activation folder written elsewhere (no probe: every layer is in the
    /// files, see [`super::activation_folder`]).
    Store { files: Vec<(u64, PathBuf)>, probe: Option<Probe>, device: Device },
}

impl Source {
    fn steps(&self) -> Vec<u64> {
        match self {
            Source::Replay { run, .. } => run.checkpoints.iter().map(|c| c.0).collect(),
            Source::Store { files, .. } => files.iter().map(|c| c.0).collect(),
        }
    }

    /// The shapes of `layers`' activations on the whole probe, as stand-ins (one element
    /// expanded), without recording them: from two datapoints
    /// of the final checkpoint, or the stored file's header.
    fn shapes(&mut self, step: u64, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        let stand_in = |shape: Vec<i64>, device: Device| Tensor::zeros([1], (tch::Kind::Float, device)).expand(shape.as_slice(), false);
        match self {
            Source::Replay { run, probe, .. } => {
                run.load_step(step)?;
                let n = probe.images.size()[0];
                let two = Probe { indices: probe.indices.iter().take(2).copied().collect(), images: probe.images.narrow(0, 0, n.min(2)) };
                let acts = record::record(&run.net, &two, layers)?;
                Ok(acts
                    .iter()
                    .map(|a| {
                        let mut shape = a.size();
                        shape[0] = n;
                        stand_in(shape, a.device())
                    })
                    .collect())
            }
            Source::Store { files, probe, device } => {
                let path = &files.iter().find(|c| c.0 == step).expect("listed").1;
                Ok(store::shapes(path, layers, probe.as_ref())?.into_iter().map(|s| stand_in(s, *device)).collect())
            }
        }
    }

    /// The file `step`'s activations are read from, where they were stored in training.
    fn file(&self, step: u64) -> Option<&Path> {
        match self {
            Source::Replay { .. } => None,
            Source::Store { files, .. } => files.iter().find(|c| c.0 == step).map(|c| c.1.as_path()),
        }
    }

    fn activations(&mut self, step: u64, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        match self {
            Source::Replay { run, probe, spilled } => match spilled.iter().find(|s| s.0 == step) {
                Some((_, file)) => store::load(file.path(), layers, Some(probe), probe.images.device()),
                None => {
                    run.load_step(step)?;
                    Ok(record::record(&run.net, probe, layers)?)
                }
            },
            Source::Store { files, probe, device } => {
                let path = &files.iter().find(|c| c.0 == step).expect("listed").1;
                store::load(path, layers, probe.as_ref(), *device)
            }
        }
    }
}

impl Source {
    /// Records `layers` at `step` once into a temporary file in `dir`, from which later
    /// calls of [`Source::activations`] for that step read only the layers they ask
    /// for: an analysis streamed in blocks then runs the network on the probe once per
    /// checkpoint, not once per block. Only the spill of `step` and of `keep` (the
    /// final step, read for every checkpoint) are kept. Stored activations are files
    /// already: nothing to do.
    fn spill(&mut self, step: u64, keep: u64, layers: &[String], dir: &Path) -> anyhow::Result<()> {
        let Source::Replay { run, probe, spilled } = self else { return Ok(()) };
        spilled.retain(|s| s.0 == step || s.0 == keep);
        if spilled.iter().any(|s| s.0 == step) {
            return Ok(());
        }
        let taps: Vec<String> = layers.iter().filter(|l| *l != INPUT).cloned().collect();
        let file = tempfile::Builder::new()
            .prefix(SPILL_PREFIX)
            .suffix(".safetensors")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        run.load_step(step)?;
        record::record_to_file(&run.net, probe, &taps, file.path())?;
        spilled.push((step, file));
        Ok(())
    }
}

/// The names of [`Source::spill`]'s files, in `RUN/analysis`: `.svcca-activations-XXXXXX.safetensors`.
const SPILL_PREFIX: &str = ".svcca-activations-";

/// Removes the spill files a killed analysis of this folder left (its own, by their
/// exact form: regular files directly in `dir`), under the folder's exclusive lock.
fn remove_stale_spills(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = name
            .strip_prefix(SPILL_PREFIX)
            .and_then(|r| r.strip_suffix(".safetensors"))
            .is_some_and(|r| r.len() == 6 && r.chars().all(|c| c.is_ascii_alphanumeric()));
        if ours && e.file_type().is_ok_and(|t| t.is_file()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// An analysis about to run: the run's config, where the activations come from, the
/// steps analysed, and the settings (already checked against the folder's).
pub(crate) struct Plan {
    pub config: Config,
    pub total: u64,
    pub layers: Vec<String>,
    source: Source,
    pub steps: Vec<u64>,
    pub settings: Settings,
    /// Each step's results: `RUN/analysis/steps/step-N.json`.
    pub results: Results<u64, StepResult>,
    /// `RUN/analysis`.
    pub dir: PathBuf,
    /// "checkpoints" or "stored activations".
    pub what: &'static str,
    /// The input layer's row by final layer, once computed: the same at every step.
    input_cells: RefCell<std::collections::HashMap<usize, Option<f64>>>,
}

impl Plan {
    /// The activations of `layers` at `step`.
    pub(crate) fn activations(&mut self, step: u64, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        self.source.activations(step, layers)
    }

    /// The chance matrix ([`Dynamics::chance`]).
    pub(crate) fn chance_path(&self) -> PathBuf {
        self.dir.join("chance.json")
    }

    /// The activations of `layers` for `rows`: a checkpoint's, or the final network's
    /// with the probe's datapoints permuted (the same permutation for every layer,
    /// drawn from `analysis.seed`).
    pub(crate) fn row_activations(&mut self, rows: Rows, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        match rows {
            Rows::Step(step) => self.activations(step, layers),
            Rows::Shuffled => {
                // Just read or recorded, each layer is its own: shuffled in place.
                let acts = self.activations(self.total, layers)?;
                let perm = self.chance_order(&acts);
                Ok(acts.into_iter().map(|a| crate::activations::shuffled_in_place(a, &perm)).collect())
            }
        }
    }

    /// Layers of the final network (all on the probe) with the probe's datapoints in the
    /// order of one permutation drawn from `analysis.seed`, the same for every layer and
    /// every call: each copy is made as its original is let go.
    pub(crate) fn shuffled(&self, acts: Vec<Tensor>) -> Vec<Tensor> {
        let perm = self.chance_order(&acts);
        acts.into_iter().map(|a| a.index_select(0, &perm.to_device(a.device()))).collect()
    }

    /// The chance level's order of the datapoints of `acts` ([`crate::activations::chance_order`]).
    fn chance_order(&self, acts: &[Tensor]) -> Tensor {
        let n = acts.first().map_or(0, |a| a.size()[0] as usize);
        crate::activations::chance_order(self.config.analysis.seed, n)
    }

    /// Whether `layer` is the input taken from the probe, the same at every step: a run
    /// folder's `in` (an activation folder's layers are all read from its files,
    /// whatever their names).
    fn is_probe_input(&self, layer: &str) -> bool {
        layer == INPUT && !matches!(self.source, Source::Store { probe: None, .. })
    }

    /// Layer `layer` of `rows`, and where it was read from, for a warning.
    fn describe(&self, rows: Rows, layer: &str) -> String {
        match rows {
            Rows::Shuffled => format!("{layer} at step {}, its datapoints shuffled", self.total),
            Rows::Step(step) => match self.source.file(step) {
                Some(file) if !self.is_probe_input(layer) => format!("{layer} at step {step} (stored in {})", file.display()),
                _ => format!("{layer} at step {step}"),
            },
        }
    }

    /// Makes the summaries the rows of `set` (the layers `names` of `rows`, in order)
    /// will ask for, all at once (see [`summarise_rows`]): a checkpoint's input layer
    /// needs none once its row is known.
    pub(crate) fn summarise_rows(&self, rows: Rows, set: &mut LayerSet, names: &[String], finals: &LayerSet) {
        let known = rows != Rows::Shuffled && self.input_cells.borrow().len() == self.layers.len();
        let is: Vec<usize> = (0..names.len()).filter(|&i| !(known && self.is_probe_input(&names[i]))).collect();
        summarise_rows(set, &is, finals);
    }

    /// One row of a matrix: layer `x` of `set` (the analysed layer named `layer` of
    /// `rows`) against each layer of `finals` (see [`Plan::row_part`]).
    pub(crate) fn row(
        &self,
        rows: Rows,
        set: &mut LayerSet,
        x: usize,
        layer: &str,
        finals: &mut LayerSet,
        bar: &indicatif::ProgressBar,
    ) -> Vec<Option<f64>> {
        let all: Vec<usize> = (0..self.layers.len()).collect();
        let row = self.row_part(rows, set, x, layer, finals, &all);
        bar.inc(row.len() as u64);
        row
    }

    /// The part of the row of layer `x` of `set` (the analysed layer `layer` of `rows`)
    /// against layers `columns` of `finals` (the analysed layers `global`, in order). A
    /// checkpoint's input layer cells are computed once and reused: the input does not
    /// change (shuffled, it does).
    fn row_part(&self, rows: Rows, set: &mut LayerSet, x: usize, layer: &str, finals: &mut LayerSet, global: &[usize]) -> Vec<Option<f64>> {
        let local: Vec<usize> = (0..global.len()).collect();
        let b: Vec<String> = global.iter().map(|&j| format!("{} at step {}", self.layers[j], self.total)).collect();
        let names = Names { a: self.describe(rows, layer), b: &b };
        if !self.is_probe_input(layer) || rows == Rows::Shuffled {
            return similarities(set, x, finals, &local, &names);
        }
        let known: Option<Vec<Option<f64>>> = {
            let cells = self.input_cells.borrow();
            global.iter().map(|j| cells.get(j).copied()).collect()
        };
        if let Some(row) = known {
            return row;
        }
        let row = similarities(set, x, finals, &local, &names);
        self.input_cells.borrow_mut().extend(global.iter().copied().zip(row.iter().copied()));
        row
    }

    /// The final network's layers `columns`, recorded and summarised in every form the
    /// rows will ask for, then compacted to what the rows need ([`LayerSet::compact`]).
    /// `shapes` holds every analysed layer (stand-ins will do): the rows' side.
    fn finals(&mut self, columns: &[usize], shapes: &LayerSet, side_by_side: bool, at: &dyn Fn() -> String) -> anyhow::Result<LayerSet> {
        let names: Vec<String> = columns.iter().map(|&j| self.layers[j].clone()).collect();
        let acts = self.activations(self.total, &names)?;
        let mut set = LayerSet::new(acts, &self.config);
        if !side_by_side {
            set = set.without_joined_copies();
        }
        let all: Vec<usize> = (0..columns.len()).collect();
        if side_by_side {
            crate::activations::summarise_rows(&mut set, &all, shapes);
        } else {
            // A layer and a form at a time, each compacted once made: only the largest
            // form's data is ever held (see `super::memory`).
            let every: Vec<usize> = (0..shapes.len()).collect();
            for &x in &all {
                // Largest first: its data is then held beside no compacted summary.
                let mut groups: Vec<(i64, Vec<usize>)> = set
                    .form_groups(x, shapes, &every)
                    .into_iter()
                    .map(|g| (set.bytes(x, shapes, &g).iter().map(|b| b.made).sum(), g))
                    .collect();
                groups.sort_by_key(|g| std::cmp::Reverse(g.0));
                for (_, group) in groups {
                    crate::preempt::check(at)?;
                    crate::activations::summarise_against(&mut set, &[x], shapes, &group);
                    set.compact_summaries(x);
                }
                set.compact(x);
            }
        }
        for x in all {
            set.compact(x);
        }
        Ok(set)
    }
}

/// Analyses the run in `run` on `device` (default: the config's training device).
pub fn analyze(run: &Path, device: Option<DeviceChoice>) -> anyhow::Result<AnalyzeSummary> {
    analyze_within(run, device, None)
}

/// [`analyze`] within `budget` (default: `analysis.memory_mib`'s, see
/// [`super::memory::Budget::of`]).
pub fn analyze_within(run: &Path, device: Option<DeviceChoice>, budget: Option<super::memory::Budget>) -> anyhow::Result<AnalyzeSummary> {
    let _lock = crate::run_dir::lock_run(run, crate::run_dir::Access::Exclusive)?;
    let mut plan = plan(run, device)?;
    let (total, layers) = (plan.total, plan.layers.clone());
    let results = plan.results.clone();
    let todo = results.missing(&plan.steps);
    let chance_path = plan.chance_path();
    let chance_missing = !chance_path.exists();
    let mut used = None;
    let mut seconds = (0.0, 0.0);
    if !todo.is_empty() || chance_missing {
        tracing::info!(
            "analysing {} of {} checkpoints{} ({} layers, {} pairs each) from {}",
            todo.len(),
            plan.steps.len(),
            if chance_missing { " and the chance level" } else { "" },
            layers.len(),
            layers.len() * layers.len(),
            plan.what
        );
        let shapes = plan.source.shapes(total, &layers)?;
        let remedy = match &plan.source {
            Source::Store { probe: None, .. } => "record the activation folder on more datapoints",
            _ => record::RAISE_PROBE_SIZE,
        };
        record::warn_if_small(shapes[0].size()[0] as usize, &layers, &shapes, remedy);
        crate::activations::conv_dense_fallbacks(&plan.config, &layers, &shapes, shapes.iter().any(|f| f.dim() == 2));
        let shapes = LayerSet::new(shapes, &plan.config);
        let budget = budget.unwrap_or_else(|| super::memory::Budget::of(plan.config.analysis.memory_mib));
        let memory = super::memory::plan(&shapes, &layers, budget)?;
        tracing::info!("{}", memory.describe());
        // Streamed in more than one block: each step recorded once, into a file (see
        // `Source::spill`); the final step once for the whole analysis.
        let spill = memory.recordings_per_checkpoint() > 1;
        remove_stale_spills(&plan.dir);
        if spill && !memory.finals_kept() {
            plan.source.spill(total, total, &layers, &plan.dir)?;
        }
        let matrices = (todo.len() + usize::from(chance_missing)) * layers.len() * layers.len();
        let mut pass = Pass {
            plan: &mut plan,
            shapes,
            memory: &memory,
            spill,
            kept: None,
            seconds: (0.0, 0.0),
            bar: comparisons_bar(matrices as u64),
        };
        // The chance level first: the final summaries it makes are kept for the steps
        // where one block holds them.
        if chance_missing {
            let stop = || format!("while computing the chance level of {} (none of it is kept)", run.display());
            pass.bar.set_message("chance");
            let (chance, _) = pass.matrix(Rows::Shuffled, &stop)?;
            write_json_atomic(&chance_path, &chance)?;
        }
        let at = || format!("while analysing {} (steps done so far are kept)", run.display());
        results.compute(&todo, at, |&step| {
            pass.bar.set_message(format!("step {step}"));
            let stop = || format!("during step {step}'s analysis: {}", at());
            let (matrix, seconds) = pass.matrix(Rows::Step(step), &stop)?;
            Ok(StepResult { step, fraction: step as f64 / total as f64, layers: layers.clone(), matrix, seconds })
        })?;
        pass.bar.finish_and_clear();
        seconds = pass.seconds;
        used = Some(memory);
    }
    let dynamics = tables(&plan)?;
    let (computed, skipped) = (todo.len(), plan.steps.len() - todo.len());
    Ok(AnalyzeSummary {
        dir: plan.dir,
        dynamics,
        computed,
        skipped,
        seconds_recording: seconds.0,
        seconds_analysing: seconds.1,
        memory: used,
    })
}

/// One call's way through its matrices ([`analyze_within`]): the memory plan, and the
/// final summaries kept from one matrix to the next where one block holds them.
struct Pass<'a> {
    plan: &'a mut Plan,
    /// Every analysed layer's shape (stand-ins): the rows' side.
    shapes: LayerSet,
    memory: &'a super::memory::MemoryPlan,
    /// Each step recorded once into a file (more than one block of rows).
    spill: bool,
    kept: Option<LayerSet>,
    /// Seconds recording, and comparing.
    seconds: (f64, f64),
    bar: indicatif::ProgressBar,
}

impl Pass<'_> {
    /// The layers x layers matrix of `rows` against the final layers, through the
    /// memory plan's blocks; with the seconds spent comparing.
    fn matrix(&mut self, rows: Rows, stop: &dyn Fn() -> String) -> anyhow::Result<(Vec<Vec<Option<f64>>>, f64)> {
        let (plan, memory) = (&mut *self.plan, self.memory);
        let (total, layers) = (plan.total, plan.layers.clone());
        let recorded = match rows {
            Rows::Step(step) => step,
            Rows::Shuffled => total,
        };
        let mut matrix = vec![vec![None; layers.len()]; layers.len()];
        let mut seconds = 0.0;
        if self.spill {
            let t = Instant::now();
            if !memory.finals_kept() {
                self.kept = None; // the previous step's last block, freed before recording
            }
            plan.source.spill(recorded, total, &layers, &plan.dir)?;
            self.seconds.0 += t.elapsed().as_secs_f64();
        }
        for block in &memory.blocks {
            let t = Instant::now();
            if self.kept.is_none() || !memory.finals_kept() {
                self.kept = None; // the previous block's, freed before the next is made
                self.kept = Some(plan.finals(&block.columns, &self.shapes, memory.side_by_side, stop)?);
            }
            let finals = self.kept.as_mut().expect("made above");
            self.seconds.0 += t.elapsed().as_secs_f64();
            let (now, peak) = super::memory::resident();
            tracing::debug!(
                "{rows:?}, final layers {:?} summarised: resident {}, peak so far {}",
                block.columns,
                super::memory::gib(now),
                super::memory::gib(peak)
            );
            for row_block in &block.rows {
                crate::preempt::check(stop)?;
                let t = Instant::now();
                let names: Vec<String> = row_block.iter().map(|&i| layers[i].clone()).collect();
                // The final checkpoint's layers are the final set's: its summaries serve.
                let whole = row_block.len() == layers.len() && block.columns.len() == layers.len();
                let mut set = if rows == Rows::Step(total) && whole {
                    finals.sharing()
                } else {
                    LayerSet::new(plan.row_activations(rows, &names)?, &plan.config)
                };
                self.seconds.0 += t.elapsed().as_secs_f64();
                let t = Instant::now();
                if memory.side_by_side {
                    plan.summarise_rows(rows, &mut set, &names, finals);
                }
                for (x, &i) in row_block.iter().enumerate() {
                    crate::preempt::check(stop)?;
                    let part = plan.row_part(rows, &mut set, x, &layers[i], finals, &block.columns);
                    for (&j, v) in block.columns.iter().zip(part) {
                        matrix[i][j] = v;
                    }
                    self.bar.inc(block.columns.len() as u64);
                    if !memory.side_by_side {
                        set.release(x);
                    }
                }
                seconds += t.elapsed().as_secs_f64();
                let (now, peak) = super::memory::resident();
                tracing::debug!(
                    "{rows:?}, rows {row_block:?} done: resident {}, peak so far {}",
                    super::memory::gib(now),
                    super::memory::gib(peak)
                );
            }
        }
        self.seconds.1 += seconds;
        Ok((matrix, seconds))
    }
}

/// For `svcca run CONFIG` on a folder analysed before: refuses `config` when its
/// learning-dynamics settings (the similarity's, or the layers) differ from those of the
/// folder's analysis, which would refuse them after training. Called before training,
/// which gives the folder's `config.toml` the config's `[analysis]`: so a refused `run`
/// changes nothing, and `svcca analyze RUN` goes on as before. The device must be
/// resolved (this builds the config's network, narrowed to one unit a layer, on the CPU).
pub(crate) fn check_settings_unchanged(config: &Config, run: &Path) -> anyhow::Result<()> {
    let path = run.join(FOLDER).join("settings.json");
    let Ok(before) = read_json::<Settings>(&path) else {
        return Ok(()); // not analysed yet (or unreadable: the analysis says so itself)
    };
    // The layers' names do not depend on the widths: the narrowest network names them.
    let mut narrow = config.clone();
    if narrow.model.arch != crate::config::Arch::Linear {
        narrow.model.width = Some(1);
    }
    (narrow.model.fc1, narrow.model.fc2) = (1, 1);
    let shape: [i64; 3] = match config.data.dataset {
        crate::config::DatasetName::Mnist | crate::config::DatasetName::FashionMnist => [1, 28, 28],
        _ => [3, 32, 32],
    };
    let vs = tch::nn::VarStore::new(Device::Cpu);
    let net = crate::model::build(&vs.root(), &narrow.model, shape, 10)?;
    let names = net.layer_names();
    let layers = match config.analysis.layers {
        // An analysis begun before the input was a default layer keeps its list (see
        // `Run::layers_since`).
        None if before.layers.iter().map(String::as_str).eq(names.iter().copied()) => before.layers.clone(),
        _ => store::layers(config, &net)?,
    };
    let now = Settings::new(&config.analysis, layers, before.final_step);
    if now == before {
        return Ok(());
    }
    let (a, b) = (serde_json::to_value(&before)?, serde_json::to_value(&now)?);
    let changed: Vec<String> = match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => a
            .iter()
            .filter(|(k, v)| b.get(*k) != Some(*v))
            .map(|(k, v)| format!("{k}: {v} vs {}", b.get(k).map_or("(unset)".into(), |w| w.to_string())))
            .collect(),
        _ => Vec::new(),
    };
    Err(crate::error::InputError::new(format!(
        "{}: this run was analysed with other settings ({}; the analysis's vs the config's): nothing was changed; set them back, or delete {} to redo the analysis with the new ones",
        path.display(),
        changed.join("; "),
        run.join(FOLDER).display()
    ))
    .into())
}

/// A progress bar over `n` comparisons.
pub(crate) fn comparisons_bar(n: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(n);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} comparisons {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid template"),
    );
    bar
}

/// Reads a run folder for analysis: its config, network, activations and the steps to
/// analyse; writes `analysis/settings.json`, or refuses a folder analysed otherwise.
pub(crate) fn plan(run: &Path, device: Option<DeviceChoice>) -> anyhow::Result<Plan> {
    if super::activation_folder::is_one(run) {
        let f = super::activation_folder::open(run, device)?;
        let dir = run.join(FOLDER);
        let source = Source::Store { files: f.files, probe: None, device: f.device };
        return assemble(dir, f.config, f.layers, source, f.total, "stored activations");
    }
    let opened = Run::load(run, device)?;
    let (config, device, total) = (opened.config.clone(), opened.data.train.images.device(), opened.final_step);
    let a = &config.analysis;
    if a.precision == crate::similarity::Precision::Float32 && device == tch::Device::Cpu {
        tracing::info!(
            "analysis.precision = \"float32\" on the CPU: slower than float64 here (float64's products have their own CPU kernels); it is meant for GPUs with slow float64"
        );
    }
    let dir = run.join(FOLDER);
    let settings_path = dir.join("settings.json");
    let previous: Option<Settings> = if settings_path.exists() { read_json(&settings_path).ok() } else { None };
    let layers = opened.layers_since(previous.as_ref().map(|p| p.layers.as_slice()), &dir)?;
    let source = match a.mode {
        ActivationMode::Replay => Source::Replay { probe: opened.probe(), run: Box::new(opened), spilled: Vec::new() },
        ActivationMode::Store => Source::Store { files: store::list(run)?, probe: Some(opened.probe()), device },
    };
    let available = source.steps();
    let what = match a.mode {
        ActivationMode::Replay => "checkpoints",
        ActivationMode::Store => "stored activations",
    };
    super::check_finished(run, what, available.last().copied(), total)?;
    let missing = missing_steps(&config.checkpoints, total, &available);
    if !missing.is_empty() {
        tracing::warn!(
            "{}: {} of the {what} scheduled are missing (steps {}): the analysis has no row for them; restore them (or retrain into a new folder) for every scheduled step",
            run.display(),
            missing.len(),
            missing.iter().map(u64::to_string).collect::<Vec<_>>().join(", ")
        );
    }
    check_same_run(run, &dir, total)?;
    assemble(dir, config, layers, source, total, what)
}

/// The plan of the analysis of `layers` from `source` into `dir` (`RUN/analysis`), the
/// steps chosen by `analysis.every_nth`; writes `analysis/settings.json`, or refuses a
/// folder analysed otherwise.
fn assemble(dir: PathBuf, config: Config, layers: Vec<String>, source: Source, total: u64, what: &'static str) -> anyhow::Result<Plan> {
    let steps = select(&source.steps(), config.analysis.every_nth);
    let settings = Settings::new(&config.analysis, layers.clone(), total);
    let steps_dir = dir.join("steps");
    std::fs::create_dir_all(&steps_dir).with_context(|| format!("cannot create {}", steps_dir.display()))?;
    let results = Results::new(steps_dir, |s| format!("step-{s:08}.json"));
    super::settings::check_or_write(&dir.join("settings.json"), &settings)?;
    Ok(Plan { config, total, layers, source, steps, settings, results, dir, what, input_cells: RefCell::default() })
}

/// Refuses an `analysis/` folder made from another run's checkpoints (copied in, or left
/// by a run this folder's were replaced with), whose results would be taken as this
/// run's: `analysis/run.json` records the MD5 of the final checkpoint's training state
/// (`checkpoint::state_md5`) when the analysis starts, and later analyses compare it.
/// A folder analysed before the record existed gets it now (there is nothing to compare);
/// a final checkpoint from before checkpoints had an MD5 is not checked.
fn check_same_run(run: &Path, dir: &Path, total: u64) -> anyhow::Result<()> {
    let last = run.join(crate::run_dir::checkpoint::FOLDER).join(crate::run_dir::step_file_name(total));
    if !last.is_file() {
        return Ok(());
    }
    let Some(md5) = crate::run_dir::checkpoint::state_md5(&last)? else { return Ok(()) };
    let record = dir.join("run.json");
    let now = serde_json::json!({ "final_checkpoint_md5": md5 });
    if record.exists() {
        let before: serde_json::Value = read_json(&record)?;
        if before != now {
            return Err(crate::error::InputError::new(format!(
                "{}: this analysis was made from another run's checkpoints (the final checkpoint's MD5 was {}, {} now is {md5}); delete {} to analyse this run",
                record.display(),
                before["final_checkpoint_md5"],
                last.display(),
                dir.display()
            ))
            .into());
        }
        return Ok(());
    }
    // A folder the user may only read (a finished analysis) stays usable without it.
    if let Err(e) = std::fs::create_dir_all(dir).map_err(anyhow::Error::from).and_then(|()| write_json_atomic(&record, &now)) {
        tracing::warn!("cannot record which run {} analyses ({e:#}); a later analysis cannot check it", dir.display());
    }
    Ok(())
}

/// The steps `checkpoints` schedules for a run of `total` steps (step 0 with `at_start`,
/// every `every`, the last) that `available` lacks; none under `keep_last`, which
/// removes old ones on purpose.
fn missing_steps(checkpoints: &crate::config::CheckpointConfig, total: u64, available: &[u64]) -> Vec<u64> {
    if checkpoints.keep_last.is_some() {
        return Vec::new();
    }
    let every = checkpoints.every.max(1);
    let first = if checkpoints.at_start { 0 } else { every };
    let mut scheduled: Vec<u64> = (first..=total).step_by(every as usize).collect();
    if scheduled.last() != Some(&total) {
        scheduled.push(total);
    }
    scheduled.into_iter().filter(|s| available.binary_search(s).is_err()).collect()
}

/// Builds the tables from the per-step results on disk (all of them must be there):
/// `dynamics.json` and the CSVs of [`write_tables`].
pub(crate) fn tables(plan: &Plan) -> anyhow::Result<Dynamics> {
    let results = plan.results.load_all(&plan.steps)?;
    let chance: Vec<Vec<Option<f64>>> = read_json(&plan.chance_path())?;
    let n = plan.layers.len();
    if chance.len() != n || chance.iter().any(|r| r.len() != n) {
        return Err(crate::error::InputError::new(format!(
            "{}: not a {n} x {n} matrix (made for other layers); delete it to compute it again",
            plan.chance_path().display()
        ))
        .into());
    }
    let init = results.iter().find(|r| r.step == 0);
    let baseline = plan
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Baseline { layer: l.clone(), shuffled: chance[i][i], init: init.and_then(|r| r.matrix[i][i]) })
        .collect();
    let dynamics = Dynamics { settings: plan.settings.clone(), steps: results, baseline, chance };
    write_tables(&plan.dir, &dynamics)?;
    Ok(dynamics)
}

/// Every `nth` step, and always the first and the last.
pub fn select(steps: &[u64], nth: usize) -> Vec<u64> {
    let last = steps.len() - 1;
    steps.iter().enumerate().filter(|(i, _)| i % nth == 0 || *i == last).map(|(_, &s)| s).collect()
}

fn cell(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.6}"))
}

/// `similarity.csv`, `to_final.csv`, `baseline.csv`, `chance.csv` and `dynamics.json`.
fn write_tables(dir: &Path, d: &Dynamics) -> anyhow::Result<()> {
    let mut sim = String::from("step,fraction,layer,final_layer,similarity\n");
    let mut diag = String::from("step,fraction,layer,similarity\n");
    for r in &d.steps {
        for (i, l) in r.layers.iter().enumerate() {
            for (j, f) in r.layers.iter().enumerate() {
                sim += &format!("{},{:.6},{l},{f},{}\n", r.step, r.fraction, cell(r.matrix[i][j]));
            }
            diag += &format!("{},{:.6},{l},{}\n", r.step, r.fraction, cell(r.matrix[i][i]));
        }
    }
    let mut base = String::from("layer,shuffled,init\n");
    for b in &d.baseline {
        base += &format!("{},{},{}\n", b.layer, cell(b.shuffled), cell(b.init));
    }
    write_atomic(&dir.join("similarity.csv"), sim.as_bytes())?;
    write_atomic(&dir.join("to_final.csv"), diag.as_bytes())?;
    write_atomic(&dir.join("baseline.csv"), base.as_bytes())?;
    let mut chance = String::from("layer,final_layer,chance\n");
    for (i, l) in d.settings.layers.iter().enumerate() {
        for (j, f) in d.settings.layers.iter().enumerate() {
            chance += &format!("{l},{f},{}\n", cell(d.chance[i][j]));
        }
    }
    write_atomic(&dir.join("chance.csv"), chance.as_bytes())?;
    write_json_atomic(&dir.join("dynamics.json"), d)?;
    Ok(())
}

#[cfg(test)]
mod tests {

    #[test]
    fn missing_scheduled_steps_are_found_unless_keep_last_removes_them() {
        let mut c = crate::config::CheckpointConfig { every: 10, at_start: true, keep_last: None };
        assert_eq!(missing_steps(&c, 35, &[0, 10, 20, 30, 35]), Vec::<u64>::new());
        assert_eq!(missing_steps(&c, 35, &[0, 10, 30, 35]), vec![20]);
        c.at_start = false;
        assert_eq!(missing_steps(&c, 30, &[10, 30]), vec![20]);
        c.keep_last = Some(1);
        assert_eq!(missing_steps(&c, 30, &[30]), Vec::<u64>::new());
    }
    use super::*;
    use crate::config::AnalysisConfig;
    use crate::similarity::KeepRule;

    #[test]
    fn settings_say_which_keep_rule_and_old_ones_read_as_variance() {
        let a = AnalysisConfig { keep_rule: KeepRule::Singular, ..Default::default() };
        let json = serde_json::to_value(Settings::new(&a, vec!["fc1".into()], 10)).unwrap();
        assert_eq!(json["keep_rule"], "singular");
        // A settings.json written before the rule was a setting: the variance rule, so an
        // old analysis still matches the default config and is not refused.
        let mut old = serde_json::to_value(Settings::new(&AnalysisConfig::default(), vec!["fc1".into()], 10)).unwrap();
        old.as_object_mut().unwrap().remove("keep_rule");
        let old: Settings = serde_json::from_value(old).unwrap();
        assert_eq!(old, Settings::new(&AnalysisConfig::default(), vec!["fc1".into()], 10));
    }
}
