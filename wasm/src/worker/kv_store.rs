//! The Workers KV store: one key per job document, one append-only key per archived trial.
//!
//! Keys: `job/<job_id>` holds `{"version": n, "state": {...}}`; `trial/<job_id>/<n>`
//! (n zero-padded to 20 digits) holds one archived trial, its JSON also in the key's
//! metadata so that listing the archive needs no reads; `workload/<name>` holds a
//! workload's shared document `{"version": n, "state": {...}}`, written like a
//! job's (under a lock of its key, with the isolate's own newer write preferred).
//! Job ids cannot contain `/`.
//!
//! KV has no compare-and-set and is eventually consistent, so the conditional write
//! is emulated inside the isolate: a per-job lock ([`crate::job_lock`]) around
//! "read the version, compare, write", and an isolate cache of the documents this
//! isolate wrote, so a read that KV serves stale still sees this isolate's own
//! writes. Across isolates and locations nothing is serialized (see wasm/README.md;
//! the Durable Object mode is the strongly consistent one).

use std::cell::RefCell;
use std::collections::HashMap;

use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::service::{Saved, Stored, StoredWorkload, Write};
use wattwise_core::store::{ListCursor, Listed};
use wattwise_core::trial::Trial;
use worker::kv::KvStore;

use super::job_index;
use super::record::{
    doc_json, parse_created_ms, parse_doc, parse_version, parse_workload, workload_json,
    workload_key, StoreError,
};
use crate::job_lock;

/// Documents kept in the isolate cache before it is cleared.
const CACHE_LIMIT: usize = 1024;
/// KV list page size (the most KV returns).
const LIST_PAGE: u64 = 1000;

thread_local! {
    /// The newest document this isolate wrote, per job.
    static WRITTEN: RefCell<HashMap<String, Stored>> = RefCell::new(HashMap::new());
    /// The newest workload document this isolate wrote, per workload.
    static WORKLOADS: RefCell<HashMap<String, StoredWorkload>> = RefCell::new(HashMap::new());
}

fn remember(job_id: &str, stored: Stored) {
    WRITTEN.with(|w| {
        let mut w = w.borrow_mut();
        if w.len() >= CACHE_LIMIT && !w.contains_key(job_id) {
            w.clear();
        }
        w.insert(job_id.to_string(), stored);
    });
}

fn forget(job_id: &str) {
    WRITTEN.with(|w| w.borrow_mut().remove(job_id));
}

fn cached(job_id: &str) -> Option<Stored> {
    WRITTEN.with(|w| w.borrow().get(job_id).cloned())
}

/// Between tries for a job lock another request holds: 1, 2, then 4 ms.
async fn lock_pause(tries: u32) {
    let ms = 1u64 << tries.clamp(1, 3).saturating_sub(1);
    worker::Delay::from(std::time::Duration::from_millis(ms)).await;
}

fn kv_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Kv(e.to_string())
}

/// The key of a job document.
pub fn doc_key(job_id: &str) -> String {
    format!("job/{job_id}")
}

/// The key prefix of a job's archived trials.
pub fn trial_prefix(job_id: &str) -> String {
    format!("trial/{job_id}/")
}

/// The key of one archived trial.
pub fn trial_key(job_id: &str, trial_number: u64) -> String {
    format!("trial/{job_id}/{trial_number:020}")
}

/// Job documents and archived trials in one KV namespace.
pub struct KvJobStore {
    kv: KvStore,
}

impl KvJobStore {
    /// A store over the namespace bound as `kv`.
    pub fn new(kv: KvStore) -> Self {
        KvJobStore { kv }
    }

    /// The document as KV has it, or the isolate's own newer write.
    pub async fn load(&self, job_id: &str) -> Result<Option<Stored>, StoreError> {
        let text = self.doc_text(job_id).await?;
        let from_kv = text.as_deref().map(parse_doc).transpose()?;
        Ok(match (from_kv, cached(job_id)) {
            (Some(kv), Some(mine)) if mine.version > kv.version => Some(mine),
            (None, Some(mine)) => Some(mine),
            (kv, _) => kv,
        })
    }

    /// Writes the trials leaving the document, then the document, if the version is
    /// still `expected` (under the job's lock).
    pub async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, StoreError> {
        let Write {
            state,
            expected_version: expected,
            archive,
        } = write;
        let _guard = job_lock::lock(job_id, lock_pause).await;
        let current = self.load(job_id).await?.map(|s| s.version);
        if current != expected {
            return Ok(Saved::Conflict);
        }
        if expected.is_none() {
            // Trial records a failed purge left behind belong to no job now: a job
            // created again must not see them (the store contract).
            self.purge_trials(job_id).await?;
            // Listed before it exists: the list skips an entry without a document.
            job_index::add(&self.kv, state.created_ms(), job_id).await?;
        }
        // Archived trials first: a document never points past what the archive holds.
        for t in archive {
            let json =
                serde_json::to_string(t).map_err(|e| StoreError::Corrupt(format!("trial: {e}")))?;
            self.kv
                .put(&trial_key(job_id, t.trial_number), json)
                .map_err(kv_err)?
                .metadata(t)
                .map_err(kv_err)?
                .execute()
                .await
                .map_err(kv_err)?;
        }
        let version = expected.unwrap_or(0) + 1;
        self.kv
            .put(&doc_key(job_id), doc_json(state, version)?)
            .map_err(kv_err)?
            .execute()
            .await
            .map_err(kv_err)?;
        remember(
            job_id,
            Stored {
                state: state.clone(),
                version,
            },
        );
        // Read-after-write check: KV within one location normally shows the write at
        // once; when it does not, the isolate cache answers until it does.
        let seen = self
            .doc_text(job_id)
            .await?
            .as_deref()
            .map(parse_doc)
            .transpose()?
            .map(|s| s.version);
        if seen != Some(version) {
            worker::console_warn!(
                "wattwise: KV shows version {seen:?} of job {job_id} right after writing {version}; serving the isolate's copy"
            );
        }
        Ok(Saved::Ok)
    }

    /// A workload's document as KV has it, or the isolate's own newer write.
    pub async fn load_workload(&self, name: &str) -> Result<Option<StoredWorkload>, StoreError> {
        let text = self
            .kv
            .get(&workload_key(name))
            .text()
            .await
            .map_err(kv_err)?;
        let from_kv = text.as_deref().map(parse_workload).transpose()?;
        let mine = WORKLOADS.with(|w| w.borrow().get(name).cloned());
        Ok(match (from_kv, mine) {
            (Some(kv), Some(mine)) if mine.version > kv.version => Some(mine),
            (None, Some(mine)) => Some(mine),
            (kv, _) => kv,
        })
    }

    /// Writes a workload's document if its version is still `expected` (under
    /// the lock of its key).
    pub async fn save_workload(
        &self,
        name: &str,
        state: &WorkloadState,
        expected: Option<u64>,
    ) -> Result<Saved, StoreError> {
        let key = workload_key(name);
        let _guard = job_lock::lock(&key, lock_pause).await;
        if self.load_workload(name).await?.map(|s| s.version) != expected {
            return Ok(Saved::Conflict);
        }
        let version = expected.unwrap_or(0) + 1;
        self.kv
            .put(&key, workload_json(state, version)?)
            .map_err(kv_err)?
            .execute()
            .await
            .map_err(kv_err)?;
        WORKLOADS.with(|w| {
            let mut w = w.borrow_mut();
            if w.len() >= CACHE_LIMIT && !w.contains_key(name) {
                w.clear();
            }
            w.insert(
                name.to_string(),
                StoredWorkload {
                    state: state.clone(),
                    version,
                },
            );
        });
        Ok(Saved::Ok)
    }

    /// The document's version (KV's, or the isolate's own newer write), read
    /// without parsing the document, so a job whose document no longer parses can
    /// still be deleted.
    pub async fn version(&self, job_id: &str) -> Result<Option<u64>, StoreError> {
        let text = self.doc_text(job_id).await?;
        let from_kv = text.as_deref().map(parse_version).transpose()?;
        let mine = cached(job_id).map(|s| s.version);
        Ok(from_kv.max(mine))
    }

    /// Deletes the document, then its archived trials, if the version is still
    /// `expected` (the document is the commit point: a failure midway leaves trial
    /// records that the next create of this job clears).
    pub async fn delete(&self, job_id: &str, expected: u64) -> Result<Saved, StoreError> {
        let _guard = job_lock::lock(job_id, lock_pause).await;
        if self.version(job_id).await? != Some(expected) {
            return Ok(Saved::Conflict);
        };
        // The index key needs the creation time, which never changes: this isolate's
        // copy, else whatever KV holds, read leniently so a corrupt job still leaves.
        let created_ms = match cached(job_id) {
            Some(s) => Some(s.state.created_ms()),
            None => self
                .doc_text(job_id)
                .await?
                .as_deref()
                .and_then(parse_created_ms),
        };
        self.kv.delete(&doc_key(job_id)).await.map_err(kv_err)?;
        forget(job_id);
        if let Some(created_ms) = created_ms {
            job_index::remove(&self.kv, created_ms, job_id).await?;
        }
        self.purge_trials(job_id).await?;
        Ok(Saved::Ok)
    }

    /// The job document's text as KV holds it.
    async fn doc_text(&self, job_id: &str) -> Result<Option<String>, StoreError> {
        self.kv.get(&doc_key(job_id)).text().await.map_err(kv_err)
    }

    /// Deletes every archived trial record of `job_id`.
    async fn purge_trials(&self, job_id: &str) -> Result<(), StoreError> {
        for key in self.trial_keys(job_id).await? {
            self.kv.delete(&key.name).await.map_err(kv_err)?;
        }
        Ok(())
    }

    async fn trial_keys(&self, job_id: &str) -> Result<Vec<worker::kv::Key>, StoreError> {
        let mut keys = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut list = self.kv.list().prefix(trial_prefix(job_id)).limit(LIST_PAGE);
            if let Some(c) = cursor.take() {
                list = list.cursor(c);
            }
            let page = list.execute().await.map_err(kv_err)?;
            keys.extend(page.keys);
            match page.cursor {
                Some(c) if !page.list_complete && !c.is_empty() => cursor = Some(c),
                _ => break,
            }
        }
        Ok(keys)
    }

    /// A page of the job list (see [`job_index`]): one KV list, one read per job.
    pub async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Listed, StoreError> {
        let (ids, next) = job_index::page(&self.kv, after, limit).await?;
        let mut jobs = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(stored) = self.load(&id).await? {
                jobs.push(stored);
            }
        }
        Ok(Listed { jobs, next })
    }

    /// The job's archived trials (from the keys' metadata; a key without it is read).
    pub async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, StoreError> {
        let mut trials = Vec::new();
        for key in self.trial_keys(job_id).await? {
            let from_meta = key
                .metadata
                .and_then(|m| serde_json::from_value::<Trial>(m).ok());
            let trial = match from_meta {
                Some(t) => t,
                None => {
                    let Some(text) = self.kv.get(&key.name).text().await.map_err(kv_err)? else {
                        continue;
                    };
                    serde_json::from_str(&text)
                        .map_err(|e| StoreError::Corrupt(format!("{}: {e}", key.name)))?
                }
            };
            trials.push(trial);
        }
        Ok(trials)
    }
}
