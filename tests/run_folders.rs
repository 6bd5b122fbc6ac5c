//! Run folders through the CLI, as a user meets them: one writer at a time (a second
//! process is refused, naming the first); settings that cannot be reconciled with the
//! folder are refused with nothing written; config errors that can be known before
//! training are found before the folder is made; a finished run is read without writing
//! (also by a user who may only read it); temporary files of a killed writer are
//! cleared; result files get the permissions the umask allows. Hostile folders:
//! `run_folders_hostile.rs`.

mod common;

use common::{assert_refused, snapshot, svcca, svcca_command, write_config, Tiny, BIN};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svcca::config::{ActivationMode, Config, FreezeAt, FreezeSchedule};

/// 20 steps of a narrow convnet, 16 images a batch (augmented, the default lr), a
/// checkpoint every 10, a probe of 32.
fn config() -> Config {
    Tiny { probe_size: Some(32), ..Tiny::augmented(20) }.config()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "status {:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_second_process_is_refused_naming_the_first() {
    let tmp = tempfile::tempdir().unwrap();
    // Long enough to be still training whenever the second process comes.
    let mut long = config();
    long.train.steps = Some(1_000_000);
    let cfg = write_config(tmp.path(), "long.toml", &long);
    let run = tmp.path().join("run");
    let mut first = svcca_command(&["train", &cfg, "--out", s(&run)]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let began = Instant::now();
    while !run.join("metrics.csv").exists() {
        assert!(began.elapsed() < Duration::from_secs(120), "the first training did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pid = format!("pid {}", first.id());
    for args in [
        vec!["train", &cfg, "--out", s(&run)],
        vec!["run", &cfg, "--out", s(&run)],
        vec!["analyze", s(&run)],
        vec!["analyze", s(&run), "--merge"],
    ] {
        assert_refused(&svcca(&args), &[s(&run), "in use by", &pid, "svcca train"]);
    }
    // Shards share a run with each other, never with its training.
    assert_refused(&svcca(&["analyze", s(&run), "--shard", "0/2"]), &["in use by", &pid]);
    first.kill().unwrap();
    first.wait().unwrap();
    // The OS dropped the lock with the process: the next command gets the folder (and is
    // refused only for what the folder holds: training is unfinished).
    assert_refused(&svcca(&["analyze", s(&run)]), &["finish training first"]);
    // What the first process wrote is intact: each step once, in order.
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let steps: Vec<u64> = metrics.lines().skip(1).filter_map(|l| l.split(',').next()?.parse().ok()).collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{metrics}");
}

#[test]
fn a_changed_analysis_mode_is_refused_once_training_began() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    let run = tmp.path().join("run");
    ok(&svcca(&["run", &cfg, "--out", s(&run)]));
    let before = snapshot(&run);
    // replay -> store on a finished run would analyse the one checkpoint it could record.
    let out = svcca(&["run", &cfg, "--out", s(&run), "--set", "analysis.mode=\"store\""]);
    assert_refused(&out, &["config.toml", "analysis.mode: replay vs store", "another --out"]);
    assert_eq!(snapshot(&run), before, "a refused command wrote");
    assert!(!run.join("activations").exists());

    // In store mode, what is recorded cannot change either.
    let stored = tmp.path().join("stored");
    let mut store = config();
    store.analysis.mode = ActivationMode::Store;
    let store_cfg = write_config(tmp.path(), "s.toml", &store);
    ok(&svcca(&["train", &store_cfg, "--out", s(&stored), "--set", "train.steps=10"]));
    let out = svcca(&["train", &store_cfg, "--out", s(&stored), "--set", "train.steps=10", "--set", "analysis.probe_size=40"]);
    assert_refused(&out, &["analysis.probe_size: 32 vs 40"]);
    let out = svcca(&["train", &store_cfg, "--out", s(&stored), "--set", "train.steps=10", "--set", "analysis.mode=\"replay\""]);
    assert_refused(&out, &["analysis.mode: store vs replay"]);

    // Settings the analysis alone uses may change: the analysis guards its own results.
    ok(&svcca(&["train", &cfg, "--out", s(&run), "--set", "analysis.keep=0.9"]));
    assert!(std::fs::read_to_string(run.join("config.toml")).unwrap().contains("keep = 0.9"));

    // Unless they steer an adaptive freeze schedule: its decisions so far were taken
    // under the folder's similarity.
    let adaptive = tmp.path().join("adaptive");
    let mut frz = config();
    frz.freeze.schedule = FreezeSchedule::Adaptive;
    let frz_cfg = write_config(tmp.path(), "a.toml", &frz);
    ok(&svcca(&["train", &frz_cfg, "--out", s(&adaptive), "--set", "train.steps=10"]));
    let before = snapshot(&adaptive);
    for (set, needle) in [
        ("analysis.keep=0.9", "analysis.keep: 0.99 vs 0.9"),
        ("analysis.keep_rule=\"singular\"", "analysis.keep_rule: variance vs singular"),
    ] {
        let out = svcca(&["train", &frz_cfg, "--out", s(&adaptive), "--set", "train.steps=10", "--set", set]);
        assert_refused(&out, &[needle, "adaptive freeze"]);
    }
    assert_eq!(snapshot(&adaptive), before);
}

#[test]
fn a_folder_without_its_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    let run = tmp.path().join("run");
    ok(&svcca(&["train", &cfg, "--out", s(&run), "--set", "train.steps=10"]));
    std::fs::remove_file(run.join("config.toml")).unwrap();
    let before = snapshot(&run);
    // Resuming under another lr would silently change the run.
    let out = svcca(&["train", &cfg, "--out", s(&run), "--set", "train.lr=0.5"]);
    assert_refused(&out, &[s(&run), "no config.toml", "checkpoints/", "metrics.csv", "another --out"]);
    assert_eq!(snapshot(&run), before);
}

#[test]
fn config_errors_known_before_training_leave_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let at = |layer: &str, step: u64| FreezeAt { layer: layer.into(), step: Some(step), fraction: None };
    let cases = [
        ("c9 at step 5", vec![at("c9", 5)], vec!["freeze.at", "'c9'", "c1 c2"]),
        ("c1 at 10, c2 at 5", vec![at("c1", 10), at("c2", 5)], vec!["freeze.at", "bottom-up"]),
        ("c1 at step 500", vec![at("c1", 500)], vec!["freeze.at", "step 500", "20 steps"]),
    ];
    for (extra, schedule, needles) in &cases {
        let mut c = config();
        (c.freeze.schedule, c.freeze.at) = (FreezeSchedule::Explicit, schedule.clone());
        let cfg = write_config(tmp.path(), "bad.toml", &c);
        assert_refused(&svcca(&["train", &cfg, "--out", s(&run)]), needles);
        assert!(!run.exists(), "{extra}: the run folder was made");
        // The experiment checks its freeze variant before its first (base) run.
        let exp = tmp.path().join("exp");
        assert_refused(&svcca(&["experiment", "freeze", &cfg, "--seeds", "1", "--out", s(&exp)]), needles);
        assert!(!exp.exists(), "{extra}: the experiment folder was made");
    }
    let mut layers = config();
    layers.analysis.layers = Some(vec!["c1".into(), "c99".into()]);
    let cfg = write_config(tmp.path(), "layers.toml", &layers);
    assert_refused(&svcca(&["run", &cfg, "--out", s(&run)]), &["analysis.layers", "'c99'", "c1 c2"]);
    assert!(!run.exists());
    // The corrected config then trains in that folder.
    ok(&svcca(&["train", &write_config(tmp.path(), "good.toml", &config()), "--out", s(&run)]));
}

#[test]
fn a_finished_run_is_read_without_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    let run = tmp.path().join("run");
    ok(&svcca(&["run", &cfg, "--out", s(&run)]));
    let before = snapshot(&run);
    assert!(before.keys().any(|p| p.starts_with("plots")) && before.keys().any(|p| p.starts_with("analysis")));
    std::thread::sleep(Duration::from_millis(20));
    let again = svcca(&["run", &cfg, "--out", s(&run)]);
    ok(&again);
    assert_eq!(snapshot(&run), before, "a rerun of a finished run rewrote files");
    ok(&svcca(&["analyze", s(&run)]));
    assert_eq!(snapshot(&run), before, "a rerun of the analysis rewrote files");

    // A user who may only read the folder (another user's results, an archive): the
    // same report, nothing written, no error about a temporary file.
    if !is_root() {
        eprintln!("not root: cannot run as another user; the read-only rerun is not tested");
        return;
    }
    open_to_others(tmp.path());
    let as_nobody = common::as_nobody;
    // The binary and libtorch must be open to other users too (a checkout under a
    // private home folder is not): else this part cannot run here.
    let probe = as_nobody(&["--version"]);
    if !probe.status.success() {
        eprintln!(
            "user 65534 cannot run {BIN} here ({}); the read-only rerun is not tested",
            String::from_utf8_lossy(&probe.stderr).trim()
        );
        return;
    }
    let out = as_nobody(&["run", &cfg, "--out", s(&run)]);
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("test accuracy") && text.contains("checkpoints analysed"), "{text}");
    ok(&as_nobody(&["analyze", s(&run)]));
    assert_eq!(snapshot(&run), before);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// Lets other users into `dir` (temporary folders are made owner-only) to read.
fn open_to_others(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn temporaries_of_a_killed_writer_are_removed_on_start() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    let run = tmp.path().join("run");
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    // Killed after step 10: the last checkpoint never made it.
    std::fs::remove_file(run.join("checkpoints/step-00000020.safetensors")).unwrap();
    // What a kill during a checkpoint or table write leaves (this version's names and
    // the earlier name of a checkpoint's temporary).
    let stale: Vec<PathBuf> = [
        "checkpoints/.step-00000020.safetensors.svcca-x1Y2z3.tmp",
        "checkpoints/.step-00000020.safetensors.x1Y2z3.tmp",
        ".metrics.csv.svcca-a1b2c3.tmp",
    ]
    .iter()
    .map(|f| run.join(f))
    .collect();
    for f in &stale {
        std::fs::write(f, b"partial").unwrap();
    }
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    for f in &stale {
        assert!(!f.exists(), "{} is still there", f.display());
    }
    assert!(run.join("checkpoints/step-00000010.safetensors").exists());
}

#[test]
fn results_are_readable_as_the_umask_allows() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    for (umask, mode) in [("002", 0o664), ("022", 0o644), ("077", 0o600)] {
        let run = tmp.path().join(format!("run-{umask}"));
        let out = Command::new("sh")
            .args(["-c", &format!("umask {umask} && exec \"$0\" run \"$1\" --out \"$2\"", umask = umask), BIN, &cfg, s(&run)])
            .env("SVCCA_LOG", "warn")
            .output()
            .unwrap();
        ok(&out);
        for f in ["config.toml", "metrics.csv", "checkpoints/step-00000020.safetensors", "analysis/similarity.csv", "plots/to_final.png"] {
            let got = std::fs::metadata(run.join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(got, mode, "umask {umask}: {f} has mode {got:o}");
        }
    }
}
