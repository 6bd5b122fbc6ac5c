//! `data.validation`: images held out of the training split, never trained on, read at
//! every evaluation; the test set read at the end only; the choice the same for every
//! training seed; refused on an existing run folder and when it leaves nothing to train.

mod common;

use common::{assert_refused_silent, svcca, Tiny};
use std::path::Path;
use svcca::config::{Config, FreezeSchedule};
use svcca::data::{validation_indices, Dataset};
use svcca::train::Order;
use tch::{Device, Tensor};

/// The tiny run (512 training images, 30 steps, an evaluation every 10) holding out 64.
fn tiny() -> Config {
    let mut c = common::tiny();
    c.data.validation = 64;
    c
}

fn rows(dir: &Path) -> Vec<Vec<String>> {
    std::fs::read_to_string(dir.join("metrics.csv")).unwrap().lines().map(|l| l.split(',').map(str::to_string).collect()).collect()
}

#[test]
fn held_out_images_are_never_in_a_training_batch() {
    let c = tiny();
    let full = {
        let mut d = c.data.clone();
        d.validation = 0;
        Dataset::load(&d, Device::Cpu).unwrap()
    };
    let data = Dataset::load(&c.data, Device::Cpu).unwrap();
    let (n, held) = (full.train.len(), &data.held_out);
    assert_eq!(held.len(), 64);
    assert!(held.windows(2).all(|w| w[0] < w[1]) && *held.last().unwrap() < n, "{held:?}");
    assert_ne!(held, &(0..64).collect::<Vec<_>>(), "a random choice, not the first images");
    assert_eq!(data.train.len(), n - 64);
    // The images are where the indices say: the validation split is the held-out images,
    // the training split the others in their order.
    let rest: Vec<i64> = (0..n as i64).filter(|i| !held.contains(&(*i as usize))).collect();
    let pick = |idx: &[i64]| full.train.images.index_select(0, &Tensor::from_slice(idx));
    let held_i64: Vec<i64> = held.iter().map(|&i| i as i64).collect();
    let val = data.validation.as_ref().unwrap();
    assert!(val.images.equal(&pick(&held_i64)));
    assert!(val.labels.equal(&full.train.labels.index_select(0, &Tensor::from_slice(&held_i64))));
    assert!(data.train.images.equal(&pick(&rest)));
    // Every batch of three epochs, as the trainer draws it, maps to images outside the
    // held-out set.
    let mut order = Order::new(c.train.seed, data.train.len(), c.train.batch_size);
    let mut seen = std::collections::BTreeSet::new();
    for step in 0..3 * order.steps_per_epoch() {
        for &i in order.batch(step) {
            let original = rest[i as usize] as usize;
            assert!(held.binary_search(&original).is_err(), "step {step}: held-out image {original} in a batch");
            seen.insert(original);
        }
    }
    assert!(seen.len() > (n - 64) * 9 / 10, "the batches cover the training images");
    // Held-out images by content: none of the training images equals a validation one.
    let (t, v) = (data.train.images.flatten(1, -1).to_kind(tch::Kind::Float), val.images.flatten(1, -1).to_kind(tch::Kind::Float));
    let distances = t.unsqueeze(1).f_sub(&v.unsqueeze(0)).unwrap().abs().sum_dim_intlist([2i64].as_slice(), false, tch::Kind::Float);
    assert!(distances.min().double_value(&[]) > 0.0);
}

#[test]
fn the_choice_depends_on_the_data_seed_only() {
    // The same for every call (so for every train.seed: the trainer draws no other way).
    assert_eq!(validation_indices(0, 1000, 100), validation_indices(0, 1000, 100));
    assert_ne!(validation_indices(0, 1000, 100), validation_indices(1, 1000, 100));
    let v = validation_indices(7, 1000, 300);
    assert_eq!(v.len(), 300);
    // Spread over the split, not bunched at one end.
    let low = v.iter().filter(|&&i| i < 500).count();
    assert!((110..190).contains(&low), "{low} of 300 below 500");
    // Two training seeds of one config hold out the same images.
    let mut a = tiny();
    a.train.seed = 3;
    let mut b = tiny();
    b.train.seed = 4;
    let da = Dataset::load(&a.data, Device::Cpu).unwrap();
    let db = Dataset::load(&b.data, Device::Cpu).unwrap();
    assert_eq!(da.held_out, db.held_out);
}

#[test]
fn metrics_hold_validation_at_every_evaluation_and_test_at_the_end() {
    let tmp = tempfile::tempdir().unwrap();
    let s = svcca::train::train(tiny(), tmp.path()).unwrap();
    let rows = rows(tmp.path());
    assert_eq!(rows[0].join(","), svcca::train::metrics::HEADER_VALIDATION);
    let col = |name: &str| rows[0].iter().position(|h| h == name).unwrap();
    let (val, test) = (col("val_acc"), col("test_acc"));
    let steps: Vec<&str> = rows[1..].iter().map(|r| r[0].as_str()).collect();
    assert_eq!(steps, ["0", "10", "20", "30"]);
    for r in &rows[1..] {
        assert!(r[val].parse::<f64>().is_ok(), "{r:?}");
        assert_eq!(r[test].is_empty(), r[0] != "30", "test accuracy on the last row only: {r:?}");
        assert_eq!(r.len(), rows[0].len());
    }
    let last = rows.last().unwrap();
    assert!((s.test_acc - last[test].parse::<f64>().unwrap()).abs() < 1e-5);
    let (_, val_acc) = s.validation.unwrap();
    assert!((val_acc - last[val].parse::<f64>().unwrap()).abs() < 1e-5);
    // 448 images left to train on: 14 steps an epoch of 32.
    assert!((last[1].parse::<f64>().unwrap() - 30.0 / 14.0).abs() < 1e-3, "{last:?}");
    let (curve, _) = svcca::train::metrics::validation_accuracy(tmp.path()).unwrap();
    assert_eq!(curve.len(), 4);
    // A resumed run keeps the columns (the rows after its checkpoint recomputed).
    std::fs::remove_file(tmp.path().join("checkpoints/step-00000030.safetensors")).unwrap();
    svcca::train::train(tiny(), tmp.path()).unwrap();
    let but_wall = |rows: Vec<Vec<String>>| rows.into_iter().map(|mut r| r.pop().map(|_| r).unwrap()).collect::<Vec<_>>();
    assert_eq!(but_wall(self::rows(tmp.path())), but_wall(rows));
}

#[test]
fn experiment_freeze_reports_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny();
    c.train.steps = Some(20);
    c.freeze.schedule = FreezeSchedule::Linear;
    let s = svcca::experiment::freeze(c, &[0], tmp.path()).unwrap();
    assert!(s.val_diff_points.is_some() && s.base.val_acc_mean.is_some());
    let runs = std::fs::read_to_string(tmp.path().join("runs.csv")).unwrap();
    assert!(runs.starts_with("variant,seed,final_test_acc,final_val_acc,wall_seconds,backward_saved\n"), "{runs}");
    let curves = std::fs::read_to_string(tmp.path().join("curves.csv")).unwrap();
    assert!(curves.starts_with("step,base_val_acc_mean,"), "{curves}");
    // Validation at every evaluation: the curve has its points (the test set only at 20).
    assert_eq!(curves.lines().map(|l| l.split(',').next().unwrap()).collect::<Vec<_>>(), ["step", "0", "10", "20"]);
    let summary = std::fs::read_to_string(tmp.path().join("summary.csv")).unwrap();
    assert!(summary.lines().next().unwrap().contains("final_val_acc_mean"), "{summary}");
}

#[test]
fn changing_it_on_a_run_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let mut c = common::tiny();
    c.train.steps = Some(10);
    let cfg = common::write_config(tmp.path(), "c.toml", &c);
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    let before = common::snapshot(&out);
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap(), "--set", "data.validation=64"]);
    assert_refused_silent(&o, &["data.validation: 0 vs 64", "different config"]);
    assert_eq!(common::snapshot(&out), before, "nothing written");
    // And the other way round.
    let out2 = tmp.path().join("run2");
    let o = svcca(&["train", &cfg, "--out", out2.to_str().unwrap(), "--set", "data.validation=64"]);
    assert_eq!(o.status.code(), Some(0), "{}", common::stderr(&o));
    assert!(common::stdout(&o).contains("validation accuracy"), "{}", common::stdout(&o));
    let o = svcca(&["train", &cfg, "--out", out2.to_str().unwrap()]);
    assert_refused_silent(&o, &["data.validation: 64 vs 0"]);
}

#[test]
fn too_many_held_out_images_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let cfg = common::write_config(tmp.path(), "c.toml", &Tiny { train_size: 100, ..Tiny::default() }.config());
    for (n, needle) in [("100", "less than the 100 training images"), ("250", "250")] {
        let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap(), "--set", &format!("data.validation={n}")]);
        assert_refused_silent(&o, &["data.validation", needle]);
        assert!(!out.exists());
    }
    // Synthetic without train_size: its 10000 images.
    let mut c = Config::default();
    c.data.validation = 10_000;
    assert!(c.validate().unwrap_err().0 == "data.validation");
    // Leaving fewer images than a batch.
    let o = svcca(&["train", &cfg, "--out", out.to_str().unwrap(), "--set", "data.validation=90"]);
    assert_refused_silent(&o, &["train.batch_size 32 is larger than the 10 training images", "data.validation held out 90"]);
    assert!(!out.exists());
}
