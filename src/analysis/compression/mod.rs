//! Compression (the paper's experiment 3, Figure 2a): a layer's output replaced by its
//! projection onto its top-k SVCCA directions, and the test accuracy of the network run on
//! top of that, for a range of k; beside it two baselines that keep k neurons (random
//! ones, or the most active) and set the others to their mean.
//!
//! - Directions: SVCCA (keep `analysis.keep` of the variance on each side) between the
//!   layer of the final network and a reference on the same images: the network's own
//!   logits (default), the same layer of another run's final network, or the same layer
//!   of this run at another checkpoint. See
//!   [`crate::similarity::directions`](mod@crate::similarity::directions) for the
//!   projection (least squares from the top k canonical variates; the mean added back).
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
//! `--distributedness` (Figure 2b, [`FittedLayer::distributed`]) and `--jointly` (Appendix 5,
//! all listed layers at once with k swept) add `distributedness.csv` and `jointly.csv` there.
//!
//! Results go to `analysis/compression-logits/` (`analysis/compression-run-NAME/`
//! against another run, `analysis/compression-step-N/` against a checkpoint):
//! `compression.csv` (every point), `compression_summary.csv`, `compression.json`. Resumable ([`super::results`]): each layer's sweep is written to
//! `layer-NAME.json` there when done; `settings.json` there refuses mixed settings.
//!
//! The files, in the order of the work: [`arguments`] (what is asked: layers, reference,
//! extras, [`CompressionMethod`], the settings recorded), [`fit`](mod@fit) (each layer's
//! [`crate::similarity::Fitted`]: directions and activity ranking), [`maps`] (how a layer's
//! output is changed, with the conv layers' kernel in `projection`), [`evaluation`] (test
//! accuracy, maps stacked into batches), [`sweeps`] (the k measured, the maps of each
//! sweep, their points) and [`tables`] (the results and their files); this file drives them.

pub(crate) mod arguments;
pub(crate) mod evaluation;
pub(crate) mod fit;
pub(crate) mod maps;
mod projection;
pub(crate) mod sweeps;
pub(crate) mod tables;

pub use arguments::{CompressionMethod, Extras, LayerSpec, Neurons, Reference, Settings};
pub use evaluation::layer_accuracies;
pub use fit::{fit, FittedLayer};
pub use maps::Map;
pub use sweeps::{grid, DRAWS};
pub use tables::{Compression, Distributed, DistributedPoint, Joint, JointPoint, JointSweep, LayerSweep, Point};

use super::results::Results;
use super::runs::Run;
use crate::device::DeviceChoice;
use crate::error::InputError;
use anyhow::Context;
use evaluation::Evaluator;
use std::path::Path;
use tch::Tensor;

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
    let todo: Vec<&FittedLayer> = results.missing(&layers).iter().map(|l| fitted.iter().find(|f| &f.layer == l).expect("fitted")).collect();
    let which: Vec<Vec<(CompressionMethod, usize, u64)>> = todo.iter().map(|f| sweeps::sweep_maps(f)).collect();
    let maps: Vec<Vec<Map>> =
        todo.iter().zip(&which).map(|(f, w)| w.iter().map(|&(m, k, draw)| f.method(m, k, draw, a.seed)).collect()).collect();
    let sweeps: Vec<(&str, &Tensor, &[Map])> =
        todo.iter().zip(&maps).map(|(f, m)| (f.layer.as_str(), &f.fitted.directions.mean, m.as_slice())).collect();
    crate::preempt::check(|| format!("while compressing layers of {}", dir.display()))?;
    let (full_accuracy, accuracy) = eval.accuracies(&sweeps)?;
    tracing::info!("full test accuracy {:.2}% (on {} images)", 100.0 * full_accuracy, eval.labels.size()[0]);
    for ((f, w), acc) in todo.iter().zip(&which).zip(&accuracy) {
        results.save(&f.layer, &sweeps::sweep_points(f, w, acc))?;
    }
    // Kept as computed on the first call (the tables then hold the exact numbers).
    let sweeps = results.load_all(&layers)?;
    let joint = sweeps::compress_together(&eval, specs, &fitted, a.seed)?;
    let distributedness =
        if extras.distributedness.is_empty() { Vec::new() } else { sweeps::distributedness(&eval, &out, &fitted, &neurons)? };
    let jointly = if extras.jointly { Some(sweeps::jointly(&eval, &out, &fitted, a.seed)?) } else { None };
    tracing::debug!("sweeps and joint compression in {:.2}s", start.elapsed().as_secs_f64());
    let c = Compression { settings, full_accuracy, layers: sweeps, joint, distributedness, jointly };
    tables::write_tables(&out, &c)?;
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

/// Each layer's units (channels of a conv layer), from one image.
fn layer_units(run: &Run, layers: &[String]) -> anyhow::Result<Vec<usize>> {
    let names: Vec<&str> = layers.iter().map(String::as_str).collect();
    let one = run.data.normalise(&run.data.test.images.narrow(0, 0, 1));
    let (_, taps) = tch::no_grad(|| run.net.forward_taps(&one, false, &names))?;
    Ok(taps.iter().map(|t| t.size()[1] as usize).collect())
}
