//! A grid of simulations (workload x GPU pairs x policies x etas x seeds x
//! recurrence counts) and the one-line summary of each, for the command line and
//! the page.
//!
//! The grid's order is fixed: pairs outermost, then policies, etas, seeds and
//! recurrence counts. [`Catalog::sweep`] hands each simulation's report to a callback with
//! its progress; the callback keeps what it needs (the command line keeps whole
//! reports, the page keeps [`SimSummary`] rows) and may cancel between two
//! simulations.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};

use super::catalog::{beta_knob, check_recurrences, Catalog, SimulateSpec, Target};
use super::error::SimError;
use super::report::SimReport;
use super::simulator::SimConfig;
use crate::policy::Policy;

/// The most simulations one sweep may run.
pub const MAX_SWEEP: usize = 1_000_000;

/// A grid of simulations, as a user asks for it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SweepSpec {
    /// Workload x GPU pairs (empty: the one of `target`).
    #[serde(default)]
    pub pairs: Vec<Target>,
    /// The pair when `pairs` is empty.
    #[serde(flatten)]
    pub target: Target,
    /// Etas, each in `[0, 1]`.
    pub etas: Vec<f64>,
    /// Seeds.
    pub seeds: Vec<u64>,
    /// Recurrence counts.
    pub recurrences: Vec<u32>,
    /// Beta; `None` disables early stopping.
    #[serde(default)]
    pub beta: Option<f64>,
    /// Batch size policies (default: Zeus's alone).
    #[serde(default = "zeus_only")]
    pub policies: Vec<Policy>,
}

fn zeus_only() -> Vec<Policy> {
    vec![Policy::Zeus]
}

/// Where a sweep is: simulations done, and how many in all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    /// Simulations finished, this one included.
    pub done: usize,
    /// Simulations in the grid.
    pub total: usize,
}

/// How a sweep ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SweepEnd {
    /// Every simulation ran.
    Finished,
    /// The callback cancelled it after this many simulations.
    Cancelled(usize),
}

impl SweepSpec {
    /// The pairs the grid runs over.
    pub fn pairs(&self) -> &[Target] {
        if self.pairs.is_empty() {
            std::slice::from_ref(&self.target)
        } else {
            &self.pairs
        }
    }

    /// How many simulations the grid holds (saturating).
    pub fn len(&self) -> usize {
        self.pairs()
            .len()
            .saturating_mul(self.policies.len())
            .saturating_mul(self.etas.len())
            .saturating_mul(self.seeds.len())
            .saturating_mul(self.recurrences.len())
    }

    /// Whether the grid is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks every knob of the grid before anything runs.
    pub fn validate(&self) -> Result<(), SimError> {
        let n = self.len();
        if n == 0 {
            return Err(SimError::knob(
                "sweep",
                "needs at least one eta, one seed, one recurrence count, one policy and one pair",
            ));
        }
        if n > MAX_SWEEP {
            return Err(SimError::knob(
                "sweep",
                "at most 1,000,000 simulations at once",
            ));
        }
        for &r in &self.recurrences {
            check_recurrences(r)?;
        }
        for &eta in &self.etas {
            SimConfig {
                eta_knob: eta,
                beta_knob: beta_knob(self.beta),
                seed: 0,
            }
            .validate()?;
        }
        Ok(())
    }

    /// Every simulation of the grid, in order: (pair index, the simulation).
    pub fn points(&self) -> impl Iterator<Item = (usize, SimulateSpec)> + '_ {
        self.pairs().iter().enumerate().flat_map(move |(i, pair)| {
            self.policies.iter().flat_map(move |&policy| {
                self.etas.iter().flat_map(move |&eta| {
                    self.seeds.iter().flat_map(move |&seed| {
                        self.recurrences.iter().map(move |&recurrences| {
                            (
                                i,
                                SimulateSpec {
                                    target: pair.clone(),
                                    eta,
                                    beta: self.beta,
                                    recurrences,
                                    seed,
                                    policy,
                                },
                            )
                        })
                    })
                })
            })
        })
    }
}

impl Catalog {
    /// Runs the grid in order, handing each report and the progress to `each`;
    /// `each` returns [`ControlFlow::Break`] to cancel. The knobs are checked
    /// before the first simulation.
    pub fn sweep(
        &mut self,
        spec: &SweepSpec,
        mut each: impl FnMut(Progress, SimReport) -> ControlFlow<()>,
    ) -> Result<SweepEnd, SimError> {
        spec.validate()?;
        let total = spec.len();
        for (done, (_, point)) in spec.points().enumerate() {
            let report = self.simulate(&point)?;
            let progress = Progress {
                done: done + 1,
                total,
            };
            if each(progress, report).is_break() {
                return Ok(SweepEnd::Cancelled(done + 1));
            }
        }
        Ok(SweepEnd::Finished)
    }
}

/// One simulation in one line: its knobs, its totals, the baselines' totals over
/// as many recurrences, and the regret.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimSummary {
    /// The workload's dataset.
    pub dataset: String,
    /// The GPU.
    pub gpu: String,
    /// The batch size policy.
    pub policy: Policy,
    /// Eta.
    pub eta: f64,
    /// The seed.
    pub seed: u64,
    /// Recurrences simulated.
    pub recurrences: u32,
    /// Energy of every run (J).
    pub cum_energy: f64,
    /// Time of every run (s).
    pub cum_time: f64,
    /// Cost of every run.
    pub cum_cost: f64,
    /// The default configuration's expected energy over as many recurrences.
    pub default_energy: f64,
    /// The default configuration's expected time.
    pub default_time: f64,
    /// The default configuration's expected cost.
    pub default_cost: f64,
    /// The oracle's expected energy.
    pub oracle_energy: f64,
    /// The oracle's expected time.
    pub oracle_time: f64,
    /// The oracle's expected cost.
    pub oracle_cost: f64,
    /// Cumulative cost minus the oracle's.
    pub regret: f64,
    /// Regret as a fraction of the oracle's cost (0 when the oracle costs nothing).
    pub relative_regret: f64,
    /// Fraction of the default's cost saved (negative: spent more).
    pub savings_vs_default: f64,
}

impl SimSummary {
    /// The summary of a report.
    pub fn of(r: &SimReport) -> SimSummary {
        let n = r.recurrences as f64;
        let (d, o) = (&r.baselines.default, &r.baselines.oracle);
        let regret = r.regret.last().copied().unwrap_or(0.0);
        let oracle_cost = o.cost * n;
        SimSummary {
            dataset: r.workload.dataset.clone(),
            gpu: r.gpu.clone(),
            policy: r.policy,
            eta: r.config.eta_knob,
            seed: r.config.seed,
            recurrences: r.recurrences,
            cum_energy: r.total_energy(),
            cum_time: r.total_time(),
            cum_cost: r.total_cost(),
            default_energy: d.energy * n,
            default_time: d.time * n,
            default_cost: d.cost * n,
            oracle_energy: o.energy * n,
            oracle_time: o.time * n,
            oracle_cost,
            regret,
            relative_regret: if oracle_cost > 0.0 {
                regret / oracle_cost
            } else {
                0.0
            },
            savings_vs_default: r.savings_vs_default(),
        }
    }
}

/// One policy at one eta of a sweep, over its seeds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PolicyAtEta {
    /// The batch size policy.
    pub policy: Policy,
    /// Eta.
    pub eta: f64,
    /// How many simulations (seeds) it sums.
    pub seeds: usize,
    /// The mean of their cumulative costs.
    pub mean_cost: f64,
    /// Fraction of the default's cost saved over all of them (negative: spent more).
    pub savings_vs_default: f64,
}

impl PolicyAtEta {
    /// The summaries grouped by (policy, eta), in the order each pair first
    /// appears.
    pub fn of(summaries: &[SimSummary]) -> Vec<PolicyAtEta> {
        let mut groups: Vec<(Policy, f64, Vec<&SimSummary>)> = Vec::new();
        for s in summaries {
            match groups
                .iter_mut()
                .find(|(p, e, _)| *p == s.policy && *e == s.eta)
            {
                Some((_, _, g)) => g.push(s),
                None => groups.push((s.policy, s.eta, vec![s])),
            }
        }
        groups
            .into_iter()
            .map(|(policy, eta, g)| {
                let cost: f64 = g.iter().map(|s| s.cum_cost).sum();
                let default: f64 = g.iter().map(|s| s.default_cost).sum();
                PolicyAtEta {
                    policy,
                    eta,
                    seeds: g.len(),
                    mean_cost: cost / g.len() as f64,
                    savings_vs_default: 1.0 - cost / default,
                }
            })
            .collect()
    }
}

/// Which policy did better at one eta where a sweep ran more than one.
#[derive(Clone, Debug, PartialEq)]
pub struct EtaVerdict<'a> {
    /// Eta.
    pub eta: f64,
    /// The policy that saved the most against the default (the later on a tie).
    pub best: &'a PolicyAtEta,
    /// Every policy at this eta, in order.
    pub all: Vec<&'a PolicyAtEta>,
}

impl EtaVerdict<'_> {
    /// One verdict per eta with two or more policies, in the order the etas
    /// first appear.
    pub fn of(groups: &[PolicyAtEta]) -> Vec<EtaVerdict<'_>> {
        let mut etas: Vec<f64> = Vec::new();
        for g in groups {
            if !etas.contains(&g.eta) {
                etas.push(g.eta);
            }
        }
        etas.into_iter()
            .filter_map(|eta| {
                let all: Vec<&PolicyAtEta> = groups.iter().filter(|g| g.eta == eta).collect();
                let best = all
                    .iter()
                    .copied()
                    .max_by(|a, b| a.savings_vs_default.total_cmp(&b.savings_vs_default))?;
                (all.len() >= 2).then_some(EtaVerdict { eta, best, all })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SweepSpec {
        SweepSpec {
            pairs: Vec::new(),
            target: Target::default(),
            etas: vec![0.2, 0.8],
            seeds: vec![1, 2, 3],
            recurrences: vec![5, 10],
            beta: Some(2.0),
            policies: vec![Policy::Zeus],
        }
    }

    #[test]
    fn the_grid_runs_in_order_with_progress() {
        let mut c = Catalog::synthetic();
        let mut seen = Vec::new();
        let end = c
            .sweep(&spec(), |p, r| {
                seen.push((p, r.config.eta_knob, r.config.seed, r.recurrences));
                ControlFlow::Continue(())
            })
            .unwrap();
        assert_eq!(end, SweepEnd::Finished);
        assert_eq!(seen.len(), 12);
        assert_eq!(seen[0], (Progress { done: 1, total: 12 }, 0.2, 1, 5));
        assert_eq!(seen[1], (Progress { done: 2, total: 12 }, 0.2, 1, 10));
        assert_eq!(seen[2], (Progress { done: 3, total: 12 }, 0.2, 2, 5));
        assert_eq!(
            seen[11].0,
            Progress {
                done: 12,
                total: 12
            }
        );
    }

    #[test]
    fn policies_are_a_dimension_of_the_grid() {
        let mut c = Catalog::synthetic();
        let mut s = spec();
        s.policies = Policy::ALL.to_vec();
        s.etas = vec![0.5];
        let mut seen = Vec::new();
        c.sweep(&s, |_, r| {
            seen.push((r.policy, r.config.seed, r.recurrences, r.total_cost()));
            ControlFlow::Continue(())
        })
        .unwrap();
        assert_eq!(seen.len(), 12);
        assert!(seen[..6].iter().all(|x| x.0 == Policy::Zeus));
        assert!(seen[6..].iter().all(|x| x.0 == Policy::Wattwise));
        // The same knobs, another policy: its own histories.
        let costs = |xs: &[(Policy, u64, u32, f64)]| xs.iter().map(|x| x.3).collect::<Vec<_>>();
        assert_ne!(costs(&seen[..6]), costs(&seen[6..]));
        s.policies.clear();
        assert!(s.validate().is_err());
    }

    #[test]
    fn a_sweep_cancels_between_simulations() {
        let mut c = Catalog::synthetic();
        let mut n = 0;
        let end = c
            .sweep(&spec(), |_, _| {
                n += 1;
                if n == 4 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            })
            .unwrap();
        assert_eq!((end, n), (SweepEnd::Cancelled(4), 4));
    }

    #[test]
    fn knobs_are_checked_before_anything_runs() {
        let mut c = Catalog::synthetic();
        let mut ran = 0;
        let mut bad = spec();
        bad.recurrences.push(0);
        let e = c
            .sweep(&bad, |_, _| {
                ran += 1;
                ControlFlow::Continue(())
            })
            .unwrap_err();
        assert_eq!(e.to_string(), "recurrences: must be at least 1");
        let mut bad = spec();
        bad.etas.clear();
        assert!(c
            .sweep(&bad, |_, _| ControlFlow::Continue(()))
            .unwrap_err()
            .to_string()
            .starts_with("sweep: needs at least one"));
        let mut bad = spec();
        bad.seeds = (0..1_000_001).collect();
        assert!(bad.validate().is_err());
        assert_eq!(ran, 0);
    }

    #[test]
    fn the_summary_adds_up() {
        let mut c = Catalog::synthetic();
        let r = c
            .simulate(&SimulateSpec {
                target: Target::default(),
                eta: 0.5,
                beta: Some(2.0),
                recurrences: 20,
                seed: 4,
                policy: Policy::Zeus,
            })
            .unwrap();
        let s = SimSummary::of(&r);
        assert_eq!(s.cum_cost, r.cum_cost[19]);
        assert_eq!(s.default_cost, 20.0 * r.baselines.default.cost);
        assert_eq!(s.regret, r.cum_cost[19] - 20.0 * r.baselines.oracle.cost);
        assert!((s.relative_regret - s.regret / s.oracle_cost).abs() < 1e-15);
    }

    fn summary(policy: Policy, eta: f64, cum_cost: f64, default_cost: f64) -> SimSummary {
        SimSummary {
            dataset: "d".into(),
            gpu: "g".into(),
            policy,
            eta,
            seed: 1,
            recurrences: 1,
            cum_energy: 0.0,
            cum_time: 0.0,
            cum_cost,
            default_energy: 0.0,
            default_time: 0.0,
            default_cost,
            oracle_energy: 0.0,
            oracle_time: 0.0,
            oracle_cost: 0.0,
            regret: 0.0,
            relative_regret: 0.0,
            savings_vs_default: 1.0 - cum_cost / default_cost,
        }
    }

    #[test]
    fn policies_at_each_eta_over_their_seeds_and_the_better_one() {
        let (z, w) = (Policy::Zeus, Policy::Wattwise);
        let runs = [
            summary(z, 0.5, 90.0, 100.0),
            summary(z, 0.5, 70.0, 100.0),
            summary(w, 0.5, 60.0, 100.0),
            summary(w, 0.5, 60.0, 100.0),
            summary(z, 0.8, 50.0, 40.0),
        ];
        let groups = PolicyAtEta::of(&runs);
        let keys: Vec<(Policy, f64, usize)> =
            groups.iter().map(|g| (g.policy, g.eta, g.seeds)).collect();
        assert_eq!(keys, [(z, 0.5, 2), (w, 0.5, 2), (z, 0.8, 1)]);
        assert_eq!(groups[0].mean_cost, 80.0);
        assert!((groups[0].savings_vs_default - 0.2).abs() < 1e-12);
        assert!((groups[2].savings_vs_default + 0.25).abs() < 1e-12);
        // Only eta 0.5 ran both policies; wattwise's saved more there.
        let verdicts = EtaVerdict::of(&groups);
        assert_eq!(verdicts.len(), 1);
        assert_eq!((verdicts[0].eta, verdicts[0].best.policy), (0.5, w));
        assert_eq!(verdicts[0].all.len(), 2);
    }
}
