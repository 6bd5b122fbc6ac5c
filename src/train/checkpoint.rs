//! Checkpoints: `checkpoints/step-NNNNNNNN.safetensors` in the run folder, each holding
//! everything needed to continue exactly: the weights and batch-norm statistics
//! (`model.*`), the momentum buffers (`momentum.*`), the step, the seed and the wall time
//! so far (`meta.*`). The data order and augmentation are functions of (seed, step)
//! (see `order`), so step and seed are the whole random state. safetensors files open
//! in Python (`safetensors.torch.load_file`). Written to a temporary file, then renamed.
//!
//! A checkpoint can still be damaged (cut short by a full disk or a crashed file
//! system, bits flipped on a disk or in a copy): on resume, one that does not parse, or
//! whose contents no longer match the MD5 it was written with (`meta.md5`, over every
//! tensor's name and bytes but the wall time's), is renamed `step-N.safetensors.damaged`, which [`list`]
//! does not match, and the run resumes from the newest one that loads. (Checkpoints
//! written before `meta.md5` existed load unchecked.)

use super::sgd::Sgd;
use crate::error::InputError;
use crate::run_dir::step_file_name;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub const FOLDER: &str = "checkpoints";

/// Checkpoints in `dir`, by step (named as every step file, see
/// [`crate::run_dir::step_file_name`]): none where `dir` does not exist; refused (an
/// [`InputError`] naming `dir`) where it is not a folder, a symbolic link, or cannot be
/// read, since taking it as empty would start a run over.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    crate::run_dir::step_files(dir)
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Meta {
    pub step: u64,
    pub seed: u64,
    pub wall_seconds: f64,
    /// Train statistics since the last metrics row: only in a checkpoint written between
    /// rows (on a signal, see `crate::preempt`); regular checkpoints fall on a row.
    pub window: Option<Window>,
}

/// The running sums behind the next metrics row's train loss and accuracy.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Window {
    /// The float32 sum of the batch losses, kept exact.
    pub loss_sum: f32,
    pub correct: i64,
    pub seen: u64,
}

/// Whether `step` is on the checkpoint schedule (`every`, the end, the start); any other
/// checkpoint was written on a signal and is removed once a later scheduled one exists,
/// so that it neither shows up in the analysis nor counts against `keep_last`.
pub fn scheduled(step: u64, every: u64, total: u64) -> bool {
    step == 0 || step.is_multiple_of(every) || step == total
}

/// Removes the unscheduled checkpoints before `step`.
pub fn remove_unscheduled(dir: &Path, step: u64, every: u64, total: u64) -> anyhow::Result<()> {
    for (s, path) in list(dir)? {
        if s < step && !scheduled(s, every, total) {
            std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

pub fn save(dir: &Path, vs: &VarStore, sgd: &Sgd, meta: Meta) -> anyhow::Result<PathBuf> {
    let to_cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
    let mut tensors: Vec<(String, Tensor)> = vs.variables().iter().map(|(n, t)| (format!("model.{n}"), to_cpu(t))).collect();
    tensors.extend(sgd.state().iter().map(|(n, t)| (format!("momentum.{n}"), to_cpu(t))));
    tensors.push(("meta.step".into(), Tensor::from_slice(&[meta.step as i64])));
    tensors.push(("meta.seed".into(), Tensor::from_slice(&[meta.seed as i64])));
    tensors.push((WALL.into(), Tensor::from_slice(&[meta.wall_seconds])));
    if let Some(w) = meta.window {
        tensors.push(("meta.window_loss_sum".into(), Tensor::from_slice(&[w.loss_sum])));
        tensors.push(("meta.window_correct".into(), Tensor::from_slice(&[w.correct])));
        tensors.push(("meta.window_seen".into(), Tensor::from_slice(&[w.seen as i64])));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let md5 = digest(tensors.iter().filter(|(n, _)| n != WALL).map(|(n, t)| (n.as_str(), t)));
    tensors.push((CHECKSUM.into(), Tensor::from_slice(&md5)));
    let path = dir.join(step_file_name(meta.step));
    crate::io::write_with(&path, crate::io::Replace::Always, |tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?))?;
    Ok(path)
}

/// Loads a checkpoint into `vs` and `sgd`; returns its metadata.
pub fn load(path: &Path, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Meta> {
    let saved = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    verify(&saved)
        .map_err(|e| InputError::new(format!("checkpoint {} is damaged: {e}; retrain from the checkpoint before it", path.display())))?;
    apply(path, saved, vs, sgd)
}

/// Suffix of a checkpoint set aside by [`load_newest`] as damaged.
pub const DAMAGED: &str = ".damaged";

/// The tensor holding the MD5 of the training state: every other tensor but [`WALL`]
/// (16 bytes). Two runs in the same state have the same MD5, whatever their wall time.
const CHECKSUM: &str = "meta.md5";
/// The wall time so far: not training state, left out of [`CHECKSUM`].
const WALL: &str = "meta.wall_seconds";

/// The MD5 of `tensors` (CPU, contiguous), names and bytes, in the order given.
fn digest<'a>(tensors: impl Iterator<Item = (&'a str, &'a Tensor)>) -> Vec<u8> {
    use md5::{Digest, Md5};
    let mut hasher = Md5::new();
    let mut bytes = Vec::new();
    for (name, t) in tensors {
        hasher.update(name.as_bytes());
        let t = t.contiguous();
        bytes.resize(t.numel() * t.kind().elt_size_in_bytes(), 0);
        t.copy_data_u8(&mut bytes, t.numel());
        hasher.update(&bytes);
    }
    hasher.finalize().to_vec()
}

/// Whether the tensors of a checkpoint match the MD5 they were saved with (`Ok` where no
/// MD5 was saved); the error says what differs.
fn verify(saved: &[(String, Tensor)]) -> Result<(), String> {
    let Some((_, stored)) = saved.iter().find(|(n, _)| n == CHECKSUM) else { return Ok(()) };
    let mut rest: Vec<(&str, &Tensor)> = saved.iter().filter(|(n, _)| n != CHECKSUM && n != WALL).map(|(n, t)| (n.as_str(), t)).collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    let stored = Vec::<u8>::try_from(stored).unwrap_or_default();
    if digest(rest.into_iter()) == stored {
        Ok(())
    } else {
        Err("its contents do not match the MD5 it was written with (changed on disk since)".into())
    }
}

/// Loads the newest checkpoint of `dir` into `vs` and `sgd`: its step, path and
/// metadata, or `None` when there is no checkpoint.
///
/// A checkpoint that exists but does not parse as safetensors (cut short, overwritten
/// with garbage) is renamed with the suffix [`DAMAGED`] (never deleted, nor overwriting
/// an earlier damaged copy), with a warning, and the next older one is tried; the
/// metrics rows after the step resumed from are dropped by `Metrics::open`. When every
/// checkpoint is damaged, an [`InputError`] names them all. A file that parses but does
/// not fit the network is an error as before: that is a different network, not damage.
pub fn load_newest(dir: &Path, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Option<(u64, PathBuf, Meta)>> {
    let mut damaged = Vec::new();
    for (step, path) in list(dir)?.into_iter().rev() {
        // A file that cannot be opened at all (permissions) is not damage: the error stops
        // the run and the file stays where it is.
        std::fs::File::open(&path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
        match Tensor::read_safetensors(&path).map_err(|e| e.to_string()).and_then(|saved| verify(&saved).map(|()| saved)) {
            Ok(saved) => {
                let meta = apply(&path, saved, vs, sgd)?;
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

/// Copies the tensors of the checkpoint `path` (read as `saved`) into `vs` and `sgd`.
fn apply(path: &Path, saved: Vec<(String, Tensor)>, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Meta> {
    let mut saved: HashMap<String, Tensor> = saved.into_iter().collect();
    let mut vars = vs.variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    for name in names.clone() {
        let Some(t) = saved.get(&format!("model.{name}")) else {
            bail!("{}: no tensor model.{name} (a checkpoint of another network?)", path.display());
        };
        let mut var = vars.get(name).expect("listed").shallow_clone();
        if var.size() != t.size() {
            bail!("{}: model.{name} has shape {:?}, the network's is {:?}", path.display(), t.size(), var.size());
        }
        tch::no_grad(|| var.copy_(t));
    }
    vars.clear();
    sgd.load_state(|n| saved.remove(&format!("momentum.{n}"))).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let int = |k: &str| saved.get(k).map(|t| t.int64_value(&[0]));
    let (Some(step), Some(seed)) = (int("meta.step"), int("meta.seed")) else {
        bail!("{}: no meta.step or meta.seed", path.display());
    };
    let wall_seconds = saved.get(WALL).map_or(0.0, |t| t.double_value(&[0]));
    let window = match (saved.get("meta.window_loss_sum"), int("meta.window_correct"), int("meta.window_seen")) {
        (Some(l), Some(correct), Some(seen)) => Some(Window { loss_sum: l.double_value(&[0]) as f32, correct, seen: seen as u64 }),
        _ => None,
    };
    Ok(Meta { step: step as u64, seed: seed as u64, wall_seconds, window })
}

/// The MD5 of the training state a checkpoint holds (`meta.md5`, as hex): what tells one
/// run's checkpoint from another's. `None` for a checkpoint written before it existed.
pub fn state_md5(path: &Path) -> anyhow::Result<Option<String>> {
    let saved = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    let md5 = saved.iter().find(|(n, _)| n == CHECKSUM).map(|(_, t)| Vec::<u8>::try_from(t).unwrap_or_default());
    Ok(md5.map(|b| b.iter().map(|x| format!("{x:02x}")).collect()))
}

/// Refuses a checkpoint written by a run of another `train.seed` than `seed` (copied in
/// from another run: its weights, data order and augmentation are not this run's).
pub fn check_seed(path: &Path, meta: &Meta, seed: u64) -> Result<(), InputError> {
    if meta.seed == seed {
        return Ok(());
    }
    Err(InputError::new(format!(
        "{}: written by a run with train.seed = {}, but this run's train.seed is {seed}: the folder holds another run's checkpoints; move them away or use another --out",
        path.display(),
        meta.seed
    )))
}

/// Removes all but the newest `keep` checkpoints.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let all = list(dir)?;
    for (_, path) in all.iter().take(all.len().saturating_sub(keep)) {
        std::fs::remove_file(path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_checkpoint_folder_that_cannot_be_listed_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(list(&dir.path().join("none")).unwrap().is_empty());
        let file = dir.path().join("checkpoints");
        std::fs::write(&file, b"").unwrap();
        let e = list(&file).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("checkpoints: is not a folder"), "{e}");
        #[cfg(unix)]
        {
            let real = dir.path().join("real");
            std::fs::create_dir(&real).unwrap();
            std::fs::write(real.join(step_file_name(10)), b"").unwrap();
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&real, &link).unwrap();
            let e = list(&link).unwrap_err();
            assert!(e.is::<InputError>() && e.to_string().contains("symbolic link"), "{e}");
            std::os::unix::fs::symlink("/etc/passwd", real.join(step_file_name(20))).unwrap();
            let e = list(&real).unwrap_err();
            assert!(e.is::<InputError>() && e.to_string().contains("step-00000020.safetensors: is not a regular file"), "{e}");
        }
    }
}
