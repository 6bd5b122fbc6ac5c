//! Augmentation of a whole batch at once, on the device the batch lives on: random crop
//! after zero padding, and horizontal flip. The random choices are drawn on the host (a
//! few integers per image, from a keyed [`Rng`](super::rng::Rng) stream so a resumed run
//! repeats them), uploaded with the epoch's batch order (`train::trainer`: one upload
//! per epoch, none per step) and applied as one gather, not image by image.

use super::rng::Rng;
use tch::{Kind, Tensor};

/// Integers drawn per image: row offset, column offset, mirrored (0 or 1).
pub(crate) const CHOICES: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Augment {
    /// Zero padding on each side before the random crop (0: no crop).
    pub padding: i64,
    pub flip: bool,
}

impl Augment {
    pub(crate) fn is_identity(&self) -> bool {
        self.padding == 0 && !self.flip
    }

    /// The choices for `n` images from `rng`, [`CHOICES`] per image, appended to `out`:
    /// the crop's offsets into the padded image (each in `0..=2 * padding`) and whether
    /// the image is mirrored (with probability 1/2 when `flip`).
    pub(crate) fn draw(&self, n: usize, rng: &mut Rng, out: &mut Vec<i64>) {
        let p = self.padding;
        for _ in 0..n {
            let (dy, dx) = if p > 0 { (rng.below(2 * p as u64 + 1) as i64, rng.below(2 * p as u64 + 1) as i64) } else { (p, p) };
            let mirrored = self.flip && rng.below(2) == 1;
            out.extend([dy, dx, mirrored as i64]);
        }
    }

    /// Augments `images` (N x C x H x W, any dtype) by `choices` (N x [`CHOICES`], int64,
    /// on the images' device, from [`Augment::draw`]): each image is cropped back to
    /// H x W from the padded image at its offsets, and mirrored where chosen. Every
    /// index is computed on the device.
    pub(crate) fn apply(&self, images: &Tensor, choices: &Tensor) -> Tensor {
        if self.is_identity() {
            return images.shallow_clone();
        }
        let (n, _c, h, w) = images.size4().expect("images are N x C x H x W");
        let p = self.padding;
        let device = images.device();
        let padded = if p > 0 { images.constant_pad_nd([p, p, p, p]) } else { images.shallow_clone() };
        let (dy, dx, mirrored) = (choices.narrow(1, 0, 1), choices.narrow(1, 1, 1), choices.narrow(1, 2, 1));
        // Source row dy + y; source column dx + x, or dx + (w - 1 - x) when mirrored.
        let y = Tensor::arange(h, (Kind::Int64, device)).view([1, h]);
        let x = Tensor::arange(w, (Kind::Int64, device)).view([1, w]);
        let rows = (dy + y).view([n, h, 1]);
        let cols = (dx + &x + mirrored * (x * -2 + (w - 1))).view([n, 1, w]);
        // Gather in N x H x W x C order: three broadcast index tensors pick, for each
        // output pixel, its image, source row and source column.
        let nhwc = padded.permute([0, 2, 3, 1]);
        let bi = Tensor::arange(n, (Kind::Int64, device)).view([n, 1, 1]);
        nhwc.index(&[Some(bi), Some(rows), Some(cols)]).permute([0, 3, 1, 2]).contiguous()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    fn augment(a: &Augment, x: &Tensor, seed: u64) -> Tensor {
        let mut choices = Vec::new();
        a.draw(x.size()[0] as usize, &mut Rng::stream(seed, &[]), &mut choices);
        a.apply(x, &Tensor::from_slice(&choices).view([-1, CHOICES as i64]))
    }

    #[test]
    fn crops_are_shifted_copies_and_flips_mirror() {
        let x = Tensor::arange(2 * 3 * 6 * 6, (Kind::Float, Device::Cpu)).view([2, 3, 6, 6]) + 1.0;
        let flip = Augment { padding: 0, flip: true };
        let mut seen_flip = false;
        for s in 0..8 {
            let y = augment(&flip, &x, s);
            for i in 0..2 {
                let (xi, yi) = (x.get(i), y.get(i));
                let same = xi.equal(&yi);
                let mirrored = xi.flip([2]).equal(&yi);
                assert!(same || mirrored);
                seen_flip |= mirrored;
            }
        }
        assert!(seen_flip);
        let crop = Augment { padding: 2, flip: false };
        let y = augment(&crop, &x, 3);
        assert_eq!(y.size(), x.size());
        // Every nonzero value of a crop sits at its own value's place shifted by one offset.
        let padded = x.constant_pad_nd([2, 2, 2, 2]);
        for i in 0..2 {
            let found = (0..5).any(|dy| (0..5).any(|dx| padded.get(i).narrow(1, dy, 6).narrow(2, dx, 6).equal(&y.get(i))));
            assert!(found, "image {i} is not a crop of its padded self");
        }
    }

    #[test]
    fn chosen_offsets_and_mirrors_pick_the_pixels_they_name() {
        let x = Tensor::arange(2 * 6 * 6, (Kind::Float, Device::Cpu)).view([2, 1, 6, 6]) + 1.0;
        let a = Augment { padding: 2, flip: true };
        // Image 0: offsets (0, 4), not mirrored; image 1: offsets (3, 1), mirrored.
        let choices = Tensor::from_slice(&[0i64, 4, 0, 3, 1, 1]).view([2, 3]);
        let y = a.apply(&x, &choices);
        let padded = x.constant_pad_nd([2, 2, 2, 2]);
        assert!(y.get(0).equal(&padded.get(0).narrow(1, 0, 6).narrow(2, 4, 6)));
        assert!(y.get(1).equal(&padded.get(1).narrow(1, 3, 6).narrow(2, 1, 6).flip([2])));
    }
}
