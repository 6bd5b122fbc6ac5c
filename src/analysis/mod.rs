//! Analyses of trained runs.
//!
//! - [`dynamics`]: `svcca analyze RUN_DIR`, the tables in `RUN_DIR/analysis/`.
//! - [`memory`]: its memory budget: the estimate, and how the work streams through it.
//! - [`shard`]: the same work split over the tasks of a job array, then merged.
//! - [`runs`]: a trained run opened at a checkpoint.
//! - [`activation_folder`]: the activations of any network, written elsewhere, for
//!   the learning-dynamics analysis.
//! - [`compression`], [`classes`], [`dimensionality`]: `svcca analyze RUN_DIR
//!   --compression | --classes | --dimensionality` (the paper's experiments 3 to 5);
//!   compression is a folder, a file per step (with its conv layers' projection kernel).
//! - [`compare_runs`]: `svcca compare-runs RUN_A RUN_B ...`.
//! - [`results`]: a folder of per-unit JSON results, how each analysis resumes.
//! - [`settings`]: refusing to mix results made with other settings.

pub mod activation_folder;
pub mod classes;
pub mod compare_runs;
pub mod compression;
pub mod dimensionality;
pub mod dynamics;
pub mod memory;
pub(crate) mod results;
pub mod runs;
pub(crate) mod settings;
pub(crate) mod shard;

pub use dynamics::{analyze, AnalyzeSummary};

use crate::error::InputError;
use std::path::Path;

/// A progress bar over `len` units of work, labelled `what`.
pub(crate) fn progress(len: u64, what: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// Refuses an unfinished run: `what` (checkpoints, stored activations) must reach the
/// final step `total`; `last` is the step they reach.
pub(crate) fn check_finished(dir: &Path, what: &str, last: Option<u64>, total: u64) -> Result<(), InputError> {
    match last {
        Some(last) if last == total => Ok(()),
        Some(last) => Err(InputError::new(format!(
            "{}: {what} reach step {last} of {total}: finish training first (`svcca train` resumes)",
            dir.display()
        ))),
        None => Err(InputError::new(format!("{}: no {what} to analyse", dir.display()))),
    }
}
