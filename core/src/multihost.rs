//! Runs across hosts: the agents of every host of one training run share one trial.
//!
//! A run spanning N hosts has one agent per host; they share a run id, the host
//! count and each has a rank. The endpoint is their only rendezvous, and this
//! module decides everything about it, from the request and `now` alone:
//! - joining: the first host to arrive dispatches the trial (one batch size), the
//!   others join it;
//! - combining: a host reports its own cumulative time and energy per epoch; once
//!   every host reported epoch `e`, the optimizer gets ONE report for it, with the
//!   energy summed over the hosts and the time of the slowest host (the metric is
//!   rank 0's);
//! - the power limit: each host posts its profile (per limit: energy and time over
//!   its profiled steps); the run combines them per limit (energy summed, time of the
//!   slowest host) and picks one limit for all with the job's selector, so
//!   synchronous training is never held back by one host;
//! - timing out: a host that sends nothing for the run's host timeout ends the run,
//!   and its trial, as Failed, naming the host. Every call of any host of the job
//!   checks the deadlines first, so the others learn it on their next call.
//!
//! The state lives inside the job document ([`Runs`], bounded, validated when read),
//! so every host stores it through the ordinary `Store` like everything else.

use serde::{Deserialize, Serialize};

use crate::api::{ApiError, Change, Ctx, Outcome, ReportResponse, TrainingResult};
use crate::job::{check_id, JobState, ValidationError, MAX_ENERGY_JOULES, MAX_TIME_SECONDS};
use crate::power::{select, PowerLimitMeasurement, Selector};

/// Most hosts in one run.
pub const MAX_HOSTS: u32 = 256;
/// Most runs of a job still running at once.
pub const MAX_OPEN_RUNS: usize = 2;
/// Most runs kept in a job document (finished ones are compact; the oldest leave first).
pub const MAX_RUNS: usize = 16;
/// How far (in epochs) the fastest host may run ahead of the slowest one.
pub const MAX_PENDING_EPOCHS: usize = 16;
/// Combined epochs kept per run (the most recent).
pub const RECENT_EPOCHS: usize = 16;
/// Most power limits in one host's profile.
pub const MAX_PROFILE_LIMITS: usize = 64;
/// Most GPUs one host reports.
pub const MAX_GPUS_PER_HOST: u32 = 4096;
/// Longest host name.
pub const MAX_HOST_NAME: usize = 32;
/// The host timeout's bounds and default, seconds.
pub const MIN_HOST_TIMEOUT_S: f64 = 1.0;
/// See [`MIN_HOST_TIMEOUT_S`].
pub const MAX_HOST_TIMEOUT_S: f64 = 86_400.0;
/// See [`MIN_HOST_TIMEOUT_S`].
pub const DEFAULT_HOST_TIMEOUT_S: f64 = 60.0;

fn default_timeout() -> f64 {
    DEFAULT_HOST_TIMEOUT_S
}

/// `POST /jobs/{job_id}/runs`: a host joins a run (the first one opens it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRun {
    /// The run's id, the same on every host (e.g. Slurm's job and step id).
    pub run_id: String,
    /// How many hosts the run spans.
    pub hosts: i64,
    /// This host's rank, 0 to `hosts - 1`.
    pub host_rank: i64,
    /// A name for messages (the host name).
    #[serde(default)]
    pub host_name: Option<String>,
    /// Seconds a host may stay silent before the run fails (the opener's value counts).
    #[serde(default = "default_timeout")]
    pub host_timeout_s: f64,
    /// How the run's power limit is chosen from the combined profile (the opener's counts).
    #[serde(default)]
    pub selector: Selector,
}

/// The body of a host's heartbeat and of its `done`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostCall {
    /// The host's rank.
    pub host_rank: i64,
}

/// `POST /jobs/{job_id}/runs/{run_id}/profile`: a host's power profile.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostProfile {
    /// The host's rank.
    pub host_rank: i64,
    /// GPUs the host measured.
    pub gpu_count: i64,
    /// Per power limit: energy of the host's GPUs and time over `steps` steps.
    pub measurements: Vec<PowerLimitMeasurement>,
}

/// `POST /jobs/{job_id}/runs/{run_id}/report`: a host's totals after an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReport {
    /// The host's rank.
    pub host_rank: i64,
    /// The host's training time so far, seconds.
    pub time: f64,
    /// The energy of the host's GPUs so far, joules.
    pub energy: f64,
    /// The metric after `current_epoch` (rank 0's is the run's).
    pub metric: f64,
    /// Epochs done, from 1, in order.
    pub current_epoch: u32,
}

/// What a host asks of a run it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub enum HostMessage {
    /// "I am alive" (and: what is the run's state?).
    Heartbeat,
    /// The host's power profile.
    Profile(HostProfile),
    /// The host's totals after an epoch.
    Report(HostReport),
    /// The host's command ended.
    Done,
}

/// Where a run stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum RunStatus {
    /// Hosts train (or join).
    Running,
    /// The optimizer told the run to stop after a combined epoch; the trial has its result.
    Stopped {
        /// Whether it reached the target.
        converged: bool,
        /// The optimizer's words.
        message: String,
    },
    /// A host timed out (or the trial could not take a report): the trial ended as Failed.
    Failed {
        /// Why, naming the host.
        message: String,
    },
    /// Every host's command ended before the optimizer said stop; the trial was ended.
    Ended,
}

/// One host's place in a running run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostSlot {
    /// The name it gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Whether it joined.
    pub joined: bool,
    /// When it last called (the run's creation until it joins), Unix ms.
    pub last_seen_ms: i64,
    /// Whether its profile is in.
    pub profiled: bool,
    /// The last epoch it reported.
    pub epoch: u32,
    /// Whether its command ended.
    pub done: bool,
}

/// An epoch's totals, summed over the hosts that reported it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochTotals {
    /// The epoch.
    pub epoch: u32,
    /// The slowest host's time so far, seconds.
    pub time: f64,
    /// The energy of every host's GPUs so far, joules.
    pub energy: f64,
    /// Rank 0's metric (`None` until rank 0 reported).
    pub metric: Option<f64>,
    /// Hosts that reported it.
    pub hosts: u32,
}

/// One limit of the combined profile, per step.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CombinedPoint {
    /// The power limit, watts.
    pub power_limit: u32,
    /// Energy per step of every host that profiled it, joules.
    pub energy: f64,
    /// Time per step of the slowest such host, seconds.
    pub time: f64,
}

/// A run across hosts, inside its job's document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The run's id.
    pub run_id: String,
    /// Hosts it spans.
    pub hosts: u32,
    /// Its trial.
    pub trial_number: u64,
    /// The trial's batch size.
    pub batch_size: u32,
    /// Silence after which a host fails the run, ms.
    pub host_timeout_ms: i64,
    /// When it was opened, Unix ms.
    pub created_ms: i64,
    /// How its power limit is chosen.
    pub selector: Selector,
    /// Where it stands.
    pub status: RunStatus,
    /// One per rank while it runs; empty once it is over.
    #[serde(default)]
    pub slots: Vec<HostSlot>,
    /// The combined profile so far.
    #[serde(default)]
    pub profile: Vec<CombinedPoint>,
    /// Hosts whose profile is in.
    #[serde(default)]
    pub profiled: u32,
    /// GPUs over the hosts that profiled.
    #[serde(default)]
    pub gpus: u32,
    /// The power limit every host runs, watts, once every host's profile is in.
    #[serde(default)]
    pub power_limit: Option<u32>,
    /// The last epoch reported to the optimizer.
    #[serde(default)]
    pub reported_epoch: u32,
    /// Epochs some but not all hosts reported, ascending.
    #[serde(default)]
    pub pending: Vec<EpochTotals>,
    /// The most recent combined epochs, ascending.
    #[serde(default)]
    pub epochs: Vec<EpochTotals>,
}

/// The answer to every run route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunView {
    /// The job.
    pub job_id: String,
    /// The run.
    pub run_id: String,
    /// The run's trial.
    pub trial_number: u64,
    /// Its batch size.
    pub batch_size: u32,
    /// Hosts the run spans.
    pub hosts: u32,
    /// Hosts that joined (all, once the run is over).
    pub joined: u32,
    /// `running`, `stopped`, `failed` or `ended`.
    pub status: String,
    /// Whether the hosts must stop their command (the run is over).
    pub stop_train: bool,
    /// Whether the run reached its target.
    pub converged: bool,
    /// Why it stopped or failed (empty while running).
    pub message: String,
    /// The power limit every host runs, watts, once every host's profile is in.
    pub power_limit: Option<u32>,
    /// Hosts whose profile is in.
    pub profiled: u32,
    /// The last epoch reported to the optimizer.
    pub reported_epoch: u32,
    /// The most recent combined epochs.
    pub epochs: Vec<EpochTotals>,
}

/// The runs of a job, validated when read.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Run>", into = "Vec<Run>")]
pub struct Runs(Vec<Run>);

impl Runs {
    /// Whether there are none (the field is then left out of the document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The runs, oldest first.
    pub fn list(&self) -> &[Run] {
        &self.0
    }
}

impl From<Runs> for Vec<Run> {
    fn from(r: Runs) -> Self {
        r.0
    }
}

impl TryFrom<Vec<Run>> for Runs {
    type Error = ValidationError;

    fn try_from(runs: Vec<Run>) -> Result<Self, Self::Error> {
        if runs.len() > MAX_RUNS {
            return Err(ValidationError::new("runs", format!("at most {MAX_RUNS}")));
        }
        let open = runs
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .count();
        if open > MAX_OPEN_RUNS {
            return Err(ValidationError::new(
                "runs",
                format!("at most {MAX_OPEN_RUNS} running"),
            ));
        }
        for r in &runs {
            r.check()?;
        }
        Ok(Runs(runs))
    }
}

fn bad(field: &'static str, rule: impl Into<String>) -> ValidationError {
    ValidationError::new(field, rule)
}

fn finite_totals(t: &EpochTotals) -> bool {
    (0.0..=MAX_TIME_SECONDS * f64::from(MAX_HOSTS)).contains(&t.time)
        && (0.0..=MAX_ENERGY_JOULES * f64::from(MAX_HOSTS)).contains(&t.energy)
        && t.metric.is_none_or(f64::is_finite)
}

impl Run {
    /// The invariants of a stored run.
    fn check(&self) -> Result<(), ValidationError> {
        check_id("runs.run_id", &self.run_id)?;
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return Err(bad("runs.hosts", format!("must be 1 to {MAX_HOSTS}")));
        }
        let running = self.status == RunStatus::Running;
        if running && self.slots.len() != self.hosts as usize || !running && !self.slots.is_empty()
        {
            return Err(bad("runs.slots", "one per host while running, none after"));
        }
        if self
            .slots
            .iter()
            .any(|s| s.name.as_ref().is_some_and(|n| n.len() > MAX_HOST_NAME))
        {
            return Err(bad("runs.slots.name", "too long"));
        }
        let timeout = (MIN_HOST_TIMEOUT_S * 1000.0) as i64..=(MAX_HOST_TIMEOUT_S * 1000.0) as i64;
        if !timeout.contains(&self.host_timeout_ms) {
            return Err(bad("runs.host_timeout_ms", "out of range"));
        }
        if self.profile.len() > MAX_PROFILE_LIMITS
            || self.profiled > self.hosts
            || self.profile.iter().any(|p| {
                !(p.energy.is_finite() && p.energy >= 0.0 && p.time.is_finite() && p.time >= 0.0)
            })
        {
            return Err(bad("runs.profile", "bounded, finite and >= 0"));
        }
        if self.pending.len() > MAX_PENDING_EPOCHS
            || self.epochs.len() > RECENT_EPOCHS
            || !self.pending.iter().chain(&self.epochs).all(finite_totals)
        {
            return Err(bad("runs.epochs", "bounded, finite and >= 0"));
        }
        self.selector
            .validate()
            .map_err(|e| bad("runs.selector", e.to_string()))?;
        Ok(())
    }

    fn view(&self, job_id: &str) -> RunView {
        let (status, converged, message) = match &self.status {
            RunStatus::Running => ("running", false, String::new()),
            RunStatus::Stopped { converged, message } => ("stopped", *converged, message.clone()),
            RunStatus::Failed { message } => ("failed", false, message.clone()),
            RunStatus::Ended => ("ended", false, "every host's command ended".to_string()),
        };
        let joined = if self.slots.is_empty() {
            self.hosts
        } else {
            self.slots.iter().filter(|s| s.joined).count() as u32
        };
        RunView {
            job_id: job_id.to_string(),
            run_id: self.run_id.clone(),
            trial_number: self.trial_number,
            batch_size: self.batch_size,
            hosts: self.hosts,
            joined,
            status: status.to_string(),
            stop_train: self.status != RunStatus::Running,
            converged,
            message,
            power_limit: self.power_limit,
            profiled: self.profiled,
            reported_epoch: self.reported_epoch,
            epochs: self.epochs.clone(),
        }
    }

    fn host_label(&self, rank: usize) -> String {
        match self.slots.get(rank).and_then(|s| s.name.as_deref()) {
            Some(name) => format!("host {rank} ({name})"),
            None => format!("host {rank}"),
        }
    }

    /// Ends the run (once): the trial ends too, unless the optimizer recorded it.
    fn finish(&mut self, status: RunStatus, state: &mut JobState, now_ms: i64) {
        if self.status != RunStatus::Running {
            return;
        }
        if !matches!(status, RunStatus::Stopped { .. }) {
            // A trial that already left the document, or was ended by PATCH /trials, stays as it is.
            let _ = state.end_trial(self.trial_number, now_ms);
        }
        self.status = status;
        self.slots.clear();
        self.pending.clear();
    }

    /// Fails the run if a host that is not done has been silent past the timeout.
    fn expire(&mut self, state: &mut JobState, now_ms: i64) {
        if self.status != RunStatus::Running {
            return;
        }
        // The host silent the longest (one that never joined first, on a tie) is named.
        let late = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                !s.done && now_ms.saturating_sub(s.last_seen_ms) > self.host_timeout_ms
            })
            .min_by_key(|(_, s)| (s.last_seen_ms, s.joined))
            .map(|(rank, _)| rank);
        if let Some(rank) = late {
            let slot = &self.slots[rank];
            let what = if slot.joined {
                "sent nothing"
            } else {
                "never joined"
            };
            let message = format!(
                "{} {what} for {:.1} s (host timeout {:.1} s): run {:?} and its trial {} failed",
                self.host_label(rank),
                now_ms.saturating_sub(slot.last_seen_ms) as f64 / 1000.0,
                self.host_timeout_ms as f64 / 1000.0,
                self.run_id,
                self.trial_number
            );
            self.finish(RunStatus::Failed { message }, state, now_ms);
        }
    }

    /// Adds a host's profile to the combined one; picks the limit once all are in.
    fn add_profile(&mut self, p: &HostProfile) -> Result<(), ValidationError> {
        let per_step: Vec<CombinedPoint> = p
            .measurements
            .iter()
            .map(|m| CombinedPoint {
                power_limit: m.power_limit,
                energy: m.energy / f64::from(m.steps),
                time: m.time / f64::from(m.steps),
            })
            .collect();
        if self.profiled == 0 {
            self.profile = per_step;
        } else {
            self.profile.retain_mut(|c| {
                match per_step.iter().find(|h| h.power_limit == c.power_limit) {
                    Some(h) => {
                        c.energy += h.energy;
                        c.time = c.time.max(h.time);
                        true
                    }
                    None => false,
                }
            });
        }
        self.profiled += 1;
        self.gpus = self.gpus.saturating_add(p.gpu_count as u32);
        if self.profiled == self.hosts && !self.profile.is_empty() {
            let measurements: Vec<PowerLimitMeasurement> = self
                .profile
                .iter()
                .map(|c| PowerLimitMeasurement {
                    power_limit: c.power_limit,
                    energy: c.energy,
                    time: c.time,
                    steps: 1,
                })
                .collect();
            self.power_limit = select(&self.selector, &measurements, self.gpus)
                .map_err(|e| bad("selector", e.to_string()))
                .map(Some)?;
        }
        Ok(())
    }

    /// Adds a host's epoch; reports every epoch all hosts have to the optimizer.
    fn add_report(
        &mut self,
        rank: usize,
        r: &HostReport,
        state: &mut JobState,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        let slot = &mut self.slots[rank];
        if r.current_epoch <= slot.epoch {
            return Ok(()); // a repeated report: already counted
        }
        if r.current_epoch != slot.epoch + 1 {
            return Err(ApiError::Invalid(format!(
                "current_epoch: host {rank} reported epoch {} after epoch {}; epochs are reported in order",
                r.current_epoch, slot.epoch
            )));
        }
        let index = (r.current_epoch - self.reported_epoch - 1) as usize;
        if index >= MAX_PENDING_EPOCHS {
            return Err(ApiError::BadRequest(format!(
                "current_epoch: host {rank} is {} epochs ahead of the slowest host (at most {MAX_PENDING_EPOCHS})",
                index + 1
            )));
        }
        slot.epoch = r.current_epoch;
        while self.pending.len() <= index {
            let epoch = self.reported_epoch + self.pending.len() as u32 + 1;
            self.pending.push(EpochTotals {
                epoch,
                time: 0.0,
                energy: 0.0,
                metric: None,
                hosts: 0,
            });
        }
        let e = &mut self.pending[index];
        e.time = e.time.max(r.time);
        e.energy += r.energy;
        e.hosts += 1;
        if rank == 0 {
            e.metric = Some(r.metric);
        }
        while self
            .pending
            .first()
            .is_some_and(|e| e.hosts == self.hosts && self.status == RunStatus::Running)
        {
            let e = self.pending.remove(0);
            self.reported_epoch = e.epoch;
            self.epochs.push(e);
            if self.epochs.len() > RECENT_EPOCHS {
                self.epochs.remove(0);
            }
            let combined = TrainingResult {
                job_id: state.job_id().to_string(),
                batch_size: self.batch_size,
                trial_number: self.trial_number,
                time: e.time,
                energy: e.energy,
                metric: e.metric.unwrap_or(f64::NAN),
                current_epoch: e.epoch,
            };
            match state.report(&combined, now_ms) {
                Ok(ReportResponse {
                    stop_train: true,
                    converged,
                    message,
                }) => self.finish(RunStatus::Stopped { converged, message }, state, now_ms),
                Ok(_) => {}
                Err(err) => {
                    let message = format!(
                        "the trial did not take epoch {} of run {:?}: {err}",
                        e.epoch, self.run_id
                    );
                    self.finish(RunStatus::Failed { message }, state, now_ms);
                }
            }
        }
        Ok(())
    }
}

fn check_rank(rank: i64, hosts: u32) -> Result<usize, ValidationError> {
    if rank < 0 || rank >= i64::from(hosts) {
        return Err(bad(
            "host_rank",
            format!("must be 0 to {} (the run has {hosts} hosts)", hosts - 1),
        ));
    }
    Ok(rank as usize)
}

impl JoinRun {
    /// Checks the request; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        check_id("run_id", &self.run_id)?;
        if !(1..=i64::from(MAX_HOSTS)).contains(&self.hosts) {
            return Err(bad("hosts", format!("must be 1 to {MAX_HOSTS}")));
        }
        check_rank(self.host_rank, self.hosts as u32)?;
        if let Some(name) = &self.host_name {
            if name.is_empty() || name.len() > MAX_HOST_NAME || name.chars().any(|c| c.is_control())
            {
                return Err(bad(
                    "host_name",
                    format!("must be 1 to {MAX_HOST_NAME} printable characters"),
                ));
            }
        }
        if !(MIN_HOST_TIMEOUT_S..=MAX_HOST_TIMEOUT_S).contains(&self.host_timeout_s) {
            return Err(bad(
                "host_timeout_s",
                format!("must be {MIN_HOST_TIMEOUT_S} to {MAX_HOST_TIMEOUT_S} seconds"),
            ));
        }
        self.selector
            .validate()
            .map_err(|e| bad("selector", e.to_string()))
    }
}

impl HostProfile {
    /// Checks the profile; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(1..=i64::from(MAX_GPUS_PER_HOST)).contains(&self.gpu_count) {
            return Err(bad(
                "gpu_count",
                format!("must be 1 to {MAX_GPUS_PER_HOST}"),
            ));
        }
        if self.measurements.is_empty() || self.measurements.len() > MAX_PROFILE_LIMITS {
            return Err(bad(
                "measurements",
                format!("must hold 1 to {MAX_PROFILE_LIMITS} entries"),
            ));
        }
        for (i, m) in self.measurements.iter().enumerate() {
            if m.power_limit == 0 {
                return Err(bad("measurements.power_limit", "must be > 0"));
            }
            if self.measurements[..i]
                .iter()
                .any(|o| o.power_limit == m.power_limit)
            {
                return Err(bad("measurements.power_limit", "must be unique"));
            }
            if m.steps == 0 {
                return Err(bad("measurements.steps", "must be > 0"));
            }
            if !(m.time.is_finite() && m.time > 0.0 && m.time <= MAX_TIME_SECONDS) {
                return Err(bad(
                    "measurements.time",
                    format!("must be a finite number > 0 and <= {MAX_TIME_SECONDS}"),
                ));
            }
            if !(m.energy.is_finite() && m.energy >= 0.0 && m.energy <= MAX_ENERGY_JOULES) {
                return Err(bad(
                    "measurements.energy",
                    format!("must be a finite number >= 0 and <= {MAX_ENERGY_JOULES}"),
                ));
            }
        }
        Ok(())
    }
}

impl HostReport {
    /// Checks the report; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if !(self.time.is_finite() && (0.0..=MAX_TIME_SECONDS).contains(&self.time)) {
            return Err(bad(
                "time",
                format!("must be a finite number >= 0 and <= {MAX_TIME_SECONDS}"),
            ));
        }
        if !(self.energy.is_finite() && (0.0..=MAX_ENERGY_JOULES).contains(&self.energy)) {
            return Err(bad(
                "energy",
                format!("must be a finite number >= 0 and <= {MAX_ENERGY_JOULES}"),
            ));
        }
        if !self.metric.is_finite() {
            return Err(bad("metric", "must be a finite number"));
        }
        if self.current_epoch == 0 {
            return Err(bad("current_epoch", "must be >= 1"));
        }
        Ok(())
    }
}

fn loaded<'a>(job_id: &str, current: Option<&'a JobState>) -> Result<&'a JobState, ApiError> {
    current.filter(|s| s.job_id() == job_id).ok_or_else(|| {
        ApiError::NotFound(format!("job_id: unknown job {job_id:?}; register it first"))
    })
}

fn unknown_run(job_id: &str, run_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "run_id: job {job_id:?} has no run {run_id:?}; join it first"
    ))
}

/// Fails every running run with a silent host.
fn expire_all(state: &mut JobState, now_ms: i64) {
    let mut runs = std::mem::take(&mut state.runs.0);
    for run in &mut runs {
        run.expire(state, now_ms);
    }
    state.runs.0 = runs;
}

/// The outcome: a write when the document changed, none otherwise.
fn answer(view: RunView, current: &JobState, mut state: JobState) -> Outcome<RunView> {
    if state == *current {
        return Outcome {
            status: 200,
            body: view,
            change: Change::Keep,
            archive: Vec::new(),
        };
    }
    let archive = state.take_archive();
    Outcome {
        status: 200,
        body: view,
        change: Change::Put(Box::new(state)),
        archive,
    }
}

/// `POST /jobs/{job_id}/runs`: joins the run `req.run_id`, opening it (and
/// dispatching its trial) when this host is the first.
pub fn join(
    job_id: &str,
    req: &JoinRun,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<RunView>, ApiError> {
    req.validate()?;
    let current = loaded(job_id, current)?;
    let mut state = current.clone();
    let now = ctx.now_ms;
    expire_all(&mut state, now);
    let hosts = req.hosts as u32;
    let rank = req.host_rank as usize;
    let index = match state.runs.0.iter().position(|r| r.run_id == req.run_id) {
        Some(i) => {
            if state.runs.0[i].hosts != hosts {
                return Err(ApiError::Conflict(format!(
                    "hosts: run {:?} spans {} hosts; this host says {hosts}",
                    req.run_id, state.runs.0[i].hosts
                )));
            }
            i
        }
        None => {
            let open = state
                .runs
                .0
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .count();
            if open >= MAX_OPEN_RUNS {
                return Err(ApiError::Conflict(format!(
                    "runs: job {job_id:?} has {MAX_OPEN_RUNS} runs across hosts running; one must end first"
                )));
            }
            if state.runs.0.len() >= MAX_RUNS {
                // The oldest finished run leaves (one is finished: open < MAX_OPEN_RUNS < MAX_RUNS).
                if let Some(i) = state
                    .runs
                    .0
                    .iter()
                    .position(|r| r.status != RunStatus::Running)
                {
                    state.runs.0.remove(i);
                }
            }
            let trial = state.predict(now)?;
            let slot = HostSlot {
                name: None,
                joined: false,
                last_seen_ms: now,
                profiled: false,
                epoch: 0,
                done: false,
            };
            state.runs.0.push(Run {
                run_id: req.run_id.clone(),
                hosts,
                trial_number: trial.trial_number,
                batch_size: trial.batch_size,
                host_timeout_ms: (req.host_timeout_s * 1000.0).round() as i64,
                created_ms: now,
                selector: req.selector,
                status: RunStatus::Running,
                slots: vec![slot; hosts as usize],
                profile: Vec::new(),
                profiled: 0,
                gpus: 0,
                power_limit: None,
                reported_epoch: 0,
                pending: Vec::new(),
                epochs: Vec::new(),
            });
            state.runs.0.len() - 1
        }
    };
    let run = &mut state.runs.0[index];
    if let Some(slot) = run.slots.get_mut(rank) {
        slot.joined = true;
        slot.last_seen_ms = slot.last_seen_ms.max(now);
        if req.host_name.is_some() {
            slot.name.clone_from(&req.host_name);
        }
    }
    let view = run.view(job_id);
    Ok(answer(view, current, state))
}

/// `POST /jobs/{job_id}/runs/{run_id}/{heartbeat|profile|report|done}`: one host's
/// message. The host must have joined; a run that is over answers its outcome.
pub fn host_message(
    job_id: &str,
    run_id: &str,
    rank: i64,
    message: &HostMessage,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<RunView>, ApiError> {
    match message {
        HostMessage::Profile(p) => p.validate()?,
        HostMessage::Report(r) => r.validate()?,
        HostMessage::Heartbeat | HostMessage::Done => {}
    }
    let current = loaded(job_id, current)?;
    let mut state = current.clone();
    let now = ctx.now_ms;
    expire_all(&mut state, now);
    let index = state
        .runs
        .0
        .iter()
        .position(|r| r.run_id == run_id)
        .ok_or_else(|| unknown_run(job_id, run_id))?;
    let mut run = state.runs.0[index].clone();
    let rank = check_rank(rank, run.hosts)?;
    if run.status == RunStatus::Running {
        let slot = &mut run.slots[rank];
        if !slot.joined {
            return Err(ApiError::BadRequest(format!(
                "host_rank: host {rank} has not joined run {run_id:?}"
            )));
        }
        // A heartbeat is written only when it moves the deadline by an eighth of the
        // timeout, so a host's polling rarely writes.
        let stale = now.saturating_sub(slot.last_seen_ms) >= run.host_timeout_ms / 8;
        if !matches!(message, HostMessage::Heartbeat) || stale {
            slot.last_seen_ms = slot.last_seen_ms.max(now);
        }
        match message {
            HostMessage::Heartbeat => {}
            HostMessage::Done => {
                run.slots[rank].done = true;
                if run.slots.iter().all(|s| s.done) {
                    run.finish(RunStatus::Ended, &mut state, now);
                }
            }
            HostMessage::Profile(p) => {
                if !run.slots[rank].profiled {
                    run.add_profile(p)?;
                    run.slots[rank].profiled = true;
                }
            }
            HostMessage::Report(r) => run.add_report(rank, r, &mut state, now)?,
        }
    }
    let view = run.view(job_id);
    state.runs.0[index] = run;
    Ok(answer(view, current, state))
}

/// `GET /jobs/{job_id}/runs/{run_id}`: the run as it stands now (deadlines
/// included), without writing.
pub fn view(
    job_id: &str,
    run_id: &str,
    current: Option<&JobState>,
    now_ms: i64,
) -> Result<RunView, ApiError> {
    let mut state = loaded(job_id, current)?.clone();
    expire_all(&mut state, now_ms);
    state
        .runs
        .0
        .iter()
        .find(|r| r.run_id == run_id)
        .map(|r| r.view(job_id))
        .ok_or_else(|| unknown_run(job_id, run_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::JobSpec;
    use crate::trial::TrialStatus;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn job(max_epochs: i64) -> JobState {
        let mut spec = JobSpec::new("mh", vec![32, 64], 64, 300.0, 8, "F100");
        spec.job_id = Some("mh-1".into());
        spec.max_epochs = max_epochs;
        spec.target_metric = 0.99;
        let params = spec.validate().unwrap();
        JobState::new("mh-1".into(), params, 7, T0)
    }

    fn ctx(now_ms: i64) -> Ctx {
        Ctx { now_ms, entropy: 1 }
    }

    fn join_req(rank: i64, hosts: i64) -> JoinRun {
        JoinRun {
            run_id: "slurm-42.0".into(),
            hosts,
            host_rank: rank,
            host_name: Some(format!("node{rank}")),
            host_timeout_s: 10.0,
            selector: Selector::Energy,
        }
    }

    /// Applies an outcome's change to the state (as a host would store it).
    fn apply<T>(state: &mut JobState, out: &Outcome<T>) {
        if let Change::Put(s) = &out.change {
            *state = (**s).clone();
        }
    }

    fn join_all(state: &mut JobState, hosts: i64, now: i64) -> Vec<RunView> {
        (0..hosts)
            .map(|r| {
                let out = join("mh-1", &join_req(r, hosts), Some(state), ctx(now)).unwrap();
                apply(state, &out);
                out.body
            })
            .collect()
    }

    fn send(
        state: &mut JobState,
        rank: i64,
        m: HostMessage,
        now: i64,
    ) -> Result<RunView, ApiError> {
        let out = host_message("mh-1", "slurm-42.0", rank, &m, Some(state), ctx(now))?;
        apply(state, &out);
        Ok(out.body)
    }

    fn report(rank: i64, epoch: u32, time: f64, energy: f64) -> HostMessage {
        HostMessage::Report(HostReport {
            host_rank: rank,
            time,
            energy,
            metric: 0.1 * f64::from(epoch),
            current_epoch: epoch,
        })
    }

    #[test]
    fn every_host_gets_the_same_trial() {
        let mut s = job(10);
        let views = join_all(&mut s, 3, T0);
        assert!(views
            .windows(2)
            .all(|w| w[0].trial_number == w[1].trial_number && w[0].batch_size == w[1].batch_size));
        assert_eq!(views[2].joined, 3);
        assert_eq!(s.trials().len(), 1, "one trial for the run");
        // A repeated join (a retry) changes nothing.
        let again = join("mh-1", &join_req(1, 3), Some(&s), ctx(T0)).unwrap();
        assert_eq!(again.change, Change::Keep);
        assert_eq!(again.body.trial_number, views[0].trial_number);
    }

    #[test]
    fn one_report_per_epoch_once_all_hosts_reported() {
        let mut s = job(10);
        join_all(&mut s, 3, T0);
        let v = send(&mut s, 2, report(2, 1, 12.0, 100.0), T0 + 1).unwrap();
        assert_eq!(v.reported_epoch, 0);
        let v = send(&mut s, 0, report(0, 1, 10.0, 200.0), T0 + 2).unwrap();
        assert_eq!(v.reported_epoch, 0);
        // A host may run ahead; its epoch 2 waits.
        let v = send(&mut s, 0, report(0, 2, 20.0, 400.0), T0 + 3).unwrap();
        assert_eq!(v.reported_epoch, 0);
        let v = send(&mut s, 1, report(1, 1, 11.0, 300.0), T0 + 4).unwrap();
        assert_eq!(v.reported_epoch, 1);
        assert_eq!(v.epochs.len(), 1);
        let e = v.epochs[0];
        assert_eq!(
            (e.time, e.energy, e.metric, e.hosts),
            (12.0, 600.0, Some(0.1), 3)
        );
        // A repeated report is not counted twice.
        let before = s.runs.list()[0].clone();
        let v = send(&mut s, 1, report(1, 1, 11.0, 300.0), T0 + 5).unwrap();
        assert_eq!(v.epochs[0].energy, 600.0);
        let after = &s.runs.list()[0];
        assert_eq!(
            (&after.pending, &after.epochs),
            (&before.pending, &before.epochs)
        );
        // A gap is refused and changes nothing.
        let e = send(&mut s, 1, report(1, 3, 33.0, 900.0), T0 + 6).unwrap_err();
        assert!(e.to_string().starts_with("current_epoch:"), "{e}");
    }

    #[test]
    fn the_trial_ends_once_with_the_combined_result() {
        let mut s = job(2);
        let views = join_all(&mut s, 2, T0);
        let n = views[0].trial_number;
        for epoch in 1..=2u32 {
            let t = f64::from(epoch);
            send(&mut s, 0, report(0, epoch, 10.0 * t, 100.0 * t), T0 + 10).unwrap();
            send(&mut s, 1, report(1, epoch, 12.0 * t, 150.0 * t), T0 + 10).unwrap();
        }
        let v = send(&mut s, 0, HostMessage::Heartbeat, T0 + 11).unwrap();
        assert!(v.stop_train, "max_epochs reached: {v:?}");
        assert_eq!(v.status, "stopped");
        let trial = s.trial(n).unwrap();
        match trial.status {
            TrialStatus::Succeeded { result, .. } => {
                assert_eq!((result.time, result.energy), (24.0, 500.0));
            }
            other => panic!("{other:?}"),
        }
        // Done from both hosts does not end the trial again.
        send(&mut s, 0, HostMessage::Done, T0 + 12).unwrap();
        send(&mut s, 1, HostMessage::Done, T0 + 12).unwrap();
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Succeeded { .. }
        ));
        assert_eq!(s.trials().len(), 1);
    }

    #[test]
    fn all_hosts_done_without_a_stop_ends_the_trial_failed() {
        let mut s = job(10);
        let n = join_all(&mut s, 2, T0)[0].trial_number;
        send(&mut s, 0, HostMessage::Done, T0 + 1).unwrap();
        assert_eq!(
            send(&mut s, 1, HostMessage::Heartbeat, T0 + 1)
                .unwrap()
                .status,
            "running"
        );
        let v = send(&mut s, 1, HostMessage::Done, T0 + 2).unwrap();
        assert_eq!(v.status, "ended");
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Failed { .. }
        ));
    }

    #[test]
    fn a_silent_host_fails_the_run_naming_it() {
        let mut s = job(10);
        let n = join_all(&mut s, 3, T0)[0].trial_number;
        // Hosts 0 and 1 keep calling; host 2 falls silent.
        let mut now = T0;
        for _ in 0..9 {
            now += 1000;
            for r in 0..2 {
                assert_eq!(
                    send(&mut s, r, HostMessage::Heartbeat, now).unwrap().status,
                    "running"
                );
            }
        }
        now += 2000;
        let v = send(&mut s, 0, HostMessage::Heartbeat, now).unwrap();
        assert_eq!(v.status, "failed");
        assert!(v.stop_train);
        assert!(
            v.message.starts_with("host 2 (node2) sent nothing"),
            "{}",
            v.message
        );
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Failed { .. }
        ));
        // The others learn it on their next call, and the GET sees it too.
        assert_eq!(
            send(&mut s, 1, report(1, 1, 1.0, 1.0), now + 1)
                .unwrap()
                .status,
            "failed"
        );
        assert_eq!(
            view("mh-1", "slurm-42.0", Some(&s), now).unwrap().status,
            "failed"
        );
    }

    #[test]
    fn a_host_that_never_joins_times_out_too_and_get_does_not_write() {
        let mut s = job(10);
        let out = join("mh-1", &join_req(0, 2), Some(&s), ctx(T0)).unwrap();
        apply(&mut s, &out);
        let v = view("mh-1", "slurm-42.0", Some(&s), T0 + 10_001).unwrap();
        assert_eq!(v.status, "failed");
        assert!(
            v.message.starts_with("host 1 never joined"),
            "{}",
            v.message
        );
        // The GET wrote nothing: the stored run still runs.
        assert_eq!(s.runs.list()[0].status, RunStatus::Running);
    }

    #[test]
    fn heartbeats_write_rarely() {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let out = host_message(
            "mh-1",
            "slurm-42.0",
            0,
            &HostMessage::Heartbeat,
            Some(&s),
            ctx(T0 + 100),
        )
        .unwrap();
        assert_eq!(out.change, Change::Keep);
        let out = host_message(
            "mh-1",
            "slurm-42.0",
            0,
            &HostMessage::Heartbeat,
            Some(&s),
            ctx(T0 + 1300),
        )
        .unwrap();
        assert!(matches!(out.change, Change::Put(_)));
    }

    fn profile(rank: i64, points: &[(u32, f64, f64)]) -> HostMessage {
        HostMessage::Profile(HostProfile {
            host_rank: rank,
            gpu_count: 8,
            measurements: points
                .iter()
                .map(|&(power_limit, energy, time)| PowerLimitMeasurement {
                    power_limit,
                    energy,
                    time,
                    steps: 10,
                })
                .collect(),
        })
    }

    #[test]
    fn one_power_limit_from_every_hosts_profile() {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        // Alone, host 0 would pick 150 W (least energy); host 1 is much slower
        // there, so the summed energy is least at 200 W.
        let v = send(
            &mut s,
            0,
            profile(0, &[(300, 30.0, 1.0), (200, 25.0, 1.2), (150, 20.0, 1.5)]),
            T0,
        )
        .unwrap();
        assert_eq!(v.power_limit, None);
        let v = send(
            &mut s,
            1,
            profile(
                1,
                &[
                    (300, 30.0, 1.0),
                    (200, 24.0, 1.2),
                    (150, 40.0, 3.0),
                    (100, 1.0, 9.0),
                ],
            ),
            T0,
        )
        .unwrap();
        assert_eq!(v.profiled, 2);
        assert_eq!(v.power_limit, Some(200));
        // A repeated profile changes nothing.
        let v = send(&mut s, 1, profile(1, &[(100, 0.0, 1.0)]), T0).unwrap();
        assert_eq!(v.power_limit, Some(200));
    }

    #[test]
    fn hostile_input_is_refused_with_the_field_and_nothing_changes() {
        let s = job(10);
        for (f, field) in [
            (
                Box::new(|j: &mut JoinRun| j.hosts = 0) as Box<dyn Fn(&mut JoinRun)>,
                "hosts",
            ),
            (Box::new(|j| j.hosts = 1_000_000_000), "hosts"),
            (Box::new(|j| j.hosts = -3), "hosts"),
            (Box::new(|j| j.host_rank = 3), "host_rank"),
            (Box::new(|j| j.host_rank = -1), "host_rank"),
            (Box::new(|j| j.run_id = "a/b".into()), "run_id"),
            (Box::new(|j| j.run_id = String::new()), "run_id"),
            (Box::new(|j| j.host_timeout_s = f64::NAN), "host_timeout_s"),
            (Box::new(|j| j.host_timeout_s = 0.0), "host_timeout_s"),
            (
                Box::new(|j| j.host_name = Some("x".repeat(33))),
                "host_name",
            ),
            (
                Box::new(|j| {
                    j.selector = Selector::MaxSlowdown {
                        factor: f64::INFINITY,
                    }
                }),
                "selector",
            ),
        ] {
            let mut req = join_req(0, 3);
            f(&mut req);
            let e = join("mh-1", &req, Some(&s), ctx(T0)).unwrap_err();
            assert_eq!(e.status(), 422, "{e}");
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let before = s.clone();
        for (m, field) in [
            (report(0, 1, f64::NAN, 1.0), "time"),
            (report(0, 1, 1.0, f64::INFINITY), "energy"),
            (report(0, 1, -1.0, 1.0), "time"),
            (report(0, 0, 1.0, 1.0), "current_epoch"),
            (profile(0, &[]), "measurements"),
            (profile(0, &[(300, -1.0, 1.0)]), "measurements.energy"),
            (profile(0, &[(300, 1.0, 0.0)]), "measurements.time"),
            (
                profile(0, &[(300, 1.0, 1.0), (300, 1.0, 1.0)]),
                "measurements.power_limit",
            ),
        ] {
            let e = send(&mut s, 0, m, T0).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
        let e = send(&mut s, 5, HostMessage::Heartbeat, T0).unwrap_err();
        assert!(e.to_string().starts_with("host_rank:"), "{e}");
        assert_eq!(s, before);
        // Another host count for the same run is a conflict.
        let e = join("mh-1", &join_req(0, 4), Some(&s), ctx(T0)).unwrap_err();
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn the_document_reads_back_and_old_documents_read_unchanged() {
        let mut s = job(10);
        join_all(&mut s, 3, T0);
        send(&mut s, 0, report(0, 1, 1.0, 2.0), T0).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        let back: JobState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        // No runs: the field is absent, and a document without it reads.
        let plain = job(10);
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("\"runs\""));
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), plain);
        // A stored run that breaks a bound is refused when read.
        let mut v: serde_json::Value = serde_json::to_value(&s).unwrap();
        v["runs"][0]["hosts"] = 100_000.into();
        assert!(serde_json::from_value::<JobState>(v).is_err());
    }

    #[test]
    fn runs_are_bounded() {
        let mut s = job(1000);
        for i in 0..MAX_OPEN_RUNS {
            let mut req = join_req(0, 2);
            req.run_id = format!("r{i}");
            let out = join("mh-1", &req, Some(&s), ctx(T0)).unwrap();
            apply(&mut s, &out);
        }
        let mut req = join_req(0, 2);
        req.run_id = "one-too-many".into();
        assert_eq!(
            join("mh-1", &req, Some(&s), ctx(T0)).unwrap_err().status(),
            409
        );
        // Once they time out, new runs are let in and old ones leave.
        for i in 0..40 {
            let mut req = join_req(0, 2);
            req.run_id = format!("later{i}");
            let now = T0 + 20_000 * (i + 1);
            let out = join("mh-1", &req, Some(&s), ctx(now)).unwrap();
            apply(&mut s, &out);
            assert!(s.runs.list().len() <= MAX_RUNS);
        }
    }

    #[test]
    fn the_largest_runs_stay_small() {
        // Every bound at once: the most running runs, the most hosts with the
        // longest names, a full profile and full epoch windows.
        let mut s = job(1000);
        let name = "n".repeat(MAX_HOST_NAME);
        for i in 0..MAX_OPEN_RUNS {
            let req = JoinRun {
                run_id: format!("{}{i}", "r".repeat(100)),
                hosts: i64::from(MAX_HOSTS),
                host_rank: 0,
                host_name: Some(name.clone()),
                host_timeout_s: MAX_HOST_TIMEOUT_S,
                selector: Selector::Energy,
            };
            let out = join("mh-1", &req, Some(&s), ctx(T0)).unwrap();
            apply(&mut s, &out);
        }
        for run in &mut s.runs.0 {
            for slot in &mut run.slots {
                slot.name = Some(name.clone());
            }
            let full = EpochTotals {
                epoch: u32::MAX,
                time: 1.234_567_890_123e9,
                energy: 1.234_567_890_123e18,
                metric: Some(0.123_456_789_012_345),
                hosts: MAX_HOSTS,
            };
            run.pending = vec![full; MAX_PENDING_EPOCHS];
            run.epochs = vec![full; RECENT_EPOCHS];
            run.profile = (0..MAX_PROFILE_LIMITS as u32)
                .map(|w| CombinedPoint {
                    power_limit: 100 + w,
                    energy: 1.234_567_890_123e10,
                    time: 1.234_567_890_123,
                })
                .collect();
        }
        let bytes = serde_json::to_vec(&s.runs).unwrap().len();
        assert!(bytes < 100_000, "{bytes} bytes");
        let back: Runs = serde_json::from_slice(&serde_json::to_vec(&s.runs).unwrap()).unwrap();
        assert_eq!(back, s.runs);
    }

    proptest! {
        /// Whatever order the hosts' reports arrive in (with duplicates), the
        /// optimizer sees each epoch once, summed and with the slowest time.
        #[test]
        fn reports_in_any_order_combine_the_same(order in proptest::collection::vec(0usize..3, 0..60), energies in proptest::collection::vec(0.0f64..1e6, 3)) {
            let mut s = job(1000);
            join_all(&mut s, 3, T0);
            let mut next = [1u32; 3];
            for &rank in &order {
                let epoch = next[rank];
                // Some repeats: send the previous epoch again.
                let (epoch, advance) = if epoch > 1 && rank == 1 && epoch % 3 == 0 { (epoch - 1, false) } else { (epoch, true) };
                let t = f64::from(epoch);
                let r = send(&mut s, rank as i64, report(rank as i64, epoch, t * (rank as f64 + 1.0), t * energies[rank]), T0);
                match r {
                    Ok(_) => if advance { next[rank] += 1 },
                    Err(e) => prop_assert_eq!(e.status(), 400, "{}", e),
                }
            }
            let run = &s.runs.list()[0];
            let slowest = *next.iter().min().unwrap() - 1;
            prop_assert_eq!(run.reported_epoch, slowest);
            for e in &run.epochs {
                let t = f64::from(e.epoch);
                prop_assert_eq!(e.hosts, 3);
                prop_assert_eq!(e.time, 3.0 * t);
                let sum: f64 = energies.iter().map(|x| x * t).sum();
                prop_assert!((e.energy - sum).abs() <= 1e-9 * sum.max(1.0));
            }
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s.clone());
        }

        /// Any numbers a host may send keep the document readable and finite.
        #[test]
        fn any_accepted_numbers_stay_finite(time in -1e300f64..1e300, energy in -1e300f64..1e300, metric in -1e300f64..1e300) {
            let mut s = job(1000);
            join_all(&mut s, 2, T0);
            for rank in 0..2 {
                let _ = send(&mut s, rank, HostMessage::Report(HostReport { host_rank: rank, time, energy, metric, current_epoch: 1 }), T0);
                let _ = send(&mut s, rank, profile(rank, &[(300, energy, time), (200, energy / 2.0, time * 2.0)]), T0);
            }
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s.clone());
        }
    }
}
