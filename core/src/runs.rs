//! The state of runs across hosts, as the job document keeps it: the runs, their
//! hosts, the epochs each host reported and the ones combined, bounded and
//! validated when read. What the calls do with it is [`crate::multihost`].

use serde::{Deserialize, Serialize};

use crate::field_error::FieldError;
use crate::power::{select, uncertain_limits, PowerLimitMeasurement, ProfiledEnergy, Selector};
use crate::spec::{check_id, check_path_id, MAX_ENERGY_JOULES, MAX_TIME_SECONDS};

/// Most hosts in one run.
pub const MAX_HOSTS: u32 = 256;
/// Most runs of a job still running at once.
pub const MAX_OPEN_RUNS: usize = 2;
/// Most runs kept in a job document (finished ones are compact; the oldest leave first).
pub const MAX_RUNS: usize = 16;
/// Most finished runs remembered by their outcome alone once they leave the
/// [`MAX_RUNS`] kept in full, so a host that joins an old run late learns its
/// outcome instead of opening a new trial: a job remembers its last
/// `MAX_RUNS + MAX_PAST_RUNS` (256) runs.
pub const MAX_PAST_RUNS: usize = 240;
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

pub(crate) fn default_timeout() -> f64 {
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
    /// Per power limit: energy of the host's GPUs and time over `steps` steps,
    /// with the energy's bound when the host measured one.
    pub measurements: Vec<HostMeasurement>,
}

/// One power limit of a host's profile: what it cost over its measurement window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostMeasurement {
    /// The power limit, watts.
    pub power_limit: u32,
    /// Energy of the host's GPUs over the window, joules.
    pub energy: f64,
    /// Length of the window, seconds.
    pub time: f64,
    /// Training steps in the window.
    pub steps: u32,
    /// Half-width of the bound on `energy`, joules (absent when the host
    /// measured no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
}

impl HostMeasurement {
    /// The measurement with its bound: `energy_uncertainty_j`, if any.
    pub fn with_bound(m: PowerLimitMeasurement, energy_uncertainty_j: Option<f64>) -> Self {
        HostMeasurement {
            power_limit: m.power_limit,
            energy: m.energy,
            time: m.time,
            steps: m.steps,
            energy_uncertainty_j,
        }
    }
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
    /// Half-width of the bound on `energy`, joules (absent when the host
    /// measured no bound).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
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
    /// Half-width of the bound on `energy`, joules: the sum of the hosts'
    /// bounds; absent once a host reported none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
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
    /// Half-width of the bound on `energy`, joules: the sum of those hosts'
    /// bounds per step; absent once one of them measured none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
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
    /// The note that the combined profile could not tell `power_limit` from
    /// other limits: it first, then every limit whose energy per step lies
    /// within their bounds of it ([`uncertain_limits`]); empty when every limit
    /// was told apart or the bounds are not known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<u32>,
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
    /// The combined profile's uncertain note (see [`Run::uncertain`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub uncertain: Vec<u32>,
    /// Hosts whose profile is in.
    pub profiled: u32,
    /// The last epoch reported to the optimizer.
    pub reported_epoch: u32,
    /// The most recent combined epochs.
    pub epochs: Vec<EpochTotals>,
}

/// A finished run that left the kept ones: its outcome, by its id.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PastRun {
    /// The run's id.
    pub run_id: String,
    /// Its trial.
    pub trial_number: u64,
    /// The trial's batch size.
    pub batch_size: u32,
    /// Hosts it spanned.
    pub hosts: u32,
    /// `stopped`, `failed` or `ended`.
    pub status: String,
    /// Whether it reached its target.
    pub converged: bool,
    /// The last epoch reported to the optimizer.
    pub reported_epoch: u32,
}

impl PastRun {
    /// The outcome of a finished `run` (the caller drops the rest).
    pub(crate) fn of(run: &Run, job_id: &str) -> PastRun {
        let view = run.view(job_id);
        PastRun {
            run_id: view.run_id,
            trial_number: view.trial_number,
            batch_size: view.batch_size,
            hosts: view.hosts,
            status: view.status,
            converged: view.converged,
            reported_epoch: view.reported_epoch,
        }
    }

    /// What every run route answers for it: over, with its outcome.
    pub(crate) fn view(&self, job_id: &str) -> RunView {
        RunView {
            job_id: job_id.to_string(),
            run_id: self.run_id.clone(),
            trial_number: self.trial_number,
            batch_size: self.batch_size,
            hosts: self.hosts,
            joined: self.hosts,
            status: self.status.clone(),
            stop_train: true,
            converged: self.converged,
            message: format!(
                "run {:?} is over ({}); only its outcome is kept",
                self.run_id, self.status
            ),
            power_limit: None,
            uncertain: Vec::new(),
            profiled: 0,
            reported_epoch: self.reported_epoch,
            epochs: Vec::new(),
        }
    }
}

/// An item of a bounded list of the job document ([`Runs`], [`PastRuns`]): how
/// many the list keeps, and what a list read from a document must satisfy.
pub trait Kept: Sized {
    /// The list's field in the document.
    const FIELD: &'static str;
    /// How many the list keeps at most.
    const MAX: usize;
    /// The run's id.
    fn run_id(&self) -> &str;
    /// The checks of a list read from a document beyond its bound, naming the
    /// field and the rule.
    fn check_list(items: &[Self]) -> Result<(), FieldError>;
}

/// A list of the job document that keeps at most `T::MAX` items, oldest first,
/// and is validated when read.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "Vec<T>",
    into = "Vec<T>",
    bound(
        serialize = "T: Kept + Clone + Serialize",
        deserialize = "T: Kept + Deserialize<'de>"
    )
)]
pub struct Bounded<T: Kept>(pub(crate) Vec<T>);

/// The runs of a job in full, validated when read.
pub type Runs = Bounded<Run>;

/// The outcomes of the finished runs that left [`Runs`], bounded
/// ([`MAX_PAST_RUNS`]) and validated when read.
pub type PastRuns = Bounded<PastRun>;

impl<T: Kept> Default for Bounded<T> {
    fn default() -> Self {
        Bounded(Vec::new())
    }
}

impl<T: Kept> Bounded<T> {
    /// Whether there are none (the field is then left out of the document).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The items, oldest first.
    pub fn list(&self) -> &[T] {
        &self.0
    }

    /// The item of run `run_id`, if it is kept.
    pub fn find(&self, run_id: &str) -> Option<&T> {
        self.0.iter().find(|r| r.run_id() == run_id)
    }

    /// Keeps `item`, forgetting the oldest beyond the bound.
    pub(crate) fn push(&mut self, item: T) {
        self.0.push(item);
        if self.0.len() > T::MAX {
            self.0.remove(0);
        }
    }
}

impl<T: Kept> From<Bounded<T>> for Vec<T> {
    fn from(r: Bounded<T>) -> Self {
        r.0
    }
}

impl<T: Kept> TryFrom<Vec<T>> for Bounded<T> {
    type Error = FieldError;

    fn try_from(items: Vec<T>) -> Result<Self, Self::Error> {
        if items.len() > T::MAX {
            return Err(bad(T::FIELD, format!("at most {}", T::MAX)));
        }
        T::check_list(&items)?;
        Ok(Bounded(items))
    }
}

impl Kept for Run {
    const FIELD: &'static str = "runs";
    const MAX: usize = MAX_RUNS;

    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn check_list(runs: &[Run]) -> Result<(), FieldError> {
        let open = runs
            .iter()
            .filter(|r| r.status == RunStatus::Running)
            .count();
        if open > MAX_OPEN_RUNS {
            return Err(bad("runs", format!("at most {MAX_OPEN_RUNS} running")));
        }
        runs.iter().try_for_each(Run::check)
    }
}

impl Kept for PastRun {
    const FIELD: &'static str = "past_runs";
    const MAX: usize = MAX_PAST_RUNS;

    fn run_id(&self) -> &str {
        &self.run_id
    }

    fn check_list(runs: &[PastRun]) -> Result<(), FieldError> {
        for r in runs {
            check_id("past_runs.run_id", &r.run_id)?;
            if !["stopped", "failed", "ended"].contains(&r.status.as_str()) {
                return Err(bad("past_runs.status", "stopped, failed or ended"));
            }
        }
        Ok(())
    }
}

pub(crate) fn bad(field: &'static str, rule: impl Into<String>) -> FieldError {
    FieldError::new(field, rule)
}

pub(crate) fn finite_totals(t: &EpochTotals) -> bool {
    let joules = 0.0..=MAX_ENERGY_JOULES * f64::from(MAX_HOSTS);
    (0.0..=MAX_TIME_SECONDS * f64::from(MAX_HOSTS)).contains(&t.time)
        && joules.contains(&t.energy)
        && t.energy_uncertainty_j.is_none_or(|u| joules.contains(&u))
        && t.metric.is_none_or(f64::is_finite)
}

/// The sum of two bounds, absent when either is (a missing bound is never invented).
pub(crate) fn sum_bounds(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? + b?)
}

impl Run {
    /// The invariants of a stored run.
    pub(crate) fn check(&self) -> Result<(), FieldError> {
        check_id("runs.run_id", &self.run_id)?;
        if !(1..=MAX_HOSTS).contains(&self.hosts) {
            return Err(bad("runs.hosts", format!("must be 1 to {MAX_HOSTS}")));
        }
        let running = self.status == RunStatus::Running;
        if running && self.slots.len() != self.hosts as usize || !running && !self.slots.is_empty()
        {
            return Err(bad("runs.slots", "one per host while running, none after"));
        }
        if self.slots.iter().any(|s| {
            s.name
                .as_ref()
                .is_some_and(|n| n.chars().count() > MAX_HOST_NAME)
        }) {
            return Err(bad("runs.slots.name", "too long"));
        }
        let timeout = (MIN_HOST_TIMEOUT_S * 1000.0) as i64..=(MAX_HOST_TIMEOUT_S * 1000.0) as i64;
        if !timeout.contains(&self.host_timeout_ms) {
            return Err(bad("runs.host_timeout_ms", "out of range"));
        }
        if self.profile.len() > MAX_PROFILE_LIMITS
            || self.profiled > self.hosts
            || self.profile.iter().any(|p| {
                !(p.energy.is_finite()
                    && p.energy >= 0.0
                    && p.time.is_finite()
                    && p.time >= 0.0
                    && p.energy_uncertainty_j
                        .is_none_or(|u| u.is_finite() && u >= 0.0))
            })
        {
            return Err(bad("runs.profile", "bounded, finite and >= 0"));
        }
        if self.uncertain.len() > MAX_PROFILE_LIMITS {
            return Err(bad("runs.uncertain", "bounded"));
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

    pub(crate) fn view(&self, job_id: &str) -> RunView {
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
            uncertain: self.uncertain.clone(),
            profiled: self.profiled,
            reported_epoch: self.reported_epoch,
            epochs: self.epochs.clone(),
        }
    }

    pub(crate) fn host_label(&self, rank: usize) -> String {
        match self.slots.get(rank).and_then(|s| s.name.as_deref()) {
            Some(name) => format!("host {rank} ({name})"),
            None => format!("host {rank}"),
        }
    }

    /// Adds a host's profile to the combined one; picks the limit once all are in.
    pub(crate) fn add_profile(&mut self, p: &HostProfile) -> Result<(), FieldError> {
        let per_step: Vec<CombinedPoint> = p
            .measurements
            .iter()
            .map(|m| CombinedPoint {
                power_limit: m.power_limit,
                energy: m.energy / f64::from(m.steps),
                time: m.time / f64::from(m.steps),
                energy_uncertainty_j: m.energy_uncertainty_j.map(|u| u / f64::from(m.steps)),
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
                        c.energy_uncertainty_j =
                            sum_bounds(c.energy_uncertainty_j, h.energy_uncertainty_j);
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
            let chosen = select(&self.selector, &measurements, self.gpus)
                .map_err(|e| bad("selector", e.to_string()))?;
            let bounded: Vec<ProfiledEnergy> = self
                .profile
                .iter()
                .filter_map(|c| {
                    c.energy_uncertainty_j.map(|u| ProfiledEnergy {
                        limit_w: c.power_limit,
                        energy_j: c.energy,
                        uncertainty_j: u,
                    })
                })
                .collect();
            self.uncertain = uncertain_limits(chosen, &bounded);
            self.power_limit = Some(chosen);
        }
        Ok(())
    }
}

/// Whether `c` may appear in a host name: not a control character, nor one that
/// reorders or hides text where the name is shown (bidirectional controls such
/// as U+202E, zero-width and other format characters, line and paragraph
/// separators). Agents filter their host name with it.
pub fn host_name_char(c: char) -> bool {
    !(c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}'))
}

pub(crate) fn check_rank(rank: i64, hosts: u32) -> Result<usize, FieldError> {
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
    pub fn validate(&self) -> Result<(), FieldError> {
        check_path_id("run_id", &self.run_id)?;
        if !(1..=i64::from(MAX_HOSTS)).contains(&self.hosts) {
            return Err(bad("hosts", format!("must be 1 to {MAX_HOSTS}")));
        }
        check_rank(self.host_rank, self.hosts as u32)?;
        if let Some(name) = &self.host_name {
            let count = name.chars().count();
            if count == 0 || count > MAX_HOST_NAME || !name.chars().all(host_name_char) {
                return Err(bad(
                    "host_name",
                    format!(
                        "must be 1 to {MAX_HOST_NAME} printable characters (no control, \
                         bidirectional, invisible or line-separating ones)"
                    ),
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
    pub fn validate(&self) -> Result<(), FieldError> {
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
            if m.energy_uncertainty_j
                .is_some_and(|u| !(0.0..=MAX_ENERGY_JOULES).contains(&u))
            {
                return Err(bad(
                    "measurements.energy_uncertainty_j",
                    format!("must be a finite number >= 0 and <= {MAX_ENERGY_JOULES}"),
                ));
            }
        }
        Ok(())
    }
}

impl HostReport {
    /// Checks the report; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), FieldError> {
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
        if self
            .energy_uncertainty_j
            .is_some_and(|u| !(0.0..=MAX_ENERGY_JOULES).contains(&u))
        {
            return Err(bad(
                "energy_uncertainty_j",
                format!("must be a finite number >= 0 and <= {MAX_ENERGY_JOULES}"),
            ));
        }
        Ok(())
    }
}
