//! The run folder and who may write it.
//!
//! One writer at a time: every command that writes a folder (training, analysis, an
//! experiment's or sweep's folder, compare-runs' output) first takes its lock, an OS file
//! lock (`flock`) on `FOLDER/.svcca.lock`. The OS drops it when the process ends, however
//! it ends, so a killed job never leaves a stale lock behind. A second process gets exit
//! status 2 and a message naming the holder, before it has written anything.
//!
//! - **Exclusive** (training, an analysis, `--merge`): the only process in the folder.
//!   The owner then clears temporary files that a killed writer left (`crate::io`).
//! - **Shared** (`svcca analyze --shard I/N`): the tasks of a job array analyse one run
//!   together, each writing its own units; they exclude training and unsharded analysis.
//! - **Read-only folders** (another user's results, an archive): the lock file cannot be
//!   created or opened for writing; a finished run is still read (and reported) without
//!   writing, and a shared lock is taken where the lock file exists, so that a writer
//!   still at work is noticed.
//!
//! Within one process the lock is re-entrant (`svcca run` holds it across training and
//! analysis, which take it again): `flock` locks belong to an open file, so a second open
//! in the same process would otherwise lock itself out.

use crate::error::InputError;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The resolved config of a run, written when the run starts.
pub const CONFIG_FILE: &str = "config.toml";
pub const LOCK_FILE: &str = ".svcca.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Exclusive,
    Shared,
}

/// The name of a file of one step (a checkpoint, a step's stored activations):
/// `step-NNNNNNNN.safetensors`.
pub fn step_file_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

/// The step a [`step_file_name`] stands for (`None` for other files, temporaries too).
pub fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
}

/// The step files in `dir`, by step (none where `dir` does not exist).
pub fn step_files(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| Some((step_of(e.file_name().to_str()?)?, e.path())))
        .collect();
    out.sort();
    out
}

/// The resolved config of the run in `dir`; refused where `dir` is not a run folder.
pub fn read_config(dir: &Path) -> anyhow::Result<crate::config::Config> {
    let path = dir.join(CONFIG_FILE);
    if !path.exists() {
        return Err(not_a_run(dir).into());
    }
    Ok(crate::config::Config::load_resolved(&path)?)
}

fn not_a_run(dir: &Path) -> InputError {
    InputError::new(format!("{}: no {CONFIG_FILE}: not a run folder (train one with `svcca train`)", dir.display()))
}

/// [`lock`] for a run folder that must exist already (an analysis): refused, with
/// nothing written, where `dir` has no `config.toml`.
pub fn lock_run(dir: &Path, access: Access) -> anyhow::Result<Lock> {
    if !dir.join(CONFIG_FILE).exists() {
        return Err(not_a_run(dir).into());
    }
    lock(dir, access)
}

/// Held while the folder is in use; dropping it releases the lock.
#[derive(Debug)]
pub struct Lock {
    key: Option<PathBuf>,
    /// Whether this process may write the folder (false: a read-only folder).
    pub writable: bool,
}

struct Held {
    /// `None` for a read-only folder without a lock file.
    _file: Option<File>,
    access: Access,
    count: usize,
    writable: bool,
}

static HELD: Mutex<Option<HashMap<PathBuf, Held>>> = Mutex::new(None);

/// Takes the lock of folder `dir` (made if missing, unless read-only), for `access`.
/// Refused (an [`InputError`], exit 2) while another process holds it in a conflicting
/// way. With exclusive access to a writable folder, temporary files left by a killed
/// writer are removed.
pub fn lock(dir: &Path, access: Access) -> anyhow::Result<Lock> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create the folder: {e}", dir.display())))?;
    }
    let key = dir.canonicalize().map_err(|e| InputError::new(format!("{}: {e}", dir.display())))?;
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let held = held.get_or_insert_with(HashMap::new);
    if let Some(h) = held.get_mut(&key) {
        if access == Access::Exclusive && h.access == Access::Shared && h.writable {
            return Err(InputError::new(format!("{}: this process holds it shared and cannot take it exclusively", dir.display())).into());
        }
        h.count += 1;
        return Ok(Lock { key: Some(key), writable: h.writable });
    }
    let path = key.join(LOCK_FILE);
    let (file, writable) = match OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path) {
        Ok(f) => (Some(f), true),
        Err(e) if read_only_error(&e) => (File::open(&path).ok(), false),
        Err(e) => return Err(InputError::new(format!("{}: cannot open the lock file: {e}", path.display())).into()),
    };
    // A read-only folder is only read: a shared lock notices a writer at work.
    let access_taken = if writable { access } else { Access::Shared };
    if let Some(f) = &file {
        let taken = match access_taken {
            Access::Exclusive => f.try_lock(),
            Access::Shared => f.try_lock_shared(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(InputError::new(format!(
                    "{}: in use by {}; wait for it to finish (or stop it), or use another folder",
                    dir.display(),
                    holder(f)
                ))
                .into())
            }
            Err(TryLockError::Error(e)) => return Err(InputError::new(format!("{}: cannot lock it: {e}", path.display())).into()),
        }
    }
    if let (Some(mut f), Access::Exclusive) = (file.as_ref(), access_taken) {
        // Who holds it, for the message a second process prints.
        let me = format!("svcca (pid {} on {}: {})\n", std::process::id(), hostname(), command_line());
        let _ = f.set_len(0).and_then(|_| f.rewind()).and_then(|_| f.write_all(me.as_bytes()));
        crate::io::remove_stale_temporaries(&key)?
            .iter()
            .for_each(|p| tracing::info!("removed {}, left by a writer that was stopped", p.display()));
    }
    held.insert(key.clone(), Held { _file: file, access, count: 1, writable });
    Ok(Lock { key: Some(key), writable })
}

impl Drop for Lock {
    fn drop(&mut self) {
        let Some(key) = self.key.take() else { return };
        let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(map) = held.as_mut() {
            if let Some(h) = map.get_mut(&key) {
                h.count -= 1;
                if h.count == 0 {
                    map.remove(&key); // closing the file releases the OS lock
                }
            }
        }
    }
}

/// The holder's description from the lock file: the last exclusive holder wrote it.
/// Shared holders (sharded analysis tasks) write nothing, so a description whose process
/// is gone names them instead.
fn holder(mut f: &File) -> String {
    let mut text = String::new();
    let _ = f.rewind().and_then(|_| f.read_to_string(&mut text));
    let text = text.trim();
    let pid = text.split("pid ").nth(1).and_then(|s| s.split(' ').next()).and_then(|p| p.parse::<u32>().ok());
    let same_host = text.contains(&format!(" on {}:", hostname()));
    match pid {
        Some(p) if !same_host || Path::new(&format!("/proc/{p}")).exists() => text.to_string(),
        _ => "another svcca process (sharded analysis tasks, `svcca analyze --shard`, hold it together)".to_string(),
    }
}

fn read_only_error(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::PermissionDenied || e.kind() == std::io::ErrorKind::ReadOnlyFilesystem
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_string()).unwrap_or_else(|_| "this host".into())
}

fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    let name = args.first().and_then(|a| Path::new(a).file_name()).and_then(|n| n.to_str()).unwrap_or("svcca").to_string();
    std::iter::once(name).chain(args.into_iter().skip(1)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reentrant_within_a_process() {
        let dir = tempfile::tempdir().unwrap();
        let a = lock(dir.path(), Access::Exclusive).unwrap();
        let b = lock(dir.path(), Access::Exclusive).unwrap();
        assert!(a.writable && b.writable);
        drop(a);
        drop(b);
        // Released: a separate open file can take it now.
        let f = File::open(dir.path().join(LOCK_FILE)).unwrap();
        f.try_lock().unwrap();
        let text = std::fs::read_to_string(dir.path().join(LOCK_FILE)).unwrap();
        assert!(text.contains(&format!("pid {}", std::process::id())), "{text}");
    }

    #[test]
    fn a_held_lock_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let other = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(dir.path().join(LOCK_FILE)).unwrap();
        other.try_lock().unwrap();
        std::fs::write(dir.path().join(LOCK_FILE), format!("svcca (pid {} on {}: svcca train x.toml)\n", std::process::id(), hostname()))
            .unwrap();
        let e = lock(dir.path(), Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>());
        assert!(e.to_string().contains("svcca train x.toml"), "{e}");
        assert!(lock(dir.path(), Access::Shared).is_err());
        drop(other);
        lock(dir.path(), Access::Shared).unwrap();
    }
}
