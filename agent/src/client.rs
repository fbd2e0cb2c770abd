//! The endpoint client: Zeus's routes over blocking HTTP, and the reporter that
//! never blocks training: every report is spooled to a file first, then sent in
//! order with backoff while the endpoint is unreachable or answers 5xx.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;
use wattwise_core::retry::Backoff;
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

fn encode_query(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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

    fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&impl Serialize>,
    ) -> Result<T, HttpError> {
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
        self.call("POST", "/jobs", Some(spec))
    }

    /// `GET /jobs/batch_size`: the batch size of this run.
    pub fn batch_size(&self, job_id: &str) -> Result<TrialId, HttpError> {
        let path = format!("/jobs/batch_size?job_id={}", encode_query(job_id));
        self.call("GET", &path, None::<&()>)
    }

    /// `POST /report`.
    pub fn report(&self, result: &TrainingResult) -> Result<ReportResponse, HttpError> {
        self.call("POST", "/report", Some(result))
    }

    /// `PATCH /trials`: ends the trial.
    pub fn end_trial(&self, trial: &TrialId) -> Result<(), HttpError> {
        let _: serde_json::Value = self.call("PATCH", "/trials", Some(trial))?;
        Ok(())
    }

    /// `GET /jobs/{id}/profiles`.
    pub fn profiles(&self, job_id: &str) -> Result<Vec<PowerProfile>, HttpError> {
        let path = format!("/jobs/{}/profiles", encode_query(job_id));
        self.call("GET", &path, None::<&()>)
    }

    /// `POST /jobs/{id}/profiles`.
    pub fn post_profile(&self, job_id: &str, profile: &PowerProfile) -> Result<(), HttpError> {
        let path = format!("/jobs/{}/profiles", encode_query(job_id));
        let _: serde_json::Value = self.call("POST", &path, Some(profile))?;
        Ok(())
    }

    /// `POST /jobs/{id}/runs`: joins (or opens) a run across hosts.
    pub fn join_run(&self, job_id: &str, join: &JoinRun) -> Result<RunView, HttpError> {
        let path = format!("/jobs/{}/runs", encode_query(job_id));
        self.call("POST", &path, Some(join))
    }

    /// `POST /jobs/{id}/runs/{run}/{action}`: one host's message to its run
    /// (`heartbeat`, `profile`, `report`, `done`).
    pub fn run_call(
        &self,
        job_id: &str,
        run_id: &str,
        action: &str,
        body: &impl Serialize,
    ) -> Result<RunView, HttpError> {
        let path = format!(
            "/jobs/{}/runs/{}/{action}",
            encode_query(job_id),
            encode_query(run_id)
        );
        self.call("POST", &path, Some(body))
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
        let mut retry = 0;
        loop {
            retry += 1;
            let backoff = Duration::from_millis(Backoff::CLIENT.delay_ms(retry, entropy()));
            match f(self) {
                Err(e) if e.retryable() && start.elapsed() + backoff < patience => {
                    if crate::child::signalled().is_some() {
                        return Err(e);
                    }
                    std::thread::sleep(backoff);
                }
                other => return other,
            }
        }
    }
}

/// What the reporter tells the main loop about one report.
#[derive(Debug)]
pub struct Delivered {
    /// The epoch reported.
    pub epoch: u32,
    /// The endpoint's answer, or why it was given up (not retryable).
    pub answer: Result<ReportResponse, String>,
}

/// Messages to the reporter thread.
enum ToReporter {
    Report(TrainingResult),
    /// Deliver what is left within this time, then end.
    Finish(Duration),
}

/// A background sender of reports with a spool file.
pub struct Reporter {
    tx: Sender<ToReporter>,
    rx: Receiver<Delivered>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Reporter {
    /// Starts the reporter; reports still in `spool` (from an earlier agent) are
    /// sent first.
    pub fn start(endpoint: Endpoint, spool: PathBuf) -> Reporter {
        let (tx, thread_rx) = std::sync::mpsc::channel();
        let (thread_tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || deliver(endpoint, spool, thread_rx, thread_tx));
        Reporter {
            tx,
            rx,
            thread: Some(thread),
        }
    }

    /// Queues a report (never blocks).
    pub fn send(&self, result: TrainingResult) {
        let _ = self.tx.send(ToReporter::Report(result));
    }

    /// Answers received so far.
    pub fn answers(&self) -> Vec<Delivered> {
        self.rx.try_iter().collect()
    }

    /// Delivers what is left within `patience`; returns the answers that came
    /// meanwhile and how many reports stay in the spool file.
    pub fn finish(mut self, patience: Duration) -> (Vec<Delivered>, usize) {
        let _ = self.tx.send(ToReporter::Finish(patience));
        let left = self.thread.take().and_then(|t| t.join().ok()).unwrap_or(0);
        (self.rx.try_iter().collect(), left)
    }
}

fn load_spool(path: &Path) -> VecDeque<TrainingResult> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn save_spool(path: &Path, queue: &VecDeque<TrainingResult>) {
    if queue.is_empty() {
        let _ = std::fs::remove_file(path);
        return;
    }
    let mut body = Vec::new();
    for r in queue {
        if let Ok(line) = serde_json::to_string(r) {
            let _ = writeln!(body, "{line}");
        }
    }
    let tmp = path.with_extension("tmp");
    if std::fs::write(&tmp, body).is_ok() {
        let _ = std::fs::rename(&tmp, path);
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

/// The reporter thread: returns the number of reports left undelivered.
fn deliver(
    endpoint: Endpoint,
    spool: PathBuf,
    rx: Receiver<ToReporter>,
    tx: Sender<Delivered>,
) -> usize {
    let mut queue = load_spool(&spool);
    let mut backoff = Duration::ZERO;
    let mut retry = 0;
    let mut deadline: Option<Instant> = None;
    loop {
        // Wait for news while there is nothing to send or we are backing off.
        let wait = if queue.is_empty() {
            if deadline.is_some() {
                return 0;
            }
            Duration::from_secs(3600)
        } else {
            backoff
        };
        let msg = if wait.is_zero() {
            rx.try_recv().map_err(|_| RecvTimeoutError::Timeout)
        } else {
            rx.recv_timeout(wait)
        };
        match msg {
            Ok(ToReporter::Report(r)) => {
                queue.push_back(r);
                save_spool(&spool, &queue);
                continue;
            }
            Ok(ToReporter::Finish(patience)) => {
                deadline = Some(Instant::now() + patience);
                (backoff, retry) = (Duration::ZERO, 0);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) if deadline.is_none() => {
                deadline = Some(Instant::now());
            }
            Err(_) => {}
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return queue.len();
        }
        let Some(next) = queue.front() else { continue };
        match endpoint.report(next) {
            Err(e) if e.retryable() => {
                retry += 1;
                backoff = Duration::from_millis(Backoff::CLIENT.delay_ms(retry, entropy()));
                if let Some(d) = deadline {
                    backoff = backoff.min(d.saturating_duration_since(Instant::now()));
                }
            }
            answer => {
                (backoff, retry) = (Duration::ZERO, 0);
                let epoch = next.current_epoch;
                queue.pop_front();
                save_spool(&spool, &queue);
                let _ = tx.send(Delivered {
                    epoch,
                    answer: answer.map_err(|e| e.to_string()),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports epochs 1 to 3 of one trial.
    fn send_three_epochs(reporter: &Reporter) {
        for epoch in 1..=3 {
            reporter.send(TrainingResult {
                job_id: "j".into(),
                batch_size: 8,
                trial_number: 1,
                time: f64::from(epoch),
                energy: 1.0,
                metric: 0.1,
                current_epoch: epoch,
            });
        }
    }

    #[test]
    fn queries_are_percent_encoded() {
        assert_eq!(encode_query("a b/c&d"), "a%20b%2Fc%26d");
        assert_eq!(encode_query("job-1_x.y~"), "job-1_x.y~");
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
        let spool = std::env::temp_dir().join(format!("wattwise-spool-{}", std::process::id()));
        let _ = std::fs::remove_file(&spool);
        // A port that was free a moment ago and is closed again: nothing listens.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let url = format!("http://127.0.0.1:{port}");
        let ep = Endpoint::new(&url, None, Duration::from_millis(200));
        let reporter = Reporter::start(ep, spool.clone());
        send_three_epochs(&reporter);
        let (answers, left) = reporter.finish(Duration::from_millis(300));
        assert!(answers.is_empty());
        assert_eq!(left, 3);
        let kept = load_spool(&spool);
        assert_eq!(
            kept.iter().map(|r| r.current_epoch).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        let _ = std::fs::remove_file(spool);
    }

    /// A one-route stand-in server: answers `POST /report` with `stop_train` from
    /// the third epoch on, 503 to the first attempt, and records the epochs.
    fn stand_in() -> (String, std::sync::Arc<std::sync::Mutex<Vec<u32>>>) {
        use std::io::{BufRead, BufReader, Read};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let mut first = true;
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
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
                let (status, answer) = if first {
                    first = false;
                    (
                        "503 Service Unavailable",
                        r#"{"message":"later"}"#.to_string(),
                    )
                } else {
                    let r: TrainingResult = serde_json::from_slice(&body).unwrap();
                    log.lock().unwrap().push(r.current_epoch);
                    let stop = r.current_epoch >= 3;
                    (
                        "200 OK",
                        format!(r#"{{"stop_train":{stop},"converged":{stop},"message":"m"}}"#),
                    )
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        (url, seen)
    }

    #[test]
    fn reports_arrive_in_order_after_a_503_and_the_stop_comes_back() {
        let (url, seen) = stand_in();
        let spool = std::env::temp_dir().join(format!("wattwise-spool-ok-{}", std::process::id()));
        let _ = std::fs::remove_file(&spool);
        let reporter = Reporter::start(
            Endpoint::new(&url, None, Duration::from_secs(5)),
            spool.clone(),
        );
        send_three_epochs(&reporter);
        let (answers, left) = reporter.finish(Duration::from_secs(10));
        assert_eq!(left, 0);
        assert_eq!(*seen.lock().unwrap(), vec![1, 2, 3]);
        let stops: Vec<(u32, bool)> = answers
            .iter()
            .map(|d| (d.epoch, d.answer.as_ref().unwrap().stop_train))
            .collect();
        assert_eq!(stops, vec![(1, false), (2, false), (3, true)]);
        assert!(!spool.exists(), "a delivered spool is removed");
    }
}
