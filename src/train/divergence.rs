//! Stopping at the first non-finite loss, before anything diverged is saved.

use super::checkpoint;
use super::sgd::Sgd;
use crate::error::InputError;
use std::path::PathBuf;
use tch::{Kind, Tensor};

/// Stops training at the first non-finite loss, before it reaches a metrics row or a
/// checkpoint, so that the run folder keeps only what was written before it diverged.
///
/// Reading a value off the device waits for the device (a sync), so the loss is not read
/// at every step. The loop already reads the running loss sum of the metrics window
/// every 10 steps, at every row and before every checkpoint; a NaN or Inf loss makes
/// that sum NaN or Inf, so checking the sum whenever it is read costs nothing and finds
/// the divergence within at most 10 steps. The price is that the error names the steps
/// since the previous read, not the exact step. A finite loss does not make the update
/// after it finite (a gradient can overflow), so the weights and momentum buffers are
/// also checked on the device before each checkpoint: one more read per checkpoint,
/// which copies them to the host anyway.
pub(super) struct Divergence {
    /// The loss was last read, finite, after this many steps.
    finite_until: u64,
    ckpt_dir: PathBuf,
}

impl Divergence {
    /// Watching a run that continues from step `start`, its checkpoints in `ckpt_dir`.
    pub(super) fn new(start: u64, ckpt_dir: PathBuf) -> Divergence {
        Divergence { finite_until: start, ckpt_dir }
    }

    /// `loss`: the mean (or sum) of the training losses of steps up to `done`, read now;
    /// `lr_of`: the learning rate of a (0-based) update.
    pub(super) fn train_loss(&mut self, loss: f64, done: u64, lr_of: impl Fn(u64) -> f64) -> Result<(), InputError> {
        if loss.is_finite() {
            self.finite_until = done;
            return Ok(());
        }
        let first = self.finite_until + 1;
        let (lr_first, lr_last) = (lr_of(first - 1), lr_of(done - 1));
        let (steps, lr) = match (first == done, lr_first == lr_last) {
            (true, _) => (format!("at step {done}"), format!("lr {}", lr_text(lr_last))),
            (false, true) => (format!("at one of steps {first} to {done}"), format!("lr {}", lr_text(lr_last))),
            (false, false) => (format!("at one of steps {first} to {done}"), format!("lr {} to {}", lr_text(lr_first), lr_text(lr_last))),
        };
        Err(self.error(format!("the training loss became {} {steps} ({lr})", loss_text(loss))))
    }

    /// The loss of an evaluation on `split` (`test`, `validation`).
    pub(super) fn eval_loss(&self, split: &str, loss: f64, done: u64, lr: f64) -> Result<(), InputError> {
        match loss.is_finite() {
            true => Ok(()),
            false => Err(self.error(format!("the {split} loss became {} at step {done} (lr {})", loss_text(loss), lr_text(lr)))),
        }
    }

    /// Checks the weights, batch-norm statistics and momentum buffers about to be saved.
    pub(super) fn state(&self, vs: &tch::nn::VarStore, sgd: &Sgd, done: u64, lr: f64) -> Result<(), InputError> {
        let tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .chain(sgd.state().into_iter().map(|(n, t)| (format!("momentum.{n}"), t)))
            .collect();
        let finite = |t: &Tensor| t.isfinite().all();
        let all =
            tch::no_grad(|| tensors.iter().fold(Tensor::ones([], (Kind::Bool, vs.device())), |acc, (_, t)| acc.logical_and(&finite(t))));
        if all.int64_value(&[]) != 0 {
            return Ok(());
        }
        let name = tensors.iter().find(|(_, t)| tch::no_grad(|| finite(t)).int64_value(&[]) == 0).map_or("", |(n, _)| n.as_str());
        Err(self.error(format!("the update of step {done} (lr {}) made {name} NaN or infinite", lr_text(lr))))
    }

    fn error(&self, what: String) -> InputError {
        let kept = match checkpoint::list(&self.ckpt_dir).ok().and_then(|mut l| l.pop()) {
            Some((_, path)) => format!("the newest checkpoint, {}, is from before", path.display()),
            None => "no checkpoint was written before".to_string(),
        };
        InputError::new(format!(
            "training diverged: {what}. Stopped there, with nothing of the diverged steps saved ({kept}). Lower train.lr (or raise train.warmup_steps) and train into a new run folder (--out)"
        ))
    }
}

/// A learning rate in four significant digits at most: 0.05, 1.707, 1e10, 8.802e9.
fn lr_text(lr: f64) -> String {
    let text = format!("{lr:.3e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let short: f64 = format!("{mantissa}e{exponent}").parse().unwrap_or(lr);
    match (1e-3..1e4).contains(&short.abs()) {
        true => format!("{short}"),
        false => format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.')),
    }
}

fn loss_text(loss: f64) -> &'static str {
    if loss.is_nan() {
        "NaN"
    } else {
        "infinite"
    }
}
