//! CCA and SVCCA from centred scatter matrices, through symmetric eigendecompositions.
//!
//! For each layer, `C = V diag(l) V'` (`l` = squared singular values of the centred
//! activations, i.e. the variance along each principal direction). Keeping the top `k`
//! directions and whitening them, `W = V_k diag(l_k)^-1/2`, the canonical correlations are
//! the singular values of the small `k_a x k_b` matrix `W_a' C_ab W_b`. No covariance
//! matrix is inverted: directions whose variance is at rounding level are cut (their
//! count is reported as the layer's rank), so the whitening never divides by noise.
//! Plain CCA is the same with every direction up to that rank kept.
//!
//! Everything runs on a stack of problems at once (see [`super::moments`]); each problem
//! may keep its own number of directions: the stack is cut to the largest count and the
//! directions a problem does not keep are given zero weight, which adds only zero
//! singular values that are then left out.

use super::products::products;
use super::Keep;
use crate::error::{Side, SimilarityError};
use crate::host;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// A layer's principal directions, largest variance first, for each problem.
pub(crate) struct Principal {
    /// Eigenvalues of each scatter matrix (descending, clamped at 0), on the host.
    pub variances: Vec<Vec<f64>>,
    /// Eigenvectors, columns in the same order (problems x p x p).
    pub directions: Tensor,
    /// How many directions of each problem carry more than rounding noise.
    pub rank: Vec<usize>,
}

/// Relative size under which a direction's variance is rounding noise of a float64
/// scatter matrix: ten ulps of the largest variance per neuron.
pub(crate) fn rank_tolerance(neurons: usize) -> f64 {
    f64::EPSILON * 10.0 * neurons.max(1) as f64
}

impl Principal {
    pub(crate) fn of(scatter: &Tensor) -> Principal {
        Principal::of_with(scatter, scatter.size()[1] as usize)
    }

    /// As [`Principal::of`], of a matrix with the nonzero eigenvalues of a scatter matrix
    /// of `neurons` neurons (the Gram matrix `X_c X_c'`): the rank test is the scatter
    /// matrix's.
    pub(crate) fn of_with(scatter: &Tensor, neurons: usize) -> Principal {
        let [l, v] = stacked(scatter, |c| {
            let (l, v) = c.linalg_eigh("L");
            [l, v]
        });
        // eigh sorts ascending; we want the largest variance first.
        let l = l.flip([-1]).clamp_min(0.0);
        let directions = v.flip([-1]);
        let p = l.size()[1] as usize;
        let all = to_host(&l);
        let variances: Vec<Vec<f64>> = all.chunks(p).map(<[f64]>::to_vec).collect();
        let rank = variances
            .iter()
            .map(|vs| {
                let tol = vs.first().copied().unwrap_or(0.0) * rank_tolerance(neurons);
                vs.iter().take_while(|&&x| x > tol).count()
            })
            .collect();
        Principal { variances, directions, rank }
    }

    /// How many directions the rule keeps in each problem; an error when the rule asks
    /// for more than the data holds.
    pub(crate) fn keep(&self, keep: Keep, side: Side, rows: i64) -> Result<Vec<usize>, SimilarityError> {
        self.variances.iter().zip(&self.rank).map(|(variances, &rank)| keep_one(variances, rank, keep, side, rows)).collect()
    }

    /// How many directions each problem keeps: per problem, or with `joint` (each
    /// problem's multiplicity) over all problems together.
    pub(crate) fn cut(&self, keep: Keep, joint: Option<&[usize]>, side: Side, rows: i64) -> Result<Vec<usize>, SimilarityError> {
        match joint {
            Some(multiplicity) => self.keep_jointly(keep, multiplicity, side, rows),
            None => self.keep(keep, side, rows),
        }
    }

    /// How many directions each problem keeps when a variance or singular-value rule
    /// applies to the directions of all problems together, those of problem `p` counting
    /// `multiplicity[p]` times (a DFT frequency standing for itself and its mirror): the
    /// cut SVCCA makes on the flattened layer, whose principal directions are those of
    /// all frequencies (Theorem 1). A counted pair is kept or cut whole. `All` and
    /// `TopK` apply per problem, as in [`Principal::keep`].
    pub(crate) fn keep_jointly(&self, keep: Keep, multiplicity: &[usize], side: Side, rows: i64) -> Result<Vec<usize>, SimilarityError> {
        let weight: fn(f64) -> f64 = match keep {
            Keep::Variance(_) => |v| v,
            Keep::Singular(_) => f64::sqrt,
            Keep::All | Keep::TopK(_) => return self.keep(keep, side, rows),
        };
        let (Keep::Variance(fraction) | Keep::Singular(fraction)) = keep else { unreachable!("matched above") };
        // Every direction above its problem's rounding noise: (value, problem), largest
        // first; a problem's own directions stay in their order (eigh's, descending).
        let mut all: Vec<(f64, usize)> = self
            .variances
            .iter()
            .zip(&self.rank)
            .enumerate()
            .flat_map(|(p, (vs, &rank))| vs[..rank].iter().map(move |&v| (weight(v), p)))
            .collect();
        all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
        let total: f64 = all.iter().map(|&(v, p)| v * multiplicity[p] as f64).sum();
        let mut kept = vec![0; self.variances.len()];
        let mut cumulative = 0.0;
        for (v, p) in all {
            cumulative += v * multiplicity[p] as f64;
            kept[p] += 1;
            if cumulative / total >= fraction {
                break;
            }
        }
        Ok(kept)
    }

    /// The top directions of each problem scaled to unit variance (problems x p x K,
    /// K the largest of `kept`; a problem's directions past its own count are zero).
    pub(crate) fn whitening(&self, kept: &[usize]) -> Tensor {
        let width = kept.iter().copied().max().unwrap_or(0);
        let scale: Vec<f64> = self
            .variances
            .iter()
            .zip(kept)
            .flat_map(|(v, &k)| (0..width).map(move |i| if i < k { v[i].powf(-0.5) } else { 0.0 }))
            .collect();
        let scale = Tensor::from_slice(&scale)
            .view([kept.len() as i64, 1, width as i64])
            .to_device(self.directions.device())
            .to_kind(self.directions.kind());
        self.directions.narrow(2, 0, width as i64) * scale
    }
}

pub(crate) fn keep_one(variances: &[f64], rank: usize, keep: Keep, side: Side, rows: i64) -> Result<usize, SimilarityError> {
    match keep {
        Keep::All => Ok(rank),
        Keep::Variance(fraction) => Ok(fewest_holding(variances, fraction).min(rank)),
        Keep::Singular(fraction) => {
            // The singular values are the square roots of the variances. Those past the
            // rank are rounding noise (zero in exact arithmetic), which a square root would
            // magnify: left out of the sum.
            let singular: Vec<f64> = variances[..rank.min(variances.len())].iter().map(|v| v.sqrt()).collect();
            Ok(fewest_holding(&singular, fraction).min(rank))
        }
        Keep::TopK(k) => {
            let refuse = |what: String| Err(SimilarityError::layer(side, format!("--top-k {k} asks for more directions than {what}")));
            if k as i64 > rows {
                refuse(format!("the {rows} datapoints can hold"))
            } else if k > variances.len() {
                refuse(format!("its {} non-constant neurons", variances.len()))
            } else if k > rank {
                refuse(format!("the {rank} linearly independent ones the activations hold"))
            } else {
                Ok(k)
            }
        }
    }
}

/// The fewest of `values` (descending, non-negative) whose sum reaches `fraction` of the
/// sum of all.
fn fewest_holding(values: &[f64], fraction: f64) -> usize {
    let total: f64 = values.iter().sum();
    let mut cumulative = 0.0;
    let mut k = 0;
    for v in values {
        cumulative += v;
        k += 1;
        if cumulative / total >= fraction {
            break;
        }
    }
    k
}

/// Canonical correlations (descending) of each problem between its top `kept_a` and
/// `kept_b` whitened principal directions.
pub(crate) fn correlations(cab: &Tensor, wa: &Tensor, wb: &Tensor, kept_a: &[usize], kept_b: &[usize]) -> Vec<Vec<f64>> {
    singular_values(&products(&wa.adjoint(), &products(cab, wb)), kept_a, kept_b)
}

/// The singular values (descending, at most 1) of each matrix of a stack whose problems
/// keep `kept_a` rows and `kept_b` columns (the rest zero): the first `min(k_a, k_b)` of
/// each, the canonical correlations when the matrix is `W_a' C_ab W_b`.
pub(crate) fn singular_values(t: &Tensor, kept_a: &[usize], kept_b: &[usize]) -> Vec<Vec<f64>> {
    let width = t.size()[1].min(t.size()[2]) as usize;
    // Canonical correlations are at most 1; anything above is rounding.
    // (linalg_svdvals would need a driver argument that tch cannot leave unset.)
    let [s] = stacked(t, |t| [t.svd(true, false).1]);
    let s = to_host(&s.clamp_max(1.0));
    s.chunks(width.max(1)).zip(kept_a.iter().zip(kept_b)).map(|(s, (&ka, &kb))| s[..ka.min(kb)].to_vec()).collect()
}

/// Runs a decomposition `f` of a stack of matrices (along the first axis) where it is
/// fastest: on the CPU split across rayon's threads when libtorch runs single-threaded
/// there (see [`host::single_threaded`]); on a GPU as one batched call when libtorch batches
/// it there, and otherwise on the CPU's threads ([`solve_on_host`]).
pub(crate) fn stacked<const K: usize>(t: &Tensor, f: impl Fn(&Tensor) -> [Tensor; K] + Sync) -> [Tensor; K] {
    if solve_on_host(t.device(), &t.size()) {
        let device = t.device();
        let on_host = t.to_device(Device::Cpu);
        let out = host::on_rayon(Device::Cpu, || stacked(&on_host, f));
        return out.map(|x| x.to_device(device));
    }
    let split = t.device() == Device::Cpu && tch::get_num_threads() == 1 && t.dim() == 3 && t.size()[0] > 1;
    if !split {
        return f(t);
    }
    let parts: Vec<[Tensor; K]> = t.chunk(rayon::current_num_threads().max(1) as i64, 0).into_par_iter().map(|part| f(&part)).collect();
    std::array::from_fn(|k| Tensor::cat(&parts.iter().map(|p| &p[k]).collect::<Vec<_>>(), 0))
}

/// The largest side of a matrix that libtorch's CUDA eigh and SVD solve as one batched
/// call over a stack (cuSOLVER's Jacobi `syevjBatched`/`gesvdjBatched`); above it they
/// loop over the stack, one small launch-bound solve after another.
const GPU_BATCHED_SIDE: i64 = 32;

/// Whether a decomposition of a tensor of `shape` on `device` is better solved on the
/// CPU: a stack of several matrices on a GPU, each too large for libtorch's batched GPU
/// solvers (the DFT's hundreds of 64 x 64 problems per layer). A single matrix (a dense
/// layer's) stays on the GPU, where its solver is a large one.
pub(crate) fn solve_on_host(device: Device, shape: &[i64]) -> bool {
    device.is_cuda() && shape.len() == 3 && shape[0] > 1 && shape[1].max(shape[2]) > GPU_BATCHED_SIDE
}

pub(crate) fn to_host(t: &Tensor) -> Vec<f64> {
    let t = t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous();
    Vec::<f64>::try_from(&t.flatten(0, -1)).expect("a float tensor converts to Vec<f64>")
}

#[cfg(test)]
mod placement_tests {
    use super::*;

    #[test]
    fn stacks_of_matrices_too_large_to_batch_on_a_gpu_are_solved_on_the_cpu() {
        let gpu = Device::Cuda(0);
        assert!(solve_on_host(gpu, &[514, 64, 64]), "the DFT's stack of 64 x 64 problems");
        assert!(!solve_on_host(gpu, &[514, 32, 32]), "batched on the GPU");
        assert!(!solve_on_host(gpu, &[1, 2048, 2048]), "one large matrix: the GPU's solver");
        assert!(!solve_on_host(gpu, &[2048, 2048]));
        assert!(!solve_on_host(Device::Cpu, &[514, 64, 64]), "already on the CPU");
    }
}
