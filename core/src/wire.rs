//! The wire types of Zeus's routes: what clients send and what the service answers.
//!
//! Plain data with serde derives and the checks that need nothing but the data
//! and the job's parameters; the calls that use them are in [`crate::api`].

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;
use crate::spec::{JobParams, MAX_ID_LEN};

/// A trial's identity, the answer of `GET /jobs/batch_size` and the body of `PATCH /trials`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrialId {
    /// The job.
    pub job_id: String,
    /// The batch size to train with.
    pub batch_size: u32,
    /// The trial's number within the job.
    pub trial_number: u64,
}

/// A client's report after an epoch (`POST /report`): totals so far.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainingResult {
    /// The job.
    pub job_id: String,
    /// The trial's batch size.
    pub batch_size: u32,
    /// The trial.
    pub trial_number: u64,
    /// Total training time so far, seconds.
    pub time: f64,
    /// Total energy so far, joules.
    pub energy: f64,
    /// The metric after `current_epoch`.
    pub metric: f64,
    /// Epochs done.
    pub current_epoch: u32,
    /// Half-width of the bound on `energy`, joules: the true energy lies within
    /// `energy ± energy_uncertainty_j` (a wattwise addition: absent from Zeus's
    /// client and from a client that measured no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
}

/// The answer to a report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportResponse {
    /// Whether the run must stop.
    pub stop_train: bool,
    /// Whether it reached the target within the cost bound.
    pub converged: bool,
    /// Why, in words.
    pub message: String,
}

/// The training or evaluation phase of a power profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Training steps.
    Train,
    /// Evaluation steps.
    Eval,
}

/// One power limit's measurement in a profile.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerMeasurement {
    /// The power limit, watts.
    pub power_limit: u32,
    /// Average power drawn at that limit, watts.
    pub average_power: f64,
    /// Throughput at that limit, samples per second.
    pub throughput: f64,
    /// Half-width of the bound on the energy of one training step at that
    /// limit, per GPU, joules (the step's energy per GPU is `average_power *
    /// batch_size / throughput`). Absent when the client measured no bound
    /// (older agents, Zeus's client).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
}

/// A power profile (the Profiling table of the first seed), posted by the GPU agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerProfile {
    /// The batch size profiled.
    pub batch_size: u32,
    /// Train or eval.
    pub phase: Phase,
    /// GPU model it was measured on.
    pub gpu_model: String,
    /// One entry per power limit.
    pub measurements: Vec<PowerMeasurement>,
    /// The note that the profile windows were too short to tell the chosen
    /// limit from others: the chosen limit first, then every limit (watts)
    /// whose step energy lies within their bounds of it. Empty (absent) when
    /// every limit was told apart, or no bounds were measured.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<u32>,
}

/// Largest number of power limits in one profile.
pub const MAX_PROFILE_POINTS: usize = 64;
/// Largest number of measurements across a job's profiles (bounds the document).
pub const MAX_PROFILE_MEASUREMENTS: usize = 1024;

impl PowerProfile {
    /// Checks the profile against the job's parameters; the error names the field
    /// and the rule.
    pub fn validate(&self, job: &JobParams) -> Result<(), FieldError> {
        if job.batch_sizes.binary_search(&self.batch_size).is_err() {
            return Err(FieldError::new(
                "batch_size",
                "must be one of the job's batch_sizes",
            ));
        }
        if self.gpu_model.trim().is_empty() || self.gpu_model.len() > MAX_ID_LEN {
            return Err(FieldError::new("gpu_model", "must be 1 to 128 characters"));
        }
        if self.measurements.is_empty() || self.measurements.len() > MAX_PROFILE_POINTS {
            return Err(FieldError::new("measurements", "must hold 1 to 64 entries"));
        }
        for m in &self.measurements {
            if m.power_limit == 0 {
                return Err(FieldError::new("measurements.power_limit", "must be > 0"));
            }
            if !(m.average_power.is_finite() && m.average_power >= 0.0) {
                return Err(FieldError::new(
                    "measurements.average_power",
                    "must be a finite number >= 0",
                ));
            }
            if !(m.throughput.is_finite() && m.throughput >= 0.0) {
                return Err(FieldError::new(
                    "measurements.throughput",
                    "must be a finite number >= 0",
                ));
            }
            if m.energy_uncertainty_j
                .is_some_and(|u| !(u.is_finite() && u >= 0.0))
            {
                return Err(FieldError::new(
                    "measurements.energy_uncertainty_j",
                    "must be a finite number >= 0",
                ));
            }
        }
        self.validate_uncertain()
    }

    /// `uncertain` names two or more distinct measured limits, or none.
    fn validate_uncertain(&self) -> Result<(), FieldError> {
        let u = &self.uncertain;
        if u.len() == 1 {
            return Err(FieldError::new(
                "uncertain",
                "must name no limit or at least two",
            ));
        }
        for (i, w) in u.iter().enumerate() {
            if !self.measurements.iter().any(|m| m.power_limit == *w) {
                return Err(FieldError::new(
                    "uncertain",
                    "must name only measured power limits",
                ));
            }
            if u[..i].contains(w) {
                return Err(FieldError::new("uncertain", "must name each limit once"));
            }
        }
        Ok(())
    }
}
