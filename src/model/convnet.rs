//! The paper's CIFAR-10 convnet: c1 c2 bn1 p1 c3 c4 c5 bn2 p2 fc1 bn3 fc2 bn4 logits.
//!
//! The paper gives the layer list and widths (64 channels, so p2 is 8 x 8 x 64 = 4096 on
//! 32 x 32 input; fc1 512, fc2 256) but not the kernels: we use 3 x 3 convolutions with
//! padding 1 and 2 x 2 max pooling. Each conv and fc layer includes its ReLU, so a tap on
//! `c3` is what its neurons output; batch norm follows the ReLU, as the list's order says.

use super::Network;
use crate::error::InputError;
use tch::nn::{self, ConvConfig};
use tch::Tensor;

pub fn convnet(root: &nn::Path, shape: [i64; 3], classes: i64, width: i64, fc1: i64, fc2: i64) -> Result<Network, InputError> {
    let [c, h, w] = shape;
    if h < 4 || w < 4 {
        return Err(InputError::new(format!("the convnet needs images of at least 4 x 4 pixels, not {h} x {w}")));
    }
    let conv = |name: &str, cin: i64| {
        let cfg = ConvConfig { padding: 1, ..Default::default() };
        nn::seq_t().add(nn::conv2d(root / name, cin, width, 3, cfg)).add_fn(|x| x.relu())
    };
    let fc = |name: &str, din: i64, dout: i64| nn::seq_t().add(nn::linear(root / name, din, dout, Default::default())).add_fn(|x| x.relu());
    let bn2d = |name: &str| nn::seq_t().add(nn::batch_norm2d(root / name, width, Default::default()));
    let bn1d = |name: &str, d: i64| nn::seq_t().add(nn::batch_norm1d(root / name, d, Default::default()));
    let pool = || nn::seq_t().add_fn(max_pool);
    let flat = width * (h / 4) * (w / 4);

    let mut net = Network::new();
    net.push("c1", conv("c1", c));
    net.push("c2", conv("c2", width));
    net.push("bn1", bn2d("bn1"));
    net.push("p1", pool());
    net.push("c3", conv("c3", width));
    net.push("c4", conv("c4", width));
    net.push("c5", conv("c5", width));
    net.push("bn2", bn2d("bn2"));
    net.push("p2", pool());
    net.push("fc1", nn::seq_t().add_fn(|x| x.flatten(1, -1)).add(fc("fc1", flat, fc1)));
    net.push("bn3", bn1d("bn3", fc1));
    net.push("fc2", fc("fc2", fc1, fc2));
    net.push("bn4", bn1d("bn4", fc2));
    net.push("logits", nn::seq_t().add(nn::linear(root / "logits", fc2, classes, Default::default())));
    Ok(net)
}

/// 2 x 2 max pooling, stride 2 (a last odd row or column dropped). Without a gradient to
/// track, the largest of the four strided views: the same numbers as libtorch's
/// `max_pool2d` (a maximum is exact), about 8x faster on the evaluations' 5000 x 16 x
/// 14 x 14 batches, as libtorch's CPU kernel also writes the index of every maximum for
/// a backward pass (BENCHMARKS.md, "Compression on channels-last batches").
fn max_pool(x: &Tensor) -> Tensor {
    if x.requires_grad() {
        return x.max_pool2d_default(2);
    }
    let size = x.size();
    let (h, w) = (size[2] / 2 * 2, size[3] / 2 * 2);
    let view = |i: i64, j: i64| x.slice(2, i, h, 2).slice(3, j, w, 2);
    view(0, 0).maximum(&view(0, 1)).maximum(&view(1, 0).maximum(&view(1, 1)))
}

#[cfg(test)]
mod tests {
    use super::max_pool;
    use tch::{Kind, Tensor};

    /// Without autograd the strided maximum is libtorch's max pooling, number for number:
    /// even and odd sizes, ties (ReLU zeros), channels-last strides.
    #[test]
    fn the_pooling_without_gradients_is_libtorchs() {
        tch::manual_seed(3);
        for shape in [[3i64, 4, 8, 8], [2, 5, 7, 9], [1, 2, 2, 3]] {
            let x = Tensor::randn(shape, (Kind::Float, tch::Device::Cpu)).relu();
            let want = x.max_pool2d_default(2);
            let got = tch::no_grad(|| max_pool(&x));
            assert_eq!(got.size(), want.size(), "{shape:?}");
            assert!(got.equal(&want), "{shape:?}");
            let last = x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2]);
            assert!(tch::no_grad(|| max_pool(&last)).equal(&want), "{shape:?}, channels last");
        }
        // With a gradient to track: libtorch's pooling, whose backward goes to one maximum.
        let x = Tensor::ones([1, 1, 2, 2], (Kind::Float, tch::Device::Cpu)).set_requires_grad(true);
        max_pool(&x).sum(Kind::Float).backward();
        assert_eq!(x.grad().sum(Kind::Float).double_value(&[]), 1.0);
        assert_eq!(x.grad().max().double_value(&[]), 1.0);
    }
}
