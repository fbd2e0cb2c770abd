//! Pruning exploration: which batch size to try next before the bandit starts.
//!
//! Each round walks from the round's default batch size downwards, then upwards
//! from the next larger one. A batch size that did not converge ends that
//! direction. The cheapest converged batch size becomes the next round's default,
//! and only converged ones survive into the next round and, after the last
//! round, into the bandit.

use serde::{Deserialize, Serialize};

use crate::cost::zeus_cost;
use crate::spec::JobParams;

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
#[error("batch_sizes: no batch size converged in pruning round {round}; reconfigure batch_sizes and register a new job")]
pub struct NoConvergedBatchSize {
    /// The round (from 0).
    pub round: u32,
}

/// The pruning rounds that are over, folded out of the exploration list so the
/// job document stays bounded however many rounds and batch sizes a job has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FinishedRounds {
    /// How many rounds are over.
    pub rounds: u32,
    /// The batch sizes that survived the last finished round (ascending); unused while `rounds` is 0.
    pub survivors: Vec<u32>,
    /// The cheapest of them: the next round's default batch size.
    pub default: u32,
}

impl FinishedRounds {
    /// The batch sizes and default batch size the next round starts from.
    fn start(&self, params: &JobParams) -> (Vec<u32>, u32) {
        if self.rounds == 0 {
            (params.batch_sizes.clone(), params.default_batch_size)
        } else {
            (self.survivors.clone(), self.default)
        }
    }
}

/// Where one round's walk ended.
enum RoundWalk {
    /// The round still needs this step.
    Step(Pruning),
    /// The round is over: its survivors (ascending) and the cheapest of them.
    Over(Vec<u32>, u32),
}

/// Walks one round over `batch_sizes` from `default`; `nth` picks each batch size's
/// exploration of this round among those in the list.
fn walk_round(
    mut batch_sizes: Vec<u32>,
    default: u32,
    explorations: &[Exploration],
    nth: usize,
    round: u32,
) -> Result<RoundWalk, NoConvergedBatchSize> {
    batch_sizes.sort_unstable();
    let idx = batch_sizes.iter().position(|&b| b == default).unwrap_or(0);
    let down: Vec<u32> = batch_sizes[..=idx].iter().rev().copied().collect();
    let up: Vec<u32> = batch_sizes[idx + 1..].to_vec();
    let mut converged = Vec::new();
    let mut best: Option<(f64, u32)> = None;
    for direction in [down, up] {
        for bs in direction {
            let Some(e) = explorations.iter().filter(|e| e.batch_size == bs).nth(nth) else {
                return Ok(RoundWalk::Step(Pruning::Explore(bs)));
            };
            let Some(outcome) = e.outcome else {
                return Ok(RoundWalk::Step(Pruning::Concurrent));
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
    match best {
        Some((_, best_bs)) => {
            converged.sort_unstable();
            Ok(RoundWalk::Over(converged, best_bs))
        }
        // A lone batch size has nothing to be pruned against: it carries on, so a
        // job with one batch size always gets it.
        None if batch_sizes.len() == 1 => Ok(RoundWalk::Over(batch_sizes, default)),
        None => Err(NoConvergedBatchSize { round }),
    }
}

/// Decides the next pruning step from the rounds already over and the job's
/// remaining explorations (in trial order).
pub fn next_step(
    params: &JobParams,
    finished: &FinishedRounds,
    explorations: &[Exploration],
) -> Result<Pruning, NoConvergedBatchSize> {
    let (mut batch_sizes, mut default) = finished.start(params);
    for round in finished.rounds..params.num_pruning_rounds {
        let nth = (round - finished.rounds) as usize;
        match walk_round(batch_sizes, default, explorations, nth, round)? {
            RoundWalk::Step(step) => return Ok(step),
            RoundWalk::Over(survivors, best) => {
                batch_sizes = survivors;
                default = best;
            }
        }
    }
    batch_sizes.sort_unstable();
    Ok(Pruning::Done(batch_sizes))
}

/// Folds every finished round at the front of `explorations` into `finished` and
/// returns the explorations it took out (each batch size's in round order), whose
/// rewards the caller keeps as statistics.
pub fn fold_finished_rounds(
    params: &JobParams,
    finished: &mut FinishedRounds,
    explorations: &mut Vec<Exploration>,
) -> Vec<Exploration> {
    let mut removed = Vec::new();
    while finished.rounds < params.num_pruning_rounds {
        let (batch_sizes, default) = finished.start(params);
        let Ok(RoundWalk::Over(survivors, best)) = walk_round(
            batch_sizes.clone(),
            default,
            explorations,
            0,
            finished.rounds,
        ) else {
            break;
        };
        for bs in &batch_sizes {
            if let Some(i) = explorations.iter().position(|e| e.batch_size == *bs) {
                removed.push(explorations.remove(i));
            }
        }
        *finished = FinishedRounds {
            rounds: finished.rounds + 1,
            survivors,
            default: best,
        };
    }
    removed
}

/// The cost of a finished run under the job's knobs.
pub fn cost_of(params: &JobParams, energy: f64, time: f64) -> f64 {
    zeus_cost(energy, time, params.eta_knob, params.max_power)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;

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

    /// The next step with no round folded yet.
    fn next(p: &JobParams, ex: &[Exploration]) -> Result<Pruning, NoConvergedBatchSize> {
        next_step(p, &FinishedRounds::default(), ex)
    }

    /// A first round from the default 32: down to 8 (fails), up to 128 (fails).
    fn first_round() -> Vec<Exploration> {
        vec![
            done(32, 1, 10.0, true),
            done(16, 2, 8.0, true),
            done(8, 3, 9.0, false),
            done(64, 4, 12.0, true),
            done(128, 5, 20.0, false),
        ]
    }

    #[test]
    fn walks_down_from_default_then_up() {
        let p = params(1);
        let mut ex = vec![];
        assert_eq!(next(&p, &ex), Ok(Pruning::Explore(32)));
        // After each run of the first round, the step that follows: 8 fails, so
        // downward ends and upward starts at 64.
        let steps = [
            Pruning::Explore(16),
            Pruning::Explore(8),
            Pruning::Explore(64),
            Pruning::Explore(128),
            Pruning::Done(vec![16, 32, 64]),
        ];
        for (run, step) in first_round().into_iter().zip(steps) {
            ex.push(run);
            assert_eq!(next(&p, &ex), Ok(step), "after {ex:?}");
        }
    }

    #[test]
    fn second_round_starts_at_the_cheapest() {
        assert_eq!(next(&params(2), &first_round()), Ok(Pruning::Explore(16)));
    }

    #[test]
    fn dispatched_exploration_means_concurrent() {
        let p = params(1);
        let ex = vec![Exploration {
            batch_size: 32,
            trial_number: 1,
            outcome: None,
        }];
        assert_eq!(next(&p, &ex), Ok(Pruning::Concurrent));
    }

    #[test]
    fn nothing_converged_is_an_error() {
        let p = params(1);
        let ex = vec![done(32, 1, 10.0, false), done(64, 2, 10.0, false)];
        assert_eq!(next(&p, &ex), Err(NoConvergedBatchSize { round: 0 }));
    }

    #[test]
    fn a_lone_batch_size_survives_without_converging() {
        let mut s = JobSpec::new("p", vec![8], 8, 300.0, 1, "V100");
        s.num_pruning_rounds = 2;
        let p = s.validate().unwrap();
        let ex = vec![done(8, 1, 10.0, false), done(8, 2, 10.0, false)];
        assert_eq!(next(&p, &ex), Ok(Pruning::Done(vec![8])));
    }

    #[test]
    fn folding_finished_rounds_keeps_the_same_decisions() {
        let p = params(3);
        let mut ex = first_round();
        ex.extend([done(16, 6, 7.0, true), done(8, 7, 9.0, false)]);
        let before = next(&p, &ex);
        let mut finished = FinishedRounds::default();
        let removed = fold_finished_rounds(&p, &mut finished, &mut ex);
        assert_eq!(finished.rounds, 1);
        assert_eq!(finished.survivors, vec![16, 32, 64]);
        assert_eq!(finished.default, 16);
        assert_eq!(removed.len(), 5);
        assert_eq!(ex.len(), 2);
        assert_eq!(next_step(&p, &finished, &ex), before);
    }

    #[test]
    fn zero_rounds_keeps_every_batch_size() {
        assert_eq!(
            next_step(&params(0), &FinishedRounds::default(), &[]),
            Ok(Pruning::Done(vec![8, 16, 32, 64, 128]))
        );
    }
}
