//! The Durable Object mode: one `JobObject` per job (named by its job id) holds that
//! job's document and archived trials in its transactional storage.
//!
//! A request that names its job ([`wattwise_core::service::Request::job_id`]) is forwarded whole
//! to that job's object, which runs the core's service there over its own storage
//! ([`ObjectStore`]). Any other request (a registration with a generated id, say)
//! runs in the Worker over [`DoJobStore`], which reaches the job's object for each
//! store call (`/__store/load`, `save`, `delete`, `archived`). Either way, the
//! compare-and-write happens inside the object: storage calls hold its input gate,
//! so no other request to that object runs between the compare and the write, and
//! one `put` of several keys writes the archived trials and the document together.
//! A workload's shared document lives in one more object, named `workload/<name>`
//! (no job id holds a `/`), under its storage key `workload`, reached the same way
//! (`/__store/workload_load`, `workload_save`) from the Worker and from a job's
//! object. This mode is strongly consistent from every location.

use js_sys::{Object, Reflect, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use wattwise_core::job::JobState;
use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::service::{Saved, Service, Store, Stored, StoredWorkload, Write};
use wattwise_core::store::{ListCursor, Listed};
use wattwise_core::trial::Trial;
use worker::kv::KvStore;
use worker::{
    durable_object, DurableObject, Env, Headers, ListOptions, Method, ObjectNamespace, Request,
    RequestInit, Response, State, Storage,
};

use super::job_index;
use super::record::{
    doc_json, parse_created_ms, parse_doc, parse_version, parse_workload, workload_json,
    workload_key, StoreError,
};
use super::{config, to_response, Incoming, ReadBody, WorkerEnv, DO_BINDING, KV_BINDING};

/// The storage key of the document.
const DOC_KEY: &str = "doc";
/// The storage key of a workload's document, in the workload's object.
const WORKLOAD_DOC_KEY: &str = "workload";
/// The storage key prefix of archived trials.
const TRIAL_PREFIX: &str = "trial/";
/// The origin of the URLs the Worker sends its objects (never leaves workerd).
const OBJECT_ORIGIN: &str = "https://job.wattwise.internal";
/// The path prefix of the store calls.
const STORE_PATH: &str = "/__store/";
/// The header naming the job a request to an object is for.
const JOB_HEADER: &str = "X-Wattwise-Job";

fn trial_key(n: u64) -> String {
    format!("{TRIAL_PREFIX}{n:020}")
}

fn do_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Durable(e.to_string())
}

/// A `save` store call.
#[derive(Serialize)]
struct SaveCallRef<'a> {
    expected: Option<u64>,
    state: &'a JobState,
    archive: &'a [Trial],
}

#[derive(Deserialize)]
struct SaveCall {
    expected: Option<u64>,
    state: JobState,
    archive: Vec<Trial>,
}

/// A `workload_save` store call.
#[derive(Serialize)]
struct WorkloadSaveRef<'a> {
    expected: Option<u64>,
    state: &'a WorkloadState,
}

#[derive(Deserialize)]
struct WorkloadSave {
    expected: Option<u64>,
    state: WorkloadState,
}

/// A `delete` store call.
#[derive(Serialize, Deserialize)]
struct DeleteCall {
    expected: u64,
}

/// The answer to `save` and `delete`.
#[derive(Serialize, Deserialize)]
struct Written {
    saved: bool,
}

/// One job's storage, inside its object. It serves only that job (and reaches
/// its workload's document in the workload's object).
pub struct ObjectStore {
    storage: Storage,
    job_id: String,
    /// The KV job list index, when a KV namespace is bound.
    index: Option<KvStore>,
    /// The objects' namespace, for the workloads' objects.
    objects: Option<ObjectNamespace>,
}

/// Makes a store call on the object named `name` (a job id, or a workload's
/// key); answers its status and body.
async fn object_call(
    namespace: &ObjectNamespace,
    name: &str,
    op: &str,
    body: String,
) -> Result<(u16, String), StoreError> {
    let stub = namespace.get_by_name(name).map_err(do_err)?;
    let headers = Headers::new();
    headers.set(JOB_HEADER, name).map_err(do_err)?;
    let mut init = RequestInit::new();
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(JsValue::from_str(&body)));
    let req = Request::new_with_init(&format!("{OBJECT_ORIGIN}{STORE_PATH}{op}"), &init)
        .map_err(do_err)?;
    let mut resp = stub.fetch_with_request(req).await.map_err(do_err)?;
    let status = resp.status_code();
    let text = resp.text().await.map_err(do_err)?;
    Ok((status, text))
}

/// A workload's document, from its object.
async fn load_workload_from(
    namespace: &ObjectNamespace,
    name: &str,
) -> Result<Option<StoredWorkload>, StoreError> {
    match object_call(
        namespace,
        &workload_key(name),
        "workload_load",
        String::new(),
    )
    .await?
    {
        (200, text) => parse_workload(&text).map(Some),
        (404, _) => Ok(None),
        (status, text) => Err(StoreError::Durable(format!("{status}: {text}"))),
    }
}

/// Writes a workload's document in its object if its version is still `expected`.
async fn save_workload_to(
    namespace: &ObjectNamespace,
    name: &str,
    state: &WorkloadState,
    expected: Option<u64>,
) -> Result<Saved, StoreError> {
    let body = serde_json::to_string(&WorkloadSaveRef { expected, state })
        .map_err(|e| StoreError::Corrupt(format!("workload_save call: {e}")))?;
    let (status, text) = object_call(namespace, &workload_key(name), "workload_save", body).await?;
    DoJobStore::written(status, &text)
}

fn no_objects() -> StoreError {
    StoreError::Config(format!(
        "{DO_BINDING}: no Durable Object namespace is bound"
    ))
}

impl ObjectStore {
    fn check(&self, job_id: &str) -> Result<(), StoreError> {
        if job_id == self.job_id {
            Ok(())
        } else {
            Err(StoreError::Durable(format!(
                "a call for job {job_id:?} reached the object of job {:?}",
                self.job_id
            )))
        }
    }

    async fn stored_version(&self) -> Result<Option<u64>, StoreError> {
        let doc: Option<String> = self.storage.get(DOC_KEY).await.map_err(do_err)?;
        doc.as_deref().map(parse_version).transpose()
    }

    async fn load_text(&self) -> Result<Option<String>, StoreError> {
        self.storage.get(DOC_KEY).await.map_err(do_err)
    }
}

impl Store for ObjectStore {
    type Error = StoreError;

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, StoreError> {
        self.check(job_id)?;
        self.load_text()
            .await?
            .as_deref()
            .map(parse_doc)
            .transpose()
    }

    async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, StoreError> {
        let (state, expected_version) = (write.state, write.expected_version);
        self.check(job_id)?;
        if self.stored_version().await? != expected_version {
            return Ok(Saved::Conflict);
        }
        if let (None, Some(kv)) = (expected_version, &self.index) {
            // Listed before it exists: the list skips an entry without a document.
            job_index::add(kv, state.created_ms(), job_id).await?;
        }
        let values = Object::new();
        let set = |k: &str, v: String| {
            Reflect::set(&values, &JsValue::from_str(k), &JsValue::from_str(&v))
                .map(|_| ())
                .map_err(|e| StoreError::Durable(format!("{e:?}")))
        };
        for t in write.archive {
            let text =
                serde_json::to_string(t).map_err(|e| StoreError::Corrupt(format!("trial: {e}")))?;
            set(&trial_key(t.trial_number), text)?;
        }
        set(DOC_KEY, doc_json(state, expected_version.unwrap_or(0) + 1)?)?;
        // One put of several keys: all written or none.
        self.storage
            .put_multiple_raw(values)
            .await
            .map_err(do_err)?;
        Ok(Saved::Ok)
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, StoreError> {
        self.check(job_id)?;
        let text = self.load_text().await?;
        if text.as_deref().map(parse_version).transpose()? != Some(expected_version) {
            return Ok(Saved::Conflict);
        };
        self.storage.delete_all().await.map_err(do_err)?;
        if let (Some(kv), Some(created_ms)) =
            (&self.index, text.as_deref().and_then(parse_created_ms))
        {
            job_index::remove(kv, created_ms, job_id).await?;
        }
        Ok(Saved::Ok)
    }

    async fn version(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        self.check(job_id)?;
        self.stored_version().await
    }

    async fn load_workload(&self, workload: &str) -> Result<Option<StoredWorkload>, StoreError> {
        load_workload_from(self.objects.as_ref().ok_or_else(no_objects)?, workload).await
    }

    async fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> Result<Saved, StoreError> {
        let objects = self.objects.as_ref().ok_or_else(no_objects)?;
        save_workload_to(objects, workload, state, expected_version).await
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, StoreError> {
        self.check(job_id)?;
        let map = self
            .storage
            .list_with_options(ListOptions::new().prefix(TRIAL_PREFIX))
            .await
            .map_err(do_err)?;
        let mut trials = Vec::new();
        for value in map.values() {
            let value = value.map_err(|e| StoreError::Durable(format!("{e:?}")))?;
            let text = value
                .as_string()
                .ok_or_else(|| StoreError::Corrupt("archived trial is not a string".into()))?;
            trials.push(
                serde_json::from_str(&text)
                    .map_err(|e| StoreError::Corrupt(format!("archived trial: {e}")))?,
            );
        }
        Ok(trials)
    }
}

/// One job's Durable Object.
#[durable_object]
pub struct JobObject {
    state: State,
    env: Env,
}

/// A 200 JSON answer from the object.
fn answer<T: Serialize>(value: &T) -> Result<Response, StoreError> {
    Response::from_json(value).map_err(do_err)
}

impl JobObject {
    /// Answers a store call from the Worker's [`DoJobStore`].
    async fn store_call(
        &self,
        store: &ObjectStore,
        op: &str,
        body: &str,
    ) -> Result<Response, StoreError> {
        let job_id = store.job_id.as_str();
        match op {
            "load" => match store.load_text().await? {
                Some(text) => Response::ok(text).map_err(do_err),
                None => Response::error("no document", 404).map_err(do_err),
            },
            "save" => {
                let call: SaveCall = serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("save call: {e}")))?;
                let saved = store
                    .save(
                        job_id,
                        Write::new(&call.state, call.expected, &call.archive),
                    )
                    .await?;
                answer(&Written {
                    saved: saved == Saved::Ok,
                })
            }
            "delete" => {
                let call: DeleteCall = serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("delete call: {e}")))?;
                let saved = store.delete(job_id, call.expected).await?;
                answer(&Written {
                    saved: saved == Saved::Ok,
                })
            }
            "archived" => answer(&store.archived_trials(job_id).await?),
            // In a workload's object: its document, compared and written under the
            // object's input gate like a job's.
            "workload_load" => {
                let text: Option<String> =
                    store.storage.get(WORKLOAD_DOC_KEY).await.map_err(do_err)?;
                match text {
                    Some(text) => Response::ok(text).map_err(do_err),
                    None => Response::error("no document", 404).map_err(do_err),
                }
            }
            "workload_save" => {
                let call: WorkloadSave = serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("workload_save call: {e}")))?;
                let text: Option<String> =
                    store.storage.get(WORKLOAD_DOC_KEY).await.map_err(do_err)?;
                let current = text.as_deref().map(parse_version).transpose()?;
                let saved = current == call.expected;
                if saved {
                    let version = call.expected.unwrap_or(0) + 1;
                    store
                        .storage
                        .put(WORKLOAD_DOC_KEY, workload_json(&call.state, version)?)
                        .await
                        .map_err(do_err)?;
                }
                answer(&Written { saved })
            }
            other => Response::error(format!("no store call {other}"), 404).map_err(do_err),
        }
    }
}

impl DurableObject for JobObject {
    fn new(state: State, env: Env) -> Self {
        JobObject { state, env }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let job_id = req.headers().get(JOB_HEADER)?.unwrap_or_default();
        let store = ObjectStore {
            storage: self.state.storage(),
            job_id,
            index: self.env.kv(KV_BINDING).ok(),
            objects: self.env.durable_object(DO_BINDING).ok(),
        };
        let path = req.path();
        if let Some(op) = path.strip_prefix(STORE_PATH) {
            let body = req.text().await?;
            return match self.store_call(&store, op, &body).await {
                Ok(resp) => Ok(resp),
                Err(e) => Response::error(e.to_string(), 500),
            };
        }
        // A request the Worker forwarded: the service runs here, on this job's storage.
        let config = config(&self.env);
        let incoming = Incoming::read(&mut req, config.max_body_bytes).await?;
        let out = Service::new(store, config)
            .handle(incoming.request(), &mut WorkerEnv)
            .await;
        to_response(out)
    }
}

/// The Worker's side of the Durable Object mode.
pub struct DoJobStore {
    namespace: ObjectNamespace,
    /// The KV job list index, when a KV namespace is bound.
    index: Option<KvStore>,
}

impl DoJobStore {
    /// A store over the Durable Object namespace bound to the Worker.
    pub fn new(namespace: ObjectNamespace) -> Self {
        DoJobStore {
            namespace,
            index: None,
        }
    }

    /// Lists jobs through the KV job index in `kv` (the objects write it).
    pub fn with_index(mut self, kv: Option<KvStore>) -> Self {
        self.index = kv;
        self
    }

    /// A page of the job list: the KV index, then each job's document from its
    /// object. `None` without a KV namespace.
    pub async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, StoreError> {
        let Some(kv) = &self.index else {
            return Ok(None);
        };
        let (ids, next) = job_index::page(kv, after, limit).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(stored) = self.load(&id).await? {
                jobs.push(stored);
            }
        }
        Ok(Some(Listed { jobs, next }))
    }

    /// Forwards a whole API request to `job_id`'s object, which answers it.
    pub async fn forward(&self, job_id: &str, incoming: &Incoming) -> worker::Result<Response> {
        let method = match incoming.method.as_str() {
            "GET" => Method::Get,
            "POST" => Method::Post,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            other => return Err(worker::Error::RustError(format!("cannot forward {other}"))),
        };
        let headers = Headers::new();
        headers.set(JOB_HEADER, job_id)?;
        headers.set("Content-Type", "application/json")?;
        if let Some(auth) = &incoming.authorization {
            headers.set("Authorization", auth)?;
        }
        let mut init = RequestInit::new();
        init.with_method(method).with_headers(headers);
        let body = match &incoming.body {
            ReadBody::Bytes(b) => &b[..],
            // Only admitted requests are forwarded; theirs were read whole.
            ReadBody::TooLarge | ReadBody::Unreadable => &[],
        };
        if !body.is_empty() && incoming.method != "GET" {
            init.with_body(Some(Uint8Array::from(body).into()));
        }
        let mut url = format!("{OBJECT_ORIGIN}{}", incoming.path);
        if !incoming.query.is_empty() {
            url.push('?');
            url.push_str(&incoming.query);
        }
        let stub = self.namespace.get_by_name(job_id)?;
        stub.fetch_with_request(Request::new_with_init(&url, &init)?)
            .await
    }

    /// Makes a store call on `job_id`'s object; answers its status and body.
    async fn call(
        &self,
        job_id: &str,
        op: &str,
        body: String,
    ) -> Result<(u16, String), StoreError> {
        object_call(&self.namespace, job_id, op, body).await
    }

    /// A workload's document, from its object.
    pub async fn load_workload(&self, name: &str) -> Result<Option<StoredWorkload>, StoreError> {
        load_workload_from(&self.namespace, name).await
    }

    /// Writes a workload's document if its version is still `expected`.
    pub async fn save_workload(
        &self,
        name: &str,
        state: &WorkloadState,
        expected: Option<u64>,
    ) -> Result<Saved, StoreError> {
        save_workload_to(&self.namespace, name, state, expected).await
    }

    fn written(status: u16, text: &str) -> Result<Saved, StoreError> {
        if status != 200 {
            return Err(StoreError::Durable(format!("{status}: {text}")));
        }
        let w: Written = serde_json::from_str(text)
            .map_err(|e| StoreError::Durable(format!("bad answer: {e}")))?;
        Ok(if w.saved { Saved::Ok } else { Saved::Conflict })
    }

    /// The job's document.
    pub async fn load(&self, job_id: &str) -> Result<Option<Stored>, StoreError> {
        match self.call(job_id, "load", String::new()).await? {
            (200, text) => parse_doc(&text).map(Some),
            (404, _) => Ok(None),
            (status, text) => Err(StoreError::Durable(format!("{status}: {text}"))),
        }
    }

    /// Writes the document and the trials leaving it if the version is still `expected`.
    pub async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, StoreError> {
        let body = serde_json::to_string(&SaveCallRef {
            expected: write.expected_version,
            state: write.state,
            archive: write.archive,
        })
        .map_err(|e| StoreError::Corrupt(format!("save call: {e}")))?;
        let (status, text) = self.call(job_id, "save", body).await?;
        Self::written(status, &text)
    }

    /// Deletes the job's object storage if the version is still `expected`.
    pub async fn delete(&self, job_id: &str, expected: u64) -> Result<Saved, StoreError> {
        let body = serde_json::to_string(&DeleteCall { expected })
            .map_err(|e| StoreError::Corrupt(format!("delete call: {e}")))?;
        let (status, text) = self.call(job_id, "delete", body).await?;
        Self::written(status, &text)
    }

    /// The job's archived trials.
    pub async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, StoreError> {
        match self.call(job_id, "archived", String::new()).await? {
            (200, text) => serde_json::from_str(&text)
                .map_err(|e| StoreError::Corrupt(format!("archived trials: {e}"))),
            (status, text) => Err(StoreError::Durable(format!("{status}: {text}"))),
        }
    }
}
