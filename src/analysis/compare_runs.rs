//! `svcca compare-runs RUN_A RUN_B [RUN_C ...]`: every layer of one run's final network
//! against every layer of another's, on the same probe images, for each pair of runs
//! (other seeds, other architectures: the matrix is rectangular when the layer lists
//! differ); across three or more runs with the same layers, the mean and the standard
//! deviation of each entry over the pairs. Each entry has its chance level beside it:
//! run A's layer with the probe's datapoints shuffled against run B's (what SVCCA gives
//! layers of those widths that share nothing).
//!
//! The probe and the comparison settings (`analysis.method`, `keep`, `conv`,
//! `conv_dense`, `probe_size`, `seed`) are the first run's; every run must hold the same test images at
//! those indices. Each pair's matrix is written to `OUT/pair-I-J.json` as soon as it is
//! done and skipped when rerun ([`super::results`]); `OUT/settings.json` refuses mixed settings.

use super::results::Results;
use super::runs::Run;
use super::settings::Similarity;
use crate::activations::probe::Probe;
use crate::activations::{similarity, LayerSet, Names};
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::io::{write_atomic, write_json_atomic};
use crate::run_dir::Lock;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tch::Tensor;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub runs: Vec<PathBuf>,
    #[serde(flatten)]
    pub similarity: Similarity,
}

/// Run `a` (rows) against run `b` (columns).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    pub a: usize,
    pub b: usize,
    pub layers_a: Vec<String>,
    pub layers_b: Vec<String>,
    pub matrix: Vec<Vec<Option<f64>>>,
    /// `chance[i][j]`: layer i of run `a` with the probe's datapoints shuffled against
    /// layer j of run `b`. Empty in a pair file written before it was computed (such a
    /// pair is compared again).
    #[serde(default)]
    pub chance: Vec<Vec<Option<f64>>>,
}

/// Mean and sample standard deviation of each entry over the pairs (runs with the same
/// layers only; the std is absent with a single pair).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub layers: Vec<String>,
    pub pairs: usize,
    pub mean: Vec<Vec<Option<f64>>>,
    pub std: Vec<Vec<Option<f64>>>,
    /// The mean chance level of each entry over the pairs.
    #[serde(default)]
    pub chance: Vec<Vec<Option<f64>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CompareRuns {
    pub settings: Settings,
    pub pairs: Vec<Pair>,
    pub summary: Option<Summary>,
}

/// Compares every pair of `runs`; tables in `out`.
pub fn compare_runs(runs: &[PathBuf], out: &Path, device: Option<DeviceChoice>) -> anyhow::Result<CompareRuns> {
    compare_runs_holding(runs, out, device).map(|(c, _lock)| c)
}

/// [`compare_runs`], returning the lock of `out` still held, for the plots drawn there
/// next. Every run is opened and checked against the first before `out` is touched.
pub(crate) fn compare_runs_holding(runs: &[PathBuf], out: &Path, device: Option<DeviceChoice>) -> anyhow::Result<(CompareRuns, Lock)> {
    if runs.len() < 2 {
        return Err(InputError::new("compare-runs needs two run folders or more").into());
    }
    let mut opened = Vec::new();
    for r in runs {
        crate::preempt::check(|| format!("while opening the runs to compare into {} (nothing written yet)", out.display()))?;
        opened.push(Run::open(r, device)?);
    }
    let first = &opened[0];
    // The probe's indices are drawn from the first run's test images: every other run
    // must hold at least as many (the images themselves are compared below).
    let held = first.data.test.len();
    if let Some((r, dir)) = opened.iter().zip(runs).find(|(r, _)| r.data.test.len() < held) {
        return Err(InputError::new(format!(
            "{} has {} test images, fewer than the {held} of {} (the first run, whose test images the probe is drawn from): compare runs on the same data, or put the run with the fewest test images first",
            dir.display(),
            r.data.test.len(),
            runs[0].display()
        ))
        .into());
    }
    let lock = crate::run_dir::lock(out, crate::run_dir::Access::Exclusive)?;
    let settings = Settings { runs: runs.to_vec(), similarity: Similarity::of(&first.config.analysis) };
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let results = Results::<(usize, usize), Pair>::new(out, |&(i, j)| format!("pair-{i}-{j}.json"));
    super::settings::check_or_write(&out.join("settings.json"), &settings)?;
    let probe = first.probe();
    let idx = Tensor::from_slice(&probe.indices);
    let raw = |r: &Run| r.data.test.images.index_select(0, &idx.to_device(r.data.test.images.device())).to_device(tch::Device::Cpu);
    let reference = raw(first);
    let keys: Vec<(usize, usize)> = (0..runs.len()).flat_map(|i| (i + 1..runs.len()).map(move |j| (i, j))).collect();
    let mut todo = results.missing(&keys);
    // Each run's layers as the pairs already done have them, if any.
    let done: Vec<(usize, usize)> = keys.iter().filter(|k| !todo.contains(k)).copied().collect();
    let done = results.load_all(&done)?;
    // Pairs compared before the chance level was: compared again, for it.
    todo.extend(done.iter().filter(|p| p.chance.is_empty()).map(|p| (p.a, p.b)));
    todo.sort_unstable();
    let before = |i: usize| {
        done.iter().find_map(|p| match (p.a == i, p.b == i) {
            (true, _) => Some(p.layers_a.as_slice()),
            (_, true) => Some(p.layers_b.as_slice()),
            _ => None,
        })
    };
    let layers: Vec<Vec<String>> = opened.iter().enumerate().map(|(i, r)| r.layers_since(before(i), out)).collect::<Result<_, _>>()?;
    if let Some(p) = done.iter().find(|p| p.layers_a != layers[p.a] || p.layers_b != layers[p.b]) {
        return Err(InputError::new(format!(
            "{}: pair {}-{} was compared over other layers ({} against {}) than the runs' analysis.layers now give; delete {} to redo it",
            out.display(),
            p.a,
            p.b,
            p.layers_a.join(" "),
            p.layers_b.join(" "),
            out.display()
        ))
        .into());
    }
    if !todo.is_empty() {
        let mut acts = Vec::new();
        for ((r, dir), names) in opened.iter().zip(runs).zip(&layers) {
            let images = raw(r);
            if images.size() != reference.size() || !bool::try_from(images.eq_tensor(&reference).all()).unwrap_or(false) {
                return Err(InputError::new(format!(
                    "{}: its test images differ from those of {} at the probe's indices: compare runs on the same data",
                    dir.display(),
                    runs[0].display()
                ))
                .into());
            }
            let probe = Probe { indices: probe.indices.clone(), images: r.data.normalise(&images.to_device(r.data.test.images.device())) };
            acts.push(crate::activations::record::record(&r.net, &probe, names)?);
        }
        // Each conv layer that falls back from flatten against a dense one, named once
        // however many runs hold it.
        let dense = acts.iter().flatten().any(|t| t.dim() == 2);
        let (mut names, mut tensors): (Vec<String>, Vec<Tensor>) = (Vec::new(), Vec::new());
        for (run_layers, run_acts) in layers.iter().zip(&acts) {
            for (name, t) in run_layers.iter().zip(run_acts) {
                if !names.iter().zip(&tensors).any(|(n, u)| n == name && u.size() == t.size()) {
                    names.push(name.clone());
                    tensors.push(t.shallow_clone());
                }
            }
        }
        crate::activations::conv_dense_fallbacks(&first.config, &names, &tensors, dense);
        // Each pair twice: as the runs are, and the chance level.
        let total: usize = todo.iter().map(|&(i, j)| 2 * layers[i].len() * layers[j].len()).sum();
        let bar = super::progress(total as u64, "comparing runs");
        tracing::info!("comparing {} pairs of runs", todo.len());
        let at = || format!("while comparing runs into {} (pairs done so far are kept)", out.display());
        // Each run's layers are summarised once for all the pairs they take part in.
        let device = acts[0][0].device();
        let mut sets: Vec<LayerSet> =
            acts.into_iter().map(|layers| LayerSet::new(layers.iter().map(|t| t.to_device(device)).collect(), &first.config)).collect();
        // The chance level: run a's layers on the probe's datapoints in the order of one
        // permutation (the same for every layer and pair), summarised for each pair it
        // is in and let go after, so that only the runs' own summaries are held.
        let n = probe.indices.len();
        let perm = crate::activations::chance_order(first.config.analysis.seed, n).to_device(device);
        results.compute(&todo, at, |&(i, j)| {
            let mut permuted = LayerSet::new((0..sets[i].len()).map(|x| sets[i].layer(x).index_select(0, &perm)).collect(), &first.config);
            let (low, high) = sets.split_at_mut(j);
            let (a, b) = (&mut low[i], &mut high[0]);
            let b_names: Vec<String> = layers[j].iter().map(|l| format!("{l} of {}", runs[j].display())).collect();
            let mut matrix_of = |a: &mut LayerSet, what: &str| -> Vec<Vec<Option<f64>>> {
                (0..layers[i].len())
                    .map(|x| {
                        let names = Names { a: format!("{} of {}{what}", layers[i][x], runs[i].display()), b: &b_names };
                        (0..layers[j].len())
                            .map(|y| {
                                bar.inc(1);
                                similarity(a, x, b, y, &names)
                            })
                            .collect()
                    })
                    .collect()
            };
            let matrix = matrix_of(a, "");
            let chance = matrix_of(&mut permuted, ", its datapoints shuffled");
            Ok(Pair { a: i, b: j, layers_a: layers[i].clone(), layers_b: layers[j].clone(), matrix, chance })
        })?;
        bar.finish_and_clear();
    }
    let pairs = results.load_all(&keys)?;
    let summary = layers.iter().all(|l| l == &layers[0]).then(|| summarise(&layers[0], &pairs));
    let c = CompareRuns { settings, pairs, summary };
    write_tables(out, &c)?;
    Ok((c, lock))
}

fn summarise(layers: &[String], pairs: &[Pair]) -> Summary {
    let n = layers.len();
    let mut mean = vec![vec![None; n]; n];
    let mut std = vec![vec![None; n]; n];
    let mut chance = vec![vec![None; n]; n];
    for i in 0..n {
        for j in 0..n {
            let c: Vec<f64> = pairs.iter().filter_map(|p| p.chance.get(i).and_then(|r| r[j])).collect();
            if c.len() == pairs.len() && !c.is_empty() {
                chance[i][j] = Some(c.iter().sum::<f64>() / c.len() as f64);
            }
            let v: Vec<f64> = pairs.iter().filter_map(|p| p.matrix[i][j]).collect();
            if v.len() != pairs.len() || v.is_empty() {
                continue;
            }
            let m = v.iter().sum::<f64>() / v.len() as f64;
            mean[i][j] = Some(m);
            if v.len() > 1 {
                std[i][j] = Some((v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt());
            }
        }
    }
    Summary { layers: layers.to_vec(), pairs: pairs.len(), mean, std, chance }
}

fn cell(v: Option<f64>) -> String {
    v.map_or(String::new(), |v| format!("{v:.6}"))
}

/// `pairs.csv` (every entry of every pair), `mean.csv` (when the runs share their
/// layers) and `compare_runs.json`.
fn write_tables(out: &Path, c: &CompareRuns) -> anyhow::Result<()> {
    let mut all = String::from("run_a,run_b,layer_a,layer_b,similarity,chance\n");
    for p in &c.pairs {
        let (ra, rb) = (c.settings.runs[p.a].display(), c.settings.runs[p.b].display());
        for (i, la) in p.layers_a.iter().enumerate() {
            for (j, lb) in p.layers_b.iter().enumerate() {
                all += &format!("{ra},{rb},{la},{lb},{},{}\n", cell(p.matrix[i][j]), cell(p.chance.get(i).and_then(|r| r[j])));
            }
        }
    }
    write_atomic(&out.join("pairs.csv"), all.as_bytes())?;
    if let Some(s) = &c.summary {
        let mut mean = String::from("layer_a,layer_b,mean,std,pairs,chance\n");
        for (i, la) in s.layers.iter().enumerate() {
            for (j, lb) in s.layers.iter().enumerate() {
                mean += &format!("{la},{lb},{},{},{},{}\n", cell(s.mean[i][j]), cell(s.std[i][j]), s.pairs, cell(s.chance[i][j]));
            }
        }
        write_atomic(&out.join("mean.csv"), mean.as_bytes())?;
    }
    write_json_atomic(&out.join("compare_runs.json"), c)?;
    Ok(())
}
