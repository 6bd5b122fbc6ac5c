//! The settings an analysis's numbers depend on, written beside its results: a folder
//! analysed with other settings is refused rather than mixed.

use crate::config::AnalysisConfig;
use crate::error::InputError;
use crate::io::write_json_atomic;
use crate::similarity::{ConvDense, ConvMethod, DftCut, KeepRule, Method};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use std::path::Path;

/// The `[analysis]` settings a similarity's value depends on: one struct, flattened into
/// each analysis's settings (`serde(flatten)`: the JSON keys stay at the top level).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Similarity {
    pub method: Method,
    pub keep: f64,
    /// What `keep` is a fraction of; absent in folders analysed before it was a setting,
    /// which all used the variance.
    #[serde(default)]
    pub keep_rule: KeepRule,
    pub conv: ConvMethod,
    /// How a conv layer met a dense one (as asked; `flatten` falls back to `avgpool` by
    /// the layers' sizes and the probe's); absent in folders analysed before it was a
    /// setting, which all took channel means.
    #[serde(default = "ConvDense::before_it_was_a_setting")]
    pub conv_dense: ConvDense,
    /// Where SVCCA cuts under the DFT; absent in folders analysed before it was a
    /// setting, which all cut per frequency.
    #[serde(default = "DftCut::before_it_was_a_setting")]
    pub dft_cut: DftCut,
    pub probe_size: usize,
    pub seed: u64,
    /// The products' arithmetic; absent in folders analysed before it was a setting,
    /// which all used float64.
    #[serde(default)]
    pub precision: crate::similarity::Precision,
}

impl Similarity {
    pub fn of(a: &AnalysisConfig) -> Similarity {
        Similarity {
            method: a.method,
            keep: a.keep,
            keep_rule: a.keep_rule,
            conv: a.conv,
            conv_dense: a.conv_dense,
            dft_cut: a.dft_cut,
            probe_size: a.probe_size,
            seed: a.seed,
            precision: a.precision,
        }
    }
}

/// Writes `settings` to `path`, or checks that the ones already there are the same.
pub(crate) fn check_or_write<T: Serialize + DeserializeOwned + PartialEq>(path: &Path, settings: &T) -> anyhow::Result<()> {
    if !path.exists() {
        return write_json_atomic(path, settings);
    }
    let before: T = super::results::read_json(path)?;
    if &before != settings {
        let dir = path.parent().unwrap_or(Path::new("."));
        return Err(InputError::new(format!(
            "{}: this analysis was made with other settings ({}); delete {} to redo it",
            path.display(),
            serde_json::to_string(&before)?,
            dir.display()
        ))
        .into());
    }
    Ok(())
}
