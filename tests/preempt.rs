//! Preemption and sharded analysis, without Slurm: a training stopped by SIGUSR1 writes a
//! checkpoint between scheduled ones, exits with status 75, and resumed gives the same
//! weights and metrics as an uninterrupted run; an analysis split into shards and merged
//! gives the same tables as an unsharded one.

mod common;

use common::{assert_refused, svcca, svcca_command};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svcca::config::{Config, FreezeSchedule};

/// The shared signal run (`common::signal_run`), evaluated every 20 steps.
fn config() -> Config {
    common::signal_run(20)
}

fn checkpoints(run: &Path) -> Vec<u64> {
    common::steps_in(&run.join("checkpoints"))
}

/// Every tensor of two checkpoints equal, bit for bit, but the wall-clock.
pub fn assert_same_checkpoint(a: &Path, b: &Path) {
    let read = |p: &Path| {
        let mut t = tch::Tensor::read_safetensors(p).unwrap();
        t.sort_by(|x, y| x.0.cmp(&y.0));
        t
    };
    let (ta, tb) = (read(a), read(b));
    assert_eq!(ta.iter().map(|t| &t.0).collect::<Vec<_>>(), tb.iter().map(|t| &t.0).collect::<Vec<_>>());
    assert!(ta.iter().any(|t| t.0.starts_with("momentum.")), "no optimizer state in {}", a.display());
    for ((name, x), (_, y)) in ta.iter().zip(&tb) {
        if name != "meta.wall_seconds" {
            assert!(x.equal(y), "{name} differs between {} and {}", a.display(), b.display());
        }
    }
}

/// metrics.csv without the wall-clock column.
fn metrics(run: &Path) -> String {
    std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().map(|l| l.rsplit_once(',').unwrap().0.to_string() + "\n").collect()
}

fn wait_for(path: &Path, limit: Duration) {
    let t = Instant::now();
    while !path.exists() {
        assert!(t.elapsed() < limit, "{} did not appear within {limit:?}", path.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn signal_checkpoint_resume_equals_uninterrupted_and_shards_merge() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_config(dir.path(), "tiny.toml", &config());
    let cfg = cfg.as_str();
    let (a, b): (PathBuf, PathBuf) = (dir.path().join("a"), dir.path().join("b"));

    // Interrupted: SIGUSR1 once the step-50 checkpoint exists.
    let child = svcca_command(&["train", cfg, "--out", a.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    wait_for(&a.join("checkpoints/step-00000050.safetensors"), Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(150));
    assert!(Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("stopped by SIGUSR1"), "{stderr}");
    let stopped = *checkpoints(&a).last().unwrap();
    assert!(stopped > 50 && stopped < 300, "stopped at step {stopped}");
    assert!(!metrics(&a).contains("\n300,"));

    // Resumed: from that step; the checkpoint written on the signal (when it is off the
    // schedule) is gone once later ones exist.
    let out = svcca(&["train", cfg, "--out", a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("resumed from step {stopped}")));
    assert_eq!(checkpoints(&a), vec![0, 50, 100, 150, 200, 250, 300]);

    // Uninterrupted: the same weights, optimizer state and metrics rows.
    let out = svcca(&["train", cfg, "--out", b.to_str().unwrap()]);
    assert!(out.status.success());
    assert_same_checkpoint(&a.join("checkpoints/step-00000300.safetensors"), &b.join("checkpoints/step-00000300.safetensors"));
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(metrics(&a).lines().count(), 1 + 1 + 300 / 20 + 3, "header, step 0, every 20 steps, checkpoints at 50, 150, 250");

    // Finished: rerunning trains nothing.
    let out = svcca(&["train", cfg, "--out", a.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already trained"));

    // Sharded analysis of a, merged, against the unsharded analysis of b.
    let run = a.to_str().unwrap();
    let out = svcca(&["analyze", run, "--shard", "0/3", "--no-plots"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!a.join("analysis/to_final.csv").exists(), "merged before all shards ran");
    // A merge with shards missing is refused.
    assert_refused(&svcca(&["analyze", run, "--merge"]), &["not done yet"]);
    for shard in ["2/3", "1/3"] {
        let out = svcca(&["analyze", run, "--shard", shard, "--no-plots"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let out = svcca(&["analyze", b.to_str().unwrap(), "--no-plots"]);
    assert!(out.status.success());
    for table in ["similarity.csv", "to_final.csv", "baseline.csv"] {
        let (x, y) = (
            std::fs::read_to_string(a.join("analysis").join(table)).unwrap(),
            std::fs::read_to_string(b.join("analysis").join(table)).unwrap(),
        );
        assert_eq!(x, y, "{table}: sharded and merged differs from unsharded");
        assert!(x.lines().count() > 4, "{table} is nearly empty");
    }
    // 7 checkpoints x 4 layers rows, 4 baselines: each unit once, in some shard.
    assert_eq!(std::fs::read_dir(a.join("analysis/units")).unwrap().count(), 7 * 4 + 4);
    // A shard rerun finds its work done.
    let out = svcca(&["analyze", run, "--shard", "1/3", "--no-plots"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 units computed"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// The adaptive freeze schedule stopped by a signal between two checks: the candidate's
/// reference activations (from the last check) are saved beside the checkpoint, and the
/// resumed run checks and freezes exactly as an uninterrupted one.
#[test]
fn signal_between_adaptive_checks_resumes_the_schedule_exactly() {
    let dir = tempfile::tempdir().unwrap();
    // Threshold 0: one group freezes at every check (50, 100, ...), so the run stops
    // with some layers frozen and a candidate whose reference is from step 50 or later.
    let mut c = config();
    c.freeze.schedule = FreezeSchedule::Adaptive;
    c.freeze.threshold = 0.0;
    c.freeze.check_every = Some(50);
    let cfg = common::write_config(dir.path(), "adaptive.toml", &c);
    let cfg = cfg.as_str();
    let b = dir.path().join("uninterrupted");
    assert!(svcca(&["train", cfg, "--out", b.to_str().unwrap()]).status.success());

    // The signal must land between checks (not on a multiple of 50): retry the rare miss.
    for attempt in 0..3 {
        let a = dir.path().join(format!("stopped-{attempt}"));
        let child =
            svcca_command(&["train", cfg, "--out", a.to_str().unwrap()]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        wait_for(&a.join("checkpoints/step-00000050.safetensors"), Duration::from_secs(60));
        std::thread::sleep(Duration::from_millis(150));
        assert!(Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
        let out = child.wait_with_output().unwrap();
        assert_eq!(out.status.code(), Some(75), "{}", String::from_utf8_lossy(&out.stderr));
        let stopped = *checkpoints(&a).last().unwrap();
        if stopped.is_multiple_of(50) {
            continue;
        }
        assert!(a.join("freeze_reference.safetensors").exists(), "no reference saved at step {stopped}");
        let out = svcca(&["train", cfg, "--out", a.to_str().unwrap()]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("resumed from step {stopped}")));
        assert_same_checkpoint(&a.join("checkpoints/step-00000300.safetensors"), &b.join("checkpoints/step-00000300.safetensors"));
        for file in ["freeze.csv", "freeze_checks.csv"] {
            let (x, y) = (std::fs::read_to_string(a.join(file)).unwrap(), std::fs::read_to_string(b.join(file)).unwrap());
            assert_eq!(x, y, "{file} differs after the resume at step {stopped}");
            assert!(x.lines().count() >= 3, "{file}: too few rows:\n{x}");
        }
        return;
    }
    panic!("the signal landed on a check three times");
}
