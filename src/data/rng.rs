//! A tiny counter-based random source for everything the trainer must be able to replay:
//! the synthetic images, the data order and the augmentation. Each use asks for a stream
//! keyed by `(seed, what, index...)`, so a value depends only on its key, never on how
//! much was drawn before: a resumed run draws exactly what an uninterrupted run would.
//! (libtorch's generator is still used for the initial weights, seeded once.)

/// SplitMix64 (Steele, Lea and Flood 2014): small, fast and good enough for shuffling.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The stream for a key: `seed` and any number of parts (stream name, index, ...).
    pub fn stream(seed: u64, parts: &[u64]) -> Rng {
        let mut state = mix(seed ^ 0x9E37_79B9_7F4A_7C15);
        for &p in parts {
            state = mix(state ^ mix(p.wrapping_add(0xD1B5_4A32_D192_ED03)));
        }
        Rng(state)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in `0..n` (n > 0), by multiply-shift (bias below 2^-32 for our n).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniformly random permutation of `0..n` (Fisher-Yates).
    pub fn permutation(&mut self, n: usize) -> Vec<i64> {
        let mut p: Vec<i64> = (0..n as i64).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn streams_are_keyed_and_uniform() {
        let a: Vec<u64> = (0..4).map(|_| Rng::stream(1, &[2, 3]).next_u64()).collect();
        assert!(a.windows(2).all(|w| w[0] == w[1]));
        assert_ne!(Rng::stream(1, &[2, 3]).next_u64(), Rng::stream(1, &[3, 2]).next_u64());
        let mut r = Rng::stream(0, &[]);
        let mut counts = [0usize; 10];
        for _ in 0..100_000 {
            counts[r.below(10) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| (9_500..10_500).contains(&c)), "{counts:?}");
        let mut p = Rng::stream(5, &[]).permutation(1000);
        p.sort();
        assert_eq!(p, (0..1000).collect::<Vec<i64>>());
    }
}
