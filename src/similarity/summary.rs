//! One layer's side of a CCA or SVCCA comparison, computed once and reused for every
//! comparison the layer takes part in.
//!
//! Of each layer a comparison needs its centring, principal directions, cut and the
//! whitening of what is kept, none of which depends on the other layer. A [`Summary`]
//! holds them beside the layer's data (for a conv layer, its spectrum or pooled form): the
//! canonical correlations of a pair are the singular values of `Z_a' Z_b`, `Z = X_c W`
//! the datapoints on the kept whitened directions, computed as `W_a' (X_a' X_b - n m_a'
//! m_b) W_b`. A pair then costs one cross product of the two layers and a small SVD;
//! no decomposition is repeated.
//!
//! [`Layers`] keeps the summaries of a set of layers, each computed the first time a
//! comparison asks for it in a given form (dense, a DFT grid, ...): the learning-dynamics
//! matrix compares each layer of a checkpoint with every final layer, so each layer is
//! summarised once per form instead of once per pair; [`summarise_rows`] makes those a
//! checkpoint's rows will ask for all at once, the layers side by side on rayon's
//! threads. [`similarities`] answers a row of that matrix: the cross products of one
//! checkpoint layer with the final layers it meets in the same form are one product,
//! `X_a' [Z_b1 Z_b2 ...]`, against the final layers' `Z`s formed once and kept side by
//! side. A `Z` is centred and as narrow as the kept directions, so the product is
//! narrower than one against the data, and needs neither `b`'s centring term nor its
//! whitening. (The checkpoint layer's own
//! `Z_a` would narrow it further, but forming it is a pass over that layer's data for
//! one row: slower than the columns it saves, measured on the quickstart.)
//!
//! Stacks of problems (the DFT's frequencies) work as in [`super::moments`], whose sums
//! a summary starts from: complex data arrives as `[real | imaginary]` columns, each
//! problem keeps its own count of directions and the stack is padded with zero columns.
//!
//! A wide layer (a real one with more neurons than datapoints: a conv layer flattened to
//! C*H*W neurons, say) takes the Gram route instead of the scatter matrix: with
//! `X_c = U S V'`, `Z = X_c V_k S_k^-1 = U_k`, the top eigenvectors of the datapoints x
//! datapoints `X_c X_c'`, whose eigenvalues are the same variances `S^2`. The cut and the
//! rank test see the same numbers; no neurons x neurons matrix is formed.

use super::cca::{self, Principal};
use super::conv::{applicable, ConvComparison, Form, LayerShape};
use super::moments::{self, as_complex, first_non_finite, SideSums};
use super::products::{column_sums, gram, products};
use super::{size_warnings, ConvOptions, Keep, Method, Options, Precision, Similarity};
use crate::error::{Side, SimilarityError};
use crate::host;
use rayon::prelude::*;
use std::collections::HashMap;
use tch::{Device, Kind, Tensor};

/// A layer's data and its kept directions, whitened: `Z = (x - 1 mean) whitening`.
///
/// Made without the other layer, it gives canonical correlations only; a layer's
/// directions ordered against a reference, to project onto or rank units by, are
/// [`super::Fitted`] (compression, the toy regression).
pub(crate) struct Summary {
    /// problems x datapoints x columns (`[real | imaginary]` for complex data) in the
    /// precision's kind (float64, or float32 for [`Precision::Float32`]): the layer
    /// shifted by its first datapoint, or (the Gram route, or once compacted) `Z` itself.
    data: Tensor,
    /// problems x 1 x columns: the mean of `data`, where it is not centred already.
    mean: Option<Tensor>,
    /// problems x columns x K (2K for complex data, in the real form of the complex
    /// product): the kept directions, whitened; none where `data` is `Z`. Problem `p`'s
    /// directions past `kept[p]` are zero.
    whitening: Option<Tensor>,
    /// Directions kept in each problem.
    kept: Vec<usize>,
    complex: bool,
    /// Neurons (complex ones for complex data), and how many were constant (dropped).
    neurons: i64,
    constant: i64,
}

impl Summary {
    /// Summarises `x`: datapoints x neurons, or problems x datapoints x columns (with
    /// `complex`, each row `[real parts | imaginary parts]`), any float kind. `keep`
    /// cuts each problem, or with `joint` all problems together (see
    /// [`super::conv::DftCut`]). Errors name `side`.
    ///
    /// The statistics are [`super::moments`]'s (the same shift, the same test for
    /// constant neurons), and complex data stays in real `[re | im]` form throughout:
    /// the products are real, which libtorch runs faster than complex ones. The data is
    /// held, and multiplied, in `precision`'s kind.
    pub(crate) fn of(
        x: &Tensor,
        complex: bool,
        keep: Keep,
        joint: Option<&[usize]>,
        side: Side,
        precision: Precision,
    ) -> Result<Summary, SimilarityError> {
        let x = if x.dim() == 2 { x.unsqueeze(0) } else { x.shallow_clone() };
        let [problems, rows, cols] = x.size()[..] else { unreachable!("a stack is 3-D") };
        if rows < 2 {
            return Err(SimilarityError::Both(format!("need at least 2 datapoints, got {rows}")));
        }
        if problems == 1 && !complex && cols > rows {
            return Summary::by_gram(&x, keep, side, precision);
        }
        let mut sums = SideSums::new(problems, cols, x.device()).in_kind(precision.kind());
        let shifted = sums.add(&x);
        if !sums.is_finite() {
            return Err(SimilarityError::layer(side, first_non_finite(&x, 0)));
        }
        let stats = sums.finish(rows, complex, side)?;
        let principal = host::single_threaded(x.device(), stats.scatter.size()[1], || Principal::of(&stats.scatter));
        let kept = principal.cut(keep, joint, side, rows)?;
        // The whitened directions over every column of the data (constant neurons weigh
        // nothing), so the shifted data projects without a copy of its live columns.
        let whitening = principal.whitening(&kept);
        let neurons = if complex { cols / 2 } else { cols };
        let width = whitening.size()[2];
        let full =
            Tensor::zeros([problems, neurons, width], (whitening.kind(), whitening.device())).index_copy(1, &stats.alive, &whitening);
        let w = if complex {
            // [re | im] rows times [[Wr, Wi], [-Wi, Wr]] = [re | im] of the complex product.
            let (wr, wi) = (full.real(), full.imag());
            Tensor::cat(&[Tensor::cat(&[&wr, &wi], 2), Tensor::cat(&[&(-&wi), &wr], 2)], 1)
        } else {
            full
        };
        Ok(Summary {
            data: shifted,
            mean: Some(stats.shifted_mean),
            whitening: Some(w),
            kept,
            complex,
            neurons: stats.neurons,
            constant: stats.constant,
        })
    }

    /// The Gram route for one real problem (1 x datapoints x neurons, more neurons than
    /// datapoints): the kept directions are the top eigenvectors of `X_c X_c'`.
    fn by_gram(x: &Tensor, keep: Keep, side: Side, precision: Precision) -> Result<Summary, SimilarityError> {
        let [_, rows, cols] = x.size()[..] else { unreachable!("a stack is 3-D") };
        // The same shift as the scatter route: by the first datapoint, in float64 (or
        // in float32, to multiply in float32).
        let shifted = match precision.kind() {
            Kind::Double => moments::shifted(x, &x.narrow(1, 0, 1).to_kind(Kind::Double)),
            kind => x.to_kind(kind) - x.narrow(1, 0, 1).to_kind(kind),
        };
        let sums = column_sums(&shifted);
        if !bool::try_from(sums.isfinite().all()).unwrap_or(false) {
            return Err(SimilarityError::layer(side, first_non_finite(x, 0)));
        }
        // A neuron is constant when every value equals its first: a zero shifted column.
        let alive = shifted.abs().amax(&[1i64][..], false).gt(0.0).sum(Kind::Int64).int64_value(&[]);
        if alive == 0 {
            return Err(SimilarityError::layer(side, format!("all {cols} neurons are constant over the datapoints")));
        }
        let centred = &shifted - (sums / rows as f64).to_kind(shifted.kind());
        let gram = gram(&centred.transpose(1, 2)).to_kind(Kind::Double);
        // Constant neurons are zero columns here: they add nothing to the Gram matrix,
        // and the rank test counts the live ones as the scatter route does.
        let principal = host::single_threaded(x.device(), rows, || Principal::of_with(&gram, alive as usize));
        let kept = principal.cut(keep, None, side, rows)?;
        // `Z` in the precision's kind, as the scatter route's (see `Summary::whitened`).
        let data = principal.directions.narrow(2, 0, kept[0] as i64).to_kind(precision.kind());
        Ok(Summary { data, mean: None, whitening: None, kept, complex: false, neurons: cols, constant: cols - alive })
    }

    pub(crate) fn datapoints(&self) -> i64 {
        self.data.size()[1]
    }

    /// The same summary, its tensors shared (not copied).
    fn shallow_clone(&self) -> Summary {
        Summary {
            data: self.data.shallow_clone(),
            mean: self.mean.as_ref().map(Tensor::shallow_clone),
            whitening: self.whitening.as_ref().map(Tensor::shallow_clone),
            kept: self.kept.clone(),
            complex: self.complex,
            neurons: self.neurons,
            constant: self.constant,
        }
    }

    /// `Z = (data - 1 mean) whitening`, the datapoints on the kept whitened directions
    /// (`data` itself on the Gram route): centred, so a product with it needs no
    /// centring term, and as narrow as the kept directions. Of the data's kind: in
    /// float32 (only ever multiplied in float32 after) no float64 copy of it is made.
    fn whitened(&self) -> Tensor {
        let Some(w) = &self.whitening else { return self.data.shallow_clone() };
        let kind = self.data.kind();
        // (X - 1 m) W = X W - 1 (m W): no centred copy of the data, which for a conv
        // layer's spectrum is the largest thing an analysis holds.
        let mut z = products(&self.data, &w.to_kind(kind));
        if let Some(m) = &self.mean {
            z -= m.matmul(w).to_kind(kind);
        }
        z
    }

    /// The columns of [`Summary::whitened`].
    fn whitened_width(&self) -> i64 {
        self.whitening.as_ref().unwrap_or(&self.data).size()[2]
    }

    /// The same summary holding only its whitened `Z` (as the Gram route's does): all
    /// that a comparison needs of it on either side, since `Z_a' Z_b` are the canonical
    /// correlations' matrix and a product with `Z` needs no centring term. It is as
    /// narrow as the kept directions, so an analysis keeps the final network's
    /// summaries this way while its checkpoints stream past them.
    fn compact(&self) -> Summary {
        Summary {
            data: self.whitened(),
            mean: None,
            whitening: None,
            kept: self.kept.clone(),
            complex: self.complex,
            neurons: self.neurons,
            constant: self.constant,
        }
    }
}

/// Bytes of a layer's summaries in one form, estimated from shapes before anything is
/// computed ([`summary_bytes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Bytes {
    /// Held while it is made and compacted: the transformed data (a spectrum, a shifted
    /// copy), `Z`, the scatter matrices.
    pub made: i64,
    /// Held while it is made and used as it is (a checkpoint's row): the data and the
    /// scatter matrices, no `Z`.
    pub row: i64,
    /// Held by the compacted summary ([`Layers::compact`]): its `Z`, at most as wide as
    /// the data.
    pub compact: i64,
}

/// What summarising layer `i` of `a` takes in each form its comparisons with layers `js`
/// of `b` need (one entry per form, in order of first use): an upper bound from the
/// shapes (a `Z` counted as wide as its data), so that an analysis can plan its memory
/// before it starts. The data and `Z` in the precision's kind, held in no other (see
/// [`Summary::whitened`], [`super::dft::FrequencyPlan::spectrum`]); the matrices that
/// are decomposed in float64.
pub(crate) fn summary_bytes(a: &Layers, i: usize, b: &Layers, js: &[usize]) -> Vec<Bytes> {
    let x = a.layer(i);
    let n = x.size()[0];
    let channels = if x.dim() == 4 { x.size()[1] } else { 0 };
    let value = a.options.precision.kind().elt_size_in_bytes() as i64;
    // The scatter route: the shifted copy, `Z`, and each problem's scatter matrix with its
    // decomposition; a wide layer goes the Gram route instead (the shifted and centred
    // copies, a datapoints x datapoints Gram matrix and its eigenvectors).
    let scatter = |problems: i64, rows: i64, cols: i64| -> Bytes {
        // The whitening kept beside the data, and the scatter matrices while decomposed.
        let (data, matrices) = (value * problems * rows * cols, 8 * 2 * problems * cols * cols);
        Bytes { made: 2 * data + matrices, row: data + matrices, compact: data }
    };
    let dense = |cols: i64| -> Bytes {
        if cols > n {
            let made = value * 2 * n * cols + 8 * 3 * n * n;
            Bytes { made, row: made, compact: value * n * n }
        } else {
            scatter(1, n, cols)
        }
    };
    form_groups(a, i, b, js)
        .into_iter()
        .map(|(form, _)| match form {
            Form::Dense => dense(x.size()[1]),
            Form::Neurons => dense(x.size()[1..].iter().product()),
            Form::Avgpool => scatter(1, n, channels),
            Form::Flatten { positions, .. } => scatter(1, n * positions, channels),
            Form::Dft { size, cropped } => {
                let larger = (size.0 + cropped.0 as i64, size.1 + cropped.1 as i64);
                let problems = super::dft::FrequencyPlan::new(size, larger).computed.len() as i64;
                // [re | im] columns; the spectrum is written straight into the data.
                scatter(problems, n, 2 * channels)
            }
        })
        .collect()
}

/// The layers `js` of `b` grouped by the form layer `i` of `a` takes in its comparison
/// with each (in order of first use); pairs that cannot be compared are left out.
pub(crate) fn form_groups(a: &Layers, i: usize, b: &Layers, js: &[usize]) -> Vec<(Form, Vec<usize>)> {
    let mut groups: Vec<(Form, Vec<usize>)> = Vec::new();
    for &j in js {
        if let Ok(c) = plan(a, i, b, j) {
            let f = a.form(i, c.as_ref());
            match groups.iter_mut().find(|(g, _)| *g == f) {
                Some((_, members)) => members.push(j),
                None => groups.push((f, vec![j])),
            }
        }
    }
    groups
}

/// The canonical correlations of two summaries of the same datapoints, per problem:
/// (kept_a, kept_b, correlations descending).
pub(crate) fn correlate(a: &Summary, b: &Summary) -> Result<Vec<(usize, usize, Vec<f64>)>, SimilarityError> {
    check_datapoints(a, b)?;
    let device = a.data.device();
    correlate_from(a, b, Taken::Data, products_f64(&a.data.transpose(1, 2), &b.data.to_device(device)))
}

/// `x y` in the narrower kind of the two (float32 where either side is held in float32:
/// [`Precision::Float32`]), returned in float64 for the float64 steps that follow.
fn products_f64(x: &Tensor, y: &Tensor) -> Tensor {
    let kind = if x.kind() == Kind::Float || y.kind() == Kind::Float { Kind::Float } else { Kind::Double };
    products(&x.to_kind(kind), &y.to_kind(kind)).to_kind(Kind::Double)
}

fn check_datapoints(a: &Summary, b: &Summary) -> Result<(), SimilarityError> {
    if a.datapoints() != b.datapoints() {
        return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", a.datapoints(), b.datapoints())));
    }
    Ok(())
}

/// What the `b` side of a cross product was: its summary's data, or its [`Summary::whitened`] `Z`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Taken {
    Data,
    Whitened,
}

/// [`correlate`] given the cross product of `a.data` with `b` as `taken` (problems x
/// columns_a x columns_b: `a.data' b.data`, or `a.data' Z_b`), which [`similarities`]
/// computes for many `b` at once.
fn correlate_from(a: &Summary, b: &Summary, taken: Taken, cross: Tensor) -> Result<Vec<(usize, usize, Vec<f64>)>, SimilarityError> {
    assert!(a.kept.len() == b.kept.len() && a.complex == b.complex, "summaries of the same form");
    // Z_a' Z_b = W_a' (X_a - 1 m_a)' (X_b - 1 m_b) W_b: the centring applied to the small
    // cross product of the data (`X_a' X_b - n m_a' m_b`; a side already centred adds no
    // term), the whitenings after it, `b`'s only where it came as data.
    let device = a.data.device();
    let mut cross = cross;
    if let (Some(ma), Some(mb), Taken::Data) = (&a.mean, &b.mean, taken) {
        cross -= ma.transpose(1, 2).matmul(&mb.to_device(device)) * a.datapoints() as f64;
    }
    if let Some(wa) = &a.whitening {
        cross = products(&wa.transpose(1, 2), &cross);
    }
    if let (Some(wb), Taken::Data) = (&b.whitening, taken) {
        cross = products(&cross, &wb.to_device(device));
    }
    let t = as_complex(&cross, a.complex);
    let n = t.size()[1].max(t.size()[2]);
    let correlations = host::single_threaded(t.device(), n, || cca::singular_values(&t, &a.kept, &b.kept));
    Ok(a.kept.iter().zip(&b.kept).zip(correlations).map(|((&ka, &kb), c)| (ka, kb, c)).collect())
}

/// Two dense layers' summaries ([`compare`]'s), kept for their similarity and for that
/// of other pairings of their datapoints.
pub struct Pair {
    a: Summary,
    b: Summary,
    method: Method,
}

impl Pair {
    /// Summarises both layers (datapoints x neurons, the same datapoints) for SVCCA or
    /// CCA (`options`).
    pub fn of(a: &Tensor, b: &Tensor, options: &Options) -> Result<Pair, SimilarityError> {
        assert!(matches!(options.method, Method::Svcca | Method::Cca), "summaries serve CCA and SVCCA only");
        if a.size()[0] != b.size()[0] {
            return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", a.size()[0], b.size()[0])));
        }
        let keep = options.effective_keep();
        let sa = Summary::of(a, false, keep, None, Side::A, options.precision)?;
        let sb = Summary::of(b, false, keep, None, Side::B, options.precision)?;
        Ok(Pair { a: sa, b: sb, method: options.method })
    }

    /// The similarity of the two layers.
    pub fn similarity(&self) -> Result<Similarity, SimilarityError> {
        let (sa, sb) = (&self.a, &self.b);
        let [(ka, kb, correlations)] = correlate(sa, sb)?.try_into().expect("one problem");
        let rows = sa.datapoints();
        Ok(Similarity {
            method: self.method,
            mean: correlations.iter().sum::<f64>() / correlations.len() as f64,
            correlations,
            weights: None,
            kept_a: ka as i64,
            kept_b: kb as i64,
            datapoints: rows,
            neurons_a: sa.neurons,
            neurons_b: sb.neurons,
            constant_a: sa.constant,
            constant_b: sb.constant,
            warnings: size_warnings(rows, [sa.neurons, sb.neurons]),
        })
    }

    /// The similarity with A's datapoints taken in `order` (indices, a permutation of
    /// them) against B's: a permutation baseline. Nothing of a layer depends on the
    /// order of its datapoints but its rows (the data shifted by a datapoint, or the Gram
    /// route's eigenvectors `U`, permute with them; the means, the directions kept and
    /// the whitening do not change), so A's summary is its own with its rows permuted
    /// and each pairing costs one cross product and a small SVD.
    pub fn permuted(&self, order: &Tensor) -> Result<f64, SimilarityError> {
        let a = Summary { data: self.a.data.index_select(1, &order.to_device(self.a.data.device())), ..self.a.shallow_clone() };
        let [(_, _, correlations)] = correlate(&a, &self.b)?.try_into().expect("one problem");
        Ok(correlations.iter().sum::<f64>() / correlations.len() as f64)
    }
}

/// A set of layers (datapoints x neurons, or datapoints x C x H x W) on one side of many
/// comparisons under one set of settings, each summarised once per form it is compared in.
/// A pair the conv method does not apply to is compared by `avgpool`, and a conv layer
/// against a dense one by `conv.dense`, `flatten` falling back to `avgpool` where the
/// datapoints are too few (see [`applicable`]).
pub(crate) struct Layers {
    layers: Vec<Tensor>,
    options: Options,
    conv: ConvOptions,
    summaries: HashMap<(usize, Form), Result<Summary, SimilarityError>>,
    /// The whitened `Z`s of summaries side by side (along the columns), for
    /// [`similarities`]: one product against all of them runs faster than one product per
    /// summary (small products run below BLAS's speed; benches/records/2026-12-01.md,
    /// "Analysis rows"), and a `Z` is
    /// narrower than its data. Kept while the set lives (the final network's
    /// layers are the `b` side of every row of an analysis), within a budget
    /// ([`JOINED_BYTES`] unless set).
    joined: HashMap<Vec<(usize, Form)>, Tensor>,
    joined_bytes: i64,
    joined_budget: i64,
}

/// Memory the side-by-side copies of a [`Layers`] may take by default; past it,
/// [`similarities`] multiplies summary by summary (the same numbers, more slowly).
pub(crate) const JOINED_BYTES: i64 = 1 << 30;

impl Layers {
    /// Layers compared by CCA or SVCCA (`options`), conv layers by `conv`. A set may be
    /// either side of a comparison, or both sides in turn.
    pub(crate) fn new(layers: Vec<Tensor>, options: Options, conv: ConvOptions) -> Layers {
        assert!(matches!(options.method, Method::Svcca | Method::Cca), "summaries serve CCA and SVCCA only");
        Layers { layers, options, conv, summaries: HashMap::new(), joined: HashMap::new(), joined_bytes: 0, joined_budget: JOINED_BYTES }
    }

    /// The same set with another budget for its side-by-side copies (0: none).
    pub(crate) fn with_joined_budget(self, bytes: i64) -> Layers {
        Layers { joined_budget: bytes, ..self }
    }

    /// The same layers as another set, with the summaries it has made so far (their
    /// tensors shared, not copied), and none of its side-by-side copies: for the other
    /// side of comparisons with itself (the final checkpoint's row of an analysis, whose
    /// layers are the final network's). A summary does not depend on the side it is
    /// used on.
    pub(crate) fn sharing_summaries(&self) -> Layers {
        let summaries =
            self.summaries.iter().map(|(key, made)| (*key, made.as_ref().map(Summary::shallow_clone).map_err(Clone::clone))).collect();
        Layers {
            layers: self.layers.iter().map(Tensor::shallow_clone).collect(),
            options: self.options,
            conv: self.conv,
            summaries,
            joined: HashMap::new(),
            joined_bytes: 0,
            joined_budget: self.joined_budget,
        }
    }

    pub(crate) fn layer(&self, i: usize) -> &Tensor {
        &self.layers[i]
    }

    pub(crate) fn len(&self) -> usize {
        self.layers.len()
    }

    /// How many summaries the set holds (a layer in each form it has been summarised in).
    #[cfg(test)]
    pub(crate) fn summaries_made(&self) -> usize {
        self.summaries.len()
    }

    /// Keeps only the whitened `Z` of each summary of layer `i` made so far
    /// ([`Summary::compact`]): comparisons in those forms give the same numbers (up to
    /// rounding), and more forms can still be made from the layer.
    pub(crate) fn compact_summaries(&mut self, i: usize) {
        for ((layer, _), made) in self.summaries.iter_mut() {
            if *layer == i {
                if let Ok(summary) = made {
                    *summary = summary.compact();
                }
            }
        }
    }

    /// [`Layers::compact_summaries`], and drops the layer's data, keeping its shape: a
    /// form not made yet can no longer be made (a caller makes them all first: see
    /// [`summarise_rows`]).
    pub(crate) fn compact(&mut self, i: usize) {
        self.compact_summaries(i);
        self.layers[i] = stand_in(&self.layers[i]);
    }

    /// Drops layer `i`'s summaries and data, keeping its shape (its row is done).
    pub(crate) fn release(&mut self, i: usize) {
        self.summaries.retain(|(layer, _), _| *layer != i);
        self.layers[i] = stand_in(&self.layers[i]);
    }

    /// The form layer `i` takes in `comparison` (dense when there is none).
    fn form(&self, i: usize, comparison: Option<&ConvComparison>) -> Form {
        form_of(&self.layers[i], comparison)
    }

    /// Layer `i` summarised as `comparison` presents it (dense when `comparison` is
    /// none); its errors said of `side`.
    fn summary(&mut self, i: usize, comparison: Option<&ConvComparison>, side: Side) -> Result<&Summary, SimilarityError> {
        self.summarise(i, &[comparison], side);
        self.summaries[&(i, self.form(i, comparison))].as_ref().map_err(|e| e.clone().on(side))
    }

    /// The places in `comparisons` of one comparison for each form layer `i` takes in
    /// them and has not been summarised in, in order.
    fn missing(&self, i: usize, comparisons: &[Option<&ConvComparison>]) -> Vec<usize> {
        let mut missing: Vec<usize> = Vec::new();
        for (k, &c) in comparisons.iter().enumerate() {
            let form = self.form(i, c);
            if !self.summaries.contains_key(&(i, form)) && !missing.iter().any(|&m| self.form(i, comparisons[m]) == form) {
                missing.push(k);
            }
        }
        missing
    }

    /// Summarises layer `i` in each form of `comparisons` it has not been summarised in
    /// (see [`summarise`]).
    fn summarise(&mut self, i: usize, comparisons: &[Option<&ConvComparison>], side: Side) {
        let missing: Vec<Option<&ConvComparison>> = self.missing(i, comparisons).into_iter().map(|k| comparisons[k]).collect();
        let made = summarise(&self.layers[i], &missing, &self.options, side);
        for (c, summary) in missing.into_iter().zip(made) {
            self.summaries.insert((i, self.form(i, c)), summary);
        }
    }

    /// A summary [`Layers::summary`] has made without error.
    fn made(&self, key: (usize, Form)) -> &Summary {
        self.summaries[&key].as_ref().expect("summarised without error")
    }

    /// `a.data'` times the summary of each key, and how those were taken: their `Z`s
    /// side by side, one product, where that fits the budget, else each one's data.
    ///
    /// The side-by-side copy holds each summary's whitened `Z` rather than its data: it is
    /// made once and serves every row of an analysis, and against it a pair's product is
    /// as narrow as the kept directions and needs neither the centring term nor the
    /// second whitening.
    fn data_products(&mut self, a: &Summary, keys: &[(usize, Form)]) -> (Taken, Vec<Tensor>) {
        let device = a.data.device();
        let a_t = a.data.transpose(1, 2);
        let widths: Vec<i64> = keys.iter().map(|&key| self.made(key).whitened_width()).collect();
        let value = self.options.precision.kind().elt_size_in_bytes() as i64;
        let bytes = widths.iter().sum::<i64>() * a.data.size()[0] * a.datapoints() * value;
        if !self.joined.contains_key(keys) && self.joined_bytes + bytes <= self.joined_budget {
            let whitened: Vec<Tensor> = keys.iter().map(|&key| self.made(key).whitened()).collect();
            let joined = if whitened.len() == 1 { whitened[0].shallow_clone() } else { Tensor::cat(&whitened, 2) };
            self.joined_bytes += bytes;
            self.joined.insert(keys.to_vec(), joined);
        }
        match self.joined.get(keys) {
            Some(joined) => (Taken::Whitened, products_f64(&a_t, &joined.to_device(device)).split_with_sizes(widths.as_slice(), 2)),
            None => (Taken::Data, keys.iter().map(|&key| products_f64(&a_t, &self.made(key).data.to_device(device))).collect()),
        }
    }
}

/// The similarity of layer `i` of `a` with layer `j` of `b` (the same datapoints, the
/// same settings): the number [`super::compare`] and [`super::compare_conv`] (with the
/// [`applicable`] settings) report as `mean`, up to rounding, from cached summaries.
#[cfg(test)]
pub(crate) fn similarity(a: &mut Layers, i: usize, b: &mut Layers, j: usize) -> Result<f64, SimilarityError> {
    let [one] = similarities(a, i, b, &[j]).try_into().expect("one pair asked");
    one
}

/// [`similarity`] of layer `i` of `a` with each layer `js` of `b`. The pairs in which
/// layer `i` takes the same form share their first product: `i`'s data against the data
/// of all their `b` layers side by side, kept in `b` for the next row (see
/// [`Layers::data_products`]).
pub(crate) fn similarities(a: &mut Layers, i: usize, b: &mut Layers, js: &[usize]) -> Vec<Result<f64, SimilarityError>> {
    assert!(a.options == b.options && a.conv == b.conv, "both sides of a comparison use the same settings");
    let device = a.layer(i).device();
    host::on_rayon(device, || similarities_of(a, i, b, js))
}

fn similarities_of(a: &mut Layers, i: usize, b: &mut Layers, js: &[usize]) -> Vec<Result<f64, SimilarityError>> {
    let mut results: Vec<Option<Result<f64, SimilarityError>>> = vec![None; js.len()];
    // Each pair's comparison, by the form layer i takes in it (in order of first use).
    let mut groups: Vec<(Form, Vec<Planned>)> = Vec::new();
    let plans: Vec<Result<Option<ConvComparison>, SimilarityError>> = js.iter().map(|&j| plan(a, i, b, j)).collect();
    let planned: Vec<Option<&ConvComparison>> = plans.iter().filter_map(|p| p.as_ref().ok().map(Option::as_ref)).collect();
    a.summarise(i, &planned, Side::A);
    for ((at, &j), comparison) in js.iter().enumerate().zip(plans) {
        let comparison = match comparison {
            Ok(c) => c,
            Err(e) => {
                results[at] = Some(Err(e));
                continue;
            }
        };
        let form = a.form(i, comparison.as_ref());
        let summarised =
            a.summary(i, comparison.as_ref(), Side::A).map(|_| ()).and_then(|()| b.summary(j, comparison.as_ref(), Side::B).map(|_| ()));
        if let Err(e) = summarised.and_then(|()| check_datapoints(a.made((i, form)), b.made((j, b.form(j, comparison.as_ref()))))) {
            results[at] = Some(Err(e));
            continue;
        }
        match groups.iter_mut().find(|(f, _)| *f == form) {
            Some((_, pairs)) => pairs.push((at, comparison)),
            None => groups.push((form, vec![(at, comparison)])),
        }
    }
    for (form, pairs) in groups {
        let keys: Vec<(usize, Form)> = pairs.iter().map(|(at, c)| (js[*at], b.form(js[*at], c.as_ref()))).collect();
        let sa = a.made((i, form));
        let (taken, products) = b.data_products(sa, &keys);
        for (((at, comparison), key), product) in pairs.into_iter().zip(keys).zip(products) {
            results[at] = Some(correlate_from(sa, b.made(key), taken, product).map(|per_problem| match &comparison {
                Some(c) if c.is_complex() => c.spectrum(per_problem, c.joint(&a.options).is_some()).mean,
                _ => {
                    let [(_, _, c)] = per_problem.try_into().expect("one problem");
                    c.iter().sum::<f64>() / c.len() as f64
                }
            }));
        }
    }
    results.into_iter().map(|r| r.expect("every pair answered")).collect()
}

/// Summarises layers `is` of `a` in every form their comparisons with layers `js` of
/// `b` take: what [`similarities`] would make for those rows one after the other, made
/// for all of them at once, on the CPU the layers side by side on rayon's threads. Each summary
/// has serial steps (libtorch's, on one thread under [`host::on_rayon`]) between its
/// parallel ones (FFTs, products, decompositions); side by side, one layer's serial
/// steps overlap another's parallel ones. The same numbers: each summary is computed
/// as it would be alone.
pub(crate) fn summarise_rows(a: &mut Layers, is: &[usize], b: &Layers, js: &[usize]) {
    let work: Vec<(usize, Tensor, Vec<Option<ConvComparison>>)> = is
        .iter()
        .filter_map(|&i| {
            let plans: Vec<Option<ConvComparison>> = js.iter().filter_map(|&j| plan(a, i, b, j).ok()).collect();
            let missing = a.missing(i, &plans.iter().map(Option::as_ref).collect::<Vec<_>>());
            // The comparisons of the missing forms, owned: each layer goes to a thread.
            let owned: Vec<Option<ConvComparison>> =
                plans.into_iter().enumerate().filter(|(k, _)| missing.contains(k)).map(|(_, c)| c).collect();
            (!owned.is_empty()).then(|| (i, a.layers[i].shallow_clone(), owned))
        })
        .collect();
    let Some((_, first, _)) = work.first() else { return };
    let options = a.options;
    let device = first.device();
    let layer = |(i, x, comparisons): (usize, Tensor, Vec<Option<ConvComparison>>)| -> Vec<_> {
        let refs: Vec<Option<&ConvComparison>> = comparisons.iter().map(Option::as_ref).collect();
        let keys = refs.iter().map(|&c| (i, form_of(&x, c)));
        // libtorch's thread count is each thread's own (OpenMP's): set to one on this
        // rayon thread too, or its steps here would start OpenMP teams of their own
        // beside rayon's threads.
        let made = host::on_rayon(device, || summarise(&x, &refs, &options, Side::A));
        keys.zip(made).collect()
    };
    // Side by side on the CPU only, where the cores are what the layers share; a GPU
    // summarises them in turn, as the rows would have (not measured side by side).
    let made: Vec<Vec<_>> = match device {
        Device::Cpu => host::on_rayon(device, || work.into_par_iter().map(layer).collect()),
        _ => work.into_iter().map(layer).collect(),
    };
    a.summaries.extend(made.into_iter().flatten());
}

/// A tensor of `t`'s shape, kind and device that holds one element (a zero, expanded):
/// what a set keeps of a layer whose data it no longer needs.
pub(crate) fn stand_in(t: &Tensor) -> Tensor {
    Tensor::zeros([1], (t.kind(), t.device())).expand(t.size(), false)
}

/// The form layer `x` takes in `comparison` (dense when there is none).
fn form_of(x: &Tensor, comparison: Option<&ConvComparison>) -> Form {
    match comparison {
        Some(c) if x.dim() == 4 => c.form(),
        _ => Form::Dense,
    }
}

/// Layer `x` summarised in each of `comparisons`' forms (distinct forms; `None` is
/// dense), its errors said of `side`. DFT forms come from one FFT: a layer's full grid
/// and its crops are choices of frequencies of the same transform. Spectra are made in
/// the precision's kind, so that a float32 summary holds no float64 copy of its
/// spectrum.
fn summarise(x: &Tensor, comparisons: &[Option<&ConvComparison>], options: &Options, side: Side) -> Vec<Result<Summary, SimilarityError>> {
    let (keep, p) = (options.effective_keep(), options.precision);
    let dft: Vec<&ConvComparison> = comparisons.iter().flatten().copied().filter(|c| c.is_complex()).collect();
    let shared = x.dim() == 4 && !dft.is_empty();
    let mut spectra = if shared { ConvComparison::spectra(&dft, x, p.kind()) } else { Vec::new() }.into_iter();
    comparisons
        .iter()
        .map(|c| match c {
            Some(c) if shared && c.is_complex() => {
                Summary::of(&spectra.next().expect("one spectrum per DFT form"), true, keep, c.joint(options).as_deref(), side, p)
            }
            Some(c) => Summary::of(&c.transform(side, x, 0), c.is_complex(), keep, c.joint(options).as_deref(), side, p),
            None => Summary::of(x, false, keep, None, side, p),
        })
        .collect()
}

/// A pair of a row: its place in the row and its comparison (see [`plan`]).
type Planned = (usize, Option<ConvComparison>);

/// How layer `i` of `a` and layer `j` of `b` are compared: `None` for two dense layers,
/// else the conv comparison the [`applicable`] settings make.
fn plan(a: &Layers, i: usize, b: &Layers, j: usize) -> Result<Option<ConvComparison>, SimilarityError> {
    let (x, y) = (a.layer(i), b.layer(j));
    if x.dim() == 2 && y.dim() == 2 {
        return Ok(None);
    }
    if x.size()[0] != y.size()[0] {
        return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", x.size()[0], y.size()[0])));
    }
    let shapes = [LayerShape::of(x), LayerShape::of(y)];
    let conv = applicable(a.conv, shapes, x.size()[0]);
    ConvComparison::new(shapes, x.size()[0], conv, a.options.method).map(Some)
}

#[cfg(test)]
mod against_pairs;

#[cfg(test)]
mod tests {
    use super::*;

    /// In float32 a layer's spectrum and its `Z` are held in float32 and nothing else
    /// ([`Summary::whitened`], the DFT's spectra), and [`summary_bytes`] counts them at
    /// four bytes: what it counts for the data is exactly what is held, in either
    /// precision. The analysis plans its memory by it.
    #[test]
    fn summaries_are_held_in_the_precisions_kind_and_estimated_at_its_size() {
        tch::manual_seed(4);
        let x = (Tensor::randn([200, 8, 8, 8], (Kind::Float, Device::Cpu)) + 1.0).relu();
        // Against itself (the 8 x 8 grid) and a 4 x 4 layer (a crop): two DFT forms of one FFT.
        let y = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        let mut estimates = Vec::new();
        for precision in [Precision::Float64, Precision::Float32] {
            let options = Options { precision, ..Options::default() };
            let layers = || Layers::new(vec![x.shallow_clone(), y.shallow_clone()], options, ConvOptions::default());
            let (mut a, b) = (layers(), layers());
            let bytes = summary_bytes(&a, 0, &b, &[0, 1]);
            assert_eq!(bytes.len(), 2, "{precision:?}: two DFT forms");
            summarise_rows(&mut a, &[0], &b, &[0, 1]);
            let held = |a: &Layers| -> i64 {
                a.summaries
                    .values()
                    .map(|s| {
                        let data = &s.as_ref().expect("summarised").data;
                        assert_eq!(data.kind(), precision.kind(), "{precision:?}");
                        data.numel() as i64 * data.kind().elt_size_in_bytes() as i64
                    })
                    .sum()
            };
            assert_eq!(a.summaries_made(), 2);
            // The data is the spectrum, counted exactly (a compacted `Z`'s upper bound).
            assert_eq!(held(&a), bytes.iter().map(|b| b.compact).sum::<i64>(), "{precision:?}: the spectra");
            a.compact_summaries(0);
            assert!(held(&a) <= bytes.iter().map(|b| b.compact).sum::<i64>(), "{precision:?}: the compacted Zs");
            estimates.push(bytes);
        }
        // float32 halves the data and `Z`; the float64 matrices stay as they are.
        for (wide, narrow) in estimates[0].iter().zip(&estimates[1]) {
            assert_eq!(wide.compact, 2 * narrow.compact);
            assert_eq!(wide.row - narrow.row, narrow.compact);
            assert_eq!(wide.made - narrow.made, 2 * narrow.compact);
        }
    }
}
