//! Element-wise steps of the networks that have a faster way when no gradient is tracked
//! (evaluations, activation recording, compression sweeps, a frozen prefix), with the
//! same numbers: with a gradient they are libtorch's plain ops, whose backward passes
//! need what those ops keep.

use tch::Tensor;

/// ReLU of a fresh output (a conv's, a linear's or a batch norm's, just computed in the
/// same sequence, held by nothing else): in place without a gradient, which saves
/// allocating and writing a second tensor (`scripts/bench_layouts.py`).
pub(crate) fn relu_fresh(x: &Tensor) -> Tensor {
    if x.requires_grad() {
        return x.relu();
    }
    x.shallow_clone().relu_()
}

/// 2 x 2 max pooling, stride 2 (a last odd row or column dropped). Without a gradient to
/// track, it is two elementwise maxima: of each pair of rows, then of each pair of
/// columns of that. The same numbers as libtorch's `max_pool2d` (a maximum is exact), and
/// faster: libtorch's kernel also writes the index of every maximum for a backward pass.
/// The row step reads whole rows, so only the column step strides; the four strided
/// views of each window this replaced took three maxima and strided in both. Several
/// times faster than `max_pool2d`: BENCHMARKS.md, "Tensor layouts: pooling, ReLU,
/// convolutions" (`scripts/bench_layouts.py`).
pub(crate) fn max_pool(x: &Tensor) -> Tensor {
    if x.requires_grad() {
        return x.max_pool2d_default(2);
    }
    let size = x.size();
    let (h, w) = (size[2] / 2 * 2, size[3] / 2 * 2);
    let rows = x.slice(2, 0, h, 2).maximum(&x.slice(2, 1, h, 2));
    rows.slice(3, 0, w, 2).maximum(&rows.slice(3, 1, w, 2))
}

#[cfg(test)]
mod tests {
    use super::{max_pool, relu_fresh};
    use tch::{Device, Kind, Tensor};

    /// Without autograd the two maxima are libtorch's max pooling, number for number:
    /// even and odd sizes, ties (ReLU zeros), and a strided view as input.
    #[test]
    fn the_pooling_without_gradients_is_libtorchs() {
        tch::manual_seed(3);
        for shape in [[3i64, 4, 8, 8], [2, 5, 7, 9], [1, 2, 2, 3], [2, 3, 5, 4], [2, 16, 14, 14], [1, 3, 3, 2]] {
            let x = Tensor::randn(shape, (Kind::Float, Device::Cpu)).relu();
            for x in [x.shallow_clone(), x.transpose(2, 3)] {
                let want = x.max_pool2d_default(2);
                let got = tch::no_grad(|| max_pool(&x));
                assert_eq!(got.size(), want.size(), "{:?}", x.size());
                assert!(got.equal(&want), "{:?}", x.size());
            }
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
