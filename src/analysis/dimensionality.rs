//! Dimensionality (the paper's experiment 5): per layer of the final network, on the probe
//! set, how many principal directions hold 90%, 99% of its variance, and the similarity
//! between the layer cut to its top k principal directions and the network's logits
//! (taken whole, all r of their directions above rounding noise) as a function of k: the
//! sum of the min(k, r) canonical correlations over r, i.e. the SVCCA mean with a
//! correlation of 0 for the logit directions that k directions cannot reach, so it rises
//! with k to the whole layer's value. How many directions the output needs.
//!
//! Conv layers: channels as neurons, every position of every image a datapoint (as in
//! compression, the logits repeated at each position of their image).

use super::dynamics::FOLDER;
use super::runs::{as_rows, positions, Run};
use crate::device::DeviceChoice;
use crate::io::{write_atomic, write_json_atomic};
use crate::similarity::{self, Keep};
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerDimensions {
    pub layer: String,
    /// Neurons (channels of a conv layer).
    pub units: usize,
    /// Directions above rounding noise.
    pub rank: usize,
    /// Fewest principal directions holding 90% and 99% of the variance.
    pub k90: usize,
    pub k99: usize,
    /// (k, similarity to the logits with the layer cut to its top k directions; see above).
    pub to_logits: Vec<(usize, f64)>,
}

/// `svcca analyze RUN_DIR --dimensionality`: `analysis/dimensionality.csv`,
/// `analysis/dimensionality_k.csv` and `analysis/dimensionality.json`.
pub fn dimensionality(dir: &Path, device: Option<DeviceChoice>) -> anyhow::Result<Vec<LayerDimensions>> {
    let run = Run::open(dir, device)?;
    let layers = run.layers()?;
    let probe = run.probe();
    let mut taps = layers.clone();
    taps.push("logits".into());
    let acts = crate::activations::record::record(&run.net, &probe, &taps)?;
    let logits = acts.last().expect("tapped").shallow_clone();
    let bar = super::progress(layers.len() as u64, "dimensionality");
    let mut out = Vec::new();
    for (layer, a) in layers.iter().zip(&acts) {
        let rows = as_rows(a);
        let name = format!("layer {layer}");
        let (variances, rank) = similarity::principal_variances(&rows).map_err(|e| e.naming(&name, "logits"))?;
        let reference = logits.repeat_interleave_self_int(positions(a), 0, None);
        let (_, logit_rank) = similarity::principal_variances(&reference).map_err(|e| e.naming("logits", &name))?;
        let mut to_logits = Vec::new();
        for k in super::compression::grid(rank).into_iter().filter(|&k| k > 0) {
            let d = similarity::directions_each(&rows, &reference, Keep::TopK(k), Keep::All).map_err(|e| e.naming(&name, "logits"))?;
            // Over every direction of the logits (0 for those beyond k): rises with k.
            to_logits.push((k, d.correlations.iter().sum::<f64>() / logit_rank as f64));
        }
        out.push(LayerDimensions {
            layer: layer.clone(),
            units: variances.len(),
            rank,
            k90: similarity::directions_needed(&variances, 0.90),
            k99: similarity::directions_needed(&variances, 0.99),
            to_logits,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    let folder = dir.join(FOLDER);
    std::fs::create_dir_all(&folder)?;
    let mut table = String::from("layer,units,rank,k90,k99\n");
    let mut curve = String::from("layer,k,similarity_to_logits\n");
    for d in &out {
        table += &format!("{},{},{},{},{}\n", d.layer, d.units, d.rank, d.k90, d.k99);
        for (k, s) in &d.to_logits {
            curve += &format!("{},{k},{s:.6}\n", d.layer);
        }
    }
    write_atomic(&folder.join("dimensionality.csv"), table.as_bytes())?;
    write_atomic(&folder.join("dimensionality_k.csv"), curve.as_bytes())?;
    write_json_atomic(&folder.join("dimensionality.json"), &out)?;
    Ok(out)
}
