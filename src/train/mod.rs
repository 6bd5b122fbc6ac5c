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

pub(crate) mod adaptive;
pub mod checkpoint;
mod divergence;
mod folder;
pub mod freeze;
pub mod metrics;
pub(crate) mod order;
mod prefix_cache;
pub(crate) mod schedule;
pub mod sgd;
pub(crate) mod trainer;

use crate::config::Config;
use crate::data::Dataset;
use crate::error::InputError;
use crate::model::{self, Network};
use crate::run_dir;
use std::path::{Path, PathBuf};
use tch::{nn::ModuleT, Kind, Reduction, Tensor};
use trainer::Trainer;

pub use order::Order;
pub use trainer::Transfers;

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
pub(crate) fn train_holding(config: Config, out: &Path) -> anyhow::Result<(Summary, run_dir::Lock)> {
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
    check_fits(&config, device)?;
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
    let analysed = crate::activations::store::layers(&config, &net)?;
    net.check_bottom_up(&analysed, "analysis.layers")?;
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
pub(crate) fn evaluate_on(net: &Network, data: &Dataset, split: &crate::data::Split, batch: usize) -> (f64, f64) {
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

/// Bytes in a GiB, for the memory estimates.
const GIB: f64 = (1u64 << 30) as f64;

/// The memory a GPU is taken to hold where the CUDA runtime cannot say
/// ([`crate::device::gpu_memory`]): a generous figure (more than any single GPU of today
/// holds), so that only sizes no GPU could hold are refused then.
pub(crate) const GPU_MEMORY_CAP: u64 = 256 << 30;

/// What training `config` would hold, estimated from its sizes before anything is
/// allocated: `(images, network and optimiser, activations)` in bytes. The images are
/// held twice on the host while they are read (as read, and as a tensor); the network's
/// parameters five times (weights, gradients, momentum, the flat buffers' copies, a
/// checkpoint being written), 4 bytes each; the activations are a training batch's
/// outputs and their gradients, or an evaluation batch's widest layer three times
/// (its input, output and workspace), whichever is larger.
pub fn memory_estimate(config: &Config) -> (u64, u64, u64) {
    use crate::config::{DatasetName, SYNTHETIC_TEST_SIZE, SYNTHETIC_TRAIN_SIZE};
    let d = &config.data;
    let (shape, train, test): ([i64; 3], usize, usize) = match d.dataset {
        DatasetName::Synthetic => ([3, 32, 32], d.train_size.unwrap_or(SYNTHETIC_TRAIN_SIZE), d.test_size.unwrap_or(SYNTHETIC_TEST_SIZE)),
        // The files are read whole before train_size and test_size take their part.
        DatasetName::Cifar10 => ([3, 32, 32], 50_000, 10_000),
        DatasetName::Mnist | DatasetName::FashionMnist => ([1, 28, 28], 60_000, 10_000),
    };
    let image = shape.iter().product::<i64>() as u64;
    let images = 2u64.saturating_mul((train as u64).saturating_add(test as u64)).saturating_mul(image);
    let f = model::footprint(&config.model, shape, 10);
    let network = f.parameters.saturating_mul(4 * 5);
    let batch = (config.train.batch_size as u64).min(train as u64);
    let eval_batch = (config.train.eval_batch_size as u64).min(test.max(d.validation) as u64);
    let training = batch.saturating_mul(f.outputs_per_image).saturating_mul(4 * 2);
    let evaluation = eval_batch.saturating_mul(f.widest_per_image).saturating_mul(4 * 3);
    (images, network, training.max(evaluation))
}

/// Refuses (exit 2), before anything is allocated, a config whose sizes cannot fit the
/// memory: the estimate of [`memory_estimate`] against the host's available memory (the
/// kernel's MemAvailable, or what is left under this process's cgroup limit where that
/// is less, as under Slurm), or for a GPU against the memory the card holds
/// ([`crate::device::gpu_memory`], else [`GPU_MEMORY_CAP`]).
fn check_fits(config: &Config, device: tch::Device) -> Result<(), InputError> {
    let (images, network, activations) = memory_estimate(config);
    let gib = |b: u64| format!("{:.1} GiB", b as f64 / GIB);
    let what = format!(
        "the images {} (data.train_size, data.test_size), the network and its optimiser {} (model.width, model.fc1, model.fc2, model.depth), a batch's activations {} (train.batch_size, train.eval_batch_size, model.width)",
        gib(images),
        gib(network),
        gib(activations)
    );
    let (host_need, device_need) = match device {
        tch::Device::Cpu => (images.saturating_add(network).saturating_add(activations), None),
        _ => (images, Some((images / 2).saturating_add(network).saturating_add(activations))),
    };
    if let Some((available, source)) = host_memory().filter(|(a, _)| host_need > *a) {
        return Err(InputError::new(format!(
            "this config would need about {} of memory to train ({what}), more than the {} available ({source}): lower the largest of them",
            gib(host_need),
            gib(available)
        )));
    }
    // Against the card's whole memory, not what is free now: the estimate is rough, and
    // a config refused here could never run on this card, however idle.
    let (holds, source) = match device {
        tch::Device::Cuda(i) => match crate::device::gpu_memory(i) {
            Some((free, total)) => (total, format!("cuda:{i} holds, {} of it free now", gib(free))),
            None => (GPU_MEMORY_CAP, "assumed: the CUDA runtime did not say what the GPU holds".to_string()),
        },
        _ => (GPU_MEMORY_CAP, "assumed".to_string()),
    };
    if let Some(need) = device_need.filter(|&n| n > holds) {
        return Err(InputError::new(format!(
            "this config would need about {} of GPU memory to train ({what}), more than the {} that {source}: lower the largest of them",
            gib(need),
            gib(holds)
        )));
    }
    Ok(())
}

/// The host memory this process may still take, and where the figure comes from: the
/// kernel's MemAvailable, or what is left under its cgroup's memory limit where less.
fn host_memory() -> Option<(u64, String)> {
    let available = crate::device::available()?;
    Some(match crate::device::cgroup_room() {
        Some(room) if room < available => (room as u64, "left under this process's cgroup memory limit".to_string()),
        _ => (available as u64, "MemAvailable in /proc/meminfo".to_string()),
    })
}
