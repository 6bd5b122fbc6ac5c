//! The settings an analysis's numbers depend on, written beside its results: a folder
//! analysed with other settings is refused rather than mixed.

use crate::error::InputError;
use crate::io::write_json_atomic;
use serde::{de::DeserializeOwned, Serialize};
use std::path::Path;

/// Writes `settings` to `path`, or checks that the ones already there are the same.
pub fn check_or_write<T: Serialize + DeserializeOwned + PartialEq>(path: &Path, settings: &T) -> anyhow::Result<()> {
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
