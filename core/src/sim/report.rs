//! A simulation's result as the command line and the page show it: the history,
//! cumulative energy, time and cost per recurrence, the baselines and the regret
//! against the oracle.

use serde::{Deserialize, Serialize};

use super::baseline::{baselines, Baselines};
use super::error::SimError;
use super::simulator::{simulate_one_job_with, HistoryEntry, SimConfig};
use super::workload::{JobTrace, Workload};
use crate::policy::Policy;

/// One simulation of a recurring job, summarized.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimReport {
    /// The workload.
    pub workload: Workload,
    /// The GPU of the power trace.
    pub gpu: String,
    /// The knobs.
    pub config: SimConfig,
    /// The batch size policy (absent: Zeus's).
    #[serde(default, skip_serializing_if = "Policy::is_zeus")]
    pub policy: Policy,
    /// Recurrences simulated.
    pub recurrences: u32,
    /// Every run, in order.
    pub history: Vec<HistoryEntry>,
    /// Energy (J) of all runs up to and including each recurrence.
    pub cum_energy: Vec<f64>,
    /// Time (s) of all runs up to and including each recurrence.
    pub cum_time: Vec<f64>,
    /// Zeus cost of all runs up to and including each recurrence.
    pub cum_cost: Vec<f64>,
    /// Cumulative cost minus the oracle's expected cost of as many recurrences.
    pub regret: Vec<f64>,
    /// The default configuration and the oracle.
    pub baselines: Baselines,
}

impl SimReport {
    /// Simulates the job under Zeus's policy and summarizes the result.
    pub fn run(job: &JobTrace, recurrences: u32, cfg: &SimConfig) -> Result<SimReport, SimError> {
        Self::run_with(job, recurrences, cfg, Policy::Zeus)
    }

    /// Simulates the job under a batch size policy and summarizes the result.
    pub fn run_with(
        job: &JobTrace,
        recurrences: u32,
        cfg: &SimConfig,
        policy: Policy,
    ) -> Result<SimReport, SimError> {
        let history = simulate_one_job_with(job, recurrences, cfg, policy)?;
        let baselines = baselines(job, cfg.eta_knob)?;
        let mut report = Self::from_history(job, recurrences, cfg, history, baselines);
        report.policy = policy;
        Ok(report)
    }

    /// Summarizes a history of `recurrences` recurrences.
    pub fn from_history(
        job: &JobTrace,
        recurrences: u32,
        cfg: &SimConfig,
        history: Vec<HistoryEntry>,
        baselines: Baselines,
    ) -> SimReport {
        let n = recurrences as usize;
        let (mut energy, mut time, mut cost) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
        for h in &history {
            let i = h.recurrence as usize;
            if i < n {
                energy[i] += h.energy;
                time[i] += h.time;
                cost[i] += h.cost;
            }
        }
        let cumulate = |v: &mut Vec<f64>| {
            let mut acc = 0.0;
            for x in v.iter_mut() {
                acc += *x;
                *x = acc;
            }
        };
        cumulate(&mut energy);
        cumulate(&mut time);
        cumulate(&mut cost);
        let regret = cost
            .iter()
            .enumerate()
            .map(|(i, c)| c - (i + 1) as f64 * baselines.oracle.cost)
            .collect();
        SimReport {
            workload: job.workload.clone(),
            gpu: job.gpu.clone(),
            config: *cfg,
            policy: Policy::Zeus,
            recurrences,
            history,
            cum_energy: energy,
            cum_time: time,
            cum_cost: cost,
            regret,
            baselines,
        }
    }

    /// Total cost of all recurrences (0 when there are none).
    pub fn total_cost(&self) -> f64 {
        self.cum_cost.last().copied().unwrap_or(0.0)
    }

    /// Total energy of all recurrences.
    pub fn total_energy(&self) -> f64 {
        self.cum_energy.last().copied().unwrap_or(0.0)
    }

    /// Total time of all recurrences.
    pub fn total_time(&self) -> f64 {
        self.cum_time.last().copied().unwrap_or(0.0)
    }

    /// Fraction of the default configuration's expected cost saved (negative: spent more).
    pub fn savings_vs_default(&self) -> f64 {
        self.saved(self.total_cost(), self.baselines.default.cost)
    }

    /// Fraction of the default configuration's expected energy saved.
    pub fn energy_savings_vs_default(&self) -> f64 {
        self.saved(self.total_energy(), self.baselines.default.energy)
    }

    /// The fraction of `per_run` x the recurrences that `total` saves (0 when
    /// that is not positive).
    fn saved(&self, total: f64, per_run: f64) -> f64 {
        let base = self.recurrences as f64 * per_run;
        if base > 0.0 {
            1.0 - total / base
        } else {
            0.0
        }
    }
}
