//! Networks as ordered lists of named layers.
//!
//! Every architecture is built as a [`Network`]: a sequence of `(name, module)` pairs.
//! The name is the unit of analysis and of freezing; its parameters live under that name
//! in the `VarStore` (`c1.weight`, `s2b3.conv1.weight`, ...). tch has no forward hooks,
//! so the taps are part of [`Network::forward_taps`], once, for every architecture: it
//! runs the layers in order and keeps the outputs of the ones asked for. Residual blocks
//! are single layers, so a sequence is enough for the ResNets too.
//!
//! A layer of the sequence may also offer taps inside it ([`InnerTaps`]: a ResNet's
//! convs and batch norms inside a block, `model.taps = "all"`), named after their
//! `VarStore` path (`s1b1.conv1`). They are analysable layers, listed just before the
//! layer that holds them; they are not layers of the sequence: no unit of freezing, no
//! place for an edit ([`Network::forward_edited`] refuses them). [`Network::forward_taps`]
//! runs a layer through [`InnerTaps::forward_inner`] only when one of its inner taps is
//! asked for; every other pass runs it as a plain module.
//!
//! The input is analysable too, as the layer [`INPUT`] (`in`): the images as the network
//! sees them (normalised), below the first layer. It is no layer of the sequence: it has
//! no parameters, is never frozen, and [`Network::layer_names`] leaves it out;
//! [`Network::analysable_layers`] lists it first, and [`Network::forward_taps`] returns it.

mod convnet;
pub(crate) mod ops;
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

/// A layer of the sequence that can return outputs from inside it as well as its own.
pub trait InnerTaps: ModuleT {
    /// Its output (what `forward_t` returns, bit for bit) and the outputs inside it, in the
    /// order of the inner names it was pushed with ([`Network::push_with_taps`]).
    fn forward_inner(&self, x: &Tensor, train: bool) -> (Tensor, Vec<Tensor>);
}

#[derive(Debug)]
enum Module {
    Plain(Box<dyn ModuleT>),
    Inner(Box<dyn InnerTaps>),
}

impl Module {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        match self {
            Module::Plain(m) => m.forward_t(x, train),
            Module::Inner(m) => m.forward_t(x, train),
        }
    }
}

/// A layer of the sequence: its name, its module, and the full names of its inner taps
/// (`s1b1.conv1`, ...; none for a plain layer).
#[derive(Debug)]
struct Layer {
    name: String,
    module: Module,
    inner: Vec<String>,
}

impl Layer {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        self.module.forward_t(x, train)
    }
}

#[derive(Debug)]
pub struct Network {
    layers: Vec<Layer>,
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
        self.layers.push(Layer { name: name.to_string(), module: Module::Plain(Box::new(layer)), inner: Vec::new() });
    }

    /// Pushes a layer with taps inside it, named `name.INNER` for each of `inner` (the
    /// order of [`InnerTaps::forward_inner`]'s outputs).
    pub fn push_with_taps(&mut self, name: &str, inner: &[&str], layer: impl InnerTaps + 'static) {
        let inner = inner.iter().map(|i| format!("{name}.{i}")).collect();
        self.layers.push(Layer { name: name.to_string(), module: Module::Inner(Box::new(layer)), inner });
    }

    /// The layers' names, input to output; the last is `logits`.
    pub fn layer_names(&self) -> Vec<&str> {
        self.layers.iter().map(|l| l.name.as_str()).collect()
    }

    /// The layers an analysis may name, input to output: [`INPUT`], then
    /// [`Network::layer_names`], each preceded by its inner taps (if any).
    pub fn analysable_layers(&self) -> Vec<&str> {
        let sequence = self.layers.iter().flat_map(|l| l.inner.iter().chain([&l.name]).map(String::as_str));
        std::iter::once(INPUT).chain(sequence).collect()
    }

    /// Checks that `names` (analysable layers, each known and named once) run bottom-up,
    /// in the network's order, as the analysis's tables and plots assume: the error says
    /// which name comes too late and gives the order expected.
    pub fn check_bottom_up(&self, names: &[String], key: &str) -> Result<(), InputError> {
        let all = self.analysable_layers();
        let position = |n: &str| all.iter().position(|a| *a == n);
        let Some(w) = names.windows(2).find(|w| position(&w[0]) > position(&w[1])) else {
            return Ok(());
        };
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort_by_key(|n| position(n));
        let expected: Vec<String> = sorted.iter().map(|n| format!("\"{n}\"")).collect();
        Err(InputError::new(format!(
            "{key}: '{}' is listed after '{}', but it is below it in the network: list the layers bottom-up, in the network's order ([{}]; the network's layers are {})",
            w[1],
            w[0],
            expected.join(", "),
            all.join(" ")
        )))
    }

    /// The layer of the sequence that `name` is an inner tap of, if it is one.
    pub fn enclosing(&self, name: &str) -> Option<&str> {
        self.layers.iter().find(|l| l.inner.iter().any(|i| i == name)).map(|l| l.name.as_str())
    }

    /// The logits, and the output of each analysable layer in `taps` (in the order asked);
    /// the tap [`INPUT`] is `x` itself. A layer with inner taps runs through
    /// [`InnerTaps::forward_inner`] only when one of them is asked for.
    pub fn forward_taps(&self, x: &Tensor, train: bool, taps: &[&str]) -> Result<(Tensor, Vec<Tensor>), InputError> {
        let mut slots: Vec<Option<Tensor>> = taps.iter().map(|&t| (t == INPUT).then(|| x.shallow_clone())).collect();
        let all = self.analysable_layers();
        if let Some(t) = taps.iter().find(|t| !all.contains(t)) {
            return Err(InputError::new(format!("no layer '{t}' in this network; its layers are {}", all.join(" "))));
        }
        let mut h = x.shallow_clone();
        for layer in &self.layers {
            let inner_asked = layer.inner.iter().any(|i| taps.contains(&i.as_str()));
            let inner = match &layer.module {
                Module::Inner(m) if inner_asked => {
                    let (out, inner) = m.forward_inner(&h, train);
                    h = out;
                    inner
                }
                _ => {
                    h = layer.forward_t(&h, train);
                    Vec::new()
                }
            };
            let outputs = layer.inner.iter().zip(&inner).chain([(&layer.name, &h)]);
            for (name, out) in outputs {
                for (slot, t) in slots.iter_mut().zip(taps) {
                    if t == name {
                        *slot = Some(out.shallow_clone());
                    }
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
        for layer in &self.layers {
            h = layer.forward_t(&h, train);
            for (_, edit) in edits.iter().filter(|e| e.0 == layer.name) {
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

    /// Positions of the named layers in the sequence; an error naming the first unknown
    /// one (or the first inner tap: no layer of the sequence, see [`Network::not_a_layer`]).
    pub fn index_of<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<Vec<usize>, InputError> {
        names
            .into_iter()
            .map(|t| {
                self.layers
                    .iter()
                    .position(|l| l.name == t)
                    .ok_or_else(|| InputError::new(format!("{}; its layers are {}", self.not_a_layer(t), self.layer_names().join(" "))))
            })
            .collect()
    }

    /// Why `name`, not a layer of the sequence, cannot be edited or run from: the input,
    /// a tap inside a layer, or unknown.
    pub fn not_a_layer(&self, name: &str) -> String {
        if name == INPUT {
            format!("'{name}' is the network's input, not one of its layers")
        } else if let Some(block) = self.enclosing(name) {
            format!(
                "'{name}' is a tap inside layer '{block}' (model.taps = \"all\"), not a layer of its own: the rest of '{block}' needs the layer's input too (its shortcut), so its output cannot be edited or run from alone; name '{block}'"
            )
        } else {
            format!("no layer '{name}' in this network")
        }
    }

    /// Runs layers `range` on `h` (the network's input, or the output of the layer just
    /// below the range) and returns each one's output. For the last output alone, use
    /// [`Network::forward_span`], which lets each intermediate output go once used.
    pub fn forward_range(&self, h: &Tensor, train: bool, range: std::ops::Range<usize>) -> Vec<Tensor> {
        let mut h = h.shallow_clone();
        self.layers[range]
            .iter()
            .map(|l| {
                h = l.forward_t(&h, train);
                h.shallow_clone()
            })
            .collect()
    }

    /// The output of the last layer of `range` (non-empty), run on `h` (the network's
    /// input, or the output of the layer just below the range): for a caller that keeps
    /// the output of a frozen prefix and runs only the layers above it.
    pub fn forward_span(&self, h: &Tensor, train: bool, range: std::ops::Range<usize>) -> Tensor {
        assert!(!range.is_empty(), "a span of at least one layer");
        self.layers[range].iter().fold(h.shallow_clone(), |h, l| l.forward_t(&h, train))
    }

    /// The logits from `h`, the output of the first `from` layers (the network's input
    /// when `from` is 0): the layers above run on it.
    pub fn forward_from(&self, h: &Tensor, from: usize, train: bool) -> Tensor {
        self.layers[from..].iter().fold(h.shallow_clone(), |h, l| l.forward_t(&h, train))
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
            tch::no_grad(|| below.iter().fold(x.shallow_clone(), |h, l| l.forward_t(&h, train && !bn_eval)))
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
        self.layers.iter().fold(x.shallow_clone(), |h, l| l.forward_t(&h, train))
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
        Arch::Resnet => Ok(resnet(root, shape[0], classes, (config.depth - 2) / 6, config.width(), config.final_bn, config.taps)),
        Arch::Linear => Ok(linear(root, shape, classes)),
    }
}

/// The sizes of the network `config` describes, worked out from the config alone (nothing
/// allocated): what `train` checks against the memory before it builds anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// Trainable parameters (and batch-norm statistics).
    pub parameters: u64,
    /// Elements of the intermediate outputs of one image's forward pass, summed over the
    /// network (what a training step keeps for the backward pass, before autograd's own).
    pub outputs_per_image: u64,
    /// Elements of the largest single output of one image (what an evaluation holds,
    /// with the output below it).
    pub widest_per_image: u64,
}

/// The [`Footprint`] of `config`'s network on images of `shape` (C, H, W), `classes`.
pub fn footprint(config: &ModelConfig, shape: [i64; 3], classes: i64) -> Footprint {
    let [c, h, w] = shape.map(|v| v.max(1) as u64);
    let k = classes.max(1) as u64;
    let width = config.width().max(1) as u64;
    let conv = |cin: u64, cout: u64| cin * cout * 9 + cout;
    let (parameters, outputs, widest): (u64, Vec<u64>, u64) = match config.arch {
        Arch::Convnet => {
            let (fc1, fc2) = (config.fc1.max(1) as u64, config.fc2.max(1) as u64);
            let (full, half, quarter) = (width * h * w, width * (h / 2) * (w / 2), width * (h / 4) * (w / 4));
            let params = conv(c, width)
                + 4 * conv(width, width)
                + 2 * 4 * width
                + quarter * fc1
                + fc1
                + 4 * fc1
                + fc1 * fc2
                + fc2
                + 4 * fc2
                + fc2 * k
                + k;
            // Each conv and fc layer is two outputs (before and after its ReLU).
            let outs = vec![2 * full, 2 * full, full, half, 2 * half, 2 * half, 2 * half, half, quarter, 2 * fc1, fc1, 2 * fc2, fc2, k];
            (params, outs, full.max(fc1).max(fc2).max(k))
        }
        Arch::Resnet => {
            // Per stage in closed form (the depth is not bounded by the config).
            let n = ((config.depth - 2) / 6).max(1) as u64;
            let mut params = c * width * 9 + 4 * width;
            let mut outs = vec![width * h * w, 2 * width * h * w];
            let (mut cin, mut hs, mut ws) = (width, h, w);
            for stage in 0..3 {
                let cout = width << stage;
                if stage > 0 {
                    (hs, ws) = (hs.div_ceil(2), ws.div_ceil(2));
                }
                let first = cin * cout * 9 + cout * cout * 9 + 8 * cout;
                let rest = (n - 1).saturating_mul(2 * cout * cout * 9 + 8 * cout);
                params = params.saturating_add(first).saturating_add(rest);
                // Each block: conv1, bn1, its ReLU, conv2, bn2, the sum and its ReLU.
                outs.push(n.saturating_mul(7 * cout * hs * ws));
                cin = cout;
            }
            if config.final_bn {
                params += 4 * cin;
                outs.push(2 * cin * hs * ws);
            }
            params += cin * k + k;
            outs.extend([cin, k]);
            // The stages halve the positions as they double the channels: the first is widest.
            (params, outs, (width * h * w).max(k))
        }
        Arch::Linear => (c * h * w * k + k, vec![c * h * w, k], (c * h * w).max(k)),
    };
    Footprint { parameters, outputs_per_image: outputs.iter().fold(0u64, |a, &b| a.saturating_add(b)), widest_per_image: widest }
}

/// A linear classifier on pixels (the baseline the synthetic set is built to defeat).
pub fn linear(root: &nn::Path, shape: [i64; 3], classes: i64) -> Network {
    let mut net = Network::new();
    let fc = nn::linear(root / "logits", shape.iter().product(), classes, Default::default());
    net.push("logits", nn::seq_t().add_fn(|x| x.flatten(1, -1)).add(fc));
    net
}
