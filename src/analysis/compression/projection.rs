//! A conv layer's float32 output projected in float64 at every position, `mean + (x -
//! mean) P` over the channels (`--compression`'s SVCCA maps), in one pass on the CPU.
//!
//! Through libtorch the same formula is five passes over a block and its float64 copies
//! (transpose to positions x channels, subtract, multiply, add, round and transpose
//! back), each memory-bound (benches/records/2026-12-02.md, the compression rerun).
//! Here each image is read once,
//! its centred channels kept in a small float64 buffer, and each output channel
//! accumulated over the input channels in order and written once.
//!
//! The numbers: the same formula in float64, each output the sum over the input
//! channels in order by fused multiply-adds, then the mean added and the result rounded
//! to float32. A BLAS product may sum in another order, so the two agree to float64
//! rounding before the final rounding to float32, which leaves them equal but for a
//! rare last-bit difference (tests: against the float64 formula).

use crate::host;
use rayon::prelude::*;
use tch::{Device, Kind, Tensor};

/// Writes `mean + (h - mean) P` into `out` for an N x C x H x W float32 block `h`, over
/// the channels at each position (`mean`: C, `p`: C x C, float64), if both are contiguous
/// CPU float32 tensors of one shape and `out` shares no memory with `h`; else returns
/// false and writes nothing.
pub(super) fn project_channels(h: &Tensor, mean: &Tensor, p: &Tensor, out: &Tensor) -> bool {
    let fits = |t: &Tensor| t.device() == Device::Cpu && t.kind() == Kind::Float && t.dim() == 4 && t.is_contiguous();
    if !(fits(h) && fits(out) && h.size() == out.size()) {
        return false;
    }
    let size = h.size();
    let (images, channels, positions) = (size[0] as usize, size[1] as usize, (size[2] * size[3]) as usize);
    let copied = |t: &Tensor| Vec::<f64>::try_from(&t.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().view(-1)).expect("float64");
    let (mean, p) = (copied(mean), copied(p));
    assert!(mean.len() == channels && p.len() == channels * channels, "mean and P over the {channels} channels");
    let image = channels * positions;
    if images * image == 0 {
        // Nothing to write (and an empty tensor's data pointer may be null).
        return true;
    }
    // `out` is the caller's block of a fresh stack, passed as a shared handle; a handle of
    // its own names it to the view, which is refused where it overlaps `h` (`mean` and
    // `P` are copies already).
    let mut out = out.shallow_clone();
    let (Some([y]), Some(x)) = (host::view::slices_mut_apart::<f32, 1>([&mut out], &[h]), host::view::slice::<f32>(h)) else {
        return false;
    };
    y.par_chunks_mut(image)
        .zip(x.par_chunks(image))
        .for_each_init(|| vec![0.0f64; image], |centred, (y, x)| project_image(x, y, &mean, &p, centred));
    true
}

/// One image (C x positions), with the widest vector instructions the CPU has: the body is
/// compiled for AVX2 with FMA where the CPU has them (the binary itself targets baseline
/// x86-64), the same arithmetic either way.
fn project_image(x: &[f32], y: &mut [f32], mean: &[f64], p: &[f64], centred: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has the features the function is compiled for.
        return unsafe { project_image_avx2(x, y, mean, p, centred) };
    }
    project_image_body(x, y, mean, p, centred)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn project_image_avx2(x: &[f32], y: &mut [f32], mean: &[f64], p: &[f64], centred: &mut [f64]) {
    project_image_body(x, y, mean, p, centred)
}

/// Output channels and positions computed together: a block of `J` x `S` sums stays in
/// registers while the input channels go by, each centred vector loaded once for `J`
/// outputs.
const J: usize = 4;
const S: usize = 8;

#[inline(always)]
fn project_image_body(x: &[f32], y: &mut [f32], mean: &[f64], p: &[f64], centred: &mut [f64]) {
    let channels = mean.len();
    let positions = x.len() / channels;
    for (c, (d, x)) in centred.chunks_exact_mut(positions).zip(x.chunks_exact(positions)).enumerate() {
        for (d, &x) in d.iter_mut().zip(x) {
            *d = f64::from(x) - mean[c];
        }
    }
    // Every output is the sum over the input channels in order, by fused multiply-adds
    // from zero, then the mean added: blocked or not, the same arithmetic.
    for j in (0..channels).step_by(J) {
        for s in (0..positions).step_by(S) {
            if j + J <= channels && s + S <= positions {
                let mut sums = [[0.0f64; S]; J];
                for c in 0..channels {
                    let d: &[f64; S] = centred[c * positions + s..][..S].try_into().expect("S values");
                    for (jj, sum) in sums.iter_mut().enumerate() {
                        let w = p[c * channels + j + jj];
                        for (sum, &d) in sum.iter_mut().zip(d) {
                            *sum = d.mul_add(w, *sum);
                        }
                    }
                }
                for (jj, sum) in sums.iter().enumerate() {
                    for (y, &sum) in y[(j + jj) * positions + s..][..S].iter_mut().zip(sum) {
                        *y = (sum + mean[j + jj]) as f32;
                    }
                }
            } else {
                for jj in j..(j + J).min(channels) {
                    for ss in s..(s + S).min(positions) {
                        let sum = (0..channels).fold(0.0f64, |sum, c| centred[c * positions + ss].mul_add(p[c * channels + jj], sum));
                        y[jj * positions + ss] = (sum + mean[jj]) as f32;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::project_channels;
    use tch::{Device, Kind, Tensor};

    /// The float64 formula computed the plain way, rounded to float32.
    fn reference(h: &Tensor, mean: &Tensor, p: &Tensor) -> Tensor {
        let x = h.permute([0, 2, 3, 1]).to_kind(Kind::Double);
        ((x - mean).matmul(p) + mean).permute([0, 3, 1, 2]).to_kind(Kind::Float)
    }

    #[test]
    fn projects_as_the_float64_formula_does() {
        tch::manual_seed(7);
        let opts = (Kind::Double, Device::Cpu);
        for shape in [[3i64, 5, 4, 6], [2, 16, 14, 14], [1, 1, 1, 1], [4, 3, 1, 7]] {
            let c = shape[1];
            let h = Tensor::randn(shape, (Kind::Float, Device::Cpu)).relu() * 3.0;
            let mean = Tensor::randn([c], opts).abs();
            let p = Tensor::randn([c, c], opts);
            let out = Tensor::full(shape, f64::NAN, (Kind::Float, Device::Cpu));
            assert!(project_channels(&h, &mean, &p, &out), "{shape:?}");
            let want = reference(&h, &mean, &p);
            // Equal but for the float64 sum's order: at most one float32 step apart, and
            // nearly all equal.
            let step = want.abs().to_kind(Kind::Double) * f64::from(f32::EPSILON) + 1e-30;
            let apart = (&out - &want).abs().to_kind(Kind::Double);
            assert!(bool::try_from(apart.le_tensor(&step).all()).unwrap(), "{shape:?}: more than one float32 step from the formula");
            let equal = out.eq_tensor(&want).to_kind(Kind::Double).mean(Kind::Double).double_value(&[]);
            assert!(equal > 0.99, "{shape:?}: only {equal} equal");
        }
    }

    #[test]
    fn other_tensors_are_left_to_the_caller() {
        let opts = (Kind::Float, Device::Cpu);
        let (mean, p) = (Tensor::zeros([2], (Kind::Double, Device::Cpu)), Tensor::eye(2, (Kind::Double, Device::Cpu)));
        let h = Tensor::ones([1, 2, 3, 3], opts);
        let out = Tensor::zeros([1, 2, 3, 3], opts);
        assert!(!project_channels(&h.to_kind(Kind::Double), &mean, &p, &out), "float64 input");
        assert!(!project_channels(&h.transpose(2, 3), &mean, &p, &out), "a strided view");
        assert!(!project_channels(&Tensor::ones([2, 6], opts), &mean, &p, &Tensor::zeros([2, 6], opts)), "dense");
        assert!(!project_channels(&h, &mean, &p, &Tensor::zeros([1, 2, 3, 4], opts)), "another shape");
        assert!(!project_channels(&h, &mean, &p, &h.shallow_clone()), "out is h");
        let two = Tensor::ones([2, 2, 3, 3], opts);
        assert!(!project_channels(&two.narrow(0, 0, 1), &mean, &p, &two.narrow(0, 0, 1)), "out is a view of h");
        assert!(bool::try_from(h.eq(1.0).all()).unwrap(), "h unchanged");
        let none = Tensor::zeros([0, 2, 3, 3], opts);
        assert!(project_channels(&none, &mean, &p, &none.zeros_like()), "no images: nothing to do");
        assert!(bool::try_from(out.eq(0.0).all()).unwrap(), "nothing written");
    }
}
