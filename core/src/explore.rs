//! Pruning exploration: which batch size to try next before the bandit starts.
//!
//! Each round walks from the round's default batch size downwards, then upwards
//! from the next larger one. A batch size that did not converge ends that
//! direction. The cheapest converged batch size becomes the next round's default,
//! and only converged ones survive into the next round and, after the last
//! round, into the bandit.

use serde::{Deserialize, Serialize};

use crate::cost::zeus_cost;
use crate::job::JobParams;

/// An exploration trial that has not failed (Zeus ignores failed explorations:
/// the batch size is explored again in that round).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Exploration {
    /// Batch size explored.
    pub batch_size: u32,
    /// Its trial.
    pub trial_number: u64,
    /// `None` while dispatched; then its cost and whether it converged.
    pub outcome: Option<ExplorationOutcome>,
}

/// The result of an exploration, as pruning needs it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExplorationOutcome {
    /// Zeus cost of the run.
    pub cost: f64,
    /// Whether it converged.
    pub converged: bool,
}

/// What pruning says to do next.
#[derive(Clone, Debug, PartialEq)]
pub enum Pruning {
    /// Explore this batch size.
    Explore(u32),
    /// An exploration of this round is still running: a concurrent submission.
    Concurrent,
    /// Pruning is over; these batch sizes (ascending) converged in the last round.
    Done(Vec<u32>),
}

/// Pruning found no batch size that converged in a round.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("no batch size converged in pruning round {round}; reconfigure batch_sizes and register a new job")]
pub struct NoConvergedBatchSize {
    /// The round (from 0).
    pub round: u32,
}

/// Decides the next pruning step from the job's explorations (in trial order).
pub fn next_step(
    params: &JobParams,
    explorations: &[Exploration],
) -> Result<Pruning, NoConvergedBatchSize> {
    let mut batch_sizes = params.batch_sizes.clone();
    let mut default = params.default_batch_size;
    for round in 0..params.num_pruning_rounds {
        batch_sizes.sort_unstable();
        let idx = batch_sizes.iter().position(|&b| b == default).unwrap_or(0);
        let down: Vec<u32> = batch_sizes[..=idx].iter().rev().copied().collect();
        let up: Vec<u32> = batch_sizes[idx + 1..].to_vec();
        let mut converged = Vec::new();
        let mut best: Option<(f64, u32)> = None;
        for direction in [down, up] {
            for bs in direction {
                let Some(e) = explorations
                    .iter()
                    .filter(|e| e.batch_size == bs)
                    .nth(round as usize)
                else {
                    return Ok(Pruning::Explore(bs));
                };
                let Some(outcome) = e.outcome else {
                    return Ok(Pruning::Concurrent);
                };
                if !outcome.converged {
                    break;
                }
                converged.push(bs);
                if best.is_none_or(|(c, _)| outcome.cost < c) {
                    best = Some((outcome.cost, bs));
                }
            }
        }
        let Some((_, best_bs)) = best else {
            return Err(NoConvergedBatchSize { round });
        };
        default = best_bs;
        batch_sizes = converged;
    }
    batch_sizes.sort_unstable();
    Ok(Pruning::Done(batch_sizes))
}

/// The cost of a finished run under the job's knobs.
pub fn cost_of(params: &JobParams, energy: f64, time: f64) -> f64 {
    zeus_cost(energy, time, params.eta_knob, params.max_power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;

    fn params(rounds: i64) -> JobParams {
        let mut s = JobSpec::new("p", vec![8, 16, 32, 64, 128], 32, 300.0, 1, "V100");
        s.num_pruning_rounds = rounds;
        s.validate().unwrap()
    }

    fn done(bs: u32, n: u64, cost: f64, converged: bool) -> Exploration {
        Exploration {
            batch_size: bs,
            trial_number: n,
            outcome: Some(ExplorationOutcome { cost, converged }),
        }
    }

    #[test]
    fn walks_down_from_default_then_up() {
        let p = params(1);
        let mut ex = vec![];
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(32)));
        ex.push(done(32, 1, 10.0, true));
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(16)));
        ex.push(done(16, 2, 8.0, true));
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(8)));
        ex.push(done(8, 3, 9.0, false));
        // 8 failed: downward ends, upward starts at 64.
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(64)));
        ex.push(done(64, 4, 12.0, true));
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(128)));
        ex.push(done(128, 5, 20.0, false));
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Done(vec![16, 32, 64])));
    }

    #[test]
    fn second_round_starts_at_the_cheapest() {
        let p = params(2);
        let ex = vec![
            done(32, 1, 10.0, true),
            done(16, 2, 8.0, true),
            done(8, 3, 9.0, false),
            done(64, 4, 12.0, true),
            done(128, 5, 20.0, false),
        ];
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Explore(16)));
    }

    #[test]
    fn dispatched_exploration_means_concurrent() {
        let p = params(1);
        let ex = vec![Exploration {
            batch_size: 32,
            trial_number: 1,
            outcome: None,
        }];
        assert_eq!(next_step(&p, &ex), Ok(Pruning::Concurrent));
    }

    #[test]
    fn nothing_converged_is_an_error() {
        let p = params(1);
        let ex = vec![done(32, 1, 10.0, false), done(64, 2, 10.0, false)];
        assert_eq!(next_step(&p, &ex), Err(NoConvergedBatchSize { round: 0 }));
    }

    #[test]
    fn zero_rounds_keeps_every_batch_size() {
        assert_eq!(
            next_step(&params(0), &[]),
            Ok(Pruning::Done(vec![8, 16, 32, 64, 128]))
        );
    }
}
