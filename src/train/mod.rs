//! The training job: one config, one run folder.
//!
//! `run` reads and checks the config, loads the data onto the device, builds the network
//! and then either starts fresh or continues from the folder's newest checkpoint. The
//! folder holds `config.toml` (the resolved config), `checkpoints/`, `metrics.csv`.
//! A folder made by a different config is refused, with nothing touched.

pub mod adaptive;
pub mod checkpoint;
pub mod freeze;
pub mod metrics;
pub mod order;
pub mod schedule;
pub mod sgd;

use crate::activations::store::Recorder;
use crate::config::{differences, ActivationMode, AnalysisConfig, Config};
use crate::data::augment::Augment;
use crate::data::Dataset;
use crate::device;
use crate::error::InputError;
use crate::model::{self, Network};
use crate::run_dir::{self, CONFIG_FILE};
use anyhow::Context;
use checkpoint::Meta;
use metrics::{Metrics, Row};
use order::Order;
use sgd::Sgd;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{nn::ModuleT, Kind, Reduction, Tensor};

/// What a finished (or already finished) run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub out: PathBuf,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub test_loss: f64,
    pub test_acc: f64,
    pub images_per_second: f64,
    /// Freeze training: the estimated share of backward work saved over the whole run
    /// (0 without freezing).
    pub backward_saved: f64,
}

/// Trains `config` (checked, not yet resolved) in run folder `out`.
///
/// Everything that can be known before training is checked before the folder is touched
/// (layer names against the network, freeze steps within the run); then the folder's
/// lock is taken (`crate::run_dir`) and the folder made or checked. A finished run is
/// reported without writing anything.
pub fn train(config: Config, out: &Path) -> anyhow::Result<Summary> {
    train_holding(config, out).map(|(summary, _lock)| summary)
}

/// [`train`], returning the run folder's lock still held, for work that follows on the
/// same folder (`svcca run` analyses it) with no other process in between.
pub fn train_holding(config: Config, out: &Path) -> anyhow::Result<(Summary, run_dir::Lock)> {
    let device = config.train.device.resolve()?;
    if let Some(n) = config.train.threads {
        tch::set_num_threads(n);
    }
    let loaded = Instant::now();
    let data = Dataset::load(&config.data, device)?;
    tracing::info!(
        "{}: {} training and {} test images of {:?} on {} ({:.1}s)",
        config.data.dataset.as_str(),
        data.train.len(),
        data.test.len(),
        data.shape,
        device::name(device),
        loaded.elapsed().as_secs_f64()
    );
    if config.train.batch_size > data.train.len() {
        return Err(InputError::new(format!(
            "train.batch_size {} is larger than the {} training images",
            config.train.batch_size,
            data.train.len()
        ))
        .into());
    }
    let config = config.resolve(data.train.len());
    let (vs, net) = {
        let _init = model::init_lock();
        tch::manual_seed(config.train.seed as i64);
        let vs = tch::nn::VarStore::new(device);
        let net = model::build(&vs.root(), &config.model, data.shape, data.classes)?;
        (vs, net)
    };
    let total = config.steps();
    let costs = layer_costs(&vs, &net, &data);
    let has_params: Vec<bool> = costs.iter().map(|c| c.1 > 0).collect();
    let mut plan = check_against(&config, &net, &has_params)?;

    let lock = run_dir::lock(out, run_dir::Access::Exclusive)?;
    let ckpt_dir = prepare_folder(&config, out, lock.writable)?;
    let t = &config.train;
    let mut sgd = Sgd::new(&vs, t.momentum, t.nesterov, t.weight_decay);
    let weight_costs: Vec<f64> = costs.iter().map(|c| c.0).collect();
    let mut frozen = 0usize;
    let mut order = Order::new(t.seed, data.train.len(), t.batch_size);
    let per_epoch = order.steps_per_epoch() as f64;

    // The newest checkpoint that loads: a damaged one is set aside (see load_newest).
    let latest = checkpoint::load_newest(&ckpt_dir, &vs, &mut sgd)?;
    let (start, wall_before, window_before) = match &latest {
        Some((_, path, meta)) => {
            tracing::info!("resuming from {} (step {})", path.display(), meta.step);
            (meta.step, meta.wall_seconds, meta.window.unwrap_or_default())
        }
        None => (0, 0.0, checkpoint::Window::default()),
    };
    let latest = latest.map(|(step, path, _)| (step, path));
    if plan.adaptive {
        plan.restore(out, start)?;
    }
    // `store` mode: activations on the probe set at every checkpoint (see analysis::store).
    let recorder = match config.analysis.mode {
        ActivationMode::Store => Some(Recorder::new(&config, &data, &net, out)?),
        ActivationMode::Replay => None,
    };
    if let (Some(r), Some((s, _))) = (&recorder, &latest) {
        // In case the run stopped between a checkpoint and its activations (a checkpoint
        // written on a signal has none: it is not analysed).
        if checkpoint::scheduled(*s, config.checkpoints.every, total) {
            r.save(&net, *s)?;
        }
    }
    if start >= total {
        let (test_loss, test_acc) = evaluate(&net, &data, t.eval_batch_size);
        tracing::info!("{} is already trained ({total} steps); nothing to do", out.display());
        let backward_saved = plan.backward_saved(&weight_costs);
        return Ok((Summary { out: out.to_path_buf(), steps: total, resumed_from: Some(start), test_loss, test_acc, images_per_second: 0.0, backward_saved }, lock));
    }
    let mut metrics = Metrics::open(out, latest.as_ref().map(|(s, _)| *s))?;
    if latest.is_none() && config.checkpoints.at_start {
        let test = evaluate(&net, &data, t.eval_batch_size);
        metrics.append(&Row { step: 0, lr: schedule::learning_rate(t, 0, total), test: Some(test), ..Default::default() })?;
        checkpoint::save(&ckpt_dir, &vs, &sgd, Meta { step: 0, seed: t.seed, wall_seconds: 0.0, window: None })?;
        if let Some(r) = &recorder {
            r.save(&net, 0)?;
        }
    }

    let augment = Augment { padding: config.data.crop_padding, flip: config.data.flip };
    let bar = progress_bar(start, total);
    let began = Instant::now();
    let mut window = (Instant::now(), 0u64); // for images/s on the bar
    // A resume from a checkpoint written between metrics rows (on a signal) continues
    // that row's train statistics.
    let (mut loss_sum, mut correct, mut seen) = (
        Tensor::from(window_before.loss_sum).to_device(device),
        Tensor::from(window_before.correct).to_device(device),
        window_before.seen,
    );
    let mut last = (f64::NAN, f64::NAN);
    let mut watch = Divergence { finite_until: start, ckpt_dir: ckpt_dir.clone() };
    if plan.is_active() {
        plan.write(out, start)?;
    }
    let mut adaptive = match plan.adaptive {
        true => {
            let mut a = adaptive::Adaptive::new(&config, &data, &net, &has_params, out, start)?;
            a.prime(&net, &plan, out, start)?;
            Some(a)
        }
        false => None,
    };
    for step in start..total {
        let now_frozen = plan.frozen_at(step);
        if now_frozen > frozen {
            for (name, at) in &plan.layers[frozen..now_frozen] {
                let n = sgd.freeze_layer(name);
                if at.is_some_and(|s| s >= start) {
                    bar.suspend(|| tracing::info!("step {step}: froze layer {name} ({n} parameter tensors)"));
                }
            }
            frozen = now_frozen;
            plan.write(out, step)?;
        }
        let lr = schedule::learning_rate(t, step, total);
        let idx = Tensor::from_slice(order.batch(step)).to_device(device);
        let images = augment.apply(&data.train.images.index_select(0, &idx), &mut order.augmentation(step));
        let labels = data.train.labels.index_select(0, &idx);
        let logits = net.forward_frozen(&data.normalise(&images), true, frozen, plan.bn_eval);
        let loss = logits.cross_entropy_for_logits(&labels);
        sgd.zero_grad();
        loss.backward();
        sgd.step(lr);
        tch::no_grad(|| {
            loss_sum += loss.detach();
            correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
        });
        seen += t.batch_size as u64;
        let done = step + 1;
        let adaptive_now = adaptive.as_ref().is_some_and(|a| a.checks_at(done));
        let eval_now = done % t.eval_every == 0 || done == total;
        let save_now = done % config.checkpoints.every == 0 || done == total;
        // The loss is read here only, and checked for divergence whenever it is read; an
        // adaptive check reads it too, so as not to analyse a diverged network.
        if done % 10 == 0 || eval_now || save_now || adaptive_now {
            let rate = (done - start - window.1) as f64 * t.batch_size as f64 / window.0.elapsed().as_secs_f64().max(1e-9);
            let steps_in = (seen / t.batch_size as u64).max(1) as f64;
            last = (loss_sum.double_value(&[]) / steps_in, correct.double_value(&[]) / seen as f64);
            watch.train_loss(last.0, done, |s| schedule::learning_rate(t, s, total))?;
            bar.set_message(format!("loss {:.3} acc {:.1}% {:.0} img/s", last.0, 100.0 * last.1, rate));
            bar.set_position(done);
            window = (Instant::now(), done - start);
        }
        if let Some(a) = adaptive.as_mut().filter(|_| adaptive_now) {
            bar.suspend(|| a.check(&net, &mut plan, out, done))?;
        }
        if eval_now || save_now {
            let test = eval_now.then(|| evaluate(&net, &data, t.eval_batch_size));
            if let Some((test_loss, _)) = test {
                watch.test_loss(test_loss, done, lr)?;
            }
            if save_now {
                // Before the row: a checkpoint step's row is written only with its checkpoint.
                watch.state(&vs, &sgd, done, lr)?;
            }
            let wall = wall_before + began.elapsed().as_secs_f64();
            let row = Row { step: done, epoch: done as f64 / per_epoch, lr, train: Some(last), test, wall_seconds: wall };
            metrics.append(&row)?;
            if let Some((tl, ta)) = test {
                bar.suspend(|| {
                    tracing::info!(
                        "step {done}/{total} epoch {:.2} lr {lr:.4}: train loss {:.4} acc {:.2}%, test loss {tl:.4} acc {:.2}%",
                        row.epoch,
                        last.0,
                        100.0 * last.1,
                        100.0 * ta
                    )
                });
            }
            if save_now {
                checkpoint::save(&ckpt_dir, &vs, &sgd, Meta { step: done, seed: t.seed, wall_seconds: wall, window: None })?;
                if let Some(r) = &recorder {
                    bar.suspend(|| r.save(&net, done))?;
                }
                checkpoint::remove_unscheduled(&ckpt_dir, done, config.checkpoints.every, total)?;
                if let Some(k) = config.checkpoints.keep_last {
                    checkpoint::prune(&ckpt_dir, k)?;
                }
            }
            // Train statistics restart at every row, so a resume (always at a row) sees
            // the same windows as an uninterrupted run.
            loss_sum = Tensor::zeros([], (Kind::Float, device));
            correct = Tensor::zeros([], (Kind::Int64, device));
            seen = 0;
        }
        if let Some(signal) = crate::preempt::requested().filter(|_| done < total) {
            bar.finish_and_clear();
            if !save_now {
                let window = checkpoint::Window { loss_sum: loss_sum.double_value(&[]) as f32, correct: correct.int64_value(&[]), seen };
                watch.train_loss(window.loss_sum as f64, done, |s| schedule::learning_rate(t, s, total))?;
                watch.state(&vs, &sgd, done, lr)?;
                if let Some(a) = &adaptive {
                    a.save_reference(out, done)?; // before the checkpoint that needs it
                }
                let wall = wall_before + began.elapsed().as_secs_f64();
                checkpoint::save(&ckpt_dir, &vs, &sgd, Meta { step: done, seed: t.seed, wall_seconds: wall, window: Some(window) })?;
            }
            tracing::info!("{signal}: checkpoint at step {done} of {total} written to {}", ckpt_dir.display());
            return Err(crate::preempt::Preempted { signal, at: format!("at step {done} of {total}") }.into());
        }
    }
    bar.finish_and_clear();
    let seconds = began.elapsed().as_secs_f64();
    let images_per_second = (total - start) as f64 * t.batch_size as f64 / seconds.max(1e-9);
    let (test_loss, test_acc) = evaluate(&net, &data, t.eval_batch_size);
    tracing::info!("trained to step {total} in {seconds:.1}s ({images_per_second:.0} images/s): test accuracy {:.2}%", 100.0 * test_acc);
    let backward_saved = plan.backward_saved(&weight_costs);
    let summary = Summary {
        out: out.to_path_buf(),
        steps: total,
        resumed_from: latest.map(|(s, _)| s),
        test_loss,
        test_acc,
        images_per_second,
        backward_saved,
    };
    Ok((summary, lock))
}

/// Checks what in `config` depends on the network, without training or writing
/// anything: `svcca experiment freeze` calls it before its first run.
pub fn check(config: &Config) -> anyhow::Result<()> {
    let data = Dataset::load(&config.data, tch::Device::Cpu)?;
    let config = config.clone().resolve(data.train.len());
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let net = {
        let _init = model::init_lock();
        model::build(&vs.root(), &config.model, data.shape, data.classes)?
    };
    let has_params: Vec<bool> = layer_costs(&vs, &net, &data).iter().map(|c| c.1 > 0).collect();
    check_against(&config, &net, &has_params).map(drop)
}

/// The freeze plan of `config` (resolved) for `net`, and the analysed layers checked
/// against it: layer names, bottom-up order, steps within the run.
fn check_against(config: &Config, net: &Network, has_params: &[bool]) -> anyhow::Result<freeze::Plan> {
    let plan = freeze::Plan::new(&config.freeze, &net.layer_names(), has_params, config.steps())?;
    crate::activations::store::layers(config, net)?;
    Ok(plan)
}

/// Stops training at the first non-finite loss, before it reaches a metrics row or a
/// checkpoint, so that the run folder keeps only what was written before it diverged.
///
/// Reading a value off the device waits for the device (a sync), so the loss is not read
/// at every step. The loop already reads the running loss sum of the metrics window
/// every 10 steps, at every row and before every checkpoint; a NaN or Inf loss makes
/// that sum NaN or Inf, so checking the sum whenever it is read costs nothing and finds
/// the divergence within at most 10 steps. The price is that the error names the steps
/// since the previous read, not the exact step. A finite loss does not make the update
/// after it finite (a gradient can overflow), so the weights and momentum buffers are
/// also checked on the device before each checkpoint: one more read per checkpoint,
/// which copies them to the host anyway.
struct Divergence {
    /// The loss was last read, finite, after this many steps.
    finite_until: u64,
    ckpt_dir: PathBuf,
}

impl Divergence {
    /// `loss`: the mean (or sum) of the training losses of steps up to `done`, read now;
    /// `lr_of`: the learning rate of a (0-based) update.
    fn train_loss(&mut self, loss: f64, done: u64, lr_of: impl Fn(u64) -> f64) -> Result<(), InputError> {
        if loss.is_finite() {
            self.finite_until = done;
            return Ok(());
        }
        let first = self.finite_until + 1;
        let (lr_first, lr_last) = (lr_of(first - 1), lr_of(done - 1));
        let (steps, lr) = match (first == done, lr_first == lr_last) {
            (true, _) => (format!("at step {done}"), format!("lr {}", lr_text(lr_last))),
            (false, true) => (format!("at one of steps {first} to {done}"), format!("lr {}", lr_text(lr_last))),
            (false, false) => (format!("at one of steps {first} to {done}"), format!("lr {} to {}", lr_text(lr_first), lr_text(lr_last))),
        };
        Err(self.error(format!("the training loss became {} {steps} ({lr})", loss_text(loss))))
    }

    fn test_loss(&self, loss: f64, done: u64, lr: f64) -> Result<(), InputError> {
        match loss.is_finite() {
            true => Ok(()),
            false => Err(self.error(format!("the test loss became {} at step {done} (lr {})", loss_text(loss), lr_text(lr)))),
        }
    }

    /// Checks the weights, batch-norm statistics and momentum buffers about to be saved.
    fn state(&self, vs: &tch::nn::VarStore, sgd: &Sgd, done: u64, lr: f64) -> Result<(), InputError> {
        let tensors: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .map(|(n, t)| (format!("model.{n}"), t))
            .chain(sgd.state().into_iter().map(|(n, t)| (format!("momentum.{n}"), t)))
            .collect();
        let finite = |t: &Tensor| t.isfinite().all();
        let all = tch::no_grad(|| {
            tensors.iter().fold(Tensor::ones([], (Kind::Bool, vs.device())), |acc, (_, t)| acc.logical_and(&finite(t)))
        });
        if all.int64_value(&[]) != 0 {
            return Ok(());
        }
        let name = tensors.iter().find(|(_, t)| tch::no_grad(|| finite(t)).int64_value(&[]) == 0).map_or("", |(n, _)| n.as_str());
        Err(self.error(format!("the update of step {done} (lr {}) made {name} NaN or infinite", lr_text(lr))))
    }

    fn error(&self, what: String) -> InputError {
        let kept = match checkpoint::list(&self.ckpt_dir).pop() {
            Some((_, path)) => format!("the newest checkpoint, {}, is from before", path.display()),
            None => "no checkpoint was written before".to_string(),
        };
        InputError::new(format!(
            "training diverged: {what}. Stopped there, with nothing of the diverged steps saved ({kept}). Lower train.lr (or raise train.warmup_steps) and train into a new run folder (--out)"
        ))
    }
}

/// A learning rate in four significant digits at most: 0.05, 1.707, 1e10, 8.802e9.
fn lr_text(lr: f64) -> String {
    let text = format!("{lr:.3e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let short: f64 = format!("{mantissa}e{exponent}").parse().unwrap_or(lr);
    match (1e-3..1e4).contains(&short.abs()) {
        true => format!("{short}"),
        false => format!("{}e{exponent}", mantissa.trim_end_matches('0').trim_end_matches('.')),
    }
}

fn loss_text(loss: f64) -> &'static str {
    if loss.is_nan() {
        "NaN"
    } else {
        "infinite"
    }
}

/// Each layer's cost (multiply-adds of its trainable weights on one image: weight
/// elements times output positions) and its number of trainable parameter tensors.
pub fn layer_costs(vs: &tch::nn::VarStore, net: &Network, data: &Dataset) -> Vec<(f64, usize)> {
    let names = net.layer_names();
    let vars = vs.variables();
    let x = data.normalise(&data.test.images.narrow(0, 0, 1));
    let outs = tch::no_grad(|| net.forward_taps(&x, false, &names)).map(|(_, o)| o).unwrap_or_default();
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let prefix = format!("{name}.");
            let mine: Vec<&Tensor> = vars.iter().filter(|(n, t)| n.starts_with(&prefix) && t.requires_grad()).map(|(_, t)| t).collect();
            let positions = outs.get(i).map_or(1, |o| o.size().iter().skip(2).product::<i64>().max(1));
            let weights: i64 = mine.iter().filter(|t| t.dim() >= 2).map(|t| t.numel() as i64).sum();
            ((weights * positions) as f64, mine.len())
        })
        .collect()
}

/// Checks the run folder (locked, made by [`run_dir::lock`]) against `config`, or writes
/// `config` into a new one; returns the checkpoint folder. Refused (exit 2), with nothing
/// touched: a folder made by a different config; one with results but no `config.toml`
/// (no way to tell what made them); a change of the `[analysis]` settings that store
/// mode records during training, once training has begun.
fn prepare_folder(config: &Config, out: &Path, writable: bool) -> anyhow::Result<PathBuf> {
    let config_path = out.join(CONFIG_FILE);
    let ckpt = out.join(checkpoint::FOLDER);
    let started = !checkpoint::list(&ckpt).is_empty();
    if config_path.exists() {
        let text = std::fs::read_to_string(&config_path).with_context(|| format!("cannot read {}", config_path.display()))?;
        let before = Config::parse(&text, &config_path.display().to_string(), &[])?;
        let diff = differences(&before, config);
        if !diff.is_empty() {
            return Err(InputError::new(format!(
                "{}: this run folder belongs to a different config ({}, folder vs now); use another --out, or delete the folder to start over",
                config_path.display(),
                diff.join("; ")
            ))
            .into());
        }
        let recorded = recording_differences(&before.analysis, &config.analysis);
        if started && !recorded.is_empty() {
            return Err(InputError::new(format!(
                "{}: {} (folder vs now): store mode records activations at each checkpoint while training, and this run's checkpoints were made under the folder's settings, so the activations of the past checkpoints cannot be recorded now. Set them back for this folder, or train into another --out",
                config_path.display(),
                recorded.join("; ")
            ))
            .into());
        }
        if before.analysis != config.analysis {
            // Only analysis settings that training does not use changed: the folder's
            // config takes them, and the analysis refuses to mix them with results made
            // under the old ones (`analysis::settings`).
            tracing::info!("{}: [analysis] updated from the config", config_path.display());
            crate::io::write_atomic(&config_path, config.to_toml().as_bytes())?;
        }
    } else {
        let results: Vec<&str> = [
            ("checkpoints/", started),
            (metrics::FILE, out.join(metrics::FILE).exists()),
            (freeze::FILE, out.join(freeze::FILE).exists()),
            ("activations/", out.join(crate::activations::store::FOLDER).exists()),
        ]
        .into_iter()
        .filter_map(|(name, present)| present.then_some(name))
        .collect();
        if !results.is_empty() {
            return Err(InputError::new(format!(
                "{}: no {CONFIG_FILE}, but results are there ({}): the config that made them cannot be known. Put its {CONFIG_FILE} back (a copy of the run's resolved config), or use another --out",
                out.display(),
                results.join(", ")
            ))
            .into());
        }
        if !writable {
            return Err(InputError::new(format!("{}: not a run folder, and it cannot be written", out.display())).into());
        }
        crate::io::write_atomic(&config_path, config.to_toml().as_bytes())?;
    }
    if !ckpt.exists() {
        std::fs::create_dir_all(&ckpt).with_context(|| format!("cannot create {}", ckpt.display()))?;
    }
    Ok(ckpt)
}

/// The `[analysis]` settings that store mode fixes while training (what is recorded, and
/// whether), differing between `a` (the folder's) and `b`: `key: a vs b`.
fn recording_differences(a: &AnalysisConfig, b: &AnalysisConfig) -> Vec<String> {
    let mut out = Vec::new();
    if a.mode != b.mode {
        out.push(format!("analysis.mode: {:?} vs {:?}", a.mode, b.mode).to_lowercase());
    } else if a.mode == ActivationMode::Store {
        let fields = [
            ("analysis.probe_size", a.probe_size.to_string(), b.probe_size.to_string()),
            ("analysis.seed", a.seed.to_string(), b.seed.to_string()),
            ("analysis.dtype", format!("{:?}", a.dtype).to_lowercase(), format!("{:?}", b.dtype).to_lowercase()),
            ("analysis.layers", format!("{:?}", a.layers), format!("{:?}", b.layers)),
        ];
        out.extend(fields.into_iter().filter(|(_, x, y)| x != y).map(|(k, x, y)| format!("{k}: {x} vs {y}")));
    }
    out
}

/// Mean loss and accuracy on the test set (batch norm in inference mode).
pub fn evaluate(net: &Network, data: &Dataset, batch: usize) -> (f64, f64) {
    tch::no_grad(|| {
        let n = data.test.len() as i64;
        let device = data.test.labels.device();
        let mut loss = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut i = 0;
        while i < n {
            let len = (batch as i64).min(n - i);
            let x = data.normalise(&data.test.images.narrow(0, i, len));
            let y = data.test.labels.narrow(0, i, len);
            let logits = net.forward_t(&x, false);
            loss += logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0).to_kind(Kind::Double);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            i += len;
        }
        (loss.double_value(&[]) / n as f64, correct.double_value(&[]) / n as f64)
    })
}

fn progress_bar(start: u64, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid template"),
    );
    bar.set_position(start);
    bar.reset_eta();
    bar
}
