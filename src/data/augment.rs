//! Augmentation of a whole batch at once, on the device the batch lives on: random crop
//! after zero padding, and horizontal flip. The random choices are drawn on the host
//! (a few integers per image, from a keyed [`Rng`](super::rng::Rng) stream so a resumed
//! run repeats them) and applied as one gather, not image by image.

use super::rng::Rng;
use tch::{Device, Kind, Tensor};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    /// Zero padding on each side before the random crop (0: no crop).
    pub padding: i64,
    pub flip: bool,
}

impl Augment {
    pub fn is_identity(&self) -> bool {
        self.padding == 0 && !self.flip
    }

    /// Augments `images` (N x C x H x W, any dtype): each image is cropped back to H x W
    /// from the padded image at a random offset, and mirrored with probability 1/2; the
    /// choices come from `rng`.
    pub fn apply(&self, images: &Tensor, rng: &mut Rng) -> Tensor {
        if self.is_identity() {
            return images.shallow_clone();
        }
        let (n, _c, h, w) = images.size4().expect("images are N x C x H x W");
        let p = self.padding;
        let mut rows = Vec::with_capacity((n * h) as usize);
        let mut cols = Vec::with_capacity((n * w) as usize);
        for _ in 0..n {
            let (dy, dx) = if p > 0 { (rng.below(2 * p as u64 + 1) as i64, rng.below(2 * p as u64 + 1) as i64) } else { (p, p) };
            let mirrored = self.flip && rng.below(2) == 1;
            rows.extend((0..h).map(|y| dy + y));
            cols.extend((0..w).map(|x| dx + if mirrored { w - 1 - x } else { x }));
        }
        let device = images.device();
        let padded = if p > 0 { images.constant_pad_nd([p, p, p, p]) } else { images.shallow_clone() };
        // Gather in N x H x W x C order: three broadcast index tensors pick, for each
        // output pixel, its image, source row and source column.
        let nhwc = padded.permute([0, 2, 3, 1]);
        let bi = Tensor::arange(n, (Kind::Int64, device)).view([n, 1, 1]);
        let ri = upload(&rows, device).view([n, h, 1]);
        let ci = upload(&cols, device).view([n, 1, w]);
        nhwc.index(&[Some(bi), Some(ri), Some(ci)]).permute([0, 3, 1, 2]).contiguous()
    }
}

fn upload(v: &[i64], device: Device) -> Tensor {
    Tensor::from_slice(v).to_device(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crops_are_shifted_copies_and_flips_mirror() {
        let x = Tensor::arange(2 * 3 * 6 * 6, (Kind::Float, Device::Cpu)).view([2, 3, 6, 6]) + 1.0;
        let flip = Augment { padding: 0, flip: true };
        let mut seen_flip = false;
        for s in 0..8 {
            let y = flip.apply(&x, &mut Rng::stream(s, &[]));
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
        let y = crop.apply(&x, &mut Rng::stream(3, &[]));
        assert_eq!(y.size(), x.size());
        // Every nonzero value of a crop sits at its own value's place shifted by one offset.
        let padded = x.constant_pad_nd([2, 2, 2, 2]);
        for i in 0..2 {
            let found = (0..5).any(|dy| (0..5).any(|dx| padded.get(i).narrow(1, dy, 6).narrow(2, dx, 6).equal(&y.get(i))));
            assert!(found, "image {i} is not a crop of its padded self");
        }
    }
}
