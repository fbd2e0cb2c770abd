//! The local server's store: an embedded SQLite file.
//!
//! Two tables:
//! - `jobs(job_id TEXT PRIMARY KEY, version INTEGER, doc TEXT)`: one JSON job
//!   document per job with its version;
//! - `trials(job_id TEXT, trial_number INTEGER, record TEXT, PRIMARY KEY(job_id, trial_number))`:
//!   the append-only records of finished trials that left the document.
//!
//! The file runs in WAL mode. Every write (create, conditional replace with its
//! archived trials, delete) is one `BEGIN IMMEDIATE` transaction that checks the
//! stored version first, so two requests on one job can never both win.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use wattwise_core::job::JobState;
use wattwise_core::listing::{ListCursor, Listed};
use wattwise_core::service::{Saved, Store, Stored};
use wattwise_core::trial::Trial;

/// What can go wrong in the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite itself failed (I/O, locking, corrupt file).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A stored document or trial record did not parse.
    #[error("stored document of job {job_id:?} is not valid: {source}")]
    Corrupt {
        /// The job.
        job_id: String,
        /// Why it did not parse.
        source: serde_json::Error,
    },
    /// A document could not be written as JSON.
    #[error("cannot encode job document: {0}")]
    Encode(serde_json::Error),
    /// A stored version was negative or not an integer.
    #[error("stored version of job {0:?} is out of range")]
    BadVersion(String),
    /// Another thread panicked while holding the connection.
    #[error("sqlite connection poisoned")]
    Poisoned,
}

/// The SQLite store: one connection, used by one request at a time.
///
/// Each call holds the connection only for its few statements (no `await` while
/// held), so a multi-threaded server shares it without blocking for long.
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS jobs (
    job_id  TEXT PRIMARY KEY NOT NULL,
    version INTEGER NOT NULL,
    doc     TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS trials (
    job_id       TEXT NOT NULL,
    trial_number INTEGER NOT NULL,
    record       TEXT NOT NULL,
    PRIMARY KEY (job_id, trial_number)
) WITHOUT ROWID;
";

/// The job list's index: creation time (read from the document) then job id, so a
/// page is one index range scan of `limit` rows whatever the number of jobs. The
/// key is NULL for a document that is not JSON, so a corrupt row never fails a
/// write or the index's creation (reading it fails, naming the job).
const LIST_INDEX: &str = "
CREATE INDEX IF NOT EXISTS jobs_by_created
    ON jobs ((CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END) DESC, job_id DESC);
";

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, in WAL mode.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    /// An in-memory database (for tests).
    pub fn in_memory() -> Result<Self, SqliteError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(conn: Connection) -> Result<Self, SqliteError> {
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // journal_mode answers with a row; read it rather than execute.
        let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")?;
        conn.query_row("PRAGMA wal_autocheckpoint=8192", [], |_| Ok(()))?;
        conn.execute_batch(SCHEMA)?;
        conn.execute_batch(LIST_INDEX)?;
        Ok(SqliteStore {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> Result<MutexGuard<'_, Connection>, SqliteError> {
        self.conn.lock().map_err(|_| SqliteError::Poisoned)
    }

    /// Loads a document synchronously.
    pub fn load_sync(&self, job_id: &str) -> Result<Option<Stored>, SqliteError> {
        let conn = self.conn()?;
        let row: Option<(i64, String)> = conn
            .prepare_cached("SELECT version, doc FROM jobs WHERE job_id = ?1")?
            .query_row(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        drop(conn);
        let Some((version, doc)) = row else {
            return Ok(None);
        };
        let version = u64::try_from(version).map_err(|_| SqliteError::BadVersion(job_id.into()))?;
        let state = serde_json::from_str(&doc).map_err(|source| SqliteError::Corrupt {
            job_id: job_id.into(),
            source,
        })?;
        Ok(Some(Stored { state, version }))
    }

    /// Writes a document (and its archived trials) if the version is as expected.
    pub fn save_sync(
        &self,
        job_id: &str,
        state: &JobState,
        expected_version: Option<u64>,
        archive: &[Trial],
    ) -> Result<Saved, SqliteError> {
        let doc = serde_json::to_string(state).map_err(SqliteError::Encode)?;
        let records = archive
            .iter()
            .map(|t| {
                serde_json::to_string(t)
                    .map(|r| (t.trial_number, r))
                    .map_err(SqliteError::Encode)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let new_version = expected_version.unwrap_or(0).saturating_add(1);
        let new_version =
            i64::try_from(new_version).map_err(|_| SqliteError::BadVersion(job_id.into()))?;
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<i64> = tx
            .prepare_cached("SELECT version FROM jobs WHERE job_id = ?1")?
            .query_row(params![job_id], |r| r.get(0))
            .optional()?;
        let current = current.map(|v| v as u64);
        if current != expected_version {
            return Ok(Saved::Conflict);
        }
        if expected_version.is_none() {
            // A new job starts with no archived trials, whatever an earlier job of that id left.
            tx.prepare_cached("DELETE FROM trials WHERE job_id = ?1")?
                .execute(params![job_id])?;
        }
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO trials (job_id, trial_number, record) VALUES (?1, ?2, ?3)",
            )?;
            for (n, record) in &records {
                let n = i64::try_from(*n).map_err(|_| SqliteError::BadVersion(job_id.into()))?;
                insert.execute(params![job_id, n, record])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO jobs (job_id, version, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT(job_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
        )?
        .execute(params![job_id, new_version, doc])?;
        tx.commit()?;
        Ok(Saved::Ok)
    }

    /// Deletes a job and its archived trials if the version is as expected.
    pub fn delete_sync(&self, job_id: &str, expected_version: u64) -> Result<Saved, SqliteError> {
        let mut conn = self.conn()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let current: Option<i64> = tx
            .prepare_cached("SELECT version FROM jobs WHERE job_id = ?1")?
            .query_row(params![job_id], |r| r.get(0))
            .optional()?;
        if current.map(|v| v as u64) != Some(expected_version) {
            return Ok(Saved::Conflict);
        }
        tx.prepare_cached("DELETE FROM jobs WHERE job_id = ?1")?
            .execute(params![job_id])?;
        tx.prepare_cached("DELETE FROM trials WHERE job_id = ?1")?
            .execute(params![job_id])?;
        tx.commit()?;
        Ok(Saved::Ok)
    }

    /// A job's archived trials, in trial order.
    pub fn archived_trials_sync(&self, job_id: &str) -> Result<Vec<Trial>, SqliteError> {
        let conn = self.conn()?;
        let mut stmt = conn
            .prepare_cached("SELECT record FROM trials WHERE job_id = ?1 ORDER BY trial_number")?;
        let rows = stmt
            .query_map(params![job_id], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        drop(stmt);
        drop(conn);
        rows.iter()
            .map(|r| {
                serde_json::from_str(r).map_err(|source| SqliteError::Corrupt {
                    job_id: job_id.into(),
                    source,
                })
            })
            .collect()
    }
}

impl SqliteStore {
    /// Up to `limit` documents in list order after `after` (see [`Store::list_jobs`]).
    pub fn list_jobs_sync(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Stored>, SqliteError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn()?;
        let rows = match after {
            None => conn
                .prepare_cached(
                    "SELECT job_id, version, doc FROM jobs
                     ORDER BY (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END) DESC, job_id DESC LIMIT ?1",
                )?
                .query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<(String, i64, String)>, _>>()?,
            Some(c) => conn
                .prepare_cached(
                    "SELECT job_id, version, doc FROM jobs
                     WHERE ((CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END), job_id) < (?1, ?2)
                     ORDER BY (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END) DESC, job_id DESC LIMIT ?3",
                )?
                .query_map(params![c.created_ms, c.job_id, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect::<Result<Vec<(String, i64, String)>, _>>()?,
        };
        drop(conn);
        rows.into_iter()
            .map(|(job_id, version, doc)| {
                let version =
                    u64::try_from(version).map_err(|_| SqliteError::BadVersion(job_id.clone()))?;
                let state = serde_json::from_str(&doc)
                    .map_err(|source| SqliteError::Corrupt { job_id, source })?;
                Ok(Stored { state, version })
            })
            .collect()
    }
}

impl Store for SqliteStore {
    type Error = SqliteError;

    async fn load(&self, job_id: &str) -> Result<Option<Stored>, SqliteError> {
        self.load_sync(job_id)
    }

    async fn save(
        &self,
        job_id: &str,
        state: &JobState,
        expected_version: Option<u64>,
        archive: &[Trial],
    ) -> Result<Saved, SqliteError> {
        self.save_sync(job_id, state, expected_version, archive)
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, SqliteError> {
        self.delete_sync(job_id, expected_version)
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, SqliteError> {
        self.archived_trials_sync(job_id)
    }

    async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, SqliteError> {
        let page = self.list_jobs_sync(after, limit.saturating_add(1))?;
        Ok(Some(Listed::from_one_more(page, limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattwise_core::job::JobSpec;
    use wattwise_core::trial::{RunResult, TrialStatus, TrialType};

    fn state(job_id: &str) -> JobState {
        let mut spec = JobSpec::new("job", vec![8, 16, 32], 16, 300.0, 1, "A100");
        spec.job_id = Some(job_id.into());
        JobState::new(job_id.into(), spec.validate().unwrap(), 7, 1_000)
    }

    fn trial(n: u64) -> Trial {
        Trial {
            trial_number: n,
            batch_size: 16,
            kind: TrialType::Exploration,
            start_ms: 5,
            status: TrialStatus::Succeeded {
                end_ms: 9,
                result: RunResult {
                    time: 1.0,
                    energy: 2.0,
                    converged: true,
                },
            },
        }
    }

    fn temp_store() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("w.db")).unwrap();
        (dir, store)
    }

    #[test]
    fn create_then_conditional_replace() {
        let (_dir, s) = temp_store();
        let st = state("job-a");
        assert_eq!(s.load_sync("job-a").unwrap(), None);
        assert_eq!(s.save_sync("job-a", &st, None, &[]).unwrap(), Saved::Ok);
        // Creating again conflicts.
        assert_eq!(
            s.save_sync("job-a", &st, None, &[]).unwrap(),
            Saved::Conflict
        );
        let got = s.load_sync("job-a").unwrap().unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.state, st);
        // A stale version conflicts and writes nothing.
        assert_eq!(
            s.save_sync("job-a", &st, Some(7), &[trial(1)]).unwrap(),
            Saved::Conflict
        );
        assert!(s.archived_trials_sync("job-a").unwrap().is_empty());
        assert_eq!(
            s.save_sync("job-a", &st, Some(1), &[trial(1)]).unwrap(),
            Saved::Ok
        );
        assert_eq!(s.load_sync("job-a").unwrap().unwrap().version, 2);
        assert_eq!(s.archived_trials_sync("job-a").unwrap(), vec![trial(1)]);
    }

    #[test]
    fn archive_is_idempotent_and_ordered() {
        let (_dir, s) = temp_store();
        let st = state("job-b");
        s.save_sync("job-b", &st, None, &[]).unwrap();
        s.save_sync("job-b", &st, Some(1), &[trial(3), trial(1)])
            .unwrap();
        s.save_sync("job-b", &st, Some(2), &[trial(1), trial(2)])
            .unwrap();
        let numbers: Vec<u64> = s
            .archived_trials_sync("job-b")
            .unwrap()
            .iter()
            .map(|t| t.trial_number)
            .collect();
        assert_eq!(numbers, vec![1, 2, 3]);
    }

    #[test]
    fn delete_needs_the_version_and_removes_trials() {
        let (_dir, s) = temp_store();
        let st = state("job-c");
        s.save_sync("job-c", &st, None, &[]).unwrap();
        s.save_sync("job-c", &st, Some(1), &[trial(1)]).unwrap();
        assert_eq!(s.delete_sync("job-c", 1).unwrap(), Saved::Conflict);
        assert!(s.load_sync("job-c").unwrap().is_some());
        assert_eq!(s.delete_sync("job-c", 2).unwrap(), Saved::Ok);
        assert_eq!(s.load_sync("job-c").unwrap(), None);
        assert!(s.archived_trials_sync("job-c").unwrap().is_empty());
        assert_eq!(s.delete_sync("job-c", 2).unwrap(), Saved::Conflict);
    }

    #[test]
    fn survives_reopen_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.save_sync("job-d", &state("job-d"), None, &[]).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load_sync("job-d").unwrap().unwrap().state, state("job-d"));
        s.conn()
            .unwrap()
            .execute("UPDATE jobs SET doc = '{' WHERE job_id = 'job-d'", [])
            .unwrap();
        let err = s.load_sync("job-d").unwrap_err();
        assert!(err.to_string().contains("job-d"), "{err}");
    }

    fn state_at(job_id: &str, created_ms: i64) -> JobState {
        let mut spec = JobSpec::new("job", vec![8, 16, 32], 16, 300.0, 1, "A100");
        spec.job_id = Some(job_id.into());
        JobState::new(job_id.into(), spec.validate().unwrap(), 7, created_ms)
    }

    #[test]
    fn lists_newest_first_through_the_index() {
        let (_dir, s) = temp_store();
        for (id, at) in [("job-a", 30), ("job-b", 10), ("job-c", 30), ("job-d", 20)] {
            s.save_sync(id, &state_at(id, at), None, &[]).unwrap();
        }
        let ids = |v: Vec<Stored>| -> Vec<String> {
            v.iter().map(|s| s.state.job_id().to_string()).collect()
        };
        assert_eq!(
            ids(s.list_jobs_sync(None, 10).unwrap()),
            ["job-c", "job-a", "job-d", "job-b"]
        );
        let after = ListCursor {
            created_ms: 30,
            job_id: "job-a".into(),
            resume: None,
        };
        assert_eq!(ids(s.list_jobs_sync(Some(&after), 1).unwrap()), ["job-d"]);
        // Both queries read the index, never the whole table.
        let conn = s.conn().unwrap();
        for sql in [
            "EXPLAIN QUERY PLAN SELECT job_id FROM jobs
             ORDER BY (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END) DESC, job_id DESC LIMIT 5",
            "EXPLAIN QUERY PLAN SELECT job_id FROM jobs
             WHERE ((CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END), job_id) < (30, 'job-a')
             ORDER BY (CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END) DESC, job_id DESC LIMIT 5",
        ] {
            let plan: Vec<String> = conn
                .prepare(sql)
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains("jobs_by_created"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }

    #[test]
    fn racing_writers_one_wins() {
        let (_dir, s) = temp_store();
        let s = std::sync::Arc::new(s);
        s.save_sync("job-e", &state("job-e"), None, &[]).unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.save_sync("job-e", &state("job-e"), Some(1), &[]))
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .filter(|r| *r == Saved::Ok)
            .count();
        assert_eq!(wins, 1);
        assert_eq!(s.load_sync("job-e").unwrap().unwrap().version, 2);
    }
}
