//! Checkpoints: `checkpoints/step-NNNNNNNN.safetensors` in the run folder, each holding
//! everything needed to continue exactly: the weights and batch-norm statistics
//! (`model.*`), the momentum buffers (`momentum.*`), the step, the seed and the wall time
//! so far (`meta.*`). The data order and augmentation are functions of (seed, step)
//! (see `order`), so step and seed are the whole random state. safetensors files open
//! in Python (`safetensors.torch.load_file`). Written to a temporary file, then renamed.

use super::sgd::Sgd;
use anyhow::{bail, Context};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::nn::VarStore;
use tch::{Device, Tensor};

pub const FOLDER: &str = "checkpoints";

pub fn file_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

/// The step a checkpoint file name stands for (`None` for other files, temporaries too).
pub fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
}

/// Checkpoints in `dir`, by step.
pub fn list(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((step_of(e.file_name().to_str()?)?, e.path())))
        .collect();
    out.sort();
    out
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
    step == 0 || step % every == 0 || step == total
}

/// Removes the unscheduled checkpoints before `step`.
pub fn remove_unscheduled(dir: &Path, step: u64, every: u64, total: u64) -> anyhow::Result<()> {
    for (s, path) in list(dir) {
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
    tensors.push(("meta.wall_seconds".into(), Tensor::from_slice(&[meta.wall_seconds])));
    if let Some(w) = meta.window {
        tensors.push(("meta.window_loss_sum".into(), Tensor::from_slice(&[w.loss_sum])));
        tensors.push(("meta.window_correct".into(), Tensor::from_slice(&[w.correct])));
        tensors.push(("meta.window_seen".into(), Tensor::from_slice(&[w.seen as i64])));
    }
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    let path = dir.join(file_name(meta.step));
    crate::io::write_with(&path, crate::io::Replace::Always, |tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?))?;
    Ok(path)
}

/// Loads a checkpoint into `vs` and `sgd`; returns its metadata.
pub fn load(path: &Path, vs: &VarStore, sgd: &mut Sgd) -> anyhow::Result<Meta> {
    let mut saved: HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("cannot read checkpoint {}", path.display()))?
        .into_iter()
        .collect();
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
    sgd.load_state(|n| saved.remove(&format!("momentum.{n}")))
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let int = |k: &str| saved.get(k).map(|t| t.int64_value(&[0]));
    let (Some(step), Some(seed)) = (int("meta.step"), int("meta.seed")) else {
        bail!("{}: no meta.step or meta.seed", path.display());
    };
    let wall_seconds = saved.get("meta.wall_seconds").map_or(0.0, |t| t.double_value(&[0]));
    let window = match (saved.get("meta.window_loss_sum"), int("meta.window_correct"), int("meta.window_seen")) {
        (Some(l), Some(correct), Some(seen)) => Some(Window { loss_sum: l.double_value(&[0]) as f32, correct, seen: seen as u64 }),
        _ => None,
    };
    Ok(Meta { step: step as u64, seed: seed as u64, wall_seconds, window })
}

/// Removes all but the newest `keep` checkpoints.
pub fn prune(dir: &Path, keep: usize) -> anyhow::Result<()> {
    let all = list(dir);
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
            std::fs::write(dir.path().join(file_name(s)), b"").unwrap();
        }
        assert!(scheduled(0, 50, 130) && scheduled(100, 50, 130) && scheduled(130, 50, 130));
        assert!(!scheduled(72, 50, 130) && !scheduled(131, 50, 200));
        // At step 100: 72 (written on a signal) is no longer needed; 131 is not before it.
        remove_unscheduled(dir.path(), 100, 50, 200).unwrap();
        assert_eq!(list(dir.path()).iter().map(|c| c.0).collect::<Vec<_>>(), vec![0, 50, 100, 131]);
        prune(dir.path(), 2).unwrap();
        assert_eq!(list(dir.path()).iter().map(|c| c.0).collect::<Vec<_>>(), vec![100, 131]);
    }
}
