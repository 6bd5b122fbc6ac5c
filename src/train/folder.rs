//! The run folder at the start of training: made, or checked against the config.

use super::{checkpoint, freeze, metrics};
use crate::config::{differences, ActivationMode, AnalysisConfig, Config, FreezeSchedule};
use crate::error::InputError;
use crate::run_dir::CONFIG_FILE;
use crate::similarity::{ConvMethod, DftCut, Method};
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Checks the run folder (locked, made by [`crate::run_dir::lock`]) against `config`, or writes
/// `config` into a new one; returns the checkpoint folder. Refused (exit 2), with nothing
/// touched: a folder made by a different config; one with results but no `config.toml`
/// (no way to tell what made them); once training has begun, a change of the `[analysis]`
/// settings that an adaptive freeze schedule decides by, or that store mode records.
pub(super) fn prepare(config: &Config, out: &Path, writable: bool) -> anyhow::Result<PathBuf> {
    let config_path = out.join(CONFIG_FILE);
    let ckpt = out.join(checkpoint::FOLDER);
    // Before anything is written: a checkpoint folder that cannot be listed is refused,
    // not taken as empty (training would start over, and drop the metrics).
    let started = !checkpoint::list(&ckpt)?.is_empty();
    if exists(&config_path)? {
        let text = std::fs::read_to_string(&config_path).map_err(|e| {
            InputError::new(format!(
                "{}: cannot read this run's config: {e}; restore it (a copy of the run's resolved config), or use another --out",
                config_path.display()
            ))
        })?;
        let mut before = Config::parse_resolved(&text, &config_path.display().to_string())?;
        if !mentions_dft_cut(&text) {
            // Written before the setting existed, when the DFT cut per frequency: an
            // adaptive run decided by that cut so far.
            before.analysis.dft_cut = DftCut::before_it_was_a_setting();
        }
        let diff = differences(&before, config);
        if !diff.is_empty() {
            return Err(InputError::new(format!(
                "{}: this run folder belongs to a different config ({}, folder vs now); use another --out, or delete the folder to start over",
                config_path.display(),
                diff.join("; ")
            ))
            .into());
        }
        let refusals = [
            (
                steering_differences(&before.analysis, config),
                "the adaptive freeze schedule takes its decisions with the [analysis] similarity, so this run's decisions so far were taken under the folder's settings and a resumed run would decide by others",
            ),
            (
                recording_differences(&before, config),
                "store mode records activations at each checkpoint while training, and this run's checkpoints were made under the folder's settings, so the activations of the past checkpoints cannot be recorded now",
            ),
        ];
        if let Some((changed, why)) = refusals.iter().find(|(changed, _)| !changed.is_empty()).filter(|_| started) {
            return Err(InputError::new(format!(
                "{}: {} (folder vs now): {why}. Set them back for this folder, or train into another --out",
                config_path.display(),
                changed.join("; ")
            ))
            .into());
        }
        if before.analysis != config.analysis || before.model.taps != config.model.taps {
            // Only analysis settings that training does not use changed ([analysis], and
            // `model.taps`: which outputs are analysable, the weights and training being
            // the same): the folder's config takes them, and the analysis refuses to mix
            // them with results made under the old ones (`analysis::settings`).
            tracing::info!("{}: [analysis] and model.taps updated from the config", config_path.display());
            crate::io::write_atomic(&config_path, config.to_toml().as_bytes())?;
        }
    } else {
        let results: Vec<&str> = [
            ("checkpoints/", started),
            (metrics::FILE, exists(&out.join(metrics::FILE))?),
            (freeze::FILE, exists(&out.join(freeze::FILE))?),
            ("activations/", exists(&out.join(crate::activations::store::FOLDER))?),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if !results.is_empty() {
            return Err(InputError::new(format!(
                "{}: no {CONFIG_FILE}, but results are there ({}): the config that made them cannot be known. Put its {CONFIG_FILE} back (a copy of the run's resolved config), or use another --out",
                out.display(),
                results.join(", ")
            ))
            .into());
        }
        if !writable {
            return Err(InputError::new(format!("{}: not a run folder, and it cannot be written", out.display())).into());
        }
        crate::io::write_atomic(&config_path, config.to_toml().as_bytes())?;
    }
    if !exists(&ckpt)? {
        std::fs::create_dir(&ckpt).with_context(|| format!("cannot create {}", ckpt.display()))?;
    }
    Ok(ckpt)
}

/// Whether `path` exists (a dangling link counts: it is there); refused where that
/// cannot be known (a folder this user may not search), rather than taken as absent.
fn exists(path: &Path) -> anyhow::Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(InputError::new(format!("{}: cannot be read: {e}", path.display())).into()),
    }
}

/// The `[analysis]` settings that steer an adaptive freeze schedule (its similarity and
/// its probe of training images), differing between `a` (the folder's) and `config`'s:
/// none unless `config` freezes adaptively.
fn steering_differences(a: &AnalysisConfig, config: &Config) -> Vec<String> {
    let b = &config.analysis;
    if config.freeze.schedule != FreezeSchedule::Adaptive {
        return Vec::new();
    }
    // Not `analysis.conv_dense`: the schedule compares each layer with its own earlier
    // state, never a conv layer with a dense one, so it decides nothing there.
    changed([
        ("analysis.method", a.method.to_string(), b.method.to_string()),
        ("analysis.keep", a.keep.to_string(), b.keep.to_string()),
        ("analysis.keep_rule", a.keep_rule.to_string(), b.keep_rule.to_string()),
        ("analysis.conv", format!("{:?}", a.conv).to_lowercase(), format!("{:?}", b.conv).to_lowercase()),
        ("analysis.dft_cut", dft_cut(a), dft_cut(b)),
        ("analysis.probe_size", a.probe_size.to_string(), b.probe_size.to_string()),
        ("analysis.seed", a.seed.to_string(), b.seed.to_string()),
    ])
}

/// The settings that store mode fixes while training (what is recorded, and whether: the
/// `[analysis]` keys and `model.taps`, which layers there are), differing between
/// `before` (the folder's) and `now`: `key: before vs now`.
fn recording_differences(before: &Config, now: &Config) -> Vec<String> {
    let (a, b) = (&before.analysis, &now.analysis);
    let mode = ("analysis.mode", format!("{:?}", a.mode).to_lowercase(), format!("{:?}", b.mode).to_lowercase());
    if a.mode != b.mode || a.mode != ActivationMode::Store {
        return changed([mode]);
    }
    changed([
        ("model.taps", before.model.taps.to_string(), now.model.taps.to_string()),
        ("analysis.probe_size", a.probe_size.to_string(), b.probe_size.to_string()),
        ("analysis.seed", a.seed.to_string(), b.seed.to_string()),
        ("analysis.dtype", format!("{:?}", a.dtype).to_lowercase(), format!("{:?}", b.dtype).to_lowercase()),
        ("analysis.layers", format!("{:?}", a.layers), format!("{:?}", b.layers)),
    ])
}

/// `key: folder's vs now` for each `(key, folder's, now)` that differs.
fn changed<const N: usize>(fields: [(&str, String, String); N]) -> Vec<String> {
    fields.into_iter().filter(|(_, x, y)| x != y).map(|(k, x, y)| format!("{k}: {x} vs {y}")).collect()
}

/// `analysis.dft_cut` where it steers anything (SVCCA with the DFT).
fn dft_cut(a: &AnalysisConfig) -> String {
    let used = a.conv == ConvMethod::Dft && a.method == Method::Svcca;
    if used {
        a.dft_cut.to_string()
    } else {
        "unused".into()
    }
}

/// Whether a run folder's config.toml sets `analysis.dft_cut`.
fn mentions_dft_cut(text: &str) -> bool {
    let value: Option<toml::Value> = toml::from_str(text).ok();
    value.as_ref().and_then(|v| v.get("analysis")).and_then(|a| a.get("dft_cut")).is_some()
}
