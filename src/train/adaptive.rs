//! The adaptive freeze schedule (`freeze.schedule = "adaptive"`): a layer is frozen once
//! its similarity to its own state at the previous check, on a probe set, reaches
//! `freeze.threshold`; bottom-up, never above a layer that still trains.
//!
//! - **Checks** fall every `freeze.check_every` steps (after the update that reaches the
//!   step, before that step's evaluation and checkpoint), from step `check_every` up to
//!   but excluding fraction `freeze.end` of training. A decision at step s freezes the
//!   layer from training step s on, as [`super::freeze::Plan`] counts steps.
//! - **Groups.** The candidates are the layers with parameters, except the output layer,
//!   which always trains. A layer without parameters (a pooling layer) freezes together
//!   with the layer with parameters below it: its output is a fixed function of that
//!   layer's, so it has nothing of its own to settle, and it costs no backward work.
//! - **One group per check.** At each check only the lowest group still training (its
//!   layer with parameters) is compared. When it passes, it freezes, and the next group
//!   is judged at the next check, against its state at this one: it then has had one
//!   whole interval with its input fixed, rather than being judged on a change that
//!   happened while the layer below still moved. It also bounds a check's cost to one
//!   comparison, and the output of the frozen prefix on the probe is kept (it no longer
//!   changes), so a check runs only the two or three layers above it.
//! - **Before `freeze.start`** checks are made and traced (decision `early`) but nothing
//!   freezes: the trace shows how similarity rises, to choose a threshold.
//! - **Similarity**: the `[analysis]` method, `keep` and `conv` (default SVCCA keeping
//!   99% of the variance, DFT for conv layers): the number `svcca analyze` reports for
//!   the same pair, so the threshold reads on the scale users see in their dynamics
//!   plots. The DFT is kept rather than the cheaper `avgpool` because it is the paper's
//!   (exact, for translation-invariant data) SVCCA of a conv layer with all its positions,
//!   whereas averaging over positions discards most of what changes in a low layer. It is
//!   cheap enough: one FFT of the probe's activations and a C x C CCA per frequency, on
//!   the order of a training step or two for the Fashion-MNIST convnet (BENCHMARKS.md,
//!   "Freeze training: time saved against accuracy", the adaptive row; each check's time
//!   is logged at debug level). `conv = "flatten"` or a smaller `probe_size` make it
//!   cheaper still.
//! - **Probe**: `analysis.probe_size` images drawn (seed `analysis.seed`) from the
//!   *training* split without augmentation, in inference mode: a training decision must
//!   not look at test images, labels or not.
//!
//! Files in the run folder: `freeze.csv` (the decisions, as for every schedule) and
//! `freeze_checks.csv` (`step,fraction,layer,index,similarity,decision`: every check).
//!
//! Resume: decisions up to the resumed checkpoint are read back from `freeze.csv`, the
//! trace is cut to that step, and the previous check's activations are recomputed from
//! the checkpoint itself: `freeze.check_every` divides `checkpoints.every`, so every
//! checkpoint falls on a check. A checkpoint written on a signal (`crate::preempt`) may
//! fall between checks: the candidate's activations at the last check are then saved
//! beside it (`freeze_reference.safetensors`) and read back. A resumed run then freezes
//! exactly as an uninterrupted one.

use super::freeze::Plan;
use crate::activations::pair;
use crate::activations::probe::Probe;
use crate::activations::record;
use crate::config::{Config, FreezeSchedule};
use crate::data::Dataset;
use crate::io::write_atomic;
use crate::model::Network;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub(crate) const CHECKS_FILE: &str = "freeze_checks.csv";
/// The candidate's activations at the last check, saved with a checkpoint written on a
/// signal between checks (see [`Adaptive::save_reference`]).
pub(crate) const REFERENCE_FILE: &str = "freeze_reference.safetensors";
pub(crate) const CHECKS_HEADER: &str = "step,fraction,layer,index,similarity,decision";

/// Layers `from..upto` of the network freeze together; `head` is the one with parameters,
/// whose activations are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Group {
    pub head: usize,
    pub upto: usize,
}

/// The groups of a network whose layers have parameters or not (`has_params`), input to
/// output: one per layer with parameters below the output layer, each taking the layers
/// without parameters above it (and the first group those below it).
pub(crate) fn groups(has_params: &[bool]) -> Vec<Group> {
    let n = has_params.len();
    let mut out: Vec<Group> = Vec::new();
    for (i, &p) in has_params.iter().enumerate().take(n.saturating_sub(1)) {
        if p {
            out.push(Group { head: i, upto: i + 1 });
        } else if let Some(g) = out.last_mut() {
            g.upto = i + 1;
        }
    }
    out
}

/// What a check decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Similarity reached the threshold: the group freezes.
    Froze,
    /// Below the threshold: the group trains on.
    Below,
    /// Before `freeze.start`: recorded only.
    Early,
    /// The similarity is undefined (e.g. every unit constant): the group trains on.
    Undefined,
}

impl Decision {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Decision::Froze => "froze",
            Decision::Below => "below",
            Decision::Early => "early",
            Decision::Undefined => "undefined",
        }
    }

    /// The decision for `similarity` at a check where freezing is `allowed`.
    pub(crate) fn of(similarity: Option<f64>, threshold: f64, allowed: bool) -> Decision {
        match similarity {
            _ if !allowed => Decision::Early,
            None => Decision::Undefined,
            Some(s) if s >= threshold => Decision::Froze,
            Some(_) => Decision::Below,
        }
    }
}

/// The schedule's state during training.
pub(crate) struct Adaptive {
    config: Config,
    probe: Probe,
    names: Vec<String>,
    groups: Vec<Group>,
    every: u64,
    /// Freezing allowed from this step; checks made below `last`.
    first: u64,
    last: u64,
    total: u64,
    /// The activations of the group to be judged next, at the previous check.
    previous: Option<(usize, u64, Tensor)>,
    /// The output of the frozen prefix (its first `.0` layers) on the probe: it no longer
    /// changes, so a check runs only the layers above it. Not kept (always 0 layers) when
    /// frozen batch norm still updates its statistics (`freeze.freeze_bn_stats = false`):
    /// then the prefix's output in inference mode does change.
    prefix: (usize, Tensor),
    keep_prefix: bool,
    /// `freeze_checks.csv` rows so far (header excluded).
    rows: Vec<String>,
    path: PathBuf,
}

impl Adaptive {
    /// The schedule of `config` (resolved, adaptive) for `net` with `has_params`, in run
    /// folder `out`, training from `start` (0, or the resumed checkpoint's step); keeps
    /// the rows of `freeze_checks.csv` up to `start`. Then [`Adaptive::prime`].
    pub(crate) fn new(
        config: &Config,
        data: &Dataset,
        net: &Network,
        has_params: &[bool],
        out: &Path,
        start: u64,
    ) -> anyhow::Result<Adaptive> {
        assert_eq!(config.freeze.schedule, FreezeSchedule::Adaptive);
        let f = &config.freeze;
        let total = config.steps();
        let at = |x: f64| (x * total as f64).round() as u64;
        let groups = groups(has_params);
        if groups.is_empty() {
            tracing::warn!(
                "freeze.schedule = \"adaptive\": this network has no layer with parameters below the output layer; nothing will freeze"
            );
        }
        let every = f.check_every.expect("resolved config");
        let (first, last) = (at(f.start), at(f.end));
        // Checks that may freeze: multiples of `every` in [max(first, every), last).
        let chances = (last.saturating_sub(1) / every).saturating_sub(first.max(1).saturating_sub(1) / every);
        if (chances as usize) < groups.len() {
            tracing::warn!(
                "freeze.check_every {every}: {chances} checks may freeze a layer (steps {first}..{last} of {total}), and one layer freezes per check, so at most {chances} of the {} layers with parameters below the output can freeze",
                groups.len()
            );
        }
        let path = out.join(CHECKS_FILE);
        // The trace up to `start`; rows of a killed run after it are recomputed.
        let mut rows = Vec::new();
        if start > 0 {
            if let Ok(text) = std::fs::read_to_string(&path) {
                for line in text.lines().skip(1) {
                    let complete = line.split(',').count() == CHECKS_HEADER.split(',').count();
                    if complete && line.split(',').next().and_then(|s| s.parse::<u64>().ok()).is_some_and(|s| s <= start) {
                        rows.push(line.to_string());
                    }
                }
            }
        }
        let probe = Probe::of_training_set(data, &config.analysis);
        let a = Adaptive {
            config: config.clone(),
            prefix: (0, probe.images.shallow_clone()),
            keep_prefix: f.freeze_bn_stats,
            probe,
            names: net.layer_names().iter().map(|s| s.to_string()).collect(),
            groups,
            every,
            first,
            last,
            total,
            previous: None,
            rows,
            path,
        };
        a.write()?;
        Ok(a)
    }

    /// Whether a check falls at `step` (a step reached by training, >= 1).
    pub(crate) fn checks_at(&self, step: u64) -> bool {
        step.is_multiple_of(self.every) && step < self.last
    }

    /// The group judged next under `plan`: the lowest one not yet frozen.
    fn candidate(&self, plan: &Plan) -> Option<usize> {
        let frozen = plan.layers.iter().take_while(|l| l.1.is_some()).count();
        self.groups.iter().position(|g| g.upto > frozen)
    }

    /// The outputs of layers `from..=to` on the probe, in inference mode, starting from
    /// the kept output of the frozen prefix (layers `0..from`).
    fn run(&self, net: &Network, from: usize, to: usize) -> Vec<Tensor> {
        let (k, input) = &self.prefix;
        assert_eq!(*k, from, "the kept output is the frozen prefix's");
        tch::no_grad(|| net.forward_range(input, false, from..to + 1))
    }

    /// Starts the schedule at `step` (0, or the resumed checkpoint, with the network's
    /// weights at that step and `plan` holding the decisions up to it, see
    /// [`Plan::restore`]): runs the frozen prefix on the probe once, and records the
    /// candidate, which the next check compares with.
    pub(crate) fn prime(&mut self, net: &Network, plan: &Plan, out: &Path, step: u64) -> anyhow::Result<()> {
        if step >= self.last {
            return Ok(());
        }
        let Some(g) = self.candidate(plan) else {
            return Ok(());
        };
        let frozen = if g > 0 && self.keep_prefix { self.groups[g - 1].upto } else { 0 };
        if frozen > 0 {
            let out = tch::no_grad(|| net.forward_span(&self.probe.images, false, 0..frozen));
            self.prefix = (frozen, out);
        }
        if !step.is_multiple_of(self.every) {
            // A checkpoint written on a signal, between checks: the candidate has moved
            // since the last check, so its reference comes from the file written with it.
            let (g, at, acts) = load_reference(out, step, g)?;
            self.previous = Some((g, at, acts.to_device(self.probe.images.device())));
            return Ok(());
        }
        let head = self.groups[g].head;
        let acts = self.run(net, frozen, head).pop().expect("a layer");
        if step == 0 {
            record::warn_if_small(self.probe.len(), &[self.names[head].clone()], std::slice::from_ref(&acts), record::RAISE_PROBE_SIZE);
        }
        self.previous = Some((g, step, acts));
        Ok(())
    }

    /// The check at `step`: compares the candidate with the previous check and, if it
    /// passes, freezes its group in `plan` from `step` on (and rewrites `freeze.csv` in
    /// `out`). Returns the decision, if there was a candidate.
    pub(crate) fn check(&mut self, net: &Network, plan: &mut Plan, out: &Path, step: u64) -> anyhow::Result<Option<Decision>> {
        let Some(g) = self.candidate(plan) else {
            return Ok(None);
        };
        let began = std::time::Instant::now();
        let group = self.groups[g];
        let next = self.groups.get(g + 1).copied();
        // Only the layers above the frozen prefix run, up to the candidate and the group
        // above it: the latter is the next candidate's reference if this one freezes.
        let from = self.prefix.0;
        let outs = self.run(net, from, next.map_or(group.head, |n| n.head));
        let now = outs[group.head - from].shallow_clone();
        let (pg, pstep, before) = self.previous.take().expect("primed at the start and after every check");
        debug_assert_eq!(pg, g, "the reference is the candidate's own");
        let name = &self.names[group.head];
        let similarity = pair(&before, &now, &self.config, [&format!("{name} at step {step}"), &format!("{name} at step {pstep}")]);
        let decision = Decision::of(similarity, self.config.freeze.threshold, step >= self.first);
        let sim_text = similarity.map_or("undefined".to_string(), |s| format!("{s:.4}"));
        let seconds = began.elapsed().as_secs_f64();
        if decision == Decision::Froze {
            let frozen: Vec<&str> = (0..group.upto).filter(|&i| plan.layers[i].1.is_none()).map(|i| self.names[i].as_str()).collect();
            tracing::info!(
                "step {step}: {name} similarity {sim_text} to step {pstep} >= freeze.threshold {}: freezing {} (check {seconds:.2}s)",
                self.config.freeze.threshold,
                frozen.join(" ")
            );
            for l in &mut plan.layers[..group.upto] {
                l.1.get_or_insert(step);
            }
            plan.write(out, step)?;
            if let Some(n) = next {
                if self.keep_prefix {
                    self.prefix = (group.upto, outs[group.upto - 1 - from].shallow_clone());
                }
                self.previous = Some((g + 1, step, outs[n.head - from].shallow_clone()));
            }
        } else {
            tracing::debug!("step {step}: {name} similarity {sim_text} to step {pstep}: {} (check {seconds:.2}s)", decision.as_str());
            self.previous = Some((g, step, now));
        }
        self.rows.push(format!(
            "{step},{:.4},{name},{},{},{}",
            step as f64 / self.total.max(1) as f64,
            group.head,
            similarity.map_or(String::new(), |s| s.to_string()),
            decision.as_str()
        ));
        self.write()?;
        Ok(Some(decision))
    }

    /// Before a checkpoint written on a signal at `step` (between checks): saves the
    /// candidate's activations at the previous check to [`REFERENCE_FILE`], which a run
    /// resumed from that checkpoint reads back ([`Adaptive::prime`]).
    pub(crate) fn save_reference(&self, out: &Path, step: u64) -> anyhow::Result<()> {
        let Some((g, at, acts)) = &self.previous else {
            return Ok(());
        };
        let tensors = [
            ("reference".to_string(), acts.to_device(tch::Device::Cpu).contiguous()),
            ("meta.group".to_string(), Tensor::from_slice(&[*g as i64])),
            ("meta.check_step".to_string(), Tensor::from_slice(&[*at as i64])),
            ("meta.saved_at".to_string(), Tensor::from_slice(&[step as i64])),
        ];
        let path = out.join(REFERENCE_FILE);
        crate::io::write_with(&path, crate::io::Replace::Always, |tmp| Ok(Tensor::write_safetensors(&tensors, tmp)?))
    }

    fn write(&self) -> anyhow::Result<()> {
        let mut text = format!("{CHECKS_HEADER}\n");
        for r in &self.rows {
            text.push_str(r);
            text.push('\n');
        }
        write_atomic(&self.path, text.as_bytes())
    }
}

/// The reference saved by [`Adaptive::save_reference`] for a resume at `step`: group
/// `group`'s activations at the check before `step`. Refused when the file is missing or
/// was written for another step or group (the run folder is then not one this schedule
/// left behind).
fn load_reference(out: &Path, step: u64, group: usize) -> anyhow::Result<(usize, u64, Tensor)> {
    let path = out.join(REFERENCE_FILE);
    let refuse = |why: String| {
        crate::error::InputError::new(format!(
            "{}: {why}; resuming the adaptive freeze schedule at step {step}, between checks, needs the reference saved with that checkpoint (delete the checkpoint to resume from the one before)",
            path.display()
        ))
    };
    let saved: std::collections::HashMap<String, Tensor> =
        Tensor::read_safetensors(&path).map_err(|e| refuse(format!("cannot read it ({e})")))?.into_iter().collect();
    let int = |k: &str| saved.get(k).map(|t| t.int64_value(&[0]));
    let (Some(g), Some(at), Some(saved_at), Some(acts)) =
        (int("meta.group"), int("meta.check_step"), int("meta.saved_at"), saved.get("reference"))
    else {
        return Err(refuse("incomplete".into()).into());
    };
    if saved_at as u64 != step || g as usize != group {
        return Err(refuse(format!("written at step {saved_at} for group {g}, not step {step} for group {group}")).into());
    }
    Ok((group, at as u64, acts.shallow_clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameterless_layers_join_the_group_below_and_the_output_trains() {
        // c1 c2 bn1 p1 c3 p2 fc logits
        let g = groups(&[true, true, true, false, true, false, true, true]);
        let pairs: Vec<(usize, usize)> = g.iter().map(|g| (g.head, g.upto)).collect();
        assert_eq!(pairs, [(0, 1), (1, 2), (2, 4), (4, 6), (6, 7)]);
        // A parameterless first layer freezes with the first group (prefix 0..upto).
        let g = groups(&[false, true, false, true]);
        assert_eq!(g, [Group { head: 1, upto: 3 }]);
        // Only the output layer has parameters: nothing to freeze.
        assert!(groups(&[false, true]).is_empty());
    }

    #[test]
    fn decisions() {
        assert_eq!(Decision::of(Some(0.99), 0.98, true), Decision::Froze);
        assert_eq!(Decision::of(Some(0.98), 0.98, true), Decision::Froze);
        assert_eq!(Decision::of(Some(0.97), 0.98, true), Decision::Below);
        assert_eq!(Decision::of(Some(0.99), 0.98, false), Decision::Early);
        assert_eq!(Decision::of(None, 0.0, true), Decision::Undefined);
    }
}
