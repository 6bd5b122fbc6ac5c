//! Projection-weighted CCA, as the reference `pwcca.compute_pwcca(A, B)` defines it.
//!
//! The reference (google/svcca `pwcca.py`) takes the layer with fewer neurons (A on a
//! tie), forms its canonical directions `D = A_c U + 1 m'` (`U` the left singular
//! vectors of `C_aa^-1/2 C_ab C_bb^-1/2`, `m` the layer's mean, added back per column as
//! that code does), orthonormalises them in order (QR), and weights each canonical
//! correlation by the summed absolute projection of the *uncentred* neurons onto its
//! orthonormalised direction. It is asymmetric, and it depends on the signs the SVD
//! gives `U`; those signs match LAPACK's on the host, so this small SVD always runs there.
//! (The reference's branch for the B side reads A's activations; that is a bug we do not
//! copy: the B side uses B.)
//!
//! Everything the QR needs is a function of the scatter matrix, so no second pass over
//! the datapoints: with `A_c' 1 = 0`,
//! `D'D = U' C U + n m m'` and `D'A = U' C + n m m'`; `D = P R` gives `P'A = R^-T D'A`,
//! with `R` the Cholesky factor of `D'D` (the same `R` as the QR's up to row signs, which
//! the absolute value removes).

use super::cca::{rank_tolerance, to_host};
use super::moments::Covariance;
use crate::error::SimilarityError;
use crate::host::single_threaded;
use tch::{Device, Tensor};

pub(crate) struct Pwcca {
    pub value: f64,
    pub weights: Vec<f64>,
    pub correlations: Vec<f64>,
}

/// `C^-1/2` through the eigendecomposition, with rounding-level directions left out
/// (a pseudo-inverse, as the reference's `pinv`).
fn inverse_sqrt(c: &Tensor) -> Tensor {
    let (l, v) = c.linalg_eigh("L");
    let max = l.max().double_value(&[]);
    let tol = max * rank_tolerance(l.size()[0] as usize);
    let scale = l.clamp_min(tol).rsqrt() * l.gt(tol).to_kind(l.kind());
    (&v * scale).mm(&v.tr())
}

/// PWCCA of a dense comparison (a stack of one problem).
pub(crate) fn pwcca(cov: &Covariance) -> Result<Pwcca, SimilarityError> {
    let n = cov.caa.size()[1].max(cov.cbb.size()[1]);
    single_threaded(cov.caa.device(), n, || pwcca_of(cov))
}

fn pwcca_of(cov: &Covariance) -> Result<Pwcca, SimilarityError> {
    let (caa, cbb, cab) = (cov.caa.get(0), cov.cbb.get(0), cov.cab.get(0));
    let (mean_a, mean_b) = (cov.mean_a.get(0).get(0), cov.mean_b.get(0).get(0));
    let device = caa.device();
    let arr = inverse_sqrt(&caa).mm(&cab).mm(&inverse_sqrt(&cbb));
    let arr = arr.to_device(Device::Cpu);
    let (u, s, v) = arr.svd(false, true);
    let (p, q) = (caa.size()[0], cbb.size()[0]);
    // torch.svd(some=false) gives full square U (p x p) and V (q x q).
    let (c, mean, dirs) = if p <= q { (&caa, &mean_a, u) } else { (&cbb, &mean_b, v) };
    let dirs = dirs.to_device(device);
    let n = cov.rows as f64;
    let mean_outer = mean.outer(mean) * n;
    let dtd = dirs.tr().mm(&c.mm(&dirs)) + &mean_outer;
    let dtx = dirs.tr().mm(c) + &mean_outer;
    let (r, info) = dtd.linalg_cholesky_ex(true, false);
    if info.int64_value(&[]) != 0 {
        return Err(SimilarityError::Both(
            "PWCCA: the canonical directions are linearly dependent (the smaller layer's \
             neurons are collinear); use --method svcca or cca"
                .into(),
        ));
    }
    // P'X = R^-T D'X: solve R' Y = D'X with R' lower triangular.
    let ptx = r.tr().linalg_solve_triangular(&dtx, false, true, false);
    let weights = ptx.abs().sum_dim_intlist(1, false, None);
    let weights = to_host(&(&weights / weights.sum(None)));
    let correlations = to_host(&s.clamp_max(1.0));
    let value = weights.iter().zip(&correlations).map(|(w, c)| w * c).sum();
    Ok(Pwcca { value, weights, correlations })
}
