//! `svcca example DIR`

use crate::example_pair::ExamplePair;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct ExampleArgs {
    /// Folder to write a.npy and b.npy into.
    dir: PathBuf,
    #[arg(long, default_value_t = ExamplePair::default().datapoints)]
    datapoints: i64,
    #[arg(long, default_value_t = ExamplePair::default().neurons_a)]
    neurons_a: i64,
    #[arg(long, default_value_t = ExamplePair::default().neurons_b)]
    neurons_b: i64,
    /// Dimension of the signal both layers share.
    #[arg(long, default_value_t = ExamplePair::default().rank)]
    rank: i64,
    /// Standard deviation of each layer's own noise (the shared signal has 1).
    #[arg(long, default_value_t = ExamplePair::default().noise)]
    noise: f64,
    #[arg(long, default_value_t = ExamplePair::default().seed)]
    seed: i64,
    /// Overwrite a.npy and b.npy if they exist.
    #[arg(long)]
    force: bool,
}

impl ExampleArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        for (flag, v) in
            [("--datapoints", self.datapoints), ("--neurons-a", self.neurons_a), ("--neurons-b", self.neurons_b), ("--rank", self.rank)]
        {
            if v < 1 {
                return Err(crate::error::InputError::new(format!("{flag} {v}: must be at least 1")).into());
            }
        }
        let pair = ExamplePair {
            datapoints: self.datapoints,
            neurons_a: self.neurons_a,
            neurons_b: self.neurons_b,
            rank: self.rank,
            noise: self.noise,
            seed: self.seed,
        };
        let [a, b] = pair.write(&self.dir, self.force)?;
        tracing::info!("wrote {} and {}", a.display(), b.display());
        println!("{}\n{}", a.display(), b.display());
        Ok(())
    }
}
