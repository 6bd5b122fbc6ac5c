//! `svcca analyze RUN_DIR` and `svcca run CONFIG`

use crate::analysis::{self, AnalyzeSummary};
use crate::device::DeviceChoice;
use crate::run_dir::{self, Access};
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub(super) struct AnalyzeArgs {
    /// Run folder made by `svcca train` (or `svcca run`).
    run: PathBuf,
    /// Where to compute (default: the run's train.device).
    #[arg(long, value_name = "cpu|cuda[:N]|auto")]
    device: Option<DeviceChoice>,
    /// Tables only: skip the plots.
    #[arg(long)]
    no_plots: bool,
    /// Compute only share I of N (0-based) of the (checkpoint, layer) work, e.g. 0/4 (an
    /// array task: I/N = $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT); the shard that
    /// completes the work merges it into the tables.
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    shard: Option<crate::analysis::shard::Shard>,
    /// Merge the shards' results into the tables (refused while some are missing).
    #[arg(long)]
    merge: bool,
    #[command(flatten)]
    findings: super::findings::FindingsArgs,
}

impl AnalyzeArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        crate::preempt::install()?;
        // Shards of one analysis share the run; anything else has it to itself.
        let access = if self.shard.is_some() { Access::Shared } else { Access::Exclusive };
        let _lock = run_dir::lock_run(&self.run, access)?;
        if self.findings.any() {
            if self.shard.is_some() || self.merge {
                return Err(crate::error::InputError::new("--shard and --merge split the learning-dynamics analysis; run --compression, --classes and --dimensionality without them").into());
            }
            return self.findings.run(&self.run, self.device, !self.no_plots);
        }
        if let Some(shard) = self.shard {
            let s = analysis::shard::analyze_shard(&self.run, self.device, shard)?;
            println!(
                "{}: shard {}/{}: {} units computed, {} already done; {} units of all shards missing",
                self.run.display(),
                shard.index,
                shard.count,
                s.computed,
                s.skipped,
                s.missing
            );
            return match s.merged {
                Some(a) => report(&self.run, a, !self.no_plots).map(|_| ()),
                None => Ok(()),
            };
        }
        if self.merge {
            let a = analysis::shard::merge(&self.run, self.device)?;
            return report(&self.run, a, !self.no_plots).map(|_| ());
        }
        analyze_and_plot(&self.run, self.device, !self.no_plots).map(|_| ())
    }
}

#[derive(Debug, Args)]
pub(super) struct RunArgs {
    #[command(flatten)]
    train: super::train::TrainArgs,
}

impl RunArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        crate::preempt::install()?;
        let began = Instant::now();
        let t = self.train;
        let (config, out) = t.resolve()?;
        // An analysis already there that would refuse these settings refuses them now,
        // before training gives the folder's config.toml the config's [analysis].
        config.train.device.resolve()?;
        analysis::dynamics::check_settings_unchanged(&config, &out)?;
        // The run folder's lock, held from training through the plots.
        let (s, _lock) = crate::train::train_holding(config, &out)?;
        let trained = began.elapsed().as_secs_f64();
        println!("{}: {} steps, test accuracy {:.2}% ({trained:.1}s)", s.out.display(), s.steps, 100.0 * s.test_acc);
        let a = analyze_and_plot(&s.out, t.device, true)?;
        let total = began.elapsed().as_secs_f64();
        println!(
            "time: {total:.1}s in all; training {trained:.1}s, recording activations {:.1}s, analysing {:.1}s, other {:.1}s",
            a.seconds_recording,
            a.seconds_analysing,
            (total - trained - a.seconds_recording - a.seconds_analysing).max(0.0)
        );
        Ok(())
    }
}

fn analyze_and_plot(run: &Path, device: Option<DeviceChoice>, plots: bool) -> anyhow::Result<AnalyzeSummary> {
    report(run, analysis::analyze(run, device)?, plots)
}

/// Prints an analysis's summary and draws its plots.
fn report(run: &Path, a: AnalyzeSummary, plots: bool) -> anyhow::Result<AnalyzeSummary> {
    println!(
        "{}: {} checkpoints analysed ({} now, {} already done) in {:.1}s recording + {:.1}s comparing",
        a.dir.display(),
        a.dynamics.steps.len(),
        a.computed,
        a.skipped,
        a.seconds_recording,
        a.seconds_analysing
    );
    // The checkpoint of the heatmaps' 35% panel: where the layers differ most visibly.
    if let Some(r) = crate::report::nearest_step(&a.dynamics, crate::report::FRACTIONS[1]) {
        let to_final: Vec<String> =
            r.layers.iter().enumerate().map(|(i, l)| format!("{l} {}", r.matrix[i][i].map_or("-".into(), |v| format!("{v:.2}")))).collect();
        println!("  similarity to the final state at step {} ({:.0}%): {}", r.step, 100.0 * r.fraction, to_final.join(", "));
        // What each of those scores by chance: the final layer against itself shuffled.
        let chance: Vec<String> =
            a.dynamics.baseline.iter().map(|b| format!("{} {}", b.layer, b.shuffled.map_or("-".into(), |v| format!("{v:.2}")))).collect();
        println!("  chance level (datapoints shuffled; every cell's in chance.csv): {}", chance.join(", "));
    }
    if plots {
        for p in crate::report::plot(run, &a.dynamics)? {
            println!("  {}", p.display());
        }
    }
    Ok(a)
}
