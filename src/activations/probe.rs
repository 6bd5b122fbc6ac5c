//! The probe set: `analysis.probe_size` test images drawn without replacement by a seeded
//! permutation (stream `probe` of `analysis.seed`), kept in test-set order. The same
//! config always gives the same probe, so stored and replayed activations line up.
//! The adaptive freeze schedule draws its probe the same way from the training split.

use crate::config::AnalysisConfig;
use crate::data::rng::Rng;
use crate::data::{Dataset, Split};
use tch::Tensor;

/// Stream key of the probe draw ("probe" in ASCII).
const STREAM: u64 = 0x70_72_6f_62_65;

#[derive(Debug)]
pub struct Probe {
    /// Indices into the split, ascending.
    pub indices: Vec<i64>,
    /// The normalised images, N x C x H x W float, on the data's device.
    pub images: Tensor,
}

impl Probe {
    /// The probe of the analysis: drawn from the test split.
    pub fn new(data: &Dataset, config: &AnalysisConfig) -> Probe {
        Self::draw(data, &data.test, "test", config)
    }

    /// The same draw from the training split (no augmentation): for decisions taken
    /// during training (the adaptive freeze schedule), which must not look at test images.
    pub fn of_training_set(data: &Dataset, config: &AnalysisConfig) -> Probe {
        Self::draw(data, &data.train, "training", config)
    }

    fn draw(data: &Dataset, split: &Split, what: &str, config: &AnalysisConfig) -> Probe {
        let n = split.len();
        if config.probe_size > n {
            tracing::warn!("analysis.probe_size {} is larger than the {n} {what} images; the probe holds all {n}", config.probe_size);
        }
        let mut indices = Rng::stream(config.seed, &[STREAM]).permutation(n);
        indices.truncate(config.probe_size.min(n));
        indices.sort_unstable();
        let idx = Tensor::from_slice(&indices).to_device(split.images.device());
        let images = data.normalise(&split.images.index_select(0, &idx));
        Probe { indices, images }
    }

    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}
