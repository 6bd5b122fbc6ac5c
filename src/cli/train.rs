//! `svcca train CONFIG` and `svcca data fetch`

use crate::data::fetch;
use crate::device::DeviceChoice;
use clap::{Args, Subcommand, ValueEnum};
use std::path::PathBuf;

/// What `svcca train` takes; `svcca run` takes the same.
#[derive(Debug, Args)]
pub(super) struct TrainArgs {
    /// Experiment config (TOML; see configs/).
    pub(super) config: PathBuf,
    /// Run folder (default runs/<config name>). Rerunning into it resumes.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// Overrides the config's train.device (for `svcca run`, the analysis's too).
    #[arg(long, value_name = "cpu|cuda[:N]|auto")]
    pub(super) device: Option<DeviceChoice>,
    #[command(flatten)]
    pub(super) edits: super::ConfigEdits,
    /// A config with a [sweep]: the variant to run (default: $SLURM_ARRAY_TASK_ID);
    /// --out is then the sweep's folder. `svcca sweep CONFIG --list` lists them.
    #[arg(long, value_name = "I")]
    pub(super) variant: Option<usize>,
}

impl TrainArgs {
    /// The config and run folder these arguments name: `--set` and `--device` applied,
    /// the sweep variant chosen (see `crate::sweep::resolve`).
    pub(super) fn resolve(&self) -> anyhow::Result<(crate::config::Config, PathBuf)> {
        crate::sweep::resolve(&self.config, &self.edits.overrides(self.device), self.out.clone(), self.variant)
    }

    pub(super) fn run(self) -> anyhow::Result<()> {
        crate::preempt::install()?;
        let (config, out) = self.resolve()?;
        let s = crate::train::train(config, &out)?;
        println!(
            "{}: {} steps{}, test accuracy {:.2}% (loss {:.4}){}{}",
            s.out.display(),
            s.steps,
            match s.resumed_from {
                Some(r) if r == s.steps => " (already trained)".to_string(),
                Some(r) => format!(" (resumed from step {r})"),
                None => String::new(),
            },
            100.0 * s.test_acc,
            s.test_loss,
            match s.validation {
                Some((_, a)) => format!(", validation accuracy {:.2}%", 100.0 * a),
                None => String::new(),
            },
            match s.backward_saved {
                x if x > 0.0 => format!(", backward work saved by freezing {:.1}% (estimated)", 100.0 * x),
                _ => String::new(),
            }
        );
        Ok(())
    }
}

#[derive(Debug, Subcommand)]
pub(super) enum DataCommand {
    /// Download a dataset, check its checksum and unpack it.
    Fetch(FetchArgs),
    /// Write the built-in synthetic images in a dataset's own file format (CIFAR-10's
    /// binary batches, MNIST's IDX files), to run a config made for that dataset without
    /// it: `svcca data synthetic cifar10 --dir data`.
    Synthetic(SyntheticArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Writable {
    Cifar10,
    Mnist,
    FashionMnist,
}

#[derive(Debug, Args)]
pub(super) struct SyntheticArgs {
    dataset: Writable,
    /// Folder to write into (CIFAR-10: DIR/cifar-10-batches-bin); existing files are
    /// never overwritten.
    #[arg(long)]
    dir: PathBuf,
    /// Training images.
    #[arg(long, default_value_t = 50_000)]
    train: usize,
    /// Test images.
    #[arg(long, default_value_t = 10_000)]
    test: usize,
    /// Seed of the images (the synthetic set's data.seed).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(super) enum Fetchable {
    Cifar10,
}

#[derive(Debug, Args)]
pub(super) struct FetchArgs {
    dataset: Fetchable,
    /// Folder to put it in (the data lands in DIR/cifar-10-batches-bin).
    #[arg(long)]
    dir: PathBuf,
    /// Download from here instead (a mirror); also env SVCCA_CIFAR10_URL.
    #[arg(long)]
    url: Option<String>,
    /// The archive's expected MD5 (with --url); also env SVCCA_CIFAR10_MD5.
    #[arg(long)]
    md5: Option<String>,
}

impl DataCommand {
    pub(super) fn run(self) -> anyhow::Result<()> {
        match self {
            DataCommand::Fetch(a) => {
                let Fetchable::Cifar10 = a.dataset;
                let url = a.url.or_else(|| std::env::var(fetch::URL_ENV).ok()).unwrap_or_else(|| fetch::CIFAR10_URL.into());
                let md5 = a.md5.or_else(|| std::env::var(fetch::MD5_ENV).ok()).unwrap_or_else(|| fetch::CIFAR10_MD5.into());
                let dir = fetch::cifar10(&a.dir, &url, &md5)?;
                println!("{}", dir.display());
                Ok(())
            }
            DataCommand::Synthetic(a) => {
                let dataset = match a.dataset {
                    Writable::Cifar10 => crate::config::DatasetName::Cifar10,
                    Writable::Mnist => crate::config::DatasetName::Mnist,
                    Writable::FashionMnist => crate::config::DatasetName::FashionMnist,
                };
                for f in crate::data::generated::write(dataset, &a.dir, a.seed, a.train, a.test)? {
                    println!("{}", f.display());
                }
                Ok(())
            }
        }
    }
}
