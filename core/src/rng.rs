//! The job's random number generator, stored inside the job document.
//!
//! Decisions must replay exactly from a stored state on every host, native or
//! wasm32, so the generator is a ChaCha stream whose position is serialized with
//! the job, and the normal sampler uses only `libm` (bit-identical everywhere).

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};

/// A uniform index in `0..n` (`n > 0`) drawn from `rng` without modulo bias:
/// draws below the largest multiple of `n` are kept, the rest redrawn. Every
/// random index of the core and the simulator is drawn this way, so a stream
/// gives the same indices on every host.
pub fn unbiased_index(rng: &mut impl RngCore, n: usize) -> usize {
    debug_assert!(n > 0);
    let n = n as u64;
    let zone = u64::MAX - (u64::MAX % n);
    loop {
        let x = rng.next_u64();
        if x < zone {
            return (x % n) as usize;
        }
    }
}

/// A serializable, deterministic random source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRng(ChaCha20Rng);

impl JobRng {
    /// A generator seeded from a 64-bit seed (the job's `mab_seed`, or host entropy).
    pub fn from_seed(seed: u64) -> Self {
        Self(ChaCha20Rng::seed_from_u64(seed))
    }

    /// A uniform draw in `[0, 1)` with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.0.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform index in `0..n` (`n > 0`), without modulo bias.
    pub fn index(&mut self, n: usize) -> usize {
        unbiased_index(&mut self.0, n)
    }

    /// Shuffles `items` in place (Fisher-Yates).
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }

    /// A standard normal draw (Box-Muller on `libm`, so every host agrees bit for bit).
    pub fn standard_normal(&mut self) -> f64 {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)
    }

    /// A draw from a normal distribution with mean `mean` and standard deviation `std_dev`.
    pub fn normal(&mut self, mean: f64, std_dev: f64) -> f64 {
        mean + std_dev * self.standard_normal()
    }
}

#[cfg(test)]
mod tests {
    use super::JobRng;

    #[test]
    fn same_seed_same_stream_and_state_round_trips() {
        let mut a = JobRng::from_seed(7);
        let _ = a.uniform();
        let json = serde_json::to_string(&a).unwrap();
        let mut b: JobRng = serde_json::from_str(&json).unwrap();
        for _ in 0..100 {
            assert_eq!(a.standard_normal().to_bits(), b.standard_normal().to_bits());
        }
    }

    #[test]
    fn normal_has_roughly_unit_moments() {
        let mut r = JobRng::from_seed(1);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| r.standard_normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut r = JobRng::from_seed(3);
        let mut v: Vec<u32> = (0..50).collect();
        r.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
