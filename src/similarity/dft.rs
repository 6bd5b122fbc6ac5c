//! The DFT method for conv layers (the paper's Theorem 1).
//!
//! For translation-invariant data with circular structure, the 2-D discrete Fourier
//! transform over the spatial axes makes the covariance of an `H x W x C` layer
//! block-diagonal, one `C x C` block per spatial frequency, so one CCA over `H W C`
//! neurons splits into `H W` CCAs over `C` complex neurons each: the union of their
//! canonical correlations *is* the full CCA's. For other data it is a close, far
//! cheaper approximation.
//!
//! Definitions (google/svcca `dft_ccas.py`, see tests/fixtures/svcca_ref/README.md):
//! - Layers of different spatial sizes: the larger spectrum is cropped to the smaller
//!   size, keeping signed frequencies `[-n/2, n/2)` on each axis (a low-pass crop that
//!   stays in the frequency domain). A frequency `k` of a layer of size `n` is its FFT
//!   index `k mod n`, so the crop is only a choice of indices.
//! - Frequencies are listed in numpy FFT order (`0, 1, ..., n/2-1, -n/2, ..., -1`).
//! - The layer similarity is the plain mean of every coefficient of every frequency of
//!   the common `h x w` grid (`h w min(C_a, C_b)` coefficients when all are kept).
//!
//! Real input makes frequencies `k` and `-k` complex conjugates with identical canonical
//! correlations, so only one of each pair is computed ([`FrequencyPlan`]): about half.
//! The exception is the Nyquist frequency `-n/2` of a cropped axis, whose mirror `n/2`
//! was cropped away; it is computed on its own.
//!
//! The spectrum comes from rustfft (parallel over datapoints with rayon) on the CPU and
//! from libtorch's FFT on CUDA; the CCAs of all frequencies then run as one batched stack.

use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;
use tch::{Device, Kind, Tensor};

/// Which frequencies of the common grid are computed, and what each stands for.
#[derive(Debug, Clone)]
pub struct FrequencyPlan {
    /// The common spatial size.
    pub height: i64,
    pub width: i64,
    /// Signed frequencies (row, column) that are computed.
    pub computed: Vec<(i64, i64)>,
    /// How many grid frequencies each computed one stands for (1, or 2 for a pair).
    pub multiplicity: Vec<usize>,
    /// For each grid location in numpy order (row-major), the index into `computed`.
    pub source: Vec<usize>,
}

/// Signed frequency of FFT index `i` on an axis of `n` points (numpy's fftfreq * n).
fn signed(i: i64, n: i64) -> i64 {
    if i <= (n - 1) / 2 {
        i
    } else {
        i - n
    }
}

/// The FFT index on an axis of `n` points of a signed frequency within `[-n/2, n/2)`.
fn index(k: i64, n: i64) -> i64 {
    k.rem_euclid(n)
}

/// The grid index of the mirror frequency `-k` of index `i`, if that frequency exists
/// with conjugate values: on an axis cropped from a larger layer, `-(-n/2) = n/2` was
/// cropped away.
fn mirror(i: i64, n: i64, cropped: bool) -> Option<i64> {
    let k = -signed(i, n);
    let in_range = -(n / 2) <= k && k <= (n - 1) / 2;
    (in_range || !cropped).then(|| index(k, n))
}

impl FrequencyPlan {
    /// The plan for two layers of spatial sizes `a` and `b` (height, width).
    pub fn new(a: (i64, i64), b: (i64, i64)) -> FrequencyPlan {
        let (h, w) = (a.0.min(b.0), a.1.min(b.1));
        let (crop_h, crop_w) = (a.0 != b.0, a.1 != b.1);
        let mut computed = Vec::new();
        let mut multiplicity = Vec::new();
        let mut source = vec![usize::MAX; (h * w) as usize];
        for i in 0..h {
            for j in 0..w {
                let at = (i * w + j) as usize;
                let pair = mirror(i, h, crop_h).zip(mirror(j, w, crop_w));
                match pair {
                    // The mirror comes earlier in numpy order: it is computed already.
                    Some((mi, mj)) if (mi, mj) < (i, j) => source[at] = source[(mi * w + mj) as usize],
                    _ => {
                        source[at] = computed.len();
                        computed.push((signed(i, h), signed(j, w)));
                        multiplicity.push(if matches!(pair, Some(m) if m != (i, j)) { 2 } else { 1 });
                    }
                }
            }
        }
        FrequencyPlan {
            height: h,
            width: w,
            computed,
            multiplicity,
            source,
        }
    }

    /// Locations (row, column FFT indices of the common grid) in numpy order.
    pub fn locations(&self) -> impl Iterator<Item = [i64; 2]> + '_ {
        (0..self.height).flat_map(move |i| (0..self.width).map(move |j| [i, j]))
    }

    /// For a layer of spatial size `(h, w)`, the flat `h * w` FFT index of each computed
    /// frequency.
    fn flat_indices(&self, h: i64, w: i64) -> Vec<i64> {
        self.computed
            .iter()
            .map(|&(ku, kv)| index(ku, h) * w + index(kv, w))
            .collect()
    }

    /// The computed frequencies of a block of activations (rows x C x H x W, real):
    /// a complex128 stack of frequencies x rows x C. rustfft on the CPU, libtorch's FFT
    /// elsewhere.
    pub fn spectrum(&self, x: &Tensor) -> Tensor {
        match x.device() {
            Device::Cpu => self.spectrum_rustfft(x),
            _ => self.spectrum_torch(x),
        }
    }

    /// The CUDA path (it runs on CPU tensors too, which is how it is tested here).
    pub fn spectrum_torch(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let (rows, c, h, w) = (s[0], s[1], s[2], s[3]);
        let idx = Tensor::from_slice(&self.flat_indices(h, w)).to_device(x.device());
        x.to_kind(Kind::Double)
            .fft_fft2(None::<&[i64]>, [-2, -1], "backward")
            .reshape([rows, c, h * w])
            .index_select(2, &idx)
            .permute([2, 0, 1])
    }

    /// The CPU path: one 2-D FFT per (datapoint, channel) image, datapoints in parallel.
    pub fn spectrum_rustfft(&self, x: &Tensor) -> Tensor {
        let s = x.size();
        let (rows, c, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize);
        let values = Vec::<f64>::try_from(
            &x.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().flatten(0, -1),
        )
        .expect("a float tensor converts to Vec<f64>");
        let idx: Vec<usize> = self.flat_indices(h as i64, w as i64).iter().map(|&i| i as usize).collect();
        let f = idx.len();
        let mut planner = FftPlanner::<f64>::new();
        let (fft_w, fft_h) = (planner.plan_fft_forward(w), planner.plan_fft_forward(h));
        // Output rows x frequencies x C: each datapoint's share is one contiguous chunk.
        let mut out = vec![Complex64::new(0.0, 0.0); rows * f * c];
        out.par_chunks_mut(f * c)
            .zip(values.par_chunks(c * h * w))
            .for_each_init(
                || (vec![Complex64::new(0.0, 0.0); h * w], vec![Complex64::new(0.0, 0.0); h * w]),
                |(image, columns), (out, input)| {
                    for ch in 0..c {
                        for (z, &v) in image.iter_mut().zip(&input[ch * h * w..(ch + 1) * h * w]) {
                            *z = Complex64::new(v, 0.0);
                        }
                        fft_w.process(image); // every row (h rows of w points)
                        for u in 0..h {
                            for v in 0..w {
                                columns[v * h + u] = image[u * w + v];
                            }
                        }
                        fft_h.process(columns); // every column (w columns of h points)
                        for (r, &flat) in idx.iter().enumerate() {
                            let (u, v) = (flat / w, flat % w);
                            out[r * c + ch] = columns[v * h + u];
                        }
                    }
                },
            );
        // SAFETY: Complex64 is two f64 (repr(C)), the layout of libtorch's complex128.
        let bytes = unsafe { std::slice::from_raw_parts(out.as_ptr() as *const u8, out.len() * 16) };
        Tensor::from_data_size(bytes, &[rows as i64, f as i64, c as i64], Kind::ComplexDouble)
            .permute([1, 0, 2])
    }
}

/// The canonical correlations of one frequency of the grid.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct FrequencyCorrelations {
    /// (row, column) FFT index in the common grid, numpy order.
    pub location: [i64; 2],
    pub kept_a: usize,
    pub kept_b: usize,
    pub correlations: Vec<f64>,
}
