//! Writing result files: one way, used by every stage.
//!
//! Every file svcca leaves in a run folder (config, checkpoints, metrics, activations,
//! tables, plots) is written to a temporary file in the same folder, flushed to disk and
//! renamed over its name, so a kill or a full disk never leaves a half-written file under
//! a real name. The rules, in one place:
//!
//! - **Temporary names** are `.NAME.XXXXXX.tmp`: hidden, and recognisable by
//!   [`remove_stale_temporaries`], which the owner of a run folder calls on start to
//!   clear what a killed process left.
//! - **Permissions** are those of any file the user creates: `0666` less the umask
//!   (`0644` under the usual umask, `0664` under a shared project's `0002`). Temporary
//!   files are created owner-only; without this, results would stay unreadable to the
//!   group whatever the umask.
//! - **Unchanged files are not rewritten**: writing the bytes a file already holds does
//!   nothing, so rerunning finished work leaves the folder as it was (and works on a
//!   folder the user may only read).
//! - **Errors name the real file**, never the temporary.

use anyhow::Context;
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the module notes); nothing happens when the
/// file already holds exactly these bytes.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_with(path, Replace::Always, |tmp| {
        std::fs::write(tmp, bytes)?;
        Ok(())
    })
}

/// Writes `value` as pretty JSON, as [`write_atomic`].
pub fn write_json_atomic(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Whether [`write_with`] may replace a file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    Always,
    /// Fail instead (for files that must never change once written).
    Never,
}

/// Writes `path` through `fill`, which writes the whole content to the temporary path it
/// is given (for writers that take a path: safetensors, PNG); then the rules above.
pub fn write_with(path: &Path, replace: Replace, fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let dir = folder_of(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(TEMP_SUFFIX)
        .tempfile_in(dir)
        .with_context(|| format!("cannot write {}", path.display()))?;
    fill(tmp.path()).with_context(|| format!("cannot write {}", path.display()))?;
    let file = File::open(tmp.path()).with_context(|| format!("cannot write {}", path.display()))?;
    set_user_permissions(&file).with_context(|| format!("cannot set the permissions of {}", path.display()))?;
    file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
    match replace {
        Replace::Always => tmp.persist(path).map(drop).map_err(|e| e.error),
        Replace::Never => tmp.persist_noclobber(path).map(drop).map_err(|e| e.error),
    }
    .with_context(|| format!("cannot write {}", path.display()))
}

/// Gives `file` the permissions a file created by the user would have: `0666` less the
/// process's umask.
pub fn set_user_permissions(file: &File) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o666 & !umask()))?;
    }
    #[cfg(not(unix))]
    let _ = file;
    Ok(())
}

/// The process's umask, read once from `/proc/self/status` (reading it with `umask(2)`
/// means setting it, which races with threads creating files); `0o022` where it cannot
/// be read.
pub fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0o022)
    })
}

const TEMP_SUFFIX: &str = ".tmp";

/// Whether `name` is a temporary file of ours: `.NAME.XXXXXX.tmp`, or `.tmpXXXXXX`, the
/// name earlier versions used.
pub fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && (name.ends_with(TEMP_SUFFIX) || (name.starts_with(".tmp") && name.len() == 10))
}

/// Removes the temporary files under `dir` (recursively) that a killed writer left
/// behind; returns them. Only the owner of the folder's lock may call this (no writer is
/// running then, see `crate::run_dir`).
pub fn remove_stale_temporaries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let Ok(kind) = e.file_type() else { continue };
            if kind.is_dir() {
                stack.push(e.path());
            } else if kind.is_file() && e.file_name().to_str().is_some_and(is_temporary) {
                std::fs::remove_file(e.path()).with_context(|| format!("cannot remove the stale temporary file {}", e.path().display()))?;
                removed.push(e.path());
            }
        }
    }
    removed.sort();
    Ok(removed)
}

fn folder_of(path: &Path) -> &Path {
    path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_atomically_and_skips_unchanged_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.csv");
        write_atomic(&path, b"x\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"x\n");
        let before = std::fs::metadata(&path).unwrap().modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        write_atomic(&path, b"x\n").unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().modified().unwrap(), before, "rewritten");
        write_atomic(&path, b"y\n").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"y\n");
        let names: Vec<String> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        assert_eq!(names, ["a.csv"]);
    }

    #[test]
    fn never_replace_refuses_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        std::fs::write(&path, b"old").unwrap();
        let e = write_with(&path, Replace::Never, |t| Ok(std::fs::write(t, b"new")?)).unwrap_err();
        assert!(format!("{e:#}").contains("s.safetensors"), "{e:#}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[cfg(unix)]
    #[test]
    fn files_get_the_umask_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.csv");
        write_atomic(&path, b"1").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o666 & !umask());
    }

    #[test]
    fn stale_temporaries_are_found_recursively() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        for f in [
            "checkpoints/.step-00000010.safetensors.a1B2c3.tmp",
            ".tmpAbC123",
            "metrics.csv",
            "checkpoints/step-00000010.safetensors",
            ".svcca.lock",
        ] {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let removed = remove_stale_temporaries(dir.path()).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        assert!(dir.path().join("metrics.csv").exists() && dir.path().join(".svcca.lock").exists());
        assert!(dir.path().join("checkpoints/step-00000010.safetensors").exists());
    }
}
