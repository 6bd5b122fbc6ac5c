//! Run folders against a hostile or careless neighbour (issue 30): a lock file that is a
//! link, a checkpoint folder that is not one, a metrics file with bytes svcca never
//! writes, a user's own hidden `*.tmp` files beside svcca's, a dangling `--out`, a
//! folder this user may not read, a config.toml that is not text, logs read from a file.
//! Each is refused with status 2 and a message naming the path, or left alone.

mod common;

use common::{assert_refused, snapshot, stderr, svcca, write_config, Tiny, BIN};
use std::path::{Path, PathBuf};
use std::process::Command;
use svcca::config::Config;

/// 20 steps of a narrow convnet, a checkpoint every 10, a probe of 32.
fn config() -> Config {
    Tiny { probe_size: Some(32), ..Tiny::augmented(20) }.config()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ok(out: &std::process::Output) {
    assert!(out.status.success(), "status {:?}: {}", out.status, stderr(out));
}

/// A trained run (20 steps) in `dir/run`, and its config's path.
fn trained(dir: &Path) -> (String, PathBuf) {
    let cfg = write_config(dir, "c.toml", &config());
    let run = dir.join("run");
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    (cfg, run)
}

/// As [`trained`], with its last checkpoint gone: a run that resumes from step 10.
fn unfinished(dir: &Path) -> (String, PathBuf) {
    let (cfg, run) = trained(dir);
    std::fs::remove_file(run.join("checkpoints/step-00000020.safetensors")).unwrap();
    (cfg, run)
}

#[test]
fn a_lock_file_that_is_a_link_is_refused_and_not_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, run) = trained(tmp.path());
    let victim = tmp.path().join("victim.txt");
    std::fs::write(&victim, "mine\n").unwrap();
    let fresh = tmp.path().join("fresh");
    let cmp = tmp.path().join("cmp");
    for dir in [&fresh, &cmp] {
        std::fs::create_dir(dir).unwrap();
        std::os::unix::fs::symlink("../victim.txt", dir.join(".svcca.lock")).unwrap();
    }
    std::fs::remove_file(run.join(".svcca.lock")).unwrap();
    std::os::unix::fs::symlink("../victim.txt", run.join(".svcca.lock")).unwrap();
    for args in [
        vec!["train", &cfg, "--out", s(&fresh)],
        vec!["train", &cfg, "--out", s(&run)],
        vec!["analyze", s(&run)],
        vec!["compare-runs", s(&run), s(&run), "--out", s(&cmp)],
    ] {
        assert_refused(&svcca(&args), &[".svcca.lock", "symbolic link", "remove the link"]);
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "mine\n");
    assert!(!fresh.join("config.toml").exists() && !cmp.join("pairs.csv").exists(), "a refused command wrote");
}

#[test]
fn a_checkpoint_folder_that_cannot_be_listed_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, run) = trained(tmp.path());
    let rows = std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count();
    assert!(rows > 2);
    std::fs::rename(run.join("checkpoints"), tmp.path().join("kept")).unwrap();
    std::fs::write(run.join("checkpoints"), b"").unwrap();
    let before = snapshot(&run);
    for args in [vec!["run", &cfg, "--out", s(&run)], vec!["train", &cfg, "--out", s(&run)]] {
        assert_refused(&svcca(&args), &["run/checkpoints", "not a folder"]);
        assert_eq!(snapshot(&run), before, "a refused command wrote (metrics.csv truncated?)");
    }
    // Nor is a link to a folder followed.
    std::fs::remove_file(run.join("checkpoints")).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("kept"), run.join("checkpoints")).unwrap();
    assert_refused(&svcca(&["run", &cfg, "--out", s(&run)]), &["run/checkpoints", "symbolic link"]);
    assert_eq!(std::fs::read_to_string(run.join("metrics.csv")).unwrap().lines().count(), rows);
}

#[test]
fn metrics_with_a_line_that_is_not_text_are_refused_not_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, run) = unfinished(tmp.path());
    let path = run.join("metrics.csv");
    let mut bytes = std::fs::read(&path).unwrap();
    let line = bytes.iter().filter(|&&b| b == b'\n').count() + 1;
    bytes.extend_from_slice(b"\xff\xfe\xfd\n");
    std::fs::write(&path, &bytes).unwrap();
    let out = svcca(&["train", &cfg, "--out", s(&run)]);
    assert_refused(&out, &["metrics.csv", &format!("line {line} is not UTF-8")]);
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "metrics.csv was rewritten");
    // Once the line is gone, the run resumes with every earlier row.
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&path, &bytes).unwrap();
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    let steps: Vec<u64> =
        std::fs::read_to_string(&path).unwrap().lines().skip(1).map(|l| l.split(',').next().unwrap().parse().unwrap()).collect();
    assert_eq!(steps, [0, 10, 20]);
}

#[test]
fn only_svccas_own_temporaries_go_and_only_once_a_command_is_accepted() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, run) = unfinished(tmp.path());
    std::fs::create_dir_all(run.join("sub/deeper")).unwrap();
    // What a killed svcca leaves (this version's names, and an older version's name of a
    // checkpoint's temporary).
    let ours = [".metrics.csv.svcca-a1B2c3.tmp", "checkpoints/.step-00000020.safetensors.x1Y2z3.tmp"];
    // The user's own, and a name like ours in a folder svcca does not write.
    let theirs =
        [".bashrc.tmp", ".cache.123456.tmp", "sub/deeper/.cache.123456.tmp", "checkpoints/.notes.a1b2c3.tmp", "sub/.x.svcca-a1B2c3.tmp"];
    for f in ours.iter().chain(&theirs) {
        std::fs::write(run.join(f), b"partial").unwrap();
    }
    // A refused command removes nothing.
    assert_refused(&svcca(&["train", &cfg, "--out", s(&run), "--set", "train.lr=0.5"]), &["train.lr"]);
    for f in ours.iter().chain(&theirs) {
        assert!(run.join(f).exists(), "a refused command removed {f}");
    }
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    for f in ours {
        assert!(!run.join(f).exists(), "{f} is still there");
    }
    for f in theirs {
        assert!(run.join(f).exists(), "{f} was removed");
    }
    // compare-runs' --out: the user's files beside and under it stay.
    let out = tmp.path().join("cmp");
    std::fs::create_dir_all(out.join("sub/deeper")).unwrap();
    let theirs = [".bashrc.tmp", "sub/deeper/.cache.123456.tmp"];
    for f in theirs {
        std::fs::write(out.join(f), b"mine").unwrap();
    }
    ok(&svcca(&["compare-runs", s(&run), s(&run), "--out", s(&out), "--no-plots"]));
    for f in theirs {
        assert!(out.join(f).exists(), "{f} was removed");
    }
}

#[test]
fn a_dangling_out_a_config_that_is_not_text_and_an_unreadable_folder_are_said_as_they_are() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = write_config(tmp.path(), "c.toml", &config());
    let link = tmp.path().join("out");
    std::os::unix::fs::symlink(tmp.path().join("gone"), &link).unwrap();
    assert_refused(&svcca(&["train", &cfg, "--out", s(&link)]), &["out", "dangling symbolic link", "gone"]);
    assert!(!tmp.path().join("gone").exists());

    let (cfg, run) = trained(tmp.path());
    std::fs::write(run.join("config.toml"), b"\xff\xfe[train]\n").unwrap();
    assert_refused(&svcca(&["train", &cfg, "--out", s(&run)]), &["run/config.toml", "UTF-8"]);
    assert_refused(&svcca(&["analyze", s(&run)]), &["run/config.toml"]);

    // A folder only its owner may read, met by another user.
    if !is_root() {
        eprintln!("not root: cannot run as another user; the unreadable folder is not tested");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    let as_nobody = common::as_nobody;
    let probe = as_nobody(&["--version"]);
    if !probe.status.success() {
        eprintln!("user 65534 cannot run {BIN} here ({}); the unreadable folder is not tested", stderr(&probe).trim());
        return;
    }
    assert_refused(&as_nobody(&["analyze", s(&run)]), &["run", "cannot be read", "permission denied"]);
    assert_refused(&as_nobody(&["train", &cfg, "--out", s(&run)]), &["run", "cannot be read"]);
}

#[test]
fn logs_are_plain_off_a_terminal_and_rust_log_is_heard() {
    let tmp = tempfile::tempdir().unwrap();
    let (cfg, run) = trained(tmp.path());
    let rerun = |env: &[(&str, &str)]| {
        let mut c = Command::new(BIN);
        c.args(["train", &cfg, "--out", s(&run)]).env_remove("SVCCA_LOG").env_remove("RUST_LOG").env_remove("NO_COLOR");
        for (k, v) in env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        ok(&out);
        stderr(&out)
    };
    // stderr is a pipe here, as in a file or a Slurm log: no colour codes.
    let plain = rerun(&[]);
    assert!(plain.contains(" INFO ") && plain.contains("already trained"), "{plain}");
    assert!(!plain.contains('\x1b'), "colour codes in a log that is not a terminal: {plain:?}");
    assert!(!rerun(&[("RUST_LOG", "warn")]).contains(" INFO "), "RUST_LOG ignored");
    assert!(rerun(&[("RUST_LOG", "warn"), ("SVCCA_LOG", "info")]).contains(" INFO "), "SVCCA_LOG does not win");
    assert!(!rerun(&[("RUST_LOG", "info"), ("SVCCA_LOG", "warn")]).contains(" INFO "), "SVCCA_LOG does not win");
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

/// A weight changed on disk after its checkpoint was written (a flipped bit) is caught
/// by the checkpoint's MD5: on resume the checkpoint is set aside as damaged and the run
/// goes on from the one before; the analysis refuses it. A checkpoint of another seed
/// copied in is refused.
#[test]
fn a_changed_checkpoint_is_caught_and_another_seeds_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let c = common::Tiny { steps: 20, every: 10, ..common::Tiny::default() }.config();
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let r = run.display().to_string();
    assert!(common::svcca(&["train", &cfg, "--out", &r]).status.success());
    let newest = run.join("checkpoints/step-00000020.safetensors");
    let mut bytes = std::fs::read(&newest).unwrap();
    let at = bytes.len() - 40;
    bytes[at] ^= 0x10;
    std::fs::write(&newest, &bytes).unwrap();
    let out = common::svcca(&["analyze", &r, "--no-plots"]);
    common::assert_refused(&out, &["step-00000020.safetensors", "damaged", "MD5"]);
    // Resume: the run sets it aside and trains again from step 10.
    let out = common::svcca(&["train", &cfg, "--out", &r]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("damaged"), "{}", common::stderr(&out));
    assert!(run.join("checkpoints/step-00000020.safetensors.damaged").is_file());
    assert!(run.join("checkpoints/step-00000020.safetensors").is_file(), "retrained from step 10");
    // Another seed's checkpoint copied in: refused on resume.
    let other = tmp.path().join("other");
    let mut seeded = c.clone();
    seeded.train.seed = 7;
    let seeded_cfg = common::write_config(tmp.path(), "seeded.toml", &seeded);
    assert!(common::svcca(&["train", &seeded_cfg, "--out", other.to_str().unwrap()]).status.success());
    std::fs::copy(other.join("checkpoints/step-00000010.safetensors"), run.join("checkpoints/step-00000010.safetensors")).unwrap();
    std::fs::remove_file(run.join("checkpoints/step-00000020.safetensors")).unwrap();
    let out = common::svcca(&["train", &cfg, "--out", &r]);
    common::assert_refused(&out, &["train.seed = 7", "train.seed is 0"]);
}

/// A scheduled checkpoint deleted from the middle of a run is said, with its step, not
/// skipped without a word.
#[test]
fn a_missing_checkpoint_is_named_by_the_analysis() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let c = common::Tiny { steps: 20, every: 10, probe_size: Some(32), ..common::Tiny::default() }.config();
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let r = run.display().to_string();
    assert!(common::svcca(&["train", &cfg, "--out", &r]).status.success());
    std::fs::remove_file(run.join("checkpoints/step-00000010.safetensors")).unwrap();
    let out = common::svcca(&["analyze", &r, "--no-plots"]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(common::stderr(&out).contains("1 of the checkpoints scheduled are missing (steps 10)"), "{}", common::stderr(&out));
}

/// An `analysis/` folder copied from another run (another seed) is refused, not taken
/// as this run's results.
#[test]
fn another_runs_analysis_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let c = common::Tiny { steps: 10, every: 10, probe_size: Some(32), ..common::Tiny::default() }.config();
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let out = common::svcca(&["run", &cfg, "--out", a.to_str().unwrap()]);
    assert!(out.status.success(), "{}", common::stderr(&out));
    assert!(a.join("analysis/run.json").is_file());
    std::fs::create_dir_all(b.join("analysis/steps")).unwrap();
    for f in std::fs::read_dir(a.join("analysis")).unwrap().flatten().filter(|f| f.path().is_file()) {
        std::fs::copy(f.path(), b.join("analysis").join(f.file_name())).unwrap();
    }
    for f in std::fs::read_dir(a.join("analysis/steps")).unwrap().flatten() {
        std::fs::copy(f.path(), b.join("analysis/steps").join(f.file_name())).unwrap();
    }
    let out = common::svcca(&["run", &cfg, "--out", b.to_str().unwrap(), "--set", "train.seed=1"]);
    common::assert_refused(&out, &["another run's checkpoints", "run.json"]);
}

/// A NaN in a stored activation leaves that layer's cells at that step empty, with one
/// warning naming the layer, the step and the file, not one anonymous warning per cell.
#[test]
fn a_nan_in_a_stored_activation_is_named_once_with_its_layer_step_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::Tiny { steps: 20, every: 10, probe_size: Some(32), ..common::Tiny::default() }.config();
    c.analysis.mode = svcca::config::ActivationMode::Store;
    c.analysis.layers = Some(["c1", "p2", "fc1", "logits"].map(String::from).to_vec());
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let run = tmp.path().join("run");
    ok(&svcca(&["train", &cfg, "--out", s(&run)]));
    let file = run.join("activations/step-00000010.safetensors");
    let mut tensors = tch::Tensor::read_safetensors(&file).unwrap();
    let (_, p2) = tensors.iter_mut().find(|(name, _)| name == "p2").expect("p2 stored");
    let _ = p2.get(0).view([-1]).get(0).fill_(f64::NAN);
    tch::Tensor::write_safetensors(&tensors, &file).unwrap();
    let out = svcca(&["analyze", s(&run), "--no-plots"]);
    ok(&out);
    let err = stderr(&out);
    let named: Vec<&str> = err.lines().filter(|l| l.contains("NaN")).collect();
    assert_eq!(named.len(), 1, "{err}");
    for part in ["p2 at step 10", "step-00000010.safetensors", "datapoint 0", "4 comparisons are left empty"] {
        assert!(named[0].contains(part), "{part:?} not in {}", named[0]);
    }
    let csv = std::fs::read_to_string(run.join("analysis/similarity.csv")).unwrap();
    let empty: Vec<&str> = csv.lines().filter(|l| l.ends_with(',')).collect();
    assert_eq!(empty.len(), 4, "p2's row at step 10 only is empty: {csv}");
    assert!(empty.iter().all(|l| l.starts_with("10,") && l.contains(",p2,")), "{empty:?}");
}

/// A shard task killed mid-unit leaves its temporary in `analysis/units/`; once a task run
/// again has written that unit and the shards merge, the temporary goes (a user's file
/// there stays).
#[test]
fn a_killed_shards_temporaries_go_once_the_shards_merge() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, run) = trained(tmp.path());
    ok(&svcca(&["analyze", s(&run), "--shard", "0/2", "--no-plots"]));
    let units = run.join("analysis/units");
    let stale = [".step-00000010-000.json.svcca-a1B2c3.tmp", ".chance-001.json.svcca-Zz9Yy8.tmp"];
    for f in stale.iter().chain([&".mine.tmp"]) {
        std::fs::write(units.join(f), b"{").unwrap();
    }
    let out = svcca(&["analyze", s(&run), "--shard", "1/2", "--no-plots"]);
    ok(&out);
    assert!(run.join("analysis/similarity.csv").is_file(), "merged: {}", stderr(&out));
    for f in stale {
        assert!(!units.join(f).exists(), "{f} stayed: {}", stderr(&out));
    }
    assert!(units.join(".mine.tmp").exists());
}
