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
//!   whole test split, batch norm in inference mode.
//! - Conv layers: the directions are over channels, fitted with every position of every
//!   image as a datapoint, and the projection is applied to the channel vector at each
//!   position (the logits reference repeated at each position of its image).
//! - k = 0 leaves each layer at its mean output for every image (chance accuracy, for all
//!   three methods); k = every direction with `keep = 1` leaves the network unchanged.
//! - Random neurons: the mean accuracy over [`DRAWS`] seeded draws.
//! - Most active: by mean absolute output over the fit set (per channel for conv layers).
//!
//! Results go to `analysis/compression-logits/` (`analysis/compression-run-NAME/`
//! against another run, `analysis/compression-step-N/` against a checkpoint): `compression.csv` (every point), `compression_summary.csv`,
//! `compression.json`. Resumable ([`super::results`]): each layer's sweep is written to
//! `layer-NAME.json` there when done; `settings.json` there refuses mixed settings.

use super::results::Results;
use super::runs::{as_rows, positions, Run};
use crate::data::rng::Rng;
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::io::{write_atomic, write_json_atomic};
use crate::model::Edit;
use crate::similarity::{self, Keep};
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Draws of random neurons averaged per k.
pub const DRAWS: u64 = 3;
/// Test images per forward pass.
const BATCH: i64 = 500;
/// A layer's test-split outputs are kept in memory up to this size (else recomputed).
const CACHE_BYTES: i64 = 1 << 28;

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
    pub fit_size: usize,
    pub seed: u64,
    pub final_step: u64,
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

/// Everything `analysis/compression.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compression {
    pub settings: Settings,
    /// The unmodified network's test accuracy.
    pub full_accuracy: f64,
    pub layers: Vec<LayerSweep>,
    pub joint: Vec<Joint>,
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

/// The affine map `x -> mean + (x - mean) P` applied to a layer's output (`P` m x m over
/// neurons, or over channels at each position of a conv layer), computed in float64.
pub fn project(h: &Tensor, mean: &Tensor, p: &Tensor) -> Tensor {
    let kind = h.kind();
    let conv = h.dim() == 4;
    let x = if conv { h.permute([0, 2, 3, 1]) } else { h.shallow_clone() };
    let y = (x.to_kind(Kind::Double) - mean).matmul(p) + mean;
    let y = if conv { y.permute([0, 3, 1, 2]).contiguous() } else { y };
    y.to_kind(kind)
}

/// A projection keeping only the neurons in `keep` (others at their mean).
fn neuron_mask(units: usize, keep: &[i64], device: tch::Device) -> Tensor {
    let mut d = vec![0.0f64; units];
    for &i in keep {
        d[i as usize] = 1.0;
    }
    Tensor::from_slice(&d).to_device(device).diag(0)
}

/// Test accuracy of `run`'s network with the given edits (layer, mean, P).
struct Evaluator<'a> {
    run: &'a Run,
    /// (layer, its outputs on the test split) when small enough to keep.
    cache: Option<(String, Vec<Tensor>)>,
}

impl<'a> Evaluator<'a> {
    fn new(run: &'a Run) -> Self {
        Evaluator { run, cache: None }
    }

    /// Keeps `layer`'s test outputs in memory if they fit in [`CACHE_BYTES`].
    fn cache(&mut self, layer: &str) -> anyhow::Result<()> {
        self.cache = None;
        let data = &self.run.data;
        let n = data.test.len() as i64;
        let one = self.run.net.forward_taps(&data.normalise(&data.test.images.narrow(0, 0, 1)), false, &[layer])?.1.remove(0);
        if one.numel() as i64 * 4 * n > CACHE_BYTES {
            return Ok(());
        }
        let mut parts = Vec::new();
        tch::no_grad(|| -> anyhow::Result<()> {
            let mut i = 0;
            while i < n {
                let len = BATCH.min(n - i);
                let x = data.normalise(&data.test.images.narrow(0, i, len));
                parts.push(self.run.net.forward_taps(&x, false, &[layer])?.1.remove(0));
                i += len;
            }
            Ok(())
        })?;
        self.cache = Some((layer.to_string(), parts));
        Ok(())
    }

    fn accuracy(&self, edits: &[(&str, &Tensor, &Tensor)]) -> anyhow::Result<f64> {
        let data = &self.run.data;
        let n = data.test.len() as i64;
        let fns: Vec<_> = edits.iter().map(|&(l, m, p)| (l, move |h: &Tensor| project(h, m, p))).collect();
        let refs: Vec<Edit> = fns.iter().map(|(l, f)| (*l, f as &dyn Fn(&Tensor) -> Tensor)).collect();
        let cached = match (&self.cache, edits) {
            (Some((layer, parts)), [(l, _, _)]) if layer == l => Some(parts),
            _ => None,
        };
        tch::no_grad(|| {
            let mut correct = 0i64;
            let mut i = 0;
            let mut b = 0;
            while i < n {
                let len = BATCH.min(n - i);
                let logits = match cached {
                    Some(parts) => self.run.net.forward_after(&(refs[0].1)(&parts[b]), refs[0].0, false)?,
                    None => self.run.net.forward_edited(&data.normalise(&data.test.images.narrow(0, i, len)), false, &refs)?,
                };
                correct += logits.argmax(-1, false).eq_tensor(&data.test.labels.narrow(0, i, len)).sum(Kind::Int64).int64_value(&[]);
                i += len;
                b += 1;
            }
            Ok(correct as f64 / n as f64)
        })
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
    /// The m x m map (see [`project`]) that keeps `k` SVCCA directions, the `k` most
    /// active units or `k` random units (draw `draw`).
    pub fn method(&self, method: Method, k: usize, draw: u64, seed: u64) -> Tensor {
        let device = self.directions.weights.device();
        match method {
            Method::Svcca => self.directions.projection(k.min(self.directions.len())),
            Method::Active => neuron_mask(self.units, &self.active[..k], device),
            Method::Random => {
                let mut perm = Rng::stream(seed, &[0x7261_6e64, draw]).permutation(self.units); // "rand"
                perm.truncate(k);
                neuron_mask(self.units, &perm, device)
            }
        }
    }
}

/// Fits the directions and ranking of each layer on the fit set.
pub fn fit(run: &Run, layers: &[String], reference: Option<&Run>, keep: f64) -> anyhow::Result<Vec<Fitted>> {
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
        let directions = similarity::directions(&as_rows(a), &b, Keep::Variance(keep))
            .map_err(|e| e.naming(&format!("layer {layer}"), "the reference"))?;
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
pub fn compression(dir: &Path, specs: &[LayerSpec], against: &Reference, device: Option<DeviceChoice>) -> anyhow::Result<Compression> {
    let run = Run::open(dir, device)?;
    let layers: Vec<String> = specs.iter().map(|s| s.layer.clone()).collect();
    run.check_layers(layers.iter().map(String::as_str), "--compression")?;
    let reference = open_reference(&run, against, &layers, device)?;
    let a = &run.config.analysis;
    let settings = Settings { against: against.clone(), keep: a.keep, fit_size: a.probe_size, seed: a.seed, final_step: run.final_step };
    let out = dir.join(super::dynamics::FOLDER).join(against.tag());
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let results = Results::<String, LayerSweep>::new(&out, |layer| format!("layer-{layer}.json"));
    super::settings::check_or_write(&out.join("settings.json"), &settings)?;

    let fitted = fit(&run, &layers, reference.as_ref(), a.keep)?;
    let mut eval = Evaluator::new(&run);
    let full_accuracy = eval.accuracy(&[])?;
    tracing::info!("full test accuracy {:.2}%", 100.0 * full_accuracy);
    let at = || format!("while compressing layers of {} (layers done so far are kept)", dir.display());
    // Kept as computed on the first call (the tables then hold the exact numbers).
    let (sweeps, _) = results.load_or_compute(&layers, at, |layer| {
        let f = fitted.iter().find(|f| &f.layer == layer).expect("fitted for every layer");
        sweep_layer(&mut eval, f, a.seed)
    })?;
    eval.cache = None;
    let joint = compress_together(&mut eval, specs, &fitted, a.seed)?;
    let c = Compression { settings, full_accuracy, layers: sweeps, joint };
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
/// active and k random units (the mean of [`DRAWS`] draws), over the grid of k.
fn sweep_layer(eval: &mut Evaluator, f: &Fitted, seed: u64) -> anyhow::Result<LayerSweep> {
    eval.cache(&f.layer)?;
    let ks = grid(f.units);
    let svcca_ks: Vec<usize> = ks.iter().copied().filter(|&k| k < f.directions.len()).chain([f.directions.len()]).collect();
    let total = svcca_ks.len() + ks.len() * (1 + DRAWS as usize);
    let bar = super::progress(total as u64, &format!("compressing {}", f.layer));
    let mean = &f.directions.mean;
    let mut points = Vec::new();
    for &k in &svcca_ks {
        let accuracy = eval.accuracy(&[(&f.layer, mean, &f.method(Method::Svcca, k, 0, seed))])?;
        points.push(Point { method: Method::Svcca, k, accuracy });
        bar.inc(1);
    }
    for &k in &ks {
        let accuracy = eval.accuracy(&[(&f.layer, mean, &f.method(Method::Active, k, 0, seed))])?;
        points.push(Point { method: Method::Active, k, accuracy });
        bar.inc(1);
        let mut sum = 0.0;
        for draw in 0..DRAWS {
            sum += eval.accuracy(&[(&f.layer, mean, &f.method(Method::Random, k, draw, seed))])?;
            bar.inc(1);
        }
        points.push(Point { method: Method::Random, k, accuracy: sum / DRAWS as f64 });
    }
    bar.finish_and_clear();
    Ok(LayerSweep {
        layer: f.layer.clone(),
        units: f.units,
        directions: f.directions.len(),
        correlations: f.directions.correlations.clone(),
        points,
    })
}

/// Every listed layer with a fraction (`LAYER:FRACTION`), compressed at once, by each
/// method.
fn compress_together(eval: &mut Evaluator, specs: &[LayerSpec], fitted: &[Fitted], seed: u64) -> anyhow::Result<Vec<Joint>> {
    let chosen: Vec<(&Fitted, usize)> = specs
        .iter()
        .zip(fitted)
        .filter_map(|(s, f)| s.fraction.map(|fr| (f, ((fr * f.units as f64).ceil() as usize).min(f.units))))
        .collect();
    let mut joint = Vec::new();
    if chosen.is_empty() {
        return Ok(joint);
    }
    for method in Method::ALL {
        let draws = if method == Method::Random { DRAWS } else { 1 };
        let mut sum = 0.0;
        for draw in 0..draws {
            let maps: Vec<Tensor> = chosen.iter().map(|(f, k)| f.method(method, *k, draw, seed)).collect();
            let edits: Vec<(&str, &Tensor, &Tensor)> =
                chosen.iter().zip(&maps).map(|((f, _), p)| (f.layer.as_str(), &f.directions.mean, p)).collect();
            sum += eval.accuracy(&edits)?;
        }
        let layers = chosen
            .iter()
            .map(|(f, k)| (f.layer.clone(), if method == Method::Svcca { (*k).min(f.directions.len()) } else { *k }))
            .collect();
        joint.push(Joint { layers, method, accuracy: sum / draws as f64 });
    }
    Ok(joint)
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
    write_atomic(&dir.join("compression.csv"), all.as_bytes())?;
    write_atomic(&dir.join("compression_summary.csv"), summary.as_bytes())?;
    write_json_atomic(&dir.join("compression.json"), c)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{grid, LayerSpec, Reference};
    use std::path::PathBuf;

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
