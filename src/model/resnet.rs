//! The CIFAR ResNets of He et al. (2016), depth 6n+2: a 3 x 3 conv with batch norm, three
//! stages of n basic blocks (width w, 2w, 4w; the second and third start with stride 2),
//! global average pooling and a linear layer. n = 3, 5, 9 are ResNet-20/32/56; the
//! paper's network is n = 10 (ResNet-62). Shortcuts that change shape are He's option A
//! (subsample, pad channels with zeros: no parameters), as in the CIFAR experiments.
//!
//! Layers: `conv1` `bn1` `s1b1` .. `s1bn` `s2b1` .. `s3bn` (`bn_final`) `pool` `logits`;
//! a block is one layer, its output taken after the addition and ReLU. `bn_final`
//! (`model.final_bn`) is a batch norm with its ReLU after the last block, the paper's
//! `conv-(blocks)x3-bn-fc-out`; He et al.'s CIFAR ResNet has none.
//!
//! With `model.taps = "all"` ([`Taps::All`]) the convs and batch norms inside each block
//! are analysable layers too (not layers of the sequence), named after their `VarStore`
//! paths and listed before the block: `s1b1.conv1`, `s1b1.bn1` (after its ReLU: what
//! `conv2` sees), `s1b1.conv2`, `s1b1.bn2` (before the addition), then `s1b1`. The weights,
//! the layers of the sequence and training are the same as with `"blocks"`.
//!
//! Freeze units ([`Network::freeze_units`]): one per residual block, everything in it
//! (both convs, both batch norms; the shortcut has no parameters), the stem joining the
//! first block and the head the last, so the linear schedule freezes block b of B at
//! fraction b/B of training.

use super::ops::relu_fresh;
use super::{InnerTaps, Network};
use crate::config::Taps;
use tch::nn::{self, ConvConfig, ModuleT};
use tch::Tensor;

fn conv3x3(p: nn::Path, cin: i64, cout: i64, stride: i64) -> nn::Conv2D {
    nn::conv2d(p, cin, cout, 3, ConvConfig { stride, padding: 1, bias: false, ..Default::default() })
}

#[derive(Debug)]
struct Block {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    stride: i64,
    /// Channels added by the zero-padded shortcut (0 when the shape is kept).
    extra: i64,
}

impl Block {
    fn new(p: nn::Path, cin: i64, cout: i64, stride: i64) -> Block {
        Block {
            conv1: conv3x3(&p / "conv1", cin, cout, stride),
            bn1: nn::batch_norm2d(&p / "bn1", cout, Default::default()),
            conv2: conv3x3(&p / "conv2", cout, cout, 1),
            bn2: nn::batch_norm2d(&p / "bn2", cout, Default::default()),
            stride,
            extra: cout - cin,
        }
    }
}

/// The taps inside a block, in the order [`Block::forward_inner`] returns them.
const INNER: [&str; 4] = ["conv1", "bn1", "conv2", "bn2"];

impl Block {
    /// The shortcut: `x`, or subsampled by the stride and zero-padded to the channels.
    fn shortcut(&self, x: &Tensor) -> Tensor {
        if self.stride == 1 && self.extra == 0 {
            x.shallow_clone()
        } else {
            let sub = x.slice(2, 0, None, self.stride).slice(3, 0, None, self.stride);
            let before = self.extra / 2;
            sub.constant_pad_nd([0, 0, 0, 0, before, self.extra - before])
        }
    }
}

impl ModuleT for Block {
    fn forward_t(&self, x: &Tensor, train: bool) -> Tensor {
        let y = x.apply(&self.conv1).apply_t(&self.bn1, train).relu().apply(&self.conv2).apply_t(&self.bn2, train);
        (y + self.shortcut(x)).relu()
    }
}

impl InnerTaps for Block {
    /// The same operations as `forward_t`, each intermediate kept.
    fn forward_inner(&self, x: &Tensor, train: bool) -> (Tensor, Vec<Tensor>) {
        let conv1 = x.apply(&self.conv1);
        let bn1 = conv1.apply_t(&self.bn1, train).relu();
        let conv2 = bn1.apply(&self.conv2);
        let bn2 = conv2.apply_t(&self.bn2, train);
        let out = (&bn2 + self.shortcut(x)).relu();
        (out, vec![conv1, bn1, conv2, bn2])
    }
}

pub fn resnet(root: &nn::Path, channels: i64, classes: i64, n: i64, width: i64, final_bn: bool, taps: Taps) -> Network {
    let mut net = Network::new();
    net.push("conv1", conv3x3(root / "conv1", channels, width, 1));
    let bn = nn::batch_norm2d(root / "bn1", width, Default::default());
    net.push("bn1", nn::seq_t().add(bn).add_fn(relu_fresh));
    let mut cin = width;
    let mut blocks = Vec::new();
    for stage in 1..=3 {
        let cout = width << (stage - 1);
        for b in 1..=n {
            let stride = if stage > 1 && b == 1 { 2 } else { 1 };
            let name = format!("s{stage}b{b}");
            blocks.push(net.layer_names().len());
            let block = Block::new(root / name.as_str(), cin, cout, stride);
            match taps {
                Taps::Blocks => net.push(&name, block),
                Taps::All => net.push_with_taps(&name, &INNER, block),
            }
            cin = cout;
        }
    }
    if final_bn {
        let bn = nn::batch_norm2d(root / "bn_final", cin, Default::default());
        net.push("bn_final", nn::seq_t().add(bn).add_fn(relu_fresh));
    }
    net.push("pool", nn::seq_t().add_fn(|x| x.adaptive_avg_pool2d([1, 1]).flatten(1, -1)));
    net.push("logits", nn::seq_t().add(nn::linear(root / "logits", cin, classes, Default::default())));
    blocks[0] = 0; // the stem freezes with the first block
    net.set_freeze_units(blocks);
    net
}
