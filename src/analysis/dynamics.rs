//! `svcca analyze RUN_DIR`: for every analysed checkpoint, the similarity of each layer
//! to each layer of the final network (a layers x layers matrix; its diagonal is each
//! layer against its own final state), and a baseline per layer: the final layer against
//! itself on shuffled datapoints (the chance level for its size and the probe's).
//! The network at initialisation (step 0, `checkpoints.at_start`) is the other baseline.
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
use crate::activations::{similarities, similarity, summarise_rows, LayerSet};
use crate::config::{ActivationMode, Config};
use crate::data::rng::Rng;
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
    /// The final layer against itself with the probe's datapoints shuffled.
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
}

/// Where activations come from.
enum Source {
    /// The run's checkpoints, each loaded and run on the probe set.
    Replay { run: Box<Run>, probe: Probe },
    /// Activations recorded during training (`store` mode); the input layer comes from
    /// the probe.
    Store { files: Vec<(u64, PathBuf)>, probe: Probe, device: Device },
}

impl Source {
    fn steps(&self) -> Vec<u64> {
        match self {
            Source::Replay { run, .. } => run.checkpoints.iter().map(|c| c.0).collect(),
            Source::Store { files, .. } => files.iter().map(|c| c.0).collect(),
        }
    }

    fn activations(&mut self, step: u64, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        match self {
            Source::Replay { run, probe } => {
                run.load_step(step)?;
                Ok(record::record(&run.net, probe, layers)?)
            }
            Source::Store { files, probe, device } => {
                let path = &files.iter().find(|c| c.0 == step).expect("listed").1;
                store::load(path, layers, probe, *device)
            }
        }
    }
}

/// An analysis about to run: the run's config, where the activations come from, the
/// steps analysed, and the settings (already checked against the folder's).
pub(crate) struct Plan {
    pub config: Config,
    pub device: Device,
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
    /// The input layer's row, once computed: the same at every step.
    input_row: RefCell<Option<Vec<Option<f64>>>>,
}

impl Plan {
    /// The activations of `layers` at `step`.
    pub fn activations(&mut self, step: u64, layers: &[String]) -> anyhow::Result<Vec<Tensor>> {
        self.source.activations(step, layers)
    }

    /// The shuffled baselines of the layers (a list, in layer order).
    pub fn baseline_path(&self) -> PathBuf {
        self.dir.join("shuffled.json")
    }

    /// The shuffled baseline of final layer `x`: its activations with the probe's
    /// datapoints permuted (the same permutation for every layer) against themselves,
    /// the unpermuted side summarised in `finals` as for the rows.
    pub fn shuffled(&self, finals: &mut LayerSet, x: usize) -> Option<f64> {
        let layer = finals.layer(x);
        let n = layer.size()[0] as usize;
        let perm = Tensor::from_slice(&Rng::stream(self.config.analysis.seed, &[0x73687566]).permutation(n)).to_device(self.device);
        let mut permuted = LayerSet::new(vec![layer.index_select(0, &perm)], &self.config);
        similarity(&mut permuted, 0, finals, x)
    }

    /// A step's matrix: each layer of `step` against each layer of `finals`.
    pub fn matrix(&self, step: &mut LayerSet, finals: &mut LayerSet, bar: &indicatif::ProgressBar) -> Vec<Vec<Option<f64>>> {
        self.summarise_rows(step, &self.layers, finals);
        (0..self.layers.len()).map(|i| self.row(step, i, &self.layers[i], finals, bar)).collect()
    }

    /// Makes the summaries the rows of `step`'s layers (the analysed layers `names`, in
    /// order) will ask for, all at once (see [`summarise_rows`]): the input layer's needs
    /// none once its row is known.
    pub fn summarise_rows(&self, step: &mut LayerSet, names: &[String], finals: &LayerSet) {
        let known = self.input_row.borrow().is_some();
        let is: Vec<usize> = (0..names.len()).filter(|&i| !(known && names[i] == INPUT)).collect();
        summarise_rows(step, &is, finals);
    }

    /// One row of a step's matrix: layer `x` of `step`, the analysed layer named `layer`,
    /// against each layer of `finals`. The input layer's row is computed once and reused:
    /// the input does not change.
    pub fn row(&self, step: &mut LayerSet, x: usize, layer: &str, finals: &mut LayerSet, bar: &indicatif::ProgressBar) -> Vec<Option<f64>> {
        let is_input = layer == INPUT;
        if let Some(row) = self.input_row.borrow().as_ref().filter(|_| is_input) {
            bar.inc(row.len() as u64);
            return row.clone();
        }
        let all: Vec<usize> = (0..self.layers.len()).collect();
        let row = similarities(step, x, finals, &all);
        bar.inc(row.len() as u64);
        if is_input {
            *self.input_row.borrow_mut() = Some(row.clone());
        }
        row
    }
}

/// Analyses the run in `run` on `device` (default: the config's training device).
pub fn analyze(run: &Path, device: Option<DeviceChoice>) -> anyhow::Result<AnalyzeSummary> {
    let _lock = crate::run_dir::lock_run(run, crate::run_dir::Access::Exclusive)?;
    let mut plan = plan(run, device)?;
    let (total, layers) = (plan.total, plan.layers.clone());
    let results = plan.results.clone();
    let todo = results.missing(&plan.steps);
    let baseline_path = plan.baseline_path();
    let (mut seconds_recording, mut seconds_analysing) = (0.0, 0.0);
    if !todo.is_empty() || !baseline_path.exists() {
        tracing::info!(
            "analysing {} of {} checkpoints ({} layers, {} pairs each) from {}",
            todo.len(),
            plan.steps.len(),
            layers.len(),
            layers.len() * layers.len(),
            plan.what
        );
        let t = Instant::now();
        let finals = plan.activations(total, &layers)?;
        seconds_recording += t.elapsed().as_secs_f64();
        record::warn_if_small(finals[0].size()[0] as usize, &layers, &finals);
        crate::activations::conv_dense_fallbacks(&plan.config, &layers, &finals, finals.iter().any(|f| f.dim() == 2));
        // Each final layer is summarised once for the whole analysis (the baselines and
        // every row), each layer of a checkpoint once for its row.
        let mut final_set = LayerSet::new(finals.iter().map(Tensor::shallow_clone).collect(), &plan.config);
        if !baseline_path.exists() {
            let t = Instant::now();
            let shuffled: Vec<Option<f64>> = (0..finals.len()).map(|x| plan.shuffled(&mut final_set, x)).collect();
            write_json_atomic(&baseline_path, &shuffled)?;
            seconds_analysing += t.elapsed().as_secs_f64();
        }
        let bar = comparisons_bar((todo.len() * layers.len() * layers.len()) as u64);
        let at = || format!("while analysing {} (steps done so far are kept)", run.display());
        results.compute(&todo, at, |&step| {
            bar.set_message(format!("step {step}"));
            let t = Instant::now();
            // The final checkpoint's layers are the final set's: its summaries serve.
            let mut set = if step == total { final_set.sharing() } else { LayerSet::new(plan.activations(step, &layers)?, &plan.config) };
            seconds_recording += t.elapsed().as_secs_f64();
            let t = Instant::now();
            let matrix = plan.matrix(&mut set, &mut final_set, &bar);
            let seconds = t.elapsed().as_secs_f64();
            seconds_analysing += seconds;
            Ok(StepResult { step, fraction: step as f64 / total as f64, layers: layers.clone(), matrix, seconds })
        })?;
        bar.finish_and_clear();
    }
    let dynamics = tables(&plan)?;
    let (computed, skipped) = (todo.len(), plan.steps.len() - todo.len());
    Ok(AnalyzeSummary { dir: plan.dir, dynamics, computed, skipped, seconds_recording, seconds_analysing })
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
    let opened = Run::load(run, device)?;
    let (config, device, total) = (opened.config.clone(), opened.data.train.images.device(), opened.final_step);
    let a = &config.analysis;
    let dir = run.join(FOLDER);
    let settings_path = dir.join("settings.json");
    let previous: Option<Settings> = if settings_path.exists() { read_json(&settings_path).ok() } else { None };
    let layers = opened.layers_since(previous.as_ref().map(|p| p.layers.as_slice()), &dir)?;
    let source = match a.mode {
        ActivationMode::Replay => Source::Replay { probe: opened.probe(), run: Box::new(opened) },
        ActivationMode::Store => Source::Store { files: store::list(run), probe: opened.probe(), device },
    };
    let available = source.steps();
    let what = match a.mode {
        ActivationMode::Replay => "checkpoints",
        ActivationMode::Store => "stored activations",
    };
    super::runs::check_finished(run, what, available.last().copied(), total)?;
    let steps = select(&available, a.every_nth);
    let settings = Settings::new(a, layers.clone(), total);
    let steps_dir = dir.join("steps");
    std::fs::create_dir_all(&steps_dir).with_context(|| format!("cannot create {}", steps_dir.display()))?;
    let results = Results::new(steps_dir, |s| format!("step-{s:08}.json"));
    super::settings::check_or_write(&settings_path, &settings)?;

    Ok(Plan { config, device, total, layers, source, steps, settings, results, dir, what, input_row: RefCell::new(None) })
}

/// Builds the tables from the per-step results on disk (all of them must be there):
/// `dynamics.json` and the CSVs of [`write_tables`].
pub(crate) fn tables(plan: &Plan) -> anyhow::Result<Dynamics> {
    let results = plan.results.load_all(&plan.steps)?;
    let shuffled: Vec<Option<f64>> = read_json(&plan.baseline_path())?;
    let init = results.iter().find(|r| r.step == 0);
    let baseline = plan
        .layers
        .iter()
        .enumerate()
        .map(|(i, l)| Baseline { layer: l.clone(), shuffled: shuffled.get(i).copied().flatten(), init: init.and_then(|r| r.matrix[i][i]) })
        .collect();
    let dynamics = Dynamics { settings: plan.settings.clone(), steps: results, baseline };
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

/// `similarity.csv`, `to_final.csv`, `baseline.csv` and `dynamics.json`.
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
    write_json_atomic(&dir.join("dynamics.json"), d)?;
    Ok(())
}

#[cfg(test)]
mod tests {
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
