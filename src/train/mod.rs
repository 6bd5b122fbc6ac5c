//! The training job: one config, one run folder.
//!
//! [`train`] checks the config against the network, locks the run folder, and either
//! starts fresh or continues from the folder's newest checkpoint ([`trainer::Trainer`],
//! the loop). The folder holds `config.toml` (the resolved config), `checkpoints/`,
//! `metrics.csv`; a folder made by a different config is refused, with nothing touched
//! ([`folder`]).
//!
//! - [`order`], [`schedule`], [`sgd`]: the data order, the learning rate, the optimiser.
//! - [`checkpoint`], [`metrics`]: what a run leaves, written so that it resumes exactly.
//! - [`freeze`], [`adaptive`]: the freeze schedules; [`prefix_cache`]: the frozen
//!   prefix's output kept per image where it cannot change.
//! - [`divergence`]: stopping at the first non-finite loss.

pub mod adaptive;
pub mod checkpoint;
mod divergence;
mod folder;
pub mod freeze;
pub mod metrics;
pub mod order;
mod prefix_cache;
pub mod schedule;
pub mod sgd;
pub mod trainer;

use crate::config::Config;
use crate::data::Dataset;
use crate::error::InputError;
use crate::model::{self, Network};
use crate::run_dir;
use std::path::{Path, PathBuf};
use tch::{nn::ModuleT, Kind, Reduction, Tensor};
use trainer::Trainer;

/// What a finished (or already finished) run reports.
#[derive(Debug, Clone)]
pub struct Summary {
    pub out: PathBuf,
    pub steps: u64,
    pub resumed_from: Option<u64>,
    pub test_loss: f64,
    pub test_acc: f64,
    /// The final validation loss and accuracy (runs with `data.validation`).
    pub validation: Option<(f64, f64)>,
    pub images_per_second: f64,
    /// Freeze training: the estimated share of backward work saved over the whole run
    /// (0 without freezing).
    pub backward_saved: f64,
    /// Steps of this process whose frozen prefix's output came from its cache
    /// ([`prefix_cache`]) instead of a forward pass.
    pub cache_served: u64,
    /// The host-device copies this process's training loop made.
    pub transfers: trainer::Transfers,
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
    Trainer::new(config, out)?.run()
}

/// Checks what in `config` depends on the data and the network, without training or
/// writing anything: `svcca experiment freeze` calls it before its first run, once it
/// has resolved the run's device (the check builds and seeds a network, on the CPU).
pub fn check(config: &Config) -> anyhow::Result<()> {
    build(config.clone(), tch::Device::Cpu).map(drop)
}

/// What `config` (checked, not yet resolved) trains, built on `device` with nothing
/// written: the data, the config resolved against it, the network with its seeded
/// initial weights, each layer's cost, and the freeze plan, checked against the network
/// with the analysed layers (layer names, bottom-up order, steps within the run).
struct Built {
    config: Config,
    data: Dataset,
    vs: tch::nn::VarStore,
    net: Network,
    costs: Vec<(f64, usize)>,
    plan: freeze::Plan,
}

fn build(config: Config, device: tch::Device) -> anyhow::Result<Built> {
    let data = Dataset::load(&config.data, device)?;
    if config.train.batch_size > data.train.len() {
        let held = match config.data.validation {
            0 => String::new(),
            n => format!(" (after data.validation held out {n})"),
        };
        return Err(InputError::new(format!(
            "train.batch_size {} is larger than the {} training images{held}",
            config.train.batch_size,
            data.train.len()
        ))
        .into());
    }
    let config = config.resolve(data.train.len());
    let (vs, net) = {
        let _init = model::init_lock();
        crate::device::seed(config.train.seed);
        let vs = tch::nn::VarStore::new(device);
        let net = model::build(&vs.root(), &config.model, data.shape, data.classes)?;
        (vs, net)
    };
    let costs = layer_costs(&vs, &net, &data);
    let has_params: Vec<bool> = costs.iter().map(|c| c.1 > 0).collect();
    let plan = freeze::Plan::new(&config.freeze, &net.layer_names(), &has_params, &net.freeze_units(), config.steps())?;
    crate::activations::store::layers(&config, &net)?;
    Ok(Built { config, data, vs, net, costs, plan })
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

/// Mean loss and accuracy on the test set (batch norm in inference mode).
pub fn evaluate(net: &Network, data: &Dataset, batch: usize) -> (f64, f64) {
    evaluate_on(net, data, &data.test, batch)
}

/// Mean loss and accuracy on `split` of `data` (batch norm in inference mode).
pub fn evaluate_on(net: &Network, data: &Dataset, split: &crate::data::Split, batch: usize) -> (f64, f64) {
    tch::no_grad(|| {
        let n = split.len() as i64;
        let device = split.labels.device();
        let mut loss = Tensor::zeros([], (Kind::Double, device));
        let mut correct = Tensor::zeros([], (Kind::Int64, device));
        let mut i = 0;
        while i < n {
            let len = (batch as i64).min(n - i);
            let x = data.normalise(&split.images.narrow(0, i, len));
            let y = split.labels.narrow(0, i, len);
            let logits = net.forward_t(&x, false);
            loss += logits.cross_entropy_loss::<Tensor>(&y, None, Reduction::Sum, -100, 0.0).to_kind(Kind::Double);
            correct += logits.argmax(-1, false).eq_tensor(&y).sum(Kind::Int64);
            i += len;
        }
        (loss.double_value(&[]) / n as f64, correct.double_value(&[]) / n as f64)
    })
}
