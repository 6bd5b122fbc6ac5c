//! The streaming accumulator every method starts from.
//!
//! CCA, SVCCA, PWCCA and linear CKA need only the column means and the centred scatter
//! matrices `A'A`, `B'B`, `A'B` of the two layers. Those add up over row blocks, so layers
//! are fed in chunks of datapoints and memory stays `O((p + q)^2)` however many
//! datapoints there are. Fed one chunk, it is the in-memory computation: one code path.
//!
//! It holds a *stack* of such problems: a dense layer is a stack of one; the DFT method
//! for conv layers stacks one complex problem per spatial frequency, and every step below
//! runs on the whole stack at once (batched products and decompositions) instead of
//! looping over frequencies. For complex data `'` is the conjugate transpose.
//!
//! Complex data arrives as real blocks of `[real parts | imaginary parts]` and is summed
//! with real products ([`super::products`]; libtorch's real batched products ran faster
//! than its complex ones on the same numbers, seen while developing); [`Moments::finish`]
//! assembles the complex matrices: for `X = R + iI`,
//! `X'Y = (R'R_y + I'I_y) + i (R'I_y - I'R_y)`.
//!
//! Centring: every block is shifted by the *first datapoint* before its products are
//! added, and the remaining offset is removed at the end (`C = S - n d d'`, `d` the mean
//! of the shifted data). A shift inside the data's range keeps `d` on the scale of the
//! spread, so the subtraction loses nothing (the shifted-data algorithm); a plain
//! `sum x x' - n m m'` would cancel catastrophically when means dwarf the spread.
//!
//! The same shift finds constant neurons for free: a neuron is constant exactly when
//! every value equals its first one, i.e. when its shifted sum of squares (a diagonal
//! entry of `S`) is exactly zero. A neuron constant in every problem of the stack is
//! dropped; one constant in some problems only is left to the rank cut of [`super::cca`].

use super::products::{add_column_sums, add_gram, add_products};
use crate::error::{Side, SimilarityError};
use crate::host;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use tch::{Device, Kind, Tensor};

/// Running sums over the datapoints of two layers seen so far.
pub struct Moments {
    device: Device,
    /// Columns are `[real | imaginary]` halves of complex neurons.
    complex: bool,
    rows: i64,
    sides: [SideSums; 2],
    gram_ab: Tensor,
    /// [`Moments::rematched`]: the sides' sums are complete for this many datapoints, and
    /// blocks add only to the cross products.
    sides_done: Option<i64>,
}

/// One layer's running sums: what [`Moments`] keeps per side, and what a
/// [`super::summary::Summary`] starts from.
pub(super) struct SideSums {
    cols: i64,
    shift: Option<Tensor>,
    /// The first datapoint was all zeros (the caller centred already): skip the shift.
    zero_shift: bool,
    sum: Tensor,
    gram: Tensor,
    /// What the block's products run in (float64, or float32: [`super::Precision`]);
    /// the running sums are float64 either way.
    kind: Kind,
}

/// One layer's centred statistics, restricted to its non-constant neurons.
pub(super) struct SideStats {
    /// problems x 1 x kept (complex for complex data): the column means.
    pub mean: Tensor,
    /// problems x kept x kept (complex for complex data): the centred scatter matrix.
    pub scatter: Tensor,
    /// Indices of the non-constant neurons (of the complex neurons for complex data).
    pub alive: Tensor,
    /// problems x 1 x cols, real: the mean of the shifted data, `[re | im]` for complex.
    pub shifted_mean: Tensor,
    /// Neurons before constant ones were dropped, and how many were constant.
    pub neurons: i64,
    pub constant: i64,
}

impl SideSums {
    pub(super) fn new(problems: i64, cols: i64, device: Device) -> Self {
        let opts = (Kind::Double, device);
        SideSums {
            cols,
            shift: None,
            zero_shift: false,
            sum: Tensor::zeros([problems, 1, cols], opts),
            gram: Tensor::zeros([problems, cols, cols], opts),
            kind: Kind::Double,
        }
    }

    /// The same sums, each block's products computed in `kind` (see [`super::Precision`]).
    pub(super) fn in_kind(self, kind: Kind) -> Self {
        SideSums { kind, ..self }
    }

    /// Adds one block (problems x rows x cols) and returns it shifted, in the sums'
    /// kind (float64 unless [`SideSums::in_kind`]). The conversion happens inside the
    /// subtraction: one pass, no extra copy.
    pub(super) fn add(&mut self, block: &Tensor) -> Tensor {
        let shifted = self.shifted(block);
        add_column_sums(&mut self.sum, &shifted);
        add_gram(&mut self.gram, &shifted);
        shifted
    }

    /// A block shifted as [`SideSums::add`] shifts it, added to nothing. The first block
    /// ever seen sets the shift.
    fn shifted(&mut self, block: &Tensor) -> Tensor {
        if self.shift.is_none() {
            // A copy, not a view: a view would keep the whole first block alive (and,
            // were the block's memory reused, change with it).
            let first = block.narrow(1, 0, 1).to_kind(Kind::Double).copy();
            self.zero_shift = bool::try_from(first.eq(0.0).all()).unwrap_or(false);
            self.shift = Some(first);
        }
        let shift = self.shift.as_ref().expect("set above");
        match (self.kind, self.zero_shift) {
            (kind, true) => block.to_kind(kind),
            (Kind::Double, false) => shifted(block, shift),
            (kind, false) => block.to_kind(kind) - shift.to_kind(kind),
        }
    }

    /// The same sums, their tensors shared (not copied): for reading only.
    fn shallow_clone(&self) -> SideSums {
        SideSums {
            cols: self.cols,
            shift: self.shift.as_ref().map(Tensor::shallow_clone),
            zero_shift: self.zero_shift,
            sum: self.sum.shallow_clone(),
            gram: self.gram.shallow_clone(),
            kind: self.kind,
        }
    }

    /// The centred statistics of the `n` datapoints added; an error when every neuron
    /// is constant.
    pub(super) fn finish(&self, n: i64, complex: bool, side: Side) -> Result<SideStats, SimilarityError> {
        let shift = self.shift.as_ref().expect("n >= 2 means a block was added");
        let d = &self.sum / n as f64;
        let scatter = as_complex(&(&self.gram - d.transpose(1, 2).matmul(&d) * n as f64), complex);
        let mean = as_complex_row(&(shift + &d), complex);
        // Constant in every problem: a zero shifted sum of squares everywhere.
        let energy = as_complex(&self.gram, complex).diagonal(0, 1, 2).abs().sum_dim_intlist(0, false, Kind::Double);
        let alive = energy.gt(0.0).nonzero().squeeze_dim(1);
        let (cols, kept) = (energy.size()[0], alive.size()[0]);
        if kept == 0 {
            return Err(SimilarityError::layer(side, format!("all {cols} neurons are constant over the datapoints")));
        }
        Ok(SideStats {
            mean: mean.index_select(2, &alive),
            scatter: scatter.index_select(1, &alive).index_select(2, &alive),
            alive,
            shifted_mean: d,
            neurons: cols,
            constant: cols - kept,
        })
    }

    /// Whether every sum so far is finite: a NaN or Inf anywhere in the data makes its
    /// column's sum NaN or Inf, so this checks the data for the price of a few numbers.
    pub(super) fn is_finite(&self) -> bool {
        bool::try_from(self.sum.isfinite().all()).unwrap_or(false)
    }
}

/// Means and centred scatter matrices (sums, not divided by the count) of two layers,
/// restricted to their non-constant neurons: float64 (or complex128), on the
/// accumulator's device, each with a leading problem axis (length 1 for dense layers).
pub struct Covariance {
    pub rows: i64,
    /// problems x 1 x p and problems x 1 x q.
    pub mean_a: Tensor,
    pub mean_b: Tensor,
    /// problems x p x p, problems x q x q, problems x p x q.
    pub caa: Tensor,
    pub cbb: Tensor,
    pub cab: Tensor,
    /// Neuron counts before constant neurons were dropped.
    pub neurons: [i64; 2],
    /// How many neurons of each side were constant over every datapoint (dropped).
    pub constant: [i64; 2],
}

impl Covariance {
    pub fn kept_neurons(&self, side: Side) -> i64 {
        match side {
            Side::A => self.caa.size()[1],
            Side::B => self.cbb.size()[1],
        }
    }
}

impl Moments {
    /// An empty accumulator for dense layers of `cols_a` and `cols_b` neurons, summing in
    /// float64 on `device`.
    pub fn new(cols_a: i64, cols_b: i64, device: Device) -> Self {
        Self::stacked(1, cols_a, cols_b, false, device)
    }

    /// An empty accumulator for a stack of `problems` comparisons of `cols_a` and `cols_b`
    /// neurons; with `complex`, of complex neurons fed as `[real | imaginary]` blocks of
    /// twice the width.
    pub fn stacked(problems: i64, cols_a: i64, cols_b: i64, complex: bool, device: Device) -> Self {
        let width = if complex { 2 } else { 1 };
        let (cols_a, cols_b) = (cols_a * width, cols_b * width);
        Moments {
            device,
            complex,
            rows: 0,
            sides: [SideSums::new(problems, cols_a, device), SideSums::new(problems, cols_b, device)],
            gram_ab: Tensor::zeros([problems, cols_a, cols_b], (Kind::Double, device)),
            sides_done: None,
        }
    }

    /// An accumulator for the same datapoints of both layers fed again in another
    /// pairing (the rows of one side permuted: a permutation baseline). A side's sums do
    /// not depend on the pairing, so they are this accumulator's, shared, shift
    /// included (any fixed shift centres exactly); blocks then add only the cross
    /// products, `p q` per datapoint rather than `(p + q)^2`. It must be fed exactly the
    /// datapoints this one was, each side's in any order ([`Moments::finish`] checks the
    /// count).
    pub fn rematched(&self) -> Moments {
        let problems = self.gram_ab.size()[0];
        let [a, b] = [&self.sides[0], &self.sides[1]];
        Moments {
            device: self.device,
            complex: self.complex,
            rows: 0,
            sides: [a.shallow_clone(), b.shallow_clone()],
            gram_ab: Tensor::zeros([problems, a.cols, b.cols], (Kind::Double, self.device)),
            sides_done: Some(self.sides_done.unwrap_or(self.rows)),
        }
    }

    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// Bytes per datapoint of the larger side's float64 working copy of a block (its
    /// shifted data: every problem, every column).
    pub fn row_bytes(&self) -> u64 {
        let widest = self.sides.iter().map(|s| s.cols).max().unwrap_or(0);
        (self.gram_ab.size()[0] * widest * 8) as u64
    }

    /// Adds the next block of datapoints: `a` is rows x p and `b` rows x q for a dense
    /// accumulator, or problems x rows x p and problems x rows x q for a stack; the same
    /// datapoints in the same order. Any float kind on any device; converted here.
    pub fn update(&mut self, a: &Tensor, b: &Tensor) -> Result<(), SimilarityError> {
        let problems = self.gram_ab.size()[0];
        let mut blocks = Vec::with_capacity(2);
        for (side, t) in [(Side::A, a), (Side::B, b)] {
            let t = if t.dim() == 2 { t.unsqueeze(0) } else { t.shallow_clone() };
            let cols = self.sides[side as usize].cols;
            let s = t.size();
            if t.dim() != 3 || s[0] != problems || s[2] != cols {
                return Err(SimilarityError::layer(side, format!("expected blocks of {problems} x rows x {cols}, got {s:?}")));
            }
            blocks.push(t.to_device(self.device));
        }
        let (ra, rb) = (blocks[0].size()[1], blocks[1].size()[1]);
        if ra != rb {
            return Err(SimilarityError::Both(format!("different numbers of datapoints in a block: {ra} vs {rb}")));
        }
        if self.sides_done.is_some() {
            // The sides' sums are complete (and were finite); the shifts are theirs.
            let (sa, sb) = (self.sides[0].shifted(&blocks[0]), self.sides[1].shifted(&blocks[1]));
            add_products(&mut self.gram_ab, &sa.transpose(1, 2), &sb);
            self.rows += ra;
            return Ok(());
        }
        let sa = self.sides[0].add(&blocks[0]);
        let sb = self.sides[1].add(&blocks[1]);
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            if !self.sides[i].is_finite() {
                // Only now look for the row; the sums are unusable from here on.
                return Err(SimilarityError::layer(side, first_non_finite(&blocks[i], self.rows)));
            }
        }
        add_products(&mut self.gram_ab, &sa.transpose(1, 2), &sb);
        self.rows += ra;
        Ok(())
    }

    /// The centred statistics, with constant neurons dropped. Errors when there are
    /// fewer than two datapoints or a layer has no non-constant neuron.
    pub fn finish(self) -> Result<Covariance, SimilarityError> {
        let n = self.rows;
        if let Some(done) = self.sides_done.filter(|&done| done != n) {
            return Err(SimilarityError::Both(format!("a rematched pass fed {n} datapoints, the sums hold {done}")));
        }
        if n < 2 {
            return Err(SimilarityError::Both(format!("need at least 2 datapoints, got {n}")));
        }
        let complex = self.complex;
        let a = self.sides[0].finish(n, complex, Side::A)?;
        let b = self.sides[1].finish(n, complex, Side::B)?;
        let cab = as_complex(&(&self.gram_ab - a.shifted_mean.transpose(1, 2).matmul(&b.shifted_mean) * n as f64), complex)
            .index_select(1, &a.alive)
            .index_select(2, &b.alive);
        Ok(Covariance {
            rows: n,
            mean_a: a.mean,
            mean_b: b.mean,
            caa: a.scatter,
            cbb: b.scatter,
            cab,
            neurons: [a.neurons, b.neurons],
            constant: [a.constant, b.constant],
        })
    }
}

/// `block - shift` in float64 (block: problems x rows x cols, shift: problems x 1 x cols):
/// for a contiguous float block on the CPU by rayon's threads, rows in parallel,
/// converted as they are read (no parallel libtorch step between rayon's); otherwise by
/// libtorch.
pub(super) fn shifted(block: &Tensor, shift: &Tensor) -> Tensor {
    let cpu = block.device() == Device::Cpu && shift.device() == Device::Cpu && shift.kind() == Kind::Double;
    let one_row_each = block.dim() == 3 && shift.size() == [block.size()[0], 1, block.size()[2]];
    if !(cpu && matches!(block.kind(), Kind::Float | Kind::Double) && one_row_each && block.is_contiguous()) {
        return block - shift;
    }
    let shift = shift.contiguous();
    let (rows, cols) = (block.size()[1] as usize, block.size()[2] as usize);
    if block.numel() == 0 {
        return Tensor::empty(block.size(), (Kind::Double, Device::Cpu));
    }
    let shift = host::view::slice::<f64>(&shift).expect("a contiguous float64 shift");
    fn fill<T: Copy + Into<f64> + Sync>(values: &[T], shift: &[f64], target: &mut [MaybeUninit<f64>], rows: usize, cols: usize) {
        target.par_chunks_mut(cols).zip(values.par_chunks(cols)).enumerate().for_each(|(r, (out, row))| {
            let s = &shift[(r / rows) * cols..][..cols];
            for ((o, &x), &s) in out.iter_mut().zip(row).zip(s) {
                o.write(x.into() - s);
            }
        });
    }
    host::view::write_new::<f64>(&block.size(), |target| match block.kind() {
        Kind::Float => fill(host::view::slice::<f32>(block).expect("checked above"), shift, target, rows, cols),
        _ => fill(host::view::slice::<f64>(block).expect("checked above"), shift, target, rows, cols),
    })
}

/// A stack of real `[[R'R_y, R'I_y], [I'R_y, I'I_y]]` products as the complex `X'Y`
/// (unchanged when the data is real).
pub(super) fn as_complex(s: &Tensor, complex: bool) -> Tensor {
    if !complex {
        return s.shallow_clone();
    }
    let (p, q) = (s.size()[1] / 2, s.size()[2] / 2);
    let block = |r: i64, c: i64| s.narrow(1, r * p, p).narrow(2, c * q, q);
    Tensor::complex(&(block(0, 0) + block(1, 1)), &(block(0, 1) - block(1, 0)))
}

/// A stack of `[real | imaginary]` rows as complex rows (unchanged when real).
fn as_complex_row(m: &Tensor, complex: bool) -> Tensor {
    if !complex {
        return m.shallow_clone();
    }
    let c = m.size()[2] / 2;
    Tensor::complex(&m.narrow(2, 0, c), &m.narrow(2, c, c))
}

/// The message naming the first datapoint of a block that holds NaN or Inf.
pub(super) fn first_non_finite(block: &Tensor, first_row: i64) -> String {
    // block: problems x rows x cols.
    let bad_rows = block.isfinite().logical_not().any_dim(2, false).any_dim(0, false).nonzero();
    if bad_rows.size()[0] == 0 {
        return "values too large: their sum overflows float64".into();
    }
    let row = bad_rows.int64_value(&[0, 0]) + first_row;
    format!("datapoint {row} (0-based row) holds NaN or Inf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shifted_copy_is_libtorchs_subtraction_bit_for_bit() {
        tch::manual_seed(3);
        let shift = Tensor::randn([3, 1, 17], (Kind::Double, Device::Cpu));
        let base = Tensor::randn([3, 40, 17], (Kind::Double, Device::Cpu)) * 100.0;
        // float32 and float64 blocks (rayon), a transposed view and a float16 block (libtorch).
        let blocks =
            [base.to_kind(Kind::Float), base.shallow_clone(), base.transpose(1, 2).contiguous().transpose(1, 2), base.to_kind(Kind::Half)];
        for block in blocks {
            let out = shifted(&block, &shift);
            assert_eq!(out.kind(), Kind::Double);
            assert!(bool::try_from(out.eq_tensor(&(&block - &shift)).all()).unwrap(), "{:?} {:?}", block.kind(), block.stride());
        }
        // One shift row for every problem: broadcast, by libtorch.
        let block = base.to_kind(Kind::Float);
        let one = shift.narrow(0, 0, 1);
        assert!(bool::try_from(shifted(&block, &one).eq_tensor(&(&block - &one)).all()).unwrap());
    }

    /// A rematched accumulator fed A's rows permuted gives the statistics of a fresh
    /// one fed the same (in other blocks, so other shifts), and counts its datapoints.
    #[test]
    fn a_rematched_pass_is_a_fresh_pass_over_the_new_pairing() {
        tch::manual_seed(7);
        let opts = (Kind::Double, Device::Cpu);
        let (a, b) = (Tensor::randn([90, 6], opts) * 3.0 + 5.0, Tensor::randn([90, 4], opts) - 2.0);
        let b = b + a.narrow(1, 0, 4) * 0.5;
        let mut first = Moments::new(6, 4, Device::Cpu);
        for start in [0, 40] {
            let count = if start == 0 { 40 } else { 50 };
            first.update(&a.narrow(0, start, count), &b.narrow(0, start, count)).unwrap();
        }
        let perm = Tensor::randperm(90, (Kind::Int64, Device::Cpu));
        let shuffled = a.index_select(0, &perm);
        let mut again = first.rematched();
        for start in [0, 30, 60] {
            again.update(&shuffled.narrow(0, start, 30), &b.narrow(0, start, 30)).unwrap();
        }
        let mut fresh = Moments::new(6, 4, Device::Cpu);
        fresh.update(&shuffled, &b).unwrap();
        let (got, want) = (again.finish().unwrap(), fresh.finish().unwrap());
        for (x, y) in [(&got.caa, &want.caa), (&got.cbb, &want.cbb), (&got.cab, &want.cab), (&got.mean_a, &want.mean_a)] {
            let gap = (x - y).abs().max().double_value(&[]);
            assert!(gap < 1e-9 * y.abs().max().double_value(&[]), "{x} vs {y}");
        }
        // The pairing did change: the cross products differ from the original ones.
        let original = first.rematched();
        let mut short = first.rematched();
        short.update(&a.narrow(0, 0, 30), &b.narrow(0, 0, 30)).unwrap();
        let Err(e) = short.finish() else { panic!("a short rematched pass accepted") };
        assert!(e.to_string().contains("fed 30 datapoints, the sums hold 90"), "{e}");
        let mut same = original;
        same.update(&a, &b).unwrap();
        let same = same.finish().unwrap();
        assert!((&same.cab - &got.cab).abs().max().double_value(&[]) > 1.0);
        assert!(bool::try_from(same.caa.eq_tensor(&got.caa).all()).unwrap());
    }

    /// The accumulator keeps nothing of a block it was given: overwriting a float64
    /// block's memory once it has been added (as a reader reusing its buffer would)
    /// leaves the result as it was. The centring shift, taken from the first block,
    /// was once a view of it.
    #[test]
    fn a_block_may_be_overwritten_once_added() {
        tch::manual_seed(5);
        let opts = (Kind::Double, Device::Cpu);
        let (a, b) = (Tensor::randn([60, 7], opts) + 3.0, Tensor::randn([60, 5], opts) - 2.0);
        let run = |overwrite: bool| {
            let mut m = Moments::new(7, 5, Device::Cpu);
            for start in [0, 30] {
                let (mut ba, mut bb) = (a.narrow(0, start, 30).copy(), b.narrow(0, start, 30).copy());
                m.update(&ba, &bb).unwrap();
                if overwrite {
                    let _ = ba.fill_(1e6);
                    let _ = bb.fill_(-1e6);
                }
            }
            m.finish().unwrap()
        };
        let (kept, overwritten) = (run(false), run(true));
        for (x, y) in [(&kept.caa, &overwritten.caa), (&kept.cab, &overwritten.cab), (&kept.mean_a, &overwritten.mean_a)] {
            assert!(bool::try_from(x.eq_tensor(y).all()).unwrap(), "{x} vs {y}");
        }
    }
}
