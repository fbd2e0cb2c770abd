//! Leave-one-GPU-out: each workload x GPU pair warm-started from what the
//! workload's jobs on the other GPUs learned (issue 27), against the same job
//! without sharing, and with shared knowledge that is wrong for it.

use crate::policy::shared::SharedEpochs;
use crate::policy::Policy;
use crate::sim::baseline::profiled_first_run;
use crate::sim::learning;
use crate::sim::{
    simulate_one_job_shared, Catalog, JobTrace, SimConfig, Target, WorkloadOverrides,
};

use super::{baseline_totals, geomean, Setting};

/// What the others taught: which knowledge a pair starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knowledge {
    /// None (today's wattwise policy).
    None,
    /// The other GPUs' jobs of the workload, run first (each cold, wattwise).
    Others,
    /// The same, with every epoch count scaled by 2.
    Doubled,
    /// The other GPUs' jobs trained to an easier target (the neighbouring target
    /// of the traces whose runs need fewer epochs).
    EasierTarget,
}

/// One pair's mean cumulative cost over the seeds under each knowledge.
#[derive(Clone, Debug)]
pub struct SharingResult {
    /// `dataset/gpu`.
    pub key: String,
    /// Oracle's expected cost of all recurrences.
    pub oracle: f64,
    /// Default configuration's expected cost of all recurrences.
    pub default: f64,
    /// The least any policy that profiles can expect to pay for all recurrences
    /// ([`crate::sim::baseline::profiled_first_run`] and the oracle's after it).
    pub floor: f64,
    /// Without sharing.
    pub cold: f64,
    /// Warm-started from the other GPUs.
    pub warm: f64,
    /// Warm-started from the others' epochs scaled by 2.
    pub doubled: f64,
    /// Warm-started from the others at an easier target.
    pub easier: f64,
    /// The easier target used.
    pub easier_target: f64,
}

fn cfg(s: &Setting, seed: u64) -> SimConfig {
    SimConfig {
        eta_knob: s.eta,
        beta_knob: s.beta,
        seed,
    }
}

/// What the jobs `others` teach ([`learning::learn`]: each its own job, with its own seed).
pub fn learn(others: &[JobTrace], s: &Setting, seed: u64) -> SharedEpochs {
    learning::learn(others, s.recurrences, &cfg(s, seed))
        .unwrap_or_else(|e| panic!("learning from {} jobs: {e}", others.len()))
}

/// The job's cumulative cost at `seed`, starting from `shared`.
pub fn cost(job: &JobTrace, s: &Setting, seed: u64, shared: Option<&SharedEpochs>) -> f64 {
    simulate_one_job_shared(job, s.recurrences, &cfg(s, seed), Policy::Wattwise, shared)
        .unwrap_or_else(|e| panic!("{}/{}: {e}", job.workload.name(), job.gpu))
        .history
        .iter()
        .map(|h| h.cost)
        .sum()
}

fn jobs_at(
    catalog: &mut Catalog,
    dataset: &str,
    gpus: &[String],
    target: Option<f64>,
) -> Vec<JobTrace> {
    gpus.iter()
        .filter_map(|gpu| {
            let t = Target {
                gpu: Some(gpu.clone()),
                dataset: Some(dataset.to_string()),
                overrides: WorkloadOverrides {
                    target_metric: target,
                    ..WorkloadOverrides::default()
                },
                ..Target::default()
            };
            catalog.job(&t).ok().cloned()
        })
        .collect()
}

/// The neighbouring target of the traces (one step either way) whose runs on
/// `others` need fewer epochs, where every other job has runs at it.
fn easier_target(
    catalog: &mut Catalog,
    dataset: &str,
    gpus: &[String],
    job: &JobTrace,
) -> Option<(f64, Vec<JobTrace>)> {
    let targets = catalog_targets(dataset);
    let at = targets
        .iter()
        .position(|&t| t == job.workload.target_metric)?;
    let mean_epochs = |jobs: &[JobTrace]| {
        let (mut sum, mut n) = (0.0, 0.0);
        for j in jobs {
            for b in &j.batch_sizes {
                for e in b.target_epochs.iter().flatten() {
                    sum += e;
                    n += 1.0;
                }
            }
        }
        (n > 0.0).then(|| sum / n)
    };
    let here = mean_epochs(&jobs_at(catalog, dataset, gpus, None))?;
    let mut best: Option<(f64, Vec<JobTrace>, f64)> = None;
    for k in [at.checked_sub(1), Some(at + 1)].into_iter().flatten() {
        let Some(&t) = targets.get(k) else { continue };
        let jobs = jobs_at(catalog, dataset, gpus, Some(t));
        if jobs.len() != gpus.len() {
            continue;
        }
        if let Some(m) = mean_epochs(&jobs).filter(|&m| m < here) {
            if best.as_ref().is_none_or(|b| m < b.2) {
                best = Some((t, jobs, m));
            }
        }
    }
    best.map(|(t, jobs, _)| (t, jobs))
}

/// The target metrics the Zeus train trace has for a dataset, ascending.
fn catalog_targets(dataset: &str) -> Vec<f64> {
    let train = include_str!("../../../traces/summary_train.csv");
    let mut out: Vec<f64> = train
        .lines()
        .skip(1)
        .filter(|l| l.split(',').next() == Some(dataset))
        .filter_map(|l| l.split(',').nth(6)?.parse().ok())
        .collect();
    out.sort_by(f64::total_cmp);
    out.dedup();
    out
}

/// The workload's jobs on the GPUs other than the pair's (`dataset/gpu`), and those GPUs.
fn others_of(
    catalog: &mut Catalog,
    pairs: &[(String, JobTrace)],
    key: &str,
) -> (Vec<String>, Vec<JobTrace>) {
    let (dataset, gpu) = key.split_once('/').expect("dataset/gpu");
    let gpus: Vec<String> = pairs
        .iter()
        .filter_map(|(k, _)| k.split_once('/'))
        .filter(|(d, g)| *d == dataset && *g != gpu)
        .map(|(_, g)| g.to_string())
        .collect();
    let others = jobs_at(catalog, dataset, &gpus, None);
    assert_eq!(others.len(), gpus.len(), "{key}");
    (gpus, others)
}

/// A pair's result with its baselines and no costs yet.
fn baseline_result(key: &str, job: &JobTrace, s: &Setting) -> SharingResult {
    let (oracle, default) = baseline_totals(job, s);
    let r = s.recurrences as f64;
    SharingResult {
        key: key.to_string(),
        oracle,
        default,
        floor: profiled_first_run(job, s.eta, Policy::Wattwise).expect("first run")
            + oracle * (r - 1.0) / r,
        cold: f64::NAN,
        warm: 0.0,
        doubled: f64::NAN,
        easier: f64::NAN,
        easier_target: f64::NAN,
    }
}

/// Every pair of `pairs` (from [`super::pairs`]) left out in turn.
pub fn evaluate(pairs: &[(String, JobTrace)], s: &Setting) -> Vec<SharingResult> {
    let mut catalog = Catalog::zeus().expect("the built-in traces parse");
    let seeds = s.seeds.0..=s.seeds.1;
    let n = (s.seeds.1 - s.seeds.0 + 1) as f64;
    pairs
        .iter()
        .map(|(key, job)| {
            let (dataset, _) = key.split_once('/').expect("dataset/gpu");
            let (gpus, others) = others_of(&mut catalog, pairs, key);
            let easier = easier_target(&mut catalog, dataset, &gpus, job);
            let mut out = SharingResult {
                cold: 0.0,
                doubled: 0.0,
                easier: 0.0,
                easier_target: easier.as_ref().map_or(f64::NAN, |e| e.0),
                ..baseline_result(key, job, s)
            };
            for seed in seeds.clone() {
                let shared = learn(&others, s, seed);
                out.cold += cost(job, s, seed, None) / n;
                out.warm += cost(job, s, seed, Some(&shared)) / n;
                out.doubled += cost(job, s, seed, Some(&shared.scaled(2.0))) / n;
                out.easier += match &easier {
                    Some((_, jobs)) => cost(job, s, seed, Some(&learn(jobs, s, seed))) / n,
                    None => f64::NAN,
                };
            }
            out
        })
        .collect()
}

/// [`evaluate`] with the shared job only (its other costs NaN): the test's
/// cheaper check of the other etas.
pub fn evaluate_shared(pairs: &[(String, JobTrace)], s: &Setting) -> Vec<SharingResult> {
    let mut catalog = Catalog::zeus().expect("the built-in traces parse");
    let n = (s.seeds.1 - s.seeds.0 + 1) as f64;
    pairs
        .iter()
        .map(|(key, job)| {
            let (_, others) = others_of(&mut catalog, pairs, key);
            let mut out = baseline_result(key, job, s);
            for seed in s.seeds.0..=s.seeds.1 {
                out.warm += cost(job, s, seed, Some(&learn(&others, s, seed))) / n;
            }
            out
        })
        .collect()
}

/// The figures the targets are about.
#[derive(Clone, Copy, Debug)]
pub struct SharingSummary {
    /// Geometric mean of warm / oracle.
    pub warm_oracle: f64,
    /// Geometric mean of cold / oracle.
    pub cold_oracle: f64,
    /// Pairs where warm costs no more than the default.
    pub warm_beats_default: usize,
    /// Pairs where cold costs no more than the default.
    pub cold_beats_default: usize,
    /// Pairs where even the floor (what any policy that profiles expects to
    /// pay) is over the default.
    pub floor_over_default: usize,
    /// Largest doubled / cold.
    pub worst_doubled: f64,
    /// Largest easier / cold (pairs with an easier target).
    pub worst_easier: f64,
    /// Largest warm / cold.
    pub worst_warm: f64,
}

/// Summarizes a setting's pairs.
pub fn summarize(results: &[SharingResult]) -> SharingSummary {
    let worst = |f: &dyn Fn(&SharingResult) -> f64| {
        results
            .iter()
            .map(f)
            .filter(|x| x.is_finite())
            .fold(0.0, f64::max)
    };
    SharingSummary {
        warm_oracle: geomean(results.iter().map(|r| r.warm / r.oracle)),
        cold_oracle: geomean(results.iter().map(|r| r.cold / r.oracle)),
        warm_beats_default: results.iter().filter(|r| r.warm <= r.default).count(),
        cold_beats_default: results.iter().filter(|r| r.cold <= r.default).count(),
        floor_over_default: results.iter().filter(|r| r.floor > r.default).count(),
        worst_doubled: worst(&|r| r.doubled / r.cold),
        worst_easier: worst(&|r| r.easier / r.cold),
        worst_warm: worst(&|r| r.warm / r.cold),
    }
}

/// A markdown table of every pair and the summary lines.
pub fn table(results: &[SharingResult]) -> String {
    let mut out = String::from(
        "| workload / GPU | no sharing / oracle | shared / oracle | no sharing / default | shared / default | floor / default | shared / no sharing | epochs x2 / no sharing | easier target / no sharing |\n| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    let pct = |x: f64| {
        if x.is_finite() {
            format!("{:+.1}%", (x - 1.0) * 100.0)
        } else {
            "n/a".into()
        }
    };
    for r in results {
        out += &format!(
            "| {} | {:.3} | {:.3} | {:.3} | {:.3} | {:.4} | {} | {} | {} ({}) |\n",
            r.key,
            r.cold / r.oracle,
            r.warm / r.oracle,
            r.cold / r.default,
            r.warm / r.default,
            r.floor / r.default,
            pct(r.warm / r.cold),
            pct(r.doubled / r.cold),
            pct(r.easier / r.cold),
            r.easier_target,
        );
    }
    let s = summarize(results);
    out += &format!(
        "| **geometric mean** | **{:.3}** | **{:.3}** | **{:.3}** | **{:.3}** | | | | |\n",
        s.cold_oracle,
        s.warm_oracle,
        geomean(results.iter().map(|r| r.cold / r.default)),
        geomean(results.iter().map(|r| r.warm / r.default)),
    );
    out += &format!(
        "\nNo more than the default: without sharing on {} of {} pairs, with sharing on {}; no policy that profiles can be on {} (floor over the default). Worst pair, shared against no sharing: {}; epochs x2: {}; easier target: {}.\n",
        s.cold_beats_default,
        results.len(),
        s.warm_beats_default,
        s.floor_over_default,
        pct(s.worst_warm),
        pct(s.worst_doubled),
        pct(s.worst_easier),
    );
    out
}
