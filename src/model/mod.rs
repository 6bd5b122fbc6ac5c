//! Networks as ordered lists of named layers.
//!
//! Every architecture is built as a [`Network`]: a sequence of `(name, module)` pairs.
//! The name is the unit of analysis and of freezing; its parameters live under that name
//! in the `VarStore` (`c1.weight`, `s2b3.conv1.weight`, ...). tch has no forward hooks,
//! so the taps are part of [`Network::forward_taps`], once, for every architecture: it
//! runs the layers in order and keeps the outputs of the ones asked for. Residual blocks
//! are single layers, so a sequence is enough for the ResNets too.
//!
//! The input is analysable too, as the layer [`INPUT`] (`in`): the images as the network
//! sees them (normalised), below the first layer. It is no layer of the sequence: it has
//! no parameters, is never frozen, and [`Network::layer_names`] leaves it out;
//! [`Network::analysable_layers`] lists it first, and [`Network::forward_taps`] returns it.

mod convnet;
mod resnet;

pub use convnet::convnet;
pub use resnet::resnet;

use crate::config::{Arch, ModelConfig};
use crate::error::InputError;
use tch::nn::{self, ModuleT};
use tch::Tensor;

/// The name of the input as an analysed layer: the normalised images the network is fed,
/// N x C x H x W (a conv-shaped layer). The paper's figures call it `in`.
pub const INPUT: &str = "in";

/// A layer's name and what replaces its output (a function of that output).
pub type Edit<'a> = (&'a str, &'a dyn Fn(&Tensor) -> Tensor);

#[derive(Debug)]
pub struct Network {
    layers: Vec<(String, Box<dyn ModuleT>)>,
    /// Where each freeze unit begins (see [`Network::freeze_units`]); `None`: every layer
    /// is one.
    unit_starts: Option<Vec<usize>>,
}

impl Network {
    pub fn new() -> Self {
        Network { layers: Vec::new(), unit_starts: None }
    }

    /// The units the linear freeze schedule freezes one at a time, bottom-up: consecutive
    /// ranges of layers covering the network, the last one (with the output layer)
    /// always training. Every layer is its own unit, except in a ResNet: there a unit is
    /// a residual block, the stem (`conv1`, `bn1`) joining the first block and the head
    /// (`bn_final`, `pool`, `logits`) the last.
    pub fn freeze_units(&self) -> Vec<std::ops::Range<usize>> {
        let n = self.layers.len();
        let starts = self.unit_starts.clone().unwrap_or_else(|| (0..n).collect());
        starts.iter().enumerate().map(|(k, &s)| s..starts.get(k + 1).copied().unwrap_or(n)).collect()
    }

    /// Groups the layers into freeze units beginning at `starts` (the first 0, ascending,
    /// each below the number of layers).
    pub fn set_freeze_units(&mut self, starts: Vec<usize>) {
        assert!(starts.first() == Some(&0) && starts.windows(2).all(|w| w[0] < w[1]) && starts.iter().all(|&s| s < self.layers.len()));
        self.unit_starts = Some(starts);
    }

    pub fn push(&mut self, name: &str, layer: impl ModuleT + 'static) {
        self.layers.push((name.to_string(), Box::new(layer)));
    }

    /// The layers' names, input to output; the last is `logits`.
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// The layers an analysis may name, input to output: [`INPUT`], then
    /// [`Network::layer_names`].
    pub fn analysable_layers(&self) -> Vec<&str> {
        std::iter::once(INPUT).chain(self.layer_names()).collect()
    }

    /// The logits, and the output of each layer in `taps` (in the order asked); the tap
    /// [`INPUT`] is `x` itself.
    pub fn forward_taps(&self, x: &Tensor, train: bool, taps: &[&str]) -> Result<(Tensor, Vec<Tensor>), InputError> {
        let mut slots: Vec<Option<Tensor>> = taps.iter().map(|&t| (t == INPUT).then(|| x.shallow_clone())).collect();
        self.index_of(taps.iter().copied().filter(|&t| t != INPUT))?;
        let mut h = x.shallow_clone();
        for (name, layer) in &self.layers {
            h = layer.forward_t(&h, train);
            for (slot, t) in slots.iter_mut().zip(taps) {
                if t == name {
                    *slot = Some(h.shallow_clone());
                }
            }
        }
        Ok((h, slots.into_iter().map(|s| s.expect("every tap was checked")).collect()))
    }

    /// The logits, with the output of each layer named in `edits` replaced by its function
    /// of that output before the layers above see it (compression: a layer's output
    /// projected onto a few directions). An unknown name is an error listing the layers.
    pub fn forward_edited(&self, x: &Tensor, train: bool, edits: &[Edit]) -> Result<Tensor, InputError> {
        self.index_of(edits.iter().map(|e| e.0))?;
        let mut h = x.shallow_clone();
        for (name, layer) in &self.layers {
            h = layer.forward_t(&h, train);
            for (_, edit) in edits.iter().filter(|e| e.0 == name) {
                h = edit(&h);
            }
        }
        Ok(h)
    }

    /// The logits from `h`, the output of layer `after`: the layers above it only, so a
    /// sweep over edits of one layer runs the layers below once.
    pub fn forward_after(&self, h: &Tensor, after: &str, train: bool) -> Result<Tensor, InputError> {
        let i = self.index_of([after])?[0];
        Ok(self.forward_from(h, i + 1, train))
    }

    /// Positions of the named layers; an error naming the first unknown one.
    fn index_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<Vec<usize>, InputError> {
        names
            .into_iter()
            .map(|t| {
                self.layers.iter().position(|(n, _)| n == t).ok_or_else(|| {
                    let what = if t == INPUT {
                        format!("'{t}' is the network's input, not one of its layers")
                    } else {
                        format!("no layer '{t}' in this network")
                    };
                    InputError::new(format!("{what}; its layers are {}", self.layer_names().join(" ")))
                })
            })
            .collect()
    }

    /// Runs layers `range` on `h` (the network's input, or the output of the layer just
    /// below the range) and returns each one's output: for a caller that keeps the output
    /// of a frozen prefix and runs only the layers above it.
    pub fn forward_range(&self, h: &Tensor, train: bool, range: std::ops::Range<usize>) -> Vec<Tensor> {
        let mut h = h.shallow_clone();
        self.layers[range]
            .iter()
            .map(|(_, l)| {
                h = l.forward_t(&h, train);
                h.shallow_clone()
            })
            .collect()
    }

    /// The logits from `h`, the output of the first `from` layers (the network's input
    /// when `from` is 0): the layers above run on it.
    pub fn forward_from(&self, h: &Tensor, from: usize, train: bool) -> Tensor {
        self.layers[from..].iter().fold(h.shallow_clone(), |h, (_, l)| l.forward_t(&h, train))
    }

    /// The logits, with the first `frozen` layers run without autograd (so the backward
    /// pass stops at the first trainable layer) and, when `bn_eval`, in inference mode
    /// (their batch-norm running statistics stay put).
    pub fn forward_frozen(&self, x: &Tensor, train: bool, frozen: usize, bn_eval: bool) -> Tensor {
        let frozen = frozen.min(self.layers.len());
        let below = &self.layers[..frozen];
        let h = if below.is_empty() {
            x.shallow_clone()
        } else {
            tch::no_grad(|| below.iter().fold(x.shallow_clone(), |h, (_, l)| l.forward_t(&h, train && !bn_eval)))
        };
        self.forward_from(&h, frozen, train)
    }
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl ModuleT for Network {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.layers.iter().fold(x.shallow_clone(), |h, (_, l)| l.forward_t(&h, train))
    }
}

/// Held while seeding libtorch's global generator and drawing initial weights from it:
/// two networks built at once in one process (tests, a library user) would otherwise
/// interleave their draws and get initial weights that depend on timing.
pub fn init_lock() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds the network `config` describes for images of `shape` (C, H, W) and `classes`.
pub fn build(root: &nn::Path, config: &ModelConfig, shape: [i64; 3], classes: i64) -> Result<Network, InputError> {
    match config.arch {
        Arch::Convnet => convnet(root, shape, classes, config.width(), config.fc1, config.fc2),
        Arch::Resnet => Ok(resnet(root, shape[0], classes, (config.depth - 2) / 6, config.width(), config.final_bn)),
        Arch::Linear => Ok(linear(root, shape, classes)),
    }
}

/// A linear classifier on pixels (the baseline the synthetic set is built to defeat).
pub fn linear(root: &nn::Path, shape: [i64; 3], classes: i64) -> Network {
    let mut net = Network::new();
    let fc = nn::linear(root / "logits", shape.iter().product(), classes, Default::default());
    net.push("logits", nn::seq_t().add_fn(|x| x.flatten(1, -1)).add(fc));
    net
}
