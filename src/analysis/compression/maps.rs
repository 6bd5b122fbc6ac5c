//! How a compressed layer's output is changed ([`Map`]): projected onto k SVCCA
//! directions (a conv layer's on the CPU by the kernel in `projection.rs`), or k units
//! kept and the others held at their mean; the maps of each [`CompressionMethod`] made
//! from a layer's fit; and the stacking that evaluates several maps of a block at once.

use super::arguments::CompressionMethod;
use super::fit::FittedLayer;
use crate::data::rng::Rng;
use tch::Tensor;

/// How a compressed layer's output is changed; `mean` (the layer's, from the fit) is
/// given where it is applied.
pub enum Map {
    /// `x -> mean + (x - mean) P` (`P` m x m over the units, or over the channels at each
    /// position of a conv layer), computed in float64.
    Project(Tensor),
    /// The units marked true kept as they are, the others set to their mean: the
    /// baselines, and k = 0 of every method. Computed in the layer's own kind: the
    /// float64 projection by this 0/1 diagonal gives the same float32 numbers (a kept
    /// `(x - m) + m` rounds back to `x`; a dropped unit is `m`), in one pass over memory
    /// where the projection makes six; and equal selections can be evaluated once.
    Keep(Vec<bool>),
}

impl Map {
    /// The map keeping the units in `units` of `of` (the others at their mean).
    fn keeping(of: usize, units: &[i64]) -> Map {
        let mut keep = vec![false; of];
        for &i in units {
            keep[i as usize] = true;
        }
        Map::Keep(keep)
    }

    /// `h` (a layer's output) mapped.
    pub fn apply(&self, h: &Tensor, mean: &Tensor) -> Tensor {
        stack(h, 1, |_, out| self.apply_into(h, mean, out))
    }

    /// `h` mapped, written into `out` (its shape and layout: a block of a stacked batch).
    pub(super) fn apply_into(&self, h: &Tensor, mean: &Tensor, out: &Tensor) {
        match self {
            Map::Project(p) => {
                // A conv layer's block on the CPU in one pass (see `projection`).
                if h.dim() == 4 && super::projection::project_channels(&h.contiguous(), mean, p, out) {
                    return;
                }
                // Else over rows of units (a conv layer's block transposed to positions x
                // channels); the float32 rows promoted to float64 by the subtraction, the
                // result rounded back (and a conv layer's transposed back) as it is copied
                // into `out`.
                let size = h.size();
                let units = size[1];
                let rows = if h.dim() == 4 { h.permute([0, 2, 3, 1]).reshape([-1, units]) } else { h.shallow_clone() };
                let mut y = (rows - mean).matmul(p);
                y += mean;
                let y = if h.dim() == 4 { y.view([size[0], size[2], size[3], units]).permute([0, 3, 1, 2]) } else { y };
                out.shallow_clone().copy_(&y);
            }
            Map::Keep(keep) => {
                // `dropped + x * kept`, `kept` 1 or 0 and `dropped` 0 or the mean: a kept
                // unit's `0 + x * 1` and a dropped one's `mean + x * 0` are exact (for a
                // finite x), in one vectorised pass (libtorch's select is not vectorised).
                let shape: Vec<i64> = if h.dim() == 4 { vec![1, keep.len() as i64, 1, 1] } else { vec![1, keep.len() as i64] };
                let kept: Vec<f64> = keep.iter().map(|&k| if k { 1.0 } else { 0.0 }).collect();
                let kept = Tensor::from_slice(&kept).to_device(h.device()).view(shape.as_slice());
                // The mean times 0 or 1 (exact), on the mean's device: no copy to the host.
                let dropped = (mean.view(shape.as_slice()) * (&kept * -1.0 + 1.0)).to_kind(h.kind());
                let _ = dropped.addcmul_out(out, h, &kept.to_kind(h.kind()));
            }
        }
    }

    /// Every unit kept: the network unchanged.
    pub(super) fn is_identity(&self) -> bool {
        matches!(self, Map::Keep(keep) if keep.iter().all(|&k| k))
    }

    /// The same map (two selections of the same units; a projection is only itself).
    pub(super) fn same(&self, other: &Map) -> bool {
        matches!((self, other), (Map::Keep(a), Map::Keep(b)) if a == b)
    }
}

/// Of `items`, the first of each run of equal ones (`same`), and for each item the
/// position of its representative in that list: equal maps are evaluated once.
pub(super) fn distinct<T>(items: &[T], same: impl Fn(&T, &T) -> bool) -> (Vec<usize>, Vec<usize>) {
    let mut firsts: Vec<usize> = Vec::new();
    let mut rep = Vec::with_capacity(items.len());
    for (i, x) in items.iter().enumerate() {
        match firsts.iter().position(|&f| same(&items[f], x)) {
            Some(r) => rep.push(r),
            None => {
                rep.push(firsts.len());
                firsts.push(i);
            }
        }
    }
    (firsts, rep)
}

/// `copies` blocks shaped like `block`, one after the other along the batch, block j
/// written by `fill(j, block j)`: the maps' outputs written in place, where
/// concatenating them would copy each once more.
pub(super) fn stack(block: &Tensor, copies: usize, fill: impl Fn(usize, &Tensor)) -> Tensor {
    let size = block.size();
    let n = size[0] * copies as i64;
    let out = Tensor::empty([&[n], &size[1..]].concat().as_slice(), (block.kind(), block.device()));
    for j in 0..copies {
        fill(j, &out.narrow(0, j as i64 * size[0], size[0]));
    }
    out
}

impl FittedLayer {
    /// The map that keeps `k` SVCCA directions, the `k` most active units or `k` random
    /// units (draw `draw`). No direction is no unit: the layer at its mean.
    pub fn method(&self, method: CompressionMethod, k: usize, draw: u64, seed: u64) -> Map {
        let f = &self.fitted;
        match method {
            CompressionMethod::Svcca if k == 0 => Map::keeping(f.units(), &[]),
            CompressionMethod::Svcca => Map::Project(f.directions.projection(k.min(f.directions.len()))),
            CompressionMethod::Active => Map::keeping(f.units(), &f.active[..k]),
            CompressionMethod::Random => {
                let mut perm = Rng::stream(seed, &[0x7261_6e64, draw]).permutation(f.units()); // "rand"
                perm.truncate(k);
                Map::keeping(f.units(), &perm)
            }
        }
    }

    /// Figure 2b's map: the projection onto the top `k` SVCCA directions, then only the
    /// `m` units most important to them ([`crate::similarity::Fitted::important`]) kept,
    /// the others at their mean (`P_k` with the other units' columns zeroed). With `m` =
    /// every unit it is `P_k` itself.
    pub fn distributed(&self, k: usize, m: usize) -> Map {
        let map = self.method(CompressionMethod::Svcca, k, 0, 0);
        // k = 0 is the layer at its mean, a selection of no unit, whatever m.
        let Map::Project(p) = &map else { return map };
        let units = self.fitted.units();
        if m >= units {
            return map;
        }
        let mut mask = vec![0.0f64; units];
        for i in self.fitted.important(k, m) {
            mask[i as usize] = 1.0;
        }
        let mask = Tensor::from_slice(&mask).to_device(p.device()).unsqueeze(0);
        Map::Project(p * mask)
    }
}

#[cfg(test)]
mod tests {
    use super::{distinct, stack, Map};
    use tch::{Device, Kind, Tensor};

    /// `mean + (x - mean) P` the plain way: float64 throughout, NCHW out.
    fn reference(h: &Tensor, mean: &Tensor, p: &Tensor) -> Tensor {
        let conv = h.dim() == 4;
        let x = if conv { h.permute([0, 2, 3, 1]) } else { h.shallow_clone() };
        let y = (x.to_kind(Kind::Double) - mean).matmul(p) + mean;
        let y = if conv { y.permute([0, 3, 1, 2]).contiguous() } else { y };
        y.to_kind(h.kind())
    }

    /// A selection gives what the float64 projection by its 0/1 diagonal gives, a
    /// projection what the plain float64 formula gives (in the layer's own layout, a conv
    /// layer's NCHW), and stacked maps are the maps one by one.
    #[test]
    fn maps_give_the_float64_projections_numbers() {
        tch::manual_seed(5);
        let mean = Tensor::randn([5], (Kind::Double, Device::Cpu)).abs() * 3.0;
        let keep = vec![true, false, false, true, true];
        let diagonal = Tensor::from_slice(&[1.0f64, 0.0, 0.0, 1.0, 1.0]).diag(0);
        let p = Tensor::randn([5, 5], (Kind::Double, Device::Cpu));
        for shape in [vec![3i64, 5, 4, 6], vec![7, 5]] {
            let h = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu)).relu();
            let selected = Map::Keep(keep.clone()).apply(&h, &mean);
            assert!(selected.equal(&reference(&h, &mean, &diagonal)), "{shape:?}: selection");
            let projected = Map::Project(p.shallow_clone()).apply(&h, &mean);
            // A conv layer's projection sums in its own order: within a float32 step.
            let want = reference(&h, &mean, &p);
            let step = want.abs().to_kind(Kind::Double) * f64::from(f32::EPSILON) + 1e-30;
            assert!(
                bool::try_from((&projected - &want).abs().to_kind(Kind::Double).le_tensor(&step).all()).unwrap(),
                "{shape:?}: projection"
            );
            assert!(projected.is_contiguous() && selected.is_contiguous(), "{shape:?}: the layer's own layout");
            let maps = [Map::Project(p.shallow_clone()), Map::Keep(keep.clone())];
            let stacked = stack(&h, 2, |j, out| maps[j].apply_into(&h, &mean, out));
            assert!(stacked.equal(&Tensor::cat(&[projected, selected], 0)), "{shape:?}: stacked");
        }
        assert!(Map::Keep(vec![true; 3]).is_identity() && !Map::Keep(keep.clone()).is_identity());
        assert!(!Map::Project(p.shallow_clone()).is_identity());
    }

    #[test]
    fn equal_selections_are_evaluated_once() {
        let maps = [
            Map::Keep(vec![false, false]),
            Map::Project(Tensor::zeros([2, 2], (Kind::Double, Device::Cpu))),
            Map::Keep(vec![true, false]),
            Map::Keep(vec![false, false]),
            Map::Project(Tensor::zeros([2, 2], (Kind::Double, Device::Cpu))),
        ];
        let (firsts, rep) = distinct(&maps, Map::same);
        assert_eq!(firsts, [0, 1, 2, 4]);
        assert_eq!(rep, [0, 1, 2, 0, 3]);
    }
}
