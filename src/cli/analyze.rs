//! `svcca analyze RUN_DIR` and `svcca run CONFIG`

use crate::analysis::{self, AnalyzeSummary};
use crate::device::DeviceChoice;
use clap::Args;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// Run folder made by `svcca train` (or `svcca run`).
    run: PathBuf,
    /// Where to compute (default: the run's train.device).
    #[arg(long, value_enum)]
    device: Option<DeviceChoice>,
    /// Tables only: skip the plots.
    #[arg(long)]
    no_plots: bool,
    #[command(flatten)]
    findings: super::findings::FindingsArgs,
}

impl AnalyzeArgs {
    pub fn run(self) -> anyhow::Result<()> {
        if self.findings.any() {
            return self.findings.run(&self.run, self.device, !self.no_plots);
        }
        analyze_and_plot(&self.run, self.device, !self.no_plots).map(|_| ())
    }
}

#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    train: super::train::TrainArgs,
}

impl RunArgs {
    pub fn run(self) -> anyhow::Result<()> {
        let began = Instant::now();
        let t = self.train;
        let s = crate::train::run(&t.config, &t.set, t.out, t.device)?;
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
    let a = analysis::analyze(run, device)?;
    println!(
        "{}: {} checkpoints analysed ({} now, {} already done) in {:.1}s recording + {:.1}s comparing",
        a.dir.display(),
        a.dynamics.steps.len(),
        a.computed,
        a.skipped,
        a.seconds_recording,
        a.seconds_analysing
    );
    // The checkpoint nearest a third of training: where the layers differ most visibly.
    if let Some(r) = a.dynamics.steps.iter().min_by(|x, y| (x.fraction - 0.35).abs().total_cmp(&(y.fraction - 0.35).abs())) {
        let to_final: Vec<String> = r
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| format!("{l} {}", r.matrix[i][i].map_or("-".into(), |v| format!("{v:.2}"))))
            .collect();
        println!("  similarity to the final state at step {} ({:.0}%): {}", r.step, 100.0 * r.fraction, to_final.join(", "));
    }
    if plots {
        for p in crate::report::plot(run, &a.dynamics)? {
            println!("  {}", p.display());
        }
    }
    Ok(a)
}
