//! What a compression analysis gives (`compression.json`, and the per-layer and per-sweep
//! JSON files it resumes from), and its tables: `compression.csv`,
//! `compression_summary.csv`, `distributedness.csv`, `jointly.csv`.

use super::arguments::{CompressionMethod, Settings};
use crate::io::{write_atomic, write_json_atomic};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Test accuracy with `k` units or directions of a layer kept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub method: CompressionMethod,
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
    pub method: CompressionMethod,
    pub accuracy: f64,
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
    pub method: CompressionMethod,
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
    /// A layer's summary: for SVCCA directions, the most active units and random units
    /// (in that order: the columns of `compression_summary.csv`, the line `svcca analyze`
    /// prints), the smallest k measured whose accuracy is within one percentage point of
    /// the full network's (`None` if no k is).
    pub fn smallest_k_within_a_point(&self, sweep: &LayerSweep) -> [Option<usize>; 3] {
        self.within_a_point(sweep.points.iter().map(|p| (p.method, p.k, p.accuracy)))
    }

    /// [`Compression::smallest_k_within_a_point`] of the layers compressed at once
    /// (`--jointly`).
    pub fn jointly_smallest_k_within_a_point(&self, sweep: &JointSweep) -> [Option<usize>; 3] {
        self.within_a_point(sweep.points.iter().map(|p| (p.method, p.k, p.accuracy)))
    }

    fn within_a_point(&self, points: impl Iterator<Item = (CompressionMethod, usize, f64)> + Clone) -> [Option<usize>; 3] {
        [CompressionMethod::Svcca, CompressionMethod::Active, CompressionMethod::Random].map(|m| {
            points.clone().filter(|&(method, _, accuracy)| method == m && accuracy >= self.full_accuracy - 0.01).map(|p| p.1).min()
        })
    }
}

/// `compression.csv` (every point), `compression_summary.csv` (per layer: units,
/// directions, smallest k within 1 point per method), `compression.json`.
pub(super) fn write_tables(dir: &Path, c: &Compression) -> anyhow::Result<()> {
    let mut all = String::from("layer,method,k,accuracy\n");
    let mut summary = String::from("layer,units,directions,full_accuracy,smallest_k_svcca,smallest_k_active,smallest_k_random\n");
    let opt = |v: Option<usize>| v.map_or(String::new(), |v| v.to_string());
    for s in &c.layers {
        for p in &s.points {
            all += &format!("{},{},{},{:.6}\n", s.layer, p.method, p.k, p.accuracy);
        }
        let [svcca, active, random] = c.smallest_k_within_a_point(s).map(opt);
        summary += &format!("{},{},{},{:.6},{svcca},{active},{random}\n", s.layer, s.units, s.directions, c.full_accuracy);
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
