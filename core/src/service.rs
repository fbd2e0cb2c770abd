//! The HTTP service every host runs, over a [`Store`].
//!
//! A host turns its request into a [`Request`], calls [`Service::handle`] with its
//! store and a [`HostEnv`] (clock, entropy, back-off), and turns the [`Response`]
//! back. Routing, auth, limits, the read-modify-write loop and every answer are
//! decided here, so the local server, the Lambda function and the Worker cannot
//! drift apart. Nothing here does I/O: the store's futures do.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{self, ApiError, Change, Ctx, Outcome, PowerProfile, TrainingResult, TrialId};
use crate::job::{JobSpec, JobState};
use crate::multihost::{self, HostCall, HostMessage, HostProfile, HostReport, JoinRun};
use crate::trial::Trial;

/// A stored job document and its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The document.
    pub state: JobState,
    /// Its version: 1 when created, +1 per write.
    pub version: u64,
}

/// The result of a conditional write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Saved {
    /// Written.
    Ok,
    /// The stored version was not the expected one (or the job exists, on create): nothing written.
    Conflict,
}

/// Where job documents and archived trials live.
///
/// `save` with `expected_version: None` creates the job (Conflict if it exists);
/// with `Some(v)` it replaces the document only if the stored version is still `v`
/// (the new version is `v + 1`). `archive` holds finished trials leaving the
/// document: the store appends them, idempotently by trial number, in the same
/// atomic write where it can, else before the document.
pub trait Store {
    /// The store's error.
    type Error: std::fmt::Display;
    /// Loads a job document.
    fn load(&self, job_id: &str) -> impl Future<Output = Result<Option<Stored>, Self::Error>>;
    /// Writes a job document if its version is as expected.
    fn save(
        &self,
        job_id: &str,
        state: &JobState,
        expected_version: Option<u64>,
        archive: &[Trial],
    ) -> impl Future<Output = Result<Saved, Self::Error>>;
    /// Deletes the document and its archived trials if the version is still `expected_version`.
    fn delete(
        &self,
        job_id: &str,
        expected_version: u64,
    ) -> impl Future<Output = Result<Saved, Self::Error>>;
    /// The job's archived trials, in any order.
    fn archived_trials(
        &self,
        job_id: &str,
    ) -> impl Future<Output = Result<Vec<Trial>, Self::Error>>;
    /// One archived trial, by number. A late report looks its trial up with this,
    /// so a store should answer it without reading the whole archive; the default does.
    fn archived_trial(
        &self,
        job_id: &str,
        trial_number: u64,
    ) -> impl Future<Output = Result<Option<Trial>, Self::Error>> {
        async move {
            Ok(self
                .archived_trials(job_id)
                .await?
                .into_iter()
                .find(|t| t.trial_number == trial_number))
        }
    }
    /// The stored document's version, without parsing the document, so a job whose
    /// document no longer parses can still be deleted. The default parses it.
    fn version(&self, job_id: &str) -> impl Future<Output = Result<Option<u64>, Self::Error>> {
        async move { Ok(self.load(job_id).await?.map(|s| s.version)) }
    }
    /// Whether the store takes writes now (`/healthz` answers 503 with the error when
    /// not). It must not wait behind another writer. The default says yes.
    fn writable(&self) -> impl Future<Output = Result<(), Self::Error>> {
        async { Ok(()) }
    }
}

/// What a host provides besides the store.
pub trait HostEnv {
    /// Now, Unix milliseconds.
    fn now_ms(&mut self) -> i64;
    /// 64 fresh random bits.
    fn entropy(&mut self) -> u64;
    /// Waits `ms` milliseconds before retrying a conflicted write (hosts without a
    /// timer may return at once).
    fn backoff(&mut self, ms: u64) -> impl Future<Output = ()>;
}

/// Service settings.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// When set, every route but `/healthz` needs `Authorization: Bearer <token>`.
    pub token: Option<String>,
    /// Largest request body accepted (413 above).
    pub max_body_bytes: usize,
    /// Conflicted writes retried before answering 503.
    pub max_retries: u32,
}

impl ServiceConfig {
    /// The checks every route but `/healthz` passes first: the bearer token (compared
    /// in constant time) and the body limit. The error is the service's answer.
    pub fn admit(&self, req: &Request<'_>) -> Result<(), ApiError> {
        if let Some(token) = &self.token {
            let given = req.authorization.and_then(bearer_token).unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::Unauthorized);
            }
        }
        if req.body.len() > self.max_body_bytes {
            return Err(ApiError::TooLarge(self.max_body_bytes));
        }
        Ok(())
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            token: None,
            max_body_bytes: 64 * 1024,
            max_retries: 64,
        }
    }
}

/// The token of an `Authorization: Bearer <token>` header. The scheme is
/// case-insensitive and may be followed by any run of spaces or tabs (RFC 9110).
fn bearer_token(header: &str) -> Option<&str> {
    let header = header.trim();
    let (scheme, rest) = header.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case("bearer") || !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim_start_matches([' ', '\t']))
}

/// An HTTP request, as the host received it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string without `?` (empty if none).
    pub query: &'a str,
    /// The `Authorization` header, if any.
    pub authorization: Option<&'a str>,
    /// The body.
    pub body: &'a [u8],
}

impl Request<'_> {
    /// The job this request is about, read where the service reads it: the path
    /// segment of `/jobs/{job_id}...`, the percent-decoded `job_id` query parameter of
    /// `GET /jobs/batch_size` and `DELETE /jobs`, or the `job_id` field of the JSON body
    /// of `POST /jobs`, `POST /report` and `PATCH /trials`. `None` when the request
    /// names no job this way: a health check, the OpenAPI document, a registration
    /// whose id is generated, an unknown route or method, a malformed query or body.
    /// A host that shards its store by job (the Worker's Durable Objects) sends the
    /// request to this job's shard, so one job can never reach two shards.
    pub fn job_id(&self) -> Option<String> {
        let segments: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let id = match (segments.as_slice(), self.method) {
            (["jobs"], "DELETE") | (["jobs", "batch_size"], "GET") => {
                query_param(self.query, "job_id").ok()??
            }
            (["jobs"], "POST") | (["report"], "POST") | (["trials"], "PATCH") => {
                let body: serde_json::Value = serde_json::from_slice(self.body).ok()?;
                body.as_object()?.get("job_id")?.as_str()?.to_string()
            }
            (["jobs", "batch_size"], _) => return None,
            (["jobs", id], "GET")
            | (["jobs", id, "trials"], "GET")
            | (["jobs", id, "profiles"], "GET" | "POST")
            | (["jobs", id, "runs"], "POST")
            | (["jobs", id, "runs", _], "GET")
            | (["jobs", id, "runs", _, "heartbeat" | "profile" | "report" | "done"], "POST") => {
                id.to_string()
            }
            _ => return None,
        };
        (!id.is_empty()).then_some(id)
    }
}

/// An HTTP response for the host to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

const JSON: &str = "application/json";
const CSV: &str = "text/csv; charset=utf-8";

impl Response {
    fn json<T: Serialize>(status: u16, body: &T) -> Self {
        let body = serde_json::to_vec(body).unwrap_or_else(|_| b"null".to_vec());
        Response {
            status,
            content_type: JSON,
            body,
        }
    }

    fn error(e: &ApiError) -> Self {
        Response {
            status: e.status(),
            content_type: JSON,
            body: e.body().into_bytes(),
        }
    }
}

/// The service: a store and its settings.
pub struct Service<S> {
    store: S,
    config: ServiceConfig,
}

/// Decodes `%XX` and `+` in a query component.
fn percent_decode(s: &str) -> Result<String, ApiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| ApiError::BadRequest("query: bad percent-encoding".into()))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("query: not UTF-8".into()))
}

/// The value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Result<Option<String>, ApiError> {
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if percent_decode(k)? == name {
            return percent_decode(v).map(Some);
        }
    }
    Ok(None)
}

fn required_job_id(query: &str) -> Result<String, ApiError> {
    match query_param(query, "job_id")? {
        Some(id) if !id.is_empty() => Ok(id),
        _ => Err(ApiError::Invalid(
            "job_id: query parameter is required".into(),
        )),
    }
}

/// Parses a JSON body; the error names the field (by its path) and what was wrong.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(ApiError::Invalid("body: a JSON object is required".into()));
    }
    // serde reads a struct from an array too (by position); the wire takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::Invalid("body: must be a JSON object".into()));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            ApiError::Invalid(format!("body: {inner}"))
        } else {
            ApiError::Invalid(format!("{path}: {inner}"))
        }
    })?;
    de.end()
        .map_err(|e| ApiError::Invalid(format!("body: {e}")))?;
    Ok(value)
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The trials export: the document's trials and the archived ones, in trial order.
fn merge_trials(state: &JobState, archived: Vec<Trial>) -> Vec<Trial> {
    let mut by_number: BTreeMap<u64, Trial> =
        archived.into_iter().map(|t| (t.trial_number, t)).collect();
    for t in state.trials() {
        by_number.insert(t.trial_number, t.clone());
    }
    by_number.into_values().collect()
}

impl<S: Store> Service<S> {
    /// A service over `store`.
    pub fn new(store: S, config: ServiceConfig) -> Self {
        Service { store, config }
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Answers one request.
    pub async fn handle(&self, req: Request<'_>, env: &mut impl HostEnv) -> Response {
        match self.route(req, env).await {
            Ok(r) => r,
            Err(e) => Response::error(&e),
        }
    }

    async fn route(&self, req: Request<'_>, env: &mut impl HostEnv) -> Result<Response, ApiError> {
        let segments: Vec<&str> = req.path.split('/').filter(|s| !s.is_empty()).collect();
        if segments == ["healthz"] {
            return match req.method {
                "GET" | "HEAD" => match self.store.writable().await {
                    Ok(()) => Ok(Response::json(
                        200,
                        &serde_json::json!({"status": "ok", "writable": true}),
                    )),
                    Err(e) => Err(ApiError::Unavailable(format!("store is not writable: {e}"))),
                },
                m => Err(ApiError::MethodNotAllowed(format!(
                    "method {m} is not allowed on /healthz"
                ))),
            };
        }
        self.config.admit(&req)?;
        let not_allowed = || {
            ApiError::MethodNotAllowed(format!(
                "method {} is not allowed on {}",
                req.method, req.path
            ))
        };
        match segments.as_slice() {
            ["jobs"] => match req.method {
                "POST" => self.register(parse_body(req.body)?, env).await,
                "DELETE" => {
                    let job_id = required_job_id(req.query)?;
                    self.delete(&job_id, env).await?;
                    Ok(Response::json(200, &()))
                }
                _ => Err(not_allowed()),
            },
            ["jobs", "batch_size"] => match req.method {
                "GET" => {
                    let job_id = required_job_id(req.query)?;
                    let trial = self
                        .transact(&job_id, env, |cur, ctx| api::predict(&job_id, cur, ctx))
                        .await?;
                    Ok(Response::json(200, &trial.body))
                }
                _ => Err(not_allowed()),
            },
            ["report"] => match req.method {
                "POST" => {
                    let result: TrainingResult = parse_body(req.body)?;
                    self.report(&result, env).await
                }
                _ => Err(not_allowed()),
            },
            ["trials"] => match req.method {
                "PATCH" => {
                    let trial: TrialId = parse_body(req.body)?;
                    self.transact(&trial.job_id, env, |cur, ctx| {
                        api::end_trial(&trial, cur, ctx)
                    })
                    .await?;
                    Ok(Response::json(200, &()))
                }
                _ => Err(not_allowed()),
            },
            ["openapi.json"] => match req.method {
                "GET" => Ok(Response::json(200, &crate::openapi::document())),
                _ => Err(not_allowed()),
            },
            ["jobs", job_id] => match req.method {
                "GET" => Ok(Response::json(
                    200,
                    &self.load_required(job_id).await?.state,
                )),
                _ => Err(not_allowed()),
            },
            ["jobs", job_id, "trials"] => match req.method {
                "GET" => self.export_trials(job_id, req.query).await,
                _ => Err(not_allowed()),
            },
            ["jobs", job_id, "runs"] => match req.method {
                "POST" => {
                    let join: JoinRun = parse_body(req.body)?;
                    join.validate()?;
                    let out = self
                        .transact(job_id, env, |cur, ctx| {
                            multihost::join(job_id, &join, cur, ctx)
                        })
                        .await?;
                    Ok(Response::json(out.status, &out.body))
                }
                _ => Err(not_allowed()),
            },
            ["jobs", job_id, "runs", run_id] => match req.method {
                "GET" => {
                    let stored = self.load_required(job_id).await?;
                    let view = multihost::view(job_id, run_id, Some(&stored.state), env.now_ms())?;
                    Ok(Response::json(200, &view))
                }
                _ => Err(not_allowed()),
            },
            ["jobs", job_id, "runs", run_id, action @ ("heartbeat" | "profile" | "report" | "done")] =>
            {
                if req.method != "POST" {
                    return Err(not_allowed());
                }
                let (rank, message) = match *action {
                    "profile" => {
                        let p: HostProfile = parse_body(req.body)?;
                        (p.host_rank, HostMessage::Profile(p))
                    }
                    "report" => {
                        let r: HostReport = parse_body(req.body)?;
                        (r.host_rank, HostMessage::Report(r))
                    }
                    "done" => (
                        parse_body::<HostCall>(req.body)?.host_rank,
                        HostMessage::Done,
                    ),
                    _ => (
                        parse_body::<HostCall>(req.body)?.host_rank,
                        HostMessage::Heartbeat,
                    ),
                };
                let out = self
                    .transact(job_id, env, |cur, ctx| {
                        multihost::host_message(job_id, run_id, rank, &message, cur, ctx)
                    })
                    .await?;
                Ok(Response::json(out.status, &out.body))
            }
            ["jobs", job_id, "profiles"] => match req.method {
                "GET" => Ok(Response::json(
                    200,
                    &self.load_required(job_id).await?.state.profiles(),
                )),
                "POST" => {
                    let profile: PowerProfile = parse_body(req.body)?;
                    let out = self
                        .transact(job_id, env, |cur, _| {
                            api::post_profile(job_id, &profile, cur)
                        })
                        .await?;
                    Ok(Response::json(out.status, &out.body))
                }
                _ => Err(not_allowed()),
            },
            _ => Err(ApiError::NotFound(format!(
                "no route {} {}",
                req.method, req.path
            ))),
        }
    }

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, ApiError> {
        self.store
            .load(job_id)
            .await
            .map_err(|e| ApiError::Unavailable(format!("store: {e}")))
    }

    async fn load_required(&self, job_id: &str) -> Result<Stored, ApiError> {
        self.load(job_id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("job_id: unknown job {job_id:?}")))
    }

    /// Load, call, conditionally store; retry the whole call on a conflicting write.
    async fn transact<T>(
        &self,
        job_id: &str,
        env: &mut impl HostEnv,
        call: impl Fn(Option<&JobState>, Ctx) -> Result<Outcome<T>, ApiError>,
    ) -> Result<Outcome<T>, ApiError> {
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        let ctx = Ctx {
            now_ms: env.now_ms(),
            entropy: env.entropy(),
        };
        for attempt in 0..=self.config.max_retries {
            if attempt > 0 {
                let cap = 1u64 << attempt.min(6);
                let wait = 1 + env.entropy() % cap;
                env.backoff(wait).await;
            }
            let stored = self.load(job_id).await?;
            let (state, version) = match stored {
                Some(s) => (Some(s.state), Some(s.version)),
                None => (None, None),
            };
            let out = call(state.as_ref(), ctx)?;
            let saved = match (&out.change, version) {
                (Change::Keep, _) => Saved::Ok,
                (Change::Put(new), _) => self
                    .store
                    .save(job_id, new, version, &out.archive)
                    .await
                    .map_err(store_err)?,
                (Change::Delete, Some(v)) => {
                    self.store.delete(job_id, v).await.map_err(store_err)?
                }
                (Change::Delete, None) => Saved::Conflict,
            };
            if saved == Saved::Ok {
                return Ok(out);
            }
        }
        Err(ApiError::Unavailable(format!(
            "job {job_id:?} is contended; retry the request"
        )))
    }

    /// `DELETE /jobs`: by the stored version alone, so a job whose document no
    /// longer parses can still be deleted.
    async fn delete(&self, job_id: &str, env: &mut impl HostEnv) -> Result<(), ApiError> {
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        for attempt in 0..=self.config.max_retries {
            if attempt > 0 {
                let wait = 1 + env.entropy() % (1u64 << attempt.min(6));
                env.backoff(wait).await;
            }
            let Some(version) = self.store.version(job_id).await.map_err(store_err)? else {
                return Err(ApiError::NotFound(format!(
                    "job_id: unknown job {job_id:?}; register it first"
                )));
            };
            if self
                .store
                .delete(job_id, version)
                .await
                .map_err(store_err)?
                == Saved::Ok
            {
                return Ok(());
            }
        }
        Err(ApiError::Unavailable(format!(
            "job {job_id:?} is contended; retry the request"
        )))
    }

    async fn register(
        &self,
        mut spec: JobSpec,
        env: &mut impl HostEnv,
    ) -> Result<Response, ApiError> {
        spec.validate()?;
        if let Some(job_id) = spec.job_id.clone() {
            let out = self
                .transact(&job_id, env, |cur, ctx| api::register_job(&spec, cur, ctx))
                .await?;
            return Ok(Response::json(out.status, &out.body));
        }
        // A generated id that is taken is drawn again.
        for _ in 0..16 {
            let job_id = api::generate_job_id(&spec.job_id_prefix, env.entropy());
            spec.job_id = Some(job_id.clone());
            let out = self
                .transact(&job_id, env, |cur, ctx| match cur {
                    Some(_) => Err(ApiError::Conflict("generated job_id is taken".into())),
                    None => api::register_job(&spec, None, ctx),
                })
                .await;
            match out {
                Ok(out) => return Ok(Response::json(out.status, &out.body)),
                Err(ApiError::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ApiError::Unavailable("could not draw a free job_id".into()))
    }

    async fn report(
        &self,
        result: &TrainingResult,
        env: &mut impl HostEnv,
    ) -> Result<Response, ApiError> {
        // A late report of a trial that already left the document gets the answer it
        // would get in the document: one archived trial is read, not the archive.
        if let Some(stored) = self.load(&result.job_id).await? {
            let n = result.trial_number;
            if stored.state.trial(n).is_none() && n > 0 && n < stored.state.next_trial_number() {
                crate::optimizer::validate_report(result).map_err(ApiError::from)?;
                let archived = self
                    .store
                    .archived_trial(&result.job_id, n)
                    .await
                    .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
                if let Some(answer) = archived
                    .as_ref()
                    .and_then(|t| crate::optimizer::finished_trial_answer(t, result))
                {
                    return Ok(Response::json(200, &answer.map_err(ApiError::from)?));
                }
            }
        }
        let out = self
            .transact(&result.job_id, env, |cur, ctx| {
                api::report(result, cur, ctx)
            })
            .await?;
        Ok(Response::json(200, &out.body))
    }

    async fn export_trials(&self, job_id: &str, query: &str) -> Result<Response, ApiError> {
        let stored = self.load_required(job_id).await?;
        let archived = self
            .store
            .archived_trials(job_id)
            .await
            .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?;
        let trials = merge_trials(&stored.state, archived);
        match query_param(query, "format")?.as_deref() {
            None | Some("json") => {
                let rows: Vec<serde_json::Value> = trials
                    .iter()
                    .map(|t| {
                        let mut v = serde_json::to_value(t).unwrap_or_default();
                        if let Some(obj) = v.as_object_mut() {
                            obj.insert("job_id".into(), job_id.into());
                        }
                        v
                    })
                    .collect();
                Ok(Response::json(200, &rows))
            }
            Some("csv") => {
                let mut csv = String::from(Trial::CSV_HEADER);
                csv.push('\n');
                for t in &trials {
                    csv.push_str(&t.csv_row(job_id));
                    csv.push('\n');
                }
                Ok(Response {
                    status: 200,
                    content_type: CSV,
                    body: csv.into_bytes(),
                })
            }
            Some(other) => Err(ApiError::Invalid(format!(
                "format: must be json or csv (got {other:?})"
            ))),
        }
    }
}

/// An in-memory store, for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryStore {
    jobs: Mutex<HashMap<String, Stored>>,
    archive: Mutex<HashMap<String, BTreeMap<u64, Trial>>>,
}

/// The memory store never fails.
#[derive(Debug, thiserror::Error)]
#[error("memory store poisoned")]
pub struct MemoryStoreError;

impl Store for MemoryStore {
    type Error = MemoryStoreError;

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, Self::Error> {
        Ok(self
            .jobs
            .lock()
            .map_err(|_| MemoryStoreError)?
            .get(job_id)
            .cloned())
    }

    async fn save(
        &self,
        job_id: &str,
        state: &JobState,
        expected_version: Option<u64>,
        archive: &[Trial],
    ) -> Result<Saved, Self::Error> {
        let mut jobs = self.jobs.lock().map_err(|_| MemoryStoreError)?;
        let current = jobs.get(job_id).map(|s| s.version);
        if current != expected_version {
            return Ok(Saved::Conflict);
        }
        let mut archived = self.archive.lock().map_err(|_| MemoryStoreError)?;
        let records = archived.entry(job_id.to_string()).or_default();
        for t in archive {
            records.insert(t.trial_number, t.clone());
        }
        let version = expected_version.unwrap_or(0) + 1;
        jobs.insert(
            job_id.to_string(),
            Stored {
                state: state.clone(),
                version,
            },
        );
        Ok(Saved::Ok)
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, Self::Error> {
        let mut jobs = self.jobs.lock().map_err(|_| MemoryStoreError)?;
        if jobs.get(job_id).map(|s| s.version) != Some(expected_version) {
            return Ok(Saved::Conflict);
        }
        jobs.remove(job_id);
        self.archive
            .lock()
            .map_err(|_| MemoryStoreError)?
            .remove(job_id);
        Ok(Saved::Ok)
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, Self::Error> {
        let archived = self.archive.lock().map_err(|_| MemoryStoreError)?;
        Ok(archived
            .get(job_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    async fn archived_trial(
        &self,
        job_id: &str,
        trial_number: u64,
    ) -> Result<Option<Trial>, Self::Error> {
        let archived = self.archive.lock().map_err(|_| MemoryStoreError)?;
        Ok(archived
            .get(job_id)
            .and_then(|m| m.get(&trial_number))
            .cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_decoding() {
        assert_eq!(
            query_param("a=1&job_id=x%2Dy+z", "job_id").unwrap(),
            Some("x-y z".into())
        );
        assert_eq!(query_param("", "job_id").unwrap(), None);
        assert!(query_param("job_id=%zz", "job_id").is_err());
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn body_errors_name_the_field() {
        let e = parse_body::<TrialId>(br#"{"job_id": "j", "batch_size": -1, "trial_number": 1}"#)
            .unwrap_err();
        assert!(e.to_string().starts_with("batch_size:"), "{e}");
        let e = parse_body::<TrialId>(br#"{"job_id": "j", "batch_size": 8}"#).unwrap_err();
        assert!(e.to_string().contains("trial_number"), "{e}");
        let e = parse_body::<TrialId>(b"{not json").unwrap_err();
        assert!(e.to_string().starts_with("body:"), "{e}");
    }

    fn job_of(method: &str, path: &str, query: &str, body: &[u8]) -> Option<String> {
        Request {
            method,
            path,
            query,
            authorization: None,
            body,
        }
        .job_id()
    }

    #[test]
    fn reads_the_job_where_each_route_has_it() {
        assert_eq!(job_of("GET", "/jobs/j1", "", b""), Some("j1".into()));
        assert_eq!(
            job_of("GET", "/jobs/j1/trials", "format=csv", b""),
            Some("j1".into())
        );
        assert_eq!(
            job_of("POST", "/jobs/j1/profiles", "", b"{}"),
            Some("j1".into())
        );
        assert_eq!(
            job_of("GET", "/jobs/batch_size", "x=1&job_id=a%2Db+c", b""),
            Some("a-b c".into())
        );
        assert_eq!(
            job_of("DELETE", "/jobs", "job_id=j2", b""),
            Some("j2".into())
        );
        let body = br#"{"job_id": "j3", "batch_size": 8}"#;
        assert_eq!(job_of("POST", "/report", "", body), Some("j3".into()));
        assert_eq!(job_of("PATCH", "/trials", "", body), Some("j3".into()));
        assert_eq!(
            job_of("POST", "/jobs/j4/runs", "", b"{}"),
            Some("j4".into())
        );
        assert_eq!(
            job_of("GET", "/jobs/j4/runs/r1", "", b""),
            Some("j4".into())
        );
        for action in ["heartbeat", "profile", "report", "done"] {
            let path = format!("/jobs/j4/runs/r1/{action}");
            assert_eq!(job_of("POST", &path, "", b"{}"), Some("j4".into()));
            assert_eq!(job_of("GET", &path, "", b""), None);
        }
        assert_eq!(job_of("POST", "/jobs/j4/runs/r1/other", "", b"{}"), None);
        assert_eq!(job_of("GET", "/jobs/j4/runs", "", b""), None);
        assert_eq!(job_of("POST", "/jobs", "", body), Some("j3".into()));
    }

    #[test]
    fn names_no_job_when_the_core_would_not_reach_a_store() {
        assert_eq!(job_of("GET", "/healthz", "", b""), None);
        assert_eq!(job_of("GET", "/openapi.json", "", b""), None);
        // A generated id: the Worker registers it itself.
        assert_eq!(
            job_of("POST", "/jobs", "", br#"{"job_id_prefix": "p"}"#),
            None
        );
        assert_eq!(job_of("POST", "/jobs", "", br#"{"job_id": null}"#), None);
        assert_eq!(job_of("POST", "/report", "", b"[\"j\"]"), None);
        assert_eq!(job_of("POST", "/report", "", b"{bad"), None);
        assert_eq!(job_of("GET", "/jobs/batch_size", "job_id=%zz", b""), None);
        assert_eq!(job_of("GET", "/jobs/batch_size", "job_id=", b""), None);
        assert_eq!(job_of("GET", "/jobs/batch_size", "", b""), None);
        assert_eq!(job_of("POST", "/jobs/batch_size", "job_id=j", b""), None);
        assert_eq!(job_of("PUT", "/jobs/j1", "", b""), None);
        assert_eq!(job_of("HEAD", "/jobs/j1", "", b""), None);
        assert_eq!(job_of("GET", "/jobs/j1/other", "", b""), None);
    }

    #[test]
    fn admission_checks_token_then_size() {
        let config = ServiceConfig {
            token: Some("secret".into()),
            max_body_bytes: 4,
            ..ServiceConfig::default()
        };
        let req = |authorization, body| Request {
            method: "POST",
            path: "/report",
            query: "",
            authorization,
            body,
        };
        assert!(config.admit(&req(Some("Bearer secret"), b"{}")).is_ok());
        for ok in [
            "bearer secret",
            "BEARER  secret",
            "Bearer\tsecret",
            " Bearer secret ",
        ] {
            assert!(config.admit(&req(Some(ok), b"{}")).is_ok(), "{ok:?}");
        }
        for bad in [
            "Bearersecret",
            "Basic secret",
            "Bearer",
            "Bearer  secre",
            "secret",
        ] {
            assert!(config.admit(&req(Some(bad), b"{}")).is_err(), "{bad:?}");
        }
        assert!(matches!(
            config.admit(&req(Some("Bearer secreT"), b"{}")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            config.admit(&req(None, b"{}")),
            Err(ApiError::Unauthorized)
        ));
        assert!(matches!(
            config.admit(&req(Some("Bearer secret"), b"{ 12 }")),
            Err(ApiError::TooLarge(4))
        ));
    }
}
