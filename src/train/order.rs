//! Which images make up batch `step`, and their augmentation: pure functions of
//! `(seed, step)`, so a run resumed at any step draws exactly what it would have drawn.
//!
//! Each epoch is a fresh permutation of the training set (keyed by the epoch number);
//! the last partial batch of an epoch is dropped, so every batch has the same size.

use crate::data::rng::Rng;

const ORDER: u64 = 1;
const AUGMENT: u64 = 2;

#[derive(Debug)]
pub struct Order {
    seed: u64,
    n: usize,
    batch: usize,
    epoch: Option<(u64, Vec<i64>)>,
}

impl Order {
    /// `n` training images in batches of `batch` (<= n).
    pub fn new(seed: u64, n: usize, batch: usize) -> Order {
        assert!(batch >= 1 && batch <= n);
        Order { seed, n, batch, epoch: None }
    }

    pub fn steps_per_epoch(&self) -> u64 {
        (self.n / self.batch) as u64
    }

    pub fn batch_size(&self) -> usize {
        self.batch
    }

    /// The epoch of step `step` and the step's place in it.
    pub fn position(&self, step: u64) -> (u64, usize) {
        let per = self.steps_per_epoch();
        (step / per, (step % per) as usize)
    }

    /// Indices of the images in batch `step` (0-based).
    pub fn batch(&mut self, step: u64) -> &[i64] {
        let ((epoch, within), b) = (self.position(step), self.batch);
        &self.epoch(epoch)[within * b..(within + 1) * b]
    }

    /// The batches of epoch `epoch`, one after another (the permutation less the images
    /// the last partial batch would have taken).
    pub fn epoch(&mut self, epoch: u64) -> &[i64] {
        if self.epoch.as_ref().map(|(e, _)| *e) != Some(epoch) {
            let perm = Rng::stream(self.seed, &[ORDER, epoch]).permutation(self.n);
            self.epoch = Some((epoch, perm));
        }
        let used = self.steps_per_epoch() as usize * self.batch;
        &self.epoch.as_ref().expect("just set").1[..used]
    }

    /// The random source of batch `step`'s augmentation.
    pub fn augmentation(&self, step: u64) -> Rng {
        Rng::stream(self.seed, &[AUGMENT, step])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_cover_the_set_and_replay() {
        let mut o = Order::new(7, 10, 3);
        assert_eq!(o.steps_per_epoch(), 3);
        let mut seen: Vec<i64> = (0..3).flat_map(|s| o.batch(s).to_vec()).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 9);
        let later = o.batch(4).to_vec();
        let mut fresh = Order::new(7, 10, 3);
        assert_eq!(fresh.batch(4), &later[..]);
        let one = fresh.batch(1).to_vec();
        assert_ne!(one, later);
    }
}
