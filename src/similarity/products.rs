//! The matrix products of the comparisons: stacks of problems (problems x m x k times
//! problems x k x n), and scatter matrices `x' x`. On the CPU in float64 they run through
//! faer, elsewhere (CUDA, other kinds) through libtorch.
//!
//! Why faer on the CPU: libtorch has no symmetric rank-k product, so its `x' x` does the
//! whole product where half is needed, and its MKL packs both operands of every small
//! product of a stack (on a 2-core AMD EPYC, packing took as many of the analysis's
//! samples as the multiplication itself). faer reads strided data in place (a transposed
//! view costs no copy) and computes one triangle of `x' x`: faster than libtorch's
//! products on large matrices and on the analysis's stacks, measured side by side
//! (benches/records/2026-12-01.md, "Products through faer").
//!
//! Each product of a stack is computed whole by one thread (rayon over the problems);
//! a stack with fewer problems than threads gives each product every thread. The
//! streaming sums add each block's products into the running ones in place
//! ([`add_products`], [`add_gram`], [`add_column_sums`]).

use crate::host::view::{fill_new, slices_mut_apart, MatStack};
use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use tch::{Kind, Tensor};

/// `x y` for stacks (problems x m x k times problems x k x n, the same number of
/// problems) or matrices; any other shapes as `Tensor::matmul` takes them.
pub(crate) fn products(x: &Tensor, y: &Tensor) -> Tensor {
    let (Some(a), Some(b)) = (MatStack::of(x), MatStack::of(y)) else { return x.matmul(y) };
    if a.problems != b.problems || a.cols != b.rows {
        return x.matmul(y);
    }
    let out = fill_new::<f64>(&[a.problems as i64, a.rows as i64, b.cols as i64], |out| multiply(out, Accum::Replace, &a, &b));
    if x.dim() == 2 {
        out.squeeze_dim(0)
    } else {
        out
    }
}

/// `out += x y`, `out` of the shape [`products`] returns: in place on the CPU (no
/// product written out and then added: one pass over `out` instead of three, and no
/// parallel libtorch step between rayon's).
pub(crate) fn add_products(out: &mut Tensor, x: &Tensor, y: &Tensor) {
    if let (Some(a), Some(b)) = (MatStack::of(x), MatStack::of(y)) {
        if a.problems == b.problems && a.cols == b.rows && has_shape(out, [a.problems, a.rows, b.cols]) {
            if let Some([o]) = slices_mut_apart::<f64, 1>([out], &[x, y]) {
                return multiply(o, Accum::Add, &a, &b);
            }
        }
    }
    *out += x.matmul(y);
}

/// `out += 1' x`: the column sums of each problem of a stack (problems x rows x cols)
/// added to `out` (problems x 1 x cols), in place on the CPU (see [`add_products`]).
pub(crate) fn add_column_sums(out: &mut Tensor, x: &Tensor) {
    if let Some(a) = MatStack::of(x) {
        if has_shape(out, [a.problems, 1, a.cols]) {
            if let Some([o]) = slices_mut_apart::<f64, 1>([out], &[x]) {
                let ones = vec![1.0; a.rows];
                let ones = MatRef::from_row_major_slice(&ones, 1, a.rows);
                return each_problem(o, a.cols, |q, d, par| {
                    matmul(MatMut::from_row_major_slice_mut(d, 1, a.cols), Accum::Add, ones, a.problem(q), 1.0, par);
                });
            }
        }
    }
    *out += column_sums(x);
}

/// Rows summed at a time by [`column_sums`] for data not in float64.
const SUM_ROWS: i64 = 64;

/// `1' x` for a stack (problems x rows x cols), summed in float64 whatever the data's
/// kind (float32 data: [`super::Precision::Float32`]). libtorch sums into float64 by
/// first copying its whole input to float64, which for float32 data (a layer's spectrum)
/// would be twice the data beside it: such data is summed a block of rows at a time.
pub(crate) fn column_sums(x: &Tensor) -> Tensor {
    let rows = x.size()[1];
    if x.kind() == Kind::Double || rows <= SUM_ROWS {
        return x.sum_dim_intlist(1, true, Kind::Double);
    }
    let mut sums = x.narrow(1, 0, SUM_ROWS).sum_dim_intlist(1, true, Kind::Double);
    for start in (SUM_ROWS..rows).step_by(SUM_ROWS as usize) {
        sums += x.narrow(1, start, SUM_ROWS.min(rows - start)).sum_dim_intlist(1, true, Kind::Double);
    }
    sums
}

/// Whether `out` is a stack of exactly `shape` (faer then writes it in place where
/// [`slices_mut_apart`] gives its elements).
fn has_shape(out: &Tensor, [problems, m, n]: [usize; 3]) -> bool {
    out.size() == [problems as i64, m as i64, n as i64]
}

/// `out = a b` or `out += a b` for each problem, `out` the problems x a.rows x b.cols
/// elements of a contiguous stack.
fn multiply(out: &mut [f64], accum: Accum, a: &MatStack, b: &MatStack) {
    let (m, n) = (a.rows, b.cols);
    each_problem(out, m * n, |q, d, par| {
        matmul(MatMut::from_row_major_slice_mut(d, m, n), accum, a.problem(q), b.problem(q), 1.0, par);
    });
}

/// `x' x` for a stack (problems x rows x cols) or a matrix, exactly symmetric: one
/// triangle is computed and mirrored (BLAS does not promise that the two triangles of
/// a full `x' x` agree; on an AMD EPYC they differ in the last bit).
pub(crate) fn gram(x: &Tensor) -> Tensor {
    let Some(a) = MatStack::of(x) else {
        let g = x.transpose(-2, -1).matmul(x);
        return g.triu(0) + g.triu(1).transpose(-2, -1);
    };
    let n = a.cols as i64;
    let out = fill_new::<f64>(&[a.problems as i64, n, n], |out| gram_into(out, Accum::Replace, &a));
    if x.dim() == 2 {
        out.squeeze_dim(0)
    } else {
        out
    }
}

/// `out += x' x` for a stack, `out` of the shape [`gram`] returns; in place on the CPU
/// (see [`add_products`]), exactly symmetric as `out` was.
pub(crate) fn add_gram(out: &mut Tensor, x: &Tensor) {
    if let Some(a) = MatStack::of(x) {
        if has_shape(out, [a.problems, a.cols, a.cols]) {
            if let Some([o]) = slices_mut_apart::<f64, 1>([out], &[x]) {
                return gram_into(o, Accum::Add, &a);
            }
        }
    }
    *out += gram(x);
}

/// `out = a' a` or `out += a' a` for each problem: the lower triangle, then mirrored.
fn gram_into(out: &mut [f64], accum: Accum, a: &MatStack) {
    let n = a.cols;
    each_problem(out, n * n, |q, block, par| {
        let xq = a.problem(q);
        triangular::matmul(
            MatMut::from_row_major_slice_mut(block, n, n),
            BlockStructure::TriangularLower,
            accum,
            xq.transpose(),
            BlockStructure::Rectangular,
            xq,
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        for i in 0..n {
            for j in i + 1..n {
                block[i * n + j] = block[j * n + i];
            }
        }
    });
}

/// Runs `f(problem, its block of out, parallelism)` for every problem (`out` in blocks of
/// `block` elements): one problem per rayon task when there are enough of them to keep
/// every thread busy, else one after the other, each with all threads.
fn each_problem(out: &mut [f64], block: usize, f: impl Fn(usize, &mut [f64], Par) + Sync) {
    let threads = rayon::current_num_threads();
    let problems = out.len() / block;
    if problems >= threads && problems > 1 {
        out.par_chunks_mut(block).enumerate().for_each(|(q, d)| f(q, d, Par::Seq));
    } else {
        let par = if threads > 1 { Par::rayon(threads) } else { Par::Seq };
        out.chunks_mut(block).enumerate().for_each(|(q, d)| f(q, d, par));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn worst(a: &Tensor, b: &Tensor) -> f64 {
        assert_eq!(a.size(), b.size());
        f64::try_from((a - b).abs().max()).unwrap()
    }

    #[test]
    fn products_equal_libtorchs_for_stacks_matrices_and_strided_views() {
        tch::manual_seed(0);
        let opts = (Kind::Double, Device::Cpu);
        let big = Tensor::randn([6, 40, 50], opts);
        let cases = [
            // A stack (more problems than threads), one problem, a matrix.
            (Tensor::randn([5, 7, 30], opts), Tensor::randn([5, 30, 9], opts)),
            (Tensor::randn([1, 40, 30], opts), Tensor::randn([1, 30, 50], opts)),
            (Tensor::randn([40, 30], opts), Tensor::randn([30, 1], opts)),
            // Transposed and narrowed views of one storage, as the summaries pass them.
            (big.narrow(2, 3, 20).transpose(1, 2), big.narrow(2, 10, 33)),
            (big.select(0, 2).transpose(0, 1), big.select(0, 4)),
        ];
        for (x, y) in cases {
            let p = products(&x, &y);
            assert!(worst(&p, &x.matmul(&y)) < 1e-12, "{:?} x {:?}", x.size(), y.size());
        }
        // What faer does not take goes to libtorch unchanged: broadcasting, float32.
        let (x, y) = (Tensor::randn([3, 4, 5], opts), Tensor::randn([1, 5, 2], opts));
        assert_eq!(products(&x, &y).size(), vec![3, 4, 2]);
        let (x, y) = (x.to_kind(Kind::Float), Tensor::randn([3, 5, 2], (Kind::Float, Device::Cpu)));
        assert_eq!(products(&x, &y).kind(), Kind::Float);
    }

    #[test]
    fn sums_added_in_place_equal_the_products_added() {
        tch::manual_seed(2);
        let opts = (Kind::Double, Device::Cpu);
        let (x, y) = (Tensor::randn([5, 40, 30], opts), Tensor::randn([5, 40, 12], opts));
        let start = |shape: [i64; 3]| Tensor::randn(shape, opts);
        // In place (a contiguous float64 stack), and through libtorch (a transposed view).
        for contiguous in [true, false] {
            let fresh = |shape: [i64; 3]| if contiguous { start(shape) } else { start([shape[0], shape[2], shape[1]]).transpose(1, 2) };
            let mut out = fresh([5, 30, 12]);
            let expected = &out + x.transpose(1, 2).matmul(&y);
            add_products(&mut out, &x.transpose(1, 2), &y);
            assert!(worst(&out, &expected) < 1e-12, "products, contiguous {contiguous}");

            let g = gram(&start([5, 50, 30]));
            let mut out = if contiguous { g.copy() } else { g.transpose(1, 2) };
            let expected = &out + x.transpose(1, 2).matmul(&x);
            add_gram(&mut out, &x);
            assert!(worst(&out, &expected) < 1e-12, "gram, contiguous {contiguous}");
            assert!(bool::try_from(out.eq_tensor(&out.transpose(1, 2)).all()).unwrap(), "gram, contiguous {contiguous}: not symmetric");

            let mut out = fresh([5, 1, 30]);
            let expected = &out + x.sum_dim_intlist(1, true, None);
            add_column_sums(&mut out, &x);
            assert!(worst(&out, &expected) < 1e-12, "column sums, contiguous {contiguous}");
        }
        // One problem, fewer than the threads: each product with every thread.
        let (x1, mut out) = (Tensor::randn([1, 300, 20], opts), Tensor::zeros([1, 1, 20], opts));
        add_column_sums(&mut out, &x1);
        assert!(worst(&out, &x1.sum_dim_intlist(1, true, None)) < 1e-12);
    }

    #[test]
    fn the_gram_matrix_is_the_full_product_and_exactly_symmetric() {
        tch::manual_seed(1);
        let opts = (Kind::Double, Device::Cpu);
        for (problems, rows, cols) in [(1, 300, 100), (3, 200, 130), (1, 600, 300), (2, 50, 1030), (7, 60, 32)] {
            let x = Tensor::randn([problems, rows, cols], opts) + 3.0;
            let g = gram(&x);
            let full = x.transpose(1, 2).matmul(&x);
            let scale = f64::try_from(full.abs().max()).unwrap();
            assert!(worst(&g, &full) <= 1e-13 * scale, "{problems} x {rows} x {cols}");
            assert!(bool::try_from(g.eq_tensor(&g.transpose(1, 2)).all()).unwrap(), "{problems} x {rows} x {cols}: not symmetric");
        }
        // A transposed view: the Gram matrix of the rows.
        let x = Tensor::randn([1, 20, 70], opts);
        assert!(worst(&gram(&x.transpose(1, 2)), &x.matmul(&x.transpose(1, 2))) < 1e-12);
        let m = Tensor::randn([30, 8], opts);
        assert!(worst(&gram(&m), &m.tr().matmul(&m)) < 1e-12);
    }
}
