//! The Cloudflare Worker: each fetch becomes a [`service::Request`] for the core's
//! [`Service`], over the store `WATTWISE_STORE` selects:
//!
//! - `"kv"` (the default): [`kv_store::KvJobStore`] on the KV namespace bound as
//!   `WATTWISE_KV`; the service runs in the Worker;
//! - `"durable_object"`: one `JobObject` per job, bound as `WATTWISE_JOBS`. A request
//!   that names its job runs in that job's object ([`durable`]); the rest run in the
//!   Worker over [`durable::DoJobStore`].
//!
//! `WATTWISE_TOKEN` (a secret, or a var when developing) turns bearer auth on.
//! Routing, auth, limits, retries and every answer are the core's.

mod durable;
mod job_index;
mod kv_store;
mod record;

use std::time::Duration;

use wattwise_core::api::ApiError;
use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::service::{
    self, BodyReader, HostEnv, ReadBody, Saved, Service, ServiceConfig, Store, Stored,
    StoredWorkload, Write,
};
use wattwise_core::store::{ListCursor, Listed};
use wattwise_core::trial::Trial;
use worker::{event, Context, Env, Request, Response};

use durable::DoJobStore;
use kv_store::KvJobStore;
use record::StoreError;

/// The var that selects the store.
const STORE_VAR: &str = "WATTWISE_STORE";
/// The KV namespace binding.
const KV_BINDING: &str = "WATTWISE_KV";
/// The Durable Object namespace binding.
const DO_BINDING: &str = "WATTWISE_JOBS";
/// The secret (or var) holding the bearer token.
const TOKEN_BINDING: &str = "WATTWISE_TOKEN";

/// The store the Worker was configured with.
enum Backend {
    /// Workers KV.
    Kv(KvJobStore),
    /// A Durable Object per job.
    Durable(DoJobStore),
    /// Misconfigured: every store call fails with this message (`/healthz` still answers).
    Unconfigured(String),
}

impl Backend {
    fn from_env(env: &Env) -> Backend {
        let mode = env
            .var(STORE_VAR)
            .map(|v| v.to_string())
            .unwrap_or_else(|_| "kv".to_string());
        match mode.as_str() {
            "kv" => match env.kv(KV_BINDING) {
                Ok(kv) => Backend::Kv(KvJobStore::new(kv)),
                Err(e) => Backend::Unconfigured(format!(
                    "{KV_BINDING}: no KV namespace is bound under this name ({e})"
                )),
            },
            "durable_object" => match env.durable_object(DO_BINDING) {
                Ok(ns) => Backend::Durable(DoJobStore::new(ns).with_index(env.kv(KV_BINDING).ok())),
                Err(e) => Backend::Unconfigured(format!(
                    "{DO_BINDING}: no Durable Object namespace is bound under this name ({e})"
                )),
            },
            other => Backend::Unconfigured(format!(
                "{STORE_VAR}: must be \"kv\" or \"durable_object\" (got {other:?})"
            )),
        }
    }

    fn unconfigured(msg: &str) -> StoreError {
        StoreError::Config(msg.to_string())
    }
}

impl Store for Backend {
    type Error = StoreError;

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, StoreError> {
        match self {
            Backend::Kv(s) => s.load(job_id).await,
            Backend::Durable(s) => s.load(job_id).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, StoreError> {
        match self {
            Backend::Kv(s) => s.save(job_id, write).await,
            Backend::Durable(s) => s.save(job_id, write).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, StoreError> {
        match self {
            Backend::Kv(s) => s.delete(job_id, expected_version).await,
            Backend::Durable(s) => s.delete(job_id, expected_version).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn version(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        match self {
            Backend::Kv(s) => s.version(job_id).await,
            Backend::Durable(s) => s.load(job_id).await.map(|d| d.map(|d| d.version)),
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn load_workload(&self, workload: &str) -> Result<Option<StoredWorkload>, StoreError> {
        match self {
            Backend::Kv(s) => s.load_workload(workload).await,
            Backend::Durable(s) => s.load_workload(workload).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> Result<Saved, StoreError> {
        match self {
            Backend::Kv(s) => s.save_workload(workload, state, expected_version).await,
            Backend::Durable(s) => s.save_workload(workload, state, expected_version).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, StoreError> {
        match self {
            Backend::Kv(s) => s.archived_trials(job_id).await,
            Backend::Durable(s) => s.archived_trials(job_id).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }

    async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, StoreError> {
        match self {
            Backend::Kv(s) => s.list_jobs(after, limit).await.map(Some),
            Backend::Durable(s) => s.list_jobs(after, limit).await,
            Backend::Unconfigured(m) => Err(Self::unconfigured(m)),
        }
    }
}

/// The Worker's clock, entropy (Web Crypto) and timer.
pub struct WorkerEnv;

impl HostEnv for WorkerEnv {
    fn now_ms(&mut self) -> i64 {
        js_sys::Date::now() as i64
    }

    fn entropy(&mut self) -> u64 {
        let mut buf = [0u8; 8];
        if getrandom::getrandom(&mut buf).is_ok() {
            return u64::from_le_bytes(buf);
        }
        // Web Crypto is always there on workerd; should it fail, fall back to
        // Math.random (two 32-bit halves) rather than panicking.
        let hi = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        let lo = (js_sys::Math::random() * 4_294_967_296.0) as u64;
        (hi << 32) | lo
    }

    async fn backoff(&mut self, ms: u64) {
        worker::Delay::from(Duration::from_millis(ms)).await;
    }
}

/// The service settings: the token from the `WATTWISE_TOKEN` secret (or var; empty
/// means no auth), the core's default limits.
pub fn config(env: &Env) -> ServiceConfig {
    let token = env
        .secret(TOKEN_BINDING)
        .map(|s| s.to_string())
        .or_else(|_| env.var(TOKEN_BINDING).map(|v| v.to_string()))
        .ok()
        .filter(|t| !t.is_empty());
    ServiceConfig {
        token,
        ..ServiceConfig::default()
    }
}

/// A request as the service reads it: method, path, query, `Authorization`, body.
pub struct Incoming {
    /// The method, as sent.
    pub method: String,
    /// The path (percent-encoded, as in the URL).
    pub path: String,
    /// The query without `?`.
    pub query: String,
    /// The `Authorization` header.
    pub authorization: Option<String>,
    /// The body, as read (see [`read_body`]).
    pub body: ReadBody,
}

impl Incoming {
    /// Reads `req`, its body up to `max_body` bytes.
    pub async fn read(req: &mut Request, max_body: usize) -> worker::Result<Incoming> {
        let url = req.url()?;
        Ok(Incoming {
            method: req.inner().method(),
            path: url.path().to_string(),
            query: url.query().unwrap_or("").to_string(),
            authorization: req.headers().get("Authorization").ok().flatten(),
            body: read_body(req, max_body).await,
        })
    }

    /// The service's view of it.
    pub fn request(&self) -> service::Request<'_> {
        service::Request {
            method: &self.method,
            path: &self.path,
            query: &self.query,
            authorization: self.authorization.as_deref(),
            body: self.body.as_body(),
        }
    }
}

/// Reads the request body through the core's [`BodyReader`] (which decides
/// 413 and keeps at most `max` bytes); the service answers 413 or 400 after
/// checking auth, as for any request.
async fn read_body(req: &mut Request, max: usize) -> ReadBody {
    let declared = req.headers().get("Content-Length").ok().flatten();
    let mut reader = match BodyReader::start(declared.as_deref(), max) {
        Ok(reader) => reader,
        Err(answer) => return answer,
    };
    if req.inner().body().is_none() {
        return reader.finish();
    }
    match req.bytes().await {
        Ok(b) => match reader.push(&b) {
            Ok(()) => reader.finish(),
            Err(answer) => answer,
        },
        Err(_) => ReadBody::Unreadable,
    }
}

/// `POST /__store_contract?prefix=P` in a test build: the store contract suite
/// against this Worker's store, on jobs named `P-0`, `P-1`, ...; answers the
/// number of checks and the violations.
#[cfg(feature = "store-contract")]
async fn store_contract_answer(backend: &Backend, query: &str) -> worker::Result<Response> {
    use wattwise_core::store_contract;
    let prefix = query
        .split('&')
        .find_map(|p| p.strip_prefix("prefix="))
        .unwrap_or("contract");
    let violations: Vec<String> = store_contract::check(backend, prefix)
        .await
        .iter()
        .map(ToString::to_string)
        .collect();
    let body = serde_json::json!({
        "checks": store_contract::CHECKS.len(),
        "violations": violations,
    });
    Response::from_json(&body)
}

/// An error answered by the Worker itself, in the service's error format.
fn error_response(e: &ApiError) -> worker::Result<Response> {
    let mut resp = Response::from_bytes(e.body().into_bytes())?.with_status(e.status());
    resp.headers_mut().set("Content-Type", "application/json")?;
    Ok(resp)
}

/// The service's answer as a Worker response.
pub fn to_response(out: service::Response) -> worker::Result<Response> {
    let mut resp = Response::from_bytes(out.body)?.with_status(out.status);
    resp.headers_mut().set("Content-Type", out.content_type)?;
    Ok(resp)
}

#[event(fetch)]
async fn fetch(mut req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let config = config(&env);
    let incoming = match Incoming::read(&mut req, config.max_body_bytes).await {
        Ok(i) => i,
        Err(e) => return error_response(&ApiError::BadRequest(format!("request: {e}"))),
    };
    let backend = Backend::from_env(&env);
    #[cfg(feature = "store-contract")]
    if incoming.path == "/__store_contract" {
        return store_contract_answer(&backend, &incoming.query).await;
    }
    // Durable Object mode: a request for one job runs in that job's object.
    if let Backend::Durable(objects) = &backend {
        let request = incoming.request();
        if let Some(job_id) = request.job_id().filter(|_| config.admit(&request).is_ok()) {
            return match objects.forward(&job_id, &incoming).await {
                Ok(resp) => Ok(resp),
                Err(e) => {
                    worker::console_warn!("wattwise: job {job_id}'s object failed: {e}");
                    error_response(&ApiError::Unavailable(format!("job {job_id:?}: {e}")))
                }
            };
        }
    }
    let out = Service::new(backend, config)
        .handle(incoming.request(), &mut WorkerEnv)
        .await;
    if out.status >= 500 {
        worker::console_warn!(
            "wattwise: {} {} -> {}",
            incoming.method,
            incoming.path,
            out.status
        );
    }
    to_response(out)
}
