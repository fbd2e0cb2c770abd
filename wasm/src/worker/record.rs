//! The stored forms shared by the KV and Durable Object stores, and their error.

use serde::{Deserialize, Serialize};
use wattwise_core::job::JobState;
use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::service::{Stored, StoredWorkload};

/// A job document as stored: the document and its version, in one JSON value.
#[derive(Deserialize)]
pub struct DocRecord {
    /// 1 when created, +1 per write.
    pub version: u64,
    /// The document.
    pub state: JobState,
}

/// The borrowed form of [`DocRecord`], for writing.
#[derive(Serialize)]
pub struct DocRecordRef<'a> {
    /// The version being written.
    pub version: u64,
    /// The document.
    pub state: &'a JobState,
}

impl From<DocRecord> for Stored {
    fn from(r: DocRecord) -> Self {
        Stored {
            state: r.state,
            version: r.version,
        }
    }
}

/// Parses a stored document.
pub fn parse_doc(text: &str) -> Result<Stored, StoreError> {
    serde_json::from_str::<DocRecord>(text)
        .map(Stored::from)
        .map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
}

/// Only the version of a stored document.
#[derive(Deserialize)]
struct VersionOnly {
    version: u64,
}

/// Reads only the version of a stored document, so a job whose document no longer
/// parses as a `JobState` can still be deleted.
pub fn parse_version(text: &str) -> Result<u64, StoreError> {
    serde_json::from_str::<VersionOnly>(text)
        .map(|v| v.version)
        .map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
}

/// Only the creation time of a stored document.
#[derive(Deserialize)]
struct CreatedOnly {
    state: CreatedState,
}

#[derive(Deserialize)]
struct CreatedState {
    created_ms: i64,
}

/// Reads only the creation time of a stored document (the job list's index key
/// needs it to remove a job), so a job whose document no longer parses as a
/// `JobState` still leaves the list; `None` when even that cannot be read.
pub fn parse_created_ms(text: &str) -> Option<i64> {
    serde_json::from_str::<CreatedOnly>(text)
        .ok()
        .map(|c| c.state.created_ms)
}

/// Serializes a document at `version`.
pub fn doc_json(state: &JobState, version: u64) -> Result<String, StoreError> {
    serde_json::to_string(&DocRecordRef { version, state })
        .map_err(|e| StoreError::Corrupt(format!("job document: {e}")))
}

/// A workload's document as stored: `{"version": n, "state": {...}}`, like a job's.
#[derive(Serialize, Deserialize)]
struct WorkloadRecord<T> {
    version: u64,
    state: T,
}

/// Serializes a workload's document at `version`.
pub fn workload_json(state: &WorkloadState, version: u64) -> Result<String, StoreError> {
    serde_json::to_string(&WorkloadRecord { version, state })
        .map_err(|e| StoreError::Corrupt(format!("workload document: {e}")))
}

/// Parses a stored workload document.
pub fn parse_workload(text: &str) -> Result<StoredWorkload, StoreError> {
    serde_json::from_str::<WorkloadRecord<WorkloadState>>(text)
        .map(|r| StoredWorkload {
            state: r.state,
            version: r.version,
        })
        .map_err(|e| StoreError::Corrupt(format!("workload document: {e}")))
}

/// The storage key of a workload's document (KV, and the name of its Durable
/// Object): no job id holds a `/`, so it never names a job.
pub fn workload_key(workload: &str) -> String {
    format!("workload/{workload}")
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The KV binding failed.
    #[error("Workers KV: {0}")]
    Kv(String),
    /// The Durable Object (or its storage) failed.
    #[error("Durable Object: {0}")]
    Durable(String),
    /// A stored value did not parse.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The Worker is not configured for the selected store.
    #[error("configuration: {0}")]
    Config(String),
}
