//! What jobs of one workload share: how many epochs a run of each batch size
//! needs to reach the target, with its spread (a property of the model, the data
//! and the optimizer, not of the GPU).
//!
//! A job names its workload (the spec's optional `workload` field); the runs of
//! every job of that workload teach [`SharedEpochs`], and a wattwise job reads the
//! others' ([`crate::policy::warm`]). The time and power of an epoch are the job's
//! own, from its own power profiles: they depend on the GPU and are never shared.
//!
//! Everything here is bounded: one [`EpochStats`] (four numbers) per batch size,
//! at most [`MAX_SHARED_SIZES`] batch sizes.

use serde::{Deserialize, Serialize};

/// Batch sizes one [`SharedEpochs`] keeps (the spec's limit on a job's batch sizes).
pub const MAX_SHARED_SIZES: usize = crate::spec::MAX_BATCH_SIZES;

/// Sufficient statistics of the epochs to target of one batch size's runs.
///
/// Only uncensored runs count: a run that reached the target (after `epochs`
/// epochs) or one that ran to its last epoch without reaching it. A run stopped
/// early (cost bound, probe) says only "more than k epochs" and is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Uncensored runs.
    pub runs: u64,
    /// Those that reached the target.
    pub successes: u64,
    /// Mean epochs to target of the successes.
    pub mean: f64,
    /// Sum of squared deviations of those epochs from their mean.
    pub m2: f64,
}

impl EpochStats {
    /// Adds a run: `epochs` to the target when it `reached`, else a failure.
    pub fn push(&mut self, epochs: f64, reached: bool) {
        self.runs = self.runs.saturating_add(1);
        if reached && epochs.is_finite() && epochs >= 0.0 && self.successes < self.runs {
            self.successes += 1;
            let delta = epochs - self.mean;
            self.mean += delta / self.successes as f64;
            self.m2 += delta * (epochs - self.mean);
        }
    }

    /// Both sets of runs together (Chan's parallel update).
    pub fn merge(&self, other: &EpochStats) -> EpochStats {
        let (a, b) = (self.successes as f64, other.successes as f64);
        let n = a + b;
        let (mean, m2) = if n == 0.0 {
            (0.0, 0.0)
        } else {
            let delta = other.mean - self.mean;
            (
                self.mean + delta * b / n,
                self.m2 + other.m2 + delta * delta * a * b / n,
            )
        };
        EpochStats {
            runs: self.runs.saturating_add(other.runs),
            successes: self.successes.saturating_add(other.successes),
            mean,
            m2,
        }
    }

    /// Fraction of the runs that reached the target, `None` before a run.
    pub fn reach_probability(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.successes as f64 / self.runs as f64)
    }

    /// Standard deviation of one run's epochs to target, `None` under two successes.
    pub fn sd(&self) -> Option<f64> {
        (self.successes >= 2).then(|| libm::sqrt(self.m2.max(0.0) / (self.successes - 1) as f64))
    }

    /// Whether every number is finite and consistent (a stored document may be anything).
    pub fn is_sane(&self) -> bool {
        self.successes <= self.runs
            && self.mean.is_finite()
            && self.mean >= 0.0
            && self.m2.is_finite()
            && self.m2 >= 0.0
    }
}

/// Epochs to target per batch size, as the runs of one or more jobs taught them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedEpochs {
    /// `(batch size, statistics)`, ascending by batch size, at most [`MAX_SHARED_SIZES`].
    pub sizes: Vec<(u32, EpochStats)>,
}

impl SharedEpochs {
    /// The statistics of a batch size, if any run of it was counted.
    pub fn get(&self, batch_size: u32) -> Option<&EpochStats> {
        self.sizes
            .binary_search_by_key(&batch_size, |s| s.0)
            .ok()
            .map(|i| &self.sizes[i].1)
    }

    /// Counts a finished run. A batch size beyond [`MAX_SHARED_SIZES`] others is
    /// not kept (the largest ones go first).
    pub fn push(&mut self, batch_size: u32, epochs: f64, reached: bool) {
        let i = match self.sizes.binary_search_by_key(&batch_size, |s| s.0) {
            Ok(i) => i,
            Err(i) => {
                if self.sizes.len() >= MAX_SHARED_SIZES && i >= MAX_SHARED_SIZES {
                    return;
                }
                self.sizes.insert(i, (batch_size, EpochStats::default()));
                self.sizes.truncate(MAX_SHARED_SIZES);
                i
            }
        };
        self.sizes[i].1.push(epochs, reached);
    }

    /// Both together.
    pub fn merge(&self, other: &SharedEpochs) -> SharedEpochs {
        let mut out = self.clone();
        for &(bs, s) in &other.sizes {
            match out.sizes.binary_search_by_key(&bs, |x| x.0) {
                Ok(i) => out.sizes[i].1 = out.sizes[i].1.merge(&s),
                Err(i) => out.sizes.insert(i, (bs, s)),
            }
        }
        out.sizes.truncate(MAX_SHARED_SIZES);
        out
    }

    /// The same runs with every epoch count multiplied by `factor` (what a job
    /// would have learned if the others' runs had needed that many times the epochs).
    pub fn scaled(&self, factor: f64) -> SharedEpochs {
        SharedEpochs {
            sizes: self
                .sizes
                .iter()
                .map(|&(bs, s)| {
                    (
                        bs,
                        EpochStats {
                            mean: s.mean * factor,
                            m2: s.m2 * factor * factor,
                            ..s
                        },
                    )
                })
                .collect(),
        }
    }

    /// Whether the document is usable: sorted, bounded, every statistic sane.
    pub fn is_sane(&self) -> bool {
        self.sizes.len() <= MAX_SHARED_SIZES
            && self.sizes.windows(2).all(|w| w[0].0 < w[1].0)
            && self.sizes.iter().all(|(_, s)| s.is_sane())
    }

    /// Whether any run of any batch size reached the target.
    pub fn any_success(&self) -> bool {
        self.sizes.iter().any(|(_, s)| s.successes > 0)
    }
}

/// The warm start's part of a wattwise job document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmState {
    /// What the other jobs of the workload taught, restricted to this job's batch sizes.
    pub shared: SharedEpochs,
    /// This job's own uncensored runs, per batch size (in the job's order).
    #[serde(default)]
    pub own: Vec<EpochStats>,
    /// The job's runs disagreed with `shared`: it is ignored from then on.
    #[serde(default)]
    pub distrust: bool,
    /// Batch sizes probed (a first run stopped after its first epoch).
    #[serde(default)]
    pub probed: Vec<u32>,
    /// The cost of those probes.
    #[serde(default)]
    pub probe_cost: f64,
    /// Batch sizes whose run was stopped early under the warm start without
    /// reaching the target (kept out of the arms' statistics, so a job that drops
    /// the shared knowledge does not hold against a batch size a wrong prediction
    /// cut short).
    #[serde(default)]
    pub stopped: Vec<u32>,
    /// Their cost predicted from the profiles, one epoch each (in profile units):
    /// `probe_cost / probe_units` converts predictions to costs before any run
    /// reached the target (an overestimate: a probe's epoch also profiles).
    #[serde(default)]
    pub probe_units: f64,
}

impl WarmState {
    /// A warm start from `shared`, keeping only the job's batch sizes (so its
    /// size is bounded by the job's).
    pub fn new(shared: &SharedEpochs, batch_sizes: &[u32]) -> WarmState {
        WarmState {
            shared: SharedEpochs {
                sizes: shared
                    .sizes
                    .iter()
                    .filter(|(bs, s)| batch_sizes.binary_search(bs).is_ok() && s.is_sane())
                    .copied()
                    .collect(),
            },
            ..WarmState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_pushing_everything_into_one() {
        let runs = [
            (4.0, true),
            (6.0, true),
            (0.0, false),
            (5.0, true),
            (9.0, true),
        ];
        let (mut a, mut b, mut all) = (
            SharedEpochs::default(),
            SharedEpochs::default(),
            SharedEpochs::default(),
        );
        for (k, &(e, r)) in runs.iter().enumerate() {
            let bs = if k % 2 == 0 { 32 } else { 64 };
            all.push(bs, e, r);
            all.push(16, e, r);
            if k < 2 {
                a.push(bs, e, r);
                a.push(16, e, r);
            } else {
                b.push(bs, e, r);
                b.push(16, e, r);
            }
        }
        let m = a.merge(&b);
        for bs in [16, 32, 64] {
            let (x, y) = (m.get(bs).unwrap(), all.get(bs).unwrap());
            assert_eq!((x.runs, x.successes), (y.runs, y.successes));
            assert!((x.mean - y.mean).abs() < 1e-12 && (x.m2 - y.m2).abs() < 1e-9);
        }
        let s16 = m.get(16).unwrap();
        assert_eq!((s16.runs, s16.successes), (5, 4));
        assert_eq!(s16.mean, 6.0);
        assert_eq!(s16.reach_probability(), Some(0.8));
        assert!(m.is_sane() && m.any_success());
        assert_eq!(m.scaled(2.0).get(16).unwrap().mean, 12.0);
    }

    #[test]
    fn it_stays_bounded() {
        let mut s = SharedEpochs::default();
        for bs in (1..=2 * MAX_SHARED_SIZES as u32).rev() {
            s.push(bs, 3.0, true);
        }
        assert_eq!(s.sizes.len(), MAX_SHARED_SIZES);
        assert!(s.is_sane());
        s.push(u32::MAX, 1.0, true);
        assert!(s.get(u32::MAX).is_none());
    }
}
