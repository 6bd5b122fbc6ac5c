//! `svcca sweep CONFIG --submit`: one Slurm job array for a sweep, one task per variant.
//!
//! The batch script comes from a template (`scripts/slurm/sweep.sbatch`, built into the
//! binary; `--template FILE` takes an edited copy) whose `@SBATCH@` becomes the
//! `#SBATCH` lines and `@COMMAND@` the `svcca run CONFIG --variant $SLURM_ARRAY_TASK_ID`
//! command. It is written to `OUT/slurm/sweep.sbatch`, task logs go to
//! `OUT/slurm/logs/<array job>_<task>.out`, and submitted job ids are appended to
//! `OUT/slurm/jobs.txt`.
//!
//! Options come from `[sweep.slurm]` (keys as the fields of [`Options`]), then flags;
//! [`default_mem`] and [`gpus_per_task`] fill in what neither gives.

use super::Sweep;
use crate::device::DeviceChoice;
use crate::error::InputError;
use anyhow::Context;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub(crate) const TEMPLATE: &str = include_str!("../../scripts/slurm/sweep.sbatch");

/// sbatch options of a sweep.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct Options {
    /// `--job-name` (default `svcca-<config name>`).
    pub job_name: Option<String>,
    /// `--time`, e.g. "02:00:00" (default: the partition's).
    pub time: Option<String>,
    /// `--gres=gpu:N`; 0 requests none. Unset: see [`gpus_per_task`].
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
    pub(crate) fn from_sweep(sweep: &Sweep) -> Result<Options, InputError> {
        Options::deserialize(sweep.slurm.clone())
            .map_err(|e| InputError::new(format!("{}: sweep.slurm: {}", sweep.config.display(), e.message().trim())))
    }

    /// The `#SBATCH` lines for an array of `tasks` tasks logging to `logs`.
    pub(crate) fn lines(&self, tasks: usize, logs: &Path, default_name: &str) -> Vec<String> {
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
        if let Some(g) = self.gpus.filter(|&g| g > 0) {
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
pub(crate) fn default_mem(sweep: &Sweep) -> anyhow::Result<String> {
    let mut need = 0;
    for v in &sweep.variants {
        need = need.max(crate::analysis::memory::side_by_side_need(&sweep.config_of(v)?)?);
    }
    let gib = (need as f64 / 0.75 / (1u64 << 30) as f64).ceil() as u64 + 2;
    Ok(format!("{}G", gib.clamp(4, 32)))
}

/// The GPUs each task requests (`--gres=gpu:N`), given `options.gpus` as the user set it
/// (`sweep.slurm.gpus`, `--gpus`): that when set (0 requests none), else one where any
/// variant's `train.device` wants a GPU (`cuda`, `cuda:N`) and none otherwise. One array
/// has one set of options, so a sweep that mixes `cpu` and `cuda` variants requests a GPU
/// for every task. A GPU request of the user's own among the verbatim options
/// (`--gres...`, `--gpus...`, `-G`) stands instead: None, nothing added, nothing checked.
///
/// Refused ([`InputError`]): a variant on `cuda:N` with N at or past the GPUs requested,
/// since Slurm renumbers the GPUs it gives a task from 0 and the task would not see that
/// one. With none requested, a variant on `cuda` is warned about (the partition may give
/// GPUs without a request), and `auto` variants are told about (info) when the default
/// chose none: their tasks run on the CPU unless the partition gives them GPUs.
pub(crate) fn gpus_per_task(sweep: &Sweep, options: &Options) -> Result<Option<u32>, InputError> {
    let requests_gpus = |o: &String| {
        let name = o.split(['=', ' ']).next().unwrap_or("");
        name == "--gres" || name.starts_with("--gpus") || name.starts_with("-G")
    };
    if options.extra.iter().any(requests_gpus) {
        return Ok(None);
    }
    let mut devices = Vec::with_capacity(sweep.variants.len());
    for v in &sweep.variants {
        devices.push((v, sweep.config_of(v)?.train.device));
    }
    let gpus = options.gpus.unwrap_or(u32::from(devices.iter().any(|(_, d)| d.wants_gpu())));
    let describe = |v: &super::Variant| format!("{} variant {} ({})", sweep.config.display(), v.index, v.describe());
    if gpus == 0 {
        // `gpus = 0` was asked for: a GPU variant is the user's call, on their partition.
        if let Some((v, d)) = devices.iter().find(|(_, d)| d.wants_gpu()) {
            tracing::warn!(
                "{}: train.device = \"{d}\", but the tasks request no GPU (gpus = 0): they fail unless the partition gives each a GPU",
                describe(v)
            );
        }
        if options.gpus.is_none() && devices.iter().any(|(_, d)| *d == DeviceChoice::Auto) {
            tracing::info!(
                "train.device = \"auto\" and no GPU requested: the tasks will run on the CPU unless the partition gives them GPUs; \
                 to train on a GPU, request one per task with --gpus 1 (sweep.slurm.gpus = 1) or set train.device = \"cuda\""
            );
        }
        return Ok(Some(0));
    }
    for (v, d) in &devices {
        if let DeviceChoice::Cuda(Some(i)) = *d {
            if i >= gpus as usize {
                let seen = match gpus {
                    1 => "only cuda:0".to_string(),
                    n => format!("cuda:0 to cuda:{}", n - 1),
                };
                let need = i + 1;
                return Err(InputError::new(format!(
                    "{}: train.device = \"{d}\", but each task requests {gpus} GPU(s) and Slurm renumbers a task's GPUs from 0, \
                     so it sees {seen}: use train.device = \"cuda\" (its first GPU), or request {need} GPUs per task \
                     (--gpus {need} or sweep.slurm.gpus = {need})",
                    describe(v)
                )));
            }
        }
    }
    Ok(Some(gpus))
}

/// A word for bash: as it is when plain, else single-quoted.
pub(crate) fn quote(word: &str) -> String {
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
pub(crate) fn script(sweep: &Sweep, options: &Options, svcca: &Path, template: Option<&str>) -> anyhow::Result<String> {
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
pub(crate) fn submit(sweep: &Sweep, script_text: &str, dry_run: bool) -> anyhow::Result<(PathBuf, Option<String>)> {
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

    /// The script of a sweep of two seeds with `[train]` `device` (and `[sweep.slurm]`
    /// `slurm`), the GPUs its options were resolved to, or the refusal.
    fn gpu_script(device: &str, slurm: &str, extra: &[&str]) -> Result<(Option<u32>, String), InputError> {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("g.toml");
        std::fs::write(&config, format!("[train]\ndevice = \"{device}\"\n[sweep]\ntrain.seed = [0, 1]\n[sweep.slurm]\n{slurm}\n")).unwrap();
        let sweep = Sweep::load(&config, &[], Some(dir.path().join("out"))).unwrap();
        let mut o = Options::from_sweep(&sweep).unwrap();
        o.extra.extend(extra.iter().map(|e| e.to_string()));
        o.gpus = gpus_per_task(&sweep, &o)?;
        Ok((o.gpus, script(&sweep, &o, Path::new("/bin/svcca"), None).unwrap()))
    }

    #[test]
    fn gpu_sweeps_request_one_gpu_per_task_by_default() {
        // A GPU device: one per task unless told otherwise.
        for device in ["cuda", "cuda:0"] {
            let (gpus, text) = gpu_script(device, "", &[]).unwrap();
            assert_eq!(gpus, Some(1));
            assert!(text.contains("#SBATCH --gres=gpu:1\n"), "{device}: no --gres=gpu:1 in\n{text}");
        }
        let (gpus, text) = gpu_script("cuda:1", "gpus = 2", &[]).unwrap();
        assert!(gpus == Some(2) && text.contains("#SBATCH --gres=gpu:2\n"), "{text}");
        // auto and cpu: none by default; `gpus = 0` requests none even for cuda.
        for (device, slurm) in [("auto", ""), ("cpu", ""), ("cuda", "gpus = 0"), ("auto", "gpus = 0")] {
            let (gpus, text) = gpu_script(device, slurm, &[]).unwrap();
            assert_eq!(gpus, Some(0), "{device} {slurm}");
            assert!(!text.contains("--gres"), "{device} {slurm}: a GPU requested in\n{text}");
        }
        // One variant on a GPU is enough: the array's options hold for every task.
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("mixed.toml");
        std::fs::write(&config, "[sweep]\ntrain.device = [\"cpu\", \"cuda\"]\n").unwrap();
        let sweep = Sweep::load(&config, &[], Some(dir.path().join("out"))).unwrap();
        assert_eq!(gpus_per_task(&sweep, &Options::default()).unwrap(), Some(1));
        // A GPU request of the user's own stands; nothing is added or checked.
        let (gpus, text) = gpu_script("cuda:1", "extra = [\"--gres=gpu:2\"]", &[]).unwrap();
        assert_eq!(gpus, None);
        assert!(text.contains("#SBATCH --gres=gpu:2\n") && !text.contains("--gres=gpu:1"), "{text}");
        assert_eq!(gpu_script("cuda", "", &["--gpus-per-task=1"]).unwrap().0, None);
        assert_eq!(gpu_script("cuda", "", &["-G 1"]).unwrap().0, None);
        // Options that request no GPU leave the default alone.
        assert_eq!(gpu_script("cuda", "", &["--gres-flags=enforce-binding", "--gpu-bind=closest"]).unwrap().0, Some(1));
    }

    #[test]
    fn a_gpu_index_past_the_tasks_gpus_is_refused() {
        for (device, slurm, seen) in
            [("cuda:2", "gpus = 1", "only cuda:0"), ("cuda:1", "", "only cuda:0"), ("cuda:3", "gpus = 2", "cuda:0 to cuda:1")]
        {
            let e = gpu_script(device, slurm, &[]).unwrap_err().to_string();
            let need = device[5..].parse::<u32>().unwrap() + 1;
            for want in [&format!("train.device = \"{device}\""), "renumbers", seen, "\"cuda\"", &format!("--gpus {need}"), "variant 0"] {
                assert!(e.contains(want), "no {want:?} in: {e}");
            }
        }
        // With none requested the partition decides: not refused.
        assert!(gpu_script("cuda:2", "gpus = 0", &[]).is_ok());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("a/b.toml"), "a/b.toml");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote(""), "''");
    }
}
