//! Preemption and time limits: SIGUSR1 or SIGTERM asks a running job to stop cleanly.
//!
//! Slurm sends SIGUSR1 ahead of a time limit (`sbatch --signal=B:USR1@SECONDS`, forwarded
//! to svcca by the batch script) and SIGTERM when it preempts or cancels a job. The
//! trainer checks [`requested`] after every step: when set, it writes a checkpoint at the
//! current step (atomically, with the partial train-statistics window, so the resumed run
//! writes the same metrics rows) and returns [`Preempted`]; the analysis checks it between
//! units of work, whose results are already on disk. The process then exits with
//! [`EXIT_STATUS`], on which the batch script requeues the task; the requeued task resumes
//! from that checkpoint, so nothing finished is redone.
//!
//! Handlers are installed only by the commands that check the flag (`svcca train`, `run`,
//! `analyze`, `experiment freeze`, `compare-runs`); a signal never kills those mid-write. Repeated signals (Slurm's SIGTERM to
//! every process of the job plus the script's forwarded SIGUSR1) only set the flag again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

/// Exit status of a run stopped by a signal after saving its state: EX_TEMPFAIL of
/// sysexits.h ("try again later"). The sbatch template requeues the task on it.
pub(crate) const EXIT_STATUS: u8 = 75;

/// The run stopped at `step` on a signal; its state is saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stopped by {signal} {at}; state saved, rerun the same command (or requeue the job) to resume")]
pub(crate) struct Preempted {
    pub signal: &'static str,
    pub at: String,
}

struct Flags {
    usr1: Arc<AtomicBool>,
    term: Arc<AtomicBool>,
}

static FLAGS: OnceLock<Flags> = OnceLock::new();

/// Installs the SIGUSR1 and SIGTERM handlers (once per process).
pub(crate) fn install() -> anyhow::Result<()> {
    if FLAGS.get().is_some() {
        return Ok(());
    }
    let flags = Flags { usr1: Arc::new(AtomicBool::new(false)), term: Arc::new(AtomicBool::new(false)) };
    signal_hook::flag::register(signal_hook::consts::SIGUSR1, flags.usr1.clone())?;
    signal_hook::flag::register(signal_hook::consts::SIGTERM, flags.term.clone())?;
    let _ = FLAGS.set(flags);
    Ok(())
}

/// The signal that asked us to stop, if one did.
pub(crate) fn requested() -> Option<&'static str> {
    let f = FLAGS.get()?;
    if f.usr1.load(Ordering::SeqCst) {
        Some("SIGUSR1")
    } else if f.term.load(Ordering::SeqCst) {
        Some("SIGTERM")
    } else {
        None
    }
}

/// `Err(Preempted)` when a stop was requested, `at` saying where the work stopped.
pub(crate) fn check(at: impl FnOnce() -> String) -> Result<(), Preempted> {
    match requested() {
        Some(signal) => Err(Preempted { signal, at: at() }),
        None => Ok(()),
    }
}
