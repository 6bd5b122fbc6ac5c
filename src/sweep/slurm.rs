//! `svcca sweep CONFIG --submit`: one Slurm job array for a sweep, one task per variant.
//!
//! The batch script comes from a template (`scripts/slurm/sweep.sbatch`, built into the
//! binary; `--template FILE` takes an edited copy) whose `@SBATCH@` becomes the
//! `#SBATCH` lines and `@COMMAND@` the `svcca run CONFIG --variant $SLURM_ARRAY_TASK_ID`
//! command. It is written to `OUT/slurm/sweep.sbatch`, task logs go to
//! `OUT/slurm/logs/<array job>_<task>.out`, and submitted job ids are appended to
//! `OUT/slurm/jobs.txt`.
//!
//! Options come from `[sweep.slurm]` (keys as the fields of [`Options`]), then flags.

use super::Sweep;
use crate::error::InputError;
use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub const TEMPLATE: &str = include_str!("../../scripts/slurm/sweep.sbatch");

/// sbatch options of a sweep.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Options {
    /// `--job-name` (default `svcca-<config name>`).
    pub job_name: Option<String>,
    /// `--time`, e.g. "02:00:00" (default: the partition's).
    pub time: Option<String>,
    /// `--gres=gpu:N`.
    pub gpus: Option<u32>,
    pub cpus_per_task: Option<u32>,
    /// `--mem`, e.g. "16G".
    pub mem: Option<String>,
    pub partition: Option<String>,
    /// At most this many tasks at once (`--array=0-N%CAP`).
    pub max_parallel: Option<usize>,
    /// SIGUSR1 this many seconds before the time limit (`--signal=B:USR1@SECONDS`): time
    /// to finish the current step and write a checkpoint.
    pub signal_seconds: u64,
    /// Further sbatch options, verbatim (`"--account=abc"`).
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            job_name: None,
            time: None,
            gpus: None,
            cpus_per_task: None,
            mem: None,
            partition: None,
            max_parallel: None,
            signal_seconds: 120,
            extra: Vec::new(),
        }
    }
}

impl Options {
    /// `[sweep.slurm]` of a sweep.
    pub fn from_sweep(sweep: &Sweep) -> Result<Options, InputError> {
        Options::deserialize(sweep.slurm.clone())
            .map_err(|e| InputError::new(format!("{}: sweep.slurm: {}", sweep.config.display(), e.message().trim())))
    }

    /// The `#SBATCH` lines for an array of `tasks` tasks logging to `logs`.
    pub fn lines(&self, tasks: usize, logs: &Path, default_name: &str) -> Vec<String> {
        let mut o = vec![
            format!("--job-name={}", self.job_name.as_deref().unwrap_or(default_name)),
            match self.max_parallel {
                Some(cap) => format!("--array=0-{}%{cap}", tasks - 1),
                None => format!("--array=0-{}", tasks - 1),
            },
            "--requeue".to_string(),
            format!("--signal=B:USR1@{}", self.signal_seconds),
            "--open-mode=append".to_string(),
            format!("--output={}/%A_%a.out", logs.display()),
        ];
        if let Some(t) = &self.time {
            o.push(format!("--time={t}"));
        }
        if let Some(g) = self.gpus {
            o.push(format!("--gres=gpu:{g}"));
        }
        if let Some(c) = self.cpus_per_task {
            o.push(format!("--cpus-per-task={c}"));
        }
        if let Some(m) = &self.mem {
            o.push(format!("--mem={m}"));
        }
        if let Some(p) = &self.partition {
            o.push(format!("--partition={p}"));
        }
        o.extend(self.extra.iter().cloned());
        o.into_iter().map(|l| format!("#SBATCH {l}")).collect()
    }
}

/// `--mem` when neither `sweep.slurm.mem` nor `--mem` gives it: what the largest
/// variant's learning-dynamics analysis needs side by side (its estimate, see
/// `analysis::memory`), over the three quarters of a job's memory an analysis takes by
/// default, plus 2 GiB for training and the data; at least 4G, at most 32G (past that the
/// analysis streams through what it gets).
pub fn default_mem(sweep: &Sweep) -> anyhow::Result<String> {
    let mut need = 0;
    for v in &sweep.variants {
        need = need.max(crate::analysis::memory::side_by_side_need(&sweep.config_of(v)?)?);
    }
    let gib = (need as f64 / 0.75 / (1u64 << 30) as f64).ceil() as u64 + 2;
    Ok(format!("{}G", gib.clamp(4, 32)))
}

/// A word for bash: as it is when plain, else single-quoted.
pub fn quote(word: &str) -> String {
    let plain = !word.is_empty() && word.chars().all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    Ok(if p.is_absolute() { p.to_path_buf() } else { std::env::current_dir()?.join(p) })
}

/// The batch script of `sweep`, run by `svcca` (the path of this binary, usually),
/// from `template` (None: the built-in one).
pub fn script(sweep: &Sweep, options: &Options, svcca: &Path, template: Option<&str>) -> anyhow::Result<String> {
    let template = template.unwrap_or(TEMPLATE);
    for field in ["@SBATCH@", "@COMMAND@"] {
        if !template.contains(field) {
            return Err(InputError::new(format!("the sbatch template has no {field} line (see scripts/slurm/sweep.sbatch)")).into());
        }
    }
    let out = absolute(&sweep.out)?;
    let logs = out.join("slurm").join("logs");
    let name = format!("svcca-{}", sweep.config.file_stem().map_or("sweep".into(), |s| s.to_string_lossy()));
    let mut command = vec![
        quote(&absolute(svcca)?.display().to_string()),
        "run".into(),
        quote(&absolute(&sweep.config)?.display().to_string()),
        "--out".into(),
        quote(&out.display().to_string()),
        "--variant".into(),
        "\"$SLURM_ARRAY_TASK_ID\"".into(),
    ];
    for s in &sweep.set {
        // `-key` is an `--unset key` of the command line (see `config::unset`).
        match s.strip_prefix('-') {
            Some(key) => command.extend(["--unset".into(), quote(key)]),
            None => command.extend(["--set".into(), quote(s)]),
        }
    }
    Ok(template.replace("@SBATCH@", &options.lines(sweep.variants.len(), &logs, &name).join("\n")).replace("@COMMAND@", &command.join(" ")))
}

/// Writes the script to `OUT/slurm/sweep.sbatch` and (unless `dry_run`) submits it;
/// returns the script's path and the array job id.
pub fn submit(sweep: &Sweep, script_text: &str, dry_run: bool) -> anyhow::Result<(PathBuf, Option<String>)> {
    let dir = sweep.out.join("slurm");
    std::fs::create_dir_all(dir.join("logs")).map_err(|e| InputError::new(format!("{}: cannot create: {e}", dir.display())))?;
    let path = dir.join("sweep.sbatch");
    crate::io::write_atomic(&path, script_text.as_bytes())?;
    if dry_run {
        return Ok((path, None));
    }
    let output = std::process::Command::new("sbatch").arg("--parsable").arg(&path).output().map_err(|e| {
        InputError::new(format!("cannot run sbatch ({e}): is Slurm installed here? (scripts/slurm/local-cluster.sh starts one)"))
    })?;
    if !output.status.success() {
        anyhow::bail!("sbatch {} failed: {}", path.display(), String::from_utf8_lossy(&output.stderr).trim());
    }
    // --parsable prints "jobid" or "jobid;cluster".
    let id = String::from_utf8_lossy(&output.stdout).trim().split(';').next().unwrap_or("").to_string();
    use std::io::Write;
    let jobs = dir.join("jobs.txt");
    let mut f =
        std::fs::OpenOptions::new().create(true).append(true).open(&jobs).with_context(|| format!("cannot write {}", jobs.display()))?;
    writeln!(f, "{id}")?;
    Ok((path, Some(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_memory_request_follows_the_largest_variants_analysis() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sw.toml");
        // The paper's convnet: a small probe and the shipped one.
        std::fs::write(&config, "[data]\ndataset = \"cifar10\"\npath = \"nowhere\"\n[sweep]\nanalysis.probe_size = [100, 2560]\n").unwrap();
        let both = Sweep::load(&config, &[], Some(dir.path().join("a"))).unwrap();
        let only_small = dir.path().join("small.toml");
        std::fs::write(&only_small, "[data]\ndataset = \"cifar10\"\npath = \"nowhere\"\n[sweep]\nanalysis.probe_size = [50, 100]\n")
            .unwrap();
        let small = Sweep::load(&only_small, &[], Some(dir.path().join("b"))).unwrap();
        let gib = |s: &Sweep| default_mem(s).unwrap().trim_end_matches('G').parse::<u64>().unwrap();
        let (large, little) = (gib(&both), gib(&small));
        assert!(little < large && (4..=8).contains(&little), "{little}G against {large}G");
        assert!(large > 8 && large <= 32, "{large}G");
    }

    #[test]
    fn script_has_the_array_and_the_command() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("sw.toml");
        std::fs::write(&config, "[sweep]\ntrain.seed = [0, 1, 2]\n[sweep.slurm]\ntime = \"01:00:00\"\nmax_parallel = 2\ngpus = 1\n")
            .unwrap();
        let sweep = Sweep::load(&config, &["train.steps=7".into(), "data.path=/a b".into()], Some(dir.path().join("out"))).unwrap();
        let o = Options::from_sweep(&sweep).unwrap();
        let text = script(&sweep, &o, Path::new("/bin/svcca"), None).unwrap();
        for want in [
            "#SBATCH --array=0-2%2",
            "#SBATCH --requeue",
            "#SBATCH --signal=B:USR1@120",
            "#SBATCH --time=01:00:00",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --job-name=svcca-sw",
            "/bin/svcca run ",
            "--variant \"$SLURM_ARRAY_TASK_ID\" --set train.steps=7 --set 'data.path=/a b'",
            "scontrol requeue",
        ] {
            assert!(text.contains(want), "no {want:?} in\n{text}");
        }
        assert!(!text.contains("@SBATCH@") && !text.contains("@COMMAND@"));
        let mut bad = sweep.clone();
        bad.slurm.insert("gpu".into(), toml::Value::Integer(1));
        assert!(Options::from_sweep(&bad).unwrap_err().to_string().contains("sweep.slurm"));
        assert!(script(&sweep, &o, Path::new("/x"), Some("#!/bin/sh\n")).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a/b.toml"), "a/b.toml");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
