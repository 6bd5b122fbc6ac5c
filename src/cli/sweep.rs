//! `svcca sweep CONFIG --list | --submit [--dry-run] | --report`

use crate::sweep::{report, slurm, Sweep};
use clap::Args;
use std::path::PathBuf;

#[derive(Debug, Args)]
pub(super) struct SweepArgs {
    /// Config with a [sweep] table.
    config: PathBuf,
    /// Print the variants: index, values, run folder (the default action).
    #[arg(long)]
    list: bool,
    /// Write OUT/slurm/sweep.sbatch (a job array, one task per variant) and submit it.
    #[arg(long)]
    submit: bool,
    /// With --submit: write and print the script, but do not submit it.
    #[arg(long, requires = "submit")]
    dry_run: bool,
    /// Aggregate the finished variants over seeds into OUT/report/.
    #[arg(long)]
    report: bool,
    /// The sweep's folder (default: sweep.out, else runs/<config name>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Config changes for every variant.
    #[command(flatten)]
    edits: super::ConfigEdits,
    /// sbatch template to fill in instead of the built-in scripts/slurm/sweep.sbatch.
    #[arg(long, value_name = "FILE")]
    template: Option<PathBuf>,
    /// sbatch --time (overrides sweep.slurm.time), e.g. 02:00:00.
    #[arg(long)]
    time: Option<String>,
    /// GPUs per task: --gres=gpu:N (overrides sweep.slurm.gpus). Default: 1 when a
    /// variant's train.device is cuda or cuda:N, else none; 0 requests none.
    #[arg(long)]
    gpus: Option<u32>,
    /// sbatch --cpus-per-task (overrides sweep.slurm.cpus_per_task).
    #[arg(long)]
    cpus_per_task: Option<u32>,
    /// sbatch --mem, e.g. 16G (overrides sweep.slurm.mem).
    #[arg(long)]
    mem: Option<String>,
    /// sbatch --partition (overrides sweep.slurm.partition).
    #[arg(long)]
    partition: Option<String>,
    /// At most this many tasks at once: --array=0-N%CAP (overrides sweep.slurm.max_parallel).
    #[arg(long)]
    max_parallel: Option<usize>,
    /// SIGUSR1 this many seconds before the time limit (overrides sweep.slurm.signal_seconds).
    #[arg(long)]
    signal_seconds: Option<u64>,
    /// Another sbatch option, verbatim, e.g. --sbatch=--account=abc (repeatable).
    #[arg(long = "sbatch", value_name = "OPTION", allow_hyphen_values = true)]
    sbatch: Vec<String>,
}

impl SweepArgs {
    pub(super) fn run(self) -> anyhow::Result<()> {
        let sweep = Sweep::load(&self.config, &self.edits.overrides(None), self.out.clone())?;
        // The sweep folder's own files (slurm/, report/); each variant's run folder has
        // its own lock.
        let _lock = match self.submit || self.report {
            true => Some(crate::run_dir::lock(&sweep.out, crate::run_dir::Access::Exclusive)?),
            false => None,
        };
        if self.submit {
            let mut o = slurm::Options::from_sweep(&sweep)?;
            o.time = self.time.or(o.time);
            o.gpus = self.gpus.or(o.gpus);
            o.cpus_per_task = self.cpus_per_task.or(o.cpus_per_task);
            o.mem = match self.mem.or(o.mem) {
                Some(m) => Some(m),
                None => Some(slurm::default_mem(&sweep)?),
            };
            o.partition = self.partition.or(o.partition);
            o.max_parallel = self.max_parallel.or(o.max_parallel);
            o.signal_seconds = self.signal_seconds.unwrap_or(o.signal_seconds);
            o.extra.extend(self.sbatch);
            o.gpus = slurm::gpus_per_task(&sweep, &o)?;
            let template = match &self.template {
                Some(p) => Some(
                    std::fs::read_to_string(p).map_err(|e| crate::error::InputError::new(format!("{}: cannot read: {e}", p.display())))?,
                ),
                None => None,
            };
            let exe = std::env::current_exe()?;
            let text = slurm::script(&sweep, &o, &exe, template.as_deref())?;
            let (path, id) = slurm::submit(&sweep, &text, self.dry_run)?;
            match id {
                Some(id) => println!(
                    "submitted job array {id}: {} tasks ({}); logs in {}",
                    sweep.variants.len(),
                    path.display(),
                    sweep.out.join("slurm/logs").display()
                ),
                None => {
                    println!("{text}\n# written to {} (not submitted: --dry-run); submit with: sbatch {}", path.display(), path.display())
                }
            }
        }
        if self.report {
            let r = report::write(&sweep)?;
            for g in &r.groups {
                println!(
                    "{}: {} runs, final test accuracy {:.2}% ± {:.2}, training {:.1}s ± {:.1}",
                    g.group,
                    g.runs,
                    100.0 * g.final_acc_mean,
                    100.0 * g.final_acc_std,
                    g.wall_seconds_mean,
                    g.wall_seconds_std
                );
            }
            if let Some(best) = &r.best_by_validation {
                println!("best by final validation accuracy: {best}");
            }
            if !r.unfinished.is_empty() {
                println!("not finished (left out): variants {:?}", r.unfinished);
            }
            println!("report in {}", r.dir.display());
        }
        if self.list || !(self.submit || self.report) {
            let mode = match sweep.mode {
                crate::sweep::Mode::Cross => "cross",
                crate::sweep::Mode::Zip => "zip",
            };
            println!("{}: {} variants ({mode}) in {}", self.config.display(), sweep.variants.len(), sweep.out.display());
            for v in &sweep.variants {
                println!("{:>4}  {}  {}", v.index, v.describe(), v.dir.display());
            }
        }
        Ok(())
    }
}
