//! One pure function per call of Zeus's routes (their wire types are in
//! [`crate::wire`]).
//!
//! Each call has the shape `(request, Option<&JobState>, Ctx) -> Result<Outcome, ApiError>`:
//! the host loads the document, calls, and stores what [`Outcome::change`] says.
//! [`ApiError`] carries its HTTP status; this is the one place errors meet HTTP.

use crate::field_error::FieldError;
use crate::job::JobState;
use crate::optimizer::OptimizerError;
use crate::policy::shared::WorkloadState;
use crate::spec::JobSpec;
use crate::trial::Trial;
use crate::wire::{
    PowerProfile, ReportResponse, TrainingResult, TrialId, MAX_PROFILE_MEASUREMENTS,
};

/// An error answer: an HTTP status and a message naming the field and the rule.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// A field broke a rule (422): the message is `field: rule`.
    #[error("{0}")]
    Invalid(FieldError),
    /// The operation does not apply to this state (400).
    #[error("{0}")]
    BadRequest(String),
    /// Unknown job or trial, or route (404).
    #[error("{0}")]
    NotFound(String),
    /// Method not allowed on the route (405).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// The job exists with another configuration (409).
    #[error("{0}")]
    Conflict(String),
    /// Missing or wrong bearer token (401).
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// The body is over the limit (413).
    #[error("request body is over {0} bytes")]
    TooLarge(usize),
    /// The store failed or stayed contended (503).
    #[error("{0}")]
    Unavailable(String),
    /// The stored document breaks a rule the core's documents keep (500).
    #[error("{0}")]
    Corrupt(String),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::Invalid(_) => 422,
            ApiError::BadRequest(_) => 400,
            ApiError::NotFound(_) => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Conflict(_) => 409,
            ApiError::Unauthorized => 401,
            ApiError::TooLarge(_) => 413,
            ApiError::Unavailable(_) => 503,
            ApiError::Corrupt(_) => 500,
        }
    }

    /// The JSON body: `{"message": "..."}`.
    pub fn body(&self) -> String {
        serde_json::json!({ "message": self.to_string() }).to_string()
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        ApiError::Invalid(e)
    }
}

impl From<OptimizerError> for ApiError {
    fn from(e: OptimizerError) -> Self {
        match e {
            OptimizerError::Invalid(v) => v.into(),
            OptimizerError::UnknownTrial { .. } | OptimizerError::Archived(_) => {
                ApiError::NotFound(e.to_string())
            }
            OptimizerError::BatchSizeMismatch { .. }
            | OptimizerError::TrialFailed(_)
            | OptimizerError::NoConverged(_) => ApiError::BadRequest(e.to_string()),
        }
    }
}

/// What the host passes into every call: the time and fresh entropy.
#[derive(Clone, Copy, Debug)]
pub struct Ctx {
    /// Now, Unix milliseconds.
    pub now_ms: i64,
    /// 64 random bits from the host.
    pub entropy: u64,
}

/// What to do with the stored document.
#[derive(Clone, Debug, PartialEq)]
pub enum Change {
    /// Nothing: no write.
    Keep,
    /// Write this document (and append the outcome's archived trials).
    Put(Box<JobState>),
    /// Delete the job.
    Delete,
}

/// A successful call: status, body, and the change to store.
#[derive(Clone, Debug, PartialEq)]
pub struct Outcome<T> {
    /// HTTP status (200 or 201).
    pub status: u16,
    /// The response body.
    pub body: T,
    /// The state change.
    pub change: Change,
    /// Finished trials leaving the document: append them to the archive.
    pub archive: Vec<Trial>,
}

impl<T> Outcome<T> {
    fn keep(body: T) -> Self {
        Outcome {
            status: 200,
            body,
            change: Change::Keep,
            archive: Vec::new(),
        }
    }

    fn put(body: T, mut state: JobState) -> Self {
        let archive = state.take_archive();
        Outcome {
            status: 200,
            body,
            change: Change::Put(Box::new(state)),
            archive,
        }
    }
}

fn unknown_job(job_id: &str) -> ApiError {
    ApiError::NotFound(format!("job_id: unknown job {job_id:?}; register it first"))
}

/// The job's stored document, checked before any call relies on it.
fn loaded<'a>(job_id: &str, current: Option<&'a JobState>) -> Result<&'a JobState, ApiError> {
    let state = current
        .filter(|s| s.job_id() == job_id)
        .ok_or_else(|| unknown_job(job_id))?;
    state.check().map_err(|e| {
        ApiError::Corrupt(format!(
            "job {job_id:?}: the stored document is inconsistent ({e}); delete the job to start over"
        ))
    })?;
    Ok(state)
}

/// A fresh job id for a spec without one: the prefix, a dash, 8 hex digits.
pub fn generate_job_id(prefix: &str, entropy: u64) -> String {
    format!("{prefix}-{:08x}", (entropy ^ (entropy >> 32)) as u32)
}

/// `POST /jobs`. `spec.job_id` must be set (see [`generate_job_id`]); `current` is the
/// stored job with that id. 201 when created, 200 when identical, 409 when different.
pub fn register_job(
    spec: &JobSpec,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<JobSpec>, ApiError> {
    let params = spec.validate()?;
    let Some(job_id) = spec.job_id.clone() else {
        return Err(FieldError::new("job_id", "must be set before registering").into());
    };
    let answer = params.to_spec(&job_id);
    match current {
        Some(existing) if existing.params() == &params => Ok(Outcome::keep(answer)),
        Some(_) => Err(ApiError::Conflict(format!(
            "job {job_id:?} is registered with another configuration; use a new job_id for a different one"
        ))),
        None => {
            let state = JobState::new(job_id, params, ctx.entropy, ctx.now_ms);
            let mut out = Outcome::put(answer, state);
            out.status = 201;
            Ok(out)
        }
    }
}

/// `GET /jobs/batch_size?job_id=`: dispatches the next trial.
pub fn predict(
    job_id: &str,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<TrialId>, ApiError> {
    predict_shared(job_id, current, None, ctx)
}

/// [`predict`] for a job whose workload's shared document is `workload` (read by
/// the host from its store): the job first takes what the workload's other jobs
/// taught ([`JobState::share_workload`]).
pub fn predict_shared(
    job_id: &str,
    current: Option<&JobState>,
    workload: Option<&WorkloadState>,
    ctx: Ctx,
) -> Result<Outcome<TrialId>, ApiError> {
    let mut state = loaded(job_id, current)?.clone();
    if let Some(w) = workload {
        state.share_workload(w);
    }
    let trial = state.predict(ctx.now_ms)?;
    Ok(Outcome::put(trial, state))
}

/// The workload document after job `state` taught it (`None` when it has nothing
/// new: the document already holds as many of the job's runs). `current` is the
/// stored document, if any.
pub fn teach_workload(
    state: &JobState,
    current: Option<&WorkloadState>,
    now_ms: i64,
) -> Option<WorkloadState> {
    let name = state.shared_workload()?;
    let taught = state.taught()?;
    let mut doc = match current {
        Some(d) if d.workload == name && d.is_sane() => d.clone(),
        // A document that is not this workload's or not sane is started afresh.
        _ => WorkloadState::new(name),
    };
    doc.absorb(state.job_id(), state.created_ms(), now_ms, taught)
        .then_some(doc)
}

/// `POST /report`: keep training (no write) or record the result.
pub fn report(
    r: &TrainingResult,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<ReportResponse>, ApiError> {
    let current = loaded(&r.job_id, current)?;
    let mut state = current.clone();
    let answer = state.report(r, ctx.now_ms)?;
    if state == *current {
        Ok(Outcome::keep(answer))
    } else {
        Ok(Outcome::put(answer, state))
    }
}

/// `PATCH /trials`: ends a trial (a Dispatched one becomes Failed).
pub fn end_trial(
    t: &TrialId,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<()>, ApiError> {
    let current = loaded(&t.job_id, current)?;
    let mut state = current.clone();
    match state.end_trial(t.trial_number, ctx.now_ms) {
        // A finished trial that left the document is ended already.
        Err(OptimizerError::Archived(_)) => return Ok(Outcome::keep(())),
        r => r?,
    }
    if state == *current {
        Ok(Outcome::keep(()))
    } else {
        Ok(Outcome::put((), state))
    }
}

/// `POST /jobs/{job_id}/profiles`: stores a power profile, replacing the one with
/// the same GPU model, batch size and phase.
pub fn post_profile(
    job_id: &str,
    profile: &PowerProfile,
    current: Option<&JobState>,
) -> Result<Outcome<PowerProfile>, ApiError> {
    let current = loaded(job_id, current)?;
    profile.validate(current.params())?;
    let mut state = current.clone();
    let same = |p: &PowerProfile| {
        p.gpu_model == profile.gpu_model
            && p.batch_size == profile.batch_size
            && p.phase == profile.phase
    };
    let count = state.profiles.len();
    match state.profiles.iter_mut().find(|p| same(p)) {
        Some(existing) => *existing = profile.clone(),
        None if count >= JobState::MAX_PROFILES => {
            return Err(FieldError::new(
                "profiles",
                format!("a job keeps at most {} profiles", JobState::MAX_PROFILES),
            )
            .into())
        }
        None => state.profiles.push(profile.clone()),
    }
    let measurements: usize = state.profiles.iter().map(|p| p.measurements.len()).sum();
    if measurements > MAX_PROFILE_MEASUREMENTS {
        return Err(FieldError::new(
            "profiles",
            format!(
                "a job keeps at most {MAX_PROFILE_MEASUREMENTS} measurements across its profiles"
            ),
        )
        .into());
    }
    let mut out = Outcome::put(profile.clone(), state);
    out.status = 201;
    Ok(out)
}
