//! Class sensitivity (the paper's experiment 4, Figure 6): for chosen classes, the
//! similarity between that class's logit of the final network over the probe set (one
//! neuron) and each layer at each analysed checkpoint.
//!
//! The comparison is `analysis.method` (SVCCA, keep `analysis.keep` on the layer's side;
//! one logit is one direction), as [`crate::activations::similarity`] does it. A conv
//! layer meets the logit as `--classes-conv` says ([`ConvDense`]), not as
//! `analysis.conv_dense` (which steers the conv-vs-dense pairs of learning dynamics):
//!
//! - `avgpool` (the default): the layer's per-image channel means. That *is* the paper's
//!   DFT method here, because a logit has no positions: spread over a map it is
//!   constant, its spectrum is zero at every frequency but (0, 0), and the (0, 0)
//!   coefficient of the layer is its spatial sum, the channel means times h*w.
//! - `flatten`: the layer as C*H*W neurons, where the probe has
//!   [`crate::similarity::conv::FLATTEN_DATAPOINTS_PER_NEURON`] datapoints per neuron
//!   (else channel means, with one warning naming the layers).
//!
//! Resumable ([`super::results`]): each checkpoint's numbers go to
//! `analysis/classes/step-N.json` as soon as they are done;
//! `analysis/classes/settings.json` refuses mixed settings. Its `conv_dense` is the
//! `--classes-conv` choice; a file written before that flag records the
//! `analysis.conv_dense` it was made with (absent: channel means, as then), so it reads
//! as what it was made with.

use super::dynamics::{select, FOLDER};
use super::results::Results;
use super::runs::Run;
use crate::activations::{similarity, LayerSet, Names};
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::io::{write_atomic, write_json_atomic};
use crate::similarity::ConvDense;
use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    pub classes: Vec<i64>,
    /// Those of the learning-dynamics analysis (same JSON keys, beside `classes`), but
    /// `conv_dense`: how conv layers met the logits (`--classes-conv`).
    #[serde(flatten)]
    pub analysis: super::dynamics::Settings,
}

/// One checkpoint: `matrix[c][l]` is class `classes[c]`'s final logit against layer `l`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepClasses {
    pub step: u64,
    pub fraction: f64,
    pub matrix: Vec<Vec<Option<f64>>>,
}

/// Everything `analysis/classes.json` holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Classes {
    pub settings: Settings,
    pub steps: Vec<StepClasses>,
}

/// Refuses a `--classes` list that names a class twice (its row would be counted
/// twice); checked before anything is read, as the indices' range cannot be.
pub(crate) fn listed_once(text: &str) -> Result<(), InputError> {
    let mut seen = std::collections::HashSet::new();
    let twice = text
        .split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .find(|c| !seen.insert(c.parse::<i64>().ok().map_or(c.to_string(), |v| v.to_string())));
    match twice {
        Some(c) => Err(InputError::new(format!("--classes: class {c} is given twice: name each class once"))),
        None => Ok(()),
    }
}

/// Parses `--classes`: `all`, or class indices separated by commas, each once.
pub fn parse_classes(text: &str, classes: i64) -> Result<Vec<i64>, InputError> {
    if text == "all" {
        return Ok((0..classes).collect());
    }
    listed_once(text)?;
    text.split(',')
        .map(|c| {
            let v: i64 =
                c.trim().parse().map_err(|_| InputError::new(format!("--classes: '{c}' is not a class index (0 to {})", classes - 1)))?;
            if !(0..classes).contains(&v) {
                return Err(InputError::new(format!(
                    "--classes: class {v} is out of range: this dataset has classes 0 to {}",
                    classes - 1
                )));
            }
            Ok(v)
        })
        .collect()
}

/// `svcca analyze RUN_DIR --classes ... [--classes-conv avgpool|flatten]`: conv layers
/// against the logits by `conv` (see the module's doc).
pub fn classes(dir: &Path, classes: &str, conv: ConvDense, device: Option<DeviceChoice>) -> anyhow::Result<Classes> {
    let mut run = Run::open(dir, device)?;
    let classes = parse_classes(classes, run.data.classes)?;
    let out = dir.join(FOLDER).join("classes");
    let settings_path = out.join("settings.json");
    let previous: Option<Settings> = if settings_path.exists() { super::results::read_json(&settings_path).ok() } else { None };
    if let Some(made) = previous.as_ref().map(|p| p.analysis.similarity.conv_dense).filter(|&made| made != conv) {
        return Err(InputError::new(format!(
            "{}: this analysis compared conv layers with the logits by {made}, not {conv}: pass --classes-conv {made} to extend it, or delete {} to redo it",
            settings_path.display(),
            out.display()
        ))
        .into());
    }
    let layers = run.layers_since(previous.as_ref().map(|p| p.analysis.layers.as_slice()), &out)?;
    // The whole class analysis reads the config's [analysis] but for conv_dense.
    run.config.analysis.conv_dense = conv;
    let a = run.config.analysis.clone();
    let settings = Settings { classes: classes.clone(), analysis: super::dynamics::Settings::new(&a, layers.clone(), run.final_step) };
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let results = Results::<u64, StepClasses>::new(&out, |s| format!("step-{s:08}.json"));
    super::settings::check_or_write(&settings_path, &settings)?;
    let available: Vec<u64> = run.checkpoints.iter().map(|c| c.0).collect();
    let steps = select(&available, a.every_nth);
    let todo = results.missing(&steps);
    if !todo.is_empty() {
        let probe = run.probe();
        let logits = crate::activations::record::record(&run.net, &probe, &["logits".to_string()])?.remove(0);
        // Each class's logit is summarised once for all checkpoints.
        let mut targets = LayerSet::new(classes.iter().map(|&c| logits.narrow(1, c, 1)).collect(), &run.config);
        let logit_names: Vec<String> = classes.iter().map(|c| format!("class {c}'s final logit")).collect();
        let bar = super::progress((todo.len() * layers.len() * classes.len()) as u64, "class sensitivity");
        tracing::info!(
            "class sensitivity: {} of {} checkpoints, {} layers, {} classes",
            todo.len(),
            steps.len(),
            layers.len(),
            classes.len()
        );
        let at = || format!("in the class sensitivity of {} (steps done so far are kept)", dir.display());
        let mut warned = false;
        results.compute(&todo, at, |&step| {
            run.load_step(step)?;
            let recorded = crate::activations::record::record(&run.net, &probe, &layers)?;
            if !warned {
                // Against the logits, dense: once for the analysis (none by avgpool).
                crate::activations::conv_dense_fallbacks(&run.config, &layers, &recorded, true);
                warned = true;
            }
            let mut acts = LayerSet::new(recorded, &run.config);
            let matrix = (0..classes.len())
                .map(|t| {
                    (0..layers.len())
                        .map(|x| {
                            bar.inc(1);
                            let names = Names { a: format!("{} at step {step}", layers[x]), b: &logit_names };
                            similarity(&mut acts, x, &mut targets, t, &names)
                        })
                        .collect()
                })
                .collect();
            Ok(StepClasses { step, fraction: step as f64 / run.final_step as f64, matrix })
        })?;
        bar.finish_and_clear();
    }
    let results = results.load_all(&steps)?;
    let c = Classes { settings, steps: results };
    let mut csv = String::from("step,fraction,class,layer,similarity\n");
    for r in &c.steps {
        for (ci, class) in c.settings.classes.iter().enumerate() {
            for (li, layer) in c.settings.analysis.layers.iter().enumerate() {
                let v = r.matrix[ci][li].map_or(String::new(), |v| format!("{v:.6}"));
                csv += &format!("{},{:.6},{class},{layer},{v}\n", r.step, r.fraction);
            }
        }
    }
    write_atomic(&dir.join(FOLDER).join("classes.csv"), csv.as_bytes())?;
    write_json_atomic(&dir.join(FOLDER).join("classes.json"), &c)?;
    Ok(c)
}
