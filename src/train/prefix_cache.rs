//! The frozen prefix's output kept per training image, so that it is computed once.
//!
//! Freezing a prefix of the network saves its backward pass; its forward pass still runs
//! on every batch. When what the prefix computes for an image cannot change, it need not:
//! the prefix's weights are frozen, it runs in inference mode (`freeze.freeze_bn_stats`,
//! so batch norm uses its running statistics and one image's output does not depend on
//! the rest of its batch), the networks here have no dropout, and the image it sees is
//! the same every epoch (no augmentation: `data.crop_padding = 0`, `data.flip = false`).
//! Then the output is a function of the image alone, and is kept for every training
//! image after its first computation (`freeze.cache_mib` bounds the memory).
//!
//! When a layer above freezes, the kept outputs move up: the newly frozen layers run on
//! them (no image is reread), so a cache filled once stays filled. A batch of which any
//! image is missing runs the prefix on the whole batch, the same computation as without
//! the cache. The cache lives in memory only: a resumed run refills it.

use crate::model::Network;
use tch::{Device, Tensor};

/// Why the cache is off for a whole run (`None`: it may be used).
pub(super) fn not_applicable(cache_mib: u64, augmented: bool, bn_eval: bool) -> Option<&'static str> {
    if cache_mib == 0 {
        Some("freeze.cache_mib = 0")
    } else if augmented {
        Some("the training images are augmented (data.crop_padding, data.flip), so the prefix sees a different image each epoch")
    } else if !bn_eval {
        Some("freeze.freeze_bn_stats = false: frozen batch norms normalise by each batch's statistics, so an image's output depends on its batch")
    } else {
        None
    }
}

pub(super) struct PrefixCache {
    budget_bytes: u64,
    images: usize,
    /// The images of one step, the chunk size when moving the outputs up.
    batch: usize,
    device: Device,
    /// The prefix whose output is held (or was found too large): its length in layers.
    depth: usize,
    held: Held,
    filled: Vec<bool>,
    /// Steps served from the cache alone, and steps with a frozen prefix.
    pub served: u64,
    pub frozen_steps: u64,
}

/// What the cache holds for the prefix at its depth.
enum Held {
    /// Nothing yet: allocated at the first batch, when the output's shape is known.
    Nothing,
    /// The outputs of every image would not fit `freeze.cache_mib`.
    TooLarge,
    /// `images x (one output)`; `filled` says which rows are computed.
    Outputs(Tensor),
}

impl PrefixCache {
    /// A cache for `images` training images in batches of `batch`, on `device`, of at
    /// most `cache_mib` MiB.
    pub(super) fn new(cache_mib: u64, images: usize, batch: usize, device: Device) -> PrefixCache {
        PrefixCache {
            budget_bytes: cache_mib.saturating_mul(1 << 20),
            images,
            batch,
            device,
            depth: 0,
            held: Held::Nothing,
            filled: vec![false; images],
            served: 0,
            frozen_steps: 0,
        }
    }

    /// The output of the first `frozen` (> 0) layers of `net` (inference mode, no
    /// autograd) for the training images `idx` (`idx_t`: the same indices on the
    /// device); `images()` gives the batch as the network's input, called only when the
    /// cache cannot serve.
    pub(super) fn prefix_output(
        &mut self,
        net: &Network,
        frozen: usize,
        idx: &[i64],
        idx_t: &Tensor,
        images: impl FnOnce() -> Tensor,
    ) -> Tensor {
        self.frozen_steps += 1;
        if frozen != self.depth {
            self.move_to(net, frozen);
        }
        if let Held::Outputs(out) = &self.held {
            if idx.iter().all(|&i| self.filled[i as usize]) {
                self.served += 1;
                return out.index_select(0, idx_t);
            }
        }
        let h = tch::no_grad(|| net.forward_span(&images(), false, 0..frozen));
        if matches!(self.held, Held::Nothing) {
            self.held = self.allocate(net, &h);
        }
        if let Held::Outputs(out) = &mut self.held {
            let _ = tch::no_grad(|| out.index_copy_(0, idx_t, &h));
            idx.iter().for_each(|&i| self.filled[i as usize] = true);
        }
        h
    }

    /// Room for every image's output of the shape of `h` (a batch of them) if it fits
    /// the budget; else [`Held::TooLarge`] (said once for this depth).
    fn allocate(&self, net: &Network, h: &Tensor) -> Held {
        let per_image: i64 = h.size()[1..].iter().product();
        let bytes = self.images as u64 * per_image as u64 * h.kind().elt_size_in_bytes() as u64;
        let at = net.layer_names()[self.depth - 1];
        if bytes > self.budget_bytes {
            tracing::info!(
                "frozen prefix up to {at}: its output for {} training images takes {} MiB, over freeze.cache_mib = {} MiB; not cached (computed each step)",
                self.images,
                bytes.div_ceil(1 << 20),
                self.budget_bytes >> 20
            );
            return Held::TooLarge;
        }
        tracing::info!(
            "caching the frozen prefix's output (up to {at}): {per_image} values per image, {} MiB for {} training images",
            bytes.div_ceil(1 << 20),
            self.images
        );
        let mut shape = h.size();
        shape[0] = self.images as i64;
        Held::Outputs(Tensor::zeros(shape, (h.kind(), self.device)))
    }

    /// The prefix grew to `frozen` layers: the outputs held move up through the newly
    /// frozen layers, a batch at a time, in place when their shape stays (a conv after a
    /// conv); when nothing is held (or the prefix shrank, which a schedule never does)
    /// the cache starts over at the new depth.
    fn move_to(&mut self, net: &Network, frozen: usize) {
        let old = std::mem::replace(&mut self.held, Held::Nothing);
        let was_filled = std::mem::replace(&mut self.filled, vec![false; self.images]);
        let from = std::mem::replace(&mut self.depth, frozen);
        let Held::Outputs(old) = old else { return };
        if frozen < from {
            return;
        }
        let rows: Vec<i64> = (0..self.images as i64).filter(|&i| was_filled[i as usize]).collect();
        let mut moved: Option<Tensor> = None;
        for chunk in rows.chunks(self.batch) {
            let idx = Tensor::from_slice(chunk).to_device(self.device);
            let h = tch::no_grad(|| net.forward_span(&old.index_select(0, &idx), false, from..frozen));
            if moved.is_none() {
                // Rows are read (copied out) before they are written, so the same tensor
                // can take the new outputs: no second copy of the cache at its largest.
                let same_shape = h.size()[1..] == old.size()[1..];
                match if same_shape { Held::Outputs(old.shallow_clone()) } else { self.allocate(net, &h) } {
                    Held::Outputs(t) => moved = Some(t),
                    too_large => {
                        self.held = too_large;
                        return;
                    }
                }
            }
            let out = moved.as_mut().expect("set above");
            let _ = tch::no_grad(|| out.index_copy_(0, &idx, &h));
            chunk.iter().for_each(|&i| self.filled[i as usize] = true);
        }
        if moved.is_some() {
            tracing::debug!("the frozen prefix's cached output moved up to {}", net.layer_names()[frozen - 1]);
        }
        self.held = moved.map_or(Held::Nothing, Held::Outputs);
    }
}
