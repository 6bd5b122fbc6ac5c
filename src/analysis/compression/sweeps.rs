//! The sweeps: the k measured ([`grid`]), the maps each sweep evaluates and the points made
//! of their accuracies (random draws averaged): one layer at a time, the listed layers
//! with a fraction together, `--distributedness` (Figure 2b) and `--jointly` (Appendix 5).

use super::arguments::{CompressionMethod, LayerSpec};
use super::evaluation::Evaluator;
use super::fit::FittedLayer;
use super::maps::Map;
use super::tables::{Distributed, DistributedPoint, Joint, JointPoint, JointSweep, LayerSweep, Point};
use crate::analysis::results::Results;
use std::path::Path;
use tch::Tensor;

/// Draws of random neurons averaged per k.
pub const DRAWS: u64 = 3;

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

/// One layer's sweep: test accuracy with k of its SVCCA directions kept, against k most
/// active and k random units (the mean of [`DRAWS`] draws), over the grid of k. The maps
/// to evaluate, (method, k, draw) for each.
pub(super) fn sweep_maps(f: &FittedLayer) -> Vec<(CompressionMethod, usize, u64)> {
    listed(&grid(f.fitted.units()), f.fitted.directions.len())
}

/// (method, k, draw) of a sweep over the k of `ks`: SVCCA at each k below `directions`
/// and at `directions`, then at each k the most active units and [`DRAWS`] random draws.
pub(super) fn listed(ks: &[usize], directions: usize) -> Vec<(CompressionMethod, usize, u64)> {
    let mut which: Vec<(CompressionMethod, usize, u64)> =
        ks.iter().copied().filter(|&k| k < directions).chain([directions]).map(|k| (CompressionMethod::Svcca, k, 0)).collect();
    for &k in ks {
        which.push((CompressionMethod::Active, k, 0));
        which.extend((0..DRAWS).map(|draw| (CompressionMethod::Random, k, draw)));
    }
    which
}

/// The accuracy of each (method, k) of `which` (maps listed as [`sweep_maps`] lists
/// them, a random k's [`DRAWS`] draws in a row), the draws averaged.
pub(super) fn averaged(which: &[(CompressionMethod, usize, u64)], accuracy: &[f64]) -> Vec<Point> {
    let mut points: Vec<Point> = Vec::new();
    let mut i = 0;
    while i < which.len() {
        let (method, k, _) = which[i];
        let draws = if method == CompressionMethod::Random { DRAWS as usize } else { 1 };
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
pub(super) fn sweep_points(f: &FittedLayer, which: &[(CompressionMethod, usize, u64)], accuracy: &[f64]) -> LayerSweep {
    let points = averaged(which, accuracy);
    LayerSweep {
        layer: f.layer.clone(),
        units: f.fitted.units(),
        directions: f.fitted.directions.len(),
        correlations: f.fitted.directions.correlations.clone(),
        points,
    }
}

/// Every listed layer with a fraction (`LAYER:FRACTION`), compressed at once, by each
/// method.
pub(super) fn compress_together(eval: &Evaluator, specs: &[LayerSpec], fitted: &[FittedLayer], seed: u64) -> anyhow::Result<Vec<Joint>> {
    let chosen: Vec<(&FittedLayer, usize)> = specs
        .iter()
        .zip(fitted)
        .filter_map(|(s, f)| s.fraction.map(|fr| (f, ((fr * f.fitted.units() as f64).ceil() as usize).min(f.fitted.units()))))
        .collect();
    let mut joint = Vec::new();
    if chosen.is_empty() {
        return Ok(joint);
    }
    // Every (method, draw): its maps, one per chosen layer; all evaluated in one pass.
    let runs: Vec<(CompressionMethod, u64)> = CompressionMethod::ALL
        .iter()
        .flat_map(|&m| (0..if m == CompressionMethod::Random { DRAWS } else { 1 }).map(move |d| (m, d)))
        .collect();
    let maps: Vec<Vec<Map>> = runs.iter().map(|&(m, d)| chosen.iter().map(|(f, k)| f.method(m, *k, d, seed)).collect()).collect();
    let layers: Vec<(&str, &Tensor)> = chosen.iter().map(|(f, _)| (f.layer.as_str(), &f.fitted.directions.mean)).collect();
    let accuracy = eval.joint_accuracies(&layers, &maps)?;
    for method in CompressionMethod::ALL {
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
            .map(|(f, k)| (f.layer.clone(), if method == CompressionMethod::Svcca { (*k).min(f.fitted.directions.len()) } else { *k }))
            .collect();
        joint.push(Joint { layers, method, accuracy: sum / draws as f64 });
    }
    Ok(joint)
}

/// The k of a layer's SVCCA sweep: the grid below its directions, and all of them.
pub(super) fn svcca_ks(f: &FittedLayer) -> Vec<usize> {
    grid(f.fitted.units()).into_iter().filter(|&k| k < f.fitted.directions.len()).chain([f.fitted.directions.len()]).collect()
}

/// Figure 2b for each layer (`neurons[i]`: the m of layer i): the accuracy with the layer
/// projected by [`FittedLayer::distributed`] for every k of its SVCCA sweep and every m, in
/// one pass for the layers not done yet; each saved as `distributedness-LAYER-mM_M.json`.
pub(super) fn distributedness(
    eval: &Evaluator,
    out: &Path,
    fitted: &[FittedLayer],
    neurons: &[Vec<usize>],
) -> anyhow::Result<Vec<Distributed>> {
    let results = Results::<String, Distributed>::new(out, |key| format!("distributedness-{key}.json"));
    let keys: Vec<String> = fitted
        .iter()
        .zip(neurons)
        .map(|(f, ms)| format!("{}-m{}", f.layer, ms.iter().map(|m| m.to_string()).collect::<Vec<_>>().join("_")))
        .collect();
    let missing = results.missing(&keys);
    let todo: Vec<(usize, &FittedLayer)> = fitted.iter().enumerate().filter(|(i, _)| missing.contains(&keys[*i])).collect();
    let which: Vec<Vec<(usize, usize)>> =
        todo.iter().map(|&(i, f)| neurons[i].iter().flat_map(|&m| svcca_ks(f).into_iter().map(move |k| (m, k))).collect()).collect();
    let maps: Vec<Vec<Map>> = todo.iter().zip(&which).map(|((_, f), w)| w.iter().map(|&(m, k)| f.distributed(k, m)).collect()).collect();
    let sweeps: Vec<(&str, &Tensor, &[Map])> =
        todo.iter().zip(&maps).map(|((_, f), m)| (f.layer.as_str(), &f.fitted.directions.mean, m.as_slice())).collect();
    if !sweeps.is_empty() {
        crate::preempt::check(|| format!("before the distributedness sweeps of {}", out.display()))?;
        let (_, accuracy) = eval.accuracies(&sweeps)?;
        for (((i, f), w), acc) in todo.iter().zip(&which).zip(&accuracy) {
            let points = w.iter().zip(acc).map(|(&(m, k), &accuracy)| DistributedPoint { m, k, accuracy }).collect();
            let d = Distributed {
                layer: f.layer.clone(),
                units: f.fitted.units(),
                directions: f.fitted.directions.len(),
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
pub(super) fn jointly(eval: &Evaluator, out: &Path, fitted: &[FittedLayer], seed: u64) -> anyhow::Result<JointSweep> {
    let results = Results::<String, JointSweep>::new(out, |key| format!("jointly-{key}.json"));
    let key = fitted.iter().map(|f| f.layer.as_str()).collect::<Vec<_>>().join("+");
    if results.is_done(&key) {
        return results.load(&key);
    }
    let widest = fitted.iter().map(|f| f.fitted.units()).max().unwrap_or(0);
    let most = fitted.iter().map(|f| f.fitted.directions.len()).max().unwrap_or(0);
    let which = listed(&grid(widest), most);
    let ks = |method: CompressionMethod, k: usize| -> Vec<usize> {
        fitted
            .iter()
            .map(|f| k.min(if method == CompressionMethod::Svcca { f.fitted.directions.len() } else { f.fitted.units() }))
            .collect()
    };
    let maps: Vec<Vec<Map>> = which
        .iter()
        .map(|&(method, k, draw)| fitted.iter().zip(ks(method, k)).map(|(f, kf)| f.method(method, kf, draw, seed)).collect())
        .collect();
    let layers: Vec<(&str, &Tensor)> = fitted.iter().map(|f| (f.layer.as_str(), &f.fitted.directions.mean)).collect();
    crate::preempt::check(|| format!("before the joint sweep of {}", out.display()))?;
    let accuracy = eval.joint_accuracies(&layers, &maps)?;
    let points = averaged(&which, &accuracy)
        .into_iter()
        .map(|p| JointPoint { method: p.method, k: p.k, ks: ks(p.method, p.k), accuracy: p.accuracy })
        .collect();
    let sweep = JointSweep {
        layers: fitted.iter().map(|f| f.layer.clone()).collect(),
        units: fitted.iter().map(|f| f.fitted.units()).collect(),
        directions: fitted.iter().map(|f| f.fitted.directions.len()).collect(),
        points,
    };
    results.save(&key, &sweep)?;
    Ok(sweep)
}

#[cfg(test)]
mod tests {
    use super::grid;

    #[test]
    fn grids() {
        assert_eq!(grid(16), [0, 1, 2, 3, 4, 6, 8, 12, 16]);
        assert_eq!(grid(3), [0, 1, 2, 3]);
        assert_eq!(grid(128), [0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128]);
        assert_eq!(grid(10), [0, 1, 2, 3, 4, 6, 8, 10]);
    }
}
