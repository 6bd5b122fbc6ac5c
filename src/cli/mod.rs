//! The command line: parses arguments and calls the stages. Nothing else lives here.

mod analyze;
mod compare;
mod compare_runs;
mod example;
mod experiment;
mod findings;
pub mod process;
mod sweep;
mod train;

use crate::similarity::Named;
use clap::builder::{PossibleValue, PossibleValuesParser, TypedValueParser};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "svcca", version, about = "Train networks, record their layers, and measure how representations learn with SVCCA")]
pub(crate) struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Similarity of two layers' activations stored as .npy, safetensors or torch.save files
    /// (datapoints x neurons, or conv layers' datapoints x C x H x W with --conv).
    Compare(compare::CompareArgs),
    /// Write an example pair of layers (a.npy, b.npy) with a shared low-rank signal.
    Example(example::ExampleArgs),
    /// Train the network an experiment config describes; rerun to resume.
    Train(train::TrainArgs),
    /// Learning dynamics of a trained run: each checkpoint's layers against the final
    /// network, tables in RUN_DIR/analysis/ and plots in RUN_DIR/plots/; rerun to resume.
    /// With --compression, --classes or --dimensionality: those analyses instead.
    Analyze(analyze::AnalyzeArgs),
    /// Train, analyse and plot one config in one command; rerun to resume.
    Run(analyze::RunArgs),
    /// Every layer of one trained run against every layer of others (seeds,
    /// architectures), pairwise, and the mean and std over the pairs.
    CompareRuns(compare_runs::CompareRunsArgs),
    /// Experiments across runs: `svcca experiment freeze CONFIG --seeds 3`.
    #[command(subcommand)]
    Experiment(experiment::ExperimentCommand),
    /// Sweeps over config values ([sweep] table): list the variants, submit them as a
    /// Slurm job array, report over seeds.
    Sweep(sweep::SweepArgs),
    /// Datasets: `svcca data fetch cifar10 --dir DIR`.
    #[command(subcommand)]
    Data(train::DataCommand),
}

impl Cli {
    pub(crate) fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Compare(args) => args.run(),
            Command::Example(args) => args.run(),
            Command::Train(args) => args.run(),
            Command::Data(cmd) => cmd.run(),
            Command::Analyze(args) => args.run(),
            Command::Run(args) => args.run(),
            Command::CompareRuns(args) => args.run(),
            Command::Experiment(cmd) => cmd.run(),
            Command::Sweep(args) => args.run(),
        }
    }
}

/// `--set KEY=VALUE` and `--unset KEY`: changes to a config's keys on the command line.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct ConfigEdits {
    /// Overrides one config key, e.g. --set train.steps=20 (repeatable). train.steps and
    /// train.epochs replace each other.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Removes one config key, so its default applies, e.g. --unset train.epochs (repeatable).
    #[arg(long = "unset", value_name = "KEY")]
    unset: Vec<String>,
}

impl ConfigEdits {
    /// The overrides, in the order the config applies them: the removals, the `--set`s,
    /// then `--device` when given.
    fn overrides(&self, device: Option<crate::device::DeviceChoice>) -> Vec<String> {
        let mut all: Vec<String> = self.unset.iter().map(|k| crate::config::unset(k)).collect();
        all.extend(self.set.iter().cloned());
        if let Some(d) = device {
            all.push(format!("train.device=\"{d}\""));
        }
        all
    }
}

/// Output cut short by the reader (`svcca compare ... | head`) is not an error.
fn ignore_broken_pipe(written: std::io::Result<()>) -> anyhow::Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other?),
    }
}

/// A setting of the maths ([`Named`]: its values' names and help, listed there) as a
/// clap value: the names are the possible values, shown in `--help` and in the error for
/// any other.
fn choice<T: Named + Send + Sync>() -> impl TypedValueParser<Value = T> {
    let values = T::NAMES
        .iter()
        .map(|&(_, name, help)| if help.is_empty() { PossibleValue::new(name) } else { PossibleValue::new(name).help(help) });
    PossibleValuesParser::new(values).map(|name| T::from_name(&name).expect("clap passes one of the possible values"))
}
