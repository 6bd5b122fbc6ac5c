//! The frozen prefix's output cache (`src/train/prefix_cache.rs`): a run that serves the
//! prefix from the cache trains as one that recomputes it (`freeze.cache_mib = 0`), also
//! across freezes that move the cached outputs up and over a budget that holds only the
//! smaller outputs; it is off where an image's output could change (augmentation,
//! batch-norm statistics still updating) and for the run folder it is a resource, not a
//! setting.

mod common;

use std::collections::HashMap;
use std::path::Path;
use svcca::config::{Config, FreezeAt, FreezeSchedule};
use tch::Tensor;

/// The tiny run (512 images, 16 batches an epoch, no augmentation), 48 steps: c1, c2, bn1
/// frozen at step 10, p1 and c3 at 20 (the cached outputs move up through them), c4 at 34.
fn tiny() -> Config {
    let at = |layer: &str, step: u64| FreezeAt { layer: layer.into(), step: Some(step), fraction: None };
    let mut c = common::tiny();
    c.train.steps = Some(48);
    c.checkpoints.every = 16;
    c.train.eval_every = 16;
    c.freeze.schedule = FreezeSchedule::Explicit;
    c.freeze.at = vec![at("c1", 10), at("c2", 10), at("bn1", 10), at("c3", 20), at("c4", 34)];
    c
}

fn final_weights(dir: &Path) -> HashMap<String, Tensor> {
    let p = dir.join("checkpoints").join(format!("step-{:08}.safetensors", 48));
    Tensor::read_safetensors(p).unwrap().into_iter().filter(|(n, _)| n.starts_with("model.")).collect()
}

/// The largest difference between two runs' final weights, relative to the weight's size.
fn largest_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (final_weights(a), final_weights(b));
    assert_eq!(a.len(), b.len());
    a.iter()
        .map(|(n, x)| {
            let scale = x.abs().max().double_value(&[]).max(1e-3);
            (x - &b[n]).abs().max().double_value(&[]) / scale
        })
        .fold(0.0, f64::max)
}

fn train(c: Config, dir: &Path) -> svcca::train::Summary {
    svcca::train::train(c, dir).unwrap()
}

#[test]
fn cached_prefix_trains_as_the_recomputed_one() {
    let tmp = tempfile::tempdir().unwrap();
    let (cached, recomputed) = (tmp.path().join("cached"), tmp.path().join("recomputed"));
    let s = train(tiny(), &cached);
    let mut off = tiny();
    off.freeze.cache_mib = 0;
    let r = train(off, &recomputed);
    assert_eq!(r.cache_served, 0);
    // Steps 10..48 have a frozen prefix. Epoch 2 (steps 16..32) sees every image, the
    // first four batches' outputs (and those of steps 10..16) moved up through p1 and c3
    // at step 20; from step 32 on every batch is served, moved up through c4 at 34. (A
    // batch of epoch 2 all of whose 32 images were among the 192 of steps 10..16 would be
    // served too: a chance of (192/512)^32.)
    assert_eq!(s.cache_served, 16, "steps served from the cache");
    let d = largest_difference(&cached, &recomputed);
    eprintln!("largest relative difference {d:e}");
    assert!(d < 1e-4, "final weights differ by {d:e} (relative)");
    assert!((s.test_acc - r.test_acc).abs() <= 1.0 / 128.0 + 1e-12, "{} vs {}", s.test_acc, r.test_acc);
}

#[test]
fn a_prefix_whose_output_could_change_is_not_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let mut augmented = tiny();
    augmented.data.flip = true;
    assert_eq!(train(augmented, &tmp.path().join("flip")).cache_served, 0);
    let mut updating = tiny();
    updating.freeze.freeze_bn_stats = false;
    assert_eq!(train(updating, &tmp.path().join("bn")).cache_served, 0);
}

#[test]
fn a_budget_holds_only_the_outputs_that_fit() {
    // The synthetic images are 3 x 32 x 32 and the convnet 8 wide: up to bn1 an image's
    // output is 8 x 32 x 32 floats (16 MiB for 512 images), from p1 on 8 x 16 x 16 (4 MiB).
    let tmp = tempfile::tempdir().unwrap();
    let at = |layer: &str, step: u64| FreezeAt { layer: layer.into(), step: Some(step), fraction: None };
    let mut c = tiny();
    c.freeze.at = vec![at("c1", 2), at("c2", 2), at("bn1", 2), at("c3", 4), at("c4", 34)];
    c.freeze.cache_mib = 4;
    let s = train(c.clone(), &tmp.path().join("small"));
    // Nothing cached until p1 and c3 freeze at step 4; filled by the end of epoch 2
    // (step 32), then served (moved up through c4 at 34).
    assert_eq!(s.cache_served, 16);
    let mut off = c;
    off.freeze.cache_mib = 0;
    train(off, &tmp.path().join("off"));
    let d = largest_difference(&tmp.path().join("small"), &tmp.path().join("off"));
    assert!(d < 1e-4, "final weights differ by {d:e} (relative)");
}

#[test]
fn a_folder_may_change_the_budget() {
    let tmp = tempfile::tempdir().unwrap();
    let mut c = tiny();
    train(c.clone(), tmp.path());
    // Continued with more steps would be another config; the same config with another
    // budget is the same run: reported as finished, not refused.
    c.freeze.cache_mib = 0;
    let s = train(c, tmp.path());
    assert_eq!(s.resumed_from, Some(48));
}
