//! The run folder and who may write it.
//!
//! One writer at a time: every command that writes a folder (training, analysis, an
//! experiment's or sweep's folder, compare-runs' output) first takes its lock, an OS file
//! lock (`flock`) on `FOLDER/.svcca.lock`. The OS drops it when the process ends, however
//! it ends, so a killed job never leaves a stale lock behind. A second process gets exit
//! status 2 and a message naming the holder, before it has written anything.
//!
//! - **Exclusive** (training, an analysis, `--merge`): the only process in the folder.
//!   Before it first writes a folder (its own, not another run's inside it), the owner
//!   clears the temporary files of svcca's that a killed writer left there
//!   ([`before_writing`], called by `crate::io`): only after the command was accepted,
//!   only svcca's own names, one folder at a time, never recursively.
//! - **Shared** (`svcca analyze --shard I/N`): the tasks of a job array analyse one run
//!   together, each writing its own units; they exclude training and unsharded analysis.
//! - **Read-only folders** (another user's results, an archive): the lock file cannot be
//!   created or opened for writing; a finished run is still read (and reported) without
//!   writing, and a shared lock is taken where the lock file exists, so that a writer
//!   still at work is noticed.
//!
//! The lock file is svcca's own: opened without following a symbolic link, and refused
//! (exit 2, named) where it is a link, not a regular file, or has other names (hard
//! links), so that writing the holder's description into it never writes another file.
//!
//! Within one process the lock is re-entrant (`svcca run` holds it across training and
//! analysis, which take it again): `flock` locks belong to an open file, so a second open
//! in the same process would otherwise lock itself out.

pub(crate) mod checkpoint;

use crate::error::InputError;
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The resolved config of a run, written when the run starts.
pub(crate) const CONFIG_FILE: &str = "config.toml";
pub(crate) const LOCK_FILE: &str = ".svcca.lock";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    Exclusive,
    Shared,
}

/// The name of a file of one step (a checkpoint, a step's stored activations):
/// `step-NNNNNNNN.safetensors`.
pub(crate) fn step_file_name(step: u64) -> String {
    format!("step-{step:08}.safetensors")
}

/// The step a [`step_file_name`] stands for (`None` for other files, temporaries too).
pub(crate) fn step_of(name: &str) -> Option<u64> {
    name.strip_prefix("step-")?.strip_suffix(".safetensors")?.parse().ok()
}

/// The step files in `dir`, by step: none where `dir` does not exist. Refused (an
/// [`InputError`] naming it) where `dir` is a symbolic link, not a folder, or cannot be
/// read, and where a step file is a link or not a regular file: taking such a folder as
/// empty would start the run over (and drop its metrics).
pub(crate) fn step_files(dir: &Path) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(unreadable(dir, &e).into()),
        Ok(m) if m.is_symlink() => {
            return Err(InputError::new(format!(
            "{}: is a symbolic link, and svcca follows no link it did not make; make it a folder (move its files in) or use another --out",
            dir.display()
        ))
            .into())
        }
        Ok(m) if !m.is_dir() => {
            return Err(
                InputError::new(format!("{}: is not a folder; move it away (svcca keeps its step files there)", dir.display())).into()
            )
        }
        Ok(_) => {}
    }
    let entries = std::fs::read_dir(dir).map_err(|e| unreadable(dir, &e))?;
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| unreadable(dir, &e))?;
        let Some(step) = e.file_name().to_str().and_then(step_of) else { continue };
        let kind = e.file_type().map_err(|err| unreadable(&e.path(), &err))?;
        if !kind.is_file() {
            return Err(InputError::new(format!(
                "{}: is not a regular file ({}), and svcca follows no link it did not make; move it away",
                e.path().display(),
                if kind.is_symlink() { "a symbolic link" } else { "a folder or special file" }
            ))
            .into());
        }
        out.push((step, e.path()));
    }
    out.sort();
    Ok(out)
}

/// `path` cannot be read: what to do about it.
fn unreadable(path: &Path, e: &std::io::Error) -> InputError {
    let what = match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "cannot be read by this user (permission denied): ask its owner for access, or use a copy".to_string()
        }
        _ => format!("cannot be read: {e}"),
    };
    InputError::new(format!("{}: {what}", path.display()))
}

/// The resolved config of the run in `dir`; refused where `dir` is not a run folder,
/// cannot be read, or its `config.toml` does not parse.
pub(crate) fn read_config(dir: &Path) -> anyhow::Result<crate::config::Config> {
    check_run(dir)?;
    Ok(crate::config::Config::load_resolved(&dir.join(CONFIG_FILE))?)
}

/// Refused where `dir` is not a run folder (no `config.toml`) or cannot be read, each
/// said as it is.
fn check_run(dir: &Path) -> Result<(), InputError> {
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(InputError::new(format!("{}: no such folder (train a run there with `svcca train`)", dir.display())))
        }
        Err(e) => return Err(unreadable(dir, &e)),
        Ok(m) if !m.is_dir() => return Err(InputError::new(format!("{}: not a folder, so not a run folder", dir.display()))),
        Ok(_) => {}
    }
    if let Err(e) = std::fs::read_dir(dir) {
        return Err(unreadable(dir, &e));
    }
    match std::fs::metadata(dir.join(CONFIG_FILE)) {
        // An activation folder written elsewhere (`analysis::activation_folder`) needs none.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir.join("activations/manifest.json").is_file() => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(not_a_run(dir)),
        Err(e) => Err(unreadable(&dir.join(CONFIG_FILE), &e)),
        Ok(_) => Ok(()),
    }
}

fn not_a_run(dir: &Path) -> InputError {
    InputError::new(format!(
        "{}: no {CONFIG_FILE}: not a run folder (train one with `svcca train`), nor an activation folder (activations/manifest.json: docs/analysis.md)",
        dir.display()
    ))
}

/// [`lock`] for a run folder that must exist already (an analysis): refused, with
/// nothing written, where `dir` has no `config.toml`.
pub(crate) fn lock_run(dir: &Path, access: Access) -> anyhow::Result<Lock> {
    check_run(dir)?;
    lock(dir, access)
}

/// Held while the folder is in use; dropping it releases the lock.
#[derive(Debug)]
pub(crate) struct Lock {
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
    /// The folders (canonical) whose stale temporaries this holder has cleared (or
    /// found none in): each once, before its first write there.
    cleared: HashSet<PathBuf>,
}

static HELD: Mutex<Option<HashMap<PathBuf, Held>>> = Mutex::new(None);

/// Takes the lock of folder `dir` (made if missing, unless read-only), for `access`.
/// Refused (an [`InputError`], exit 2) while another process holds it in a conflicting
/// way, and where `dir` is a dangling symbolic link or not a folder, or its lock file is
/// not svcca's (a link, not a regular file). Removes nothing: see [`before_writing`].
pub(crate) fn lock(dir: &Path, access: Access) -> anyhow::Result<Lock> {
    match std::fs::symlink_metadata(dir) {
        Ok(m) if m.is_symlink() && !dir.exists() => {
            let target = std::fs::read_link(dir).map(|t| t.display().to_string()).unwrap_or_else(|_| "?".into());
            return Err(InputError::new(format!(
                "{}: is a dangling symbolic link (to {target}, which does not exist); make the folder it points to, or remove the link, or use another folder",
                dir.display()
            ))
            .into());
        }
        Ok(_) if !dir.is_dir() => {
            return Err(InputError::new(format!("{}: exists and is not a folder; use another folder", dir.display())).into())
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| InputError::new(format!("{}: cannot create the folder: {e}", dir.display())))?
        }
        Err(e) => return Err(unreadable(dir, &e).into()),
    }
    let key = dir.canonicalize().map_err(|e| InputError::new(format!("{}: {e}", dir.display())))?;
    // From the first lock on, every write into a folder goes through the clean-up.
    crate::io::on_first_write(before_writing);
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
    let (file, writable) = match open_lock_file(&path, true) {
        Ok(f) => (Some(f), true),
        Err(e) if read_only_error(&e) => match open_lock_file(&path, false) {
            Ok(f) => (Some(f), false),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound || read_only_error(&e) => (None, false),
            Err(e) => return Err(lock_file_error(&path, &e).into()),
        },
        Err(e) => return Err(lock_file_error(&path, &e).into()),
    };
    if let Some(f) = &file {
        check_lock_file(&path, f)?;
    }
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
    }
    held.insert(key.clone(), Held { _file: file, access, count: 1, writable, cleared: HashSet::new() });
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

/// Opens the lock file `path` (read-write and made if missing, or read-only) without
/// following a symbolic link, and without blocking on a FIFO.
fn open_lock_file(path: &Path, write: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    if write {
        options.write(true).create(true).truncate(false);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    options.open(path)
}

/// The lock file `path` could not be opened: said as it is (a link, a folder, ...).
fn lock_file_error(path: &Path, e: &std::io::Error) -> InputError {
    let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
    if link || e.raw_os_error() == Some(libc::ELOOP) {
        return InputError::new(format!(
            "{}: the lock file is a symbolic link, and svcca follows no link it did not make (it would write into the file it points to); remove the link (svcca makes its own lock file), or use another folder",
            path.display()
        ));
    }
    if path.is_dir() {
        return InputError::new(format!("{}: the lock file is a folder; move it away (svcca makes its own lock file)", path.display()));
    }
    InputError::new(format!("{}: cannot open the lock file: {e}", path.display()))
}

/// Refused where the open lock file is not a regular file of one name (a FIFO, a device,
/// a hard link to another file): svcca writes into it.
fn check_lock_file(path: &Path, f: &File) -> Result<(), InputError> {
    let meta = f.metadata().map_err(|e| InputError::new(format!("{}: cannot read the lock file: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(InputError::new(format!(
            "{}: the lock file is not a regular file; move it away (svcca makes its own lock file)",
            path.display()
        )));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.nlink() > 1 {
            return Err(InputError::new(format!(
                "{}: the lock file has other names (hard links: {}), and svcca writes into it; remove it (svcca makes its own lock file)",
                path.display(),
                meta.nlink()
            )));
        }
    }
    Ok(())
}

/// Called before svcca writes a file into `dir`: where this process holds the lock of
/// `dir`'s run folder (the nearest folder above with a lock file) exclusively and may
/// write it, clears the stale temporaries of svcca's from `dir` itself ([`crate::io`]),
/// once per folder and holder. Nothing happens in folders of other writers (a sweep's
/// variant inside a sweep folder, a run inside an experiment), unless this process holds
/// their lock too, nor in a folder this process only shares or reads. Holding the lock
/// exclusively means no other writer is at work there; and since every write of this
/// process into `dir` comes through here first, none of its own temporaries exists yet.
pub(crate) fn before_writing(dir: &Path) -> anyhow::Result<()> {
    let Ok(dir) = dir.canonicalize() else { return Ok(()) };
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    let Some(map) = held.as_mut() else { return Ok(()) };
    // The nearest folder with a lock: ours, or another writer's (no clean-up then).
    let Some(owner) = dir.ancestors().find(|a| map.contains_key(*a) || a.join(LOCK_FILE).symlink_metadata().is_ok()) else {
        return Ok(());
    };
    let Some(h) = map.get_mut(owner) else { return Ok(()) };
    if h.access != Access::Exclusive || !h.writable || h.cleared.contains(&dir) {
        return Ok(());
    }
    h.cleared.insert(dir.clone());
    for p in crate::io::remove_stale_temporaries(&dir)? {
        tracing::info!("removed {}, left by a writer that was stopped", p.display());
    }
    Ok(())
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

    #[cfg(unix)]
    #[test]
    fn a_lock_file_that_is_not_svccas_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim.txt");
        std::fs::write(&victim, b"mine").unwrap();
        let run = dir.path().join("run");
        std::fs::create_dir(&run).unwrap();
        // A symbolic link, to a file or to nothing.
        std::os::unix::fs::symlink("../victim.txt", run.join(LOCK_FILE)).unwrap();
        let e = lock(&run, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains(".svcca.lock") && e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&victim).unwrap();
        let e = lock(&run, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("symbolic link"), "{e}");
        assert!(!victim.exists(), "the link was followed");
        std::fs::write(&victim, b"mine").unwrap();
        // A hard link, a folder, a FIFO.
        std::fs::remove_file(run.join(LOCK_FILE)).unwrap();
        std::fs::hard_link(&victim, run.join(LOCK_FILE)).unwrap();
        let e = lock(&run, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("hard links"), "{e}");
        std::fs::remove_file(run.join(LOCK_FILE)).unwrap();
        std::fs::create_dir(run.join(LOCK_FILE)).unwrap();
        let e = lock(&run, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("is a folder"), "{e}");
        std::fs::remove_dir(run.join(LOCK_FILE)).unwrap();
        let fifo = std::ffi::CString::new(run.join(LOCK_FILE).to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
        let e = lock(&run, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("not a regular file"), "{e}");
        assert_eq!(std::fs::read(&victim).unwrap(), b"mine");
    }

    #[cfg(unix)]
    #[test]
    fn a_dangling_link_or_a_file_as_the_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("out");
        std::os::unix::fs::symlink(dir.path().join("gone"), &link).unwrap();
        let e = lock(&link, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("dangling symbolic link"), "{e}");
        assert!(!dir.path().join("gone").exists());
        let file = dir.path().join("file");
        std::fs::write(&file, b"").unwrap();
        let e = lock(&file, Access::Exclusive).unwrap_err();
        assert!(e.is::<InputError>() && e.to_string().contains("not a folder"), "{e}");
    }

    #[test]
    fn stale_temporaries_go_only_from_folders_this_process_writes_and_owns() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("sweep");
        let variant = root.join("variants/v0");
        let report = root.join("report");
        let other = root.join("deeper/sub");
        for d in [&variant, &report, &other] {
            std::fs::create_dir_all(d).unwrap();
        }
        // A variant with its own lock file: another writer's folder.
        std::fs::write(variant.join(LOCK_FILE), b"").unwrap();
        let stale = ".x.csv.svcca-a1B2c3.tmp";
        for d in [&root, &variant, &report, &other] {
            std::fs::write(d.join(stale), b"").unwrap();
        }
        // Not before a write: taking the lock removes nothing.
        let lock = lock(&root, Access::Exclusive).unwrap();
        assert!(root.join(stale).exists());
        crate::io::write_atomic(&report.join("runs.csv"), b"1").unwrap();
        assert!(!report.join(stale).exists());
        assert!(root.join(stale).exists() && other.join(stale).exists(), "not written: not cleared");
        // Into the variant's folder (its lock not held here): its temporaries stay.
        crate::io::write_atomic(&variant.join("x.csv"), b"1").unwrap();
        assert!(variant.join(stale).exists());
        crate::io::write_atomic(&root.join("index.csv"), b"1").unwrap();
        assert!(!root.join(stale).exists());
        assert!(other.join(stale).exists());
        // Once per folder: a temporary made after the first write stays (a writer of this
        // process may be filling it).
        std::fs::write(report.join(stale), b"").unwrap();
        crate::io::write_atomic(&report.join("runs.csv"), b"2").unwrap();
        assert!(report.join(stale).exists());
        drop(lock);
        // Shared access clears nothing.
        let _shared = super::lock(&root, Access::Shared).unwrap();
        std::fs::write(root.join(stale), b"").unwrap();
        crate::io::write_atomic(&root.join("index.csv"), b"3").unwrap();
        assert!(root.join(stale).exists());
    }
}
