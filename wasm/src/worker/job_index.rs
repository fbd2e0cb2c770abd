//! The job list's index in Workers KV, shared by both store modes: one key per job,
//! written before the job's first document and removed after its deletion, named
//! so that KV's lexicographic listing is the list order (newest created first, ties
//! by job id descending). A page is one KV list of `limit` keys and one read per
//! listed job, whatever the number of jobs or trials.
//!
//! Key: `jobs-by-created/<20 digits: i64::MAX - created_ms>/<job id, each byte as
//! the hex of 255 - byte>~` (`~` sorts after every hex digit, so a longer id with
//! the same start lists first, as it does in descending order). The job id and
//! creation time ride in the key's metadata. KV listing is eventually consistent:
//! a job may show up (or leave) a little after its write; a listed key whose
//! document is gone is skipped.

use serde::{Deserialize, Serialize};
use wattwise_core::store::ListCursor;
use worker::kv::KvStore;

use super::record::StoreError;

/// The index keys' prefix.
const PREFIX: &str = "jobs-by-created/";

/// What a key's metadata holds.
#[derive(Serialize, Deserialize)]
struct Entry {
    job_id: String,
    created_ms: i64,
}

fn kv_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Kv(e.to_string())
}

/// The index key of a job.
pub fn key(created_ms: i64, job_id: &str) -> String {
    let newest_first = i64::MAX - created_ms.max(0);
    let id: String = job_id.bytes().map(|b| format!("{:02x}", 255 - b)).collect();
    format!("{PREFIX}{newest_first:020}/{id}~")
}

/// Adds a job to the index.
pub async fn add(kv: &KvStore, created_ms: i64, job_id: &str) -> Result<(), StoreError> {
    let entry = Entry {
        job_id: job_id.to_string(),
        created_ms,
    };
    kv.put(&key(created_ms, job_id), "")
        .map_err(kv_err)?
        .metadata(&entry)
        .map_err(kv_err)?
        .execute()
        .await
        .map_err(kv_err)
}

/// Removes a job from the index.
pub async fn remove(kv: &KvStore, created_ms: i64, job_id: &str) -> Result<(), StoreError> {
    kv.delete(&key(created_ms, job_id)).await.map_err(kv_err)
}

/// Up to `limit` job ids in list order after `after`, and the cursor of the next
/// page (KV's own, in [`ListCursor::resume`]) when KV has more.
pub async fn page(
    kv: &KvStore,
    after: Option<&ListCursor>,
    limit: usize,
) -> Result<(Vec<String>, Option<ListCursor>), StoreError> {
    let mut list = kv
        .list()
        .prefix(PREFIX.to_string())
        .limit(u64::try_from(limit).unwrap_or(u64::MAX));
    if let Some(c) = after {
        let resume = c.resume.clone().ok_or_else(|| {
            StoreError::Kv("cursor: this cursor was not issued by the KV job index".into())
        })?;
        list = list.cursor(resume);
    }
    let out = list.execute().await.map_err(kv_err)?;
    let entries: Vec<Entry> = out
        .keys
        .into_iter()
        .filter_map(|k| serde_json::from_value::<Entry>(k.metadata?).ok())
        .collect();
    let next = match (out.cursor, entries.last()) {
        (Some(resume), Some(last)) if !out.list_complete && !resume.is_empty() => {
            Some(ListCursor {
                created_ms: last.created_ms,
                job_id: last.job_id.clone(),
                resume: Some(resume),
            })
        }
        _ => None,
    };
    Ok((entries.into_iter().map(|e| e.job_id).collect(), next))
}
