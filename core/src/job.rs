//! The job document: the optimizer's whole state for one job.
//!
//! [`JobState`] is the one document a host stores per job, built from validated
//! [`JobParams`].

use serde::{Deserialize, Serialize};

use crate::bandit::{ArmState, RewardHistory};
use crate::explore::{Exploration, FinishedRounds};
use crate::field_error::FieldError;
use crate::policy::wattwise::WattwiseState;
use crate::policy::Policy;
use crate::rng::JobRng;
use crate::runs::{PastRuns, Runs};
use crate::spec::JobParams;
use crate::trial::{Totals, Trial};
use crate::wire::PowerProfile;

/// The optimizer's stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    /// Pruning exploration of the batch sizes.
    Pruning,
    /// Thompson sampling over the batch sizes that survived pruning.
    #[serde(rename = "MAB")]
    Mab,
}

/// Everything the optimizer knows about one batch size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchSizeState {
    /// The batch size.
    pub batch_size: u32,
    /// Rewards (`-cost`) of its succeeded trials, as sufficient statistics or a window.
    pub rewards: RewardHistory,
    /// Its bandit arm, once the job is in the MAB stage and the batch size survived pruning.
    pub arm: Option<ArmState>,
    /// Rewards of its explorations in pruning rounds that are over (the bandit's
    /// arms start from these and the current round's explorations).
    #[serde(default = "all_rewards")]
    pub explored: RewardHistory,
}

fn all_rewards() -> RewardHistory {
    RewardHistory::new(0)
}

/// The job document: one per job, the only state a host stores (besides archived trials).
///
/// Its size is bounded whatever the job's age: finished trials beyond the most
/// recent [`JobState::RECENT_TRIALS`] leave it through [`JobState::take_archive`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobState {
    pub(crate) job_id: String,
    pub(crate) params: JobParams,
    pub(crate) created_ms: i64,
    pub(crate) stage: Stage,
    pub(crate) next_trial_number: u64,
    pub(crate) min_cost: Option<f64>,
    pub(crate) min_cost_batch_size: u32,
    pub(crate) batch_sizes: Vec<BatchSizeState>,
    /// Explorations of the pruning rounds not yet over, in trial order.
    pub(crate) explorations: Vec<Exploration>,
    /// The pruning rounds that are over.
    #[serde(default)]
    pub(crate) pruned: FinishedRounds,
    /// Trials still waiting for a result, in trial order.
    pub(crate) open_trials: Vec<Trial>,
    /// The most recent finished trials, in trial order.
    pub(crate) recent_trials: Vec<Trial>,
    pub(crate) rng: JobRng,
    pub(crate) profiles: Vec<PowerProfile>,
    /// The wattwise policy's statistics (absent for a Zeus job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) wattwise: Option<WattwiseState>,
    /// Runs across hosts (absent when the job never had one).
    #[serde(default, skip_serializing_if = "Runs::is_empty")]
    pub(crate) runs: Runs,
    /// The outcomes of finished runs that left `runs` (absent when none did).
    #[serde(default, skip_serializing_if = "PastRuns::is_empty")]
    pub(crate) past_runs: PastRuns,
    /// Running totals over the finished trials (for the job list).
    #[serde(default)]
    pub(crate) totals: Totals,
    /// Finished trials that left the document in the last call; the host appends them to its archive.
    #[serde(skip)]
    pub(crate) archive_out: Vec<Trial>,
}

impl JobState {
    /// Finished trials kept in the document; older ones go to the archive.
    pub const RECENT_TRIALS: usize = 64;
    /// Dispatched trials kept open; beyond this the oldest is abandoned (Failed).
    pub const MAX_OPEN_TRIALS: usize = 1024;
    /// Power profiles kept per job.
    pub const MAX_PROFILES: usize = 64;

    /// A new job document. `entropy` seeds the RNG when `mab_seed` is `None`.
    pub fn new(job_id: String, params: JobParams, entropy: u64, now_ms: i64) -> JobState {
        let rng = JobRng::from_seed(params.mab_seed.unwrap_or(entropy));
        let (params_policy, n) = (params.policy, params.batch_sizes.len());
        // A job that names its workload keeps what its runs teach the workload's other jobs.
        let teaches = params.workload.is_some();
        let batch_sizes = params
            .batch_sizes
            .iter()
            .map(|&batch_size| BatchSizeState {
                batch_size,
                rewards: RewardHistory::new(params.window_size),
                arm: None,
                explored: all_rewards(),
            })
            .collect();
        JobState {
            job_id,
            min_cost_batch_size: params.default_batch_size,
            params,
            created_ms: now_ms,
            stage: Stage::Pruning,
            next_trial_number: 1,
            min_cost: None,
            batch_sizes,
            explorations: Vec::new(),
            pruned: FinishedRounds::default(),
            open_trials: Vec::new(),
            recent_trials: Vec::new(),
            rng,
            profiles: Vec::new(),
            wattwise: (params_policy == Policy::Wattwise).then(|| WattwiseState {
                taught: teaches.then(Default::default),
                ..WattwiseState::new(n)
            }),
            runs: Runs::default(),
            past_runs: PastRuns::default(),
            totals: Totals::default(),
            archive_out: Vec::new(),
        }
    }

    /// The job's id.
    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    /// The job's validated parameters.
    pub fn params(&self) -> &JobParams {
        &self.params
    }

    /// When the job was registered, Unix ms.
    pub fn created_ms(&self) -> i64 {
        self.created_ms
    }

    /// Running totals over the job's finished trials.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// The optimizer's stage.
    pub fn stage(&self) -> Stage {
        self.stage
    }

    /// The lowest cost of a run that reached the target, if any did.
    pub fn min_cost(&self) -> Option<f64> {
        self.min_cost
    }

    /// The batch size of that run (the default batch size before any converged).
    pub fn min_cost_batch_size(&self) -> u32 {
        self.min_cost_batch_size
    }

    /// The trial number the next dispatched trial gets.
    pub fn next_trial_number(&self) -> u64 {
        self.next_trial_number
    }

    /// Trials still in the document (open, then recent finished), in trial order.
    pub fn trials(&self) -> Vec<&Trial> {
        let mut all: Vec<&Trial> = self.open_trials.iter().chain(&self.recent_trials).collect();
        all.sort_by_key(|t| t.trial_number);
        all
    }

    /// The trial with this number, if it is still in the document.
    pub fn trial(&self, trial_number: u64) -> Option<&Trial> {
        self.open_trials
            .iter()
            .chain(&self.recent_trials)
            .find(|t| t.trial_number == trial_number)
    }

    /// Per-batch-size statistics and arms.
    pub fn batch_size_states(&self) -> &[BatchSizeState] {
        &self.batch_sizes
    }

    /// The power profiles posted for this job.
    pub fn profiles(&self) -> &[PowerProfile] {
        &self.profiles
    }

    /// The job's runs across hosts.
    pub fn runs(&self) -> &Runs {
        &self.runs
    }

    /// Checks what the optimizer's calls rely on in a document read back from a
    /// store: the batch sizes non-empty and increasing with the default among them,
    /// one state per batch size in that order, and the wattwise policy's statistics
    /// (one per batch size) present exactly when the job runs that policy. A document
    /// the core wrote always passes; an edited or damaged one is refused here instead
    /// of making a call panic.
    pub fn check(&self) -> Result<(), FieldError> {
        let sizes = &self.params.batch_sizes;
        if sizes.is_empty() || sizes.windows(2).any(|w| w[0] >= w[1]) {
            return Err(FieldError::new(
                "params.batch_sizes",
                "must be non-empty and strictly increasing",
            ));
        }
        if sizes
            .binary_search(&self.params.default_batch_size)
            .is_err()
        {
            return Err(FieldError::new(
                "params.default_batch_size",
                "must be one of params.batch_sizes",
            ));
        }
        if self.batch_sizes.len() != sizes.len()
            || self
                .batch_sizes
                .iter()
                .zip(sizes)
                .any(|(s, &b)| s.batch_size != b)
        {
            return Err(FieldError::new(
                "batch_sizes",
                "must hold one state per batch size of params.batch_sizes, in order",
            ));
        }
        let arms_ok = match (&self.wattwise, self.params.policy) {
            (Some(w), Policy::Wattwise) => w.arms.len() == sizes.len(),
            (None, Policy::Zeus) => true,
            _ => false,
        };
        if !arms_ok {
            return Err(FieldError::new(
                "wattwise",
                "must hold one arm per batch size under the wattwise policy, and be absent otherwise",
            ));
        }
        Ok(())
    }

    /// Takes the finished trials that left the document; the host appends them to its archive.
    pub fn take_archive(&mut self) -> Vec<Trial> {
        std::mem::take(&mut self.archive_out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, Ctx};
    use crate::spec::JobSpec;

    fn doc(policy: Policy) -> serde_json::Value {
        let mut spec = JobSpec::new("j", vec![8, 16, 32], 16, 300.0, 1, "A100");
        spec.policy = policy;
        let state = JobState::new("j-1".into(), spec.validate().unwrap(), 7, 0);
        serde_json::to_value(state).unwrap()
    }

    /// A field, the policy, and an edit of the stored document that breaks the field.
    type Edit = (&'static str, Policy, fn(&mut serde_json::Value));

    /// Documents edited or damaged in the store: every call answers 500 naming the
    /// field, none panics.
    #[test]
    fn inconsistent_stored_documents_are_refused_not_panicked_on() {
        let ctx = Ctx {
            now_ms: 1,
            entropy: 1,
        };
        let edits: [Edit; 5] = [
            ("wattwise", Policy::Wattwise, |d| {
                d["wattwise"]["arms"] = serde_json::json!([])
            }),
            ("wattwise", Policy::Zeus, |d| {
                d["wattwise"] = serde_json::json!({"arms": []})
            }),
            ("batch_sizes", Policy::Zeus, |d| {
                d["batch_sizes"].as_array_mut().unwrap().pop();
            }),
            ("params.batch_sizes", Policy::Zeus, |d| {
                d["params"]["batch_sizes"] = serde_json::json!([])
            }),
            ("params.default_batch_size", Policy::Zeus, |d| {
                d["params"]["default_batch_size"] = serde_json::json!(12)
            }),
        ];
        for (field, policy, edit) in edits {
            let mut d = doc(policy);
            edit(&mut d);
            let Ok(state) = serde_json::from_value::<JobState>(d) else {
                continue; // refused when read: as good
            };
            let err = api::predict("j-1", Some(&state), ctx).unwrap_err();
            assert_eq!(err.status(), 500, "{field}: {err}");
            assert!(err.to_string().contains(field), "{field}: {err}");
        }
        // An untouched document passes.
        let state: JobState = serde_json::from_value(doc(Policy::Wattwise)).unwrap();
        assert!(state.check().is_ok());
    }
}
