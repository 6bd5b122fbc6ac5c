//! `svcca sweep` and `--variant` from the command line, without Slurm: the listing, the
//! sbatch script of a dry run, the variant an array task picks, and refusals.

mod common;

use common::{assert_refused, svcca, svcca_command, svcca_env, Tiny};
use svcca::device::DeviceChoice;

/// Two steps of a narrow convnet (augmented, on the default device), swept over three
/// (seed, lr) pairs.
fn config() -> String {
    let mut c = Tiny {
        train_size: 256,
        test_size: 64,
        crop_padding: 4,
        flip: true,
        width: 4,
        fc1: 8,
        fc2: 8,
        steps: 2,
        lr: 0.1,
        eval_every: 2,
        every: 2,
        ..Tiny::default()
    }
    .config();
    c.train.device = DeviceChoice::Auto;
    // `[sweep]` is TOML only (a variant's config has none).
    common::to_toml(&c)
        + r#"
[sweep]
mode = "zip"
train.seed = [5, 6, 7]
train.lr = [0.1, 0.05, 0.01]
[sweep.slurm]
time = "00:10:00"
"#
}

#[test]
fn list_dry_run_and_array_task_variant() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_file(dir.path(), "zip.toml", &config());
    let cfg = cfg.as_str();
    let out = dir.path().join("sw");
    let out_s = out.to_str().unwrap();

    let o = svcca(&["sweep", cfg, "--out", out_s]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("3 variants (zip)"), "{text}");
    assert!(text.contains("   2  train.lr=0.01 train.seed=7  ") && text.contains("002-lr-0.01-seed-7"), "{text}");

    let o = svcca(&["sweep", cfg, "--out", out_s, "--submit", "--dry-run", "--max-parallel", "2", "--gpus", "1"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap();
    assert!(text.contains("not submitted"));
    for want in ["#SBATCH --array=0-2%2", "#SBATCH --gres=gpu:1", "#SBATCH --time=00:10:00", "--variant \"$SLURM_ARRAY_TASK_ID\""] {
        assert!(script.contains(want), "no {want} in\n{script}");
    }
    assert!(!out.join("slurm/jobs.txt").exists(), "a dry run submitted nothing");

    // An array task: the variant is $SLURM_ARRAY_TASK_ID.
    let o = svcca_env(&["train", cfg, "--out", out_s], &[("SLURM_ARRAY_TASK_ID", "1")]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resolved = std::fs::read_to_string(out.join("001-lr-0.05-seed-6/config.toml")).unwrap();
    assert!(resolved.contains("seed = 6") && resolved.contains("lr = 0.05") && !resolved.contains("sweep"), "{resolved}");

    // Refusals, status 2: no variant outside an array task, a variant out of range.
    let o = svcca_command(&["train", cfg, "--out", out_s]).env_remove("SLURM_ARRAY_TASK_ID").output().unwrap();
    assert_refused(&o, &["--variant I"]);
    assert_refused(&svcca(&["run", cfg, "--out", out_s, "--variant", "3"]), &["3 variants"]);
}

/// `--submit --dry-run` and the GPUs each task requests: one by default for a `cuda`
/// sweep, none for `auto` (with a word on how to get one) or with `--gpus 0`; a `cuda:N`
/// past the GPUs a task gets is refused, status 2.
#[test]
fn gpu_sweeps_request_a_gpu_per_task() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = common::write_file(dir.path(), "zip.toml", &config());
    let cfg = cfg.as_str();
    let out = dir.path().join("sw");
    let out_s = out.to_str().unwrap();
    let submit = |extra: &[&str]| {
        let mut args = vec!["sweep", cfg, "--out", out_s, "--submit", "--dry-run"];
        args.extend(extra);
        // At info level, where the word on `auto` is.
        let o = svcca_env(&args, &[("SVCCA_LOG", "info")]);
        let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap_or_default();
        let _ = std::fs::remove_file(out.join("slurm/sweep.sbatch"));
        (o, script)
    };

    let (o, script) = submit(&["--set", "train.device=\"cuda\""]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(script.contains("#SBATCH --gres=gpu:1\n"), "{script}");

    let (o, script) = submit(&["--set", "train.device=\"cuda\"", "--gpus", "0"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!script.contains("--gres"), "{script}");

    let (o, script) = submit(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(!script.contains("--gres"), "{script}");
    assert!(err.contains("will run on the CPU unless the partition gives them GPUs") && err.contains("--gpus 1"), "{err}");

    let (o, _) = submit(&["--set", "train.device=\"cuda:2\"", "--gpus", "1"]);
    assert_refused(&o, &["cuda:2", "renumbers", "--gpus 3"]);
}
