//! The Durable Object mode: one `JobObject` per job (named by its job id) holds that
//! job's document and archived trials in its transactional storage.
//!
//! The Worker runs the service and reaches the job's object for each store call
//! ([`DoJobStore`]); the object answers `load`, `save` (compare the version, then
//! write the trials and the document in one `put` of several keys), `delete` and
//! `archived`. Storage calls inside one request hold the object's input gate, so a
//! compare and its write never interleave with another request: this mode is
//! strongly consistent from every location.

use js_sys::{Object, Reflect};
use serde::{Deserialize, Serialize};
use wasm_bindgen::JsValue;
use wattwise_core::job::JobState;
use wattwise_core::service::{Saved, Stored};
use wattwise_core::trial::Trial;
use worker::{
    durable_object, DurableObject, Env, ListOptions, Method, ObjectNamespace, Request, RequestInit,
    Response, State,
};

use super::record::{doc_json, parse_doc, StoreError};

/// The storage key of the document.
const DOC_KEY: &str = "doc";
/// The storage key prefix of archived trials.
const TRIAL_PREFIX: &str = "trial/";
/// The host part of the URLs the Worker sends its object (never leaves workerd).
const OBJECT_ORIGIN: &str = "https://job.wattwise.internal";

fn trial_key(n: u64) -> String {
    format!("{TRIAL_PREFIX}{n:020}")
}

/// A `save` call.
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

/// A `delete` call.
#[derive(Serialize, Deserialize)]
struct DeleteCall {
    expected: u64,
}

/// The answer to `save` and `delete`.
#[derive(Serialize, Deserialize)]
struct Written {
    saved: bool,
}

/// Only the version of a stored document.
#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// One job's Durable Object.
#[durable_object]
pub struct JobObject {
    state: State,
}

fn do_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Durable(e.to_string())
}

impl JobObject {
    async fn version(&self) -> Result<Option<u64>, StoreError> {
        let doc: Option<String> = self.state.storage().get(DOC_KEY).await.map_err(do_err)?;
        doc.map(|text| {
            serde_json::from_str::<VersionOnly>(&text)
                .map(|v| v.version)
                .map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
        })
        .transpose()
    }

    async fn serve(&self, op: &str, body: &str) -> Result<Response, StoreError> {
        let storage = self.state.storage();
        match op {
            "/load" => {
                let doc: Option<String> = storage.get(DOC_KEY).await.map_err(do_err)?;
                match doc {
                    Some(text) => Response::ok(text).map_err(do_err),
                    None => Response::error("no document", 404).map_err(do_err),
                }
            }
            "/save" => {
                let call: SaveCall = serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("save call: {e}")))?;
                if self.version().await? != call.expected {
                    return answer(&Written { saved: false });
                }
                let values = Object::new();
                let set = |k: &str, v: String| {
                    Reflect::set(&values, &JsValue::from_str(k), &JsValue::from_str(&v))
                        .map(|_| ())
                        .map_err(|e| StoreError::Durable(format!("{e:?}")))
                };
                for t in &call.archive {
                    let text = serde_json::to_string(t)
                        .map_err(|e| StoreError::Corrupt(format!("trial: {e}")))?;
                    set(&trial_key(t.trial_number), text)?;
                }
                let version = call.expected.unwrap_or(0) + 1;
                set(DOC_KEY, doc_json(&call.state, version)?)?;
                // One put of several keys: all written or none.
                storage.put_multiple_raw(values).await.map_err(do_err)?;
                answer(&Written { saved: true })
            }
            "/delete" => {
                let call: DeleteCall = serde_json::from_str(body)
                    .map_err(|e| StoreError::Corrupt(format!("delete call: {e}")))?;
                if self.version().await? != Some(call.expected) {
                    return answer(&Written { saved: false });
                }
                storage.delete_all().await.map_err(do_err)?;
                answer(&Written { saved: true })
            }
            "/archived" => {
                let map = storage
                    .list_with_options(ListOptions::new().prefix(TRIAL_PREFIX))
                    .await
                    .map_err(do_err)?;
                let mut out = String::from("[");
                for (i, value) in map.values().into_iter().enumerate() {
                    let value = value.map_err(|e| StoreError::Durable(format!("{e:?}")))?;
                    let text = value.as_string().ok_or_else(|| {
                        StoreError::Corrupt("archived trial is not a string".into())
                    })?;
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&text);
                }
                out.push(']');
                Response::ok(out).map_err(do_err)
            }
            other => Response::error(format!("no operation {other}"), 404).map_err(do_err),
        }
    }
}

/// A 200 JSON answer from the object.
fn answer<T: Serialize>(value: &T) -> Result<Response, StoreError> {
    Response::from_json(value).map_err(do_err)
}

impl DurableObject for JobObject {
    fn new(state: State, _env: Env) -> Self {
        JobObject { state }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let op = req.path();
        let body = req.text().await?;
        match self.serve(&op, &body).await {
            Ok(resp) => Ok(resp),
            Err(e) => Response::error(e.to_string(), 500),
        }
    }
}

/// The Worker's side: each store call goes to the job's object.
pub struct DoJobStore {
    namespace: ObjectNamespace,
}

impl DoJobStore {
    /// A store over the Durable Object namespace bound to the Worker.
    pub fn new(namespace: ObjectNamespace) -> Self {
        DoJobStore { namespace }
    }

    /// Calls `op` on the job's object; answers its status and body.
    async fn call(
        &self,
        job_id: &str,
        op: &str,
        body: String,
    ) -> Result<(u16, String), StoreError> {
        let stub = self.namespace.get_by_name(job_id).map_err(do_err)?;
        let mut init = RequestInit::new();
        init.with_method(Method::Post)
            .with_body(Some(JsValue::from_str(&body)));
        let req =
            Request::new_with_init(&format!("{OBJECT_ORIGIN}/{op}"), &init).map_err(do_err)?;
        let mut resp = stub.fetch_with_request(req).await.map_err(do_err)?;
        let status = resp.status_code();
        let text = resp.text().await.map_err(do_err)?;
        Ok((status, text))
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
    pub async fn save(
        &self,
        job_id: &str,
        state: &JobState,
        expected: Option<u64>,
        archive: &[Trial],
    ) -> Result<Saved, StoreError> {
        let body = serde_json::to_string(&SaveCallRef {
            expected,
            state,
            archive,
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
