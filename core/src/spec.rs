//! Job parameters and their validation.
//!
//! [`JobSpec`] is what a client sends (Zeus's `JobSpecFromClient`, same field names
//! and defaults); [`JobSpec::validate`] turns it into [`JobParams`], whose types
//! already exclude the values the rules forbid. The job document built from them is
//! [`crate::job::JobState`].

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;
use crate::policy::Policy;

/// Largest number of batch sizes a job may list (keeps the document bounded).
pub const MAX_BATCH_SIZES: usize = 256;
/// Largest `window_size` (the bandit keeps that many rewards per arm).
pub const MAX_WINDOW_SIZE: i64 = 1000;
/// Longest job id or prefix.
pub const MAX_ID_LEN: usize = 128;
/// Largest `window_size` x number of batch sizes: the rewards the windows hold at
/// most, which keeps the worst-case document under DynamoDB's 400 KB item limit.
pub const MAX_WINDOW_REWARDS: i64 = 4096;
/// Largest `max_power`, watts (a million GPUs at 1 kW).
pub const MAX_POWER_WATTS: f64 = 1e9;
/// Largest `beta_knob`.
pub const MAX_BETA_KNOB: f64 = 1e6;
/// Largest magnitude of `mab_prior_mean` and of `mab_prior_precision`.
pub const MAX_PRIOR: f64 = 1e18;
/// Largest `time` a report may carry, seconds (about 31 years).
pub const MAX_TIME_SECONDS: f64 = 1e9;
/// Largest `energy` a report may carry, joules (`MAX_POWER_WATTS` for `MAX_TIME_SECONDS`).
pub const MAX_ENERGY_JOULES: f64 = 1e18;

fn default_eta() -> f64 {
    0.5
}
fn default_beta() -> Option<f64> {
    Some(2.0)
}
fn default_target() -> f64 {
    0.5
}
fn default_true() -> bool {
    true
}
fn default_max_epochs() -> i64 {
    100
}
fn default_rounds() -> i64 {
    2
}
fn default_explorations() -> i64 {
    2
}

/// A job as a client registers it (`POST /jobs`), with Zeus's field names and defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// The job's id; the server makes one from the prefix when absent.
    #[serde(default)]
    pub job_id: Option<String>,
    /// Prefix every id of this job starts with.
    pub job_id_prefix: String,
    /// Batch sizes to choose from.
    pub batch_sizes: Vec<i64>,
    /// The batch size of the first run; one of `batch_sizes`.
    pub default_batch_size: i64,
    /// Weight of energy against time in the cost, in `[0, 1]`.
    #[serde(default = "default_eta")]
    pub eta_knob: f64,
    /// Early-stop a run whose cost passes `beta_knob * min_cost`; `null` disables.
    #[serde(default = "default_beta")]
    pub beta_knob: Option<f64>,
    /// The metric a run must reach.
    #[serde(default = "default_target")]
    pub target_metric: f64,
    /// Whether reaching means `metric >= target` (else `metric <= target`).
    #[serde(default = "default_true")]
    pub higher_is_better_metric: bool,
    /// Epochs after which a run stops.
    #[serde(default = "default_max_epochs")]
    pub max_epochs: i64,
    /// Pruning rounds before the bandit.
    #[serde(default = "default_rounds")]
    pub num_pruning_rounds: i64,
    /// Rewards per arm the bandit fits on; 0 means all.
    #[serde(default)]
    pub window_size: i64,
    /// Mean of the bandit's prior belief.
    #[serde(default)]
    pub mab_prior_mean: f64,
    /// Precision of the bandit's prior belief.
    #[serde(default)]
    pub mab_prior_precision: f64,
    /// Observations each arm gets before Thompson sampling starts.
    #[serde(default = "default_explorations")]
    pub mab_num_explorations: i64,
    /// Seed of the job's RNG; host entropy when absent.
    #[serde(default)]
    pub mab_seed: Option<i64>,
    /// Maximum power of all the job's GPUs together, in watts.
    pub max_power: f64,
    /// Number of GPUs the job trains on.
    pub number_of_gpus: i64,
    /// GPU model name.
    pub gpu_model: String,
    /// The batch size policy (wattwise's addition; absent means Zeus's).
    #[serde(default, skip_serializing_if = "Policy::is_zeus")]
    pub policy: Policy,
    /// The workload the job trains (wattwise's addition; absent for Zeus's client):
    /// jobs of one workload share what they learn about epochs to target per batch size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

/// Validated job parameters: batch sizes sorted and deduplicated, every rule holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobParams {
    /// Prefix every id of this job starts with.
    pub job_id_prefix: String,
    /// Batch sizes, sorted ascending, no duplicates, all > 0.
    pub batch_sizes: Vec<u32>,
    /// One of `batch_sizes`.
    pub default_batch_size: u32,
    /// In `[0, 1]`.
    pub eta_knob: f64,
    /// In `(0, MAX_BETA_KNOB]`, or `None` (no early stopping).
    pub beta_knob: Option<f64>,
    /// Finite.
    pub target_metric: f64,
    /// Direction of the metric.
    pub higher_is_better_metric: bool,
    /// > 0.
    pub max_epochs: u32,
    /// Pruning rounds.
    pub num_pruning_rounds: u32,
    /// 0 means all rewards.
    pub window_size: u32,
    /// Finite, in `[-MAX_PRIOR, MAX_PRIOR]`.
    pub mab_prior_mean: f64,
    /// Finite, in `[0, MAX_PRIOR]`.
    pub mab_prior_precision: f64,
    /// Static explorations per arm.
    pub mab_num_explorations: u32,
    /// Seed of the job's RNG.
    pub mab_seed: Option<u64>,
    /// In `(0, MAX_POWER_WATTS]`, watts.
    pub max_power: f64,
    /// > 0.
    pub number_of_gpus: u32,
    /// Non-empty.
    pub gpu_model: String,
    /// The batch size policy; absent (Zeus) in documents written before it existed.
    #[serde(default, skip_serializing_if = "Policy::is_zeus")]
    pub policy: Policy,
    /// The workload the job trains, when it names one (an id: see `check_id`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
}

pub(crate) fn check_id(field: &'static str, id: &str) -> Result<(), FieldError> {
    if id.is_empty() {
        return Err(FieldError::new(field, "must not be empty"));
    }
    if id.len() > MAX_ID_LEN {
        return Err(FieldError::new(
            field,
            format!("must be at most {MAX_ID_LEN} characters"),
        ));
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        return Err(FieldError::new(
            field,
            "may contain only ASCII letters, digits and - _ . :",
        ));
    }
    Ok(())
}

/// Job ids no URL can carry to `/jobs/{job_id}`: a route has the same path with
/// a literal segment there, which wins (`GET /jobs/batch_size` dispatches a
/// trial). Derived from the route table; its tests check the two agree.
pub const RESERVED_JOB_IDS: &[&str] = &["batch_size"];

/// Checks an id that a client sends as a path segment (a new job's `job_id`, a
/// run's `run_id`): [`check_id`]'s rules, and not `.` nor `..`, which URL
/// clients remove as dot segments (RFC 3986 5.2.4) before a request leaves.
pub(crate) fn check_path_id(field: &'static str, id: &str) -> Result<(), FieldError> {
    check_id(field, id)?;
    if id == "." || id == ".." {
        return Err(FieldError::new(
            field,
            "must not be \".\" or \"..\" (URL clients remove such path segments)",
        ));
    }
    Ok(())
}

fn finite(field: &'static str, v: f64) -> Result<f64, FieldError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(FieldError::new(field, "must be a finite number"))
    }
}

/// `v` if it is finite and in `[min, max]`; else the error names the field and the range.
pub(crate) fn finite_in(
    field: &'static str,
    v: f64,
    min: f64,
    max: f64,
) -> Result<f64, FieldError> {
    if v.is_finite() && v >= min && v <= max {
        Ok(v)
    } else {
        Err(FieldError::new(
            field,
            format!("must be a finite number in [{min:e}, {max:e}]"),
        ))
    }
}

fn ranged_u32(field: &'static str, v: i64, min: i64, max: i64) -> Result<u32, FieldError> {
    if v < min || v > max {
        let rule = if v < min {
            if min == 0 {
                "must be >= 0".to_string()
            } else {
                format!("must be >= {min}")
            }
        } else {
            format!("must be <= {max}")
        };
        return Err(FieldError::new(field, rule));
    }
    Ok(v as u32)
}

impl JobSpec {
    /// A spec with Zeus's defaults for every optional knob.
    pub fn new(
        job_id_prefix: &str,
        batch_sizes: Vec<i64>,
        default_batch_size: i64,
        max_power: f64,
        number_of_gpus: i64,
        gpu_model: &str,
    ) -> JobSpec {
        JobSpec {
            job_id: None,
            job_id_prefix: job_id_prefix.to_string(),
            batch_sizes,
            default_batch_size,
            eta_knob: default_eta(),
            beta_knob: default_beta(),
            target_metric: default_target(),
            higher_is_better_metric: true,
            max_epochs: default_max_epochs(),
            num_pruning_rounds: default_rounds(),
            window_size: 0,
            mab_prior_mean: 0.0,
            mab_prior_precision: 0.0,
            mab_num_explorations: default_explorations(),
            mab_seed: None,
            max_power,
            number_of_gpus,
            gpu_model: gpu_model.to_string(),
            policy: Policy::Zeus,
            workload: None,
        }
    }

    /// Checks every rule; the error names the field and the rule.
    pub fn validate(&self) -> Result<JobParams, FieldError> {
        check_id("job_id_prefix", &self.job_id_prefix)?;
        if let Some(id) = &self.job_id {
            check_path_id("job_id", id)?;
            if RESERVED_JOB_IDS.contains(&id.as_str()) {
                return Err(FieldError::new(
                    "job_id",
                    format!(
                        "must not be {id:?}: GET /jobs/{id} is another route, so the job could not be read at /jobs/{{job_id}}"
                    ),
                ));
            }
            if !id.starts_with(&self.job_id_prefix) {
                return Err(FieldError::new(
                    "job_id",
                    format!("must start with job_id_prefix ({:?})", self.job_id_prefix),
                ));
            }
        }
        let workload = match &self.workload {
            Some(w) => {
                check_id("workload", w)?;
                Some(w.clone())
            }
            None => None,
        };
        if self.batch_sizes.is_empty() {
            return Err(FieldError::new("batch_sizes", "must not be empty"));
        }
        if self.batch_sizes.len() > MAX_BATCH_SIZES {
            return Err(FieldError::new(
                "batch_sizes",
                format!("must list at most {MAX_BATCH_SIZES} batch sizes"),
            ));
        }
        let mut batch_sizes = Vec::with_capacity(self.batch_sizes.len());
        for &bs in &self.batch_sizes {
            if bs <= 0 || bs > u32::MAX as i64 {
                return Err(FieldError::new(
                    "batch_sizes",
                    format!("every batch size must be > 0 and < 2^32 (got {bs})"),
                ));
            }
            batch_sizes.push(bs as u32);
        }
        batch_sizes.sort_unstable();
        batch_sizes.dedup();
        if self.default_batch_size <= 0 {
            return Err(FieldError::new("default_batch_size", "must be > 0"));
        }
        let default_batch_size = u32::try_from(self.default_batch_size)
            .ok()
            .filter(|bs| batch_sizes.binary_search(bs).is_ok())
            .ok_or_else(|| {
                FieldError::new(
                    "default_batch_size",
                    format!(
                        "must be one of batch_sizes (got {})",
                        self.default_batch_size
                    ),
                )
            })?;
        let eta_knob = finite("eta_knob", self.eta_knob)?;
        if !(0.0..=1.0).contains(&eta_knob) {
            return Err(FieldError::new("eta_knob", "must be in [0, 1]"));
        }
        let beta_knob = match self.beta_knob {
            None => None,
            Some(b) if b.is_finite() && b > 0.0 && b <= MAX_BETA_KNOB => Some(b),
            Some(_) => {
                return Err(FieldError::new(
                    "beta_knob",
                    format!("must be a finite number > 0 and <= {MAX_BETA_KNOB:e}, or null to disable early stopping"),
                ))
            }
        };
        let target_metric = finite("target_metric", self.target_metric)?;
        let max_epochs = ranged_u32("max_epochs", self.max_epochs, 1, u32::MAX as i64)?;
        let num_pruning_rounds = ranged_u32("num_pruning_rounds", self.num_pruning_rounds, 0, 100)?;
        let window_size = ranged_u32("window_size", self.window_size, 0, MAX_WINDOW_SIZE)?;
        let window_rewards = i64::from(window_size) * batch_sizes.len() as i64;
        if window_rewards > MAX_WINDOW_REWARDS {
            return Err(FieldError::new(
                "window_size",
                format!(
                    "window_size x the number of batch_sizes must be <= {MAX_WINDOW_REWARDS} (got {window_rewards})"
                ),
            ));
        }
        let mab_prior_mean =
            finite_in("mab_prior_mean", self.mab_prior_mean, -MAX_PRIOR, MAX_PRIOR)?;
        let mab_prior_precision = finite_in(
            "mab_prior_precision",
            self.mab_prior_precision,
            0.0,
            MAX_PRIOR,
        )?;
        let mab_num_explorations =
            ranged_u32("mab_num_explorations", self.mab_num_explorations, 0, 1000)?;
        let mab_seed = match self.mab_seed {
            None => None,
            Some(s) if s >= 0 => Some(s as u64),
            Some(_) => return Err(FieldError::new("mab_seed", "must be >= 0 or null")),
        };
        let max_power = finite("max_power", self.max_power)?;
        if max_power <= 0.0 {
            return Err(FieldError::new("max_power", "must be > 0"));
        }
        if max_power > MAX_POWER_WATTS {
            return Err(FieldError::new(
                "max_power",
                format!("must be <= {MAX_POWER_WATTS:e} watts"),
            ));
        }
        let number_of_gpus = ranged_u32("number_of_gpus", self.number_of_gpus, 1, u32::MAX as i64)?;
        if self.gpu_model.trim().is_empty() {
            return Err(FieldError::new("gpu_model", "must not be empty"));
        }
        if self.gpu_model.len() > MAX_ID_LEN {
            return Err(FieldError::new(
                "gpu_model",
                format!("must be at most {MAX_ID_LEN} characters"),
            ));
        }
        Ok(JobParams {
            job_id_prefix: self.job_id_prefix.clone(),
            batch_sizes,
            default_batch_size,
            eta_knob,
            beta_knob,
            target_metric,
            higher_is_better_metric: self.higher_is_better_metric,
            max_epochs,
            num_pruning_rounds,
            window_size,
            mab_prior_mean,
            mab_prior_precision,
            mab_num_explorations,
            mab_seed,
            max_power,
            number_of_gpus,
            gpu_model: self.gpu_model.clone(),
            policy: self.policy,
            workload,
        })
    }
}

impl JobParams {
    /// The spec these parameters answer with (Zeus echoes the registered job).
    pub fn to_spec(&self, job_id: &str) -> JobSpec {
        JobSpec {
            job_id: Some(job_id.to_string()),
            job_id_prefix: self.job_id_prefix.clone(),
            batch_sizes: self.batch_sizes.iter().map(|&b| b as i64).collect(),
            default_batch_size: self.default_batch_size as i64,
            eta_knob: self.eta_knob,
            beta_knob: self.beta_knob,
            target_metric: self.target_metric,
            higher_is_better_metric: self.higher_is_better_metric,
            max_epochs: self.max_epochs as i64,
            num_pruning_rounds: self.num_pruning_rounds as i64,
            window_size: self.window_size as i64,
            mab_prior_mean: self.mab_prior_mean,
            mab_prior_precision: self.mab_prior_precision,
            mab_num_explorations: self.mab_num_explorations as i64,
            mab_seed: self.mab_seed.map(|s| s as i64),
            max_power: self.max_power,
            number_of_gpus: self.number_of_gpus as i64,
            gpu_model: self.gpu_model.clone(),
            policy: self.policy,
            workload: self.workload.clone(),
        }
    }

    /// Whether a metric value reaches the target.
    pub fn reaches_target(&self, metric: f64) -> bool {
        if self.higher_is_better_metric {
            metric >= self.target_metric
        } else {
            metric <= self.target_metric
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::new("cifar", vec![256, 32, 64, 128, 64], 128, 300.0, 1, "V100")
    }

    #[test]
    fn defaults_are_zeus_defaults() {
        let s: JobSpec = serde_json::from_value(serde_json::json!({
            "job_id_prefix": "p", "batch_sizes": [8], "default_batch_size": 8,
            "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "A40"}))
        .unwrap();
        assert_eq!(s, JobSpec::new("p", vec![8], 8, 300.0, 1, "A40"));
        assert_eq!(s.eta_knob, 0.5);
        assert_eq!(s.beta_knob, Some(2.0));
        assert_eq!(s.max_epochs, 100);
        assert_eq!(s.num_pruning_rounds, 2);
        assert_eq!(s.mab_num_explorations, 2);
        assert_eq!(s.target_metric, 0.5);
        assert!(s.higher_is_better_metric);
    }

    #[test]
    fn validation_sorts_and_dedups() {
        let p = spec().validate().unwrap();
        assert_eq!(p.batch_sizes, vec![32, 64, 128, 256]);
    }

    fn rejects(f: impl FnOnce(&mut JobSpec), field: &str) {
        let mut s = spec();
        f(&mut s);
        let err = s.validate().unwrap_err();
        assert_eq!(err.field, field, "{err}");
    }

    #[test]
    fn a_workload_is_an_id_and_round_trips() {
        rejects(|s| s.workload = Some(String::new()), "workload");
        rejects(|s| s.workload = Some("a b".into()), "workload");
        rejects(
            |s| s.workload = Some("w".repeat(MAX_ID_LEN + 1)),
            "workload",
        );
        let mut s = spec();
        s.workload = Some("imagenet-resnet50".into());
        let p = s.validate().unwrap();
        assert_eq!(p.workload.as_deref(), Some("imagenet-resnet50"));
        assert_eq!(p.to_spec("cifar-1").workload, s.workload);
        // Absent (Zeus's client) means absent in the echo and the document.
        let zeus = spec().validate().unwrap();
        assert!(serde_json::to_value(&zeus)
            .unwrap()
            .get("workload")
            .is_none());
    }

    #[test]
    fn every_rule_names_its_field() {
        rejects(|s| s.batch_sizes = vec![], "batch_sizes");
        rejects(|s| s.batch_sizes = vec![0, 128], "batch_sizes");
        rejects(|s| s.batch_sizes = vec![-3, 128], "batch_sizes");
        rejects(|s| s.default_batch_size = 100, "default_batch_size");
        rejects(|s| s.default_batch_size = 0, "default_batch_size");
        rejects(|s| s.eta_knob = 1.5, "eta_knob");
        rejects(|s| s.eta_knob = -0.1, "eta_knob");
        rejects(|s| s.eta_knob = f64::NAN, "eta_knob");
        rejects(|s| s.beta_knob = Some(0.0), "beta_knob");
        rejects(|s| s.beta_knob = Some(f64::INFINITY), "beta_knob");
        rejects(|s| s.max_epochs = 0, "max_epochs");
        rejects(|s| s.num_pruning_rounds = -1, "num_pruning_rounds");
        rejects(|s| s.mab_num_explorations = -1, "mab_num_explorations");
        rejects(|s| s.window_size = -1, "window_size");
        rejects(|s| s.window_size = MAX_WINDOW_SIZE + 1, "window_size");
        rejects(
            |s| {
                s.window_size = MAX_WINDOW_SIZE;
                s.batch_sizes = (1..=5).collect();
                s.default_batch_size = 1;
            },
            "window_size",
        );
        rejects(|s| s.job_id = Some("other-1".into()), "job_id");
        rejects(|s| s.job_id = Some("cifar/../x".into()), "job_id");
        for unreachable in [".", "..", "batch_size"] {
            let mut s = spec();
            s.job_id_prefix = unreachable[..1].to_string();
            s.job_id = Some(unreachable.into());
            let e = s.validate().unwrap_err();
            assert_eq!(e.field, "job_id", "{unreachable}: {e}");
        }
        rejects(|s| s.job_id_prefix = String::new(), "job_id_prefix");
        rejects(|s| s.max_power = 0.0, "max_power");
        rejects(|s| s.max_power = f64::NAN, "max_power");
        rejects(|s| s.number_of_gpus = 0, "number_of_gpus");
        rejects(|s| s.gpu_model = String::new(), "gpu_model");
        rejects(|s| s.mab_seed = Some(-1), "mab_seed");
        rejects(|s| s.mab_prior_precision = -1.0, "mab_prior_precision");
        rejects(|s| s.target_metric = f64::INFINITY, "target_metric");
        rejects(|s| s.max_power = 1e308, "max_power");
        rejects(|s| s.beta_knob = Some(1e300), "beta_knob");
        rejects(|s| s.mab_prior_mean = -1e300, "mab_prior_mean");
        rejects(|s| s.mab_prior_precision = 1e300, "mab_prior_precision");
    }

    #[test]
    fn accepted_edges() {
        let mut s = spec();
        s.eta_knob = 0.0;
        s.beta_knob = None;
        s.num_pruning_rounds = 0;
        s.mab_num_explorations = 0;
        s.job_id = Some("cifar-1".into());
        assert!(s.validate().is_ok());
        s.eta_knob = 1.0;
        assert!(s.validate().is_ok());
    }

    #[test]
    fn spec_round_trips_through_params() {
        let mut s = JobSpec::new("p", vec![8, 16], 16, 250.0, 2, "A40");
        s.job_id = Some("p-1".into());
        let p = s.validate().unwrap();
        assert_eq!(p.to_spec("p-1"), s);
    }
}
