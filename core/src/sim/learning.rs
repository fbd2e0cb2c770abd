//! Replaying a policy that learns across jobs: the workload's jobs on other GPUs
//! run first (each a wattwise job of its own, run cold), then the job under study
//! runs twice, with and without what they taught ([`crate::policy::shared`]).

use serde::{Deserialize, Serialize};

use super::baseline::baselines;
use super::catalog::{check_recurrences, Catalog, SimulateSpec, Target};
use super::error::SimError;
use super::report::SimReport;
use super::simulator::{check_beta, first_of, simulate_one_job_shared, SimConfig};
use super::workload::JobTrace;
use crate::policy::shared::SharedEpochs;
use crate::policy::shared::WarmState;
use crate::policy::Policy;

/// At most this many GPUs to learn from.
pub const MAX_LEARN_FROM: usize = 16;

/// The job under study with and without the other GPUs' knowledge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LearningReport {
    /// The GPUs whose jobs ran first, in order.
    pub learn_from: Vec<String>,
    /// What their runs taught: epochs to target per batch size.
    pub shared: SharedEpochs,
    /// The job without sharing (the wattwise policy as it is without a workload).
    pub alone: SimReport,
    /// The job warm-started from `shared`.
    pub shared_run: SimReport,
    /// The warm start at the end of the shared run: what was probed, what it cost,
    /// and whether the job's own runs disagreed with the shared knowledge.
    pub warm: Option<WarmState>,
}

impl LearningReport {
    /// Total regret against the oracle: without sharing, then with.
    pub fn regrets(&self) -> (f64, f64) {
        let last = |r: &SimReport| r.regret.last().copied().unwrap_or(0.0);
        (last(&self.alone), last(&self.shared_run))
    }
}

/// What `others` (jobs of one workload) teach, each run cold under the wattwise
/// policy for `recurrences` with `cfg`'s knobs. They are other jobs: the `k`-th
/// (from 1) has its own seed, `1000 x seed + k`, so its training paths are not
/// those of the job that learns from them.
pub fn learn(
    others: &[JobTrace],
    recurrences: u32,
    cfg: &SimConfig,
) -> Result<SharedEpochs, SimError> {
    let mut shared = SharedEpochs::default();
    for (k, job) in others.iter().enumerate() {
        let cfg = SimConfig {
            seed: cfg.seed.wrapping_mul(1000).wrapping_add(k as u64 + 1),
            ..*cfg
        };
        let run = simulate_one_job_shared(job, recurrences, &cfg, Policy::Wattwise, None)?;
        shared = shared.merge(&run.learned);
    }
    Ok(shared)
}

impl SimulateSpec {
    /// The job under study of a learning run from the lists a host was given:
    /// the first eta and the first seed, the wattwise policy (sharing is
    /// wattwise's), and an infinite `beta` as no early stopping (checked as a
    /// plain run's is).
    pub fn for_learning(
        target: Target,
        etas: &[f64],
        seeds: &[u64],
        beta: f64,
        recurrences: u32,
    ) -> Result<SimulateSpec, SimError> {
        check_beta(beta)?;
        Ok(SimulateSpec {
            target,
            eta: first_of("eta", etas)?,
            beta: beta.is_finite().then_some(beta),
            recurrences,
            seed: first_of("seed", seeds)?,
            policy: Policy::Wattwise,
        })
    }
}

impl Catalog {
    /// Runs the workload of `spec` on each GPU of `learn_from` (wattwise, no
    /// sharing, the spec's knobs), then the spec's job with and without what
    /// those runs taught. The spec's policy is ignored: sharing is wattwise's.
    pub fn simulate_learning(
        &mut self,
        spec: &SimulateSpec,
        learn_from: &[String],
    ) -> Result<LearningReport, SimError> {
        check_recurrences(spec.recurrences)?;
        if learn_from.is_empty() || learn_from.len() > MAX_LEARN_FROM {
            return Err(SimError::knob(
                "learn_from",
                "must name 1 to 16 GPUs other than the job's",
            ));
        }
        let cfg = SimConfig {
            eta_knob: spec.eta,
            beta_knob: super::catalog::beta_knob(spec.beta),
            seed: spec.seed,
        };
        cfg.validate()?;
        let job = self.job(&spec.target)?.clone();
        let mut others = Vec::with_capacity(learn_from.len());
        for gpu in learn_from {
            if *gpu == job.gpu {
                return Err(SimError::knob(
                    "learn_from",
                    "must not name the job's own GPU (leave one GPU out)",
                ));
            }
            let target = Target {
                gpu: Some(gpu.clone()),
                ..spec.target.clone()
            };
            others.push(self.job(&target)?.clone());
        }
        let shared = learn(&others, spec.recurrences, &cfg)?;
        let base = baselines(&job, cfg.eta_knob)?;
        let report = |history| {
            let mut r = SimReport::from_history(&job, spec.recurrences, &cfg, history, base);
            r.policy = Policy::Wattwise;
            r
        };
        let alone = simulate_one_job_shared(&job, spec.recurrences, &cfg, Policy::Wattwise, None)?;
        let warm = simulate_one_job_shared(
            &job,
            spec.recurrences,
            &cfg,
            Policy::Wattwise,
            Some(&shared),
        )?;
        Ok(LearningReport {
            learn_from: learn_from.to_vec(),
            shared,
            alone: report(alone.history),
            shared_run: report(warm.history),
            warm: warm.warm,
        })
    }
}

#[cfg(all(test, feature = "builtin-traces"))]
mod tests {
    use super::*;

    fn spec(gpu: &str) -> SimulateSpec {
        SimulateSpec {
            target: Target {
                gpu: Some(gpu.into()),
                dataset: Some("imagenet".into()),
                ..Target::default()
            },
            recurrences: 50,
            eta: 0.5,
            beta: Some(2.0),
            seed: 1,
            policy: Policy::Wattwise,
        }
    }

    #[test]
    fn imagenet_on_v100_learns_from_the_other_gpus() {
        let mut c = Catalog::zeus().unwrap();
        let gpus: Vec<String> = ["a40", "p100", "rtx6000"].map(String::from).into();
        let r = c.simulate_learning(&spec("v100"), &gpus).unwrap();
        let (alone, shared) = r.regrets();
        assert!(
            shared < alone,
            "regret with sharing {shared} >= without {alone}"
        );
        assert!(r.shared.get(256).is_some_and(|s| s.successes > 0));
        let warm = r.warm.unwrap();
        assert!(!warm.distrust && !warm.probed.is_empty(), "{warm:?}");
        let own = c.simulate_learning(&spec("v100"), &["v100".to_string()]);
        assert!(own.unwrap_err().to_string().contains("learn_from"));
    }
}

#[cfg(test)]
mod for_learning_tests {
    use super::*;

    #[test]
    fn a_learning_run_is_wattwise_at_the_first_eta_and_seed() {
        let spec =
            SimulateSpec::for_learning(Target::default(), &[0.2, 0.8], &[3, 4], 2.0, 9).unwrap();
        assert_eq!(
            (
                spec.eta,
                spec.seed,
                spec.beta,
                spec.recurrences,
                spec.policy
            ),
            (0.2, 3, Some(2.0), 9, Policy::Wattwise)
        );
        let spec = SimulateSpec::for_learning(Target::default(), &[0.5], &[1], f64::INFINITY, 1);
        assert_eq!(spec.unwrap().beta, None);
        // Checked as a plain run's beta is.
        for beta in [f64::NAN, 0.0, -1.0] {
            let e = SimulateSpec::for_learning(Target::default(), &[0.5], &[1], beta, 1);
            assert!(e.unwrap_err().to_string().starts_with("beta:"), "{beta}");
        }
        let e = SimulateSpec::for_learning(Target::default(), &[0.5], &[], 2.0, 1);
        assert_eq!(e.unwrap_err().to_string(), "seed: give at least one");
    }
}
