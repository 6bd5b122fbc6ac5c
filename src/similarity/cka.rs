//! Linear CKA (Kornblith et al. 2019) from centred scatter matrices:
//! `||A_c' B_c||_F^2 / (||A_c' A_c||_F ||B_c' B_c||_F)`, the feature-space form of
//! `HSIC(K, L) / sqrt(HSIC(K, K) HSIC(L, L))` with linear kernels.

use super::moments::Covariance;
use tch::Tensor;

fn frobenius_sq(t: &Tensor) -> f64 {
    t.square().sum(None).double_value(&[])
}

/// Linear CKA of a dense comparison (a stack of one problem).
pub(crate) fn linear_cka(cov: &Covariance) -> f64 {
    frobenius_sq(&cov.cab) / (frobenius_sq(&cov.caa).sqrt() * frobenius_sq(&cov.cbb).sqrt())
}
