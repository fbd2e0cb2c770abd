//! The job document: the optimizer's whole state for one job.
//!
//! [`JobState`] is the one document a host stores per job, built from validated
//! [`JobParams`].

use serde::{Deserialize, Serialize};

use crate::bandit::{ArmState, RewardHistory};
use crate::explore::{Exploration, FinishedRounds};
use crate::policy::wattwise::WattwiseState;
use crate::policy::Policy;
use crate::rng::JobRng;
use crate::spec::JobParams;
use crate::trial::Trial;
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
            wattwise: (params_policy == Policy::Wattwise).then(|| WattwiseState::new(n)),
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

    /// Takes the finished trials that left the document; the host appends them to its archive.
    pub fn take_archive(&mut self) -> Vec<Trial> {
        std::mem::take(&mut self.archive_out)
    }
}
