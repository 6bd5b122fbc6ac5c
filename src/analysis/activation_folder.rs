//! The learning-dynamics analysis of any network: an **activation folder**, written by
//! another program (a PyTorch training loop, say), in the layout store mode writes.
//!
//! ```text
//! DIR/
//!   activations/step-NNNNNNNN.safetensors   one file per checkpoint (8 or more digits);
//!                                           one tensor per layer, named after it, the
//!                                           same datapoints (first axis) in every file:
//!                                           N x C x H x W (conv) or N x D (dense);
//!                                           float32, float16, bfloat16 or float64
//!   activations/manifest.json               {"entries": [{"step", "layer", "shape",
//!                                           "dtype", "file"}, ...]}: every layer of every
//!                                           step, the layers of a step bottom-up
//!   config.toml                             optional: an [analysis] table only
//! ```
//!
//! It has no `checkpoints/`: that is how `svcca analyze DIR` tells it from a run folder.
//! [`Writer`] writes one (for the Python module's recorder).
//! The last step is the final network. Everything is checked before anything is
//! computed, and what does not fit is refused naming the file: a step listed without its
//! file or a file not listed, a layer missing at a step, another shape (or row count)
//! than at the first step, layers in another order at another step. The analysis then
//! writes `DIR/analysis/` and `DIR/plots/` as for a run folder (tables, chance level,
//! heatmaps); `--classes`, `--compression` and `--dimensionality` need a network and
//! data, so they need a run folder.

use super::check_finished;
use crate::activations::store::{self, Manifest, StepFile};
use crate::config::{Config, StoreDtype};
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::run_dir::{self, Access, Lock, CONFIG_FILE};
use std::path::{Path, PathBuf};
use tch::Device;

/// Whether `dir` is an activation folder: `activations/manifest.json` and no
/// `checkpoints/`.
pub(crate) fn is_one(dir: &Path) -> bool {
    let checkpoints = dir.join(crate::run_dir::checkpoint::FOLDER);
    checkpoints.symlink_metadata().is_err() && dir.join(store::FOLDER).join(store::MANIFEST).is_file()
}

/// An activation folder, checked.
pub(crate) struct Opened {
    /// The defaults, with the folder's `[analysis]` table.
    pub config: Config,
    pub device: Device,
    /// Bottom-up, as the manifest lists them.
    pub layers: Vec<String>,
    pub files: Vec<(u64, PathBuf)>,
    /// The last step: the final network.
    pub total: u64,
}

/// Opens the activation folder `dir` on `device` (default: the config's
/// `train.device`, `auto` unless set), refusing what does not fit (see the module).
pub(crate) fn open(dir: &Path, device: Option<DeviceChoice>) -> anyhow::Result<Opened> {
    let config = config(dir)?;
    let device = device.unwrap_or(config.train.device).resolve()?;
    let folder = dir.join(store::FOLDER);
    let manifest_path = folder.join(store::MANIFEST);
    let manifest: Manifest = store::read_manifest(&folder)?.expect("is_one: the manifest is there");
    let files = store::list(dir)?;
    let Some(&(total, _)) = files.last() else {
        return Err(InputError::new(format!("{}: no step-NNNNNNNN.safetensors files to analyse", folder.display())).into());
    };
    let layers = check(&manifest, &manifest_path, &files)?;
    check_finished(dir, "stored activations", Some(total), total)?;
    Ok(Opened { config, device, layers, files, total })
}

/// The folder's `config.toml`: an `[analysis]` table and nothing else (there is no
/// network or data to configure), over the defaults.
fn config(dir: &Path) -> anyhow::Result<Config> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Ok(Config::default());
    }
    let text = std::fs::read_to_string(&path).map_err(|e| InputError::new(format!("{}: cannot read it: {e}", path.display())))?;
    let config = Config::parse(&text, &path.display().to_string(), &[])?;
    let table: toml::Table = toml::from_str(&text).expect("parsed as a config above");
    if let Some(other) = table.keys().find(|k| *k != "analysis") {
        return Err(InputError::new(format!(
            "{}: [{other}]: an activation folder's config holds an [analysis] table only (there is no network or data here to configure); \
             if {} is a run folder, its {}/ folder is missing: restore it to analyse the run",
            path.display(),
            dir.display(),
            crate::run_dir::checkpoint::FOLDER
        ))
        .into());
    }
    Ok(config)
}

/// The layers, bottom-up, once the manifest (`path`) and the files agree: every step
/// listed has its file and every file is listed, each step has the first step's layers
/// in its order, and each layer the shape the manifest gives, which is the file's.
fn check(manifest: &Manifest, path: &Path, files: &[(u64, PathBuf)]) -> Result<Vec<String>, InputError> {
    let bad = |what: String| InputError::new(format!("{}: {what}", path.display()));
    let mut steps: Vec<u64> = manifest.entries.iter().map(|e| e.step).collect();
    steps.dedup();
    let mut sorted = steps.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if sorted != steps {
        return Err(bad("its entries are not in step order (each step's layers together, steps ascending)".into()));
    }
    let on_disk: Vec<u64> = files.iter().map(|f| f.0).collect();
    if let Some(s) = steps.iter().find(|s| !on_disk.contains(s)) {
        return Err(bad(format!("step {s} is listed but {} is not there", crate::run_dir::step_file_name(*s))));
    }
    if let Some((s, f)) = files.iter().find(|f| !steps.contains(&f.0)) {
        return Err(bad(format!("{} (step {s}) is not listed: list its layers, or remove the file", f.display())));
    }
    let of = |step: u64| manifest.entries.iter().filter(move |e| e.step == step);
    let first: Vec<&store::Entry> = of(steps[0]).collect();
    let layers: Vec<String> = first.iter().map(|e| e.layer.clone()).collect();
    if let Some(l) = layers.iter().enumerate().find(|(i, l)| layers[..*i].contains(l)).map(|(_, l)| l) {
        return Err(bad(format!("layer '{l}' is listed twice at step {}", steps[0])));
    }
    let rows = first[0].shape.first().copied().unwrap_or(0);
    for (step, file) in files {
        let listed: Vec<&store::Entry> = of(*step).collect();
        let names: Vec<&str> = listed.iter().map(|e| e.layer.as_str()).collect();
        if names != layers.iter().map(String::as_str).collect::<Vec<_>>() {
            return Err(bad(format!(
                "step {step} lists the layers {} where step {} lists {}: every step holds the same layers, bottom-up",
                names.join(" "),
                steps[0],
                layers.join(" ")
            )));
        }
        let shapes = store::header_shapes(file).map_err(|e| InputError::new(format!("{e:#}")))?;
        for (e, at_first) in listed.iter().zip(&first) {
            let Some(shape) = shapes.get(&e.layer) else {
                return Err(InputError::new(format!("{}: no tensor '{}' (the manifest lists it at step {step})", file.display(), e.layer)));
            };
            if shape != &e.shape {
                return Err(InputError::new(format!(
                    "{}: '{}' has shape {shape:?}, the manifest says {:?}",
                    file.display(),
                    e.layer,
                    e.shape
                )));
            }
            if !(shape.len() == 2 || shape.len() == 4) || shape[0] != rows || shape != &at_first.shape {
                return Err(InputError::new(format!(
                    "{}: '{}' has shape {shape:?} where step {} has {:?}: a layer keeps its shape, every layer has the same {rows} datapoints (first axis), N x D or N x C x H x W",
                    file.display(),
                    e.layer,
                    steps[0],
                    at_first.shape
                )));
            }
        }
    }
    if rows < 2 {
        return Err(bad(format!("{rows} datapoints: an analysis needs at least 2")));
    }
    Ok(layers)
}

/// Writes an activation folder step by step (the Python module's `svcca.Recorder`). It
/// holds the folder's lock while it lives, so it is the folder's one writer, and refuses
/// (an [`InputError`] naming the folder) a step that would make a folder [`open`]
/// refuses: one already written, or earlier than the last (the last step is the final
/// network), other layers, another order or shape than the steps before, layers of
/// different datapoint counts.
pub struct Writer {
    dir: PathBuf,
    dtype: StoreDtype,
    _lock: Lock,
}

impl Writer {
    /// Opens `dir` (made if missing) for writing `dtype` files. A run folder is refused:
    /// its `activations/` are the run's own.
    pub fn create(dir: &Path, dtype: StoreDtype) -> anyhow::Result<Writer> {
        let checkpoints = dir.join(crate::run_dir::checkpoint::FOLDER);
        if checkpoints.symlink_metadata().is_ok() {
            return Err(InputError::new(format!(
                "{}: a run folder (it has {}/): record into a folder of its own",
                dir.display(),
                crate::run_dir::checkpoint::FOLDER
            ))
            .into());
        }
        let lock = run_dir::lock(dir, Access::Exclusive)?;
        let folder = dir.join(store::FOLDER);
        std::fs::create_dir_all(&folder).map_err(|e| InputError::new(format!("{}: cannot create it: {e}", folder.display())))?;
        Ok(Writer { dir: dir.to_path_buf(), dtype, _lock: lock })
    }

    /// Starts step `step` of `layers` (name, shape: N x D or N x C x H x W, the same N
    /// in each), bottom-up, refusing what the folder cannot take (see [`Writer`]); its
    /// rows are then written block by block ([`StepFile::write_rows`]) and the step
    /// listed by [`StepFile::finish`].
    pub fn begin(&self, step: u64, layers: &[(String, Vec<i64>)]) -> anyhow::Result<StepFile> {
        let folder = self.dir.join(store::FOLDER);
        let bad = |what: String| InputError::new(format!("{}: step {step}: {what}", self.dir.display()));
        let Some((_, first)) = layers.first() else {
            return Err(bad("no layers to write".into()).into());
        };
        let rows = first.first().copied().unwrap_or(0);
        for (i, (name, shape)) in layers.iter().enumerate() {
            if name.is_empty() || layers[..i].iter().any(|(n, _)| n == name) {
                return Err(bad(format!("layer name '{name}' is empty or given twice")).into());
            }
            if !(shape.len() == 2 || shape.len() == 4) || shape.iter().any(|&d| d <= 0) {
                return Err(bad(format!("'{name}' has shape {shape:?}: expected N x D (dense) or N x C x H x W (conv)")).into());
            }
            if shape[0] != rows {
                return Err(bad(format!(
                    "'{name}' has {} datapoints where '{}' has {rows}: record every layer on the same inputs",
                    shape[0], layers[0].0
                ))
                .into());
            }
        }
        if rows < 2 {
            return Err(bad(format!("{rows} datapoint(s): an analysis needs at least 2")).into());
        }
        if let Some(manifest) = store::read_manifest(&folder)? {
            if let Some(last) = manifest.entries.iter().map(|e| e.step).max() {
                if step <= last {
                    return Err(bad(format!(
                        "the folder holds steps up to {last} already: record steps in increasing order, each once (or into a new folder)"
                    ))
                    .into());
                }
                let earliest: Vec<(&str, &[i64])> = manifest
                    .entries
                    .iter()
                    .filter(|e| e.step == manifest.entries[0].step)
                    .map(|e| (e.layer.as_str(), e.shape.as_slice()))
                    .collect();
                let these: Vec<(&str, &[i64])> = layers.iter().map(|(n, s)| (n.as_str(), s.as_slice())).collect();
                if these != earliest {
                    return Err(bad(format!(
                        "layers and shapes {these:?} where step {} has {earliest:?}: every step holds the same layers, in the same order and shapes",
                        manifest.entries[0].step
                    ))
                    .into());
                }
            }
        }
        StepFile::create(&folder, step, layers, self.dtype)
    }
}
