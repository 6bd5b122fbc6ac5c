//! Element-wise steps of the networks that have a faster way when no gradient is tracked
//! (evaluations, activation recording, compression sweeps, a frozen prefix), with the
//! same numbers: with a gradient they are libtorch's plain ops, whose backward passes
//! need what those ops keep.

use tch::Tensor;

/// Whether an N x C x H x W tensor is laid out channels-last (NHWC in memory), the layout
/// the compression sweeps run conv layers in (`analysis::compression`).
pub fn is_channels_last(x: &Tensor) -> bool {
    let s = x.size();
    s.len() == 4 && x.stride() == [s[1] * s[2] * s[3], 1, s[3] * s[1], s[1]]
}

/// ReLU of a fresh output (a conv's, a linear's or a batch norm's, just computed in the
/// same sequence, held by nothing else): in place without a gradient, which saves
/// allocating and writing a second tensor (`scripts/bench_layouts.py`).
pub fn relu_fresh(x: &Tensor) -> Tensor {
    if x.requires_grad() {
        return x.relu();
    }
    x.shallow_clone().relu_()
}

/// 2 x 2 max pooling, stride 2 (a last odd row or column dropped). Without a gradient to
/// track, an NCHW tensor's is the largest of its four strided views: the same numbers as
/// libtorch's `max_pool2d` (a maximum is exact), 4.5 to 7 times faster on a 5000 x 16 x
/// 14 x 14 batch (`scripts/bench_layouts.py`), as libtorch's NCHW kernel also writes the
/// index of every maximum for a backward pass. Its channels-last kernel is as fast as the
/// strided views there or faster, so channels-last tensors keep it.
pub fn max_pool(x: &Tensor) -> Tensor {
    if x.requires_grad() || is_channels_last(x) {
        return x.max_pool2d_default(2);
    }
    let size = x.size();
    let (h, w) = (size[2] / 2 * 2, size[3] / 2 * 2);
    let view = |i: i64, j: i64| x.slice(2, i, h, 2).slice(3, j, w, 2);
    view(0, 0).maximum(&view(0, 1)).maximum(&view(1, 0).maximum(&view(1, 1)))
}

#[cfg(test)]
mod tests {
    use super::{is_channels_last, max_pool, relu_fresh};
    use tch::{Device, Kind, Tensor};

    fn channels_last(x: &Tensor) -> Tensor {
        x.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
    }

    /// Without autograd the strided maximum is libtorch's max pooling, number for number:
    /// even and odd sizes, ties (ReLU zeros), both layouts (channels-last in, out).
    #[test]
    fn the_pooling_without_gradients_is_libtorchs() {
        tch::manual_seed(3);
        for shape in [[3i64, 4, 8, 8], [2, 5, 7, 9], [1, 2, 2, 3], [2, 3, 5, 4]] {
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)).relu();
            let want = x.max_pool2d_default(2);
            let got = tch::no_grad(|| max_pool(&x));
            assert_eq!(got.size(), want.size(), "{shape:?}");
            assert!(got.equal(&want), "{shape:?}");
            let last = channels_last(&x);
            assert!(is_channels_last(&last) && !is_channels_last(&x), "{shape:?}");
            let pooled = tch::no_grad(|| max_pool(&last));
            assert!(pooled.equal(&want), "{shape:?}, channels last");
            assert!(is_channels_last(&pooled), "{shape:?}: channels-last out");
        }
        // With a gradient to track: libtorch's pooling, whose backward goes to one maximum.
        let x = Tensor::ones([1, 1, 2, 2], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        max_pool(&x).sum(Kind::Float).backward();
        assert_eq!(x.grad().sum(Kind::Float).double_value(&[]), 1.0);
        assert_eq!(x.grad().max().double_value(&[]), 1.0);
    }

    #[test]
    fn relu_of_a_fresh_output_in_place_only_without_gradients() {
        let x = Tensor::from_slice(&[-1.0f32, 2.0, -0.5, 0.0]);
        let y = tch::no_grad(|| relu_fresh(&(&x * 1.0)));
        assert_eq!(Vec::<f32>::try_from(&y).unwrap(), [0.0, 2.0, 0.0, 0.0]);
        // Tracked: a new tensor, the input left as it was.
        let w = x.copy().set_requires_grad(true);
        let h = &w * 1.0;
        let y = relu_fresh(&h);
        assert_eq!(Vec::<f32>::try_from(&h).unwrap(), [-1.0, 2.0, -0.5, 0.0]);
        y.sum(Kind::Float).backward();
        assert_eq!(Vec::<f32>::try_from(&w.grad()).unwrap(), [0.0, 1.0, 0.0, 0.0]);
    }
}
