//! Experiment configs: TOML with sections `[data]`, `[model]`, `[train]`,
//! `[checkpoints]`, `[analysis]`, `[freeze]`.
//!
//! Every default lives in the `Default` impls below and nowhere else. A config is read,
//! overridden (`--set key=value`), validated and resolved (defaults that depend on other
//! keys filled in) before any work starts; the resolved form is what the run folder
//! keeps. Errors are [`InputError`]s naming the file, line and key.

mod overrides;
mod source;

use crate::device::DeviceChoice;
use crate::error::InputError;
use crate::similarity::{ConvDense, ConvMethod, DftCut, KeepRule, Method};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use overrides::{apply_override, unset};

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub data: DataConfig,
    pub model: ModelConfig,
    pub train: TrainConfig,
    pub checkpoints: CheckpointConfig,
    pub analysis: AnalysisConfig,
    pub freeze: FreezeConfig,
    /// `[sweep]`: lists of values for config keys, one run per variant (see
    /// `crate::sweep`). A variant's config has none, so neither has a run folder's.
    #[serde(default, skip_serializing)]
    pub sweep: Option<toml::Table>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DatasetName {
    /// Built in, generated from `data.seed` (see `data::synthetic`).
    #[default]
    Synthetic,
    Cifar10,
    Mnist,
    FashionMnist,
}

impl DatasetName {
    pub fn as_str(self) -> &'static str {
        match self {
            DatasetName::Synthetic => "synthetic",
            DatasetName::Cifar10 => "cifar10",
            DatasetName::Mnist => "mnist",
            DatasetName::FashionMnist => "fashion-mnist",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    pub dataset: DatasetName,
    /// Folder (or CIFAR-10 `.tar.gz`) holding the files; unused by `synthetic`. A
    /// relative path in a config file is relative to that file's folder, one given by
    /// `--set` (or a `[sweep]` list) to the working directory; [`Config::load`] makes it
    /// absolute, so a run folder's `config.toml` holds where the data was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// Use only the first N training images (synthetic: how many to generate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_size: Option<usize>,
    /// Use only the first N test images (synthetic: how many to generate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_size: Option<usize>,
    /// Seed of the synthetic set (its patterns and images).
    pub seed: u64,
    /// Random crop after zero padding by this many pixels on each side (0: none).
    pub crop_padding: i64,
    /// Random horizontal flip with probability 1/2.
    pub flip: bool,
    /// Hold out this many training images as a validation set (0: none): a seeded
    /// choice (from `data.seed`, the same for every `train.seed`), never trained on. When
    /// set, every evaluation reads the validation images and the test set is read once,
    /// at the end of training (see `data::Dataset::load`).
    pub validation: usize,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dataset: DatasetName::Synthetic,
            path: None,
            train_size: None,
            test_size: None,
            seed: 0,
            crop_padding: 4,
            flip: true,
            validation: 0,
        }
    }
}

impl DataConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        if self.dataset != DatasetName::Synthetic && self.path.is_none() {
            return bad("data.path", format!("dataset '{}' needs data.path (the folder holding its files)", self.dataset.as_str()));
        }
        for (key, v) in [("data.train_size", self.train_size), ("data.test_size", self.test_size)] {
            if v == Some(0) {
                return bad(key, "0: must be at least 1".into());
            }
        }
        if !(0..=64).contains(&self.crop_padding) {
            return bad("data.crop_padding", format!("{}: must be in 0..=64", self.crop_padding));
        }
        let known_train = match (self.train_size, self.dataset) {
            (Some(n), _) => Some(n),
            (None, DatasetName::Synthetic) => Some(SYNTHETIC_TRAIN_SIZE),
            (None, _) => None, // checked against the files when they are read
        };
        if let Some(n) = known_train.filter(|&n| self.validation >= n) {
            return bad("data.validation", validation_message(self.validation, n));
        }
        Ok(())
    }

    /// Whether a validation set is held out of the training split.
    pub fn has_validation(&self) -> bool {
        self.validation > 0
    }
}

/// Why `data.validation = n` cannot be held out of `train` training images.
pub(crate) fn validation_message(n: usize, train: usize) -> String {
    format!("{n}: must be less than the {train} training images it is held out of (some must be left to train on)")
}

/// Sizes of the synthetic set when the config does not give them.
pub const SYNTHETIC_TRAIN_SIZE: usize = 10_000;
pub const SYNTHETIC_TEST_SIZE: usize = 2_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// The paper's convnet: c1 c2 bn1 p1 c3 c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits.
    #[default]
    Convnet,
    /// The CIFAR ResNet family, depth 6n+2 (20, 32, 56; the paper's n = 10 is 62).
    Resnet,
    /// A linear classifier on pixels: the baseline the synthetic set must defeat.
    Linear,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    pub arch: Arch,
    /// Channels: of every conv (convnet, default 64), of the first stage (resnet,
    /// default 16; the stages have 1x, 2x, 4x).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<i64>,
    /// Convnet: units of fc1 and fc2.
    pub fc1: i64,
    pub fc2: i64,
    /// ResNet depth, 6n+2.
    pub depth: i64,
    /// ResNet: a batch norm (with its ReLU) after the last residual block, before the
    /// pooling and the linear layer: layer `bn_final`, as in the paper's ResNet
    /// (`conv-(blocks)x3-bn-fc-out`). Off: He et al.'s CIFAR ResNet (and every run folder
    /// made before the key existed).
    pub final_bn: bool,
    /// ResNet: which outputs are analysable layers. `blocks`: each residual block's output
    /// (and every other layer of the sequence); `all`: also the convs and batch norms
    /// inside each block (`s1b1.conv1` ...), as the paper's Appendix 3. Training is the
    /// same either way, so a run folder may change it (see `train::folder`).
    pub taps: Taps,
}

/// `model.taps`: the analysable layers of a ResNet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Taps {
    /// Every layer of the sequence: a residual block is one layer (its output).
    #[default]
    Blocks,
    /// Also each conv and batch norm inside a residual block.
    All,
}

impl std::fmt::Display for Taps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Taps::Blocks => "blocks",
            Taps::All => "all",
        })
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig { arch: Arch::Convnet, width: None, fc1: 512, fc2: 256, depth: 20, final_bn: false, taps: Taps::Blocks }
    }
}

impl ModelConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        if let Some(w) = self.width {
            if !(1..=4096).contains(&w) {
                return bad("model.width", format!("{w}: must be in 1..=4096"));
            }
        }
        for (key, v) in [("model.fc1", self.fc1), ("model.fc2", self.fc2)] {
            if !(1..=65536).contains(&v) {
                return bad(key, format!("{v}: must be in 1..=65536"));
            }
        }
        if self.arch == Arch::Resnet && (self.depth < 8 || (self.depth - 2) % 6 != 0) {
            return bad("model.depth", format!("{}: a CIFAR ResNet has depth 6n+2 with n >= 1 (20, 32, 56, 62, ...)", self.depth));
        }
        if self.final_bn && self.arch != Arch::Resnet {
            return bad("model.final_bn", "is for arch = \"resnet\" (the convnet has its own batch norms)".into());
        }
        if self.taps == Taps::All && self.arch != Arch::Resnet {
            return bad(
                "model.taps",
                "\"all\" is for arch = \"resnet\" (the layers inside its residual blocks); in this network every layer is already a tap"
                    .into(),
            );
        }
        Ok(())
    }
}

impl ModelConfig {
    pub fn default_width(arch: Arch) -> i64 {
        match arch {
            Arch::Convnet => 64,
            Arch::Resnet => 16,
            Arch::Linear => 0,
        }
    }
    pub fn width(&self) -> i64 {
        self.width.unwrap_or(Self::default_width(self.arch))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Schedule {
    Constant,
    /// Multiply by `gamma` at each of `milestones` (fractions of training).
    Step,
    #[default]
    Cosine,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    /// Seed of the initial weights, the data order and the augmentation.
    pub seed: u64,
    pub device: DeviceChoice,
    /// libtorch CPU threads (default: libtorch's choice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<i32>,
    pub batch_size: usize,
    /// Length of training: give `steps` or `epochs` (not both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epochs: Option<f64>,
    pub lr: f64,
    pub momentum: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
    pub schedule: Schedule,
    /// Linear warm-up from 0 to `lr` over this many steps.
    pub warmup_steps: u64,
    /// Step schedule: where to decay, as fractions of training.
    pub milestones: Vec<f64>,
    pub gamma: f64,
    /// Evaluate on the test set every this many steps (and at the end).
    pub eval_every: u64,
    pub eval_batch_size: usize,
    /// On a GPU from Ampere on, cuDNN's convolutions in TensorFloat-32 (10-bit mantissa
    /// products, float32 sums), as PyTorch does by default: faster, and training's
    /// activations differ from full float32 by about 1e-3 relative. Evaluation and the
    /// activations recorded for the analysis always run in full float32. No effect on
    /// the CPU.
    pub tf32: bool,
    /// On a GPU: deterministic cuDNN algorithms, no cuDNN benchmark search, no TF32, so
    /// that a run repeats bit for bit on the same card and software (slower). The CPU
    /// is deterministic either way.
    pub deterministic: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            seed: 0,
            device: DeviceChoice::Auto,
            threads: None,
            batch_size: 128,
            steps: None,
            epochs: None,
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 5e-4,
            schedule: Schedule::Cosine,
            warmup_steps: 0,
            milestones: vec![0.5, 0.75],
            gamma: 0.1,
            tf32: true,
            deterministic: false,
            eval_every: 500,
            eval_batch_size: 1000,
        }
    }
}

impl TrainConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        if self.batch_size == 0 {
            return bad("train.batch_size", "0: must be at least 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("train.eval_batch_size", "0: must be at least 1".into());
        }
        if self.steps.is_some() && self.epochs.is_some() {
            return bad("train.epochs", "give train.steps or train.epochs, not both".into());
        }
        if self.steps == Some(0) {
            return bad("train.steps", "0: must be at least 1".into());
        }
        if let Some(e) = self.epochs {
            if !(e > 0.0 && e.is_finite()) {
                return bad("train.epochs", format!("{e}: must be a positive number"));
            }
        }
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad("train.lr", format!("{}: must be a positive number", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return bad("train.momentum", format!("{}: must be in [0, 1)", self.momentum));
        }
        if self.nesterov && self.momentum == 0.0 {
            return bad("train.nesterov", "Nesterov momentum needs train.momentum > 0".into());
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return bad("train.weight_decay", format!("{}: must be >= 0", self.weight_decay));
        }
        if !(self.gamma > 0.0 && self.gamma <= 1.0) {
            return bad("train.gamma", format!("{}: must be in (0, 1]", self.gamma));
        }
        if let Some(&m) = self.milestones.iter().find(|&&m| !(m > 0.0 && m < 1.0)) {
            return bad("train.milestones", format!("{m}: milestones are fractions of training, in (0, 1)"));
        }
        if self.milestones.windows(2).any(|w| w[0] >= w[1]) {
            return bad("train.milestones", format!("{:?}: must increase", self.milestones));
        }
        if self.eval_every == 0 {
            return bad("train.eval_every", "0: must be at least 1".into());
        }
        if let Some(n) = self.threads {
            if n < 1 {
                return bad("train.threads", format!("{n}: must be at least 1"));
            }
        }
        Ok(())
    }
}

/// Training length when the config gives neither `steps` nor `epochs`.
pub const DEFAULT_EPOCHS: f64 = 10.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointConfig {
    /// Save a checkpoint every this many steps (and always at the end).
    pub every: u64,
    /// Also save the untrained network (step 0): the start of learning-dynamics plots.
    pub at_start: bool,
    /// Keep only the newest N checkpoints (default: keep all, for analysis).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<usize>,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig { every: 1000, at_start: true, keep_last: None }
    }
}

impl CheckpointConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        if self.every == 0 {
            return bad("checkpoints.every", "0: must be at least 1".into());
        }
        if self.keep_last == Some(0) {
            return bad("checkpoints.keep_last", "0: must be at least 1".into());
        }
        Ok(())
    }
}

/// Where the analysed activations come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ActivationMode {
    /// Recomputed from the weight checkpoints when analysing: nothing large is kept, but
    /// every analysed checkpoint must be kept (so `checkpoints.keep_last` is refused).
    #[default]
    Replay,
    /// Written at each checkpoint during training (`activations/`, safetensors).
    Store,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreDtype {
    #[default]
    Float32,
    Float16,
}

/// The learning-dynamics analysis (`svcca analyze`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Datapoints of the probe set: a seeded random subset of the test split.
    pub probe_size: usize,
    /// Seed of the probe draw and of the shuffled baseline.
    pub seed: u64,
    pub mode: ActivationMode,
    /// `store` mode: precision of the stored activations.
    pub dtype: StoreDtype,
    pub method: Method,
    /// SVCCA: fraction kept on each side, of what `keep_rule` says.
    pub keep: f64,
    /// SVCCA: `variance` (the squared singular values, the paper's main text) or
    /// `singular` (the singular values themselves, its Appendix A).
    pub keep_rule: KeepRule,
    /// Conv layers against conv layers: dft, flatten (positions as datapoints) or
    /// avgpool.
    pub conv: ConvMethod,
    /// A conv layer against a dense one: flatten (C*H*W neurons; avgpool where the
    /// probe has fewer than 5 datapoints per such neuron) or avgpool (channel means).
    pub conv_dense: ConvDense,
    /// `conv = "dft"` with SVCCA: where the keep rule cuts, `global` (over every
    /// frequency's directions together, as SVCCA of the flattened layer) or
    /// `per-frequency`.
    pub dft_cut: DftCut,
    /// Layers analysed (default: every named layer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layers: Option<Vec<String>>,
    /// Analyse only every n-th checkpoint (the first and the last always).
    pub every_nth: usize,
    /// Memory (MiB) the learning-dynamics analysis plans for: it estimates its peak before
    /// it starts, streams the layers through this much, and refuses at once where even
    /// one layer at a time cannot fit (see `analysis::memory`). Default: a quarter of the
    /// memory available when it starts (within a cgroup's limit, as under Slurm). A
    /// resource, not a result: changing it changes no number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mib: Option<u64>,
    /// The arithmetic of the analysis's large products: "float64" (default) or
    /// "float32" (decompositions and sums stay float64; for GPUs with slow float64).
    pub precision: crate::similarity::Precision,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            probe_size: 500,
            seed: 0,
            mode: ActivationMode::Replay,
            dtype: StoreDtype::Float32,
            method: Method::Svcca,
            keep: 0.99,
            keep_rule: KeepRule::Variance,
            conv: ConvMethod::Dft,
            conv_dense: ConvDense::Flatten,
            dft_cut: DftCut::Global,
            layers: None,
            every_nth: 1,
            memory_mib: None,
            precision: crate::similarity::Precision::Float64,
        }
    }
}

impl AnalysisConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        if self.probe_size < 2 {
            return bad("analysis.probe_size", format!("{}: must be at least 2", self.probe_size));
        }
        if !(self.keep > 0.0 && self.keep <= 1.0) {
            return bad("analysis.keep", format!("{}: the fraction kept must be in (0, 1]", self.keep));
        }
        if self.conv == ConvMethod::Dft && matches!(self.method, Method::Pwcca | Method::Cka) {
            return bad("analysis.conv", "dft is defined for method svcca or cca only: use flatten or avgpool".into());
        }
        if self.every_nth == 0 {
            return bad("analysis.every_nth", "0: must be at least 1".into());
        }
        if let Some(m) = self.memory_mib.filter(|&m| m < 64) {
            return bad("analysis.memory_mib", format!("{m}: must be at least 64 (MiB)"));
        }
        if let Some(layers) = &self.layers {
            if layers.is_empty() {
                return bad("analysis.layers", "[]: name at least one layer (or leave it out for all)".into());
            }
            let mut seen = std::collections::HashSet::new();
            if let Some(twice) = layers.iter().find(|l| !seen.insert(l.as_str())) {
                return bad(
                    "analysis.layers",
                    format!("'{twice}' is named twice: each layer may appear once (its rows and columns would be counted twice)"),
                );
            }
        }
        Ok(())
    }
}

/// When layers are frozen (see `train::freeze`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FreezeSchedule {
    /// Normal training: nothing is frozen.
    #[default]
    None,
    /// Layer i of L (i = 1..L-1; the last layer always trains) frozen at fraction
    /// `start + (end - start) * i / L` of training: with 0 and 1, the paper's i/L.
    Linear,
    /// The layers and steps (or fractions) listed in `freeze.at`.
    Explicit,
    /// A layer freezes once its similarity (SVCCA by default: `[analysis]` settings) to
    /// its own state at the previous check, on a probe of training images, reaches
    /// `threshold`; bottom-up, one layer per check (see `train::adaptive`).
    Adaptive,
}

/// One entry of an explicit schedule: `layer`, frozen from `step` or `fraction` of training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FreezeAt {
    pub layer: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub step: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fraction: Option<f64>,
}

/// Freeze training: layers frozen bottom-up on a schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FreezeConfig {
    pub schedule: FreezeSchedule,
    /// Linear: the fractions of training the schedule spans. Adaptive: no layer freezes
    /// before `start`, and no check is made from `end` on.
    pub start: f64,
    pub end: f64,
    /// Adaptive: a layer freezes when its similarity to the previous check reaches this.
    pub threshold: f64,
    /// Adaptive: check every this many steps (default: `checkpoints.every`; must divide
    /// it, so that a resumed run can recompute the last check from a checkpoint).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_every: Option<u64>,
    /// Explicit: `[[freeze.at]] layer = "c1"` with `step = N` or `fraction = f`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at: Vec<FreezeAt>,
    /// Frozen batch-norm layers keep their running statistics (they run in eval mode);
    /// false: they still update them from each batch (but get no gradient).
    pub freeze_bn_stats: bool,
    /// Memory (MiB) for the frozen prefix's output per training image, where it cannot
    /// change (`train::prefix_cache`); 0: never kept. A resource, not a result: a run
    /// folder may change it.
    pub cache_mib: u64,
}

impl Default for FreezeConfig {
    fn default() -> Self {
        FreezeConfig {
            schedule: FreezeSchedule::None,
            start: 0.0,
            end: 1.0,
            threshold: 0.98,
            check_every: None,
            at: Vec::new(),
            freeze_bn_stats: true,
            cache_mib: 4096,
        }
    }
}

impl FreezeConfig {
    /// Checks this section's values; the error is `(dotted key, what is wrong)`.
    pub fn validate(&self, checkpoints: &CheckpointConfig) -> Check {
        match self.schedule {
            FreezeSchedule::Adaptive => {
                if !(0.0 <= self.start && self.start < self.end && self.end <= 1.0) {
                    return bad("freeze.start", format!("{} .. {}: need 0 <= start < end <= 1", self.start, self.end));
                }
                if !(0.0..=1.0).contains(&self.threshold) {
                    return bad(
                        "freeze.threshold",
                        format!(
                            "{}: similarities lie in [0, 1], so the threshold must too (above 1 nothing would ever freeze)",
                            self.threshold
                        ),
                    );
                }
                if let Some(n) = self.check_every {
                    if n == 0 {
                        return bad("freeze.check_every", "0: must be at least 1".into());
                    }
                    if !checkpoints.every.is_multiple_of(n) {
                        return bad(
                            "freeze.check_every",
                            format!(
                                "{n} does not divide checkpoints.every ({}): every checkpoint must fall on a check, so that a resumed run can recompute the last check from it",
                                checkpoints.every
                            ),
                        );
                    }
                }
            }
            FreezeSchedule::Linear => {
                if !(0.0 <= self.start && self.start < self.end && self.end <= 1.0) {
                    return bad("freeze.start", format!("{} .. {}: need 0 <= start < end <= 1", self.start, self.end));
                }
            }
            FreezeSchedule::Explicit => {
                if self.at.is_empty() {
                    return bad("freeze.at", "schedule \"explicit\" needs [[freeze.at]] entries (layer and step or fraction)".into());
                }
                for a in &self.at {
                    match (a.step, a.fraction) {
                        (Some(_), None) => {}
                        (None, Some(x)) if (0.0..=1.0).contains(&x) => {}
                        (None, Some(x)) => return bad("freeze.at", format!("layer {}: fraction {x} must be in [0, 1]", a.layer)),
                        _ => return bad("freeze.at", format!("layer {}: give step or fraction (one of them)", a.layer)),
                    }
                }
            }
            FreezeSchedule::None => {}
        }
        if self.schedule != FreezeSchedule::Explicit && !self.at.is_empty() {
            return bad("freeze.at", "freeze.at is for schedule = \"explicit\"".into());
        }
        if self.schedule != FreezeSchedule::Adaptive && self.check_every.is_some() {
            return bad("freeze.check_every", "freeze.check_every is for schedule = \"adaptive\"".into());
        }
        Ok(())
    }
}

/// A validation's result: the dotted key and what is wrong with it.
pub(crate) type Check = Result<(), (String, String)>;

fn bad(key: &str, msg: String) -> Check {
    Err((key.to_string(), msg))
}

impl Config {
    /// Reads `path`, applies `overrides` (`key=value`, dotted keys, or `-key` to remove
    /// one: see [`apply_override`]) in order, and checks every value. Errors name the
    /// file and line, or the `--set` at fault.
    ///
    /// A relative `data.path` is made absolute: from `path`'s folder where the file gave
    /// it, from the working directory where an override did (as a shell would).
    pub fn load(path: &Path, overrides: &[String]) -> Result<Config, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| InputError::new(format!("{}: cannot read config: {e}", path.display())))?;
        let mut config = Self::parse(&text, &path.display().to_string(), overrides)?;
        let overridden = overrides.iter().any(|o| o.split('=').next().map(str::trim) == Some("data.path"));
        if let Some(data) = config.data.path.as_mut().filter(|d| d.is_relative()) {
            let base = if overridden { Path::new("") } else { path.parent().unwrap_or(Path::new("")) };
            let joined = base.join(&*data);
            *data = joined
                .canonicalize()
                .or_else(|_| std::path::absolute(&joined))
                .map_err(|e| InputError::new(format!("{}: data.path {}: {e}", path.display(), joined.display())))?;
        }
        Ok(config)
    }

    /// Reads the resolved config a run folder keeps (`path`, its `config.toml`).
    ///
    /// svcca before 0.1's round-trip fix wrote `train.steps` (what ran) beside the
    /// config's `train.epochs`; such a file is read as its steps, so that the runs it
    /// describes can still be resumed and analysed.
    pub fn load_resolved(path: &Path) -> Result<Config, InputError> {
        let text = std::fs::read_to_string(path).map_err(|e| InputError::new(format!("{}: cannot read config: {e}", path.display())))?;
        Self::parse_resolved(&text, &path.display().to_string())
    }

    /// [`Config::load_resolved`] from text; `name` is what errors call it.
    pub fn parse_resolved(text: &str, name: &str) -> Result<Config, InputError> {
        let table: Option<toml::Table> = toml::from_str(text).ok();
        let both = table.as_ref().and_then(|t| t.get("train")).is_some_and(|t| t.get("steps").is_some() && t.get("epochs").is_some());
        let drop_epochs = if both { vec!["-train.epochs".to_string()] } else { Vec::new() };
        Self::parse(text, name, &drop_epochs)
    }

    /// As [`Config::load`], from text; `name` is what errors call it.
    pub fn parse(text: &str, name: &str, overrides: &[String]) -> Result<Config, InputError> {
        let mut config: Config = toml::from_str(text).map_err(|e| source::parse_error(name, text, &e))?;
        if !overrides.is_empty() {
            let mut table: toml::Table = toml::from_str(text).map_err(|e| source::parse_error(name, text, &e))?;
            for o in overrides {
                apply_override(&mut table, o)?;
                config = Config::deserialize(table.clone()).map_err(|e| InputError::new(format!("--set {o}: {}", e.message().trim())))?;
            }
        }
        if let Err((key, message)) = config.validate() {
            let overridden = overrides.iter().rev().find(|o| o.split('=').next().map(str::trim) == Some(key.as_str()));
            return Err(InputError::new(match (overridden, source::line_of(text, &key)) {
                (Some(o), _) => format!("--set {o}: {message}"),
                (None, Some(line)) => format!("{name}:{line}: {key}: {message}"),
                (None, None) => format!("{name}: {key}: {message}"),
            }));
        }
        Ok(config)
    }

    /// Checks every value, section by section, then what spans sections; the error is
    /// `(dotted key, what is wrong)`.
    pub fn validate(&self) -> Check {
        self.data.validate()?;
        self.model.validate()?;
        self.train.validate()?;
        self.checkpoints.validate()?;
        let a = &self.analysis;
        if self.checkpoints.keep_last.is_some() && a.mode == ActivationMode::Replay {
            return bad(
                "checkpoints.keep_last",
                "analysis.mode = \"replay\" recomputes activations from every checkpoint, so none may be pruned: remove keep_last or set analysis.mode = \"store\"".into(),
            );
        }
        self.analysis.validate()?;
        self.freeze.validate(&self.checkpoints)
    }

    /// The config as TOML, every key written out: what a run folder keeps.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a config always serialises")
    }

    /// Fills in what depends on the dataset: the number of steps. `train_size` is the
    /// number of training images actually used.
    ///
    /// The result reads back as what ran: `train.epochs` becomes the `train.steps` it
    /// came to (and is dropped, since a config gives one or the other), so the run
    /// folder's `config.toml` is a config that `train`, `analyze`, a resume and `--set`
    /// all accept as it is.
    pub fn resolve(mut self, train_size: usize) -> Config {
        if self.train.steps.is_none() {
            let per_epoch = (train_size / self.train.batch_size).max(1) as f64;
            let epochs = self.train.epochs.unwrap_or(DEFAULT_EPOCHS);
            self.train.steps = Some((epochs * per_epoch).ceil().max(1.0) as u64);
        }
        self.train.epochs = None;
        if self.model.width.is_none() && self.model.arch != Arch::Linear {
            self.model.width = Some(ModelConfig::default_width(self.model.arch));
        }
        if self.freeze.schedule == FreezeSchedule::Adaptive {
            self.freeze.check_every.get_or_insert(self.checkpoints.every);
        }
        if self.data.dataset == DatasetName::Synthetic {
            self.data.train_size.get_or_insert(SYNTHETIC_TRAIN_SIZE);
            self.data.test_size.get_or_insert(SYNTHETIC_TEST_SIZE);
        }
        self
    }

    /// Total training steps (after [`Config::resolve`]).
    pub fn steps(&self) -> u64 {
        self.train.steps.expect("resolved config")
    }
}

/// The keys whose values differ between two configs (dotted), ignoring `train.device`,
/// `train.tf32` and `train.deterministic` (a run may be resumed on another device, or
/// with another GPU arithmetic), `freeze.cache_mib` (memory, not results),
/// `[analysis]` and `model.taps` (they do not change training; the analysis checks its own settings, see `analysis::dynamics`).
pub(crate) fn differences(a: &Config, b: &Config) -> Vec<String> {
    let flat = |c: &Config| {
        let mut c = c.clone();
        // The same data however it is written: folders made before data.path was made
        // absolute hold it relative to the working directory they were trained from.
        c.data.path = c.data.path.map(|p| p.canonicalize().unwrap_or(p));
        c.train.device = DeviceChoice::Auto;
        (c.train.tf32, c.train.deterministic) = (true, false);
        c.freeze.cache_mib = FreezeConfig::default().cache_mib;
        c.analysis = AnalysisConfig::default();
        c.model.taps = Taps::default();
        let value = toml::Value::try_from(&c).expect("a config always serialises");
        let mut out = std::collections::BTreeMap::new();
        flatten("", &value, &mut out);
        out
    };
    let (fa, fb) = (flat(a), flat(b));
    let mut keys: Vec<&String> = fa.keys().chain(fb.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| fa.get(*k) != fb.get(*k))
        .map(|k| {
            let show = |v: Option<&String>| v.cloned().unwrap_or_else(|| "(unset)".into());
            format!("{k}: {} vs {}", show(fa.get(k)), show(fb.get(k)))
        })
        .collect()
}

fn flatten(prefix: &str, v: &toml::Value, out: &mut std::collections::BTreeMap<String, String>) {
    match v {
        toml::Value::Table(t) => {
            for (k, v) in t {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip() {
        let c = Config::parse("", "x.toml", &[]).unwrap().resolve(1000);
        let back = Config::parse(&c.to_toml(), "y.toml", &[]).unwrap();
        assert_eq!(c, back);
        assert_eq!(c.train.steps, Some((DEFAULT_EPOCHS * (1000 / 128) as f64) as u64));
    }

    #[test]
    fn keep_rule_is_read_and_a_bad_one_refused_naming_the_key() {
        use crate::similarity::KeepRule;
        assert_eq!(Config::parse("", "x.toml", &[]).unwrap().analysis.keep_rule, KeepRule::Variance);
        let c = Config::parse("[analysis]\nkeep_rule = \"singular\"\n", "x.toml", &[]).unwrap();
        assert_eq!(c.analysis.keep_rule, KeepRule::Singular);
        assert!(c.to_toml().contains("keep_rule = \"singular\""), "{}", c.to_toml());
        let e = Config::parse("[analysis]\nkeep = 0.9\nkeep_rule = \"squared\"\n", "x.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("x.toml:3: analysis.keep_rule:") && e.contains("squared"), "{e}");
        let e = Config::parse("", "x.toml", &["analysis.keep_rule=squared".into()]).unwrap_err().to_string();
        assert!(e.contains("analysis.keep_rule") && e.contains("squared"), "{e}");
    }

    #[test]
    fn conv_dense_is_read_and_a_bad_one_refused_naming_the_key() {
        assert_eq!(Config::parse("", "x.toml", &[]).unwrap().analysis.conv_dense, ConvDense::Flatten);
        let c = Config::parse("[analysis]\nconv_dense = \"avgpool\"\n", "x.toml", &[]).unwrap();
        assert_eq!(c.analysis.conv_dense, ConvDense::Avgpool);
        assert!(c.to_toml().contains("conv_dense = \"avgpool\""), "{}", c.to_toml());
        let e = Config::parse("[analysis]\nkeep = 0.9\nconv_dense = \"dft\"\n", "x.toml", &[]).unwrap_err().to_string();
        assert!(e.contains("x.toml:3: analysis.conv_dense:") && e.contains("dft"), "{e}");
        let e = Config::parse("", "x.toml", &["analysis.conv_dense=mean".into()]).unwrap_err().to_string();
        assert!(e.contains("analysis.conv_dense") && e.contains("mean"), "{e}");
    }

    #[test]
    fn a_relative_data_path_is_the_config_files_and_a_set_one_the_working_directorys() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("configs")).unwrap();
        std::fs::create_dir_all(dir.path().join("data")).unwrap();
        let file = dir.path().join("configs/c.toml");
        std::fs::write(&file, "[data]\ndataset = \"cifar10\"\npath = \"../data\"\n").unwrap();
        let c = Config::load(&file, &[]).unwrap();
        assert_eq!(c.data.path.as_deref(), Some(dir.path().join("data").canonicalize().unwrap().as_path()));
        let c = Config::load(&file, &["data.path=somewhere/else".into()]).unwrap();
        assert_eq!(c.data.path.unwrap(), std::env::current_dir().unwrap().join("somewhere/else"));
        // A folder's config written with the path relative to the working directory is
        // the same data as the absolute path.
        let (mut old, mut new) = (Config::default(), Config::default());
        old.data.path = Some(PathBuf::from("src"));
        new.data.path = Some(std::env::current_dir().unwrap().join("src"));
        assert!(differences(&old, &new).is_empty(), "{:?}", differences(&old, &new));
        new.data.path = Some(std::env::current_dir().unwrap().join("tests"));
        assert_eq!(differences(&old, &new).len(), 1);
    }

    #[test]
    fn differences_name_keys() {
        let a = Config::default();
        let mut b = a.clone();
        b.train.lr = 0.05;
        b.train.device = DeviceChoice::Cpu;
        assert_eq!(differences(&a, &b), vec!["train.lr: 0.1 vs 0.05".to_string()]);
    }
}
