//! Baselines on the same trace: the default batch size at the maximum power
//! limit, and the oracle (the best single configuration in hindsight).
//!
//! A configuration's expected cost per recurrence is the mean cost of its runs
//! that reach the target within `max_epochs`, plus `(1 - p) / p` times the cost
//! of a failed run of `max_epochs` epochs, where `p` is the fraction of runs that
//! reach the target: the expected number of failed runs before the first success
//! of a geometric process. Energy and time are expected the same way.

use serde::{Deserialize, Serialize};

use super::error::SimError;
use super::simulator::{profiled_epoch, wattwise_profile};
use super::workload::{BatchSizeTrace, JobTrace, PowerPoint};
use crate::cost::zeus_cost;
use crate::policy::Policy;

/// A fixed configuration and what one recurrence costs with it, in expectation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// Batch size.
    pub batch_size: u32,
    /// Power limit in watts.
    pub power_limit: u32,
    /// Expected energy per recurrence, in joules.
    pub energy: f64,
    /// Expected time per recurrence, in seconds.
    pub time: f64,
    /// Expected Zeus cost per recurrence.
    pub cost: f64,
    /// Fraction of the trace's runs that reach the target within `max_epochs`.
    pub reach_probability: f64,
}

/// Both baselines.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Baselines {
    /// The default batch size at its maximum power limit.
    pub default: Baseline,
    /// The single (batch size, power limit) with the lowest expected cost.
    pub oracle: Baseline,
}

/// The expected cost of running `bs` at `point`, or `None` when no run of the
/// trace reaches the target within `max_epochs`.
pub fn expected(
    job: &JobTrace,
    bs: &BatchSizeTrace,
    point: &PowerPoint,
    eta_knob: f64,
) -> Option<Baseline> {
    let max_epochs = job.workload.max_epochs as f64;
    let (mut n, mut reached, mut energy_sum, mut time_sum) = (0usize, 0usize, 0.0, 0.0);
    for te in &bs.target_epochs {
        n += 1;
        if let Some(te) = te.filter(|&te| te <= max_epochs) {
            reached += 1;
            energy_sum += point.energy_per_epoch * te;
            time_sum += point.time_per_epoch * te;
        }
    }
    if reached == 0 {
        return None;
    }
    let p = reached as f64 / n as f64;
    let fails = (1.0 - p) / p;
    let energy = energy_sum / reached as f64 + fails * point.energy_per_epoch * max_epochs;
    let time = time_sum / reached as f64 + fails * point.time_per_epoch * max_epochs;
    Some(Baseline {
        batch_size: bs.batch_size,
        power_limit: point.power_limit,
        energy,
        time,
        cost: zeus_cost(energy, time, eta_knob, job.max_power),
        reach_probability: p,
    })
}

/// The default batch size at its maximum power limit.
pub fn default_baseline(job: &JobTrace, eta_knob: f64) -> Result<Baseline, SimError> {
    let default = job.workload.default_batch_size;
    let bs = job
        .batch_size(default)
        .ok_or(SimError::UnknownBatchSize(default))?;
    let point = bs.limits.last().ok_or(SimError::NoPowerLimit(default))?;
    expected(job, bs, point, eta_knob).ok_or(SimError::NoRuns {
        batch_size: default,
        target_metric: job.workload.target_metric,
    })
}

/// The single (batch size, power limit) with the lowest expected cost per
/// recurrence (the first one, by batch size then power limit, on a tie).
pub fn oracle(job: &JobTrace, eta_knob: f64) -> Result<Baseline, SimError> {
    let mut best: Option<Baseline> = None;
    for bs in &job.batch_sizes {
        for point in &bs.limits {
            if let Some(b) = expected(job, bs, point, eta_knob) {
                if best.is_none_or(|x| b.cost < x.cost) {
                    best = Some(b);
                }
            }
        }
    }
    best.ok_or(SimError::NoRuns {
        batch_size: 0,
        target_metric: job.workload.target_metric,
    })
}

/// The least expected cost of a job's first run under `policy`: whichever batch
/// size it runs, its first epoch is the power profile. Under Zeus's policy the
/// profile spreads the epoch over every power limit and the run may go on at any
/// limit; under wattwise's the profile visits the limits from the highest down
/// until it settles ([`crate::sim::simulator::wattwise_profile`]: `1 / n` of the
/// epoch each) and the run goes on at the limit it chose (the simulator's model
/// of either). A policy's expected cost over `r` recurrences is at least this
/// plus `r - 1` times the oracle's: where the default configuration is the
/// oracle's, no policy that profiles costs as little as the default.
pub fn profiled_first_run(job: &JobTrace, eta_knob: f64, policy: Policy) -> Result<f64, SimError> {
    let mut best: Option<f64> = None;
    for bs in &job.batch_sizes {
        let runs_at: Vec<(&PowerPoint, usize)> = if policy == Policy::Zeus {
            bs.limits.iter().map(|p| (p, bs.limits.len())).collect()
        } else {
            wattwise_profile(bs, eta_knob)
                .and_then(|(pl, visited)| Some((bs.at(pl)?, visited)))
                .into_iter()
                .collect()
        };
        for (point, visited) in runs_at {
            if let Some(b) = expected(job, bs, point, eta_knob) {
                let (e1, t1) = profiled_epoch(bs, point, visited);
                let extra = zeus_cost(
                    e1 - point.energy_per_epoch,
                    t1 - point.time_per_epoch,
                    eta_knob,
                    job.max_power,
                );
                let cost = b.cost + extra;
                if best.is_none_or(|x| cost < x) {
                    best = Some(cost);
                }
            }
        }
    }
    best.ok_or(SimError::NoRuns {
        batch_size: 0,
        target_metric: job.workload.target_metric,
    })
}

/// Both baselines.
pub fn baselines(job: &JobTrace, eta_knob: f64) -> Result<Baselines, SimError> {
    Ok(Baselines {
        default: default_baseline(job, eta_knob)?,
        oracle: oracle(job, eta_knob)?,
    })
}
