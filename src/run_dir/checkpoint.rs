//! Checkpoint files: `checkpoints/step-NNNNNNNN.safetensors` in the run folder, each holding
//! everything needed to continue exactly: the weights and batch-norm statistics
//! (`model.*`), the optimizer's momentum buffers (`momentum.*`), the step, the seed and the
//! wall time so far (`meta.*`). The data order and augmentation are functions of (seed,
//! step) (see `train::order`), so step and seed are the whole random state. safetensors
//! files open in Python (`safetensors.torch.load_file`). Written to a temporary file,
//! then renamed.
//!
//! This module reads and writes the file; it knows no trainer or optimizer. An analysis
//! reads a checkpoint's weights into a network with [`load_weights`]; `train::checkpoint`
//! writes checkpoints with the optimizer's state and reads them back to resume.
//!
//! A checkpoint can still be damaged (cut short by a full disk or a crashed file
//! system, bits flipped on a disk or in a copy): [`read`] and [`try_read`] refuse one
//! that does not parse, or whose contents no longer match the MD5 it was written with
//! (`meta.md5`, over every tensor's name and bytes but the wall time's). (Checkpoints
//! written before `meta.md5` existed load unchecked.)

use crate::error::InputError;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub const FOLDER: &str = "checkpoints";

/// Checkpoints in `dir`, by step (named as every step file, see
/// [`super::step_file_name`]): none where `dir` does not exist; refused (an
/// [`InputError`] naming `dir`) where it is not a folder, a symbolic link, or cannot be
/// read, since taking it as empty would start a run over.
pub fn list(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    super::step_files(dir)
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

/// The tensor holding the MD5 of the training state: every other tensor but [`WALL`]
/// (16 bytes). Two runs in the same state have the same MD5, whatever their wall time.
const CHECKSUM: &str = "meta.md5";
/// The wall time so far: not training state, left out of [`CHECKSUM`].
const WALL: &str = "meta.wall_seconds";

/// Writes the checkpoint of `meta.step` into `dir`: the variables of `vs` (`model.*`),
/// `state` (the optimizer's tensors, named as in the file: `momentum.*`), the metadata
/// and the MD5 of it all. Returns its path.
pub(crate) fn write(dir: &Path, vs: &VarStore, state: impl IntoIterator<Item = (String, Tensor)>, meta: Meta) -> anyhow::Result<PathBuf> {
    let to_cpu = |t: &Tensor| t.to_device(Device::Cpu).contiguous();
    let mut tensors: Vec<(String, Tensor)> = vs.variables().iter().map(|(n, t)| (format!("model.{n}"), to_cpu(t))).collect();
    tensors.extend(state.into_iter().map(|(n, t)| (n, to_cpu(&t))));
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
    let path = dir.join(super::step_file_name(meta.step));
    crate::io::write_with(&path, crate::io::Replace::Always, |tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?))?;
    Ok(path)
}

/// A checkpoint read and checked against its MD5.
pub(crate) struct Saved {
    path: PathBuf,
    tensors: HashMap<String, Tensor>,
}

/// Reads the checkpoint `path`: an error where it cannot be read or parsed, and an
/// [`InputError`] where its contents do not match its MD5.
pub(crate) fn read(path: &Path) -> anyhow::Result<Saved> {
    let saved = Tensor::read_safetensors(path).with_context(|| format!("cannot read checkpoint {}", path.display()))?;
    verify(&saved)
        .map_err(|e| InputError::new(format!("checkpoint {} is damaged: {e}; retrain from the checkpoint before it", path.display())))?;
    Ok(Saved { path: path.to_path_buf(), tensors: saved.into_iter().collect() })
}

/// Reads the checkpoint `path`, or says how it is damaged: it does not parse as
/// safetensors (cut short, overwritten with garbage), or its contents do not match its
/// MD5. (For a reader that sets damaged checkpoints aside; a file that cannot be opened
/// at all is not damage, and should be told apart before.)
pub(crate) fn try_read(path: &Path) -> Result<Saved, String> {
    let saved = Tensor::read_safetensors(path).map_err(|e| e.to_string())?;
    verify(&saved)?;
    Ok(Saved { path: path.to_path_buf(), tensors: saved.into_iter().collect() })
}

/// Loads the weights of the checkpoint `path` into `vs` (the network's variables: all
/// must be there, with their shapes); returns its metadata. No optimizer state is read.
pub(crate) fn load_weights(path: &Path, vs: &VarStore) -> anyhow::Result<Meta> {
    let saved = read(path)?;
    saved.weights_into(vs)?;
    saved.meta()
}

impl Saved {
    /// The file it was read from.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Copies the weights (`model.*`) into `vs`; every variable of `vs` must be there,
    /// with its shape.
    pub(crate) fn weights_into(&self, vs: &VarStore) -> anyhow::Result<()> {
        let path = &self.path;
        let vars = vs.variables();
        let mut names: Vec<&String> = vars.keys().collect();
        names.sort();
        for name in names {
            let Some(t) = self.tensors.get(&format!("model.{name}")) else {
                bail!("{}: no tensor model.{name} (a checkpoint of another network?)", path.display());
            };
            let mut var = vars.get(name).expect("listed").shallow_clone();
            if var.size() != t.size() {
                bail!("{}: model.{name} has shape {:?}, the network's is {:?}", path.display(), t.size(), var.size());
            }
            tch::no_grad(|| var.copy_(t));
        }
        Ok(())
    }

    /// Takes the tensor `name` out of the checkpoint (the optimizer's `momentum.*`).
    pub(crate) fn take(&mut self, name: &str) -> Option<Tensor> {
        self.tensors.remove(name)
    }

    /// The checkpoint's metadata.
    pub(crate) fn meta(&self) -> anyhow::Result<Meta> {
        let int = |k: &str| self.tensors.get(k).map(|t| t.int64_value(&[0]));
        let (Some(step), Some(seed)) = (int("meta.step"), int("meta.seed")) else {
            bail!("{}: no meta.step or meta.seed", self.path.display());
        };
        let wall_seconds = self.tensors.get(WALL).map_or(0.0, |t| t.double_value(&[0]));
        let window = match (self.tensors.get("meta.window_loss_sum"), int("meta.window_correct"), int("meta.window_seen")) {
            (Some(l), Some(correct), Some(seen)) => Some(Window { loss_sum: l.double_value(&[0]) as f32, correct, seen: seen as u64 }),
            _ => None,
        };
        Ok(Meta { step: step as u64, seed: seed as u64, wall_seconds, window })
    }
}

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

/// The MD5 of the training state a checkpoint holds (`meta.md5`, as hex): what tells one
/// run's checkpoint from another's. `None` for a checkpoint written before it existed.
pub(crate) fn state_md5(path: &Path) -> anyhow::Result<Option<String>> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run_dir::step_file_name;

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

    /// Weights written with an optimizer's state read back without one, with the
    /// metadata; a changed byte is refused as damage.
    #[test]
    fn weights_read_back_without_the_optimizer() {
        let dir = tempfile::tempdir().unwrap();
        let vs = VarStore::new(Device::Cpu);
        let w = vs.root().var("w", &[3, 2], tch::nn::Init::Uniform { lo: -1.0, up: 1.0 });
        let state = vec![("momentum.w".to_string(), Tensor::ones([3, 2], (tch::Kind::Float, Device::Cpu)))];
        let meta = Meta { step: 7, seed: 3, wall_seconds: 1.5, window: Some(Window { loss_sum: 2.5, correct: 4, seen: 9 }) };
        let path = write(dir.path(), &vs, state, meta).unwrap();
        assert_eq!(path, dir.path().join(step_file_name(7)));
        let other = VarStore::new(Device::Cpu);
        let v = other.root().zeros("w", &[3, 2]);
        assert_eq!(load_weights(&path, &other).unwrap(), meta);
        assert!(v.equal(&w));
        let mut saved = read(&path).unwrap();
        assert!(saved.take("momentum.w").is_some() && saved.take("momentum.w").is_none());
        // A changed weight: the MD5 no longer matches.
        let mut tensors = Tensor::read_safetensors(&path).unwrap();
        let changed = tensors.iter_mut().find(|(n, _)| n == "model.w").unwrap();
        changed.1 = &changed.1 + 1.0;
        Tensor::write_safetensors(&tensors, &path).unwrap();
        let e = load_weights(&path, &other).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("is damaged"), "{e}");
        assert!(try_read(&path).err().unwrap().contains("do not match the MD5"));
    }
}
