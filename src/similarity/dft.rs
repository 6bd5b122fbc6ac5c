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

use crate::host;
use rayon::prelude::*;
use rustfft::num_complex::Complex64;
use rustfft::num_traits::AsPrimitive;
use rustfft::FftPlanner;
use std::mem::MaybeUninit;
use tch::{Device, Kind, Tensor};

/// Which frequencies of the common grid are computed, and what each stands for.
#[derive(Debug, Clone)]
pub(crate) struct FrequencyPlan {
    /// The common spatial size.
    pub height: i64,
    pub width: i64,
    /// Signed frequencies (row, column) that are computed.
    pub computed: Vec<(i64, i64)>,
    /// How many grid frequencies each computed one stands for (1, or 2 for a pair).
    pub multiplicity: Vec<usize>,
    /// For each grid location in numpy order (row-major), the index into `computed`.
    pub source: Vec<usize>,
    /// Whether each axis (height, width) was cropped from a larger layer's.
    pub cropped: (bool, bool),
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
    pub(crate) fn new(a: (i64, i64), b: (i64, i64)) -> FrequencyPlan {
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
        FrequencyPlan { height: h, width: w, computed, multiplicity, source, cropped: (crop_h, crop_w) }
    }

    /// Locations (row, column FFT indices of the common grid) in numpy order.
    pub(crate) fn locations(&self) -> impl Iterator<Item = [i64; 2]> + '_ {
        (0..self.height).flat_map(move |i| (0..self.width).map(move |j| [i, j]))
    }

    /// For a layer of spatial size `(h, w)`, the flat `h * w` FFT index of each computed
    /// frequency.
    fn flat_indices(&self, h: i64, w: i64) -> Vec<i64> {
        self.computed.iter().map(|&(ku, kv)| index(ku, h) * w + index(kv, w)).collect()
    }

    /// The computed frequencies of a block of activations (rows x C x H x W, real) less
    /// `shift` (one C x H x W image): a stack of frequencies x rows x 2C of `kind`
    /// (float64, or float32 for [`super::Precision::Float32`]), each row the C real parts
    /// then the C imaginary parts (the form [`super::Moments`] sums complex data in).
    /// rustfft on the CPU, libtorch's FFT elsewhere.
    ///
    /// The transform runs in float64 either way; a float32 spectrum is its float64 values
    /// rounded as they are written, so no float64 copy of it is ever held (it is the
    /// largest thing an analysis holds).
    ///
    /// The shift is the accumulator's centring shift applied before the transform (the
    /// DFT is linear), where it costs nothing: see [`super::conv`].
    pub(crate) fn spectrum(&self, x: &Tensor, shift: &Tensor, kind: Kind) -> Tensor {
        let [one] = FrequencyPlan::spectra(&[self], x, shift, kind).try_into().expect("one plan");
        one
    }

    /// The CUDA path (it runs on CPU tensors too, which is how it is tested here).
    pub(crate) fn spectrum_torch(&self, x: &Tensor, shift: &Tensor, kind: Kind) -> Tensor {
        let s = x.size();
        let (rows, c, h, w) = (s[0], s[1], s[2], s[3]);
        let idx = Tensor::from_slice(&self.flat_indices(h, w)).to_device(x.device());
        let spectrum = (x.to_kind(Kind::Double) - shift)
            .fft_fft2(None::<&[i64]>, [-2, -1], "backward")
            .reshape([rows, c, h * w])
            .index_select(2, &idx);
        // Contiguous in frequencies x rows x 2C (the batched products that follow run
        // much slower on a permuted view), converted to `kind` in the same copy.
        let frequencies = idx.size()[0];
        let mut out = Tensor::empty([frequencies, rows, 2, c], (kind, x.device()));
        out.copy_(&spectrum.view_as_real().permute([2, 0, 3, 1])); // from rows x C x F x 2
        out.reshape([frequencies, rows, 2 * c])
    }

    /// The CPU path: 2-D FFTs of each datapoint's channels, datapoints in parallel, each
    /// writing its values straight into the frequencies x rows x 2C output.
    #[cfg(test)]
    pub(crate) fn spectrum_rustfft(&self, x: &Tensor, shift: &Tensor, kind: Kind) -> Tensor {
        let [one] = FrequencyPlan::spectra_rustfft(&[self], x, shift, kind).try_into().expect("one plan");
        one
    }

    /// [`FrequencyPlan::spectrum`] of one layer for several plans (the layer against
    /// partners of other sizes: its full grid and its crops), from one FFT per datapoint
    /// and channel: a crop is only a choice of frequencies of the same transform.
    pub(crate) fn spectra(plans: &[&FrequencyPlan], x: &Tensor, shift: &Tensor, kind: Kind) -> Vec<Tensor> {
        match x.device() {
            Device::Cpu => FrequencyPlan::spectra_rustfft(plans, x, shift, kind),
            _ => plans.iter().map(|p| p.spectrum_torch(x, shift, kind)).collect(),
        }
    }

    fn spectra_rustfft(plans: &[&FrequencyPlan], x: &Tensor, shift: &Tensor, kind: Kind) -> Vec<Tensor> {
        match kind {
            Kind::Double => FrequencyPlan::spectra_rustfft_as::<f64>(plans, x, shift),
            Kind::Float => FrequencyPlan::spectra_rustfft_as::<f32>(plans, x, shift),
            other => panic!("a spectrum is float64 or float32, not {other:?}"),
        }
    }

    /// [`FrequencyPlan::spectra_rustfft`] into outputs of `U`'s kind.
    fn spectra_rustfft_as<U: Element>(plans: &[&FrequencyPlan], x: &Tensor, shift: &Tensor) -> Vec<Tensor>
    where
        f64: AsPrimitive<U>,
    {
        let s = x.size();
        let (rows, c, h, w) = (s[0] as usize, s[1] as usize, s[2] as usize, s[3] as usize);
        let x = x.to_device(Device::Cpu).contiguous();
        let x = if x.kind() == Kind::Float { x } else { x.to_kind(Kind::Double) };
        let shift = Vec::<f64>::try_from(&shift.to_device(Device::Cpu).to_kind(Kind::Double).contiguous().flatten(0, -1))
            .expect("a float tensor converts to Vec<f64>");
        assert_eq!(shift.len(), c * h * w, "one shift image of C x H x W");
        let sizes: Vec<Vec<i64>> = plans.iter().map(|plan| vec![plan.computed.len() as i64, rows as i64, 2 * c as i64]).collect();
        host::view::write_new_each::<U>(&sizes, |targets| {
            if x.numel() == 0 {
                return;
            }
            match x.kind() {
                Kind::Float => rustfft(plans, host::view::slice::<f32>(&x).expect("checked"), &shift, [rows, c, h, w], targets),
                _ => rustfft(plans, host::view::slice::<f64>(&x).expect("checked"), &shift, [rows, c, h, w], targets),
            }
        })
    }
}

/// The kinds a spectrum is written in: float64, or float32 (each value rounded to
/// nearest from the float64 transform, as libtorch converts).
trait Element: host::view::Element + Default {}

impl Element for f64 {}

impl Element for f32 {}

/// The spectrum of `values - shift` (rows x C x H x W, less one C x H x W image) as
/// frequencies x rows x [re C | im C], for each plan into its output. The transform
/// runs in float64; each value is rounded to `U` as it is gathered.
///
/// Two real channels share one complex FFT (`z = x0 + i x1`), then are told apart by
/// conjugate symmetry: `X0(k) = (Z(k) + conj Z(-k)) / 2`, `X1(k) = (Z(k) - conj Z(-k)) / 2i`:
/// half the FFTs, for a few additions per kept frequency. Each datapoint's spectrum is
/// gathered frequency-major first, so it reaches the output as contiguous rows of C.
fn rustfft<T: Copy + Into<f64> + Sync, U: Element>(
    plans: &[&FrequencyPlan],
    values: &[T],
    shift: &[f64],
    [rows, c, h, w]: [usize; 4],
    outs: &mut [&mut [MaybeUninit<U>]],
) where
    f64: AsPrimitive<U>,
{
    // For each plan and kept frequency: where it and its mirror -k sit in the
    // column-major (v * h + u) result of the 2-D FFT.
    let at: Vec<Vec<(usize, usize)>> = plans
        .iter()
        .map(|plan| {
            plan.flat_indices(h as i64, w as i64)
                .iter()
                .map(|&flat| {
                    let (u, v) = (flat as usize / w, flat as usize % w);
                    (v * h + u, ((w - v) % w) * h + (h - u) % h)
                })
                .collect()
        })
        .collect();
    let mut planner = FftPlanner::<f64>::new();
    let (fft_w, fft_h) = (planner.plan_fft_forward(w), planner.plan_fft_forward(h));
    let scratch_len = fft_w.get_inplace_scratch_len().max(fft_h.get_inplace_scratch_len());
    let zero = Complex64::new(0.0, 0.0);
    for (out, at) in outs.iter().zip(&at) {
        assert_eq!(out.len(), at.len() * rows * 2 * c);
    }
    let mut targets = host::view::RowSets::new(outs, rows, 2 * c);
    let plane = h * w;
    values.par_chunks(c * plane).zip(targets.par_rows()).for_each_init(
        || {
            let spectra: Vec<Vec<U>> = at.iter().map(|a| vec![U::default(); a.len() * 2 * c]).collect();
            (vec![zero; plane], vec![zero; plane], vec![zero; scratch_len], spectra)
        },
        |(image, columns, scratch, spectra), (input, mut target)| {
            for c0 in (0..c).step_by(2) {
                let x0 = &input[c0 * plane..(c0 + 1) * plane];
                let s0 = &shift[c0 * plane..(c0 + 1) * plane];
                let x1 = (c0 + 1 < c).then(|| &input[(c0 + 1) * plane..(c0 + 2) * plane]);
                // One loop per case, no branch inside: they vectorise.
                for ((z, &x), &s) in image.iter_mut().zip(x0).zip(s0) {
                    *z = Complex64::new(x.into() - s, 0.0);
                }
                if let Some(x1) = x1 {
                    let s1 = &shift[(c0 + 1) * plane..(c0 + 2) * plane];
                    for ((z, &x), &s) in image.iter_mut().zip(x1).zip(s1) {
                        z.im = x.into() - s;
                    }
                }
                fft_w.process_with_scratch(image, scratch); // each of the h rows
                for u in 0..h {
                    for v in 0..w {
                        columns[v * h + u] = image[u * w + v];
                    }
                }
                fft_h.process_with_scratch(columns, scratch); // each of the w columns
                for (spectrum, at) in spectra.iter_mut().zip(&at) {
                    for (r, &(k, mirror)) in at.iter().enumerate() {
                        let (z, zm) = (columns[k], columns[mirror].conj());
                        let row = &mut spectrum[r * 2 * c..(r + 1) * 2 * c];
                        let x0 = (z + zm) * 0.5;
                        (row[c0], row[c + c0]) = (x0.re.as_(), x0.im.as_());
                        if x1.is_some() {
                            let x1 = (z - zm) * Complex64::new(0.0, -0.5);
                            (row[c0 + 1], row[c + c0 + 1]) = (x1.re.as_(), x1.im.as_());
                        }
                    }
                }
            }
            // This datapoint's row of each frequency, of each plan's output.
            for (i, (spectrum, at)) in spectra.iter().zip(&at).enumerate() {
                for r in 0..at.len() {
                    target.write(i, r, &spectrum[r * 2 * c..(r + 1) * 2 * c]);
                }
            }
        },
    );
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

#[cfg(test)]
mod tests;
