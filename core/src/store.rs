//! The store contract: where job documents and archived trials live.
//!
//! [`Store`] is what every host implements (the memory store here, SQLite and
//! DynamoDB in the lambda crate, Workers KV and Durable Objects in the Worker);
//! its documentation is the contract, and `store_contract` checks it.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Mutex;

use crate::api::ApiError;
use crate::field_error::FieldError;
use crate::job::JobState;
use crate::policy::shared::WorkloadState;
use crate::trial::Trial;

/// A stored job document and its version.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// The document.
    pub state: JobState,
    /// Its version: 1 when created, +1 per write.
    pub version: u64,
}

/// A stored workload document ([`WorkloadState`]) and its version.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredWorkload {
    /// The document.
    pub state: WorkloadState,
    /// Its version: 1 when created, +1 per write.
    pub version: u64,
}

/// One conditional write of a job document.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// The new document.
    pub state: &'a JobState,
    /// The version it replaces; `None` creates the job.
    pub expected_version: Option<u64>,
    /// Finished trials leaving the document, for the archive.
    pub archive: &'a [Trial],
}

impl<'a> Write<'a> {
    /// Writes `state` over `expected_version`, archiving `archive`.
    pub fn new(state: &'a JobState, expected_version: Option<u64>, archive: &'a [Trial]) -> Self {
        Write {
            state,
            expected_version,
            archive,
        }
    }
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
/// The contract every store keeps (the `store_contract` suite checks each rule
/// against the memory store, SQLite, DynamoDB, Workers KV and Durable Objects):
/// - **Versions.** A job's document has a version: 1 when created, +1 per write.
///   `load` and `version` agree; an unknown job has neither.
/// - **Create once.** `save` with `expected_version: None` creates the job, and
///   answers [`Saved::Conflict`] (writing nothing) if it exists.
/// - **Replace by version.** `save` with `Some(v)` replaces the document only if
///   the stored version is still `v`; otherwise Conflict, writing nothing.
/// - **Archive.** `archive` holds finished trials leaving the document: the store
///   appends them, idempotently by trial number, in the same atomic write as the
///   document where it can, else before the document; a write that conflicts
///   archives nothing that a reader can see. A store that pages its archive
///   (`archived_trials_from`) answers the same trials, in trial order.
/// - **Delete.** `delete(v)` removes the document and its archived trials if the
///   version is still `v`, else Conflict, removing nothing. The document goes first
///   (it is the commit point: an acknowledged trial is never lost while its job
///   exists), then the archive.
/// - **A job created again starts clean.** A store whose delete is not atomic
///   (archived trials may outlive a failed purge) clears the job's archived trials
///   when it creates the job, so a new job never sees an old job's trials.
/// - **Workloads.** A workload's shared document ([`WorkloadState`], what the jobs
///   naming that workload taught each other; bounded) is kept apart from every job,
///   under its workload name, with the job documents' version rules: 1 when
///   created, +1 per write, `save_workload` with `None` creates it once and with
///   `Some(v)` replaces it only at version `v`, else Conflict, writing nothing.
///   Deleting a job leaves it (what the job taught stays the workload's), and a
///   workload name never reads a job's document nor a job id a workload's.
pub trait Store {
    /// The store's error.
    type Error: std::fmt::Display;
    /// Loads a job document.
    fn load(&self, job_id: &str) -> impl Future<Output = Result<Option<Stored>, Self::Error>>;
    /// Writes a job document if its version is as expected.
    fn save(
        &self,
        job_id: &str,
        write: Write<'_>,
    ) -> impl Future<Output = Result<Saved, Self::Error>>;
    /// Deletes the document and its archived trials if the version is still `expected_version`.
    fn delete(
        &self,
        job_id: &str,
        expected_version: u64,
    ) -> impl Future<Output = Result<Saved, Self::Error>>;
    /// Loads a workload's shared document.
    fn load_workload(
        &self,
        workload: &str,
    ) -> impl Future<Output = Result<Option<StoredWorkload>, Self::Error>>;
    /// Writes a workload's shared document if its version is as expected (`None`
    /// creates it).
    fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> impl Future<Output = Result<Saved, Self::Error>>;
    /// The job's archived trials, in any order.
    fn archived_trials(
        &self,
        job_id: &str,
    ) -> impl Future<Output = Result<Vec<Trial>, Self::Error>>;
    /// Up to `limit` job documents in list order (newest created first, ties by job
    /// id descending), starting strictly after `after`, read through an index of the
    /// jobs (never every trial of every job), and where the next page starts.
    /// `None`: this store cannot list jobs.
    fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Option<Listed>, Self::Error>> {
        let _ = (after, limit);
        std::future::ready(Ok(None))
    }

    /// Up to `limit` of the job's archived trials numbered `from` or above, in trial
    /// order: one page of the trials export, which reads the archive page by page so
    /// its memory stays bounded whatever the job's age. A store should answer from
    /// an index on the trial number. `None`: this store cannot page its archive (the
    /// default; the export then reads it whole with `archived_trials`).
    fn archived_trials_from(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> impl Future<Output = Result<Option<Vec<Trial>>, Self::Error>> {
        let _ = (job_id, from, limit);
        std::future::ready(Ok(None))
    }

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

/// Where a page starts: strictly after this job in the list order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListCursor {
    /// The last listed job's creation time.
    pub created_ms: i64,
    /// The last listed job's id.
    pub job_id: String,
    /// The store's own continuation token, for a store that cannot start a listing
    /// at a key (Workers KV); `None` for the others.
    pub resume: Option<String>,
}

/// A page of job documents as a store lists them.
#[derive(Clone, Debug, PartialEq)]
pub struct Listed {
    /// The documents, in list order.
    pub jobs: Vec<Stored>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<ListCursor>,
}

impl Listed {
    /// A page from `limit + 1` documents in list order after the cursor: the first
    /// `limit`, and a cursor after the last of them when there were more.
    pub fn from_one_more(mut jobs: Vec<Stored>, limit: usize) -> Listed {
        let more = jobs.len() > limit;
        jobs.truncate(limit);
        let next = match (more, jobs.last()) {
            (true, Some(last)) => Some(ListCursor::after(&last.state)),
            _ => None,
        };
        Listed { jobs, next }
    }
}

impl ListCursor {
    /// The cursor after `state`.
    pub fn after(state: &JobState) -> ListCursor {
        ListCursor {
            created_ms: state.created_ms(),
            job_id: state.job_id().to_string(),
            resume: None,
        }
    }

    /// Whether a job created at `created_ms` with id `job_id` comes after the cursor.
    pub fn precedes(&self, created_ms: i64, job_id: &str) -> bool {
        (created_ms, job_id) < (self.created_ms, self.job_id.as_str())
    }

    /// The opaque form: hex of `<created_ms>.<job_id>`, then `\n<resume>` if any.
    pub fn encode(&self) -> String {
        let mut text = format!("{}.{}", self.created_ms, self.job_id);
        if let Some(r) = &self.resume {
            text.push('\n');
            text.push_str(r);
        }
        text.bytes().map(|b| format!("{b:02x}")).collect()
    }

    /// Reads an opaque cursor; the error names the `cursor` parameter.
    pub fn decode(s: &str) -> Result<ListCursor, ApiError> {
        let bad = || {
            ApiError::from(FieldError::new(
                "cursor",
                "not a cursor this endpoint returned",
            ))
        };
        if !s.len().is_multiple_of(2) || s.len() > 1024 {
            return Err(bad());
        }
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
            .collect::<Option<Vec<u8>>>()
            .ok_or_else(bad)?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let (text, resume) = match text.split_once('\n') {
            Some((t, r)) if !r.is_empty() => (t, Some(r.to_string())),
            Some(_) => return Err(bad()),
            None => (text.as_str(), None),
        };
        let (ms, id) = text.split_once('.').ok_or_else(bad)?;
        let created_ms = ms.parse::<i64>().map_err(|_| bad())?;
        if id.is_empty() {
            return Err(bad());
        }
        Ok(ListCursor {
            created_ms,
            job_id: id.to_string(),
            resume,
        })
    }
}

/// An in-memory store, for unit tests and benchmarks.
#[derive(Default)]
pub struct MemoryStore {
    jobs: Mutex<HashMap<String, Stored>>,
    workloads: Mutex<HashMap<String, StoredWorkload>>,
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

    async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, Self::Error> {
        let Write {
            state,
            expected_version,
            archive,
        } = write;
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

    async fn load_workload(&self, workload: &str) -> Result<Option<StoredWorkload>, Self::Error> {
        Ok(self
            .workloads
            .lock()
            .map_err(|_| MemoryStoreError)?
            .get(workload)
            .cloned())
    }

    async fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> Result<Saved, Self::Error> {
        let mut all = self.workloads.lock().map_err(|_| MemoryStoreError)?;
        if all.get(workload).map(|s| s.version) != expected_version {
            return Ok(Saved::Conflict);
        }
        let version = expected_version.unwrap_or(0) + 1;
        all.insert(
            workload.to_string(),
            StoredWorkload {
                state: state.clone(),
                version,
            },
        );
        Ok(Saved::Ok)
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, Self::Error> {
        let archived = self.archive.lock().map_err(|_| MemoryStoreError)?;
        Ok(archived
            .get(job_id)
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default())
    }

    /// Sorts every job per call: the memory store is for tests, not for scale.
    async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, Self::Error> {
        let jobs = self.jobs.lock().map_err(|_| MemoryStoreError)?;
        let mut all: Vec<&Stored> = jobs
            .values()
            .filter(|s| after.is_none_or(|c| c.precedes(s.state.created_ms(), s.state.job_id())))
            .collect();
        all.sort_by(|a, b| {
            (b.state.created_ms(), b.state.job_id()).cmp(&(a.state.created_ms(), a.state.job_id()))
        });
        let page = all.into_iter().take(limit + 1).cloned().collect();
        Ok(Some(Listed::from_one_more(page, limit)))
    }

    async fn archived_trials_from(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<Trial>>, Self::Error> {
        let archived = self.archive.lock().map_err(|_| MemoryStoreError)?;
        Ok(Some(
            archived
                .get(job_id)
                .map(|m| {
                    m.range(from..)
                        .take(limit)
                        .map(|(_, t)| t.clone())
                        .collect()
                })
                .unwrap_or_default(),
        ))
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
