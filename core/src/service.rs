//! The HTTP service every host runs, over a [`Store`].
//!
//! A host turns its request into a [`Request`], calls [`Service::handle`] with its
//! store and a [`HostEnv`] (clock, entropy, back-off), and turns the [`Response`]
//! back. Routing, auth, limits, the read-modify-write loop and every answer are
//! decided here, so the local server, the Lambda function and the Worker cannot
//! drift apart. Nothing here does I/O: the store's futures do.

use std::future::Future;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::{self, ApiError, Change, Ctx, Outcome};
use crate::export::Format;
pub use crate::export::TrialsExport;
use crate::field_error::FieldError;
use crate::job::JobState;
use crate::listing::{self, JobPage, JobSummary};
use crate::multihost;
use crate::policy::shared::WorkloadState;
use crate::retry::{retry_async, Backoff, Timer};
use crate::route::{self, Endpoint, JobIn};
use crate::runs::{HostCall, HostMessage, HostProfile, HostReport, JoinRun};
use crate::spec::JobSpec;
pub use crate::store::{
    ListCursor, Listed, MemoryStore, MemoryStoreError, Saved, Store, Stored, StoredWorkload, Write,
};
use crate::wire::{PowerProfile, TrainingResult, TrialId};

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

/// Every host's [`HostEnv`] is the retry driver's [`Timer`].
impl<H: HostEnv> Timer for H {
    fn jitter(&mut self) -> u64 {
        self.entropy()
    }
    fn sleep_ms(&mut self, ms: u64) -> impl Future<Output = ()> {
        self.backoff(ms)
    }
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
    /// Job documents read from the store at a time while a page of the job list is
    /// made (each is summarized before the next are read), which bounds the
    /// memory of a list request to this many documents. The default reads a whole
    /// page at once; the local server reads fewer.
    pub list_batch: usize,
}

impl ServiceConfig {
    /// The checks every route but `/healthz` passes first: the bearer token (compared
    /// in constant time), then the body (413 over the limit, 400 unreadable). The
    /// error is the service's answer; otherwise the body's bytes.
    pub fn admit<'a>(&self, req: &Request<'a>) -> Result<&'a [u8], ApiError> {
        if let Some(token) = &self.token {
            let given = req.authorization.and_then(bearer_token).unwrap_or("");
            if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
                return Err(ApiError::Unauthorized);
            }
        }
        match req.body {
            Body::Bytes(b) if b.len() <= self.max_body_bytes => Ok(b),
            Body::Bytes(_) | Body::TooLarge => Err(ApiError::TooLarge(self.max_body_bytes)),
            Body::Unreadable => Err(ApiError::BadRequest(
                "body: the request body could not be read".into(),
            )),
        }
    }
}

impl Default for ServiceConfig {
    fn default() -> Self {
        ServiceConfig {
            token: None,
            max_body_bytes: 64 * 1024,
            max_retries: 64,
            list_batch: listing::MAX_PAGE,
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

/// A request body as the host saw it. A host reads at most the service's
/// `max_body_bytes` (plus one, to tell) and says what it found; the service
/// answers the same on every host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Body<'a> {
    /// The body's bytes (empty when there is none).
    Bytes(&'a [u8]),
    /// Longer than the limit (declared or read): 413.
    TooLarge,
    /// The connection failed while the body was read: 400.
    Unreadable,
}

impl<'a> Body<'a> {
    fn json(&self) -> Option<&'a [u8]> {
        match *self {
            Body::Bytes(b) => Some(b),
            Body::TooLarge | Body::Unreadable => None,
        }
    }
}

/// A request body as a host read it, owned (the service borrows it as a
/// [`Body`]). A host reads through a [`BodyReader`], which decides what it found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReadBody {
    /// The bytes (empty when there is none).
    Bytes(Vec<u8>),
    /// Over the limit, declared or read.
    TooLarge,
    /// The body's stream failed.
    Unreadable,
}

impl ReadBody {
    /// The service's view.
    pub fn as_body(&self) -> Body<'_> {
        match self {
            ReadBody::Bytes(b) => Body::Bytes(b),
            ReadBody::TooLarge => Body::TooLarge,
            ReadBody::Unreadable => Body::Unreadable,
        }
    }
}

/// Reading a request body with a cap, the same on every host: a host starts
/// it with the declared `Content-Length`, pushes the chunks it receives, and
/// finishes (or answers [`ReadBody::Unreadable`] when its stream fails). No
/// more than `max` bytes are kept: past them the body is [`ReadBody::TooLarge`]
/// and the host stops reading.
#[derive(Debug)]
pub struct BodyReader {
    max: usize,
    bytes: Vec<u8>,
}

impl BodyReader {
    /// Starts reading a body of at most `max` bytes whose `Content-Length`
    /// header is `declared`: a declared length over `max` is too large before a
    /// byte is read (`Err`, the body's answer).
    pub fn start(declared: Option<&str>, max: usize) -> Result<BodyReader, ReadBody> {
        match declared.and_then(|v| v.trim().parse::<usize>().ok()) {
            Some(n) if n > max => Err(ReadBody::TooLarge),
            _ => Ok(BodyReader {
                max,
                bytes: Vec::new(),
            }),
        }
    }

    /// Adds a chunk received; `Err(ReadBody::TooLarge)` once the body is over
    /// the limit (stop reading).
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), ReadBody> {
        if self.bytes.len() + chunk.len() > self.max {
            return Err(ReadBody::TooLarge);
        }
        self.bytes.extend_from_slice(chunk);
        Ok(())
    }

    /// The body read whole.
    pub fn finish(self) -> ReadBody {
        ReadBody::Bytes(self.bytes)
    }
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
    pub body: Body<'a>,
}

impl<'a> Request<'a> {
    /// A request for `target` (the path, then `?` and the query when there is one),
    /// its body read whole, without credentials: what tests and tools build; a host
    /// fills the fields from what it parsed.
    pub fn new(method: &'a str, target: &'a str, body: &'a [u8]) -> Self {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method,
            path,
            query,
            authorization: None,
            body: Body::Bytes(body),
        }
    }

    /// The job this request is about, read where the service reads it: the
    /// percent-decoded path segment of `/jobs/{job_id}...`, the percent-decoded `job_id` query parameter of
    /// `GET /jobs/batch_size` and `DELETE /jobs`, or the `job_id` field of the JSON body
    /// of `POST /jobs`, `POST /report` and `PATCH /trials`. `None` when the request
    /// names no job this way: a health check, the OpenAPI document, a registration
    /// whose id is generated, an unknown route or method, a malformed query or body.
    /// A host that shards its store by job (the Worker's Durable Objects) sends the
    /// request to this job's shard, so one job can never reach two shards.
    pub fn job_id(&self) -> Option<String> {
        self.job_of(route::find(self.method, self.path).ok()?)
    }

    /// Whether this request is a heavy read: the trials export or the job list,
    /// which read many documents or trials (a host may cap how many run at once).
    pub fn heavy_read(&self) -> bool {
        route::find(self.method, self.path)
            .is_ok_and(|r| matches!(r.def.endpoint, Endpoint::Trials | Endpoint::ListJobs))
    }

    /// The job this request may write: its [`Request::job_id`] when the route
    /// writes a job, else `None`. A host that lets one job's writes take turns
    /// (the local server) waits for this job's turn.
    pub fn written_job(&self) -> Option<String> {
        let route = route::find(self.method, self.path).ok()?;
        route.def.writes.then(|| self.job_of(route))?
    }

    fn job_of(&self, route: route::Route) -> Option<String> {
        let id = match route.def.job_in {
            JobIn::Nowhere => return None,
            JobIn::Path => route.path_job_id?,
            JobIn::Query => query_param(self.query, "job_id").ok()??,
            JobIn::Body => {
                let body: serde_json::Value = serde_json::from_slice(self.body.json()?).ok()?;
                body.as_object()?.get("job_id")?.as_str()?.to_string()
            }
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

/// The service's answer to a request: whole, or a trials export the host writes
/// chunk by chunk (with [`Service::next_chunk`]) so it never holds it whole.
#[derive(Debug)]
pub enum Answer {
    /// The whole response.
    Whole(Response),
    /// A 200 whose body is this export's chunks, in order.
    Export(TrialsExport),
}

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
    route::percent_decode(s, true)
        .ok_or_else(|| ApiError::BadRequest("query: bad percent-encoding or not UTF-8".into()))
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
        _ => Err(FieldError::new("job_id", "query parameter is required").into()),
    }
}

/// Parses a JSON body; the error names the field (by its path) and what was wrong.
fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.is_empty() {
        return Err(FieldError::new("body", "a JSON object is required").into());
    }
    // serde reads a struct from an array too (by position); the wire takes objects only.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(FieldError::new("body", "must be a JSON object").into());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." || inner.is_syntax() || inner.is_eof() {
            FieldError::new("body", inner.to_string())
        } else {
            FieldError::new(path, inner.to_string())
        }
    })?;
    de.end()
        .map_err(|e| FieldError::new("body", e.to_string()))?;
    Ok(value)
}

/// A host's message to a run across hosts, from the body of its route, and the
/// host's rank.
fn host_message(endpoint: Endpoint, body: &[u8]) -> Result<(i64, HostMessage), ApiError> {
    Ok(match endpoint {
        Endpoint::RunProfile => {
            let p: HostProfile = parse_body(body)?;
            (p.host_rank, HostMessage::Profile(p))
        }
        Endpoint::RunReport => {
            let r: HostReport = parse_body(body)?;
            (r.host_rank, HostMessage::Report(r))
        }
        Endpoint::RunDone => (parse_body::<HostCall>(body)?.host_rank, HostMessage::Done),
        _ => (
            parse_body::<HostCall>(body)?.host_rank,
            HostMessage::Heartbeat,
        ),
    })
}

/// Compares two byte strings in time independent of where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

    /// Answers one request like [`Service::handle`], but leaves a trials export for
    /// the host to write chunk by chunk ([`Service::next_chunk`]), in bounded memory.
    pub async fn answer(&self, req: Request<'_>, env: &mut impl HostEnv) -> Answer {
        let export = match route::find(req.method, req.path) {
            Ok(route) if route.def.endpoint == Endpoint::Trials => route,
            _ => return Answer::Whole(self.handle(req, env).await),
        };
        let job_id = export.path_job_id.unwrap_or_default();
        let start = async {
            self.config.admit(&req)?;
            self.start_export(&job_id, req.query).await
        };
        match start.await {
            Ok(export) => Answer::Export(export),
            Err(e) => Answer::Whole(Response::error(&e)),
        }
    }

    /// The next chunk of an export [`Service::answer`] started; `None` when it is
    /// all written. An error (the store failed) ends the export unfinished.
    pub async fn next_chunk(&self, export: &mut TrialsExport) -> Result<Option<Vec<u8>>, ApiError> {
        export.next_chunk(&self.store).await
    }

    async fn route(&self, req: Request<'_>, env: &mut impl HostEnv) -> Result<Response, ApiError> {
        let route = route::find(req.method, req.path)?;
        let job_id = route.path_job_id.as_deref().unwrap_or_default();
        let run_id = route.path_run_id.as_deref().unwrap_or_default();
        // The health check needs no token and has no body.
        let body = match route.def.endpoint {
            Endpoint::Health => &[][..],
            _ => self.config.admit(&req)?,
        };
        match route.def.endpoint {
            Endpoint::Health => self.health().await,
            Endpoint::OpenApi => Ok(Response::json(200, &crate::openapi::document())),
            Endpoint::RegisterJob => self.register(parse_body(body)?, env).await,
            Endpoint::ListJobs => self.list_jobs(req.query).await,
            Endpoint::JobSummary => {
                let stored = self.load_required(job_id).await?;
                Ok(Response::json(
                    200,
                    &JobSummary::of(&stored.state, stored.version),
                ))
            }
            Endpoint::DeleteJob => {
                let job_id = required_job_id(req.query)?;
                self.delete(&job_id, env).await?;
                Ok(Response::json(200, &()))
            }
            Endpoint::NextTrial => {
                let job_id = required_job_id(req.query)?;
                let trial = self
                    .transact_shared(&job_id, env, true, |cur, workload, ctx| {
                        api::predict_shared(&job_id, cur, workload, ctx)
                    })
                    .await?;
                Ok(Response::json(200, &trial.body))
            }
            Endpoint::Report => {
                let result: TrainingResult = parse_body(body)?;
                self.report(&result, env).await
            }
            Endpoint::EndTrial => {
                let trial: TrialId = parse_body(body)?;
                self.transact(&trial.job_id, env, |cur, ctx| {
                    api::end_trial(&trial, cur, ctx)
                })
                .await?;
                Ok(Response::json(200, &()))
            }
            Endpoint::JobDocument => Ok(Response::json(
                200,
                &self.load_required(job_id).await?.state,
            )),
            Endpoint::Trials => self.export_trials(job_id, req.query).await,
            Endpoint::Profiles => Ok(Response::json(
                200,
                &self.load_required(job_id).await?.state.profiles(),
            )),
            Endpoint::JoinRun => {
                let join: JoinRun = parse_body(body)?;
                join.validate()?;
                let out = self
                    .transact(job_id, env, |cur, ctx| {
                        multihost::join(job_id, &join, cur, ctx)
                    })
                    .await?;
                Ok(Response::json(out.status, &out.body))
            }
            Endpoint::RunState => {
                let stored = self.load_required(job_id).await?;
                let view = multihost::view(job_id, run_id, Some(&stored.state), env.now_ms())?;
                Ok(Response::json(200, &view))
            }
            Endpoint::RunHeartbeat
            | Endpoint::RunProfile
            | Endpoint::RunReport
            | Endpoint::RunDone => {
                let (rank, message) = host_message(route.def.endpoint, body)?;
                let out = self
                    .transact(job_id, env, |cur, ctx| {
                        multihost::host_message(job_id, run_id, rank, &message, cur, ctx)
                    })
                    .await?;
                Ok(Response::json(out.status, &out.body))
            }
            Endpoint::AddProfile => {
                let profile: PowerProfile = parse_body(body)?;
                let out = self
                    .transact(job_id, env, |cur, _| {
                        api::post_profile(job_id, &profile, cur)
                    })
                    .await?;
                Ok(Response::json(out.status, &out.body))
            }
        }
    }

    async fn health(&self) -> Result<Response, ApiError> {
        match self.store.writable().await {
            Ok(()) => Ok(Response::json(
                200,
                &serde_json::json!({"status": "ok", "writable": true}),
            )),
            Err(e) => Err(ApiError::Unavailable(format!("store is not writable: {e}"))),
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
        self.transact_shared(job_id, env, false, |cur, _, ctx| call(cur, ctx))
            .await
    }

    /// [`Service::transact`], also reading the job's workload document for the
    /// call when `read_workload` (a job that names no workload reads nothing more).
    /// A workload document that cannot be read is left out: the job decides
    /// without it. After the job's write, what the job taught goes to its
    /// workload's document ([`Service::teach`]).
    async fn transact_shared<T>(
        &self,
        job_id: &str,
        env: &mut impl HostEnv,
        read_workload: bool,
        call: impl Fn(Option<&JobState>, Option<&WorkloadState>, Ctx) -> Result<Outcome<T>, ApiError>,
    ) -> Result<Outcome<T>, ApiError> {
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        let ctx = Ctx {
            now_ms: env.now_ms(),
            entropy: env.entropy(),
        };
        let call = &call;
        let out = self
            .until_stored(job_id, env, move || async move {
                let stored = self.load(job_id).await?;
                let (state, version) = match stored {
                    Some(s) => (Some(s.state), Some(s.version)),
                    None => (None, None),
                };
                let workload = match state.as_ref().and_then(JobState::shared_workload) {
                    Some(name) if read_workload => self
                        .store
                        .load_workload(name)
                        .await
                        .ok()
                        .flatten()
                        .map(|s| s.state),
                    _ => None,
                };
                let out = call(state.as_ref(), workload.as_ref(), ctx)?;
                let saved = match (&out.change, version) {
                    (Change::Keep, _) => Saved::Ok,
                    (Change::Put(new), _) => self
                        .store
                        .save(job_id, Write::new(new, version, &out.archive))
                        .await
                        .map_err(store_err)?,
                    (Change::Delete, Some(v)) => {
                        self.store.delete(job_id, v).await.map_err(store_err)?
                    }
                    (Change::Delete, None) => Saved::Conflict,
                };
                Ok((saved == Saved::Ok).then_some(out))
            })
            .await?;
        if let Change::Put(state) = &out.change {
            self.teach(state, ctx.now_ms, env).await;
        }
        Ok(out)
    }

    /// Brings the workload document of job `state` up to date with what the job's
    /// runs taught ([`api::teach_workload`]): one read, and a write only when the
    /// job has runs the document lacks. Best effort: the job's document keeps its
    /// whole knowledge, so a write lost here is made good by the job's next one,
    /// and the job's own answer never waits on its workload.
    async fn teach(&self, state: &JobState, now_ms: i64, env: &mut impl HostEnv) {
        let Some(name) = state.shared_workload() else {
            return;
        };
        if state.taught().is_none_or(|t| t.sizes.is_empty()) {
            return;
        }
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        let _ = self
            .until_stored(name, env, move || async move {
                let stored = self.store.load_workload(name).await.map_err(store_err)?;
                let (current, version) = match stored {
                    Some(s) => (Some(s.state), Some(s.version)),
                    None => (None, None),
                };
                let Some(doc) = api::teach_workload(state, current.as_ref(), now_ms) else {
                    return Ok(Some(()));
                };
                let saved = self
                    .store
                    .save_workload(name, &doc, version)
                    .await
                    .map_err(store_err)?;
                Ok((saved == Saved::Ok).then_some(()))
            })
            .await;
    }

    /// `DELETE /jobs`: by the stored version alone, so a job whose document no
    /// longer parses can still be deleted.
    async fn delete(&self, job_id: &str, env: &mut impl HostEnv) -> Result<(), ApiError> {
        let store_err = |e: S::Error| ApiError::Unavailable(format!("store: {e}"));
        self.until_stored(job_id, env, move || async move {
            let Some(version) = self.store.version(job_id).await.map_err(store_err)? else {
                return Err(ApiError::NotFound(format!(
                    "job_id: unknown job {job_id:?}; register it first"
                )));
            };
            let saved = self
                .store
                .delete(job_id, version)
                .await
                .map_err(store_err)?;
            Ok((saved == Saved::Ok).then_some(()))
        })
        .await
    }

    /// The one conflict loop: runs `attempt` (a read, a decision and a
    /// conditional write) until its write lands (`Some`), backing off between
    /// tries; after `max_retries` conflicts the job is contended (503).
    async fn until_stored<T, Fut>(
        &self,
        job_id: &str,
        env: &mut impl HostEnv,
        mut attempt: impl FnMut() -> Fut,
    ) -> Result<T, ApiError>
    where
        Fut: Future<Output = Result<Option<T>, ApiError>>,
    {
        let max_retries = self.config.max_retries;
        // An error of `None` is a lost race, tried again; `Some` is the answer.
        retry_async(
            Backoff::CONFLICT,
            env,
            || {
                let tried = attempt();
                async move { tried.await.map_err(Some)?.ok_or(None) }
            },
            |lost: &Option<ApiError>, retry| lost.is_none() && retry <= max_retries,
        )
        .await
        .map_err(|e| {
            e.unwrap_or_else(|| {
                ApiError::Unavailable(format!("job {job_id:?} is contended; retry the request"))
            })
        })
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

    /// `GET /jobs`: one page of job summaries, newest first, read from the store
    /// [`ServiceConfig::list_batch`] documents at a time.
    async fn list_jobs(&self, query: &str) -> Result<Response, ApiError> {
        let limit = listing::page_size(query_param(query, "limit")?.as_deref())?;
        let mut after = match query_param(query, "cursor")? {
            Some(c) if !c.is_empty() => Some(ListCursor::decode(&c)?),
            _ => None,
        };
        let mut jobs = Vec::with_capacity(limit);
        let next = loop {
            let want = (limit - jobs.len()).min(self.config.list_batch.max(1));
            let listed = self
                .store
                .list_jobs(after.as_ref(), want)
                .await
                .map_err(|e| ApiError::Unavailable(format!("store: {e}")))?
                .ok_or_else(|| {
                    ApiError::NotFound(
                        "no route GET /jobs: this host's store cannot list jobs".into(),
                    )
                })?;
            jobs.extend(
                listed
                    .jobs
                    .iter()
                    .map(|s| JobSummary::of(&s.state, s.version)),
            );
            match listed.next {
                Some(c) if jobs.len() < limit => after = Some(c),
                next => break next,
            }
        };
        let next_cursor = next.as_ref().map(ListCursor::encode);
        Ok(Response::json(200, &JobPage { jobs, next_cursor }))
    }

    /// The export of `job_id`'s trials in the `format` the query names.
    async fn start_export(&self, job_id: &str, query: &str) -> Result<TrialsExport, ApiError> {
        let stored = self.load_required(job_id).await?;
        let format = Format::parse(query_param(query, "format")?.as_deref())?;
        Ok(TrialsExport::new(job_id, &stored.state, format))
    }

    /// `GET /jobs/{job_id}/trials` whole (hosts that answer in one piece).
    async fn export_trials(&self, job_id: &str, query: &str) -> Result<Response, ApiError> {
        let mut export = self.start_export(job_id, query).await?;
        let mut body = Vec::new();
        while let Some(chunk) = self.next_chunk(&mut export).await? {
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            status: 200,
            content_type: export.content_type(),
            body,
        })
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
        // Every refusal carries its field and rule, not only words that name them.
        let field = |e: ApiError| match e {
            ApiError::Invalid(f) => f.field.into_owned(),
            other => panic!("not a field error: {other}"),
        };
        let e = parse_body::<TrialId>(br#"{"job_id": "j", "batch_size": -1, "trial_number": 1}"#)
            .unwrap_err();
        assert_eq!(field(e), "batch_size");
        assert_eq!(field(required_job_id("x=1").unwrap_err()), "job_id");
        assert_eq!(field(parse_body::<TrialId>(b"[]").unwrap_err()), "body");
    }

    fn job_of(method: &str, path: &str, query: &str, body: &[u8]) -> Option<String> {
        Request::new(method, &format!("{path}?{query}"), body).job_id()
    }

    #[test]
    fn reads_the_job_where_each_route_has_it() {
        let body: &[u8] = br#"{"job_id": "j3", "batch_size": 8}"#;
        let cases: [(&str, &str, &str, &[u8], &str); 17] = [
            ("GET", "/jobs/j1", "", b"", "j1"),
            ("GET", "/jobs/j1/trials", "format=csv", b"", "j1"),
            ("POST", "/jobs/j1/profiles", "", b"{}", "j1"),
            (
                "GET",
                "/jobs/batch_size",
                "x=1&job_id=a%2Db+c",
                b"",
                "a-b c",
            ),
            ("DELETE", "/jobs", "job_id=j2", b"", "j2"),
            ("POST", "/report", "", body, "j3"),
            ("PATCH", "/trials", "", body, "j3"),
            ("POST", "/jobs", "", body, "j3"),
            ("GET", "/jobs/j1/summary", "", b"", "j1"),
            ("POST", "/jobs/j4/runs", "", b"{}", "j4"),
            ("GET", "/jobs/j4/runs/r1", "", b"", "j4"),
            ("POST", "/jobs/j4/runs/r1/heartbeat", "", b"{}", "j4"),
            ("POST", "/jobs/j4/runs/r1/profile", "", b"{}", "j4"),
            ("POST", "/jobs/j4/runs/r1/report", "", b"{}", "j4"),
            ("POST", "/jobs/j4/runs/r1/done", "", b"{}", "j4"),
            // Decoded once, as the service reads it: one job, one Durable Object.
            ("POST", "/jobs/ag%3Ac/profiles", "", b"{}", "ag:c"),
            ("POST", "/jobs/ag%3Ac/runs/r%3A1/report", "", b"{}", "ag:c"),
        ];
        for (method, path, query, body, want) in cases {
            assert_eq!(
                job_of(method, path, query, body).as_deref(),
                Some(want),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn names_the_written_job_only_for_routes_that_write() {
        let written = |method, path, query, body| {
            Request::new(method, &format!("{path}?{query}"), body).written_job()
        };
        let body: &[u8] = br#"{"job_id": "j3", "batch_size": 8}"#;
        assert_eq!(written("POST", "/report", "", body).as_deref(), Some("j3"));
        assert_eq!(
            written("GET", "/jobs/batch_size", "job_id=j2", b"").as_deref(),
            Some("j2")
        );
        assert_eq!(
            written("POST", "/jobs/j1/profiles", "", b"{}").as_deref(),
            Some("j1")
        );
        assert_eq!(written("GET", "/jobs/j1", "", b""), None);
        assert_eq!(written("GET", "/jobs/j1/runs/r1", "", b""), None);
        assert_eq!(written("PUT", "/jobs/j1", "", b""), None);
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
            authorization,
            ..Request::new("POST", "/report", body)
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
        let with = |body| Request {
            body,
            ..req(Some("Bearer secret"), b"")
        };
        assert!(matches!(
            config.admit(&with(Body::TooLarge)),
            Err(ApiError::TooLarge(4))
        ));
        assert!(matches!(
            config.admit(&with(Body::Unreadable)),
            Err(ApiError::BadRequest(_))
        ));
        // The token is checked before the body.
        assert!(matches!(
            config.admit(&Request {
                authorization: None,
                ..with(Body::Unreadable)
            }),
            Err(ApiError::Unauthorized)
        ));
    }

    #[test]
    fn a_body_is_read_with_a_cap() {
        let read = |declared: Option<&str>, chunks: &[&[u8]]| {
            let mut r = BodyReader::start(declared, 4)?;
            for c in chunks {
                r.push(c)?;
            }
            Ok::<_, ReadBody>(r.finish())
        };
        let whole = |b: &[u8]| Ok(ReadBody::Bytes(b.to_vec()));
        assert_eq!(read(None, &[b"12", b"34"]), whole(b"1234"));
        assert_eq!(read(Some(" 4 "), &[b"1234"]), whole(b"1234"));
        assert_eq!(read(None, &[]), whole(b""));
        // Over the limit, declared or read: refused before more is kept.
        assert_eq!(read(Some("5"), &[]), Err(ReadBody::TooLarge));
        assert_eq!(read(None, &[b"123", b"45"]), Err(ReadBody::TooLarge));
        assert_eq!(read(Some("2"), &[b"12345"]), Err(ReadBody::TooLarge));
        // A declared length that is not a number is not trusted either way.
        assert_eq!(read(Some("x"), &[b"1"]), whole(b"1"));
        assert_eq!(ReadBody::TooLarge.as_body(), Body::TooLarge);
        assert_eq!(
            ReadBody::Bytes(b"ab".to_vec()).as_body(),
            Body::Bytes(b"ab")
        );
    }
}
