//! Writing result files: one way, used by every stage.
//!
//! Every file svcca leaves in a run folder (config, checkpoints, metrics, activations,
//! tables, plots) is written to a temporary file in the same folder, flushed to disk and
//! renamed over its name, so a kill or a full disk never leaves a half-written file under
//! a real name. The rules, in one place:
//!
//! - **Temporary names** are `.NAME.svcca-XXXXXX.tmp` (`XXXXXX`: six random letters
//!   and digits), made in the folder of `NAME`: hidden, and recognisable exactly by
//!   [`is_temporary`]. Before this process first writes a folder whose lock it holds
//!   exclusively, the run-folder lock's hook (`run_dir::before_writing`, registered
//!   through [`on_first_write`]: io sits below run_dir) removes such files that a killed
//!   writer left there ([`remove_stale_temporaries`]): in that folder only, never in
//!   folders under it, and nothing else (a user's `.notes.tmp` stays).
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
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_with(path, Replace::Always, |tmp| {
        std::fs::write(tmp, bytes)?;
        Ok(())
    })
}

/// Writes `value` as pretty JSON, as [`write_atomic`].
pub(crate) fn write_json_atomic(path: &Path, value: &impl Serialize) -> anyhow::Result<()> {
    write_atomic(path, serde_json::to_string_pretty(value)?.as_bytes())
}

/// Whether [`write_with`] may replace a file that exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Replace {
    Always,
    /// Fail instead (for files that must never change once written).
    Never,
}

/// What runs before each write into a folder (see [`on_first_write`]).
static BEFORE_WRITING: std::sync::OnceLock<fn(&Path) -> anyhow::Result<()>> = std::sync::OnceLock::new();

/// Registers `hook` to run before every write into a folder, with the folder: the run
/// folders' lock registers its clean-up of a killed writer's temporaries there, once,
/// when this process first takes a lock.
pub(crate) fn on_first_write(hook: fn(&Path) -> anyhow::Result<()>) {
    let _ = BEFORE_WRITING.set(hook);
}

/// Writes `path` through `fill`, which writes the whole content to the temporary path it
/// is given (for writers that take a path: safetensors, PNG); then the rules above.
pub(crate) fn write_with(path: &Path, replace: Replace, fill: impl FnOnce(&Path) -> anyhow::Result<()>) -> anyhow::Result<()> {
    let staged = Staged::create(path)?;
    fill(staged.temporary()).with_context(|| format!("cannot write {}", path.display()))?;
    staged.finish(replace)
}

/// A file being written under a temporary name (see the module notes), for a writer
/// that fills it piece by piece over several calls: [`Staged::finish`] gives it its
/// name; dropped unfinished, the temporary is removed, so a failed or abandoned write
/// leaves nothing behind.
pub(crate) struct Staged {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl Staged {
    /// A fresh temporary in `path`'s folder (after the folder's first-write hook).
    pub(crate) fn create(path: &Path) -> anyhow::Result<Staged> {
        let dir = folder_of(path);
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        if let Some(hook) = BEFORE_WRITING.get() {
            hook(dir)?;
        }
        let tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}{TEMP_MARK}"))
            .rand_bytes(TEMP_RANDOM)
            .suffix(TEMP_SUFFIX)
            .tempfile_in(dir)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Staged { tmp, path: path.to_path_buf() })
    }

    /// The temporary, open for writing.
    pub(crate) fn file(&self) -> &File {
        self.tmp.as_file()
    }

    /// The temporary's path, for writers that open it themselves.
    pub(crate) fn temporary(&self) -> &Path {
        self.tmp.path()
    }

    /// Gives the written temporary the user's permissions, flushes it to disk and renames
    /// it to its name (over an existing file only with [`Replace::Always`]).
    pub(crate) fn finish(self, replace: Replace) -> anyhow::Result<()> {
        let path = self.path;
        let file = File::open(self.tmp.path()).with_context(|| format!("cannot write {}", path.display()))?;
        set_user_permissions(&file).with_context(|| format!("cannot set the permissions of {}", path.display()))?;
        file.sync_all().with_context(|| format!("cannot write {}", path.display()))?;
        match replace {
            Replace::Always => self.tmp.persist(&path).map(drop).map_err(|e| e.error),
            Replace::Never => self.tmp.persist_noclobber(&path).map(drop).map_err(|e| e.error),
        }
        .with_context(|| format!("cannot write {}", path.display()))
    }
}

/// Gives `file` the permissions a file created by the user would have: `0666` less the
/// process's umask.
pub(crate) fn set_user_permissions(file: &File) -> std::io::Result<()> {
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
pub(crate) fn umask() -> u32 {
    static UMASK: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *UMASK.get_or_init(|| {
        std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| s.lines().find_map(|l| l.strip_prefix("Umask:").map(|v| v.trim().to_string())))
            .and_then(|v| u32::from_str_radix(&v, 8).ok())
            .unwrap_or(0o022)
    })
}

/// What [`write_with`] puts between a file's name and the random part of its
/// temporary's: `.NAME.svcca-XXXXXX.tmp`.
const TEMP_MARK: &str = ".svcca-";
const TEMP_RANDOM: usize = 6;
const TEMP_SUFFIX: &str = ".tmp";

/// Whether `name` is the name of a temporary file of svcca's: `.NAME.svcca-XXXXXX.tmp`
/// (`XXXXXX`: six ASCII letters or digits), or a step file's temporary as versions
/// before the mark named them, `.step-NNNNNNNN.safetensors.XXXXXX.tmp` (checkpoints,
/// stored activations: no user's file has that name). Nothing looser: a user's
/// `.bashrc.tmp` or `.cache.123456.tmp` is not one.
pub(crate) fn is_temporary(name: &str) -> bool {
    let random = |r: &str| r.len() == TEMP_RANDOM && r.bytes().all(|b| b.is_ascii_alphanumeric());
    let Some(inner) = name.strip_prefix('.').and_then(|n| n.strip_suffix(TEMP_SUFFIX)) else { return false };
    if let Some((file, r)) = inner.rsplit_once(TEMP_MARK) {
        if !file.is_empty() && random(r) {
            return true;
        }
    }
    // `step-NNNNNNNN.safetensors` as run folders name step files (at least 8 digits,
    // zero-padded to 8).
    let step_file = |f: &str| {
        f.strip_prefix("step-")
            .and_then(|r| r.strip_suffix(".safetensors"))
            .is_some_and(|d| d.len() >= 8 && d.bytes().all(|b| b.is_ascii_digit()) && (d.len() == 8 || !d.starts_with('0')))
    };
    inner.rsplit_once('.').is_some_and(|(file, r)| random(r) && step_file(file))
}

/// Removes the temporary files of svcca's ([`is_temporary`]: regular files, not links)
/// directly in `dir`, not in folders under it, that a killed writer left behind; returns
/// them. Only for a folder no other process writes: the run-folder lock's hook
/// (`run_dir::before_writing`) calls it under the folder's exclusive lock.
pub(crate) fn remove_stale_temporaries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    remove_temporaries(dir, |_| true)
}

/// Removes the temporaries of svcca's directly in `dir` whose file has since been
/// written there (a killed writer's, whose work another process then did: a sharded
/// analysis's task run again); returns them. For a folder whose files are each written
/// once by whichever writer gets there, and only once every file there is written (the
/// units of a sharded analysis, all done): no writer has work left there then, but for
/// a second copy of one task running at once, whose result is already in place.
pub(crate) fn remove_superseded_temporaries(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    remove_temporaries(dir, |file| dir.join(file).symlink_metadata().is_ok_and(|m| m.is_file()))
}

/// Removes the temporaries of svcca's (regular files, not links) directly in `dir` for
/// which `remove` holds of the file each was to become; returns them, sorted.
fn remove_temporaries(dir: &Path, remove: impl Fn(&str) -> bool) -> anyhow::Result<Vec<PathBuf>> {
    let mut removed = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return Ok(removed) };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(file) = name.to_str().and_then(temporary_of) else { continue };
        if e.file_type().is_ok_and(|t| t.is_file()) && remove(file) {
            std::fs::remove_file(e.path()).with_context(|| format!("cannot remove the stale temporary file {}", e.path().display()))?;
            removed.push(e.path());
        }
    }
    removed.sort();
    Ok(removed)
}

/// The file a temporary of svcca's was to become: `NAME` of `.NAME.svcca-XXXXXX.tmp`, or
/// of an older version's `.NAME.XXXXXX.tmp` ([`is_temporary`]); `None` for any other name.
fn temporary_of(name: &str) -> Option<&str> {
    if !is_temporary(name) {
        return None;
    }
    let inner = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    inner.rsplit_once(TEMP_MARK).or_else(|| inner.rsplit_once('.')).map(|(file, _)| file)
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
    fn temporaries_are_recognised_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.csv");
        // A temporary this version makes, caught mid-write.
        write_with(&path, Replace::Always, |tmp| {
            let name = tmp.file_name().unwrap().to_str().unwrap();
            assert!(is_temporary(name) && name.starts_with(".metrics.csv.svcca-"), "{name}");
            Ok(std::fs::write(tmp, b"1")?)
        })
        .unwrap();
        for ours in
            [".config.toml.svcca-a1B2c3.tmp", ".step-00000010.safetensors.svcca-Zz9Yy8.tmp", ".step-00000010.safetensors.a1B2c3.tmp"]
        {
            assert!(is_temporary(ours), "{ours}");
        }
        for theirs in [
            ".bashrc.tmp",
            ".cache.123456.tmp",
            ".tmpAbC123",
            ".notes.svcca-12345.tmp",
            ".notes.svcca-1234567.tmp",
            ".notes.svcca-12-456.tmp",
            ".svcca-a1B2c3.tmp",
            "metrics.csv.svcca-a1B2c3.tmp",
            ".step-10.safetensors.a1B2c3.tmp",
            ".metrics.csv.a1b2c3.tmp",
        ] {
            assert!(!is_temporary(theirs), "{theirs}");
        }
    }

    #[test]
    fn stale_temporaries_are_removed_in_one_folder_only() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("checkpoints")).unwrap();
        let files = [
            ".metrics.csv.svcca-a1B2c3.tmp",
            "checkpoints/.step-00000010.safetensors.svcca-a1B2c3.tmp",
            ".bashrc.tmp",
            ".cache.123456.tmp",
            "metrics.csv",
            ".svcca.lock",
        ];
        for f in files {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        let removed = remove_stale_temporaries(dir.path()).unwrap();
        assert_eq!(removed, [dir.path().join(files[0])]);
        for f in &files[1..] {
            assert!(dir.path().join(f).exists(), "{f} was removed");
        }
    }

    #[test]
    fn only_temporaries_whose_file_is_written_are_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            ".step-00000010-001.json.svcca-a1B2c3.tmp",
            "step-00000010-001.json",
            ".step-00000020-001.json.svcca-d4E5f6.tmp",
            ".notes.tmp",
            "notes",
        ];
        for f in files {
            std::fs::write(dir.path().join(f), b"").unwrap();
        }
        // A temporary whose name is a link to a written file is not one of svcca's files.
        std::os::unix::fs::symlink("notes", dir.path().join("linked")).unwrap();
        std::fs::write(dir.path().join(".linked.svcca-g7H8i9.tmp"), b"").unwrap();
        let removed = remove_superseded_temporaries(dir.path()).unwrap();
        assert_eq!(removed, [dir.path().join(files[0])]);
        for f in &files[1..] {
            assert!(dir.path().join(f).exists(), "{f} was removed");
        }
        assert!(dir.path().join(".linked.svcca-g7H8i9.tmp").exists());
    }
}
