//! Datasets: CIFAR-10 (binary batches), MNIST and Fashion-MNIST (IDX), and the built-in
//! synthetic set; batches drawn and augmented on the training device.
//!
//! Every dataset is held whole on the training device as bytes (N x C x H x W, u8):
//! CIFAR-10 is 150 MB that way, and a batch is then one `index_select`, augmentation
//! one gather, normalisation one multiply-add, with no host work per image.

pub(crate) mod augment;
pub mod cifar;
pub(crate) mod fetch;
pub(crate) mod generated;
pub mod idx;
pub mod rng;
pub mod synthetic;

use crate::config::{DataConfig, DatasetName, SYNTHETIC_TEST_SIZE, SYNTHETIC_TRAIN_SIZE};
use crate::error::InputError;
use tch::{Device, Kind, Tensor};

/// One split as read from disk: images in C x H x W order, one after another.
#[derive(Debug, Clone, PartialEq)]
pub struct RawSplit {
    pub channels: i64,
    pub height: i64,
    pub width: i64,
    pub images: Vec<u8>,
    pub labels: Vec<i64>,
}

impl RawSplit {
    pub fn empty(channels: i64, height: i64, width: i64) -> Self {
        RawSplit { channels, height, width, images: Vec::new(), labels: Vec::new() }
    }
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    fn image_len(&self) -> usize {
        (self.channels * self.height * self.width) as usize
    }
    /// The images at `indices`, in that order.
    fn select(&self, indices: &[usize]) -> RawSplit {
        let len = self.image_len();
        let mut out = RawSplit::empty(self.channels, self.height, self.width);
        out.images.reserve(indices.len() * len);
        for &i in indices {
            out.images.extend_from_slice(&self.images[i * len..(i + 1) * len]);
            out.labels.push(self.labels[i]);
        }
        out
    }
    /// Keeps the first `n` images.
    fn truncate(&mut self, n: usize) {
        let n = n.min(self.len());
        self.labels.truncate(n);
        self.images.truncate(n * self.image_len());
    }
}

/// A split on the device: `images` N x C x H x W u8, `labels` N i64.
#[derive(Debug)]
pub struct Split {
    pub images: Tensor,
    pub labels: Tensor,
}

impl Split {
    fn new(raw: &RawSplit, device: Device) -> Split {
        let n = raw.len() as i64;
        Split {
            images: Tensor::from_slice(&raw.images).view([n, raw.channels, raw.height, raw.width]).to_device(device),
            labels: Tensor::from_slice(&raw.labels).to_device(device),
        }
    }
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[derive(Debug)]
pub struct Dataset {
    pub name: DatasetName,
    /// The images trained on: the training split less the validation images.
    pub train: Split,
    pub test: Split,
    /// `data.validation`: the images held out of the training split (never trained on).
    pub validation: Option<Split>,
    /// Where the validation images were in the training split as read (sorted); the
    /// training images are the others, in their order. Empty without validation.
    pub held_out: Vec<usize>,
    pub classes: i64,
    /// C, H, W of one image.
    pub shape: [i64; 3],
    /// Per-channel mean and standard deviation of the training images (in [0, 1]),
    /// applied as `(x / 255 - mean) / std`, shaped 1 x C x 1 x 1 on the device.
    scale: Tensor,
    shift: Tensor,
}

impl Dataset {
    /// Reads (or generates) the dataset the config names, checks it, and moves it to
    /// `device`.
    pub fn load(config: &DataConfig, device: Device) -> Result<Dataset, InputError> {
        crate::device::assert_resolved("loading a dataset");
        let path = || config.path.clone().expect("validated: non-synthetic datasets have a path");
        let (mut train, mut test) = match config.dataset {
            DatasetName::Synthetic => synthetic::generate(
                config.seed,
                config.train_size.unwrap_or(SYNTHETIC_TRAIN_SIZE),
                config.test_size.unwrap_or(SYNTHETIC_TEST_SIZE),
            ),
            DatasetName::Cifar10 => cifar::load(&path())?,
            DatasetName::Mnist => idx::load(&path(), idx::Flavour::Mnist)?,
            DatasetName::FashionMnist => idx::load(&path(), idx::Flavour::FashionMnist)?,
        };
        if let Some(n) = config.train_size {
            train.truncate(n);
        }
        if let Some(n) = config.test_size {
            test.truncate(n);
        }
        if config.validation == 0 {
            return Self::from_raw(config.dataset, train, test, 10, device);
        }
        if config.validation >= train.len() {
            return Err(InputError::new(format!("data.validation: {}", crate::config::validation_message(config.validation, train.len()))));
        }
        let held_out = validation_indices(config.seed, train.len(), config.validation);
        let mut keep = vec![true; train.len()];
        held_out.iter().for_each(|&i| keep[i] = false);
        let rest: Vec<usize> = (0..train.len()).filter(|&i| keep[i]).collect();
        let validation = train.select(&held_out);
        let mut data = Self::from_raw(config.dataset, train.select(&rest), test, 10, device)?;
        data.validation = Some(Split::new(&validation, device));
        data.held_out = held_out;
        Ok(data)
    }

    /// The split evaluated during training: the validation images when there are some,
    /// else the test set.
    pub fn eval_split(&self) -> &Split {
        self.validation.as_ref().unwrap_or(&self.test)
    }

    pub fn from_raw(name: DatasetName, train: RawSplit, test: RawSplit, classes: i64, device: Device) -> Result<Dataset, InputError> {
        if train.is_empty() || test.is_empty() {
            return Err(InputError::new(format!("{}: the train or test split holds no images", name.as_str())));
        }
        if (train.channels, train.height, train.width) != (test.channels, test.height, test.width) {
            return Err(InputError::new(format!("{}: train and test images differ in shape", name.as_str())));
        }
        let shape = [train.channels, train.height, train.width];
        let (mean, std) = channel_stats(&train);
        let c = shape[0];
        let std_t = Tensor::from_slice(&std).view([1, c, 1, 1]);
        let mean_t = Tensor::from_slice(&mean).view([1, c, 1, 1]);
        let scale = (std_t.reciprocal() / 255.0).to_kind(Kind::Float).to_device(device);
        let shift = (-mean_t / Tensor::from_slice(&std).view([1, c, 1, 1])).to_kind(Kind::Float).to_device(device);
        Ok(Dataset {
            name,
            train: Split::new(&train, device),
            test: Split::new(&test, device),
            validation: None,
            held_out: Vec::new(),
            classes,
            shape,
            scale,
            shift,
        })
    }

    /// u8 images (N x C x H x W) to the network's float input.
    pub fn normalise(&self, images: &Tensor) -> Tensor {
        images.to_kind(Kind::Float) * &self.scale + &self.shift
    }
}

/// Stream name of the validation draw (see [`rng::Rng::stream`]).
const VALIDATION_STREAM: u64 = 0x7661_6c69;

/// The `n` images of a training split of `len` held out for validation: a uniformly
/// random subset, sorted, drawn from `data.seed` alone, so that every `train.seed` of an
/// experiment holds out the same images.
pub fn validation_indices(seed: u64, len: usize, n: usize) -> Vec<usize> {
    let mut chosen: Vec<usize> =
        rng::Rng::stream(seed, &[VALIDATION_STREAM]).permutation(len).into_iter().take(n).map(|i| i as usize).collect();
    chosen.sort_unstable();
    chosen
}

/// Per-channel mean and standard deviation over the training images, in [0, 1].
fn channel_stats(split: &RawSplit) -> (Vec<f64>, Vec<f64>) {
    let c = split.channels as usize;
    let plane = (split.height * split.width) as usize;
    let mut sum = vec![0f64; c];
    let mut sq = vec![0f64; c];
    for image in split.images.chunks_exact(c * plane) {
        for ch in 0..c {
            let (mut s, mut q) = (0u64, 0u64);
            for &v in &image[ch * plane..(ch + 1) * plane] {
                s += v as u64;
                q += (v as u64) * (v as u64);
            }
            sum[ch] += s as f64;
            sq[ch] += q as f64;
        }
    }
    let n = (split.len() * plane) as f64;
    let mean: Vec<f64> = sum.iter().map(|s| s / n / 255.0).collect();
    let std = sq.iter().zip(&mean).map(|(q, m)| ((q / n / 65025.0 - m * m).max(0.0).sqrt()).max(1e-3)).collect();
    (mean, std)
}
