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

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// `x y` for stacks (problems x m x k times problems x k x n, the same number of
/// problems) or matrices; any other shapes as `Tensor::matmul` takes them.
pub(crate) fn products(x: &Tensor, y: &Tensor) -> Tensor {
    let (Some(a), Some(b)) = (Operand::of(x), Operand::of(y)) else { return x.matmul(y) };
    if a.problems != b.problems || a.cols != b.rows {
        return x.matmul(y);
    }
    let out = Tensor::empty([a.problems as i64, a.rows as i64, b.cols as i64], (Kind::Double, Device::Cpu));
    multiply(&out, Accum::Replace, &a, &b);
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
    if let (Some(a), Some(b)) = (Operand::of(x), Operand::of(y)) {
        if a.problems == b.problems && a.cols == b.rows && writable(out, [a.problems, a.rows, b.cols]) {
            return multiply(out, Accum::Add, &a, &b);
        }
    }
    *out += x.matmul(y);
}

/// `out += 1' x`: the column sums of each problem of a stack (problems x rows x cols)
/// added to `out` (problems x 1 x cols), in place on the CPU (see [`add_products`]).
pub(crate) fn add_column_sums(out: &mut Tensor, x: &Tensor) {
    if let Some(a) = Operand::of(x) {
        if writable(out, [a.problems, 1, a.cols]) {
            let ones = vec![1.0; a.rows];
            // SAFETY: a 1 x rows view of `ones`, which outlives the products.
            let ones = unsafe { MatRef::from_raw_parts(ones.as_ptr(), 1, a.rows, a.rows as isize, 1) };
            let (n, dst) = (a.cols, out.data_ptr() as usize);
            return each_problem(a.problems, |q, par| {
                // SAFETY: problem q's row of the contiguous `out`, written by this call only.
                let d = unsafe { MatMut::from_raw_parts_mut((dst as *mut f64).add(q * n), 1, n, n as isize, 1) };
                matmul(d, Accum::Add, ones, a.problem(q), 1.0, par);
            });
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

/// Whether faer may write the products into `out` in place: a contiguous CPU float64
/// stack of exactly `shape`.
fn writable(out: &Tensor, [problems, m, n]: [usize; 3]) -> bool {
    out.device() == Device::Cpu && out.kind() == Kind::Double && out.is_contiguous() && out.size() == [problems as i64, m as i64, n as i64]
}

/// `out = a b` or `out += a b` for each problem, `out` a contiguous CPU float64 stack of
/// problems x a.rows x b.cols.
fn multiply(out: &Tensor, accum: Accum, a: &Operand, b: &Operand) {
    let (m, n) = (a.rows, b.cols);
    let dst = out.data_ptr() as usize;
    each_problem(a.problems, |q, par| {
        // SAFETY: problem q's block of the contiguous `out`, written by this call only;
        // `a` and `b` outlive `each_problem`, which returns when every call has.
        let d = unsafe { MatMut::from_raw_parts_mut((dst as *mut f64).add(q * m * n), m, n, n as isize, 1) };
        matmul(d, accum, a.problem(q), b.problem(q), 1.0, par);
    });
}

/// `x' x` for a stack (problems x rows x cols) or a matrix, exactly symmetric: one
/// triangle is computed and mirrored (BLAS does not promise that the two triangles of
/// a full `x' x` agree; on an AMD EPYC they differ in the last bit).
pub(crate) fn gram(x: &Tensor) -> Tensor {
    let Some(a) = Operand::of(x) else {
        let g = x.transpose(-2, -1).matmul(x);
        return g.triu(0) + g.triu(1).transpose(-2, -1);
    };
    let n = a.cols as i64;
    let out = Tensor::empty([a.problems as i64, n, n], (Kind::Double, Device::Cpu));
    gram_into(&out, Accum::Replace, &a);
    if x.dim() == 2 {
        out.squeeze_dim(0)
    } else {
        out
    }
}

/// `out += x' x` for a stack, `out` of the shape [`gram`] returns; in place on the CPU
/// (see [`add_products`]), exactly symmetric as `out` was.
pub(crate) fn add_gram(out: &mut Tensor, x: &Tensor) {
    match Operand::of(x) {
        Some(a) if writable(out, [a.problems, a.cols, a.cols]) => gram_into(out, Accum::Add, &a),
        _ => *out += gram(x),
    }
}

/// `out = a' a` or `out += a' a` for each problem: the lower triangle, then mirrored.
fn gram_into(out: &Tensor, accum: Accum, a: &Operand) {
    let n = a.cols;
    let dst = out.data_ptr() as usize;
    each_problem(a.problems, |q, par| {
        let p = (dst as *mut f64).wrapping_add(q * n * n);
        // SAFETY: as in `multiply`: problem q's block of `out`, this call's only.
        let d = unsafe { MatMut::from_raw_parts_mut(p, n, n, n as isize, 1) };
        let xq = a.problem(q);
        triangular::matmul(
            d,
            BlockStructure::TriangularLower,
            accum,
            xq.transpose(),
            BlockStructure::Rectangular,
            xq,
            BlockStructure::Rectangular,
            1.0,
            par,
        );
        // SAFETY: the same block, now read and written through one slice.
        let block = unsafe { std::slice::from_raw_parts_mut(p, n * n) };
        for i in 0..n {
            for j in i + 1..n {
                block[i * n + j] = block[j * n + i];
            }
        }
    });
}

/// Runs `f(problem, parallelism)` for every problem: one problem per rayon task when
/// there are enough of them to keep every thread busy, else one after the other, each
/// with all threads.
fn each_problem(problems: usize, f: impl Fn(usize, Par) + Sync) {
    let threads = rayon::current_num_threads();
    if problems >= threads && problems > 1 {
        (0..problems).into_par_iter().for_each(|q| f(q, Par::Seq));
    } else {
        let par = if threads > 1 { Par::rayon(threads) } else { Par::Seq };
        (0..problems).for_each(|q| f(q, par));
    }
}

/// A CPU float64 tensor of 2 or 3 dimensions, as faer sees it: a base address and
/// element strides (transposed and narrowed views included, nothing copied).
struct Operand {
    ptr: usize,
    problems: usize,
    rows: usize,
    cols: usize,
    strides: [isize; 3],
}

impl Operand {
    fn of(t: &Tensor) -> Option<Operand> {
        if t.device() != Device::Cpu || t.kind() != Kind::Double || !(2..=3).contains(&t.dim()) || t.numel() == 0 {
            return None;
        }
        let (size, stride) = (t.size(), t.stride());
        let (size, stride) = if t.dim() == 2 {
            ([1, size[0], size[1]], [0, stride[0], stride[1]])
        } else {
            ([size[0], size[1], size[2]], [stride[0], stride[1], stride[2]])
        };
        Some(Operand {
            ptr: t.data_ptr() as usize,
            problems: size[0] as usize,
            rows: size[1] as usize,
            cols: size[2] as usize,
            strides: stride.map(|s| s as isize),
        })
    }

    fn problem(&self, q: usize) -> MatRef<'_, f64> {
        let base = (self.ptr as *const f64).wrapping_offset(q as isize * self.strides[0]);
        // SAFETY: the tensor's own sizes and strides, within its storage, which the
        // caller's borrow of the tensor keeps alive for `self`'s lifetime.
        unsafe { MatRef::from_raw_parts(base, self.rows, self.cols, self.strides[1], self.strides[2]) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
