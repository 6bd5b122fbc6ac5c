//! Compression (the paper's experiment 3, Figure 2a): a layer's output replaced by its
//! projection onto its top-k SVCCA directions, and the test accuracy of the network run on
//! top of that, for a range of k; beside it two baselines that keep k neurons (random
//! ones, or the most active) and set the others to their mean.
//!
//! - Directions: SVCCA (keep `analysis.keep` of the variance on each side) between the
//!   layer of the final network and a reference on the same images: the network's own
//!   logits (default), the same layer of another run's final network, or the same layer
//!   of this run at another checkpoint. See
//!   [`crate::similarity::directions`] for the projection (least squares from the top k
//!   canonical variates; the mean added back).
//! - Fit on `analysis.probe_size` *training* images ([`Run::fit_set`]); accuracy on the
//!   whole test split (or `--eval-images N` of it, a seeded subset), batch norm in
//!   inference mode.
//! - Batched: one pass over the test images computes the full accuracy and every map of
//!   every layer's sweep (see `Evaluator::accuracies`); the baselines' maps are
//!   selections ([`Map::Keep`]), equal ones evaluated once.
//! - Conv layers: the directions are over channels, fitted with every position of every
//!   image as a datapoint, and the projection is applied to the channel vector at each
//!   position (the logits reference repeated at each position of its image).
//! - k = 0 leaves each layer at its mean output for every image (chance accuracy, for all
//!   three methods); k = every direction with `keep = 1` leaves the network unchanged.
//! - Random neurons: the mean accuracy over [`DRAWS`] seeded draws.
//! - Most active: by mean absolute output over the fit set (per channel for conv layers).
//!
//! `--distributedness` (Figure 2b, [`Fitted::distributed`]) and `--jointly` (Appendix 5, all
//! listed layers at once with k swept) add `distributedness.csv` and `jointly.csv` there.
//!
//! Results go to `analysis/compression-logits/` (`analysis/compression-run-NAME/`
//! against another run, `analysis/compression-step-N/` against a checkpoint): `compression.csv` (every point), `compression_summary.csv`,
//! `compression.json`. Resumable ([`super::results`]): each layer's sweep is written to
//! `layer-NAME.json` there when done; `settings.json` there refuses mixed settings.

mod projection;

use super::results::Results;
use super::runs::{as_rows, positions, Run};
use crate::data::rng::Rng;
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::io::{write_atomic, write_json_atomic};
use crate::model::Edit;
use crate::similarity::{self, Keep, KeepRule};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Draws of random neurons averaged per k.
pub const DRAWS: u64 = 3;
/// Evaluation images per block: the layers below a compressed layer run once per block.
const BATCH: i64 = 500;
/// The most a stacked batch (one block under several maps) may take: 256 MiB.
const CHUNK_BYTES: i64 = 1 << 28;
/// Bytes per number of a stacked row: float64 projection (8), float32 input and output of
/// a layer above (4 + 4).
const ROW_BYTES: i64 = 16;

/// One `--compression` item: a layer, and optionally the fraction of its units to keep
/// when all listed layers are compressed at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSpec {
    pub layer: String,
    pub fraction: Option<f64>,
}

impl std::str::FromStr for LayerSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (layer, fraction) = match s.split_once(':') {
            Some((l, f)) => {
                let v: f64 = f.parse().map_err(|_| format!("'{s}': the fraction '{f}' is not a number"))?;
                if !(v > 0.0 && v <= 1.0) {
                    return Err(format!("'{s}': the fraction must be in (0, 1], got {f}"));
                }
                (l, Some(v))
            }
            None => (s, None),
        };
        if layer.is_empty() {
            return Err(format!("'{s}': no layer name (expected LAYER or LAYER:FRACTION)"));
        }
        Ok(LayerSpec { layer: layer.to_string(), fraction })
    }
}

/// What the SVCCA directions are computed against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reference {
    /// The same network's logits.
    Logits,
    /// The same layer of another run's final network.
    Run(PathBuf),
    /// The same layer of this run at another checkpoint.
    Step(u64),
}

impl Reference {
    /// The name of this reference's results: `compression-logits`, or
    /// `compression-run-NAME` after the other run's folder name.
    pub fn tag(&self) -> String {
        match self {
            Reference::Logits => "compression-logits".into(),
            Reference::Run(p) => {
                let name = p.file_name().map_or("run".into(), |n| n.to_string_lossy().into_owned());
                let safe: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
                format!("compression-run-{safe}")
            }
            Reference::Step(step) => format!("compression-step-{step}"),
        }
    }
}

impl std::str::FromStr for Reference {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "logits" {
            return Ok(Reference::Logits);
        }
        if let Some(step) = s.strip_prefix("step:") {
            return step.parse().map(Reference::Step).map_err(|_| format!("'{s}': expected step:N with N a checkpoint's step"));
        }
        Ok(Reference::Run(PathBuf::from(s)))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub against: Reference,
    pub keep: f64,
    /// How `keep` counts the directions (absent in folders written before: variance).
    #[serde(default)]
    pub keep_rule: KeepRule,
    pub fit_size: usize,
    pub seed: u64,
    pub final_step: u64,
    /// `--eval-images N`: the accuracies are on a seeded subset of N test images (absent:
    /// the whole test split, as in folders written before the flag).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_images: Option<usize>,
}

/// What a compressed layer keeps: its top-k SVCCA directions, or (the baselines) its k
/// most active units or k random units, the others held at their mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    Svcca,
    Active,
    Random,
}

impl Method {
    pub const ALL: [Method; 3] = [Method::Svcca, Method::Active, Method::Random];

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Svcca => "svcca",
            Method::Active => "active",
            Method::Random => "random",
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Test accuracy with `k` units or directions of a layer kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub method: Method,
    pub k: usize,
    pub accuracy: f64,
}

/// One layer's sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerSweep {
    pub layer: String,
    /// Neurons (channels of a conv layer).
    pub units: usize,
    /// SVCCA directions kept by `keep` (the largest k for `svcca`).
    pub directions: usize,
    /// Canonical correlations with the reference, descending.
    pub correlations: Vec<f64>,
    pub points: Vec<Point>,
}

/// All listed layers compressed at once, each to its own fraction of its units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Joint {
    /// (layer, k) for each layer.
    pub layers: Vec<(String, usize)>,
    pub method: Method,
    pub accuracy: f64,
}

/// One `--distributedness` value: a number of neurons, or (with a decimal point) a
/// fraction of each layer's units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Neurons {
    Count(usize),
    Fraction(f64),
}

impl Neurons {
    /// The neurons kept of a layer of `units` units (a fraction rounded up, at least 1);
    /// a count above `units` is an error naming the layer.
    pub fn of(self, layer: &str, units: usize) -> Result<usize, InputError> {
        match self {
            Neurons::Count(m) if m > units => {
                Err(InputError::new(format!("--distributedness {m}: layer {layer} has only {units} units (neurons or channels)")))
            }
            Neurons::Count(m) => Ok(m),
            Neurons::Fraction(f) => Ok(((f * units as f64).ceil() as usize).clamp(1, units)),
        }
    }
}

impl std::str::FromStr for Neurons {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('.') {
            let v: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
            if !(v > 0.0 && v <= 1.0) {
                return Err(format!("'{s}': a fraction of the units must be in (0, 1]"));
            }
            Ok(Neurons::Fraction(v))
        } else {
            match s.parse::<usize>() {
                Ok(0) => Err(format!("'{s}': keep at least 1 neuron")),
                Ok(m) => Ok(Neurons::Count(m)),
                Err(_) => Err(format!("'{s}': expected a number of neurons (e.g. 32) or a fraction of the units (e.g. 0.25)")),
            }
        }
    }
}

/// The analyses `--compression` adds on request: Figure 2b and Appendix 5.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// `--distributedness M,...`: per layer, the top-k projection then only the m neurons
    /// most important to those k directions, for each m.
    pub distributedness: Vec<Neurons>,
    /// `--jointly`: every listed layer compressed at once to k directions (or neurons), k
    /// swept.
    pub jointly: bool,
}

/// Test accuracy with `k` SVCCA directions and then `m` neurons of a layer kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DistributedPoint {
    pub m: usize,
    pub k: usize,
    pub accuracy: f64,
}

/// One layer's distributedness sweep (Figure 2b): every k of the SVCCA sweep, for each m.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Distributed {
    pub layer: String,
    pub units: usize,
    pub directions: usize,
    /// The neurons kept, one curve each, ascending.
    pub neurons: Vec<usize>,
    pub points: Vec<DistributedPoint>,
}

/// Test accuracy with every layer of a joint sweep compressed at once, layer i to `ks[i]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointPoint {
    pub method: Method,
    /// The k swept; each layer keeps `min(k, its directions)` (SVCCA) or `min(k, its
    /// units)` (the baselines).
    pub k: usize,
    pub ks: Vec<usize>,
    pub accuracy: f64,
}

/// `--jointly` (Appendix 5): the listed layers compressed at once, k swept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JointSweep {
    pub layers: Vec<String>,
    pub units: Vec<usize>,
    pub directions: Vec<usize>,
    pub points: Vec<JointPoint>,
}

/// Everything `analysis/compression.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    pub settings: Settings,
    /// The unmodified network's test accuracy.
    pub full_accuracy: f64,
    pub layers: Vec<LayerSweep>,
    pub joint: Vec<Joint>,
    /// `--distributedness`, per layer (absent without it).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distributedness: Vec<Distributed>,
    /// `--jointly` (absent without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jointly: Option<JointSweep>,
}

impl Compression {
    /// Per layer and method, the smallest k measured whose accuracy is within `points`
    /// percentage points of the full network's (`None` if no k is).
    pub fn smallest_k(&self, sweep: &LayerSweep, method: Method, points: f64) -> Option<usize> {
        sweep.points.iter().filter(|p| p.method == method && p.accuracy >= self.full_accuracy - points / 100.0).map(|p| p.k).min()
    }
}

/// The k measured for a layer of `units` units: every k to 4, then about 1.5x apart, and
/// all of them.
pub fn grid(units: usize) -> Vec<usize> {
    let mut ks = vec![0, 1, 2, 3, 4];
    let mut k = 6;
    while k < units {
        ks.push(k);
        k = if k.is_power_of_two() { k + k / 2 } else { k / 3 * 4 };
    }
    ks.retain(|&k| k < units);
    ks.push(units);
    ks
}

/// How a compressed layer's output is changed; `mean` (the layer's, from the fit) is
/// given where it is applied.
pub enum Map {
    /// `x -> mean + (x - mean) P` (`P` m x m over the units, or over the channels at each
    /// position of a conv layer), computed in float64.
    Project(Tensor),
    /// The units marked true kept as they are, the others set to their mean: the
    /// baselines, and k = 0 of every method. Computed in the layer's own kind: the
    /// float64 projection by this 0/1 diagonal gives the same float32 numbers (a kept
    /// `(x - m) + m` rounds back to `x`; a dropped unit is `m`), in one pass over memory
    /// where the projection makes six; and equal selections can be evaluated once.
    Keep(Vec<bool>),
}

impl Map {
    /// The map keeping the units in `units` of `of` (the others at their mean).
    fn keeping(of: usize, units: &[i64]) -> Map {
        let mut keep = vec![false; of];
        for &i in units {
            keep[i as usize] = true;
        }
        Map::Keep(keep)
    }

    /// `h` (a layer's output) mapped.
    pub fn apply(&self, h: &Tensor, mean: &Tensor) -> Tensor {
        stack(h, 1, |_, out| self.apply_into(h, mean, out))
    }

    /// `h` mapped, written into `out` (its shape and layout: a block of a stacked batch).
    fn apply_into(&self, h: &Tensor, mean: &Tensor, out: &Tensor) {
        match self {
            Map::Project(p) => {
                // A conv layer's block on the CPU in one pass (see `projection`).
                if h.dim() == 4 && projection::project_channels(&h.contiguous(), mean, p, out) {
                    return;
                }
                // Else over rows of units (a conv layer's block transposed to positions x
                // channels); the float32 rows promoted to float64 by the subtraction, the
                // result rounded back (and a conv layer's transposed back) as it is copied
                // into `out`.
                let size = h.size();
                let units = size[1];
                let rows = if h.dim() == 4 { h.permute([0, 2, 3, 1]).reshape([-1, units]) } else { h.shallow_clone() };
                let mut y = (rows - mean).matmul(p);
                y += mean;
                let y = if h.dim() == 4 { y.view([size[0], size[2], size[3], units]).permute([0, 3, 1, 2]) } else { y };
                out.shallow_clone().copy_(&y);
            }
            Map::Keep(keep) => {
                // `dropped + x * kept`, `kept` 1 or 0 and `dropped` 0 or the mean: a kept
                // unit's `0 + x * 1` and a dropped one's `mean + x * 0` are exact (for a
                // finite x), in one vectorised pass (libtorch's select is not vectorised).
                let shape: Vec<i64> = if h.dim() == 4 { vec![1, keep.len() as i64, 1, 1] } else { vec![1, keep.len() as i64] };
                let kept: Vec<f64> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
                let kept = Tensor::from_slice(&kept).to_device(h.device()).view(shape.as_slice());
                // The mean times 0 or 1 (exact), on the mean's device: no copy to the host.
                let dropped = (mean.view(shape.as_slice()) * (&kept * -1.0 + 1.0)).to_kind(h.kind());
                let _ = dropped.addcmul_out(out, h, &kept.to_kind(h.kind()));
            }
        }
    }

    /// Every unit kept: the network unchanged.
    fn is_identity(&self) -> bool {
        matches!(self, Map::Keep(keep) if keep.iter().all(|&k| k))
    }

    /// The same map (two selections of the same units; a projection is only itself).
    fn same(&self, other: &Map) -> bool {
        matches!((self, other), (Map::Keep(a), Map::Keep(b)) if a == b)
    }
}

/// Of `items`, the first of each run of equal ones (`same`), and for each item the
/// position of its representative in that list: equal maps are evaluated once.
fn distinct<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> (Vec<usize>, Vec<usize>) {
    let mut firsts: Vec<usize> = Vec::new();
    let mut rep = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        match firsts.iter().position(|&f| same(&items[f], x)) {
            Some(r) => rep.push(r),
            None => {
                rep.push(firsts.len());
                firsts.push(i);
            }
        }
    }
    (firsts, rep)
}

/// `copies` blocks shaped like `block`, one after the other along the batch, block j
/// written by `fill(j, block j)`: the maps' outputs written in place, where
/// concatenating them would copy each once more.
fn stack(block: &Tensor, copies: usize, fill: impl Fn(usize, &Tensor)) -> Tensor {
    let size = block.size();
    let n = size[0] * copies as i64;
    let out = Tensor::empty([&[n], &size[1..]].concat().as_slice(), (block.kind(), block.device()));
    for j in 0..copies {
        fill(j, &out.narrow(0, j as i64 * size[0], size[0]));
    }
    out
}

/// The evaluation images: the test split, or `--eval-images N` of it drawn by a seeded
/// permutation (stream `eval` of `analysis.seed`), in test-split order.
fn eval_set(run: &Run, eval_images: Option<usize>) -> Result<(Tensor, Tensor), InputError> {
    const STREAM: u64 = 0x65_76_61_6c; // "eval"
    let test = &run.data.test;
    let n = test.len();
    match eval_images {
        None => Ok((test.images.shallow_clone(), test.labels.shallow_clone())),
        Some(0) => Err(InputError::new("--eval-images: at least one image")),
        Some(k) if k > n => Err(InputError::new(format!("--eval-images {k}: the test split has only {n} images"))),
        Some(k) => {
            let mut indices = Rng::stream(run.config.analysis.seed, &[STREAM]).permutation(n);
            indices.truncate(k);
            indices.sort_unstable();
            let idx = Tensor::from_slice(&indices).to_device(test.images.device());
            Ok((test.images.index_select(0, &idx), test.labels.index_select(0, &idx)))
        }
    }
}

/// Accuracy of `run`'s network on the evaluation images, with edits (layer, mean, P).
struct Evaluator<'a> {
    run: &'a Run,
    images: Tensor,
    labels: Tensor,
}

impl<'a> Evaluator<'a> {
    fn new(run: &'a Run, eval_images: Option<usize>) -> Result<Self, InputError> {
        let (images, labels) = eval_set(run, eval_images)?;
        Ok(Evaluator { run, images, labels })
    }

    /// (start, length) of each block of [`BATCH`] evaluation images.
    fn blocks(&self) -> impl Iterator<Item = (i64, i64)> {
        let n = self.labels.size()[0];
        (0..n).step_by(BATCH as usize).map(move |i| (i, BATCH.min(n - i)))
    }

    /// Evaluation images `start..start + len`, normalised.
    fn images(&self, start: i64, len: i64) -> Tensor {
        self.run.data.normalise(&self.images.narrow(0, start, len))
    }

    /// The accuracy with all `edits` applied at once (the full network when none).
    fn accuracy(&self, edits: &[(&str, &Tensor, &Map)]) -> anyhow::Result<f64> {
        let fns: Vec<_> = edits.iter().map(|&(l, m, map)| (l, move |h: &Tensor| map.apply(h, m))).collect();
        let refs: Vec<Edit> = fns.iter().map(|(l, f)| (*l, f as &dyn Fn(&Tensor) -> Tensor)).collect();
        tch::no_grad(|| {
            let mut correct = 0i64;
            for (i, len) in self.blocks() {
                let logits = self.run.net.forward_edited(&self.images(i, len), false, &refs)?;
                correct += logits.argmax(-1, false).eq_tensor(&self.labels.narrow(0, i, len)).sum(Kind::Int64).int64_value(&[]);
            }
            Ok(correct as f64 / self.labels.size()[0] as f64)
        })
    }

    /// The full network's accuracy, and for each (layer, mean, maps) the accuracy with
    /// that layer edited by each of its maps in turn (one number per map), batched: per
    /// block of images the network runs once, tapping every layer; then each layer's
    /// output projected by several maps is stacked into one batch for the layers above.
    /// Equal selections ([`Map::same`]: k = 0 of every method, for one) run once; one
    /// that keeps every unit is the full network.
    ///
    /// Memory: a stack of g maps on a block of b images costs about g * b * [`ROW_BYTES`]
    /// x (the largest per-image output of the layer and the layers above), which covers
    /// the float64 projection and the float32 input and output alive in a layer above; g
    /// is the largest that keeps this under [`CHUNK_BYTES`] (at least 1).
    ///
    /// Each map's projected block is the one the per-map evaluation computes (the same
    /// [`Map::apply_into`] on the same block), so the layers above see the same numbers; only
    /// the batch size they run at differs.
    fn accuracies(&self, sweeps: &[(&str, &Tensor, &[Map])]) -> anyhow::Result<(f64, Vec<Vec<f64>>)> {
        let net = &self.run.net;
        let names = net.layer_names();
        let layers: Vec<&str> = sweeps.iter().map(|s| s.0).collect();
        // Per layer: each map's representative among the equal ones, and the maps to run.
        let representative: Vec<Vec<usize>> = sweeps
            .iter()
            .map(|s| {
                let (firsts, rep) = distinct(s.2, Map::same);
                rep.into_iter().map(|r| firsts[r]).collect()
            })
            .collect();
        let todo: Vec<Vec<usize>> = sweeps
            .iter()
            .zip(&representative)
            .map(|(s, f)| (0..s.2.len()).filter(|&i| f[i] == i && !s.2[i].is_identity()).collect())
            .collect();
        let mut full = 0i64;
        let mut correct: Vec<Vec<i64>> = sweeps.iter().map(|s| vec![0; s.2.len()]).collect();
        tch::no_grad(|| -> anyhow::Result<()> {
            // Bytes per (image, map) row of each layer's stack.
            let (_, ones) = net.forward_taps(&self.images(0, 1), false, &layers)?;
            let rows: Vec<i64> = layers
                .iter()
                .zip(&ones)
                .map(|(layer, one)| {
                    let at = names.iter().position(|l| l == layer).expect("a checked layer");
                    let widest = net.forward_range(one, false, at + 1..names.len()).iter().map(Tensor::numel).max().unwrap_or(0);
                    ROW_BYTES * widest.max(one.numel()) as i64
                })
                .collect();
            let maps: usize = todo.iter().map(Vec::len).sum();
            let bar = super::progress((self.blocks().count() * maps) as u64, &format!("compressing {}", layers.join(", ")));
            for (i, len) in self.blocks() {
                let (logits, taps) = net.forward_taps(&self.images(i, len), false, &layers)?;
                let labels = self.labels.narrow(0, i, len).unsqueeze(0);
                full += logits.argmax(-1, false).eq_tensor(&labels.squeeze_dim(0)).sum(Kind::Int64).int64_value(&[]);
                for (s, ((&(layer, mean, maps), h), row)) in sweeps.iter().zip(&taps).zip(&rows).enumerate() {
                    let group = (CHUNK_BYTES / (row * len)).max(1) as usize;
                    for chunk in todo[s].chunks(group) {
                        let stacked = stack(h, chunk.len(), |j, out| maps[chunk[j]].apply_into(h, mean, out));
                        let logits = net.forward_after(&stacked, layer, false)?;
                        let hits = logits.argmax(-1, false).view([chunk.len() as i64, len]).eq_tensor(&labels).sum_dim_intlist(
                            1,
                            false,
                            Kind::Int64,
                        );
                        for (&m, v) in chunk.iter().zip(Vec::<i64>::try_from(&hits.to_device(tch::Device::Cpu))?) {
                            correct[s][m] += v;
                        }
                        bar.inc(chunk.len() as u64);
                    }
                }
            }
            bar.finish_and_clear();
            Ok(())
        })?;
        let n = self.labels.size()[0] as f64;
        let accuracies = sweeps
            .iter()
            .zip(&representative)
            .zip(&correct)
            .map(|((s, f), c)| (0..s.2.len()).map(|i| if s.2[i].is_identity() { full } else { c[f[i]] } as f64 / n).collect())
            .collect();
        Ok((full as f64 / n, accuracies))
    }

    /// The accuracy with every layer of `layers` (layer, mean) edited at once by its map in
    /// `maps[j]`, for each j, batched: per block the layers below the lowest one run once;
    /// from there the copies run stacked (up to [`CHUNK_BYTES`], as in [`Self::accuracies`]),
    /// each copy projected by its own map at each edited layer. Equal rows of selections
    /// run once.
    fn joint_accuracies(&self, layers: &[(&str, &Tensor)], all: &[Vec<Map>]) -> anyhow::Result<Vec<f64>> {
        let net = &self.run.net;
        let names = net.layer_names();
        let at: Vec<usize> = layers.iter().map(|(l, _)| names.iter().position(|n| n == l).expect("a checked layer")).collect();
        let (low, lowest) = at.iter().enumerate().min_by_key(|x| *x.1).map(|(i, &a)| (i, a)).expect("a layer");
        let (firsts, rep) = distinct(all, |a, b| a.iter().zip(b).all(|(x, y)| x.same(y)));
        let maps: Vec<&Vec<Map>> = firsts.iter().map(|&f| &all[f]).collect();
        let mut correct = vec![0i64; maps.len()];
        tch::no_grad(|| -> anyhow::Result<()> {
            let one = net.forward_taps(&self.images(0, 1), false, &[layers[low].0])?.1.remove(0);
            let widest = net.forward_range(&one, false, lowest + 1..names.len()).iter().map(Tensor::numel).max().unwrap_or(0);
            let row = ROW_BYTES * widest.max(one.numel()) as i64;
            for (i, len) in self.blocks() {
                let h = net.forward_taps(&self.images(i, len), false, &[layers[low].0])?.1.remove(0);
                let labels = self.labels.narrow(0, i, len).unsqueeze(0);
                let group = (CHUNK_BYTES / (row * len)).max(1) as usize;
                for (c, chunk) in maps.chunks(group).enumerate() {
                    // Each copy's block projected at layer `l` by its own map.
                    let edit = |h: &Tensor, l: usize| {
                        let parts = h.split(len, 0);
                        stack(&parts[0], chunk.len(), |j, out| chunk[j][l].apply_into(&parts[j], layers[l].1, out))
                    };
                    // The edits of a layer in the order given, as forward_edited applies them.
                    let edits_at = |x: Tensor, j: usize| (0..at.len()).filter(|&l| at[l] == j).fold(x, |x, l| edit(&x, l));
                    let mut x = edits_at(Tensor::cat(&(0..chunk.len()).map(|_| h.shallow_clone()).collect::<Vec<_>>(), 0), lowest);
                    for j in lowest + 1..names.len() {
                        x = edits_at(net.forward_span(&x, false, j..j + 1), j);
                    }
                    let hits =
                        x.argmax(-1, false).view([chunk.len() as i64, len]).eq_tensor(&labels).sum_dim_intlist(1, false, Kind::Int64);
                    for (j, v) in Vec::<i64>::try_from(&hits.to_device(tch::Device::Cpu))?.into_iter().enumerate() {
                        correct[c * group + j] += v;
                    }
                }
            }
            Ok(())
        })?;
        let n = self.labels.size()[0] as f64;
        Ok(rep.into_iter().map(|r| correct[r] as f64 / n).collect())
    }
}

/// The accuracy on the evaluation images (`eval_images` as for [`compression`]) with
/// `layer`'s output projected by each of `maps` in turn: `batched` as the sweeps do it, or
/// one map at a time (a whole pass over the images per map, as before the batching).
pub fn layer_accuracies(
    run: &Run,
    eval_images: Option<usize>,
    layer: &str,
    mean: &Tensor,
    maps: &[Map],
    batched: bool,
) -> anyhow::Result<Vec<f64>> {
    run.check_layers([layer], "--compression")?;
    let eval = Evaluator::new(run, eval_images)?;
    if batched {
        Ok(eval.accuracies(&[(layer, mean, maps)])?.1.remove(0))
    } else {
        maps.iter().map(|p| eval.accuracy(&[(layer, mean, p)])).collect()
    }
}

/// A layer's fitted maps: SVCCA directions, its activity ranking.
pub struct Fitted {
    pub layer: String,
    pub units: usize,
    pub directions: similarity::Directions,
    /// Units by mean absolute output, most active first.
    pub active: Vec<i64>,
}

impl Fitted {
    /// The map that keeps `k` SVCCA directions, the `k` most active units or `k` random
    /// units (draw `draw`). No direction is no unit: the layer at its mean.
    pub fn method(&self, method: Method, k: usize, draw: u64, seed: u64) -> Map {
        match method {
            Method::Svcca if k == 0 => Map::keeping(self.units, &[]),
            Method::Svcca => Map::Project(self.directions.projection(k.min(self.directions.len()))),
            Method::Active => Map::keeping(self.units, &self.active[..k]),
            Method::Random => {
                let mut perm = Rng::stream(seed, &[0x7261_6e64, draw]).permutation(self.units); // "rand"
                perm.truncate(k);
                Map::keeping(self.units, &perm)
            }
        }
    }
}

impl Fitted {
    /// The `m` units most important to the top `k` SVCCA directions
    /// ([`similarity::Directions::importance`]: the variance each carries in the projected
    /// output), most important first (ties by unit index).
    pub fn important(&self, k: usize, m: usize) -> Vec<i64> {
        let importance = self.directions.importance(k.min(self.directions.len()));
        let mut units: Vec<i64> = (0..self.units as i64).collect();
        units.sort_by(|&x, &y| importance[y as usize].total_cmp(&importance[x as usize]));
        units.truncate(m);
        units
    }

    /// Figure 2b's map: the projection onto the top `k` SVCCA directions, then only the
    /// [`Self::important`] `m` units kept, the others at their mean (`P_k` with the other
    /// units' columns zeroed). With `m` = every unit it is `P_k` itself.
    pub fn distributed(&self, k: usize, m: usize) -> Map {
        let map = self.method(Method::Svcca, k, 0, 0);
        // k = 0 is the layer at its mean, a selection of no unit, whatever m.
        let Map::Project(p) = &map else { return map };
        if m >= self.units {
            return map;
        }
        let mut mask = vec![0.0f64; self.units];
        for i in self.important(k, m) {
            mask[i as usize] = 1.0;
        }
        let mask = Tensor::from_slice(&mask).to_device(p.device()).unsqueeze(0);
        Map::Project(p * mask)
    }
}

/// Fits the directions and ranking of each layer on the fit set.
pub fn fit(run: &Run, layers: &[String], reference: Option<&Run>, keep: Keep) -> anyhow::Result<Vec<Fitted>> {
    let fit = run.fit_set();
    let mut taps = layers.to_vec();
    taps.push("logits".into());
    let acts = crate::activations::record::record(&run.net, &fit, &taps)?;
    let logits = acts.last().expect("tapped").shallow_clone();
    let others = match reference {
        Some(r) => Some(crate::activations::record::record(&r.net, &fit, layers)?),
        None => None,
    };
    let mut out = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let a = &acts[i];
        let b = match &others {
            Some(o) => {
                if o[i].size()[1..] != a.size()[1..] {
                    return Err(InputError::new(format!(
                        "--against: layer '{layer}' has shape {:?} there and {:?} here",
                        &o[i].size()[1..],
                        &a.size()[1..]
                    ))
                    .into());
                }
                as_rows(&o[i])
            }
            None => logits.repeat_interleave_self_int(positions(a), 0, None),
        };
        let directions = similarity::directions(&as_rows(a), &b, keep).map_err(|e| e.naming(&format!("layer {layer}"), "the reference"))?;
        let rows = as_rows(a).to_kind(Kind::Double);
        let activity: Vec<f64> = Vec::try_from(&rows.abs().mean_dim(0, false, Kind::Double).to_device(tch::Device::Cpu)).expect("floats");
        let mut active: Vec<i64> = (0..activity.len() as i64).collect();
        active.sort_by(|&x, &y| activity[y as usize].total_cmp(&activity[x as usize]));
        out.push(Fitted { layer: layer.clone(), units: activity.len(), directions, active });
    }
    Ok(out)
}

/// `svcca analyze RUN_DIR --compression ...`: the sweeps and the joint compression;
/// tables in `RUN_DIR/analysis/compression-*/`.
/// `eval_images`: accuracies on that many test images (a seeded subset; `None`: all).
pub fn compression(
    dir: &Path,
    specs: &[LayerSpec],
    against: &Reference,
    eval_images: Option<usize>,
    device: Option<DeviceChoice>,
) -> anyhow::Result<Compression> {
    compression_with(dir, specs, against, eval_images, device, &Extras::default())
}

/// [`compression`] with the analyses of `extras` (`--distributedness`, `--jointly`) too.
pub fn compression_with(
    dir: &Path,
    specs: &[LayerSpec],
    against: &Reference,
    eval_images: Option<usize>,
    device: Option<DeviceChoice>,
    extras: &Extras,
) -> anyhow::Result<Compression> {
    let run = Run::open(dir, device)?;
    let layers: Vec<String> = specs.iter().map(|s| s.layer.clone()).collect();
    run.check_layers(layers.iter().map(String::as_str), "--compression")?;
    let reference = open_reference(&run, against, &layers, device)?;
    let a = &run.config.analysis;
    // The whole split asked for by number is the whole split.
    let eval_images = eval_images.filter(|&n| n != run.data.test.len());
    let eval = Evaluator::new(&run, eval_images)?;
    // Each layer's neurons for --distributedness, checked before anything is written.
    let units = layer_units(&run, &layers)?;
    let neurons: Vec<Vec<usize>> = layers
        .iter()
        .zip(&units)
        .map(|(l, &u)| {
            let mut ms = extras.distributedness.iter().map(|n| n.of(l, u)).collect::<Result<Vec<_>, _>>()?;
            ms.sort_unstable();
            ms.dedup();
            Ok(ms)
        })
        .collect::<Result<_, InputError>>()?;
    let settings = Settings {
        against: against.clone(),
        keep: a.keep,
        keep_rule: a.keep_rule,
        fit_size: a.probe_size,
        seed: a.seed,
        final_step: run.final_step,
        eval_images,
    };
    let out = dir.join(super::dynamics::FOLDER).join(against.tag());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let results = Results::<String, LayerSweep>::new(&out, |layer| format!("layer-{layer}.json"));
    super::settings::check_or_write(&out.join("settings.json"), &settings)?;

    let start = std::time::Instant::now();
    let fitted = fit(&run, &layers, reference.as_ref(), a.keep_rule.keep(a.keep))?;
    tracing::debug!("directions fitted in {:.2}s", start.elapsed().as_secs_f64());
    // The layers not done yet, all in one pass over the evaluation images (with the full
    // network's accuracy); each written when the pass ends.
    let start = std::time::Instant::now();
    let todo: Vec<&Fitted> = results.missing(&layers).iter().map(|l| fitted.iter().find(|f| &f.layer == l).expect("fitted")).collect();
    let which: Vec<Vec<(Method, usize, u64)>> = todo.iter().map(|f| sweep_maps(f)).collect();
    let maps: Vec<Vec<Map>> =
        todo.iter().zip(&which).map(|(f, w)| w.iter().map(|&(m, k, draw)| f.method(m, k, draw, a.seed)).collect()).collect();
    let sweeps: Vec<(&str, &Tensor, &[Map])> =
        todo.iter().zip(&maps).map(|(f, m)| (f.layer.as_str(), &f.directions.mean, m.as_slice())).collect();
    crate::preempt::check(|| format!("while compressing layers of {}", dir.display()))?;
    let (full_accuracy, accuracy) = eval.accuracies(&sweeps)?;
    tracing::info!("full test accuracy {:.2}% (on {} images)", 100.0 * full_accuracy, eval.labels.size()[0]);
    for ((f, w), acc) in todo.iter().zip(&which).zip(&accuracy) {
        results.save(&f.layer, &sweep_points(f, w, acc))?;
    }
    // Kept as computed on the first call (the tables then hold the exact numbers).
    let sweeps = results.load_all(&layers)?;
    let joint = compress_together(&eval, specs, &fitted, a.seed)?;
    let distributedness = if extras.distributedness.is_empty() { Vec::new() } else { distributedness(&eval, &out, &fitted, &neurons)? };
    let jointly = if extras.jointly { Some(jointly(&eval, &out, &fitted, a.seed)?) } else { None };
    tracing::debug!("sweeps and joint compression in {:.2}s", start.elapsed().as_secs_f64());
    let c = Compression { settings, full_accuracy, layers: sweeps, joint, distributedness, jointly };
    write_tables(&out, &c)?;
    Ok(c)
}

/// The run whose layers the directions are computed against (`None`: the logits).
fn open_reference(run: &Run, against: &Reference, layers: &[String], device: Option<DeviceChoice>) -> anyhow::Result<Option<Run>> {
    Ok(match against {
        Reference::Logits => None,
        Reference::Run(other) => {
            let r = Run::open(other, device)?;
            r.check_layers(layers.iter().map(String::as_str), "--against")?;
            if r.data.shape != run.data.shape || r.config.data.dataset != run.config.data.dataset {
                return Err(
                    InputError::new(format!("--against {}: trained on other data than {}", other.display(), run.dir.display())).into()
                );
            }
            Some(r)
        }
        Reference::Step(step) => {
            let mut r = Run::open(&run.dir, device)?;
            r.load_step(*step)?;
            Some(r)
        }
    })
}

/// One layer's sweep: test accuracy with k of its SVCCA directions kept, against k most
/// active and k random units (the mean of [`DRAWS`] draws), over the grid of k. The maps
/// to evaluate, (method, k, draw) for each.
fn sweep_maps(f: &Fitted) -> Vec<(Method, usize, u64)> {
    listed(&grid(f.units), f.directions.len())
}

/// (method, k, draw) of a sweep over the k of `ks`: SVCCA at each k below `directions`
/// and at `directions`, then at each k the most active units and [`DRAWS`] random draws.
fn listed(ks: &[usize], directions: usize) -> Vec<(Method, usize, u64)> {
    let mut which: Vec<(Method, usize, u64)> =
        ks.iter().copied().filter(|&k| k < directions).chain([directions]).map(|k| (Method::Svcca, k, 0)).collect();
    for &k in ks {
        which.push((Method::Active, k, 0));
        which.extend((0..DRAWS).map(|draw| (Method::Random, k, draw)));
    }
    which
}

/// The accuracy of each (method, k) of `which` (maps listed as [`sweep_maps`] lists
/// them, a random k's [`DRAWS`] draws in a row), the draws averaged.
fn averaged(which: &[(Method, usize, u64)], accuracy: &[f64]) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    let mut i = 0;
    while i < which.len() {
        let (method, k, _) = which[i];
        let draws = if method == Method::Random { DRAWS as usize } else { 1 };
        // Summed in draw order from 0, as the per-map evaluation did.
        let mut sum = 0.0;
        for a in &accuracy[i..i + draws] {
            sum += a;
        }
        points.push(Point { method, k, accuracy: if draws == 1 { accuracy[i] } else { sum / DRAWS as f64 } });
        i += draws;
    }
    points
}

/// The sweep from the accuracy of each of [`sweep_maps`]: random draws averaged.
fn sweep_points(f: &Fitted, which: &[(Method, usize, u64)], accuracy: &[f64]) -> LayerSweep {
    let points = averaged(which, accuracy);
    LayerSweep {
        layer: f.layer.clone(),
        units: f.units,
        directions: f.directions.len(),
        correlations: f.directions.correlations.clone(),
        points,
    }
}

/// Every listed layer with a fraction (`LAYER:FRACTION`), compressed at once, by each
/// method.
fn compress_together(eval: &Evaluator, specs: &[LayerSpec], fitted: &[Fitted], seed: u64) -> anyhow::Result<Vec<Joint>> {
    let chosen: Vec<(&Fitted, usize)> = specs
        .iter()
        .zip(fitted)
        .filter_map(|(s, f)| s.fraction.map(|fr| (f, ((fr * f.units as f64).ceil() as usize).min(f.units))))
        .collect();
    let mut joint = Vec::new();
    if chosen.is_empty() {
        return Ok(joint);
    }
    // Every (method, draw): its maps, one per chosen layer; all evaluated in one pass.
    let runs: Vec<(Method, u64)> =
        Method::ALL.iter().flat_map(|&m| (0..if m == Method::Random { DRAWS } else { 1 }).map(move |d| (m, d))).collect();
    let maps: Vec<Vec<Map>> = runs.iter().map(|&(m, d)| chosen.iter().map(|(f, k)| f.method(m, *k, d, seed)).collect()).collect();
    let layers: Vec<(&str, &Tensor)> = chosen.iter().map(|(f, _)| (f.layer.as_str(), &f.directions.mean)).collect();
    let accuracy = eval.joint_accuracies(&layers, &maps)?;
    for method in Method::ALL {
        let mut sum = 0.0;
        let mut draws = 0;
        for (&(m, _), a) in runs.iter().zip(&accuracy) {
            if m == method {
                sum += a;
                draws += 1;
            }
        }
        let layers = chosen
            .iter()
            .map(|(f, k)| (f.layer.clone(), if method == Method::Svcca { (*k).min(f.directions.len()) } else { *k }))
            .collect();
        joint.push(Joint { layers, method, accuracy: sum / draws as f64 });
    }
    Ok(joint)
}

/// Each layer's units (channels of a conv layer), from one image.
fn layer_units(run: &Run, layers: &[String]) -> anyhow::Result<Vec<usize>> {
    let names: Vec<&str> = layers.iter().map(String::as_str).collect();
    let one = run.data.normalise(&run.data.test.images.narrow(0, 0, 1));
    let (_, taps) = tch::no_grad(|| run.net.forward_taps(&one, false, &names))?;
    Ok(taps.iter().map(|t| t.size()[1] as usize).collect())
}

/// The k of a layer's SVCCA sweep: the grid below its directions, and all of them.
fn svcca_ks(f: &Fitted) -> Vec<usize> {
    grid(f.units).into_iter().filter(|&k| k < f.directions.len()).chain([f.directions.len()]).collect()
}

/// Figure 2b for each layer (`neurons[i]`: the m of layer i): the accuracy with the layer
/// projected by [`Fitted::distributed`] for every k of its SVCCA sweep and every m, in
/// one pass for the layers not done yet; each saved as `distributedness-LAYER-mM_M.json`.
fn distributedness(eval: &Evaluator, out: &Path, fitted: &[Fitted], neurons: &[Vec<usize>]) -> anyhow::Result<Vec<Distributed>> {
    let results = Results::<String, Distributed>::new(out, |key| format!("distributedness-{key}.json"));
    let keys: Vec<String> = fitted
        .iter()
        .zip(neurons)
        .map(|(f, ms)| format!("{}-m{}", f.layer, ms.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("_")))
        .collect();
    let missing = results.missing(&keys);
    let todo: Vec<(usize, &Fitted)> = fitted.iter().enumerate().filter(|(i, _)| missing.contains(&keys[*i])).collect();
    let which: Vec<Vec<(usize, usize)>> =
        todo.iter().map(|&(i, f)| neurons[i].iter().flat_map(|&m| svcca_ks(f).into_iter().map(move |k| (m, k))).collect()).collect();
    let maps: Vec<Vec<Map>> = todo.iter().zip(&which).map(|((_, f), w)| w.iter().map(|&(m, k)| f.distributed(k, m)).collect()).collect();
    let sweeps: Vec<(&str, &Tensor, &[Map])> =
        todo.iter().zip(&maps).map(|((_, f), m)| (f.layer.as_str(), &f.directions.mean, m.as_slice())).collect();
    if !sweeps.is_empty() {
        crate::preempt::check(|| format!("before the distributedness sweeps of {}", out.display()))?;
        let (_, accuracy) = eval.accuracies(&sweeps)?;
        for (((i, f), w), acc) in todo.iter().zip(&which).zip(&accuracy) {
            let points = w.iter().zip(acc).map(|(&(m, k), &accuracy)| DistributedPoint { m, k, accuracy }).collect();
            let d = Distributed {
                layer: f.layer.clone(),
                units: f.units,
                directions: f.directions.len(),
                neurons: neurons[*i].clone(),
                points,
            };
            results.save(&keys[*i], &d)?;
        }
    }
    results.load_all(&keys)
}

/// Appendix 5: every layer of `fitted` compressed at once, each to `min(k, its
/// directions)` SVCCA directions (or `min(k, its units)` most active / random neurons),
/// for k over the grid of the widest layer; saved as `jointly-L1+L2.json`.
fn jointly(eval: &Evaluator, out: &Path, fitted: &[Fitted], seed: u64) -> anyhow::Result<JointSweep> {
    let results = Results::<String, JointSweep>::new(out, |key| format!("jointly-{key}.json"));
    let key = fitted.iter().map(|f| f.layer.as_str()).collect::<Vec<_>>().join("+");
    if results.is_done(&key) {
        return results.load(&key);
    }
    let widest = fitted.iter().map(|f| f.units).max().unwrap_or(0);
    let most = fitted.iter().map(|f| f.directions.len()).max().unwrap_or(0);
    let which = listed(&grid(widest), most);
    let ks = |method: Method, k: usize| -> Vec<usize> {
        fitted.iter().map(|f| k.min(if method == Method::Svcca { f.directions.len() } else { f.units })).collect()
    };
    let maps: Vec<Vec<Map>> = which
        .iter()
        .map(|&(method, k, draw)| fitted.iter().zip(ks(method, k)).map(|(f, kf)| f.method(method, kf, draw, seed)).collect())
        .collect();
    let layers: Vec<(&str, &Tensor)> = fitted.iter().map(|f| (f.layer.as_str(), &f.directions.mean)).collect();
    crate::preempt::check(|| format!("before the joint sweep of {}", out.display()))?;
    let accuracy = eval.joint_accuracies(&layers, &maps)?;
    let points = averaged(&which, &accuracy)
        .into_iter()
        .map(|p| JointPoint { method: p.method, k: p.k, ks: ks(p.method, p.k), accuracy: p.accuracy })
        .collect();
    let sweep = JointSweep {
        layers: fitted.iter().map(|f| f.layer.clone()).collect(),
        units: fitted.iter().map(|f| f.units).collect(),
        directions: fitted.iter().map(|f| f.directions.len()).collect(),
        points,
    };
    results.save(&key, &sweep)?;
    Ok(sweep)
}

/// `compression.csv` (every point), `compression_summary.csv` (per layer: units,
/// directions, smallest k within 1 point per method), `compression.json`.
fn write_tables(dir: &Path, c: &Compression) -> anyhow::Result<()> {
    let mut all = String::from("layer,method,k,accuracy\n");
    let mut summary = String::from("layer,units,directions,full_accuracy,smallest_k_svcca,smallest_k_active,smallest_k_random\n");
    let opt = |v: Option<usize>| v.map_or(String::new(), |v| v.to_string());
    for s in &c.layers {
        for p in &s.points {
            all += &format!("{},{},{},{:.6}\n", s.layer, p.method, p.k, p.accuracy);
        }
        summary += &format!(
            "{},{},{},{:.6},{},{},{}\n",
            s.layer,
            s.units,
            s.directions,
            c.full_accuracy,
            opt(c.smallest_k(s, Method::Svcca, 1.0)),
            opt(c.smallest_k(s, Method::Active, 1.0)),
            opt(c.smallest_k(s, Method::Random, 1.0))
        );
    }
    for j in &c.joint {
        let layers: Vec<String> = j.layers.iter().map(|(l, k)| format!("{l}:{k}")).collect();
        all += &format!("{},{},{},{:.6}\n", layers.join("+"), j.method, j.layers.iter().map(|x| x.1).sum::<usize>(), j.accuracy);
    }
    if !c.distributedness.is_empty() {
        let mut t = String::from("layer,m,k,accuracy\n");
        for d in &c.distributedness {
            for p in &d.points {
                t += &format!("{},{},{},{:.6}\n", d.layer, p.m, p.k, p.accuracy);
            }
        }
        write_atomic(&dir.join("distributedness.csv"), t.as_bytes())?;
    }
    if let Some(j) = &c.jointly {
        let mut t = String::from("layers,method,k,accuracy\n");
        for p in &j.points {
            let layers: Vec<String> = j.layers.iter().zip(&p.ks).map(|(l, k)| format!("{l}:{k}")).collect();
            t += &format!("{},{},{},{:.6}\n", layers.join("+"), p.method, p.k, p.accuracy);
        }
        write_atomic(&dir.join("jointly.csv"), t.as_bytes())?;
    }
    write_atomic(&dir.join("compression.csv"), all.as_bytes())?;
    write_atomic(&dir.join("compression_summary.csv"), summary.as_bytes())?;
    write_json_atomic(&dir.join("compression.json"), c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{distinct, grid, stack, LayerSpec, Map, Reference};
    use std::path::PathBuf;
    use tch::{Device, Kind, Tensor};

    /// `mean + (x - mean) P` the plain way: float64 throughout, NCHW out.
    fn reference(h: &Tensor, mean: &Tensor, p: &Tensor) -> Tensor {
        let conv = h.dim() == 4;
        let x = if conv { h.permute([0, 2, 3, 1]) } else { h.shallow_clone() };
        let y = (x.to_kind(Kind::Double) - mean).matmul(p) + mean;
        let y = if conv { y.permute([0, 3, 1, 2]).contiguous() } else { y };
        y.to_kind(h.kind())
    }

    /// A selection gives what the float64 projection by its 0/1 diagonal gives, a
    /// projection what the plain float64 formula gives (in the layer's own layout, a conv
    /// layer's NCHW), and stacked maps are the maps one by one.
    #[test]
    fn maps_give_the_float64_projections_numbers() {
        tch::manual_seed(5);
        let mean = Tensor::randn([5], (Kind::Double, Device::Cpu)).abs() * 3.0;
        let keep = vec![true, false, false, true, true];
        let diagonal = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0, 1.0]).diag(0);
        let p = Tensor::randn([5, 5], (Kind::Double, Device::Cpu));
        for shape in [vec![3i64, 5, 4, 6], vec![7, 5]] {
            let h = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)).relu();
            let selected = Map::Keep(keep.clone()).apply(&h, &mean);
            assert!(selected.equal(&reference(&h, &mean, &diagonal)), "{shape:?}: selection");
            let projected = Map::Project(p.shallow_clone()).apply(&h, &mean);
            // A conv layer's projection sums in its own order: within a float32 step.
            let want = reference(&h, &mean, &p);
            let step = want.abs().to_kind(Kind::Double) * f64::from(f32::EPSILON) + 1e-30;
            assert!(
                bool::try_from((&projected - &want).abs().to_kind(Kind::Double).le_tensor(&step).all()).unwrap(),
                "{shape:?}: projection"
            );
            assert!(projected.is_contiguous() && selected.is_contiguous(), "{shape:?}: the layer's own layout");
            let maps = [Map::Project(p.shallow_clone()), Map::Keep(keep.clone())];
            let stacked = stack(&h, 2, |j, out| maps[j].apply_into(&h, &mean, out));
            assert!(stacked.equal(&Tensor::cat(&[projected, selected], 0)), "{shape:?}: stacked");
        }
        assert!(Map::Keep(vec![true; 3]).is_identity() && !Map::Keep(keep.clone()).is_identity());
        assert!(!Map::Project(p.shallow_clone()).is_identity());
    }

    #[test]
    fn equal_selections_are_evaluated_once() {
        let maps = [
            Map::Keep(vec![false, false]),
            Map::Project(Tensor::zeros([2, 2], (Kind::Double, Device::Cpu))),
            Map::Keep(vec![true, false]),
            Map::Keep(vec![false, false]),
            Map::Project(Tensor::zeros([2, 2], (Kind::Double, Device::Cpu))),
        ];
        let (firsts, rep) = distinct(&maps, Map::same);
        assert_eq!(firsts, [0, 1, 2, 4]);
        assert_eq!(rep, [0, 1, 2, 0, 3]);
    }

    #[test]
    fn grids_and_flags() {
        assert_eq!(grid(16), [0, 1, 2, 3, 4, 6, 8, 12, 16]);
        assert_eq!(grid(3), [0, 1, 2, 3]);
        assert_eq!(grid(128), [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]);
        assert_eq!(grid(10), [0, 1, 2, 3, 4, 6, 8, 10]);
        assert_eq!("fc1:0.1".parse::<LayerSpec>().unwrap(), LayerSpec { layer: "fc1".into(), fraction: Some(0.1) });
        assert_eq!("c3".parse::<LayerSpec>().unwrap(), LayerSpec { layer: "c3".into(), fraction: None });
        assert!("fc1:0".parse::<LayerSpec>().is_err());
        assert!("fc1:x".parse::<LayerSpec>().is_err());
        assert!(":0.5".parse::<LayerSpec>().is_err());
        assert_eq!(Reference::Logits.tag(), "compression-logits");
        assert_eq!(Reference::Run(PathBuf::from("runs/seed 1/")).tag(), "compression-run-seed_1");
        assert_eq!("step:700".parse::<Reference>().unwrap(), Reference::Step(700));
        assert_eq!(Reference::Step(700).tag(), "compression-step-700");
        assert!("step:x".parse::<Reference>().is_err());
        assert_eq!("logits".parse::<Reference>().unwrap(), Reference::Logits);
    }
}
