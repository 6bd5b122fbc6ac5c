//! The built-in image set: 32 x 32 x 3, 10 classes, generated from a seed, no download.
//!
//! Each class owns a 5 x 5 x 3 pattern of +-1 values made zero-mean in every channel.
//! An image is uniform noise (in [-0.5, 0.5]), three to five copies of its class's pattern
//! and three "distractor" patterns (drawn from ten more, shared by all classes), each
//! added at a uniformly random position on a torus (wrapping around the edges). Several
//! copies make the evidence strong enough for a small convnet to learn in seconds.
//!
//! Why a linear classifier on pixels fails: every pattern sums to zero and every position
//! is equally likely, wrap-around included, so each pixel has the same mean under every
//! class. A linear score `w . x` then has the same mean under every class too; only its
//! spread differs. A convnet detects the pattern wherever it is (a 5 x 5 receptive field
//! and pooling), so it separates the classes easily. Measured accuracies are in
//! docs/training.md.

use super::rng::Rng;
use super::RawSplit;

pub const SIZE: i64 = 32;
pub const CHANNELS: i64 = 3;
pub const CLASSES: usize = 10;
const PATTERN: usize = 5;
const DISTRACTORS: usize = 10;
/// Pixel = 128 + SCALE * (patterns + noise), clamped to 0..=255.
const SCALE: f64 = 40.0;
const NOISE: f64 = 0.5;

/// Stream names, so that patterns, train and test images never share random numbers.
const PATTERNS: u64 = 0;
const TRAIN: u64 = 1;
const TEST: u64 = 2;

/// The train and test splits for `seed`. Image i of a split is the same whatever the
/// sizes asked for.
pub fn generate(seed: u64, train_size: usize, test_size: usize) -> (RawSplit, RawSplit) {
    let patterns = patterns(seed);
    (split(seed, TRAIN, train_size, &patterns), split(seed, TEST, test_size, &patterns))
}

/// CLASSES + DISTRACTORS patterns, each CHANNELS x PATTERN x PATTERN, zero-mean per channel.
fn patterns(seed: u64) -> Vec<Vec<f64>> {
    let area = PATTERN * PATTERN;
    (0..CLASSES + DISTRACTORS)
        .map(|k| {
            let mut rng = Rng::stream(seed, &[PATTERNS, k as u64]);
            let mut p: Vec<f64> = (0..CHANNELS as usize * area).map(|_| if rng.below(2) == 1 { 1.0 } else { -1.0 }).collect();
            for c in p.chunks_mut(area) {
                let mean = c.iter().sum::<f64>() / area as f64;
                c.iter_mut().for_each(|v| *v -= mean);
            }
            p
        })
        .collect()
}

fn split(seed: u64, which: u64, n: usize, patterns: &[Vec<f64>]) -> RawSplit {
    let (s, c) = (SIZE as usize, CHANNELS as usize);
    let mut out = RawSplit::empty(CHANNELS, SIZE, SIZE);
    out.images.reserve(n * c * s * s);
    let mut canvas = vec![0.0f64; c * s * s];
    for i in 0..n {
        let mut rng = Rng::stream(seed, &[which, i as u64]);
        let label = rng.below(CLASSES as u64) as usize;
        canvas.iter_mut().for_each(|v| *v = NOISE * (2.0 * rng.uniform() - 1.0));
        let copies = 3 + rng.below(3) as usize;
        let mut paste = |k: usize, rng: &mut Rng| {
            let (y0, x0) = (rng.below(s as u64) as usize, rng.below(s as u64) as usize);
            for ch in 0..c {
                for dy in 0..PATTERN {
                    for dx in 0..PATTERN {
                        let (y, x) = ((y0 + dy) % s, (x0 + dx) % s);
                        canvas[(ch * s + y) * s + x] += patterns[k][(ch * PATTERN + dy) * PATTERN + dx];
                    }
                }
            }
        };
        for _ in 0..copies {
            paste(label, &mut rng);
        }
        for _ in 0..3 {
            let k = CLASSES + rng.below(DISTRACTORS as u64) as usize;
            paste(k, &mut rng);
        }
        out.images.extend(canvas.iter().map(|v| (128.0 + SCALE * v).round().clamp(0.0, 255.0) as u8));
        out.labels.push(label as i64);
    }
    out
}
