//! The two reports of runs over seeds, table by table: `svcca sweep --report` on run
//! folders written here (every table's exact text, the plot's data, title and axis), and
//! `svcca experiment freeze` on trained runs whose `metrics.csv` is then replaced by one
//! written here (its tables spelled out from those curves and from each run's summary).

mod common;

use std::path::Path;
use svcca::config::{Config, FreezeAt, FreezeSchedule};
use svcca::report::Band;

/// The mean and the sample standard deviation (n - 1; 0 for one value), by the textbook
/// formula in the order the report sums, at run time: constant arguments folded by the
/// compiler may round differently in the last bit.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let v = std::hint::black_box(v);
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 { v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0) } else { 0.0 };
    (mean, var.sqrt())
}

/// A `metrics.csv`: per row `(step, accuracy, wall-clock seconds)`; with `validation`,
/// the accuracy is the validation accuracy and the last row also holds `final_test`, the
/// test accuracy (as training writes them); without, the accuracy is the test accuracy.
fn metrics(validation: bool, rows: &[(u64, f64, f64)], final_test: f64) -> String {
    let mut text = svcca::train::metrics::header(validation).to_string() + "\n";
    for (i, &(step, acc, wall)) in rows.iter().enumerate() {
        let train = if step == 0 { ",".to_string() } else { "1.250000,0.400000".to_string() };
        let tail = if validation {
            let test = if i + 1 == rows.len() { format!("0.900000,{final_test:.6}") } else { ",".to_string() };
            format!("0.800000,{acc:.6},{test}")
        } else {
            format!("0.800000,{acc:.6}")
        };
        text += &format!("{step},{:.4},1.000000e-1,{train},{tail},{wall:.3}\n", step as f64 / 16.0);
    }
    text
}

/// `plots/accuracy.svg` and `.png` in `dir` are the accuracy plot these arguments draw.
fn assert_plot(dir: &Path, y_desc: &str, title: &str, bands: &[Band], freeze_steps: &[u64]) {
    let tmp = tempfile::tempdir().unwrap();
    svcca::report::accuracy_plot_of(tmp.path(), y_desc, title, bands, freeze_steps).unwrap();
    for f in ["accuracy.svg", "accuracy.png"] {
        let got = std::fs::read(dir.join("plots").join(f)).unwrap();
        assert!(got == std::fs::read(tmp.path().join(f)).unwrap(), "{f} differs from the plot of {title:?}, {bands:?}");
    }
}

/// `text` is the JSON `want`, each number exactly: the structure compared parsed (both
/// sides through the same parser, which may round a long number's last bit), and every
/// number of `want` found in `text` as written (the shortest form that reads back as it).
fn assert_json(text: &str, want: &serde_json::Value) {
    let got: serde_json::Value = serde_json::from_str(text).unwrap();
    let want_read: serde_json::Value = serde_json::from_str(&want.to_string()).unwrap();
    assert_eq!(got, want_read, "{text}");
    fn numbers(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Number(n) => out.push(n.to_string()),
            serde_json::Value::Array(a) => a.iter().for_each(|v| numbers(v, out)),
            serde_json::Value::Object(o) => o.values().for_each(|v| numbers(v, out)),
            _ => {}
        }
    }
    let mut want_numbers = Vec::new();
    numbers(want, &mut want_numbers);
    let tokens: Vec<&str> = text.split(|c: char| c.is_whitespace() || ",:[]{}".contains(c)).collect();
    for n in want_numbers {
        assert!(tokens.contains(&n.as_str()), "{n} not in {text}");
    }
}

/// `(step, accuracy)` rows of one run.
type Curve = &'static [(u64, f64)];

/// Mean and std over seeds: final test accuracy, final validation accuracy, wall-clock.
type Stats = ((f64, f64), Option<(f64, f64)>, (f64, f64));

/// A curve over seeds: per step, the runs' values there, as mean and std.
fn band(name: &str, points: &[(u64, &[f64])]) -> Band {
    (name.into(), points.iter().map(|(s, v)| (*s, mean_std(v).0, mean_std(v).1)).collect())
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A sweep over `train.lr` (two groups) and `train.seed` (three seeds): variant 4 not
/// finished (left out), variant 2 without an evaluation at step 10 (so its group's curve
/// has no point there, the other group's has).
fn sweep_report(validation: bool) -> (tempfile::TempDir, svcca::sweep::report::Report) {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = common::tiny();
    if validation {
        c.data.validation = 64;
    }
    let text = common::to_toml(&c) + "\n[sweep]\ntrain.lr = [0.05, 0.1]\ntrain.seed = [0, 1, 2]\n";
    let cfg = tmp.path().join("s.toml");
    std::fs::write(&cfg, text).unwrap();
    let sweep = svcca::sweep::Sweep::load(&cfg, &[], Some(tmp.path().join("out"))).unwrap();
    assert_eq!(sweep.variants.len(), 6);
    // Per variant: (step, accuracy) rows, the final wall-clock, the final test accuracy.
    let runs: [(Curve, f64, f64); 6] = [
        (&[(0, 0.1), (10, 0.5), (20, 0.61), (30, 0.7)], 12.5, 0.71),
        (&[(0, 0.12), (10, 0.52), (20, 0.6), (30, 0.74)], 13.25, 0.73),
        (&[(0, 0.09), (20, 0.58), (30, 0.69)], 11.0, 0.705),
        (&[(0, 0.1), (10, 0.55), (20, 0.66), (30, 0.78)], 20.0, 0.77),
        (&[(0, 0.11), (10, 0.5), (20, 0.6)], 14.0, 0.6),
        (&[(0, 0.1), (10, 0.57), (20, 0.65), (30, 0.8)], 22.125, 0.79),
    ];
    for (v, (rows, wall, test)) in sweep.variants.iter().zip(runs) {
        std::fs::create_dir_all(&v.dir).unwrap();
        std::fs::write(v.dir.join("config.toml"), common::to_toml(&sweep.config_of(v).unwrap())).unwrap();
        let n = rows.len();
        let mut rows: Vec<(u64, f64, f64)> = rows.iter().enumerate().map(|(i, &(s, a))| (s, a, wall * (i + 1) as f64 / n as f64)).collect();
        // Without validation the test accuracy is the curve: its last point is the final.
        if !validation {
            rows.last_mut().unwrap().1 = test;
        }
        std::fs::write(v.dir.join("metrics.csv"), metrics(validation, &rows, test)).unwrap();
    }
    let report = svcca::sweep::report::write(&sweep).unwrap();
    (tmp, report)
}

#[test]
fn sweep_report_tables_without_validation() {
    let (tmp, report) = sweep_report(false);
    let dir = tmp.path().join("out/report");
    assert_eq!(report.dir, dir);
    let d = |i: usize, name: &str| tmp.path().join("out").join(format!("{i:03}-{name}")).display().to_string();
    assert_eq!(
        read(&dir.join("runs.csv")),
        format!(
            "variant,group,seed,final_test_acc,wall_seconds,dir\n\
             0,lr=0.05,0,0.710000,12.500,{}\n\
             1,lr=0.05,1,0.730000,13.250,{}\n\
             2,lr=0.05,2,0.705000,11.000,{}\n\
             3,lr=0.1,0,0.770000,20.000,{}\n\
             5,lr=0.1,2,0.790000,22.125,{}\n",
            d(0, "lr-0.05-seed-0"),
            d(1, "lr-0.05-seed-1"),
            d(2, "lr-0.05-seed-2"),
            d(3, "lr-0.1-seed-0"),
            d(5, "lr-0.1-seed-2"),
        )
    );
    assert_eq!(
        read(&dir.join("summary.csv")),
        "group,runs,final_acc_mean,final_acc_std,wall_seconds_mean,wall_seconds_std\n\
         lr=0.05,3,0.715000,0.013229,12.250,1.146\n\
         lr=0.1,2,0.780000,0.014142,21.062,1.503\n"
    );
    assert_eq!(
        read(&dir.join("curves.csv")),
        "group,step,acc_mean,acc_std\n\
         lr=0.05,0,0.103333,0.015275\n\
         lr=0.05,20,0.596667,0.015275\n\
         lr=0.05,30,0.715000,0.013229\n\
         lr=0.1,0,0.100000,0.000000\n\
         lr=0.1,10,0.560000,0.014142\n\
         lr=0.1,20,0.655000,0.007071\n\
         lr=0.1,30,0.780000,0.014142\n"
    );
    let (m1, s1) = mean_std(&[0.71, 0.73, 0.705]);
    let (w1, ws1) = mean_std(&[12.5, 13.25, 11.0]);
    let (m2, s2) = mean_std(&[0.77, 0.79]);
    let (w2, ws2) = mean_std(&[20.0, 22.125]);
    assert_json(
        &read(&dir.join("summary.json")),
        &serde_json::json!({
            "groups": [
                {"group": "lr=0.05", "runs": 3, "seeds": [0, 1, 2], "final_acc_mean": m1, "final_acc_std": s1,
                 "wall_seconds_mean": w1, "wall_seconds_std": ws1},
                {"group": "lr=0.1", "runs": 2, "seeds": [0, 2], "final_acc_mean": m2, "final_acc_std": s2,
                 "wall_seconds_mean": w2, "wall_seconds_std": ws2},
            ],
            "unfinished": [4],
            "dir": dir.display().to_string(),
        }),
    );
    assert!(!read(&dir.join("summary.json")).ends_with('\n'));
    let bands = [
        band("lr=0.05", &[(0, &[0.1, 0.12, 0.09]), (20, &[0.61, 0.6, 0.58]), (30, &[0.71, 0.73, 0.705])]),
        band("lr=0.1", &[(0, &[0.1, 0.1]), (10, &[0.55, 0.57]), (20, &[0.66, 0.65]), (30, &[0.77, 0.79])]),
    ];
    assert_plot(&dir, "test accuracy (%)", "test accuracy of the sweep's groups (mean ± std over seeds)", &bands, &[]);
}

#[test]
fn sweep_report_tables_with_validation() {
    let (tmp, report) = sweep_report(true);
    let dir = tmp.path().join("out/report");
    assert_eq!(report.best_by_validation.as_deref(), Some("lr=0.1"));
    let d = |i: usize, name: &str| tmp.path().join("out").join(format!("{i:03}-{name}")).display().to_string();
    assert_eq!(
        read(&dir.join("runs.csv")),
        format!(
            "variant,group,seed,final_test_acc,final_val_acc,wall_seconds,dir\n\
             0,lr=0.05,0,0.710000,0.700000,12.500,{}\n\
             1,lr=0.05,1,0.730000,0.740000,13.250,{}\n\
             2,lr=0.05,2,0.705000,0.690000,11.000,{}\n\
             3,lr=0.1,0,0.770000,0.780000,20.000,{}\n\
             5,lr=0.1,2,0.790000,0.800000,22.125,{}\n",
            d(0, "lr-0.05-seed-0"),
            d(1, "lr-0.05-seed-1"),
            d(2, "lr-0.05-seed-2"),
            d(3, "lr-0.1-seed-0"),
            d(5, "lr-0.1-seed-2"),
        )
    );
    assert_eq!(
        read(&dir.join("summary.csv")),
        "group,runs,final_acc_mean,final_acc_std,final_val_acc_mean,final_val_acc_std,wall_seconds_mean,wall_seconds_std\n\
         lr=0.05,3,0.715000,0.013229,0.710000,0.026458,12.250,1.146\n\
         lr=0.1,2,0.780000,0.014142,0.790000,0.014142,21.062,1.503\n"
    );
    assert_eq!(
        read(&dir.join("curves.csv")),
        "group,step,acc_mean,acc_std\n\
         lr=0.05,0,0.103333,0.015275\n\
         lr=0.05,20,0.596667,0.015275\n\
         lr=0.05,30,0.710000,0.026458\n\
         lr=0.1,0,0.100000,0.000000\n\
         lr=0.1,10,0.560000,0.014142\n\
         lr=0.1,20,0.655000,0.007071\n\
         lr=0.1,30,0.790000,0.014142\n"
    );
    let group = |name: &str, seeds: &[u64], acc: &[f64], val: &[f64], wall: &[f64]| {
        let (am, asd) = mean_std(acc);
        let (vm, vsd) = mean_std(val);
        let (wm, wsd) = mean_std(wall);
        serde_json::json!({"group": name, "runs": seeds.len(), "seeds": seeds, "final_acc_mean": am, "final_acc_std": asd,
            "final_val_acc_mean": vm, "final_val_acc_std": vsd, "wall_seconds_mean": wm, "wall_seconds_std": wsd})
    };
    assert_json(
        &read(&dir.join("summary.json")),
        &serde_json::json!({
            "groups": [
                group("lr=0.05", &[0, 1, 2], &[0.71, 0.73, 0.705], &[0.7, 0.74, 0.69], &[12.5, 13.25, 11.0]),
                group("lr=0.1", &[0, 2], &[0.77, 0.79], &[0.78, 0.8], &[20.0, 22.125]),
            ],
            "unfinished": [4],
            "best_by_validation": "lr=0.1",
            "dir": dir.display().to_string(),
        }),
    );
    let bands = [
        band("lr=0.05", &[(0, &[0.1, 0.12, 0.09]), (20, &[0.61, 0.6, 0.58]), (30, &[0.7, 0.74, 0.69])]),
        band("lr=0.1", &[(0, &[0.1, 0.1]), (10, &[0.55, 0.57]), (20, &[0.66, 0.65]), (30, &[0.78, 0.8])]),
    ];
    assert_plot(&dir, "validation accuracy (%)", "validation accuracy of the sweep's groups (mean ± std over seeds)", &bands, &[]);
}

/// The tiny run with an explicit schedule (c1, c2 frozen at step 10), 20 steps.
fn freeze_config(validation: bool) -> Config {
    let mut c = common::tiny();
    c.train.steps = Some(20);
    c.checkpoints.every = 20;
    c.freeze.schedule = FreezeSchedule::Explicit;
    c.freeze.at = ["c1", "c2"].iter().map(|l| FreezeAt { layer: (*l).into(), step: Some(10), fraction: None }).collect();
    if validation {
        c.data.validation = 64;
    }
    c
}

/// `experiment freeze` over seeds 0 and 1, trained, then again on the finished runs with
/// `metrics.csv` replaced: the tables from those curves and wall-clocks, and from each
/// run's summary (the final network's accuracies and the backward work saved).
fn freeze_tables(validation: bool) {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path();
    let config = freeze_config(validation);
    svcca::experiment::freeze(config.clone(), &[0, 1], out).unwrap();
    // (variant, seed): curve rows and the final wall-clock. Freeze seed 1 has no
    // evaluation at step 10: the curves then have none there, in either variant.
    let crafted: [(&str, u64, Curve, f64); 4] = [
        ("base", 0, &[(0, 0.1), (10, 0.4), (20, 0.55)], 30.5),
        ("freeze", 0, &[(0, 0.1), (10, 0.41), (20, 0.5)], 21.25),
        ("base", 1, &[(0, 0.11), (10, 0.45), (20, 0.6)], 32.0),
        ("freeze", 1, &[(0, 0.11), (20, 0.52)], 20.0),
    ];
    let mut runs = Vec::new();
    for (variant, seed, rows, wall) in crafted {
        let dir = out.join(variant).join(format!("seed-{seed}"));
        let mut c = config.clone();
        c.train.seed = seed;
        if variant == "base" {
            c.freeze = Default::default();
        }
        // The finished run's summary (nothing written).
        let s = svcca::train::train(c, &dir).unwrap();
        let n = rows.len();
        let rows: Vec<(u64, f64, f64)> = rows.iter().enumerate().map(|(i, &(st, a))| (st, a, wall * (i + 1) as f64 / n as f64)).collect();
        std::fs::write(dir.join("metrics.csv"), metrics(validation, &rows, s.test_acc)).unwrap();
        runs.push((variant, seed, s, wall));
    }
    let summary = svcca::experiment::freeze(config, &[0, 1], out).unwrap();

    let val_col = |v: Option<f64>| if validation { format!("{:.6},", v.unwrap()) } else { String::new() };
    let mut want = format!("variant,seed,final_test_acc,{}wall_seconds,backward_saved\n", if validation { "final_val_acc," } else { "" });
    for (variant, seed, s, wall) in &runs {
        want += &format!("{variant},{seed},{:.6},{}{wall:.3},{:.4}\n", s.test_acc, val_col(s.validation.map(|v| v.1)), s.backward_saved);
    }
    assert_eq!(read(&out.join("runs.csv")), want);

    let of = |v: &str, f: &dyn Fn(&svcca::train::Summary, f64) -> f64| -> Vec<f64> {
        runs.iter().filter(|r| r.0 == v).map(|r| f(&r.2, r.3)).collect()
    };
    let stats = |v: &str| {
        let acc = mean_std(&of(v, &|s, _| s.test_acc));
        let val = validation.then(|| mean_std(&of(v, &|s, _| s.validation.unwrap().1)));
        let wall = mean_std(&of(v, &|_, w| w));
        (acc, val, wall)
    };
    let (base, frz) = (stats("base"), stats("freeze"));
    let saved = mean_std(&of("freeze", &|s, _| s.backward_saved)).0;
    let vals = |v: Option<(f64, f64)>| v.map_or(String::new(), |v| format!("{:.6},{:.6},", v.0, v.1));
    assert_eq!(
        read(&out.join("summary.csv")),
        format!(
            "variant,seeds,final_acc_mean,final_acc_std,{}wall_seconds_mean,wall_seconds_std,backward_saved\n\
             base,2,{:.6},{:.6},{}{:.3},{:.3},0\nfreeze,2,{:.6},{:.6},{}{:.3},{:.3},{saved:.4}\n",
            if validation { "final_val_acc_mean,final_val_acc_std," } else { "" },
            base.0 .0,
            base.0 .1,
            vals(base.1),
            base.2 .0,
            base.2 .1,
            frz.0 .0,
            frz.0 .1,
            vals(frz.1),
            frz.2 .0,
            frz.2 .1,
        )
    );

    // Curves: the steps every run evaluated at (not 10), base and freeze side by side.
    let points = |v: &str| -> Vec<(u64, f64, f64)> {
        [0u64, 20]
            .iter()
            .map(|&step| {
                let vals: Vec<f64> = crafted.iter().filter(|r| r.0 == v).map(|r| r.2.iter().find(|p| p.0 == step).unwrap().1).collect();
                (step, mean_std(&vals).0, mean_std(&vals).1)
            })
            .collect()
    };
    let (b, f) = (points("base"), points("freeze"));
    let acc = if validation { "val_acc" } else { "acc" };
    let mut want = format!("step,base_{acc}_mean,base_{acc}_std,freeze_{acc}_mean,freeze_{acc}_std\n");
    for (p, q) in b.iter().zip(&f) {
        want += &format!("{},{:.6},{:.6},{:.6},{:.6}\n", p.0, p.1, p.2, q.1, q.2);
    }
    assert_eq!(read(&out.join("curves.csv")), want);

    let st = |s: &Stats| {
        let mut j = serde_json::json!({"acc_mean": s.0 .0, "acc_std": s.0 .1, "wall_mean": s.2 .0, "wall_std": s.2 .1});
        if let Some(v) = s.1 {
            j["val_acc_mean"] = v.0.into();
            j["val_acc_std"] = v.1.into();
        }
        j
    };
    let mut want = serde_json::json!({
        "seeds": [0, 1],
        "base": st(&base),
        "freeze": st(&frz),
        "acc_diff_points": 100.0 * (frz.0 .0 - base.0 .0),
        "wall_saved": 1.0 - frz.2 .0 / base.2 .0,
        "backward_saved": saved,
    });
    if let (Some(fv), Some(bv)) = (frz.1, base.1) {
        want["val_diff_points"] = (100.0 * (fv.0 - bv.0)).into();
    }
    assert_json(&read(&out.join("summary.json")), &want);
    assert!(read(&out.join("summary.json")).ends_with("}\n"));
    assert_eq!(summary.backward_saved, saved);

    let freeze_steps = svcca::train::freeze::steps(&out.join("freeze/seed-0")).unwrap();
    assert!(!freeze_steps.is_empty() && freeze_steps.iter().all(|&s| s == 10), "{freeze_steps:?}");
    let what = if validation { "validation accuracy" } else { "test accuracy" };
    assert_plot(
        out,
        &format!("{what} (%)"),
        &format!("{what}: normal vs freeze training (mean ± std over seeds)"),
        &[("base".into(), b), ("freeze".into(), f)],
        &freeze_steps,
    );
}

#[test]
fn experiment_freeze_tables_without_validation() {
    freeze_tables(false);
}

#[test]
fn experiment_freeze_tables_with_validation() {
    freeze_tables(true);
}
