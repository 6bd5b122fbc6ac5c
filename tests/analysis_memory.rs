//! The learning-dynamics analysis in a memory budget: streamed through a small budget it
//! gives the same matrices and baselines as side by side; a budget one layer at a time
//! cannot meet is refused before anything is computed; a signal stops it inside a
//! checkpoint's analysis, and the rerun finishes the work.

mod common;

use common::{stderr, stdout, svcca, svcca_command, write_config, Tiny};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use svcca::analysis::dynamics::{analyze_within, Dynamics};
use svcca::analysis::memory::Budget;

/// A trained run: a convnet of width 8 on 96 probe images, checkpoints at 0, 3 and 6.
fn trained(dir: &Path) -> std::path::PathBuf {
    let mut c = Tiny { steps: 6, every: 3, eval_every: 3, probe_size: Some(96), ..Tiny::default() }.config();
    c.analysis.probe_size = 96;
    let cfg = write_config(dir, "c.toml", &c);
    let run = dir.join("run");
    let out = svcca(&["train", &cfg, "--out", run.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    run
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            copy_dir(&src, &dst);
        } else if e.file_name() != ".svcca.lock" {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

fn budget(bytes: i64) -> Budget {
    Budget { bytes, base: 0, source: "the test's budget".into() }
}

fn max_difference(a: &Dynamics, b: &Dynamics) -> f64 {
    let mut worst: f64 = 0.0;
    assert_eq!(a.steps.len(), b.steps.len());
    for (x, y) in a.steps.iter().zip(&b.steps) {
        for (rx, ry) in x.matrix.iter().zip(&y.matrix) {
            for (u, v) in rx.iter().zip(ry) {
                match (u, v) {
                    (Some(u), Some(v)) => worst = worst.max((u - v).abs()),
                    (None, None) => {}
                    _ => panic!("a cell empty on one side only: {u:?} vs {v:?}"),
                }
            }
        }
    }
    for (x, y) in a.baseline.iter().zip(&b.baseline) {
        worst = worst.max((x.shuffled.unwrap() - y.shuffled.unwrap()).abs());
    }
    worst
}

#[test]
fn a_streamed_analysis_equals_the_side_by_side_one_and_an_impossible_budget_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained(tmp.path());
    let unlimited = {
        let copy = tmp.path().join("unlimited");
        copy_dir(&run, &copy);
        analyze_within(&copy, None, Some(budget(1 << 40))).unwrap()
    };
    let plan = unlimited.memory.as_ref().unwrap();
    assert!(plan.side_by_side, "{}", plan.describe());

    // Ever smaller budgets: more blocks, the same numbers.
    let mut streamed_blocks = Vec::new();
    for share in [0.6, 0.35, 0.2, 0.1] {
        let copy = tmp.path().join(format!("share-{share}"));
        copy_dir(&run, &copy);
        let bytes = (plan.peak as f64 * share) as i64;
        match analyze_within(&copy, None, Some(budget(bytes))) {
            Ok(s) => {
                let used = s.memory.as_ref().unwrap();
                assert!(used.peak <= bytes, "{}", used.describe());
                assert!(!used.side_by_side, "{}", used.describe());
                let d = max_difference(&unlimited.dynamics, &s.dynamics);
                assert!(d < 1e-9, "share {share}: {} differs by {d}", used.describe());
                streamed_blocks.push(used.blocks.len());
            }
            Err(e) => assert!(e.to_string().contains("analysis.memory_mib"), "{e:#}"),
        }
    }
    assert!(streamed_blocks.iter().any(|&b| b > 1), "no budget streamed the final layers in blocks: {streamed_blocks:?}");

    // Too small even one layer at a time: refused before anything is computed, and the
    // trained run is untouched.
    let copy = tmp.path().join("tiny-budget");
    copy_dir(&run, &copy);
    let e = analyze_within(&copy, None, Some(budget(4096))).unwrap_err();
    assert!(e.downcast_ref::<svcca::error::InputError>().is_some(), "{e:#}");
    let message = e.to_string();
    for needle in ["analysis.memory_mib", "analysis.probe_size", "the test's budget"] {
        assert!(message.contains(needle), "{message}");
    }
    let steps = std::fs::read_dir(copy.join("analysis/steps")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(steps, 0, "nothing is computed");
    assert!(!copy.join("analysis/chance.json").exists());
    assert_eq!(std::fs::read_dir(copy.join("checkpoints")).unwrap().count(), 3);
}

#[test]
fn the_budget_is_a_config_key_and_the_estimate_is_printed() {
    let tmp = tempfile::tempdir().unwrap();
    let run = trained(tmp.path());
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("[analysis]\n", "[analysis]\nmemory_mib = 64\n");
    std::fs::write(&config, text).unwrap();
    let out = svcca(&["analyze", run.to_str().unwrap(), "--no-plots"]);
    common::assert_refused(&out, &["analysis.memory_mib = 64", "raise analysis.memory_mib"]);
    let text = std::fs::read_to_string(&config).unwrap().replace("memory_mib = 64", "memory_mib = 4096");
    std::fs::write(&config, text).unwrap();
    let out = common::svcca_env(&["analyze", run.to_str().unwrap(), "--no-plots"], &[("SVCCA_LOG", "info")]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("analysis memory: estimated peak") && err.contains("of a budget of 4.0 GiB (analysis.memory_mib = 4096)"),
        "{err}"
    );
    assert!(stdout(&out).contains("3 checkpoints analysed (3 now"), "{}", stdout(&out));
}

#[test]
fn a_signal_stops_the_analysis_inside_a_checkpoint_and_the_rerun_finishes_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Wide enough that one checkpoint's matrix takes a while: two checkpoints (0, 4).
    let mut c = Tiny { width: 32, fc1: 64, fc2: 32, test_size: 600, steps: 4, every: 4, eval_every: 4, ..Tiny::default() }.config();
    c.analysis.probe_size = 600;
    let cfg = write_config(tmp.path(), "c.toml", &c);
    let run = tmp.path().join("run");
    assert!(svcca(&["train", &cfg, "--out", run.to_str().unwrap()]).status.success());

    let mut child = svcca_command(&["analyze", run.to_str().unwrap(), "--no-plots"])
        .env("SVCCA_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    // The plan is printed once the shapes are known, before any comparison.
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen += &line;
        seen += "\n";
        if line.contains("analysis memory:") {
            break;
        }
    }
    assert!(seen.contains("analysis memory:"), "{seen}");
    let signalled = Instant::now();
    assert!(std::process::Command::new("kill").args(["-USR1", &child.id().to_string()]).status().unwrap().success());
    for line in lines {
        seen += &line.unwrap();
        seen += "\n";
    }
    let status = child.wait().unwrap();
    let took = signalled.elapsed();
    assert_eq!(status.code(), Some(75), "{seen}");
    assert!(seen.contains("stopped by SIGUSR1"), "{seen}");
    assert!(
        seen.contains("while computing the chance level") || seen.contains("during step"),
        "stopped inside the analysis, not between checkpoints: {seen}"
    );
    assert!(took < Duration::from_secs(20), "took {took:?} to stop");
    let done = std::fs::read_dir(run.join("analysis/steps")).map(|d| d.count()).unwrap_or(0);
    assert!(done < 2, "the signal came before the analysis ended: {done} steps done");

    let out = svcca(&["analyze", run.to_str().unwrap(), "--no-plots"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("2 checkpoints analysed"), "{}", stdout(&out));
}
