//! `svcca sweep` and `--variant` from the command line, without Slurm: the listing, the
//! sbatch script of a dry run, the variant an array task picks, and refusals.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_svcca");

const CONFIG: &str = r#"
[data]
train_size = 256
test_size = 64
[model]
width = 4
fc1 = 8
fc2 = 8
[train]
batch_size = 32
steps = 2
eval_every = 2
threads = 1
[checkpoints]
every = 2
[sweep]
mode = "zip"
train.seed = [5, 6, 7]
train.lr = [0.1, 0.05, 0.01]
[sweep.slurm]
time = "00:10:00"
"#;

#[test]
fn list_dry_run_and_array_task_variant() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("zip.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let cfg = config.to_str().unwrap();
    let out = dir.path().join("sw");
    let out_s = out.to_str().unwrap();

    let o = Command::new(BIN).args(["sweep", cfg, "--out", out_s]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{text}");
    assert!(text.contains("3 variants (zip)"), "{text}");
    assert!(text.contains("   2  train.lr=0.01 train.seed=7  ") && text.contains("002-lr-0.01-seed-7"), "{text}");

    let o = Command::new(BIN).args(["sweep", cfg, "--out", out_s, "--submit", "--dry-run", "--max-parallel", "2", "--gpus", "1"]).output().unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let script = std::fs::read_to_string(out.join("slurm/sweep.sbatch")).unwrap();
    assert!(text.contains("not submitted"));
    for want in ["#SBATCH --array=0-2%2", "#SBATCH --gres=gpu:1", "#SBATCH --time=00:10:00", "--variant \"$SLURM_ARRAY_TASK_ID\""] {
        assert!(script.contains(want), "no {want} in\n{script}");
    }
    assert!(!out.join("slurm/jobs.txt").exists(), "a dry run submitted nothing");

    // An array task: the variant is $SLURM_ARRAY_TASK_ID.
    let o = Command::new(BIN).args(["train", cfg, "--out", out_s]).env("SLURM_ARRAY_TASK_ID", "1").output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let resolved = std::fs::read_to_string(out.join("001-lr-0.05-seed-6/config.toml")).unwrap();
    assert!(resolved.contains("seed = 6") && resolved.contains("lr = 0.05") && !resolved.contains("sweep"), "{resolved}");

    // Refusals, status 2: no variant outside an array task, a variant out of range.
    let o = Command::new(BIN).args(["train", cfg, "--out", out_s]).env_remove("SLURM_ARRAY_TASK_ID").output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--variant I"));
    let o = Command::new(BIN).args(["run", cfg, "--out", out_s, "--variant", "3"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("3 variants"));
}
