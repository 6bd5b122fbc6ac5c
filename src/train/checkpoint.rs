//! The trainer's checkpoints: the files of `crate::run_dir::checkpoint` (the weights, the
//! metadata, the MD5), written here with the optimizer's momentum buffers (`momentum.*`)
//! and read back to resume, weights and momentum alike; which checkpoints are kept.
//!
//! A checkpoint can still be damaged (cut short by a full disk or a crashed file
//! system, bits flipped on a disk or in a copy): on resume, one that does not parse, or
//! whose contents no longer match the MD5 it was written with, is renamed
//! `step-N.safetensors.damaged`, which [`list`] does not match, and the run resumes from
//! the newest one that loads.

use super::sgd::Sgd;
use crate::error::InputError;
use crate::run_dir::checkpoint::{self as file, Saved};
pub use crate::run_dir::checkpoint::{check_seed, list, Meta, Window, FOLDER};
use anyhow::Context;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;

/// Whether `step` is on the checkpoint schedule (`every`, the end, the start); any other
/// checkpoint was written on a signal and is removed once a later scheduled one exists,
/// so that it neither shows up in the analysis nor counts against `keep_last`.
pub fn scheduled(step: u64, every: u64, total: u64) -> bool {
    step == 0 || step.is_multiple_of(every) || step == total
}

/// Removes the unscheduled checkpoints before `step`.
pub(crate) fn remove_unscheduled(dir: &Path, step: u64, every: u64, total: u64) -> anyhow::Result<()> {
    for (s, path) in list(dir)? {
        if s < step && !scheduled(s, every, total) {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

/// Writes the checkpoint of `meta.step`: the weights of `vs`, the momentum of `sgd`.
pub fn save(dir: &Path, vs: &VarStore, sgd: &Sgd, meta: Meta) -> anyhow::Result<PathBuf> {
    file::write(dir, vs, sgd.state().into_iter().map(|(n, t)| (format!("momentum.{n}"), t)), meta)
}

/// Loads a checkpoint into `vs` and `sgd`; returns its metadata.
pub fn load(path: &Path, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Meta> {
    apply(file::read(path)?, vs, sgd)
}

/// Suffix of a checkpoint set aside by [`load_newest`] as damaged.
pub(crate) const DAMAGED: &str = ".damaged";

/// Loads the newest checkpoint of `dir` into `vs` and `sgd`: its step, path and
/// metadata, or `None` when there is no checkpoint.
///
/// A checkpoint that exists but does not parse as safetensors (cut short, overwritten
/// with garbage) is renamed with the suffix [`DAMAGED`] (never deleted, nor overwriting
/// an earlier damaged copy), with a warning, and the next older one is tried; the
/// metrics rows after the step resumed from are dropped by `Metrics::open`. When every
/// checkpoint is damaged, an [`InputError`] names them all. A file that parses but does
/// not fit the network is an error as before: that is a different network, not damage.
pub(crate) fn load_newest(dir: &Path, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Option<(u64, PathBuf, Meta)>> {
    let mut damaged = Vec::new();
    for (step, path) in list(dir)?.into_iter().rev() {
        // A file that cannot be opened at all (permissions) is not damage: the error stops
        // the run and the file stays where it is.
        std::fs::File::open(&path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        match file::try_read(&path) {
            Ok(saved) => {
                let meta = apply(saved, vs, sgd)?;
                return Ok(Some((step, path, meta)));
            }
            Err(e) => {
                let aside = set_aside(&path)?;
                tracing::warn!(
                    "{} is damaged ({e}); moved it aside to {}, trying the checkpoint before it",
                    path.display(),
                    aside.display()
                );
                damaged.push(path.display().to_string());
            }
        }
    }
    if damaged.is_empty() {
        return Ok(None);
    }
    Err(InputError::new(format!(
        "no checkpoint in {} can be read: {} are damaged (moved aside with the suffix {DAMAGED}); run again to train from step 0, or restore them",
        dir.display(),
        damaged.join(", ")
    ))
    .into())
}

/// Renames a damaged checkpoint to `NAME.damaged` (or `NAME.damaged-2`, ... when an
/// earlier damaged copy holds that name); returns the new path.
fn set_aside(path: &Path) -> anyhow::Result<PathBuf> {
    let name = path.file_name().expect("a checkpoint file").to_string_lossy();
    let mut aside = path.with_file_name(format!("{name}{DAMAGED}"));
    let mut n = 2;
    while aside.exists() {
        aside = path.with_file_name(format!("{name}{DAMAGED}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &aside).with_context(|| format!("cannot move damaged checkpoint {} aside", path.display()))?;
    Ok(aside)
}

/// Copies the weights and the momentum of a checkpoint into `vs` and `sgd`.
fn apply(mut saved: Saved, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Meta> {
    saved.weights_into(vs)?;
    sgd.load_state(|n| saved.take(&format!("momentum.{n}"))).map_err(|e| anyhow::anyhow!("{}: {e}", saved.path().display()))?;
    saved.meta()
}

/// Removes all but the newest `keep` checkpoints.
pub(crate) fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let all = list(dir)?;
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::step_file_name;

    #[test]
    fn unscheduled_checkpoints_go_once_a_later_one_exists() {
        let dir = tempfile::tempdir().unwrap();
        for s in [0, 50, 72, 100, 131] {
            std::fs::write(dir.path().join(step_file_name(s)), b"").unwrap();
        }
        assert!(scheduled(0, 50, 130) && scheduled(100, 50, 130) && scheduled(130, 50, 130));
        assert!(!scheduled(72, 50, 130) && !scheduled(131, 50, 200));
        // At step 100: 72 (written on a signal) is no longer needed; 131 is not before it.
        remove_unscheduled(dir.path(), 100, 50, 200).unwrap();
        assert_eq!(list(dir.path()).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 50, 100, 131]);
        prune(dir.path(), 2).unwrap();
        assert_eq!(list(dir.path()).unwrap().iter().map(|c| c.0).collect::<Vec<_>>(), vec![100, 131]);
    }
}
