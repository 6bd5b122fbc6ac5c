//! `svcca experiment freeze CONFIG --seeds S`, `svcca experiment toy-regression`

use crate::device::DeviceChoice;
use crate::toy_regression::{Basis, Settings};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub(super) enum ExperimentCommand {
    /// Normal against freeze training over seeds: runs both, then writes runs.csv,
    /// curves.csv, summary.csv/json and plots/accuracy.{png,svg} in OUT; rerun to resume.
    Freeze(FreezeArgs),
    /// The paper's toy regression (Figures 1 and 3): two small nets from two
    /// initialisations fit four functions of x; writes the curves as CSV and
    /// plots/figure1.png, plots/figure3.png in OUT. Seconds on a CPU.
    ToyRegression(ToyArgs),
}

#[derive(Debug, Args)]
pub(super) struct ToyArgs {
    /// Output folder.
    #[arg(long, default_value = "runs/toy-regression")]
    out: PathBuf,
    /// Net A starts from this seed, net B from the next.
    #[arg(long, default_value_t = Settings::default().seed)]
    seed: u64,
    /// Units per hidden layer (four hidden layers).
    #[arg(long, default_value_t = Settings::default().width)]
    width: usize,
    /// Grid points over [-1, 1] (training set and comparison datapoints).
    #[arg(long, default_value_t = Settings::default().points)]
    points: usize,
    /// Full-batch Adam steps per net.
    #[arg(long, default_value_t = Settings::default().steps)]
    steps: usize,
    #[arg(long, default_value_t = Settings::default().learning_rate)]
    learning_rate: f64,
    /// The hidden layer of Figure 1 (1 to 4).
    #[arg(long, default_value_t = Settings::default().layer)]
    layer: usize,
    /// Curves per basis in Figure 1.
    #[arg(long, default_value_t = Settings::default().shown)]
    shown: usize,
    /// Figure 1's SVCCA keeps on each side the principal directions holding this fraction
    /// of the variance.
    #[arg(long, default_value_t = Settings::default().keep)]
    keep: f64,
    /// Figure 3's SVCCA keeps on each side exactly this many principal directions; each
    /// panel then keeps the top k of them by canonical correlation (at least the largest
    /// k; default: the largest k, 30 for the paper's panels).
    #[arg(long)]
    figure3_svd: Option<usize>,
    /// Directions kept in Figure 3's panels, a comma list.
    #[arg(long, value_delimiter = ',', default_values_t = Settings::default().ks)]
    ks: Vec<usize>,
}

#[derive(Debug, Args)]
pub(super) struct FreezeArgs {
    /// Experiment config with a [freeze] schedule.
    config: PathBuf,
    /// Seeds: a count (3: seeds 0, 1, 2) or a list (0,5,7).
    #[arg(long, value_parser = crate::experiment::parse_seeds, default_value = "3")]
    seeds: std::vec::Vec<u64>,
    /// Output folder (default runs/<config name>-freeze).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Overrides the config's train.device.
    #[arg(long, value_name = "cpu|cuda[:N]|auto")]
    device: Option<DeviceChoice>,
    #[command(flatten)]
    edits: super::ConfigEdits,
}

impl ExperimentCommand {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let a = match self {
            ExperimentCommand::Freeze(a) => a,
            ExperimentCommand::ToyRegression(a) => return a.run(),
        };
        // Its runs stop on SIGUSR1/SIGTERM with a checkpoint, as `svcca train` does.
        crate::preempt::install()?;
        let config = crate::config::Config::load(&a.config, &a.edits.overrides(a.device))?;
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

impl ToyArgs {
    fn run(self) -> anyhow::Result<()> {
        let settings = Settings {
            seed: self.seed,
            width: self.width,
            points: self.points,
            steps: self.steps,
            learning_rate: self.learning_rate,
            layer: self.layer,
            shown: self.shown,
            keep: self.keep,
            figure3_svd: self.figure3_svd.unwrap_or_else(|| self.ks.iter().copied().max().unwrap_or(0)),
            ks: self.ks,
        };
        let s = crate::toy_regression::run(&settings, &self.out)?;
        let l = s.layer(settings.layer);
        println!(
            "{}: training loss {:.1e} (net A), {:.1e} (net B) in {:.1}s\n  hidden layer {}, mean |correlation| between the nets of the top {}: SVCCA directions {:.3}, SVD directions {:.3}, most active neurons {:.3} (best-matching neurons {:.3})",
            self.out.display(),
            s.final_loss[0],
            s.final_loss[1],
            s.seconds,
            l.layer,
            settings.shown,
            l.svcca,
            l.svd,
            l.neurons,
            l.neurons_best_match
        );
        for basis in Basis::ALL {
            let errs: Vec<String> =
                s.figure3.iter().filter(|e| e.basis == basis).map(|e| format!("k={} {:.2}%", e.k, 100.0 * e.relative_error)).collect();
            println!("  output error, last hidden layer on its top {}: {}", basis.as_str(), errs.join(", "));
        }
        println!("  {}", self.out.join(crate::report::FOLDER).join("figure1.png").display());
        println!("  {}", self.out.join(crate::report::FOLDER).join("figure3.png").display());
        Ok(())
    }
}
