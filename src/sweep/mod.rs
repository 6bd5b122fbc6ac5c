//! Sweeps: one config, many runs. A `[sweep]` table lists values for any config keys:
//!
//! ```toml
//! [sweep]
//! mode = "cross"                       # every combination (default); "zip": i-th with i-th
//! train.seed = [0, 1]
//! freeze.schedule = ["none", "linear"]
//! out = "runs/my-sweep"                # optional; default runs/<config name>
//! [sweep.slurm]                        # optional: sbatch options (see `slurm`)
//! time = "02:00:00"
//! ```
//!
//! Each value is applied as a `--set key=value` (after the command line's own), so any key
//! `--set` takes can be swept, and a list-valued key takes a list of lists. Keys are
//! ordered by name; in `cross` mode the last key varies fastest. Variant `i` runs in
//! `OUT/NNN-<key>-<value>...` (the keys' last parts, e.g. `001-schedule-none-seed-1`),
//! an ordinary run folder: rerunning a variant resumes it.
//!
//! - [`slurm`]: the sbatch script of a sweep's job array, and its submission.
//! - [`report`]: final accuracy and accuracy curves over seeds, per group of variants.

pub mod report;
pub(crate) mod slurm;

use crate::config::Config;
use crate::error::InputError;
use std::path::{Path, PathBuf};

/// Keys of `[sweep]` that are not config keys.
const RESERVED: [&str; 3] = ["mode", "out", "slurm"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Cross,
    Zip,
}

/// One run of a sweep.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub index: usize,
    /// `(dotted key, value)`, in key order.
    pub assignments: Vec<(String, toml::Value)>,
    /// Its run folder.
    pub dir: PathBuf,
}

impl Variant {
    /// The assignments as `--set` arguments.
    pub fn overrides(&self) -> Vec<String> {
        self.assignments.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }

    /// `key=value` pairs, for listings.
    pub fn describe(&self) -> String {
        self.overrides().join(" ")
    }
}

/// A config's sweep: its variants and where they run.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub config: PathBuf,
    /// Command-line overrides, applied to every variant before its own values.
    pub set: Vec<String>,
    pub out: PathBuf,
    pub mode: Mode,
    pub variants: Vec<Variant>,
    /// `[sweep.slurm]`, as written.
    pub slurm: toml::Table,
}

impl Sweep {
    /// Reads the `[sweep]` of `config` (with `set` applied). `out` overrides `sweep.out`.
    /// Every variant's config is checked, so a bad value fails here, before any job.
    pub fn load(config: &Path, set: &[String], out: Option<PathBuf>) -> anyhow::Result<Sweep> {
        let base = Config::load(config, set)?;
        let name = config.display().to_string();
        let Some(table) = base.sweep else {
            return Err(InputError::new(format!("{name}: no [sweep] table (see `svcca sweep --help`)")).into());
        };
        let bad = |key: &str, why: String| InputError::new(format!("{name}: sweep.{key}: {why}"));
        let mode = match table.get("mode") {
            None => Mode::Cross,
            Some(toml::Value::String(s)) if s == "cross" => Mode::Cross,
            Some(toml::Value::String(s)) if s == "zip" => Mode::Zip,
            Some(v) => return Err(bad("mode", format!("{v}: must be \"cross\" or \"zip\"")).into()),
        };
        let out = match (out, table.get("out")) {
            (Some(o), _) => o,
            (None, Some(toml::Value::String(s))) => PathBuf::from(s),
            (None, Some(v)) => return Err(bad("out", format!("{v}: must be a folder name (a string)")).into()),
            (None, None) => {
                let stem = config.file_stem().map_or("sweep".into(), |s| s.to_string_lossy().into_owned());
                PathBuf::from("runs").join(stem)
            }
        };
        let slurm = match table.get("slurm") {
            None => toml::Table::new(),
            Some(toml::Value::Table(t)) => t.clone(),
            Some(v) => return Err(bad("slurm", format!("{v}: must be a table of sbatch options")).into()),
        };
        let mut axes: Vec<(String, Vec<toml::Value>)> = Vec::new();
        for (k, v) in &table {
            if !RESERVED.contains(&k.as_str()) {
                leaves(k, v, &mut axes);
            }
        }
        axes.sort_by(|a, b| a.0.cmp(&b.0));
        if axes.is_empty() {
            return Err(InputError::new(format!("{name}: [sweep] lists no values (e.g. train.seed = [0, 1, 2])")).into());
        }
        for (k, values) in &axes {
            if values.is_empty() {
                return Err(bad(k, "an empty list: give at least one value".into()).into());
            }
            // In zip mode a value may repeat beside other keys' different values; two
            // variants that are the same run are refused below either way.
            if mode == Mode::Cross {
                if let Some((i, v)) = values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)) {
                    let first = values.iter().position(|w| w == v).expect("found before i");
                    return Err(bad(
                        k,
                        format!(
                            "{v} is given twice (values {first} and {i}): the same value makes the same runs again, and counting them twice would shrink the report's standard deviations; give each value once"
                        ),
                    )
                    .into());
                }
            }
        }
        let combos: Vec<Vec<(String, toml::Value)>> = match mode {
            Mode::Zip => {
                let n = axes[0].1.len();
                if let Some((k, v)) = axes.iter().find(|(_, v)| v.len() != n) {
                    return Err(bad(
                        k,
                        format!("{} values, but {} has {n}: in zip mode every list has the same length", v.len(), axes[0].0),
                    )
                    .into());
                }
                (0..n).map(|i| axes.iter().map(|(k, v)| (k.clone(), v[i].clone())).collect()).collect()
            }
            Mode::Cross => {
                let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
                for (k, values) in &axes {
                    combos = combos
                        .into_iter()
                        .flat_map(|c| values.iter().map(move |v| [c.clone(), vec![(k.clone(), v.clone())]].concat()))
                        .collect();
                }
                combos
            }
        };
        let variants: Vec<Variant> = combos
            .into_iter()
            .enumerate()
            .map(|(index, assignments)| {
                let dir = out.join(folder_name(index, &assignments));
                Variant { index, assignments, dir }
            })
            .collect();
        let sweep = Sweep { config: config.to_path_buf(), set: set.to_vec(), out, mode, variants, slurm };
        let mut configs: Vec<Config> = Vec::new();
        for v in &sweep.variants {
            let c = sweep.config_of(v)?;
            // The same config twice (a repeated zip row, or values that mean the same):
            // the same run in two folders, and counted twice in the report.
            if let Some(w) = configs.iter().position(|d| *d == c).map(|i| &sweep.variants[i]) {
                return Err(InputError::new(format!(
                    "{name}: [sweep] variants {} ({}) and {} ({}) are the same run: each variant must differ from the others; remove the repeated value",
                    w.index,
                    w.describe(),
                    v.index,
                    v.describe()
                ))
                .into());
            }
            configs.push(c);
        }
        Ok(sweep)
    }

    /// Variant `index`, or an error saying how many there are.
    pub fn variant(&self, index: usize) -> Result<&Variant, InputError> {
        self.variants.get(index).ok_or_else(|| {
            InputError::new(format!(
                "--variant {index}: {} has {} variants (0..={})",
                self.config.display(),
                self.variants.len(),
                self.variants.len() - 1
            ))
        })
    }

    /// The config of variant `v`: the file, the command line's overrides, then its values.
    pub fn config_of(&self, v: &Variant) -> Result<Config, InputError> {
        let mut set = self.set.clone();
        set.extend(v.overrides());
        let mut c = Config::load(&self.config, &set)
            .map_err(|e| InputError::new(format!("[sweep] variant {} ({}): {}", v.index, v.describe(), e.message)))?;
        c.sweep = None;
        Ok(c)
    }
}

/// The dotted keys and value lists under a `[sweep]` entry (`train.seed = [..]` parses
/// as a nested table; `"train.seed" = [..]` as one key: both mean the same).
fn leaves(prefix: &str, v: &toml::Value, out: &mut Vec<(String, Vec<toml::Value>)>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                leaves(&format!("{prefix}.{k}"), v, out);
            }
        }
        toml::Value::Array(a) => out.push((prefix.to_string(), a.clone())),
        // A single value: a sweep of one (reported as such by the list length check).
        other => out.push((prefix.to_string(), vec![other.clone()])),
    }
}

/// `NNN-<last key part>-<value>...`, with anything but letters, digits, `.` and `_`
/// turned into `_` so that it is a safe folder name.
fn folder_name(index: usize, assignments: &[(String, toml::Value)]) -> String {
    let mut name = format!("{index:03}");
    for (k, v) in assignments {
        let key = k.rsplit('.').next().unwrap_or(k);
        let value = match v {
            toml::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        name.push('-');
        name.push_str(key);
        name.push('-');
        name.extend(value.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '_' }));
    }
    name
}

/// The variant a command runs: `--variant`, else `SLURM_ARRAY_TASK_ID` (an array task).
pub(crate) fn variant_index(flag: Option<usize>) -> Result<Option<usize>, InputError> {
    if flag.is_some() {
        return Ok(flag);
    }
    match std::env::var("SLURM_ARRAY_TASK_ID") {
        Ok(v) => v.trim().parse().map(Some).map_err(|_| InputError::new(format!("SLURM_ARRAY_TASK_ID={v}: not a variant index"))),
        Err(_) => Ok(None),
    }
}

/// The config and run folder a `svcca train`/`run` command works on: the config itself
/// (folder `out`, default `runs/<name>`), or with a `[sweep]`, its variant `variant`
/// (folder inside the sweep's, `out` standing for the sweep's folder).
pub fn resolve(config: &Path, set: &[String], out: Option<PathBuf>, variant: Option<usize>) -> anyhow::Result<(Config, PathBuf)> {
    let plain = Config::load(config, set)?;
    if plain.sweep.is_none() {
        if let Some(i) = variant {
            return Err(InputError::new(format!("--variant {i}: {} has no [sweep]", config.display())).into());
        }
        let out = out.unwrap_or_else(|| {
            let stem = config.file_stem().map_or("run".into(), |s| s.to_string_lossy().into_owned());
            PathBuf::from("runs").join(stem)
        });
        return Ok((plain, out));
    }
    let sweep = Sweep::load(config, set, out)?;
    let Some(i) = variant_index(variant)? else {
        return Err(InputError::new(format!(
            "{} has a [sweep] of {} variants: run one with --variant I (list them with `svcca sweep {} --list`)",
            config.display(),
            sweep.variants.len(),
            config.display()
        ))
        .into());
    };
    let v = sweep.variant(i)?;
    tracing::info!("variant {i} of {}: {} in {}", sweep.variants.len(), v.describe(), v.dir.display());
    Ok((sweep.config_of(v)?, v.dir.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn cross_and_zip() {
        let (_d, p) = write("[train]\nsteps = 5\n[sweep]\ntrain.seed = [0, 1]\nfreeze.schedule = [\"none\", \"linear\"]\n");
        let s = Sweep::load(&p, &[], Some("o".into())).unwrap();
        assert_eq!(s.variants.len(), 4);
        // Keys by name: freeze.schedule outer, train.seed fastest.
        assert_eq!(s.variants[1].describe(), "freeze.schedule=\"none\" train.seed=1");
        assert_eq!(s.variants[2].dir, PathBuf::from("o/002-schedule-linear-seed-0"));
        let c = s.config_of(&s.variants[3]).unwrap();
        assert_eq!((c.train.seed, c.freeze.schedule), (1, crate::config::FreezeSchedule::Linear));
        assert!(c.sweep.is_none());

        let (_d, p) = write("[sweep]\nmode = \"zip\"\ntrain.seed = [3, 4]\n\"train.lr\" = [0.1, 0.2]\n");
        let s = Sweep::load(&p, &[], None).unwrap();
        assert_eq!(s.variants.len(), 2);
        assert_eq!(s.variants[1].describe(), "train.lr=0.2 train.seed=4");
        assert_eq!(s.variants[0].dir, PathBuf::from("runs/s/000-lr-0.1-seed-3"));
    }

    #[test]
    fn bad_sweeps_name_the_key() {
        let (_d, p) = write("[sweep]\nmode = \"zip\"\ntrain.seed = [3, 4]\ntrain.lr = [0.1]\n");
        let e = Sweep::load(&p, &[], None).unwrap_err().to_string();
        assert!(e.contains("sweep.train.seed") && e.contains("zip"), "{e}");
        let (_d, p) = write("[sweep]\ntrain.sed = [3, 4]\n");
        let e = Sweep::load(&p, &[], None).unwrap_err().to_string();
        assert!(e.contains("variant 0") && e.contains("train.sed"), "{e}");
        let (_d, p) = write("[sweep]\ntrain.seed = []\n");
        assert!(Sweep::load(&p, &[], None).unwrap_err().to_string().contains("empty"));
        // A config with a sweep needs a variant; one without refuses --variant.
        let (_d, p) = write("[sweep]\ntrain.seed = [3, 4]\n");
        if std::env::var("SLURM_ARRAY_TASK_ID").is_err() {
            assert!(resolve(&p, &[], None, None).unwrap_err().to_string().contains("--variant"));
        }
        let e = resolve(&p, &[], None, Some(2)).unwrap_err().to_string();
        assert!(e.contains("2 variants"), "{e}");
        let (c, dir) = resolve(&p, &[], None, Some(1)).unwrap();
        assert_eq!((c.train.seed, dir), (4, PathBuf::from("runs/s/001-seed-4")));
        let (_d, p) = write("[train]\nseed = 1\n");
        assert!(resolve(&p, &[], None, Some(0)).is_err());
    }
}
