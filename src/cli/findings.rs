//! `svcca analyze RUN_DIR --compression ... | --classes ... | --dimensionality`: the
//! paper's other findings on a trained run; tables in RUN_DIR/analysis/, plots in
//! RUN_DIR/plots/.

use crate::analysis::compression::{LayerSpec, Reference};
use crate::analysis::{classes, compression, dimensionality};
use crate::device::DeviceChoice;
use crate::report::findings as plots;
use crate::similarity::ConvDense;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
pub(super) struct FindingsArgs {
    /// Compression: test accuracy with each layer projected onto its top-k SVCCA
    /// directions, vs k random / k most active neurons; LAYER:FRACTION also compresses all
    /// such layers at once, each to that fraction of its units (e.g. fc1:0.1,fc2:0.2).
    #[arg(long, value_delimiter = ',', value_name = "LAYER[:FRACTION]")]
    compression: Vec<LayerSpec>,
    /// What --compression's SVCCA directions are computed against: `logits` (the
    /// network's own), `step:N` (the same layer at checkpoint N) or another run folder
    /// (the same layer of its final network).
    #[arg(long, default_value = "logits", value_name = "logits|step:N|RUN_DIR", requires = "compression")]
    against: Reference,
    /// --compression's accuracies on N test images (a seeded subset, by analysis.seed)
    /// instead of all: the evaluation takes about N/test-size of its time, each accuracy
    /// then a sample of N images (standard error up to 0.5/sqrt(N)). Recorded in the
    /// settings: results with another N are refused, not mixed.
    #[arg(long, value_name = "N", requires = "compression")]
    eval_images: Option<usize>,
    /// Distributedness (Figure 2b): each --compression layer projected onto its top-k
    /// SVCCA directions, then only its M neurons most important to them kept (the others
    /// at their mean), for every k of the SVCCA sweep; one curve per M, a number of neurons
    /// (e.g. 8,32,64) or, with a decimal point, a fraction of each layer's units (0.25).
    #[arg(long, value_delimiter = ',', value_name = "M,M,...", requires = "compression")]
    distributedness: Vec<crate::analysis::compression::Neurons>,
    /// Appendix 5: all --compression layers compressed at once, each to its top-k SVCCA
    /// directions (at most its own), k swept; vs k most active / k random neurons of each.
    /// With --against RUN_DIR the directions are fitted against that run's same layers.
    #[arg(long, requires = "compression")]
    jointly: bool,
    /// Class sensitivity: `all` or class indices (e.g. 0,3,8): each class's final logit
    /// against every layer at every checkpoint.
    #[arg(long, value_name = "all|C,C,...", value_parser = class_list)]
    classes: Option<String>,
    /// How --classes compares a conv layer with a logit: `avgpool`, its per-image channel
    /// means (what the paper's DFT method reduces to against a logit, which has no
    /// positions), or `flatten`, its C x H x W values as neurons where the probe has 5
    /// datapoints per such neuron (else channel means, with a warning). Recorded in the
    /// settings: a folder made with the other is refused, not mixed.
    #[arg(long, value_parser = super::choice::<ConvDense>(), default_value_t = ConvDense::Avgpool, value_name = "avgpool|flatten", requires = "classes")]
    classes_conv: ConvDense,
    /// Dimensionality: directions for 90% and 99% of each layer's variance, and its
    /// similarity to the logits against the directions kept.
    #[arg(long)]
    dimensionality: bool,
}

/// `--classes` as given, a class named twice refused up front
/// ([`classes::listed_once`]); the indices are checked against the run's classes when
/// it is read.
fn class_list(text: &str) -> Result<String, String> {
    classes::listed_once(text).map(|()| text.to_string()).map_err(|e| e.message)
}

impl FindingsArgs {
    /// Whether any of these analyses was asked for (else `analyze` does learning dynamics).
    pub(super) fn any(&self) -> bool {
        !self.compression.is_empty() || self.classes.is_some() || self.dimensionality
    }

    pub(super) fn run(&self, run: &Path, device: Option<DeviceChoice>, plot: bool) -> anyhow::Result<()> {
        let plot_dir = run.join(crate::report::FOLDER);
        let mut written: Vec<PathBuf> = Vec::new();
        if !self.compression.is_empty() {
            let extras = compression::Extras { distributedness: self.distributedness.clone(), jointly: self.jointly };
            let c = compression::compression_with(run, &self.compression, &self.against, self.eval_images, device, &extras)?;
            let on = c.settings.eval_images.map_or(String::new(), |n| format!(" (on {n} test images)"));
            println!("compression: full test accuracy {:.2}%{on}; smallest k within 1 point of it:", 100.0 * c.full_accuracy);
            let show = |v: Option<usize>| v.map_or("none".to_string(), |v| v.to_string());
            for s in &c.layers {
                let [svcca, active, random] = c.smallest_k_within_a_point(s).map(show);
                println!(
                    "  {} ({} units, {} SVCCA directions): svcca {svcca}, most active {active}, random {random}",
                    s.layer, s.units, s.directions
                );
            }
            for j in &c.joint {
                let layers: Vec<String> = j.layers.iter().map(|(l, k)| format!("{l} k={k}")).collect();
                println!("  all at once ({}), {}: {:.2}%", layers.join(", "), j.method, 100.0 * j.accuracy);
            }
            for d in &c.distributedness {
                // Per m, the smallest k within 1 point of the full network.
                let within: Vec<String> = d
                    .neurons
                    .iter()
                    .map(|&m| {
                        let k = d.points.iter().filter(|p| p.m == m && p.accuracy >= c.full_accuracy - 0.01).map(|p| p.k).min();
                        format!("m={m}: {}", show(k))
                    })
                    .collect();
                println!(
                    "  distributedness of {} (smallest k within 1 point, top-k directions then m neurons): {}",
                    d.layer,
                    within.join(", ")
                );
            }
            if let Some(j) = &c.jointly {
                let [svcca, active, random] = c.jointly_smallest_k_within_a_point(j).map(show);
                println!(
                    "  {} at once, smallest k within 1 point: svcca {svcca}, most active {active}, random {random}",
                    j.layers.join("+")
                );
            }
            if plot {
                written.extend(plots::compression_plot(&plot_dir, &c)?);
                if !c.distributedness.is_empty() {
                    written.extend(plots::distributedness_plot(&plot_dir, &c)?);
                }
                if c.jointly.is_some() {
                    written.extend(plots::jointly_plot(&plot_dir, &c)?);
                }
            }
        }
        if let Some(list) = &self.classes {
            let c = classes::classes(run, list, self.classes_conv, device)?;
            if let Some(last) = c.steps.last() {
                println!("class sensitivity at step {} (class: layers with similarity >= 0.5 from the input):", last.step);
                for (ci, class) in c.settings.classes.iter().enumerate() {
                    let first = c
                        .settings
                        .analysis
                        .layers
                        .iter()
                        .zip(&last.matrix[ci])
                        .find(|(_, v)| v.is_some_and(|v| v >= 0.5))
                        .map(|(l, _)| l.as_str());
                    println!("  class {class}: first layer at 0.5 or above: {}", first.unwrap_or("none"));
                }
            }
            if plot {
                written.extend(plots::classes_plot(&plot_dir, &c)?);
            }
        }
        if self.dimensionality {
            let d = dimensionality::dimensionality(run, device)?;
            println!("dimensionality (directions for 90% / 99% of the variance, of the units):");
            for l in &d {
                println!("  {}: {} / {} of {}", l.layer, l.k90, l.k99, l.units);
            }
            if plot {
                written.extend(plots::dimensionality_plot(&plot_dir, &d)?);
            }
        }
        println!("tables in {}", run.join(crate::analysis::dynamics::FOLDER).display());
        for p in written {
            println!("  {}", p.display());
        }
        Ok(())
    }
}
