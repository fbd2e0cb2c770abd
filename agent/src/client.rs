//! The endpoint client: Zeus's routes over blocking HTTP, and the reporter that
//! never blocks training: every message the endpoint must get after the command
//! starts (epoch reports, the power profile, the trial's end, a host's messages to
//! its run) is spooled to a file first, then sent in order with backoff while the
//! endpoint is unreachable or answers 5xx; what is left when the agent must exit
//! stays in the file for the next agent to replay.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use wattwise_core::retry::{retry, Backoff};
use wattwise_core::route::{self, Endpoint as Route};
use wattwise_core::runs::{JoinRun, RunView};
use wattwise_core::spec::JobSpec;
use wattwise_core::wire::{PowerProfile, ReportResponse, TrainingResult, TrialId};

/// Environment variable holding the bearer token.
pub const TOKEN_ENV: &str = "WATTWISE_TOKEN";
/// Environment variable naming a file that holds the bearer token.
pub const TOKEN_FILE_ENV: &str = "WATTWISE_TOKEN_FILE";

/// What can go wrong talking to the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No answer (connection refused, timeout).
    #[error("endpoint {url} unreachable: {reason}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// An error status.
    #[error("endpoint answered {status} to {method} {path}: {body}")]
    Status {
        /// The method.
        method: &'static str,
        /// The path.
        path: String,
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// A call the core's route table has no row for (with as many ids).
    #[error("no route {route} with {ids} id(s) in the core's route table")]
    NoRoute {
        /// The route called.
        route: String,
        /// How many ids it was given.
        ids: usize,
    },
    /// A body that is not what the route returns.
    #[error("endpoint answered {method} {path} with an unexpected body: {reason}")]
    Decode {
        /// The method.
        method: &'static str,
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
    /// The token file could not be read.
    #[error("cannot read the token file {path} ({TOKEN_FILE_ENV}): {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl HttpError {
    /// Whether the endpoint refused the body for a field named `field` (a 422
    /// whose message names it).
    pub fn refuses_field(&self, field: &str) -> bool {
        matches!(self, HttpError::Status { status: 422, body, .. } if body.contains(field))
    }

    /// Whether trying again later may succeed (no answer, or a 5xx / 429).
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Unreachable { .. } => true,
            HttpError::Status { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }
}

/// The bearer token: `WATTWISE_TOKEN`, else the content of `WATTWISE_TOKEN_FILE`.
/// Never taken from the command line, never logged.
pub fn token_from_env() -> Result<Option<String>, HttpError> {
    if let Ok(t) = std::env::var(TOKEN_ENV) {
        if !t.trim().is_empty() {
            return Ok(Some(t.trim().to_string()));
        }
    }
    match std::env::var(TOKEN_FILE_ENV) {
        Ok(path) if !path.is_empty() => {
            let t = std::fs::read_to_string(&path).map_err(|e| HttpError::TokenFile {
                path: path.clone(),
                reason: e.to_string(),
            })?;
            Ok(Some(t.trim().to_string()).filter(|t| !t.is_empty()))
        }
        _ => Ok(None),
    }
}

/// A wattwise (or Zeus) endpoint.
#[derive(Clone)]
pub struct Endpoint {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token is never printed.
        f.debug_struct("Endpoint")
            .field("base", &self.base)
            .finish()
    }
}

impl Endpoint {
    /// An endpoint at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Endpoint {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Endpoint {
            base: base.trim_end_matches('/').to_string(),
            token,
            agent,
        }
    }

    /// Calls `route` (its method and path from the core's table) for `ids`, with a
    /// query string already encoded (or empty) and a JSON body.
    fn call<T: DeserializeOwned>(
        &self,
        route: Route,
        ids: &[&str],
        query: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, HttpError> {
        // The ids are percent-encoded into the path's segments: the endpoint
        // decodes each segment once, so an id with `:` arrives as it was sent.
        let (method, path) = route::request_line(route, ids).ok_or_else(|| HttpError::NoRoute {
            route: format!("{route:?}"),
            ids: ids.len(),
        })?;
        let path = format!("{path}{query}");
        let url = format!("{}{}", self.base, path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let unreachable = |e: ureq::Error| HttpError::Unreachable {
            url: url.clone(),
            reason: e.to_string(),
        };
        let result = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (m, body) => {
                let mut r = if m == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                match body {
                    Some(b) => r.send_json(b),
                    None => r.send_empty(),
                }
            }
        };
        let mut resp = result.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| HttpError::Unreachable {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        if !(200..300).contains(&status) {
            return Err(HttpError::Status {
                method,
                path: path.to_string(),
                status,
                body: text.chars().take(300).collect(),
            });
        }
        let text = if text.trim().is_empty() {
            "null"
        } else {
            &text
        };
        serde_json::from_str(text).map_err(|e| HttpError::Decode {
            method,
            path: path.to_string(),
            reason: e.to_string(),
        })
    }

    /// `POST /jobs`: the registered spec (with its job id).
    pub fn register(&self, spec: &JobSpec) -> Result<JobSpec, HttpError> {
        self.call(Route::RegisterJob, &[], "", Some(spec))
    }

    /// `GET /jobs/batch_size`: the batch size of this run.
    pub fn batch_size(&self, job_id: &str) -> Result<TrialId, HttpError> {
        let query = format!("?job_id={}", route::encode_segment(job_id));
        self.call(Route::NextTrial, &[], &query, None::<&()>)
    }

    /// `POST /report`.
    pub fn report(&self, result: &TrainingResult) -> Result<ReportResponse, HttpError> {
        self.call(Route::Report, &[], "", Some(result))
    }

    /// `PATCH /trials`: ends the trial.
    pub fn end_trial(&self, trial: &TrialId) -> Result<(), HttpError> {
        let _: serde_json::Value = self.call(Route::EndTrial, &[], "", Some(trial))?;
        Ok(())
    }

    /// `GET /jobs/{id}/profiles`.
    pub fn profiles(&self, job_id: &str) -> Result<Vec<PowerProfile>, HttpError> {
        self.call(Route::Profiles, &[job_id], "", None::<&()>)
    }

    /// `POST /jobs/{id}/profiles`.
    pub fn post_profile(&self, job_id: &str, profile: &PowerProfile) -> Result<(), HttpError> {
        let _: serde_json::Value = self.call(Route::AddProfile, &[job_id], "", Some(profile))?;
        Ok(())
    }

    /// `POST /jobs/{id}/runs`: joins (or opens) a run across hosts.
    pub fn join_run(&self, job_id: &str, join: &JoinRun) -> Result<RunView, HttpError> {
        self.call(Route::JoinRun, &[job_id], "", Some(join))
    }

    /// `POST /jobs/{id}/runs/{run}/heartbeat`: one host's poll of its run.
    pub fn heartbeat(
        &self,
        job_id: &str,
        run_id: &str,
        body: &impl Serialize,
    ) -> Result<RunView, HttpError> {
        self.call(Route::RunHeartbeat, &[job_id, run_id], "", Some(body))
    }

    /// `POST /jobs/{id}/runs/{run}/{action}`: one host's message to its run
    /// (`profile`, `report`, `done`).
    pub fn run_call(
        &self,
        job_id: &str,
        run_id: &str,
        action: RunAction,
        body: &impl Serialize,
    ) -> Result<RunView, HttpError> {
        self.call(action.route(), &[job_id, run_id], "", Some(body))
    }

    /// Calls `f` until it succeeds, fails for good, or `patience` passes, backing off
    /// ([`Backoff::CLIENT`]: jittered waits bounded from 100 ms up to 5 s) while the
    /// error is retryable.
    pub fn retrying<T>(
        &self,
        patience: Duration,
        mut f: impl FnMut(&Endpoint) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
        let start = Instant::now();
        retry(
            Backoff::CLIENT,
            || f(self),
            |e, delay| {
                let backoff = Duration::from_millis(delay.ms(entropy()));
                let go_on = e.retryable()
                    && start.elapsed() + backoff < patience
                    && crate::run::child::signalled().is_none();
                if go_on {
                    std::thread::sleep(backoff);
                }
                go_on
            },
        )
    }
}

/// How a run across hosts hears from one host after the command starts (its
/// heartbeat is the link's own poll, never spooled).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunAction {
    /// The host's power profile.
    Profile,
    /// The host's totals after an epoch.
    Report,
    /// The host's command ended.
    Done,
}

impl RunAction {
    /// The route's last segment.
    pub fn as_str(self) -> &'static str {
        match self {
            RunAction::Profile => "profile",
            RunAction::Report => "report",
            RunAction::Done => "done",
        }
    }

    /// The route that carries it.
    fn route(self) -> Route {
        match self {
            RunAction::Profile => Route::RunProfile,
            RunAction::Report => Route::RunReport,
            RunAction::Done => Route::RunDone,
        }
    }
}

/// One message the endpoint must get: written to the spool file before
/// [`Reporter::send`] returns, removed once the endpoint answered it (or refused
/// it for good), replayed by the next agent when it is still there.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outgoing {
    /// `POST /report`: an epoch's totals.
    Report(TrainingResult),
    /// `POST /jobs/{job_id}/profiles`: the power profile this run measured.
    Profile {
        /// The job.
        job_id: String,
        /// The profile.
        profile: PowerProfile,
    },
    /// `PATCH /trials`: ends the trial (a trial with no result becomes Failed).
    EndTrial(TrialId),
    /// `POST /jobs/{job_id}/runs/{run_id}/{action}`: one host's message to its run.
    Run {
        /// The job.
        job_id: String,
        /// The run across hosts.
        run_id: String,
        /// What the message is.
        action: RunAction,
        /// Its body (the core's `HostProfile`, `HostReport` or `HostCall`).
        body: serde_json::Value,
    },
}

/// The field that carries an energy bound in every message that has one (a
/// wattwise addition that an endpoint older than the agent may refuse: its
/// host messages take no unknown field).
pub const BOUND_FIELD: &str = "energy_uncertainty_j";

impl Outgoing {
    /// The message without its energy bounds (and the profile's note on them),
    /// as an endpoint that predates them reads it; `None` when it has none.
    pub fn without_bounds(&self) -> Option<Outgoing> {
        let mut plain = self.clone();
        match &mut plain {
            Outgoing::Report(r) => r.energy_uncertainty_j = None,
            Outgoing::Profile { profile, .. } => {
                for m in &mut profile.measurements {
                    m.energy_uncertainty_j = None;
                }
                profile.uncertain.clear();
            }
            Outgoing::EndTrial(_) => {}
            Outgoing::Run { body, .. } => {
                if let Some(b) = body.as_object_mut() {
                    b.remove(BOUND_FIELD);
                    if let Some(ms) = b.get_mut("measurements").and_then(|m| m.as_array_mut()) {
                        for m in ms.iter_mut().filter_map(|m| m.as_object_mut()) {
                            m.remove(BOUND_FIELD);
                        }
                    }
                }
            }
        }
        (plain != *self).then_some(plain)
    }

    /// What the message is, for the log.
    pub fn what(&self) -> String {
        match self {
            Outgoing::Report(r) => format!("the report of epoch {}", r.current_epoch),
            Outgoing::Profile { .. } => "the power profile".into(),
            Outgoing::EndTrial(t) => format!("the end of trial {}", t.trial_number),
            Outgoing::Run { run_id, action, .. } => format!("run {run_id}: {}", action.as_str()),
        }
    }
}

/// The endpoint's answer to an [`Outgoing`] message.
#[derive(Clone, Debug, PartialEq)]
pub enum Reply {
    /// The answer to a report.
    Report(ReportResponse),
    /// The run's state after a host's message.
    Run(RunView),
    /// Stored (a profile, a trial's end).
    Stored,
}

impl Endpoint {
    /// Sends one spooled message.
    pub fn send(&self, m: &Outgoing) -> Result<Reply, HttpError> {
        match m {
            Outgoing::Report(r) => self.report(r).map(Reply::Report),
            Outgoing::Profile { job_id, profile } => {
                self.post_profile(job_id, profile).map(|()| Reply::Stored)
            }
            Outgoing::EndTrial(t) => self.end_trial(t).map(|()| Reply::Stored),
            Outgoing::Run {
                job_id,
                run_id,
                action,
                body,
            } => self.run_call(job_id, run_id, *action, body).map(Reply::Run),
        }
    }
}

/// What the reporter tells the main loop about one message.
#[derive(Debug)]
pub struct Delivered {
    /// The message.
    pub message: Outgoing,
    /// The endpoint's answer, or why it was given up (not retryable).
    pub answer: Result<Reply, String>,
}

/// How long delivering may go on once the agent got SIGINT, SIGTERM or SIGHUP
/// (what is left stays in the spool for the next run).
pub const AFTER_SIGNAL: Duration = Duration::from_secs(1);

/// The spool: the messages not yet answered, in order, mirrored in a file (one
/// JSON line each; a line a newer agent wrote and this one cannot read is skipped).
struct Spool {
    path: PathBuf,
    queue: VecDeque<Outgoing>,
}

impl Spool {
    fn load(path: PathBuf) -> Spool {
        let queue = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| {
                // Older agents spooled bare reports.
                serde_json::from_str(l)
                    .or_else(|_| serde_json::from_str(l).map(Outgoing::Report))
                    .ok()
            })
            .collect();
        Spool { path, queue }
    }

    /// Appends `m` to the file, then to the queue.
    fn push(&mut self, m: Outgoing) {
        if let Ok(mut line) = serde_json::to_vec(&m) {
            line.push(b'\n');
            let appended = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .and_then(|mut f| f.write_all(&line));
            if let Err(e) = appended {
                crate::log::log(format!(
                    "cannot spool {} to {}: {e}",
                    m.what(),
                    self.path.display()
                ));
            }
        }
        self.queue.push_back(m);
    }

    /// Removes the first message (the file is rewritten, or removed once empty).
    fn pop(&mut self) {
        self.queue.pop_front();
        if self.queue.is_empty() {
            let _ = std::fs::remove_file(&self.path);
            return;
        }
        let mut body = Vec::new();
        for m in &self.queue {
            if let Ok(line) = serde_json::to_string(m) {
                let _ = writeln!(body, "{line}");
            }
        }
        let tmp = self.path.with_extension("tmp");
        if std::fs::write(&tmp, body).is_ok() {
            let _ = std::fs::rename(&tmp, &self.path);
        }
    }
}

type Shared = Arc<Mutex<Spool>>;

fn lock(spool: &Shared) -> std::sync::MutexGuard<'_, Spool> {
    spool.lock().unwrap_or_else(|e| e.into_inner())
}

/// Messages to the reporter thread.
enum ToReporter {
    /// A message was spooled.
    Wake,
    /// Deliver what is left until this instant, then end.
    Finish(Instant),
}

/// A background sender of the endpoint's messages through a spool file: sending
/// never blocks on the network, and what is not delivered stays in the file.
pub struct Reporter {
    tx: Sender<ToReporter>,
    rx: Receiver<Delivered>,
    spool: Shared,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Reporter {
    /// Starts the reporter; messages still in `spool` (from an earlier agent) are
    /// sent first.
    pub fn start(endpoint: Endpoint, spool: PathBuf) -> Reporter {
        let (tx, thread_rx) = std::sync::mpsc::channel();
        let (thread_tx, rx) = std::sync::mpsc::channel();
        let spool = Arc::new(Mutex::new(Spool::load(spool)));
        let shared = spool.clone();
        let thread = std::thread::spawn(move || deliver(endpoint, shared, thread_rx, thread_tx));
        Reporter {
            tx,
            rx,
            spool,
            thread: Some(thread),
        }
    }

    /// Spools a message (written to the file before this returns; never waits
    /// for the endpoint).
    pub fn send(&self, m: Outgoing) {
        lock(&self.spool).push(m);
        let _ = self.tx.send(ToReporter::Wake);
    }

    /// Answers received so far.
    pub fn answers(&self) -> Vec<Delivered> {
        self.rx.try_iter().collect()
    }

    /// Delivers what is left until `deadline` (at most [`AFTER_SIGNAL`] once the
    /// agent got a termination signal), then returns whatever the endpoint does:
    /// the answers that came meanwhile and how many messages stay in the spool
    /// file. A request still hanging is left behind (the message stays spooled).
    pub fn finish(mut self, deadline: Instant) -> (Vec<Delivered>, usize) {
        let _ = self.tx.send(ToReporter::Finish(deadline));
        let mut answers = Vec::new();
        let mut until = deadline;
        let mut signal_seen = false;
        loop {
            if !signal_seen && crate::run::child::signalled().is_some() {
                signal_seen = true;
                until = until.min(Instant::now() + AFTER_SIGNAL);
            }
            let finished = self.thread.as_ref().is_none_or(|t| t.is_finished());
            answers.extend(self.rx.try_iter());
            if finished {
                if let Some(t) = self.thread.take() {
                    let _ = t.join();
                }
                answers.extend(self.rx.try_iter());
                break;
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            std::thread::sleep((until - now).min(Duration::from_millis(10)));
        }
        let left = lock(&self.spool).queue.len();
        (answers, left)
    }
}

/// 64 random bits for the back-off's jitter (the OS's; the clock's nanoseconds
/// should that fail).
fn entropy() -> u64 {
    let mut buf = [0u8; 8];
    match getrandom::getrandom(&mut buf) {
        Ok(()) => u64::from_le_bytes(buf),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos().into())
            .unwrap_or(0),
    }
}

/// The reporter thread: sends the spool's first message until the endpoint
/// answers it (backing off while it is unreachable or answers 5xx), in order;
/// once told to finish, until the spool is empty or the deadline passes. Returns
/// the number of messages left in the spool.
///
/// An endpoint older than the agent refuses a message's energy bound (a 422
/// naming [`BOUND_FIELD`]): the message goes again without its bounds, and so do
/// the ones after it, rather than be lost.
fn deliver(
    endpoint: Endpoint,
    spool: Shared,
    rx: Receiver<ToReporter>,
    tx: Sender<Delivered>,
) -> usize {
    let mut news = News { rx, deadline: None };
    let mut without_bounds = false;
    loop {
        let next = lock(&spool).queue.front().cloned();
        if news.over(next.is_none()) {
            return lock(&spool).queue.len();
        }
        let Some(next) = next else {
            // Nothing to send: wait for a message or the end.
            news.wait(None);
            continue;
        };
        // A back-off cut short (told to finish, or the deadline passed) gives up
        // this round; the next starts the back-off afresh, or ends.
        let plain = next.without_bounds();
        let sent = plain.as_ref().filter(|_| without_bounds).unwrap_or(&next);
        let answer = retry(
            Backoff::CLIENT,
            || endpoint.send(sent),
            |e, delay| e.retryable() && news.wait(Some(Duration::from_millis(delay.ms(entropy())))),
        );
        if matches!(&answer, Err(e) if e.retryable()) {
            continue;
        }
        if !without_bounds
            && plain.is_some()
            && matches!(&answer, Err(e) if e.refuses_field(BOUND_FIELD))
        {
            without_bounds = true;
            crate::log::log(format!(
                "the endpoint refused the energy bound of {} (it is older than this agent): \
                 sending it and what follows without bounds",
                next.what()
            ));
            continue;
        }
        lock(&spool).pop();
        let _ = tx.send(Delivered {
            message: next,
            answer: answer.map_err(|e| e.to_string()),
        });
    }
}

/// What the reporter thread hears from the agent while it waits.
struct News {
    rx: Receiver<ToReporter>,
    /// Once told to finish: when delivering ends.
    deadline: Option<Instant>,
}

impl News {
    /// Whether delivering is over: told to finish, and the spool is `empty` or
    /// the deadline passed.
    fn over(&self, empty: bool) -> bool {
        self.deadline.is_some_and(|d| empty || Instant::now() >= d)
    }

    /// Waits `backoff` (or, without one, until a message is spooled) and the
    /// deadline at most. True when the back-off was waited out; false when it
    /// was cut short: told to finish (send again now), or the deadline passed.
    fn wait(&mut self, backoff: Option<Duration>) -> bool {
        const IDLE: Duration = Duration::from_secs(3600);
        let start = Instant::now();
        let until = start + backoff.unwrap_or(IDLE);
        loop {
            let now = Instant::now();
            let end = self.deadline.map_or(until, |d| until.min(d));
            if now >= end {
                return now >= until;
            }
            match self.rx.recv_timeout(end - now) {
                Ok(ToReporter::Wake) if backoff.is_none() => return false,
                Ok(ToReporter::Wake) | Err(RecvTimeoutError::Timeout) => {}
                Ok(ToReporter::Finish(d)) => {
                    self.deadline = Some(d);
                    return false;
                }
                // The agent is gone: end now, or once the deadline passes.
                Err(RecvTimeoutError::Disconnected) => match self.deadline {
                    None => {
                        self.deadline = Some(now);
                        return false;
                    }
                    Some(_) => std::thread::sleep(end - now),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Read};

    fn report(epoch: u32) -> Outgoing {
        Outgoing::Report(TrainingResult {
            job_id: "j".into(),
            batch_size: 8,
            trial_number: 1,
            time: f64::from(epoch),
            energy: 1.0,
            metric: 0.1,
            current_epoch: epoch,
            energy_uncertainty_j: None,
        })
    }

    /// Reports epochs 1 to 3 of one trial.
    fn send_three_epochs(reporter: &Reporter) {
        for epoch in 1..=3 {
            reporter.send(report(epoch));
        }
    }

    /// The end of a run: the profile and the trial's end.
    fn the_end() -> [Outgoing; 2] {
        [
            Outgoing::Profile {
                job_id: "j".into(),
                profile: PowerProfile {
                    batch_size: 8,
                    phase: wattwise_core::wire::Phase::Train,
                    gpu_model: "Fake GPU".into(),
                    measurements: Vec::new(),
                    uncertain: Vec::new(),
                },
            },
            Outgoing::EndTrial(TrialId {
                job_id: "j".into(),
                batch_size: 8,
                trial_number: 1,
            }),
        ]
    }

    fn spool_path(name: &str) -> PathBuf {
        let p = std::env::temp_dir().join(format!("wattwise-spool-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&p);
        p
    }

    fn spooled(path: &std::path::Path) -> Vec<Outgoing> {
        Spool::load(path.to_path_buf()).queue.into()
    }

    #[test]
    fn every_call_is_a_row_of_the_table() {
        // Each route the client calls, with the ids it passes: its method and path
        // come from the core's table and lead back to the same route.
        let one: &[&str] = &["ag:1"];
        let two: &[&str] = &["ag:1", "r 1/x"];
        let calls = [
            (Route::RegisterJob, &[][..]),
            (Route::NextTrial, &[]),
            (Route::Report, &[]),
            (Route::EndTrial, &[]),
            (Route::Profiles, one),
            (Route::AddProfile, one),
            (Route::JoinRun, one),
            (Route::RunHeartbeat, two),
            (RunAction::Profile.route(), two),
            (RunAction::Report.route(), two),
            (RunAction::Done.route(), two),
        ];
        for (called, ids) in calls {
            let (method, path) = route::request_line(called, ids).expect("a row of the table");
            let found = route::find(method, &path).expect("a route of the table");
            assert_eq!(found.def.endpoint, called, "{method} {path}");
        }
        assert_eq!(
            route::request_line(Route::RunReport, &["ag:1", "r:1"]).unwrap(),
            ("POST", "/jobs/ag%3A1/runs/r%3A1/report".to_string())
        );
        assert_eq!(route::encode_segment("a b/c&d"), "a%20b%2Fc%26d");
    }

    #[test]
    fn retryable_is_no_answer_or_server_trouble() {
        let status = |status| HttpError::Status {
            method: "POST",
            path: "/report".into(),
            status,
            body: String::new(),
        };
        assert!(status(503).retryable());
        assert!(status(429).retryable());
        assert!(!status(404).retryable());
        assert!(!status(422).retryable());
        assert!(HttpError::Unreachable {
            url: "u".into(),
            reason: "r".into()
        }
        .retryable());
    }

    #[test]
    fn the_debug_form_hides_the_token() {
        let e = Endpoint::new("http://x/", Some("s3cret".into()), Duration::from_secs(1));
        assert!(!format!("{e:?}").contains("s3cret"));
        assert_eq!(e.base, "http://x");
    }

    #[test]
    fn unreachable_reports_stay_spooled_in_order() {
        let spool = spool_path("down");
        // A port that was free a moment ago and is closed again: nothing listens.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let ep = Endpoint::new(&url, None, Duration::from_millis(200));
        let reporter = Reporter::start(ep, spool.clone());
        send_three_epochs(&reporter);
        let (answers, left) = reporter.finish(Instant::now() + Duration::from_millis(300));
        assert!(answers.is_empty());
        assert_eq!(left, 3);
        assert_eq!(spooled(&spool), vec![report(1), report(2), report(3)]);
        let _ = std::fs::remove_file(spool);
    }

    #[test]
    fn a_spool_of_bare_reports_from_an_older_agent_is_read() {
        let spool = spool_path("old");
        let Outgoing::Report(r) = report(4) else {
            unreachable!()
        };
        let line = serde_json::to_string(&r).unwrap();
        std::fs::write(&spool, format!("{line}\nnot json\n")).unwrap();
        assert_eq!(spooled(&spool), vec![report(4)]);
        let _ = std::fs::remove_file(spool);
    }

    /// A stand-in server that accepts connections and never answers.
    fn hung() -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let mut open = Vec::new();
            for stream in listener.incoming() {
                open.push(stream);
            }
        });
        url
    }

    /// A stand-in server on a free port: `answer` gets each request's method and
    /// path and its body, and returns the status line and the JSON answer.
    fn serve(
        mut answer: impl FnMut(&[&str], &[u8]) -> (&'static str, String) + Send + 'static,
    ) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                reader.read_line(&mut request).unwrap();
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let route: Vec<&str> = request.split_whitespace().take(2).collect();
                let (status, answer) = answer(&route, &body);
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        url
    }

    /// A stand-in server: answers 503 to its first request, then records every
    /// request (method and path, and the epoch of a report) and answers it, with
    /// `stop_train` from the third epoch on.
    fn stand_in() -> (String, Arc<Mutex<Vec<String>>>) {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let mut first = true;
        let url = serve(move |route, body| {
            if first {
                first = false;
                (
                    "503 Service Unavailable",
                    r#"{"message":"later"}"#.to_string(),
                )
            } else if route == ["POST", "/report"] {
                let r: TrainingResult = serde_json::from_slice(body).unwrap();
                log.lock()
                    .unwrap()
                    .push(format!("report {}", r.current_epoch));
                let stop = r.current_epoch >= 3;
                (
                    "200 OK",
                    format!(r#"{{"stop_train":{stop},"converged":{stop},"message":"m"}}"#),
                )
            } else {
                log.lock().unwrap().push(route.join(" "));
                ("200 OK", "{}".to_string())
            }
        });
        (url, seen)
    }

    /// A host's report as an endpoint older than energy bounds reads it: no
    /// unknown field.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct OldHostReport {
        host_rank: i64,
        time: f64,
        energy: f64,
        metric: f64,
        current_epoch: u32,
    }

    /// A host's report of `epoch` to run `r`, with its energy bound.
    fn host_report(epoch: u32) -> Outgoing {
        let report = wattwise_core::runs::HostReport {
            host_rank: 1,
            time: f64::from(epoch),
            energy: 10.0 * f64::from(epoch),
            metric: 0.5,
            current_epoch: epoch,
            energy_uncertainty_j: Some(0.1),
        };
        Outgoing::Run {
            job_id: "j".into(),
            run_id: "r".into(),
            action: RunAction::Report,
            body: serde_json::to_value(report).unwrap(),
        }
    }

    #[test]
    fn an_endpoint_older_than_energy_bounds_gets_the_reports_without_them() {
        // Before energy bounds, the endpoint refused a host report's unknown
        // field (422 naming it, as its body parser words it).
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        let url = serve(move |route, body| {
            let text = String::from_utf8_lossy(body).into_owned();
            log.lock().unwrap().push(text);
            assert_eq!(route, ["POST", "/jobs/j/runs/r/report"]);
            match serde_json::from_slice::<OldHostReport>(body) {
                Err(e) => (
                    "422 Unprocessable Entity",
                    serde_json::json!({"field": "energy_uncertainty_j", "message": e.to_string()})
                        .to_string(),
                ),
                Ok(r) => (
                    "200 OK",
                    serde_json::json!({
                        "job_id": "j", "run_id": "r", "trial_number": 1, "batch_size": 8,
                        "hosts": 2, "joined": 2, "status": "running", "stop_train": false,
                        "converged": false, "message": "", "power_limit": 300, "profiled": 2,
                        "reported_epoch": r.current_epoch, "epochs": [],
                    })
                    .to_string(),
                ),
            }
        });
        let spool = spool_path("old-endpoint");
        let reporter = Reporter::start(
            Endpoint::new(&url, None, Duration::from_secs(5)),
            spool.clone(),
        );
        reporter.send(host_report(1));
        reporter.send(host_report(2));
        let (answers, left) = reporter.finish(Instant::now() + Duration::from_secs(10));
        assert_eq!(left, 0);
        // Both epochs arrived, neither lost: the first once more without its
        // bound, the second without it straight away.
        let epochs: Vec<u32> = answers
            .iter()
            .map(|d| match &d.answer {
                Ok(Reply::Run(v)) => v.reported_epoch,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(epochs, [1, 2]);
        let bodies = seen.lock().unwrap().clone();
        assert_eq!(bodies.len(), 3, "{bodies:?}");
        assert!(bodies[0].contains(BOUND_FIELD), "{bodies:?}");
        assert!(
            bodies[1..].iter().all(|b| !b.contains(BOUND_FIELD)),
            "{bodies:?}"
        );
        let _ = std::fs::remove_file(spool);
    }

    #[test]
    fn messages_without_bounds_are_left_as_they_are() {
        assert_eq!(report(1).without_bounds(), None);
        assert_eq!(
            Outgoing::EndTrial(TrialId {
                job_id: "j".into(),
                batch_size: 8,
                trial_number: 1
            })
            .without_bounds(),
            None
        );
        let Some(Outgoing::Run { body, .. }) = host_report(1).without_bounds() else {
            panic!("a host report with a bound")
        };
        assert!(
            body.get(BOUND_FIELD).is_none() && body["current_epoch"] == 1,
            "{body}"
        );
        let bounded = Outgoing::Report(TrainingResult {
            energy_uncertainty_j: Some(1.0),
            ..match report(1) {
                Outgoing::Report(r) => r,
                _ => unreachable!(),
            }
        });
        assert_eq!(bounded.without_bounds(), Some(report(1)));
    }

    #[test]
    fn reports_arrive_in_order_after_a_503_and_the_stop_comes_back() {
        let (url, seen) = stand_in();
        let spool = spool_path("ok");
        let reporter = Reporter::start(
            Endpoint::new(&url, None, Duration::from_secs(5)),
            spool.clone(),
        );
        send_three_epochs(&reporter);
        let (answers, left) = reporter.finish(Instant::now() + Duration::from_secs(10));
        assert_eq!(left, 0);
        assert_eq!(*seen.lock().unwrap(), ["report 1", "report 2", "report 3"]);
        let stops: Vec<bool> = answers
            .iter()
            .map(|d| match &d.answer {
                Ok(Reply::Report(r)) => r.stop_train,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(stops, vec![false, false, true]);
        assert!(!spool.exists(), "a delivered spool is removed");
    }

    #[test]
    fn a_hung_endpoint_delays_finish_only_to_its_deadline_and_the_next_reporter_replays_all() {
        let spool = spool_path("hung");
        // The endpoint's own timeout (30 s) is far beyond the deadline.
        let reporter = Reporter::start(
            Endpoint::new(&hung(), None, Duration::from_secs(30)),
            spool.clone(),
        );
        send_three_epochs(&reporter);
        for m in the_end() {
            reporter.send(m);
        }
        let t = Instant::now();
        let (answers, left) = reporter.finish(Instant::now() + Duration::from_millis(300));
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        assert!(answers.is_empty());
        assert_eq!(left, 5);
        let [profile, end] = the_end();
        let all = vec![report(1), report(2), report(3), profile, end];
        assert_eq!(spooled(&spool), all);
        // A later agent against a working endpoint delivers all of it, in order.
        let (url, seen) = stand_in();
        let replay = Reporter::start(
            Endpoint::new(&url, None, Duration::from_secs(5)),
            spool.clone(),
        );
        let (answers, left) = replay.finish(Instant::now() + Duration::from_secs(10));
        assert_eq!(left, 0);
        assert_eq!(
            answers.into_iter().map(|d| d.message).collect::<Vec<_>>(),
            all
        );
        assert_eq!(
            *seen.lock().unwrap(),
            [
                "report 1",
                "report 2",
                "report 3",
                "POST /jobs/j/profiles",
                "PATCH /trials"
            ]
        );
        assert!(!spool.exists());
    }
}
