//! The training loop, step by step as the paper trains: resume from the newest
//! checkpoint, then for each step freeze what is due, update, read the statistics, run
//! the freeze check, evaluate and checkpoint on schedule, and stop cleanly on a signal.
//!
//! Two hooks take part without the loop knowing their details: [`Freezing`] (the
//! `[freeze]` schedule: which prefix of the network is frozen at each step, and the
//! adaptive schedule's checks) and the store-mode [`Recorder`] (activations at each
//! checkpoint).

use super::adaptive::Adaptive;
use super::checkpoint::{self, Meta, Window};
use super::divergence::Divergence;
use super::freeze::Plan;
use super::metrics::{Metrics, Row};
use super::order::Order;
use super::prefix_cache::{self, PrefixCache};
use super::sgd::Sgd;
use super::{build, evaluate, evaluate_on, folder, schedule, Built, Summary};
use crate::activations::store::Recorder;
use crate::config::{ActivationMode, Config};
use crate::data::augment::{self, Augment};
use crate::data::Dataset;
use crate::device::{self, GpuArithmetic};
use crate::model::Network;
use crate::run_dir;
use indicatif::ProgressBar;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// An evaluation's mean loss and accuracy.
type LossAcc = (f64, f64);

/// One training job in its run folder, ready to run.
pub(crate) struct Trainer {
    config: Config,
    out: PathBuf,
    ckpt_dir: PathBuf,
    lock: run_dir::Lock,
    device: Device,
    data: Dataset,
    vs: tch::nn::VarStore,
    net: Network,
    sgd: Sgd,
    order: Order,
    augment: Augment,
    has_params: Vec<bool>,
    /// Each layer's multiply-adds, for the backward-work estimate.
    weight_costs: Vec<f64>,
    freezing: Freezing,
    /// The frozen prefix's outputs, where they cannot change (`None`: they can, said once).
    cache: Option<PrefixCache>,
    total: u64,
    /// The current epoch's batch order and augmentation, on the device.
    epoch: Option<EpochOnDevice>,
    /// How the GPU computes during the update, and outside it (evaluation, recording).
    arithmetic: Option<(GpuArithmetic, GpuArithmetic)>,
}

/// An epoch's batch order (`indices`, the epoch's batches one after another) and each
/// image's augmentation choices (`choices`, images x [`augment::CHOICES`]; `None`
/// without augmentation), uploaded in one host-to-device copy when the epoch starts: a
/// step then only takes views of them, with nothing to copy and nothing to wait for.
struct EpochOnDevice {
    epoch: u64,
    indices: Tensor,
    choices: Option<Tensor>,
}

/// The host-device copies the training loop made (this process): uploads of epochs'
/// orders, and reads of the train statistics. Counted where they are made, so that a
/// test can hold the loop to none per step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Transfers {
    pub steps: u64,
    pub uploads: u64,
    pub reads: u64,
}

/// The `[freeze]` schedule as a hook of the loop.
struct Freezing {
    plan: Plan,
    /// Layers frozen so far (a prefix of the network).
    frozen: usize,
    adaptive: Option<Adaptive>,
}

/// Where a run continues from.
struct Resume {
    /// The step of the checkpoint loaded (`None`: from scratch).
    from: Option<u64>,
    wall_before: f64,
    window: Window,
}

/// The state of the loop between steps.
struct Running {
    bar: ProgressBar,
    began: Instant,
    start: u64,
    wall_before: f64,
    /// Images per second on the bar: since this instant, from this step on.
    rate_since: (Instant, u64),
    /// Train statistics of the current metrics window (summed on the device).
    loss_sum: Tensor,
    correct: Tensor,
    seen: u64,
    /// The latest mean train loss and accuracy read.
    last: (f64, f64),
    watch: Divergence,
    metrics: Metrics,
    recorder: Option<Recorder>,
    transfers: Transfers,
}

impl Trainer {
    /// Loads the data, builds the network and checks what in `config` (checked, not yet
    /// resolved) depends on it, all before the run folder `out` is touched; then takes
    /// the folder's lock and makes the folder or checks it against the config.
    pub(crate) fn new(config: Config, out: &Path) -> anyhow::Result<Trainer> {
        let device = config.train.device.resolve()?;
        if let Some(n) = config.train.threads {
            crate::host::set_libtorch_threads(n);
        }
        let loaded = Instant::now();
        let Built { config, data, vs, net, costs, plan } = build(config, device)?;
        let validation = data.validation.as_ref().map_or(String::new(), |v| format!(", {} held out for validation", v.len()));
        tracing::info!(
            "{}: {} training{validation} and {} test images of {:?} on {} ({:.1}s)",
            config.data.dataset.as_str(),
            data.train.len(),
            data.test.len(),
            data.shape,
            device::name(device),
            loaded.elapsed().as_secs_f64()
        );
        let has_params: Vec<bool> = costs.iter().map(|c| c.1 > 0).collect();
        let arithmetic = device.is_cuda().then(|| {
            let t = &config.train;
            let update = GpuArithmetic { tf32: t.tf32, deterministic: t.deterministic };
            let rest = GpuArithmetic { tf32: false, deterministic: t.deterministic };
            tracing::info!(
                "GPU arithmetic: {}; evaluation and recorded activations in full float32",
                match (t.deterministic, t.tf32) {
                    (true, _) => "deterministic cuDNN algorithms, full float32 (train.deterministic)",
                    (false, true) => "convolutions in TF32 during the update (train.tf32 = false for full float32), cuDNN benchmark mode",
                    (false, false) => "full float32 (train.tf32 = false), cuDNN benchmark mode",
                }
            );
            rest.apply();
            (update, rest)
        });

        let lock = run_dir::lock(out, run_dir::Access::Exclusive)?;
        let ckpt_dir = folder::prepare(&config, out, lock.writable)?;
        let t = &config.train;
        let sgd = Sgd::new(&vs, t.momentum, t.nesterov, t.weight_decay);
        let order = Order::new(t.seed, data.train.len(), t.batch_size);
        let augment = Augment { padding: config.data.crop_padding, flip: config.data.flip };
        let cache = match prefix_cache::not_applicable(config.freeze.cache_mib, !augment.is_identity(), plan.bn_eval) {
            _ if !plan.is_active() => None,
            Some(why) => {
                tracing::info!("the frozen prefix's output is computed at every step (not cached): {why}");
                None
            }
            None => Some(PrefixCache::new(config.freeze.cache_mib, data.train.len(), t.batch_size, device)),
        };
        Ok(Trainer {
            total: config.steps(),
            out: out.to_path_buf(),
            ckpt_dir,
            lock,
            device,
            data,
            vs,
            net,
            sgd,
            order,
            augment,
            cache,
            weight_costs: costs.iter().map(|c| c.0).collect(),
            has_params,
            freezing: Freezing { plan, frozen: 0, adaptive: None },
            config,
            epoch: None,
            arithmetic,
        })
    }

    /// Trains to the end (or reports a finished run without writing); returns the
    /// summary and the folder's lock, still held.
    pub(crate) fn run(mut self) -> anyhow::Result<(Summary, run_dir::Lock)> {
        let resume = self.resume()?;
        let start = resume.from.unwrap_or(0);
        // `store` mode: activations on the probe set at every checkpoint.
        let recorder = match self.config.analysis.mode {
            ActivationMode::Store => Some(Recorder::new(&self.config, &self.data, &self.net, &self.out)?),
            ActivationMode::Replay => None,
        };
        if let (Some(r), Some(s)) = (&recorder, resume.from) {
            // In case the run stopped between a checkpoint and its activations (a
            // checkpoint written on a signal has none: it is not analysed).
            if checkpoint::scheduled(s, self.config.checkpoints.every, self.total) {
                r.save(&self.net, s)?;
            }
        }
        if start >= self.total {
            tracing::info!("{} is already trained ({} steps); nothing to do", self.out.display(), self.total);
            let summary = self.summary(resume.from, 0.0);
            return Ok((summary, self.lock));
        }
        let metrics = Metrics::open(&self.out, resume.from, self.data.validation.is_some())?;
        let mut run = Running {
            bar: progress_bar(start, self.total),
            began: Instant::now(),
            start,
            wall_before: resume.wall_before,
            rate_since: (Instant::now(), 0),
            loss_sum: Tensor::from(resume.window.loss_sum).to_device(self.device),
            correct: Tensor::from(resume.window.correct).to_device(self.device),
            seen: resume.window.seen,
            last: (f64::NAN, f64::NAN),
            watch: Divergence::new(start, self.ckpt_dir.clone()),
            metrics,
            recorder,
            transfers: Transfers::default(),
        };
        if resume.from.is_none() && self.config.checkpoints.at_start {
            self.initial_checkpoint(&mut run)?;
            // The wall clock counts training, from here.
            (run.began, run.rate_since) = (Instant::now(), (Instant::now(), 0));
        }
        self.freezing.start(&self.config, &self.data, &self.net, &self.has_params, &self.out, start)?;

        for step in start..self.total {
            self.freezing.before_step(step, start, &mut self.sgd, &self.out, &run.bar)?;
            let lr = self.update(step, &mut run);
            let done = step + 1;
            let check_now = self.freezing.checks_at(done);
            let eval_now = done % self.config.train.eval_every == 0 || done == self.total;
            let save_now = done % self.config.checkpoints.every == 0 || done == self.total;
            // The loss is read here only, and checked for divergence whenever it is read;
            // a freeze check reads it too, so as not to analyse a diverged network.
            if done % 10 == 0 || eval_now || save_now || check_now {
                self.read_statistics(&mut run, done)?;
            }
            if check_now {
                self.freezing.after_step(&self.net, &self.out, done, &run.bar)?;
            }
            if eval_now || save_now {
                self.row(&mut run, done, lr, eval_now, save_now)?;
            }
            if let Some(signal) = crate::preempt::requested().filter(|_| done < self.total) {
                return Err(self.stop(&mut run, done, lr, save_now, signal)?.into());
            }
        }
        run.bar.finish_and_clear();
        if let Some(c) = self.cache.as_ref().filter(|c| c.frozen_steps > 0) {
            tracing::info!(
                "the frozen prefix's output came from its cache on {} of the {} steps with a frozen prefix",
                c.served,
                c.frozen_steps
            );
        }
        let t = run.transfers;
        tracing::debug!(
            "host-device copies in the training loop: {} uploads (one per epoch), {} statistics reads, over {} steps",
            t.uploads,
            t.reads,
            t.steps
        );
        let seconds = run.began.elapsed().as_secs_f64();
        let images_per_second = (self.total - start) as f64 * self.config.train.batch_size as f64 / seconds.max(1e-9);
        let mut summary = self.summary(resume.from, images_per_second);
        summary.transfers = run.transfers;
        let validation = summary.validation.map_or(String::new(), |(_, a)| format!(", validation accuracy {:.2}%", 100.0 * a));
        tracing::info!(
            "trained to step {} in {seconds:.1}s ({images_per_second:.0} images/s): test accuracy {:.2}%{validation}",
            self.total,
            100.0 * summary.test_acc
        );
        Ok((summary, self.lock))
    }

    /// Loads the newest checkpoint that loads (a damaged one is set aside, see
    /// [`checkpoint::load_newest`]), and the adaptive schedule's decisions up to it.
    fn resume(&mut self) -> anyhow::Result<Resume> {
        let latest = checkpoint::load_newest(&self.ckpt_dir, &self.vs, &mut self.sgd)?;
        if let Some((_, path, meta)) = &latest {
            checkpoint::check_seed(path, meta, self.config.train.seed)?;
        }
        let resume = match &latest {
            Some((_, path, meta)) => {
                tracing::info!("resuming from {} (step {})", path.display(), meta.step);
                Resume { from: Some(meta.step), wall_before: meta.wall_seconds, window: meta.window.unwrap_or_default() }
            }
            None => Resume { from: None, wall_before: 0.0, window: Window::default() },
        };
        if self.freezing.plan.adaptive {
            self.freezing.plan.restore(&self.out, resume.from.unwrap_or(0))?;
        } else if let Some(step) = resume.from.filter(|&s| s < self.total && self.freezing.plan.is_active()) {
            // A finished run is only reported, whatever schedule froze it.
            self.freezing.plan.check_resumed(&self.out, step)?;
        }
        Ok(resume)
    }

    /// Step 0: the untrained network evaluated (on the validation set when there is
    /// one, else on the test set) and saved.
    fn initial_checkpoint(&self, run: &mut Running) -> anyhow::Result<()> {
        let t = &self.config.train;
        let (validation, test) = self.evaluation(0);
        run.metrics.append(&Row { step: 0, lr: schedule::learning_rate(t, 0, self.total), validation, test, ..Default::default() })?;
        checkpoint::save(&self.ckpt_dir, &self.vs, &self.sgd, Meta { step: 0, seed: t.seed, wall_seconds: 0.0, window: None })?;
        if let Some(r) = &run.recorder {
            r.save(&self.net, 0)?;
        }
        Ok(())
    }

    /// The evaluation after step `done`: `(validation, test)` loss and accuracy. With a
    /// validation set, it is read at every evaluation and the test set at the end only
    /// (`done == total`); without, the test set at every evaluation.
    fn evaluation(&self, done: u64) -> (Option<LossAcc>, Option<LossAcc>) {
        let batch = self.config.train.eval_batch_size;
        match &self.data.validation {
            Some(v) => {
                (Some(evaluate_on(&self.net, &self.data, v, batch)), (done == self.total).then(|| evaluate(&self.net, &self.data, batch)))
            }
            None => (None, Some(evaluate(&self.net, &self.data, batch))),
        }
    }

    /// One SGD update on the batch of `step` (0-based); its loss and correct count join
    /// the window's sums on the device. Returns the learning rate used.
    fn update(&mut self, step: u64, run: &mut Running) -> f64 {
        let (epoch, within) = self.order.position(step);
        if self.epoch.as_ref().map(|e| e.epoch) != Some(epoch) {
            self.epoch = Some(self.upload_epoch(epoch));
            run.transfers.uploads += 1;
        }
        let t = &self.config.train;
        let lr = schedule::learning_rate(t, step, self.total);
        let on_device = self.epoch.as_ref().expect("uploaded above");
        let b = t.batch_size as i64;
        let idx = on_device.indices.narrow(0, within as i64 * b, b);
        let choices = on_device.choices.as_ref().map(|c| c.narrow(0, within as i64 * b, b));
        let (data, augment) = (&self.data, &self.augment);
        let images = || {
            let batch = data.train.images.index_select(0, &idx);
            data.normalise(&choices.as_ref().map_or(batch.shallow_clone(), |c| augment.apply(&batch, c)))
        };
        let labels = self.data.train.labels.index_select(0, &idx);
        let (frozen, bn_eval) = (self.freezing.frozen, self.freezing.plan.bn_eval);
        if let Some((update, _)) = self.arithmetic {
            update.apply();
        }
        let logits = match &mut self.cache {
            Some(cache) if frozen > 0 => {
                let h = cache.prefix_output(&self.net, frozen, self.order.batch(step), &idx, images);
                self.net.forward_from(&h, frozen, true)
            }
            _ => self.net.forward_frozen(&images(), true, frozen, bn_eval),
        };
        let loss = logits.cross_entropy_for_logits(&labels);
        self.sgd.zero_grad();
        loss.backward();
        self.sgd.step(lr);
        if let Some((_, rest)) = self.arithmetic {
            rest.apply();
        }
        tch::no_grad(|| {
            run.loss_sum += loss.detach();
            run.correct += logits.argmax(-1, false).eq_tensor(&labels).sum(Kind::Int64);
        });
        run.seen += t.batch_size as u64;
        run.transfers.steps += 1;
        lr
    }

    /// Epoch `epoch`'s batch order and augmentation choices (drawn from the same keyed
    /// streams as ever: per step, so a resumed run draws what it would have), in one
    /// upload.
    fn upload_epoch(&mut self, epoch: u64) -> EpochOnDevice {
        let per = self.order.steps_per_epoch();
        let batch = self.order.batch_size();
        let mut all = self.order.epoch(epoch).to_vec();
        let images = all.len() as i64;
        if !self.augment.is_identity() {
            all.reserve(all.len() * augment::CHOICES);
            for s in epoch * per..(epoch + 1) * per {
                self.augment.draw(batch, &mut self.order.augmentation(s), &mut all);
            }
        }
        let uploaded = Tensor::from_slice(&all).to_device(self.device);
        let choices = (!self.augment.is_identity())
            .then(|| uploaded.narrow(0, images, images * augment::CHOICES as i64).view([images, augment::CHOICES as i64]));
        EpochOnDevice { epoch, indices: uploaded.narrow(0, 0, images), choices }
    }

    /// Reads the window's mean train loss and accuracy off the device (stopping on a
    /// non-finite loss) and updates the progress bar.
    fn read_statistics(&self, run: &mut Running, done: u64) -> anyhow::Result<()> {
        let t = &self.config.train;
        let rate = (done - run.start - run.rate_since.1) as f64 * t.batch_size as f64 / run.rate_since.0.elapsed().as_secs_f64().max(1e-9);
        let steps_in = (run.seen / t.batch_size as u64).max(1) as f64;
        // Both sums in one copy off the device.
        let sums = Vec::<f64>::try_from(&Tensor::stack(&[run.loss_sum.to_kind(Kind::Double), run.correct.to_kind(Kind::Double)], 0))
            .expect("two float64 sums");
        run.transfers.reads += 1;
        run.last = (sums[0] / steps_in, sums[1] / run.seen as f64);
        run.watch.train_loss(run.last.0, done, |s| schedule::learning_rate(t, s, self.total))?;
        run.bar.set_message(format!("loss {:.3} acc {:.1}% {:.0} img/s", run.last.0, 100.0 * run.last.1, rate));
        run.bar.set_position(done);
        run.rate_since = (Instant::now(), done - run.start);
        Ok(())
    }

    /// A metrics row after step `done`: the evaluation ([`Trainer::evaluation`], `eval_now`), the
    /// checkpoint written (`save_now`, with the store-mode activations), old checkpoints
    /// pruned; then the train window restarts, so that a resume (always at a row) sees
    /// the same windows as an uninterrupted run.
    fn row(&self, run: &mut Running, done: u64, lr: f64, eval_now: bool, save_now: bool) -> anyhow::Result<()> {
        let t = &self.config.train;
        let (validation, test) = if eval_now { self.evaluation(done) } else { (None, None) };
        if let Some((loss, _)) = validation {
            run.watch.eval_loss("validation", loss, done, lr)?;
        }
        if let Some((loss, _)) = test {
            run.watch.eval_loss("test", loss, done, lr)?;
        }
        if save_now {
            // Before the row: a checkpoint step's row is written only with its checkpoint.
            run.watch.state(&self.vs, &self.sgd, done, lr)?;
        }
        let wall = run.wall_before + run.began.elapsed().as_secs_f64();
        let row = Row {
            step: done,
            epoch: done as f64 / self.order.steps_per_epoch() as f64,
            lr,
            train: Some(run.last),
            validation,
            test,
            wall_seconds: wall,
        };
        run.metrics.append(&row)?;
        if eval_now {
            let pair =
                |name: &str, p: Option<(f64, f64)>| p.map_or(String::new(), |(l, a)| format!(", {name} loss {l:.4} acc {:.2}%", 100.0 * a));
            run.bar.suspend(|| {
                tracing::info!(
                    "step {done}/{} epoch {:.2} lr {lr:.4}: train loss {:.4} acc {:.2}%{}{}",
                    self.total,
                    row.epoch,
                    run.last.0,
                    100.0 * run.last.1,
                    pair("validation", validation),
                    pair("test", test)
                )
            });
        }
        if save_now {
            checkpoint::save(&self.ckpt_dir, &self.vs, &self.sgd, Meta { step: done, seed: t.seed, wall_seconds: wall, window: None })?;
            if let Some(r) = &run.recorder {
                run.bar.suspend(|| r.save(&self.net, done))?;
            }
            checkpoint::remove_unscheduled(&self.ckpt_dir, done, self.config.checkpoints.every, self.total)?;
            if let Some(k) = self.config.checkpoints.keep_last {
                checkpoint::prune(&self.ckpt_dir, k)?;
            }
        }
        run.loss_sum = Tensor::zeros([], (Kind::Float, self.device));
        run.correct = Tensor::zeros([], (Kind::Int64, self.device));
        run.seen = 0;
        Ok(())
    }

    /// On SIGUSR1/SIGTERM after step `done`: a checkpoint (unless one was just written)
    /// holding the partial train window, so that the resumed run's metrics match an
    /// uninterrupted run's; then the error that exits with the requeue status.
    fn stop(
        &self,
        run: &mut Running,
        done: u64,
        lr: f64,
        save_now: bool,
        signal: &'static str,
    ) -> anyhow::Result<crate::preempt::Preempted> {
        run.bar.finish_and_clear();
        if !save_now {
            let window = Window { loss_sum: run.loss_sum.double_value(&[]) as f32, correct: run.correct.int64_value(&[]), seen: run.seen };
            run.watch.train_loss(window.loss_sum as f64, done, |s| schedule::learning_rate(&self.config.train, s, self.total))?;
            run.watch.state(&self.vs, &self.sgd, done, lr)?;
            self.freezing.before_signal_checkpoint(&self.out, done)?;
            let wall = run.wall_before + run.began.elapsed().as_secs_f64();
            checkpoint::save(
                &self.ckpt_dir,
                &self.vs,
                &self.sgd,
                Meta { step: done, seed: self.config.train.seed, wall_seconds: wall, window: Some(window) },
            )?;
        }
        tracing::info!("{signal}: checkpoint at step {done} of {} written to {}", self.total, self.ckpt_dir.display());
        Ok(crate::preempt::Preempted { signal, at: format!("at step {done} of {}", self.total) })
    }

    /// The run's summary, the final network evaluated on the test set (and on the
    /// validation set when there is one).
    fn summary(&self, resumed_from: Option<u64>, images_per_second: f64) -> Summary {
        let batch = self.config.train.eval_batch_size;
        let (test_loss, test_acc) = evaluate(&self.net, &self.data, batch);
        Summary {
            out: self.out.clone(),
            steps: self.total,
            resumed_from,
            test_loss,
            test_acc,
            validation: self.data.validation.as_ref().map(|v| evaluate_on(&self.net, &self.data, v, batch)),
            images_per_second,
            backward_saved: self.freezing.plan.backward_saved(&self.weight_costs),
            cache_served: self.cache.as_ref().map_or(0, |c| c.served),
            transfers: Transfers::default(),
        }
    }
}

impl Freezing {
    /// Before the first step of this process (at `start`): `freeze.csv` as of `start`,
    /// and the adaptive schedule's state.
    fn start(&mut self, config: &Config, data: &Dataset, net: &Network, has_params: &[bool], out: &Path, start: u64) -> anyhow::Result<()> {
        if self.plan.is_active() {
            self.plan.write(out, start)?;
        }
        if self.plan.adaptive {
            let mut a = Adaptive::new(config, data, net, has_params, out, start)?;
            a.prime(net, &self.plan, out, start)?;
            self.adaptive = Some(a);
        }
        Ok(())
    }

    /// Freezes the layers due at `step` (logged when the decision is this process's:
    /// from `start` on); the optimiser stops touching their parameters.
    fn before_step(&mut self, step: u64, start: u64, sgd: &mut Sgd, out: &Path, bar: &ProgressBar) -> anyhow::Result<()> {
        let now_frozen = self.plan.frozen_at(step);
        if now_frozen > self.frozen {
            for (name, at) in &self.plan.layers[self.frozen..now_frozen] {
                let n = sgd.freeze_layer(name);
                if at.is_some_and(|s| s >= start) {
                    bar.suspend(|| tracing::info!("step {step}: froze layer {name} ({n} parameter tensors)"));
                }
            }
            self.frozen = now_frozen;
            self.plan.write(out, step)?;
        }
        Ok(())
    }

    /// Whether the adaptive schedule checks after step `done`.
    fn checks_at(&self, done: u64) -> bool {
        self.adaptive.as_ref().is_some_and(|a| a.checks_at(done))
    }

    /// The adaptive schedule's check after step `done`.
    fn after_step(&mut self, net: &Network, out: &Path, done: u64, bar: &ProgressBar) -> anyhow::Result<()> {
        if let Some(a) = self.adaptive.as_mut() {
            bar.suspend(|| a.check(net, &mut self.plan, out, done))?;
        }
        Ok(())
    }

    /// Before a checkpoint written on a signal between checks: the adaptive schedule's
    /// reference activations, which the resumed run needs.
    fn before_signal_checkpoint(&self, out: &Path, done: u64) -> anyhow::Result<()> {
        match &self.adaptive {
            Some(a) => a.save_reference(out, done),
            None => Ok(()),
        }
    }
}

fn progress_bar(start: u64, total: u64) -> ProgressBar {
    let bar = ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} steps {msg} [{elapsed_precise} < {eta_precise}]")
            .expect("a valid template"),
    );
    bar.set_position(start);
    bar.reset_eta();
    bar
}
