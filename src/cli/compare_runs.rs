//! `svcca compare-runs RUN_A RUN_B [RUN_C ...]`

use crate::analysis::compare_runs::compare_runs_holding;
use crate::device::DeviceChoice;
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct CompareRunsArgs {
    /// Trained run folders (two or more): other seeds, other architectures.
    #[arg(num_args = 2.., required = true)]
    runs: Vec<PathBuf>,
    /// Output folder (default: RUN_A/analysis/compare-runs).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Where to compute (default: the first run's train.device).
    #[arg(long, value_name = "cpu|cuda[:N]|auto")]
    device: Option<DeviceChoice>,
    /// Tables only: skip the heatmap.
    #[arg(long)]
    no_plots: bool,
}

impl CompareRunsArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        // A signal stops it between pairs of runs (each pair's table is kept): exit 75.
        crate::preempt::install()?;
        let out = self.out.clone().unwrap_or_else(|| self.runs[0].join(crate::analysis::dynamics::FOLDER).join("compare-runs"));
        // The output folder's lock, held through the plots.
        let (c, _lock) = compare_runs_holding(&self.runs, &out, self.device)?;
        for p in &c.pairs {
            let diagonal: Vec<String> = p
                .layers_a
                .iter()
                .enumerate()
                .filter_map(|(i, l)| {
                    p.layers_b.iter().position(|m| m == l).map(|j| (l, p.matrix[i][j], p.chance.get(i).and_then(|r| r[j])))
                })
                .map(|(l, v, c)| format!("{l} {} (chance {})", fmt(v), fmt(c)))
                .collect();
            println!("{} vs {}: same-named layers: {}", self.runs[p.a].display(), self.runs[p.b].display(), diagonal.join(", "));
        }
        if let Some(s) = c.summary.as_ref().filter(|s| s.pairs > 1) {
            let diag: Vec<String> = s
                .layers
                .iter()
                .enumerate()
                .map(|(i, l)| format!("{l} {}±{} (chance {})", fmt(s.mean[i][i]), fmt(s.std[i][i]), fmt(s.chance[i][i])))
                .collect();
            println!("mean ± std over {} pairs: {}", s.pairs, diag.join(", "));
        }
        println!("tables in {}", out.display());
        if !self.no_plots {
            for p in crate::report::findings::compare_runs_plot(&out, &c)? {
                println!("  {}", p.display());
            }
        }
        Ok(())
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}
