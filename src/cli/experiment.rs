//! `svcca experiment freeze CONFIG --seeds S`

use crate::device::DeviceChoice;
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ExperimentCommand {
    /// Normal against freeze training over seeds: runs both, then writes runs.csv,
    /// curves.csv, summary.csv/json and plots/accuracy.{png,svg} in OUT; rerun to resume.
    Freeze(FreezeArgs),
}

#[derive(Debug, Args)]
pub struct FreezeArgs {
    /// Experiment config with a [freeze] schedule.
    config: PathBuf,
    /// Seeds: a count (3: seeds 0, 1, 2) or a list (0,5,7).
    #[arg(long, value_parser = crate::experiment::parse_seeds, default_value = "3")]
    seeds: std::vec::Vec<u64>,
    /// Output folder (default runs/<config name>-freeze).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overrides the config's train.device.
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// Overrides one config key, e.g. --set train.steps=20 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
}

impl ExperimentCommand {
    pub fn run(self) -> anyhow::Result<()> {
        let ExperimentCommand::Freeze(a) = self;
        let config = crate::config::Config::load(&a.config, &super::overrides(&a.set, a.device))?;
        if config.sweep.is_some() {
            return Err(crate::error::InputError::new(format!(
                "{}: has a [sweep]; compare its variants with `svcca sweep {} --report`, or remove the [sweep] table",
                a.config.display(),
                a.config.display()
            ))
            .into());
        }
        let out = a.out.unwrap_or_else(|| crate::experiment::default_out(&a.config));
        let s = crate::experiment::freeze(config, &a.seeds, &out)?;
        println!(
            "{}: {} seeds; base {:.2}% ± {:.2} in {:.1}s, freeze {:.2}% ± {:.2} in {:.1}s: accuracy {:+.2} points, wall-clock saved {:.1}%, backward work saved {:.1}% (estimated)",
            out.display(),
            s.seeds.len(),
            100.0 * s.base.acc_mean,
            100.0 * s.base.acc_std,
            s.base.wall_mean,
            100.0 * s.freeze.acc_mean,
            100.0 * s.freeze.acc_std,
            s.freeze.wall_mean,
            s.acc_diff_points,
            100.0 * s.wall_saved,
            100.0 * s.backward_saved
        );
        if let (Some(b), Some(f), Some(d)) = (s.base.val_acc_mean, s.freeze.val_acc_mean, s.val_diff_points) {
            println!("validation accuracy (final): base {:.2}%, freeze {:.2}%: {d:+.2} points", 100.0 * b, 100.0 * f);
        }
        Ok(())
    }
}
