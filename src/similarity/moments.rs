//! The streaming accumulator every method starts from.
//!
//! CCA, SVCCA, PWCCA and linear CKA need only the column means and the centred scatter
//! matrices `A'A`, `B'B`, `A'B` of the two layers. Those add up over row blocks, so layers
//! are fed in chunks of datapoints and memory stays `O((p + q)^2)` however many
//! datapoints there are. Fed one chunk, it is the in-memory computation: one code path.
//!
//! Centring: every block is shifted by the *first datapoint* before its products are
//! added, and the remaining offset is removed at the end (`C = S - n d d'`, `d` the mean
//! of the shifted data). A shift inside the data's range keeps `d` on the scale of the
//! spread, so the subtraction loses nothing (the shifted-data algorithm); a plain
//! `sum x x' - n m m'` would cancel catastrophically when means dwarf the spread.
//!
//! The same shift finds constant neurons for free: a neuron is constant exactly when
//! every value equals its first one, i.e. when its shifted sum of squares (a diagonal
//! entry of `S`) is exactly zero.

use crate::error::{Side, SimilarityError};
use tch::{Device, Kind, Tensor};

/// Running sums over the datapoints of two layers seen so far.
pub struct Moments {
    device: Device,
    rows: i64,
    sides: [SideSums; 2],
    gram_ab: Tensor,
}

struct SideSums {
    cols: i64,
    shift: Option<Tensor>,
    sum: Tensor,
    gram: Tensor,
}

impl SideSums {
    fn new(cols: i64, kind: Kind, device: Device) -> Self {
        let opts = (kind, device);
        SideSums {
            cols,
            shift: None,
            sum: Tensor::zeros([cols], opts),
            gram: Tensor::zeros([cols, cols], opts),
        }
    }

    /// Adds one block (rows x cols, any float kind) and returns it shifted, in float64.
    /// The float64 conversion happens inside the subtraction: one pass, no extra copy.
    fn add(&mut self, block: &Tensor) -> Tensor {
        let shift = self
            .shift
            .get_or_insert_with(|| block.get(0).to_kind(Kind::Double));
        let shifted = block - &*shift;
        self.sum += shifted.sum_dim_intlist(0, false, None);
        self.gram += shifted.tr().mm(&shifted);
        shifted
    }

    /// Whether every sum so far is finite: a NaN or Inf anywhere in the data makes its
    /// column's sum NaN or Inf, so this checks the data for the price of a few numbers.
    fn is_finite(&self) -> bool {
        bool::try_from(self.sum.isfinite().all()).unwrap_or(false)
    }
}

/// Means and centred scatter matrices (sums, not divided by the count) of two layers,
/// restricted to their non-constant neurons (float64, on the accumulator's device).
pub struct Covariance {
    pub rows: i64,
    pub mean_a: Tensor,
    pub mean_b: Tensor,
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
            Side::A => self.caa.size()[0],
            Side::B => self.cbb.size()[0],
        }
    }
}

impl Moments {
    /// An empty accumulator for layers of `cols_a` and `cols_b` neurons, summing in
    /// float64 on `device`.
    pub fn new(cols_a: i64, cols_b: i64, device: Device) -> Self {
        let kind = Kind::Double;
        Moments {
            device,
            rows: 0,
            sides: [SideSums::new(cols_a, kind, device), SideSums::new(cols_b, kind, device)],
            gram_ab: Tensor::zeros([cols_a, cols_b], (kind, device)),
        }
    }

    pub fn rows(&self) -> i64 {
        self.rows
    }

    /// Adds the next block of datapoints: `a` is rows x p, `b` rows x q, the same
    /// datapoints in the same order. Any float kind on any device; converted here.
    pub fn update(&mut self, a: &Tensor, b: &Tensor) -> Result<(), SimilarityError> {
        let (ra, rb) = (a.size()[0], b.size()[0]);
        if ra != rb {
            return Err(SimilarityError::Both(format!(
                "different numbers of datapoints in a block: {ra} vs {rb}"
            )));
        }
        for (side, t) in [(Side::A, a), (Side::B, b)] {
            let sums = &self.sides[side as usize];
            if t.dim() != 2 || t.size()[1] != sums.cols {
                return Err(SimilarityError::layer(
                    side,
                    format!("expected blocks of shape (rows, {}), got {:?}", sums.cols, t.size()),
                ));
            }
        }
        let a = a.to_device(self.device);
        let b = b.to_device(self.device);
        let sa = self.sides[0].add(&a);
        let sb = self.sides[1].add(&b);
        for (i, (side, t)) in [(Side::A, &a), (Side::B, &b)].into_iter().enumerate() {
            if !self.sides[i].is_finite() {
                // Only now look for the row, and leave the sums unusable.
                return Err(SimilarityError::layer(side, first_non_finite(t, self.rows)));
            }
        }
        self.gram_ab += sa.tr().mm(&sb);
        self.rows += ra;
        Ok(())
    }

    /// The centred statistics, with constant neurons dropped. Errors when there are
    /// fewer than two datapoints or a layer has no non-constant neuron.
    pub fn finish(self) -> Result<Covariance, SimilarityError> {
        let n = self.rows;
        if n < 2 {
            return Err(SimilarityError::Both(format!(
                "need at least 2 datapoints, got {n}"
            )));
        }
        let mut means = Vec::new();
        let mut scatters = Vec::new();
        let mut live = Vec::new();
        let mut constant = [0i64; 2];
        let mut neurons = [0i64; 2];
        for (i, side) in [Side::A, Side::B].into_iter().enumerate() {
            let s = &self.sides[i];
            let shift = s.shift.as_ref().expect("n >= 2 means a block was added");
            let d = &s.sum / n as f64;
            let scatter = &s.gram - d.outer(&d) * n as f64;
            // Exactly constant neurons (dead ReLUs, padding): see the module notes.
            let alive = s.gram.diagonal(0, 0, 1).gt(0.0).nonzero().squeeze_dim(1);
            let kept = alive.size()[0];
            neurons[i] = s.cols;
            constant[i] = s.cols - kept;
            if kept == 0 {
                return Err(SimilarityError::layer(
                    side,
                    format!("all {} neurons are constant over the datapoints", s.cols),
                ));
            }
            means.push((shift + &d).index_select(0, &alive));
            scatters.push(scatter.index_select(0, &alive).index_select(1, &alive));
            // Cross term correction below needs the full-width offsets.
            live.push((alive, d));
        }
        let (alive_a, da) = &live[0];
        let (alive_b, db) = &live[1];
        let cab = (&self.gram_ab - da.outer(db) * n as f64)
            .index_select(0, alive_a)
            .index_select(1, alive_b);
        let mean_b = means.pop().unwrap();
        let mean_a = means.pop().unwrap();
        let cbb = scatters.pop().unwrap();
        let caa = scatters.pop().unwrap();
        Ok(Covariance {
            rows: n,
            mean_a,
            mean_b,
            caa,
            cbb,
            cab,
            neurons,
            constant,
        })
    }
}

/// The message naming the first datapoint of a block that holds NaN or Inf.
fn first_non_finite(block: &Tensor, first_row: i64) -> String {
    let bad_rows = block.isfinite().logical_not().any_dim(1, false).nonzero();
    if bad_rows.size()[0] == 0 {
        // Finite values whose sum overflowed float64.
        return "values too large: their sum overflows float64".into();
    }
    let row = bad_rows.int64_value(&[0, 0]) + first_row;
    format!("datapoint {row} (0-based row) holds NaN or Inf")
}
