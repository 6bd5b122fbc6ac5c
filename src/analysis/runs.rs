//! A trained run opened for analysis: its resolved config, data, and network with the
//! weights of a checkpoint (the final one unless asked otherwise), in inference mode.

use crate::activations::probe::Probe;
use crate::config::Config;
use crate::data::rng::Rng;
use crate::data::Dataset;
use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::model::{self, Network};
use crate::run_dir::checkpoint;
use std::path::{Path, PathBuf};
use tch::Tensor;

pub struct Run {
    pub dir: PathBuf,
    pub config: Config,
    pub data: Dataset,
    pub vs: tch::nn::VarStore,
    pub net: Network,
    /// Checkpoints by step.
    pub checkpoints: Vec<(u64, PathBuf)>,
    pub final_step: u64,
    /// The step whose weights the network holds.
    pub step: u64,
}

impl Run {
    /// Opens `dir` on `device` (default: the run's train.device) with the weights of the
    /// final checkpoint; an error when training has not finished.
    pub fn open(dir: &Path, device: Option<DeviceChoice>) -> anyhow::Result<Run> {
        let mut run = Run::load(dir, device)?;
        super::check_finished(dir, "checkpoints", run.checkpoints.last().map(|c| c.0), run.final_step)?;
        run.load_step(run.final_step)?;
        Ok(run)
    }

    /// The run in `dir` on `device` (default: the run's train.device): its config, data,
    /// network (weights not loaded yet: [`Run::load_step`]) and checkpoints. The one way
    /// an analysis opens a run folder.
    pub fn load(dir: &Path, device: Option<DeviceChoice>) -> anyhow::Result<Run> {
        if super::activation_folder::is_one(dir) {
            return Err(InputError::new(format!(
                "{}: an activation folder (activations, no checkpoints): only the learning-dynamics analysis (`svcca analyze DIR`) reads one; this needs a run folder trained by svcca (its network and data)",
                dir.display()
            ))
            .into());
        }
        let config = crate::run_dir::read_config(dir)?;
        let device = device.unwrap_or(config.train.device).resolve()?;
        if let Some(n) = config.train.threads {
            crate::host::set_libtorch_threads(n);
        }
        let final_step = config
            .train
            .steps
            .ok_or_else(|| InputError::new(format!("{}: the config has no train.steps (not resolved?)", dir.display())))?;
        let checkpoints = checkpoint::list(&dir.join(checkpoint::FOLDER))?;
        let data = Dataset::load(&config.data, device)?;
        let vs = tch::nn::VarStore::new(device);
        // Initial weights are overwritten by the checkpoint; the lock keeps their draw out
        // of a seeded initialisation running in the same process.
        let net = {
            let _init = model::init_lock();
            model::build(&vs.root(), &config.model, data.shape, data.classes)?
        };
        Ok(Run { dir: dir.to_path_buf(), config, data, vs, net, checkpoints, final_step, step: 0 })
    }

    /// Loads the weights of the checkpoint at `step` (no optimizer state: see
    /// [`checkpoint::load_weights`]).
    pub fn load_step(&mut self, step: u64) -> anyhow::Result<()> {
        let Some((_, path)) = self.checkpoints.iter().find(|c| c.0 == step) else {
            return Err(InputError::new(format!("{}: no checkpoint at step {step}", self.dir.display())).into());
        };
        let meta = checkpoint::load_weights(path, &self.vs)?;
        checkpoint::check_seed(path, &meta, self.config.train.seed)?;
        self.step = step;
        Ok(())
    }

    /// The layers analysed: `analysis.layers`, or the input (`in`) and every named layer.
    pub fn layers(&self) -> Result<Vec<String>, InputError> {
        crate::activations::store::layers(&self.config, &self.net)
    }

    /// The layers analysed by an analysis that may have begun before (`previous`: the
    /// layers it was begun with, if it was): [`Run::layers`], except that an analysis begun
    /// under the default list of an earlier svcca, every named layer without the input,
    /// keeps that list (so its results are neither refused nor redone; delete it to have
    /// the input analysed too). `what` names the analysis's folder in the note logged.
    pub fn layers_since(&self, previous: Option<&[String]>, what: &Path) -> Result<Vec<String>, InputError> {
        let before_input: Vec<&str> = self.net.layer_names();
        match previous {
            Some(p) if self.config.analysis.layers.is_none() && p.iter().map(String::as_str).eq(before_input.iter().copied()) => {
                tracing::info!(
                    "{} was begun before the input layer '{}' was analysed by default: it goes on without it; delete it (or set analysis.layers) to analyse '{}' too",
                    what.display(),
                    model::INPUT,
                    model::INPUT
                );
                Ok(p.to_vec())
            }
            _ => self.layers(),
        }
    }

    /// Checks that every name is a layer of this network's sequence (one an edit can
    /// replace the output of); the error names the flag, the run folder, the layer and
    /// why ([`model::Network::not_a_layer`]), and lists the layers.
    pub fn check_layers<'a>(&self, names: impl IntoIterator<Item = &'a str>, flag: &str) -> Result<(), InputError> {
        self.net
            .index_of(names)
            .map(|_| ())
            .map_err(|e| InputError::new(format!("{flag}, in the network of {}: {}", self.dir.display(), e.message)))
    }

    /// The probe set of `analysis` (test images).
    pub fn probe(&self) -> Probe {
        Probe::new(&self.data, &self.config.analysis)
    }

    /// `analysis.probe_size` training images drawn by a seeded permutation (stream `fit`
    /// of `analysis.seed`), unaugmented: what compression fits its directions on, so that
    /// the test accuracy it reports is measured on images the fit never saw.
    pub fn fit_set(&self) -> Probe {
        const STREAM: u64 = 0x66_69_74; // "fit"
        let n = self.data.train.len();
        let mut indices = Rng::stream(self.config.analysis.seed, &[STREAM]).permutation(n);
        indices.truncate(self.config.analysis.probe_size.min(n));
        indices.sort_unstable();
        let idx = Tensor::from_slice(&indices).to_device(self.data.train.images.device());
        let images = self.data.normalise(&self.data.train.images.index_select(0, &idx));
        Probe { indices, images }
    }
}

/// A layer's activations as datapoints x neurons: a conv layer's positions folded into
/// datapoints (rows n*h*w, one per image and position, image-major; C neurons).
pub(crate) fn as_rows(t: &Tensor) -> Tensor {
    if t.dim() == 4 {
        let c = t.size()[1];
        t.permute([0, 2, 3, 1]).reshape([-1, c])
    } else {
        t.shallow_clone()
    }
}

/// Positions per image of a layer's activations (1 for a dense layer).
pub(crate) fn positions(t: &Tensor) -> i64 {
    if t.dim() == 4 {
        t.size()[2] * t.size()[3]
    } else {
        1
    }
}
