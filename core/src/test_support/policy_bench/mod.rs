//! The policy benchmark's computation, shared by `tests/policy.rs` (which asserts
//! the targets) and `examples/policy_bench.rs` (which prints the tables).
pub mod sharing;

use crate::policy::Policy;
use crate::sim::baseline::baselines;
use crate::sim::{simulate_one_job_with, Catalog, JobTrace, SimConfig};

/// The 24 workload x GPU pairs of the Zeus traces built into the core, resolved as
/// the command line and the page resolve them, as `("dataset/gpu", job)`.
pub fn pairs() -> Vec<(String, JobTrace)> {
    let mut catalog = Catalog::zeus().expect("the built-in traces parse");
    // GPU by GPU, as the benchmark's tables list them.
    let gpus = catalog.gpus();
    let mut out = Vec::new();
    catalog.each_job(|dataset, gpu, job| {
        let at = gpus.iter().position(|g| g == gpu);
        out.push((at, format!("{dataset}/{gpu}"), job.clone()));
    });
    out.sort_by_key(|(at, _, _)| *at);
    assert_eq!(out.len(), 24, "every Zeus workload on every GPU");
    out.into_iter().map(|(_, key, job)| (key, job)).collect()
}

/// One benchmark setting.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    /// Eta.
    pub eta: f64,
    /// Beta.
    pub beta: f64,
    /// First and last seed (inclusive).
    pub seeds: (u64, u64),
    /// Recurrences per simulation.
    pub recurrences: u32,
}

impl Setting {
    /// The setting: eta 0.5, beta 2, seeds 1-5, 50 recurrences.
    pub const MAIN: Setting = Setting {
        eta: 0.5,
        beta: 2.0,
        seeds: (1, 5),
        recurrences: 50,
    };

    /// In words.
    pub fn describe(&self) -> String {
        format!(
            "eta {}, beta {}, seeds {}-{}, {} recurrences",
            self.eta, self.beta, self.seeds.0, self.seeds.1, self.recurrences
        )
    }
}

/// One pair's figures: mean cumulative cost over the seeds, per policy, and the baselines' cost of as many recurrences.
#[derive(Clone, Debug)]
pub struct PairResult {
    /// `dataset/gpu`.
    pub key: String,
    /// Oracle's expected cost of all recurrences.
    pub oracle: f64,
    /// Default configuration's expected cost of all recurrences.
    pub default: f64,
    /// Zeus's mean cumulative cost.
    pub zeus: f64,
    /// wattwise's mean cumulative cost.
    pub wattwise: f64,
}

/// Mean cumulative cost over the setting's seeds.
pub fn mean_cost(job: &JobTrace, s: &Setting, policy: Policy) -> f64 {
    let mut total = 0.0;
    for seed in s.seeds.0..=s.seeds.1 {
        let cfg = SimConfig {
            eta_knob: s.eta,
            beta_knob: s.beta,
            seed,
        };
        let history = simulate_one_job_with(job, s.recurrences, &cfg, policy)
            .unwrap_or_else(|e| panic!("{}: {e}", job.workload.name()));
        total += history.iter().map(|h| h.cost).sum::<f64>();
    }
    total / (s.seeds.1 - s.seeds.0 + 1) as f64
}

/// The oracle's and the default configuration's expected cost of the setting's
/// recurrences.
pub fn baseline_totals(job: &JobTrace, s: &Setting) -> (f64, f64) {
    let b = baselines(job, s.eta).expect("baselines");
    let r = s.recurrences as f64;
    (b.oracle.cost * r, b.default.cost * r)
}

/// Every pair under one setting.
pub fn evaluate(pairs: &[(String, JobTrace)], s: &Setting) -> Vec<PairResult> {
    pairs
        .iter()
        .map(|(key, job)| {
            let (oracle, default) = baseline_totals(job, s);
            PairResult {
                key: key.clone(),
                oracle,
                default,
                zeus: mean_cost(job, s, Policy::Zeus),
                wattwise: mean_cost(job, s, Policy::Wattwise),
            }
        })
        .collect()
}

/// The figures the targets are about.
#[derive(Clone, Copy, Debug)]
pub struct Summary {
    /// Geometric mean of wattwise / oracle.
    pub wattwise_oracle: f64,
    /// Geometric mean of Zeus / oracle.
    pub zeus_oracle: f64,
    /// Geometric mean of wattwise / default.
    pub wattwise_default: f64,
    /// Geometric mean of Zeus / default.
    pub zeus_default: f64,
    /// Pairs where wattwise costs no more than the default.
    pub wattwise_beats_default: usize,
    /// Pairs where Zeus costs no more than the default.
    pub zeus_beats_default: usize,
    /// Largest wattwise / Zeus.
    pub worst_vs_zeus: f64,
}

fn geomean(xs: impl Iterator<Item = f64>) -> f64 {
    let (mut sum, mut n) = (0.0, 0.0);
    for x in xs {
        sum += x.ln();
        n += 1.0;
    }
    (sum / n).exp()
}

/// Summarizes a setting's pairs.
pub fn summarize(results: &[PairResult]) -> Summary {
    Summary {
        wattwise_oracle: geomean(results.iter().map(|r| r.wattwise / r.oracle)),
        zeus_oracle: geomean(results.iter().map(|r| r.zeus / r.oracle)),
        wattwise_default: geomean(results.iter().map(|r| r.wattwise / r.default)),
        zeus_default: geomean(results.iter().map(|r| r.zeus / r.default)),
        wattwise_beats_default: results.iter().filter(|r| r.wattwise <= r.default).count(),
        zeus_beats_default: results.iter().filter(|r| r.zeus <= r.default).count(),
        worst_vs_zeus: results
            .iter()
            .map(|r| r.wattwise / r.zeus)
            .fold(0.0, f64::max),
    }
}

/// A markdown table of every pair and the summary line.
pub fn table(results: &[PairResult]) -> String {
    let mut out = String::from(
        "| workload / GPU | Zeus / oracle | wattwise / oracle | Zeus / default | wattwise / default | wattwise / Zeus |\n| --- | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for r in results {
        out += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:+.1}% |\n",
            r.key,
            r.zeus / r.oracle,
            r.wattwise / r.oracle,
            r.zeus / r.default,
            r.wattwise / r.default,
            (r.wattwise / r.zeus - 1.0) * 100.0
        );
    }
    let s = summarize(results);
    out += &format!(
        "| **geometric mean** | **{:.3}** | **{:.3}** | **{:.3}** | **{:.3}** | |\n",
        s.zeus_oracle, s.wattwise_oracle, s.zeus_default, s.wattwise_default
    );
    out += &format!(
        "\nNo more than the default: Zeus on {} of {} pairs, wattwise on {}. Worst pair against Zeus: {:+.1}%.\n",
        s.zeus_beats_default,
        results.len(),
        s.wattwise_beats_default,
        (s.worst_vs_zeus - 1.0) * 100.0
    );
    out
}

/// One summary line of a setting, for the robustness table.
pub fn summary_row(s: &Setting, results: &[PairResult]) -> String {
    let m = summarize(results);
    format!(
        "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {} | {} | {:+.1}% |",
        s.describe(),
        m.zeus_oracle,
        m.wattwise_oracle,
        m.zeus_default,
        m.wattwise_default,
        m.zeus_beats_default,
        m.wattwise_beats_default,
        (m.worst_vs_zeus - 1.0) * 100.0
    )
}

/// How the wattwise profile, which ends early
/// ([`crate::sim::simulator::wattwise_profile`]), compares with Zeus's full
/// profile on every batch size of `pairs` at `eta`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfileAgreement {
    /// Batch sizes (over every pair).
    pub batch_sizes: usize,
    /// Where the early end picks another limit than the full profile.
    pub differ: usize,
    /// The largest epoch cost at the early pick over the full profile's.
    pub worst: f64,
    /// Limits profiled by the early end, over all batch sizes.
    pub visited: usize,
    /// Limits a full profile visits.
    pub limits: usize,
}

/// [`ProfileAgreement`] on `pairs` at `eta`.
pub fn profile_agreement(pairs: &[(String, JobTrace)], eta: f64) -> ProfileAgreement {
    let mut out = ProfileAgreement {
        batch_sizes: 0,
        differ: 0,
        worst: 1.0,
        visited: 0,
        limits: 0,
    };
    let selector = crate::power::Selector::ZeusCost {
        eta,
        max_power: None,
    };
    for (_, job) in pairs {
        for bs in &job.batch_sizes {
            let all: Vec<crate::power::PowerLimitMeasurement> = bs
                .limits
                .iter()
                .rev()
                .map(|p| crate::power::PowerLimitMeasurement {
                    power_limit: p.power_limit,
                    energy: p.energy_per_epoch,
                    time: p.time_per_epoch,
                    steps: 1,
                })
                .collect();
            let full = crate::power::select(&selector, &all, 1).expect("a limit");
            let (early, visited) =
                crate::sim::simulator::wattwise_profile(bs, eta).expect("a limit");
            let cost = |w: u32| {
                let p = bs.at(w).expect("a profiled limit");
                crate::cost::zeus_cost(
                    p.energy_per_epoch,
                    p.time_per_epoch,
                    eta,
                    bs.max_power_limit() as f64,
                )
            };
            out.batch_sizes += 1;
            out.visited += visited;
            out.limits += all.len();
            if early != full {
                out.differ += 1;
                out.worst = out.worst.max(cost(early) / cost(full));
            }
        }
    }
    out
}
