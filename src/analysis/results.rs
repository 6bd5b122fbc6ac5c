//! A folder of per-unit JSON results: how every analysis survives a kill.
//!
//! Each analysis splits its work into units (a checkpoint, a layer's sweep, a pair of
//! runs, a row of a matrix) and writes each unit's result to its own JSON file as soon
//! as it is done, atomically ([`crate::io::write_json_atomic`]). A unit whose file exists
//! is done: a rerun (after a kill, a preemption, a requeued job) computes only the
//! missing ones, then reads every unit back in order and builds its tables from those
//! files, so the tables do not depend on which call computed what. Between units the
//! driver checks for a requested stop ([`crate::preempt::check`]); what is finished is
//! already on disk.
//!
//! The usual shape:
//!
//! ```ignore
//! let steps = Results::<u64, StepResult>::new(dir.join("steps"), |s| format!("step-{s:08}.json"));
//! let todo = steps.missing(&all);
//! if !todo.is_empty() {
//!     // expensive set-up needed only for missing units
//!     steps.compute(&todo, || "while analysing RUN".into(), |&s| compute(s))?;
//! }
//! let tables = steps.load_all(&all)?;
//! ```

use crate::error::InputError;
use crate::io::write_json_atomic;
use anyhow::Context;
use serde::{de::DeserializeOwned, Serialize};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// The results of type `T` kept in `dir`, one file per key `K`, named by `name`.
pub(crate) struct Results<K, T> {
    dir: PathBuf,
    name: fn(&K) -> String,
    _results: PhantomData<fn() -> T>,
}

// By hand: a derive would ask for `K: Clone, T: Clone`.
impl<K, T> Clone for Results<K, T> {
    fn clone(&self) -> Self {
        Results { dir: self.dir.clone(), name: self.name, _results: PhantomData }
    }
}

/// How many units a call computed, and how many it found already done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub computed: usize,
    pub skipped: usize,
}

impl<K: Clone, T: Serialize + DeserializeOwned> Results<K, T> {
    /// The results in `dir`, key `k` in the file `dir/name(k)`. Touches nothing: the
    /// caller creates the folder before the first [`Self::save`].
    pub(crate) fn new(dir: impl Into<PathBuf>, name: fn(&K) -> String) -> Self {
        Results { dir: dir.into(), name, _results: PhantomData }
    }

    /// The file of `key`'s result.
    pub(crate) fn path(&self, key: &K) -> PathBuf {
        self.dir.join((self.name)(key))
    }

    /// Whether `key`'s result is on disk.
    pub(crate) fn is_done(&self, key: &K) -> bool {
        self.path(key).exists()
    }

    /// The keys whose results are not on disk, in order.
    pub(crate) fn missing(&self, keys: &[K]) -> Vec<K> {
        keys.iter().filter(|k| !self.is_done(k)).cloned().collect()
    }

    /// Writes `key`'s result (atomically; an unchanged file is left alone).
    pub(crate) fn save(&self, key: &K, value: &T) -> anyhow::Result<()> {
        write_json_atomic(&self.path(key), value)
    }

    /// Reads `key`'s result; a file that does not parse is an [`InputError`] naming it.
    pub(crate) fn load(&self, key: &K) -> anyhow::Result<T> {
        read_json(&self.path(key))
    }

    /// Reads the results of `keys`, in order (all must be on disk).
    pub(crate) fn load_all(&self, keys: &[K]) -> anyhow::Result<Vec<T>> {
        keys.iter().map(|k| self.load(k)).collect()
    }

    /// Computes and saves the result of each of `todo` in order, each saved before the
    /// next begins; before each, stops with [`crate::preempt::Preempted`] (saying `at`)
    /// when a stop was requested.
    pub(crate) fn compute(&self, todo: &[K], at: impl Fn() -> String, mut f: impl FnMut(&K) -> anyhow::Result<T>) -> anyhow::Result<()> {
        for key in todo {
            crate::preempt::check(&at)?;
            let value = f(key)?;
            self.save(key, &value)?;
        }
        Ok(())
    }

    /// [`Self::compute`] for the missing ones of `keys`.
    pub(crate) fn compute_missing(
        &self,
        keys: &[K],
        at: impl Fn() -> String,
        f: impl FnMut(&K) -> anyhow::Result<T>,
    ) -> anyhow::Result<Counts> {
        let todo = self.missing(keys);
        self.compute(&todo, at, f)?;
        Ok(Counts { computed: todo.len(), skipped: keys.len() - todo.len() })
    }
}

/// Reads a JSON file written by svcca; a file that does not parse is an [`InputError`]
/// naming it (the user's to delete or fix), one that cannot be read an error naming it.
pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| InputError::new(format!("{}: {e}", path.display())))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn computes_only_what_is_missing_and_reads_all_back() {
        let dir = tempfile::tempdir().unwrap();
        let r = Results::<u64, Vec<u64>>::new(dir.path().join("steps"), |s| format!("step-{s:08}.json"));
        std::fs::create_dir(dir.path().join("steps")).unwrap();
        assert_eq!(r.path(&7), dir.path().join("steps/step-00000007.json"));
        r.save(&10, &vec![10]).unwrap();
        let keys = [0, 10, 20];
        assert_eq!(r.missing(&keys), [0, 20]);
        let mut seen = Vec::new();
        let counts = r
            .compute_missing(
                &keys,
                || "here".into(),
                |&k| {
                    seen.push(k);
                    Ok(vec![k, k])
                },
            )
            .unwrap();
        assert_eq!((seen, counts), (vec![0, 20], Counts { computed: 2, skipped: 1 }));
        assert_eq!(r.load_all(&keys).unwrap(), [vec![0, 0], vec![10], vec![20, 20]]);
        assert!(r.is_done(&20) && !r.is_done(&30));
    }

    #[test]
    fn a_bad_file_is_an_input_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let r = Results::<usize, Vec<f64>>::new(dir.path(), |i| format!("pair-{i}.json"));
        std::fs::write(r.path(&1), "{").unwrap();
        let e = r.load(&1).unwrap_err();
        assert!(e.downcast_ref::<InputError>().is_some(), "{e:#}");
        assert!(format!("{e:#}").contains("pair-1.json"), "{e:#}");
        assert!(format!("{:#}", r.load(&2).unwrap_err()).contains("pair-2.json"));
    }
}
