//! `svcca experiment freeze`: normal training against freeze training, over seeds.
//!
//! For each seed, a base run (the config with `[freeze]` switched off) and a freeze run
//! (the config as given), both with that `train.seed`, so the same initial weights and
//! the same data order. Folders: `OUT/base/seed-N`, `OUT/freeze/seed-N` (each a normal
//! run folder, so rerunning resumes). Then, in `OUT`:
//!
//! - `runs.csv`: one row per run: variant, seed, final test accuracy, wall-clock seconds
//!   of the training job (evaluations and checkpoints included), share of backward work
//!   saved (estimated from the layers' multiply-adds).
//! - `curves.csv`: test accuracy against step, mean and standard deviation over seeds,
//!   base and freeze side by side (at the steps every run evaluated at).
//! - `summary.json`, `summary.csv`: per variant the mean and standard deviation of the
//!   final accuracy and wall-clock, and the differences freeze − base.
//! - `plots/accuracy.png`, `.svg`: the curves with a ±1 std band and a dashed red
//!   vertical line at each step where a layer of the first seed's freeze run froze (the
//!   paper's Figure 5).
//!
//! With a validation set (`data.validation`), the curves are validation accuracy (the
//! test set is read once per run, at the end), `runs.csv` and the summaries gain the
//! final validation accuracy, and the test figures are those of the final networks.
//!
//! The tables and the plot are written by `report::over_seeds`, as those of `svcca sweep
//! --report` (groups by variant here, wide curves, the backward work saved added).
//!
//! SIGUSR1 or SIGTERM (`crate::preempt`) stops the run in progress with a checkpoint, or
//! the experiment between runs, and the process exits 75; rerunning the same command
//! skips the finished runs and resumes the stopped one.

use crate::config::{Config, FreezeConfig, FreezeSchedule};
use crate::error::InputError;
use crate::report::over_seeds::{self, Curves, GroupSummary, Layout, Run};
use crate::stats::mean_std;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub acc_mean: f64,
    pub acc_std: f64,
    /// With `data.validation`: the final validation accuracy, mean and std over seeds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_acc_std: Option<f64>,
    pub wall_mean: f64,
    pub wall_std: f64,
}

impl From<&GroupSummary> for Stats {
    fn from(g: &GroupSummary) -> Stats {
        Stats {
            acc_mean: g.final_acc_mean,
            acc_std: g.final_acc_std,
            val_acc_mean: g.final_val_acc_mean,
            val_acc_std: g.final_val_acc_std,
            wall_mean: g.wall_seconds_mean,
            wall_std: g.wall_seconds_std,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FreezeSummary {
    pub seeds: Vec<u64>,
    pub base: Stats,
    pub freeze: Stats,
    /// freeze − base, in accuracy points (percent).
    pub acc_diff_points: f64,
    /// With `data.validation`: freeze − base in final validation accuracy, points.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_diff_points: Option<f64>,
    /// 1 − freeze wall / base wall (means over seeds).
    pub wall_saved: f64,
    /// Estimated share of backward work saved by the freeze runs.
    pub backward_saved: f64,
}

/// Runs the comparison of `config` over `seeds` into `out`.
pub fn freeze(config: Config, seeds: &[u64], out: &Path) -> anyhow::Result<FreezeSummary> {
    if config.freeze.schedule == FreezeSchedule::None {
        return Err(
            InputError::new("the config has no freeze schedule: set freeze.schedule = \"linear\", \"explicit\" or \"adaptive\"").into()
        );
    }
    if seeds.is_empty() {
        return Err(InputError::new("--seeds: give at least one seed").into());
    }
    if let Some(seed) = duplicate(seeds) {
        return Err(InputError::new(format!("--seeds: {}", duplicate_message(seed))).into());
    }
    // The device first: the check below seeds libtorch, which would otherwise fix "no
    // CUDA" for the process and put every run on the CPU (see crate::device).
    config.train.device.resolve()?;
    // The freeze variant's settings checked against the network before any run starts
    // (a bad freeze.at would otherwise surface only after the first base run).
    crate::train::check(&config)?;
    let _lock = crate::run_dir::lock(out, crate::run_dir::Access::Exclusive)?;
    let validation = config.data.has_validation();
    let mut runs = Vec::new();
    let mut backward_saved = Vec::new();
    for &seed in seeds {
        for variant in ["base", "freeze"] {
            let mut c = config.clone();
            c.train.seed = seed;
            if variant == "base" {
                c.freeze = FreezeConfig::default();
            }
            let dir = out.join(variant).join(format!("seed-{seed}"));
            // A signal between runs stops here; one during a run stops it with a
            // checkpoint (`train` returns `Preempted`). Either way a rerun resumes.
            crate::preempt::check(|| format!("before the {variant} run of seed {seed} ({}); the runs before it are kept", dir.display()))?;
            tracing::info!("{variant} run, seed {seed}: {}", dir.display());
            let s = crate::train::train(c, &dir)?;
            // The curves: validation accuracy when there is a validation set (the test
            // set is then read at the end only).
            let column = if validation { "val_acc" } else { "test_acc" };
            let (curve, wall_seconds) = crate::train::metrics::accuracy(&dir, column)?;
            if variant == "freeze" {
                backward_saved.push(s.backward_saved);
            }
            runs.push(Run {
                group: variant.into(),
                seed,
                final_test_acc: s.test_acc,
                final_val_acc: s.validation.map(|v| v.1),
                wall_seconds,
                curve,
                lead: Vec::new(),
                tail: vec![format!("{:.4}", s.backward_saved)],
            });
        }
    }
    let backward_saved = mean_std(&backward_saved).0;
    // The paper's Figure 5: mean accuracy against step with a ±1 std band, and a dashed
    // line where layers froze (the first seed's steps: every seed's under a linear or
    // explicit schedule; an adaptive one may differ between seeds).
    let freeze_steps = crate::train::freeze::steps(&out.join("freeze").join(format!("seed-{}", seeds[0])))?;
    let saved_column = |g: &GroupSummary| if g.group == "freeze" { format!("{backward_saved:.4}") } else { "0".into() };
    let layout = Layout {
        group: "variant",
        count: "seeds",
        runs_lead: &[],
        runs_tail: &["backward_saved"],
        summary_tail: &[("backward_saved", &saved_column)],
        curves: Curves::Wide,
        title: ": normal vs freeze training",
        freeze_steps: &freeze_steps,
    };
    let groups = over_seeds::write(out, &runs, validation, &layout)?;
    let stats = |v: &str| groups.iter().find(|g| g.group == v).map(Stats::from).expect("a run of each variant");
    let (base, frz) = (stats("base"), stats("freeze"));
    let summary = FreezeSummary {
        seeds: seeds.to_vec(),
        acc_diff_points: 100.0 * (frz.acc_mean - base.acc_mean),
        val_diff_points: frz.val_acc_mean.zip(base.val_acc_mean).map(|(f, b)| 100.0 * (f - b)),
        wall_saved: 1.0 - frz.wall_mean / base.wall_mean.max(1e-12),
        backward_saved,
        base,
        freeze: frz,
    };
    crate::io::write_atomic(&out.join("summary.json"), (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?;
    Ok(summary)
}

/// The seeds of `--seeds`: a count N (seeds 0..N) or a comma list (`0,5,7`) without
/// repeats: a repeated seed is the same run again, and counting it twice would shrink the
/// standard deviations.
pub(crate) fn parse_seeds(text: &str) -> Result<Vec<u64>, String> {
    let t = text.trim();
    if t.contains(',') {
        let seeds =
            t.split(',').map(|s| s.trim().parse::<u64>().map_err(|_| format!("'{s}' is not a seed"))).collect::<Result<Vec<_>, _>>()?;
        if let Some(seed) = duplicate(&seeds) {
            return Err(format!("'{text}': {}", duplicate_message(seed)));
        }
        return Ok(seeds);
    }
    match t.parse::<u64>() {
        Ok(0) | Err(_) => Err(format!("'{text}': give a number of seeds (3: seeds 0, 1, 2) or a list (0,5,7)")),
        Ok(n) => Ok((0..n).collect()),
    }
}

/// The first seed that appears twice.
fn duplicate(seeds: &[u64]) -> Option<u64> {
    let mut seen = std::collections::HashSet::new();
    seeds.iter().copied().find(|&s| !seen.insert(s))
}

fn duplicate_message(seed: u64) -> String {
    format!("seed {seed} is given twice: the same seed trains the same run, so each seed may appear once")
}

/// The default output folder: `runs/<config name>-freeze`.
pub(crate) fn default_out(config: &Path) -> PathBuf {
    let stem = config.file_stem().map_or("experiment".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(format!("{stem}-freeze"))
}
