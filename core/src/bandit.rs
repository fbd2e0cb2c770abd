//! Gaussian Thompson sampling over the batch sizes that survived pruning.
//!
//! Each arm's reward (`-cost`) is modelled as a normal distribution whose
//! precision is learned as `1 / variance` of the observed rewards; the conjugate
//! prior on its mean is normal too. An arm's fit needs only the rewards'
//! sufficient statistics (count, mean, sum of squared deviations), or the last
//! `window_size` rewards when a window is set, so the job document stays bounded.

use serde::{Deserialize, Serialize};

use crate::rng::JobRng;

/// The rewards observed for one batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
pub enum RewardHistory {
    /// All rewards, as Welford running statistics.
    All {
        /// Number of rewards.
        count: u64,
        /// Their mean.
        mean: f64,
        /// Sum of squared deviations from the mean.
        m2: f64,
    },
    /// The rewards of the `size` most recent trials (by trial number).
    Window {
        /// Window length.
        size: u32,
        /// `(trial_number, reward)`, ascending by trial number.
        rewards: Vec<(u64, f64)>,
    },
}

/// Count, mean and population variance of some rewards.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RewardSummary {
    /// Number of rewards.
    pub count: u64,
    /// Their mean.
    pub mean: f64,
    /// Their population variance (numpy's `var`).
    pub variance: f64,
}

impl RewardSummary {
    /// Summarizes a list of rewards.
    pub fn of(rewards: impl IntoIterator<Item = f64>) -> Option<Self> {
        let mut h = RewardHistory::new(0);
        for (i, r) in rewards.into_iter().enumerate() {
            h.push(i as u64, r);
        }
        h.summary()
    }
}

impl RewardHistory {
    /// An empty history: all rewards when `window_size` is 0, else a window.
    pub fn new(window_size: u32) -> Self {
        if window_size == 0 {
            RewardHistory::All {
                count: 0,
                mean: 0.0,
                m2: 0.0,
            }
        } else {
            RewardHistory::Window {
                size: window_size,
                rewards: Vec::new(),
            }
        }
    }

    /// Adds the reward of trial `trial_number`.
    pub fn push(&mut self, trial_number: u64, reward: f64) {
        match self {
            RewardHistory::All { count, mean, m2 } => {
                *count += 1;
                let delta = reward - *mean;
                *mean += delta / *count as f64;
                *m2 += delta * (reward - *mean);
            }
            RewardHistory::Window { size, rewards } => {
                // Zeus keeps the most recent rewards by trial number and makes room
                // for the new one by dropping the oldest.
                if rewards.len() >= *size as usize {
                    rewards.remove(0);
                }
                let at = rewards.partition_point(|(n, _)| *n < trial_number);
                rewards.insert(at, (trial_number, reward));
            }
        }
    }

    /// Count, mean and variance, or `None` when there is no reward.
    pub fn summary(&self) -> Option<RewardSummary> {
        match self {
            RewardHistory::All { count: 0, .. } => None,
            RewardHistory::All { count, mean, m2 } => Some(RewardSummary {
                count: *count,
                mean: *mean,
                variance: (m2 / *count as f64).max(0.0),
            }),
            RewardHistory::Window { rewards, .. } if rewards.is_empty() => None,
            RewardHistory::Window { rewards, .. } => {
                let n = rewards.len() as f64;
                let mean = rewards.iter().map(|(_, r)| r).sum::<f64>() / n;
                let variance = rewards
                    .iter()
                    .map(|(_, r)| (r - mean) * (r - mean))
                    .sum::<f64>()
                    / n;
                Some(RewardSummary {
                    count: rewards.len() as u64,
                    mean,
                    variance,
                })
            }
        }
    }
}

/// The posterior of one arm (the seed's GaussianTsArmState).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArmState {
    /// Posterior mean of the expected reward.
    pub param_mean: f64,
    /// Posterior precision; `None` stands for infinite (sampling returns the mean).
    pub param_precision: Option<f64>,
    /// Learned reward precision (`1 / variance`); `None` stands for infinite.
    pub reward_precision: Option<f64>,
    /// Rewards the fit used.
    pub num_observations: u64,
}

impl ArmState {
    /// The prior alone: an arm with no observation.
    pub fn prior(prior_mean: f64, prior_precision: f64) -> Self {
        ArmState {
            param_mean: prior_mean,
            param_precision: Some(prior_precision),
            reward_precision: Some(0.0),
            num_observations: 0,
        }
    }

    /// Fits the posterior from the rewards' summary (the conjugate update).
    pub fn fit(prior_mean: f64, prior_precision: f64, rewards: Option<RewardSummary>) -> Self {
        let Some(s) = rewards else {
            return Self::prior(prior_mean, prior_precision);
        };
        // One observation (or identical ones): sampling yields their mean exactly.
        let exact = ArmState {
            param_mean: s.mean,
            param_precision: None,
            reward_precision: None,
            num_observations: s.count,
        };
        if s.variance == 0.0 {
            return exact;
        }
        let reward_precision = 1.0 / s.variance;
        let precision = prior_precision + s.count as f64 * reward_precision;
        let sum = s.mean * s.count as f64;
        let param_mean = (prior_precision * prior_mean + reward_precision * sum) / precision;
        if !(reward_precision.is_finite() && precision.is_finite() && param_mean.is_finite()) {
            // A variance so small that its inverse overflows is, to f64, no variance:
            // the fit stays finite (and the document serializable) as the exact arm.
            return exact;
        }
        ArmState {
            param_mean,
            param_precision: Some(precision),
            reward_precision: Some(reward_precision),
            num_observations: s.count,
        }
    }

    /// One draw of the arm's expected reward. A cold arm (zero precision) draws
    /// `+inf`, so arms never observed are tried before the others.
    pub fn sample(&self, rng: &mut JobRng) -> f64 {
        match self.param_precision {
            None => self.param_mean,
            // A precision so small that its inverse overflows counts as cold.
            Some(p) if p > 0.0 && (1.0 / p).is_finite() => {
                rng.normal(self.param_mean, libm::sqrt(1.0 / p))
            }
            Some(_) => f64::INFINITY,
        }
    }
}

/// Picks an arm: arms with fewer than `num_explorations` observations first, in
/// random order; then the arm with the largest sampled expected reward (the first
/// one on a tie). `arms` is `(batch_size, state)` ascending by batch size and non-empty.
pub fn choose(arms: &[(u32, ArmState)], num_explorations: u32, rng: &mut JobRng) -> u32 {
    let mut order: Vec<usize> = (0..arms.len()).collect();
    rng.shuffle(&mut order);
    if let Some(&i) = order
        .iter()
        .find(|&&i| arms[i].1.num_observations < num_explorations as u64)
    {
        return arms[i].0;
    }
    let mut best = (arms[0].0, f64::NEG_INFINITY);
    for (bs, arm) in arms {
        let draw = arm.sample(rng);
        if draw > best.1 || best.1 == f64::NEG_INFINITY && draw == f64::NEG_INFINITY {
            best = (*bs, draw);
        }
    }
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welford_matches_two_pass_variance() {
        let xs = [-100.0, -120.0, -95.5, -130.25, -101.0];
        let s = RewardSummary::of(xs).unwrap();
        let mean = xs.iter().sum::<f64>() / 5.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 5.0;
        assert!((s.mean - mean).abs() < 1e-9);
        assert!((s.variance - var).abs() < 1e-9);
        assert_eq!(s.count, 5);
    }

    #[test]
    fn window_keeps_the_most_recent_by_trial_number() {
        let mut h = RewardHistory::new(2);
        h.push(1, -1.0);
        h.push(2, -2.0);
        h.push(3, -3.0);
        assert_eq!(
            h,
            RewardHistory::Window {
                size: 2,
                rewards: vec![(2, -2.0), (3, -3.0)]
            }
        );
        let s = h.summary().unwrap();
        assert_eq!(s.count, 2);
        assert_eq!(s.mean, -2.5);
    }

    #[test]
    fn zero_variance_means_infinite_precision_and_sampling_returns_the_mean() {
        let arm = ArmState::fit(0.0, 0.0, RewardSummary::of([-5.0]));
        assert_eq!(arm.param_precision, None);
        let mut rng = JobRng::from_seed(1);
        assert_eq!(arm.sample(&mut rng), -5.0);
    }

    #[test]
    fn conjugate_update_with_zero_prior_precision_is_the_sample_mean() {
        let arm = ArmState::fit(0.0, 0.0, RewardSummary::of([-4.0, -6.0]));
        assert_eq!(arm.param_mean, -5.0);
        assert_eq!(arm.reward_precision, Some(1.0));
        assert_eq!(arm.param_precision, Some(2.0));
    }

    #[test]
    fn a_variance_too_small_to_invert_gives_a_finite_exact_arm() {
        let s = RewardSummary {
            count: 2,
            mean: -1e18,
            variance: 1e-310,
        };
        let arm = ArmState::fit(1e18, 1e18, Some(s));
        assert_eq!(arm.param_mean, -1e18);
        assert_eq!(arm.param_precision, None);
        let json = serde_json::to_string(&arm).unwrap();
        assert_eq!(serde_json::from_str::<ArmState>(&json).unwrap(), arm);
    }

    #[test]
    fn prior_pulls_the_mean() {
        let arm = ArmState::fit(0.0, 2.0, RewardSummary::of([-4.0, -6.0]));
        // (2 * 0 + 1 * -10) / (2 + 2)
        assert_eq!(arm.param_mean, -2.5);
    }

    #[test]
    fn exploration_before_sampling_then_best_arm_wins() {
        let mut rng = JobRng::from_seed(9);
        let cold = ArmState::fit(0.0, 0.0, RewardSummary::of([-1.0]));
        let good = ArmState::fit(0.0, 0.0, RewardSummary::of([-1.0, -1.1]));
        let bad = ArmState::fit(0.0, 0.0, RewardSummary::of([-100.0, -100.1]));
        assert_eq!(choose(&[(8, good), (16, cold)], 2, &mut rng), 16);
        for _ in 0..20 {
            assert_eq!(choose(&[(8, bad), (16, good)], 2, &mut rng), 16);
        }
    }
}
