//! CCA and SVCCA from centred scatter matrices, through symmetric eigendecompositions.
//!
//! For each layer, `C = V diag(l) V'` (`l` = squared singular values of the centred
//! activations, i.e. the variance along each principal direction). Keeping the top `k`
//! directions and whitening them, `W = V_k diag(l_k)^-1/2`, the canonical correlations are
//! the singular values of the small `k_a x k_b` matrix `W_a' C_ab W_b`. No covariance
//! matrix is inverted: directions whose variance is at rounding level are cut (their
//! count is reported as the layer's rank), so the whitening never divides by noise.
//! Plain CCA is the same with every direction up to that rank kept.

use super::Keep;
use crate::error::{Side, SimilarityError};
use tch::{Device, Kind, Tensor};

/// A layer's principal directions, largest variance first.
pub(crate) struct Principal {
    /// Eigenvalues of the scatter matrix (descending, clamped at 0), on the host.
    pub variances: Vec<f64>,
    /// Eigenvectors, columns in the same order (p x p).
    pub directions: Tensor,
    /// How many directions carry more than rounding noise.
    pub rank: usize,
}

/// Relative size under which a direction's variance is rounding noise of a float64
/// scatter matrix: ten ulps of the largest variance per neuron.
pub(crate) fn rank_tolerance(neurons: usize) -> f64 {
    f64::EPSILON * 10.0 * neurons.max(1) as f64
}

impl Principal {
    pub(crate) fn of(scatter: &Tensor) -> Principal {
        let (l, v) = scatter.linalg_eigh("L");
        // eigh sorts ascending; we want the largest variance first.
        let l = l.flip([0]).clamp_min(0.0);
        let directions = v.flip([1]);
        let variances = to_host(&l);
        let tol = variances.first().copied().unwrap_or(0.0)
            * rank_tolerance(variances.len());
        let rank = variances.iter().take_while(|&&x| x > tol).count();
        Principal {
            variances,
            directions,
            rank,
        }
    }

    /// How many directions the rule keeps; an error when the rule asks for more than the
    /// data holds.
    pub(crate) fn keep(&self, keep: Keep, side: Side, rows: i64) -> Result<usize, SimilarityError> {
        match keep {
            Keep::All => Ok(self.rank),
            Keep::Variance(fraction) => {
                let total: f64 = self.variances.iter().sum();
                let mut cumulative = 0.0;
                let mut k = 0;
                for v in &self.variances {
                    cumulative += v;
                    k += 1;
                    if cumulative / total >= fraction {
                        break;
                    }
                }
                Ok(k.min(self.rank))
            }
            Keep::TopK(k) => {
                if k as i64 > rows {
                    return Err(SimilarityError::layer(
                        side,
                        format!("--top-k {k} asks for more directions than the {rows} datapoints can hold"),
                    ));
                }
                if k > self.variances.len() {
                    return Err(SimilarityError::layer(
                        side,
                        format!("--top-k {k} asks for more directions than its {} non-constant neurons", self.variances.len()),
                    ));
                }
                if k > self.rank {
                    return Err(SimilarityError::layer(
                        side,
                        format!("--top-k {k} asks for more directions than the {} linearly independent ones the activations hold", self.rank),
                    ));
                }
                Ok(k)
            }
        }
    }

    /// The top `k` directions scaled to unit variance (p x k).
    pub(crate) fn whitening(&self, k: usize) -> Tensor {
        let scale: Vec<f64> = self.variances[..k].iter().map(|v| v.powf(-0.5)).collect();
        let scale = Tensor::from_slice(&scale)
            .to_kind(self.directions.kind())
            .to_device(self.directions.device());
        self.directions.narrow(1, 0, k as i64) * scale
    }
}

/// Canonical correlations (descending) between the top `k_a` and `k_b` principal
/// directions of the two layers.
pub(crate) fn correlations(cab: &Tensor, wa: &Tensor, wb: &Tensor) -> Vec<f64> {
    let t = wa.tr().mm(&cab.mm(wb));
    let (_, s, _) = t.svd(true, false);
    // Canonical correlations are at most 1; anything above is rounding.
    to_host(&s.clamp_max(1.0))
}

pub(crate) fn to_host(t: &Tensor) -> Vec<f64> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous();
    Vec::<f64>::try_from(&t.flatten(0, -1)).expect("a float tensor converts to Vec<f64>")
}
