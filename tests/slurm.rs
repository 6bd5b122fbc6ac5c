//! The batch path on a real Slurm cluster (`scripts/slurm/local-cluster.sh start`, which
//! `scripts/test.sh` runs first): a sweep of 2 seeds x {normal, freeze} training on the
//! synthetic set submitted as a job array; task 0 is sent SIGUSR1 mid-run (as
//! `--signal=B:USR1@N` does before a time limit), is requeued and resumes; every task
//! finishes; the preempted task's final weights equal an uninterrupted run's; an analysis
//! sharded over a second array, merged, equals the unsharded one; the sweep report
//! aggregates the seeds.
//!
//! Without a cluster the test fails and says how to start one; SVCCA_SKIP_SLURM=1 skips it
//! (for machines where the cluster cannot run, e.g. without root).

mod common;

use common::BIN;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// 300 steps on the default device (the linear freeze schedule), swept over 2 seeds x
/// {normal, freeze}.
fn sweep_config() -> String {
    let c = common::signal_run(50);
    // `[sweep]` is TOML only (a variant's config has none).
    common::to_toml(&c)
        + r#"
[sweep]
train.seed = [0, 1]
freeze.schedule = ["none", "linear"]
[sweep.slurm]
cpus_per_task = 1
max_parallel = 2
"#
}

fn run(cmd: &str, args: &[&str]) -> (bool, String) {
    match Command::new(cmd).args(args).output() {
        Ok(o) => (o.status.success(), format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))),
        Err(e) => (false, format!("cannot run {cmd}: {e}")),
    }
}

/// Waits until `done()` holds, failing after `limit` with `what`.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let t = Instant::now();
    while !done() {
        assert!(t.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until no task of array job `id` is pending or running.
fn wait_for_job(id: &str, limit: Duration) {
    wait_until(limit, &format!("job {id} to finish"), || {
        let (ok, out) = run("squeue", &["-h", "-j", id, "-o", "%i %T"]);
        ok && out.trim().is_empty()
    });
}

fn variant_dirs(out: &Path) -> Vec<PathBuf> {
    let mut d: Vec<PathBuf> =
        std::fs::read_dir(out).unwrap().map(|e| e.unwrap().path()).filter(|p| p.join("config.toml").exists()).collect();
    d.sort();
    d
}

fn read_checkpoint(p: &Path) -> Vec<(String, tch::Tensor)> {
    let mut t = tch::Tensor::read_safetensors(p).unwrap();
    t.sort_by(|x, y| x.0.cmp(&y.0));
    t
}

#[test]
fn sweep_on_slurm_preempted_requeued_resumed_sharded_reported() {
    if std::env::var("SVCCA_SKIP_SLURM").is_ok_and(|v| v == "1") {
        eprintln!("SVCCA_SKIP_SLURM=1: the Slurm integration test is skipped");
        return;
    }
    let (ok, info) = run("sinfo", &["-h", "-o", "%T"]);
    assert!(
        ok && ["idle", "mixed", "alloc"].iter().any(|s| info.contains(s)),
        "no usable Slurm cluster (sinfo: {}): start one with `scripts/slurm/local-cluster.sh start` (root, Debian), \
         or set SVCCA_SKIP_SLURM=1 to skip this test",
        info.trim()
    );
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sweep.toml");
    std::fs::write(&config, sweep_config()).unwrap();
    let cfg = config.to_str().unwrap();
    let out = dir.path().join("sweep");
    let out_s = out.to_str().unwrap();

    let (ok, text) = run(BIN, &["sweep", cfg, "--out", out_s, "--submit"]);
    assert!(ok, "{text}");
    let id = text.split("job array ").nth(1).and_then(|t| t.split(':').next()).expect(&text).trim().to_string();
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-3%2") && script.contains("#SBATCH --signal=B:USR1@120"), "{script}");
    // train.device = "auto" and no `gpus`: no GPU requested (the local cluster has none).
    assert!(!script.contains("--gres"), "{script}");

    // Preempt task 0 once its first checkpoint after the start is written.
    let first = out.join("000-schedule-none-seed-0");
    wait_until(Duration::from_secs(90), "task 0's step-50 checkpoint", || first.join("checkpoints/step-00000050.safetensors").exists());
    // SIGUSR1 to the batch shell, as --signal=B:USR1@N sends it before a time limit.
    // Slurm 22.05 delivers it but answers an array task's signal with "Job can not be
    // altered now", so scancel retries every 5 s and would signal the requeued task again:
    // it is stopped once the task has been requeued.
    let mut scancel = Command::new("scancel").args(["--signal=USR1", "--batch", &format!("{id}_0")]).spawn().unwrap();
    let log_path = out.join(format!("slurm/logs/{id}_0.out"));
    wait_until(Duration::from_secs(60), "task 0 to be requeued", || {
        std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("requeueing"))
    });
    let _ = scancel.kill();
    let _ = scancel.wait();
    wait_for_job(&id, Duration::from_secs(150));

    let dirs = variant_dirs(&out);
    assert_eq!(dirs.len(), 4, "{dirs:?}");
    for d in &dirs {
        assert!(d.join("checkpoints/step-00000300.safetensors").exists(), "{} did not finish training", d.display());
        assert!(d.join("analysis/to_final.csv").exists(), "{} was not analysed", d.display());
    }
    // Task 0 stopped on the signal, was requeued and resumed (its log keeps both attempts).
    let log = std::fs::read_to_string(&log_path).unwrap();
    for want in ["stopped by SIGUSR1", "requeueing", "restart 1", "resuming from"] {
        assert!(log.contains(want), "task 0's log has no '{want}':\n{log}");
    }
    let (_, job) = run("scontrol", &["show", "job", &format!("{id}_0")]);
    assert!(job.contains("Restarts=1"), "{job}");
    for task in 1..4 {
        let other = std::fs::read_to_string(out.join(format!("slurm/logs/{id}_{task}.out"))).unwrap();
        assert!(!other.contains("stopped by"), "task {task} was stopped:\n{other}");
    }

    // The preempted variant's final state equals an uninterrupted run of it.
    let reference = dir.path().join("reference");
    let (ok, text) = run(BIN, &["train", cfg, "--variant", "0", "--out", reference.to_str().unwrap()]);
    assert!(ok, "{text}");
    let (a, b) = (
        read_checkpoint(&first.join("checkpoints/step-00000300.safetensors")),
        read_checkpoint(&reference.join("000-schedule-none-seed-0/checkpoints/step-00000300.safetensors")),
    );
    assert_eq!(a.len(), b.len());
    for ((name, x), (other, y)) in a.iter().zip(&b) {
        assert_eq!(name, other);
        if name != "meta.wall_seconds" {
            assert!(x.equal(y), "{name}: the preempted run differs from the uninterrupted one");
        }
    }

    // The same analysis sharded over a 2-task array, merged by whichever finishes last.
    let sharded = dir.path().join("sharded");
    std::fs::create_dir_all(sharded.join("checkpoints")).unwrap();
    for f in ["config.toml", "metrics.csv"] {
        std::fs::copy(first.join(f), sharded.join(f)).unwrap();
    }
    for e in std::fs::read_dir(first.join("checkpoints")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), sharded.join("checkpoints").join(e.file_name())).unwrap();
    }
    let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/slurm/analyze-shards.sbatch");
    let log = dir.path().join("shard-%A_%a.out");
    // The script requests a GPU per task; the local cluster has none: --gres=none, as
    // docs/slurm.md says for CPU-only clusters (the command line wins over #SBATCH).
    let script_text = std::fs::read_to_string(&template).unwrap();
    assert!(script_text.contains("\n#SBATCH --gres=gpu:1\n"), "{script_text}");
    let (ok, text) = run(
        "sbatch",
        &[
            "--parsable",
            "--gres=none",
            "--array=0-1",
            &format!("--output={}", log.display()),
            template.to_str().unwrap(),
            BIN,
            sharded.to_str().unwrap(),
        ],
    );
    assert!(ok, "{text}");
    let shard_job = text.trim().split(';').next().unwrap().to_string();
    wait_for_job(&shard_job, Duration::from_secs(90));
    for table in ["similarity.csv", "to_final.csv", "baseline.csv"] {
        let merged = std::fs::read_to_string(sharded.join("analysis").join(table));
        let whole = std::fs::read_to_string(first.join("analysis").join(table)).unwrap();
        assert_eq!(merged.ok().as_deref(), Some(whole.as_str()), "{table}: sharded and merged differs from the unsharded analysis");
    }
    for task in 0..2 {
        let text = std::fs::read_to_string(dir.path().join(format!("shard-{shard_job}_{task}.out"))).unwrap();
        assert!(text.contains(&format!("shard {task}/2")), "{text}");
    }

    // The report: per schedule, the two seeds.
    let (ok, text) = run(BIN, &["sweep", cfg, "--out", out_s, "--report"]);
    assert!(ok, "{text}");
    let summary = std::fs::read_to_string(out.join("report/summary.csv")).unwrap();
    let runs = std::fs::read_to_string(out.join("report/runs.csv")).unwrap();
    assert!(out.join("report/plots/accuracy.png").exists());
    assert!(out.join("report/curves.csv").exists());
    for group in ["schedule=none", "schedule=linear"] {
        let accs: Vec<f64> =
            runs.lines().filter(|l| l.split(',').nth(1) == Some(group)).map(|l| l.split(',').nth(3).unwrap().parse().unwrap()).collect();
        assert_eq!(accs.len(), 2, "{runs}");
        let row: Vec<&str> = summary.lines().find(|l| l.starts_with(&format!("{group},"))).expect(&summary).split(',').collect();
        assert_eq!(row[1], "2");
        let mean = (accs[0] + accs[1]) / 2.0;
        let std = ((accs[0] - mean).powi(2) + (accs[1] - mean).powi(2)).sqrt(); // n - 1 = 1
        assert!((row[2].parse::<f64>().unwrap() - mean).abs() < 2e-6, "{group}: mean {} vs {mean}", row[2]);
        assert!((row[3].parse::<f64>().unwrap() - std).abs() < 2e-6, "{group}: std {} vs {std}", row[3]);
    }
}
