//! SVCCA directions in neuron space: what compression projects a layer onto, and how many
//! principal directions a layer needs (dimensionality); and [`Fitted`], a layer's
//! directions with its units ranked by activity, from which both compression
//! (`--compression`) and the toy regression (Figure 3) keep "the top k" of a layer.
//!
//! For a layer `A` (datapoints x m) and a reference `B` (datapoints x q), centred, with
//! scatter matrices `C_aa`, `C_bb`, `C_ab`: SVCCA keeps the top `k_a` principal directions
//! of `A` whitened, `W_a = V_k diag(l_k)^-1/2` (m x k_a), likewise `W_b`, and takes the SVD
//! `W_a' C_ab W_b = U S V'`. The canonical weight vectors of `A` are the columns of
//! `D = W_a U` (m x k_a): the canonical variates `Z = A_c D` are uncorrelated with unit
//! scatter (`D' C_aa D = I`), the first `min(k_a, k_b)` in order of their correlation with
//! `B`. The remaining `k_a - min(k_a, k_b)` columns of `U` span the part of the kept
//! subspace that `B` does not see at all (correlation 0); they are put in order of the
//! layer variance each carries (the eigenvectors of `Q' diag(l) Q`, `Q` those columns), so
//! that "the top k directions" means something for every k up to `k_a`.
//!
//! Projecting onto the top k directions is the least-squares reconstruction of the layer
//! from its first k canonical variates: `A_c ~ Z_k (Z_k' A_c) = A_c D_k D_k' C_aa`, so a
//! datapoint's centred output `x` (a row) becomes `x P_k` with `P_k = D_k D_k' C_aa`, and the
//! mean is added back. `P_k` is a projection (`P_k P_k = P_k`); with every direction kept
//! and full rank it is the identity, with none the layer outputs its mean.
//!
//! All in float64; nothing is inverted (whitening divides by variances above the rank cut).

use super::cca::{keep_one, to_host, Principal};
use super::products::{gram, products};
use super::Keep;
use crate::error::{Side, SimilarityError};
use tch::{Kind, Tensor};

/// A layer's SVCCA directions against a reference.
#[derive(Debug)]
pub struct Directions {
    /// Column means of the layer, 1 x m float64.
    pub mean: Tensor,
    /// Canonical weight vectors, m x k_a float64, columns in the order described above.
    pub weights: Tensor,
    /// Canonical correlations with the reference, descending (`min(k_a, k_b)` of them).
    pub correlations: Vec<f64>,
    /// The layer's centred scatter matrix, m x m float64.
    scatter: Tensor,
}

impl Directions {
    /// Directions kept (`k_a`): the most [`Directions::projection`] accepts.
    pub fn len(&self) -> usize {
        self.weights.size()[1] as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `P_k` (m x m float64): a centred row `x` projects to `x P_k`.
    pub fn projection(&self, k: usize) -> Tensor {
        assert!(k <= self.len(), "{k} directions asked of {}", self.len());
        let d = self.weights.narrow(1, 0, k as i64);
        d.matmul(&d.tr()).matmul(&self.scatter)
    }

    /// How much each neuron carries of the top `k` directions (m float64s): the variance it
    /// has in the projected output, `diag(C D_k D_k' C)` (up to the datapoint count), i.e.
    /// the sum over the k canonical variates of its squared loading `(D_k' C)_ji` (the
    /// coefficient by which variate j writes into neuron i in `x P_k = z_k D_k' C`).
    pub fn importance(&self, k: usize) -> Vec<f64> {
        assert!(k <= self.len(), "{k} directions asked of {}", self.len());
        let loadings = self.weights.narrow(1, 0, k as i64).tr().matmul(&self.scatter);
        to_host(&loadings.square().sum_dim_intlist(0, false, Kind::Double))
    }
}

/// A layer's SVCCA directions against a reference, and its units ranked by activity: the
/// one fit behind "keep the top k" of a layer, whether k directions
/// ([`Directions::projection`]), the k most active units ([`Fitted::active`]) or the m units
/// most important to k directions ([`Fitted::important`]). `analysis::compression` makes
/// its maps from one per layer (random units and the float32 selections are its own);
/// `toy_regression`'s Figure 3 projects its float64 layer with one (its SVD basis is its
/// own).
///
/// Not [`super::summary::Summary`]: a summary is one side of a comparison, made without
/// the other layer (its centring, cut and whitening, streamed, through the Gram matrix
/// for a wide layer, stacked over the DFT's frequencies, in float32 if asked), and gives
/// canonical correlations only; the canonical weights that order directions by their
/// correlation with a reference, and the scatter matrix a projection needs, are made here.
#[derive(Debug)]
pub struct Fitted {
    pub directions: Directions,
    /// Units (columns) by mean absolute value over the datapoints, most active first (ties
    /// by unit index).
    pub active: Vec<i64>,
}

impl Fitted {
    /// The SVCCA directions of `a` against `b` (datapoints x neurons each, the same
    /// datapoints in the same order), each side reduced by `keep` first, and `a`'s units
    /// ranked by activity.
    pub fn fit(a: &Tensor, b: &Tensor, keep: Keep) -> Result<Fitted, SimilarityError> {
        let directions = directions(a, b, keep)?;
        Ok(Fitted { directions, active: most_active(a) })
    }

    /// Units (neurons, or channels of a conv layer's rows).
    pub fn units(&self) -> usize {
        self.active.len()
    }

    /// The `m` units most important to the top `k` SVCCA directions
    /// ([`Directions::importance`]: the variance each carries in the projected output), most
    /// important first (ties by unit index); `k` above the directions kept is all of them.
    pub fn important(&self, k: usize, m: usize) -> Vec<i64> {
        let importance = self.directions.importance(k.min(self.directions.len()));
        let mut units: Vec<i64> = (0..self.units() as i64).collect();
        units.sort_by(|&x, &y| importance[y as usize].total_cmp(&importance[x as usize]));
        units.truncate(m);
        units
    }
}

/// The columns of `a` (datapoints x neurons) by mean absolute value in float64, largest
/// first (ties by index): the most active neurons.
pub fn most_active(a: &Tensor) -> Vec<i64> {
    let activity: Vec<f64> =
        Vec::try_from(&a.to_kind(Kind::Double).abs().mean_dim(0, false, Kind::Double).to_device(tch::Device::Cpu)).expect("floats");
    let mut active: Vec<i64> = (0..activity.len() as i64).collect();
    active.sort_by(|&x, &y| activity[y as usize].total_cmp(&activity[x as usize]));
    active
}

/// Centred float64 copy of a datapoints x neurons matrix and its column means; an error
/// on NaN or Inf.
fn centred(t: &Tensor, side: Side) -> Result<(Tensor, Tensor), SimilarityError> {
    if t.dim() != 2 || t.size()[0] < 2 {
        return Err(SimilarityError::layer(side, format!("expected datapoints x neurons with 2 or more datapoints, got {:?}", t.size())));
    }
    let t = t.to_kind(Kind::Double);
    if !bool::try_from(t.isfinite().all()).unwrap_or(false) {
        return Err(SimilarityError::layer(side, "holds NaN or Inf"));
    }
    let mean = t.mean_dim(0, true, Kind::Double);
    Ok((&t - &mean, mean))
}

/// The SVCCA directions of `a` against `b` (the same datapoints in the same order), each
/// side reduced by `keep` first.
pub fn directions(a: &Tensor, b: &Tensor, keep: Keep) -> Result<Directions, SimilarityError> {
    directions_each(a, b, keep, keep)
}

/// [`directions`] with a rule for each side (dimensionality: the layer cut to its top k,
/// the reference whole).
pub fn directions_each(a: &Tensor, b: &Tensor, keep_a: Keep, keep_b: Keep) -> Result<Directions, SimilarityError> {
    if a.size()[0] != b.size()[0] {
        return Err(SimilarityError::Both(format!("different numbers of datapoints: {} vs {}", a.size()[0], b.size()[0])));
    }
    let (ac, mean) = centred(a, Side::A)?;
    let (bc, _) = centred(b, Side::B)?;
    let rows = ac.size()[0];
    let caa = gram(&ac);
    let cbb = gram(&bc);
    let cab = products(&ac.tr(), &bc);
    let pa = Principal::of(&caa.unsqueeze(0));
    let pb = Principal::of(&cbb.unsqueeze(0));
    let ka = pa.keep(keep_a, Side::A, rows)?[0];
    let kb = pb.keep(keep_b, Side::B, rows)?[0];
    for (side, k) in [(Side::A, ka), (Side::B, kb)] {
        if k == 0 {
            return Err(SimilarityError::layer(side, "every neuron is constant over the datapoints"));
        }
    }
    let wa = pa.whitening(&[ka]).squeeze_dim(0);
    let wb = pb.whitening(&[kb]).squeeze_dim(0);
    let (u, s, _) = wa.tr().matmul(&cab).matmul(&wb).svd(false, true);
    let r = ka.min(kb) as i64;
    let correlations = to_host(&s.narrow(0, 0, r).clamp_max(1.0));
    let mut columns = u.narrow(1, 0, r);
    if (ka as i64) > r {
        // The directions the reference does not see, by the layer variance they carry.
        let q = u.narrow(1, r, ka as i64 - r);
        let l = Tensor::from_slice(&pa.variances[0][..ka]).to_kind(Kind::Double).to_device(q.device());
        let (_, e) = (q.tr() * l.unsqueeze(0)).matmul(&q).linalg_eigh("L");
        columns = Tensor::cat(&[columns, q.matmul(&e.flip([-1]))], 1);
    }
    Ok(Directions { mean, weights: wa.matmul(&columns), correlations, scatter: caa })
}

/// The variance along each principal direction of `a` (datapoints x neurons), descending
/// (squared singular values of the centred matrix, from its float64 scatter matrix), and
/// how many of them are above rounding noise (the rank SVCCA uses).
pub fn principal_variances(a: &Tensor) -> Result<(Vec<f64>, usize), SimilarityError> {
    let (ac, _) = centred(a, Side::A)?;
    let mut p = Principal::of(&gram(&ac).unsqueeze(0));
    Ok((p.variances.remove(0), p.rank[0]))
}

/// The fewest of `variances` (descending) that hold at least `fraction` of their sum: the
/// SVCCA keep rule.
pub fn directions_needed(variances: &[f64], fraction: f64) -> usize {
    keep_one(variances, variances.len(), Keep::Variance(fraction), Side::A, i64::MAX).expect("a variance rule never refuses")
}

#[cfg(test)]
mod tests {
    use super::{Fitted, Keep};
    use tch::{Device, Kind, Tensor};

    /// The ranking and the important units against the data by hand: the mean |value| of
    /// each column summed on the host, and the variance each unit has in the projected
    /// output `A_c P_k`.
    #[test]
    fn fitted_ranks_units_as_the_data_does_by_hand() {
        tch::manual_seed(11);
        let opts = (Kind::Double, Device::Cpu);
        let scale = Tensor::from_slice(&[3.0f64, 0.5, 1.0, 2.0, 0.1, 1.5]).unsqueeze(0);
        let a = Tensor::randn([200, 6], opts) * scale + 0.3;
        let b = a.matmul(&Tensor::randn([6, 3], opts)) + Tensor::randn([200, 3], opts) * 0.5;
        let f = Fitted::fit(&a.to_kind(Kind::Float), &b, Keep::All).unwrap();
        assert_eq!((f.units(), f.directions.len(), f.directions.correlations.len()), (6, 6, 3));
        let columns = |t: &Tensor| -> Vec<Vec<f64>> {
            let flat = Vec::<f64>::try_from(t.tr().contiguous().view(-1)).unwrap();
            flat.chunks(200).map(<[f64]>::to_vec).collect()
        };
        let ranked = |score: Vec<f64>| {
            let mut order: Vec<i64> = (0..score.len() as i64).collect();
            order.sort_by(|&x, &y| score[y as usize].total_cmp(&score[x as usize]));
            order
        };
        let activity = columns(&a.to_kind(Kind::Float).to_kind(Kind::Double)).iter().map(|c| c.iter().map(|v| v.abs()).sum()).collect();
        assert_eq!(f.active, ranked(activity));
        let ac = a.to_kind(Kind::Float).to_kind(Kind::Double) - &f.directions.mean;
        for k in [1, 2, 4, 6] {
            let projected = ac.matmul(&f.directions.projection(k));
            let variance = columns(&projected).iter().map(|c| c.iter().map(|v| v * v).sum()).collect();
            assert_eq!(f.important(k, 4), ranked(variance)[..4], "k = {k}");
        }
        assert_eq!(f.important(9, 6).len(), 6, "k past the directions: all of them");
    }
}
