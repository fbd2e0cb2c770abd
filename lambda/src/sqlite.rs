//! The local server's store: an embedded SQLite file.
//!
//! Four tables:
//! - `jobs(job_id TEXT PRIMARY KEY, version INTEGER, doc TEXT)`: one JSON job
//!   document per job with its version;
//! - `trials(job_id TEXT, trial_number INTEGER, record TEXT, PRIMARY KEY(job_id, trial_number))`:
//!   the append-only records of finished trials that left the document;
//! - `workloads(workload TEXT PRIMARY KEY, version INTEGER, doc TEXT)`: one JSON
//!   workload document (what the jobs of a workload taught each other) per
//!   workload with its version, written like a job's;
//! - `meta(key TEXT PRIMARY KEY, value TEXT)`: the write probe made at open.
//!
//! The file runs in WAL mode. Every write (create, conditional replace with its
//! archived trials, delete) is one `BEGIN IMMEDIATE` transaction on the one writer
//! connection that checks the stored version first, so two requests on one job can
//! never both win. Reads use their own connections, so in WAL mode they never
//! wait behind a writer, in this process or another. Every call runs on tokio's
//! blocking threads, never on its workers. A write waits at most
//! [`WRITE_WAIT`] for the writer connection and SQLite's write lock together, then
//! fails with [`SqliteError::Busy`] (the service answers 503). Before every write
//! the store checks that its path still names the file it opened, so a database
//! whose file or directory was deleted fails writes (and `/healthz`) at once
//! instead of writing into an unlinked file.
//!
//! The `-wal` file holds every write since the last checkpoint. Before every
//! write the store also checks that the `-wal` path still names the file its
//! connections write: if it was deleted (or replaced), the writes it held are
//! checkpointed into the database from the connections' open handle, every
//! connection is reopened (so a new `-wal` file is made), and only then does the
//! write go on. A write is never acknowledged into a `-wal` file no path names.
//!
//! `/healthz` ([`Store::writable`]) reports what a write would meet: besides the
//! checks above, the outcome of the last write (a write that failed for the disk,
//! full or failing, makes it answer 503 until a write succeeds), and at most once
//! per [`PROBE_EVERY`] a real write (a 64 KiB row written and removed in one
//! committed transaction) when no other write holds the writer.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};
use wattwise_core::job::JobState;
use wattwise_core::policy::shared::WorkloadState;
use wattwise_core::service::{Saved, Store, Stored, StoredWorkload, Write};
use wattwise_core::store::{ListCursor, Listed};
use wattwise_core::trial::Trial;

/// Longest a write waits for the writer connection and SQLite's write lock.
pub const WRITE_WAIT: Duration = Duration::from_secs(2);
/// Longest a read waits on SQLite's locks (WAL readers almost never wait).
const READ_WAIT: Duration = Duration::from_secs(2);
/// `/healthz` writes a probe at most this often (it answers the last outcome between).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// The probe's row: about what a job document with its archived trials weighs.
const PROBE_BYTES: usize = 64 * 1024;

/// What can go wrong in the SQLite store.
#[derive(Debug, thiserror::Error)]
pub enum SqliteError {
    /// SQLite itself failed (I/O, locking, corrupt file).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Another writer held the database longer than [`WRITE_WAIT`].
    #[error("the database is locked by another writer (waited {0} ms); retry the request")]
    Busy(u128),
    /// The database file is gone, replaced or not writable.
    #[error("database {path}: {why}")]
    NotWritable {
        /// The database's path.
        path: String,
        /// What is wrong with it.
        why: String,
    },
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
    /// Another thread panicked while holding a connection, or a blocking task failed.
    #[error("sqlite connection poisoned")]
    Poisoned,
}

/// Maps SQLite's "busy"/"locked" to [`SqliteError::Busy`].
fn busy_aware(e: rusqlite::Error, waited: Duration) -> SqliteError {
    match e.sqlite_error_code() {
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
            SqliteError::Busy(waited.as_millis())
        }
        _ => SqliteError::Sqlite(e),
    }
}

/// The SQLite store: one writer connection and a pool of reader connections.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The file and its (device, inode) at open; `None` in memory.
    file: Option<(PathBuf, (u64, u64))>,
    /// The `-wal` file's path and the (device, inode) the connections write; `None` in memory.
    wal: Option<(PathBuf, Mutex<Option<FileId>>)>,
    writer: Arc<tokio::sync::Mutex<Connection>>,
    readers: Mutex<Vec<Connection>>,
    /// Held (shared) by every read for as long as it uses a pooled connection, and
    /// (exclusive) while the connections are reopened after a lost `-wal` file.
    gate: std::sync::RwLock<()>,
    /// What the last write or probe met.
    health: Mutex<Health>,
}

/// A file's (device, inode).
type FileId = (u64, u64);

/// The last write's outcome, as `/healthz` reports it.
#[derive(Default)]
struct Health {
    /// Why the last write or probe failed (not for a busy lock or a conflict); `None` when it succeeded.
    failure: Option<String>,
    /// When a probe last ran.
    probed: Option<Instant>,
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
CREATE TABLE IF NOT EXISTS workloads (
    workload TEXT PRIMARY KEY NOT NULL,
    version  INTEGER NOT NULL,
    doc      TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);
";

/// The job list's key: a `created_ms` column, written when the job is created and
/// never updated (a job's creation time never changes), indexed with the job id,
/// so a page is one index range scan of `limit` rows whatever the number of jobs
/// and a report's write never touches the index. A database made before the
/// column existed gets it here, filled from its documents (NULL for one that is
/// not JSON: listing it fails, naming the job).
fn ensure_list_index(conn: &Connection) -> Result<(), SqliteError> {
    let has_column = conn
        .prepare("SELECT 1 FROM pragma_table_info('jobs') WHERE name = 'created_ms'")?
        .exists([])?;
    if !has_column {
        conn.execute_batch(
            "BEGIN IMMEDIATE;
             ALTER TABLE jobs ADD COLUMN created_ms INTEGER;
             UPDATE jobs SET created_ms =
                 CASE WHEN json_valid(doc) THEN json_extract(doc, '$.created_ms') END;
             DROP INDEX IF EXISTS jobs_by_created;
             COMMIT;",
        )?;
    }
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS jobs_by_created_ms ON jobs (created_ms DESC, job_id DESC);",
    )?;
    Ok(())
}

/// The writer connection's settings: WAL mode, the checkpoint interval, the lock wait.
fn configure(conn: &Connection) -> Result<(), SqliteError> {
    conn.busy_timeout(WRITE_WAIT)?;
    // journal_mode answers with a row; read it rather than execute.
    let _mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")?;
    conn.query_row("PRAGMA wal_autocheckpoint=8192", [], |_| Ok(()))?;
    Ok(())
}

/// The `-wal` file of the database at `db`.
fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino()))
}

impl SqliteStore {
    /// Opens (creating if needed) the database file at `path`, in WAL mode, and
    /// proves it can write there: a database it cannot write is an error now, not
    /// at the first request.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SqliteError> {
        let path = path.as_ref();
        let conn = Connection::open(path)?;
        let store = Self::init(conn, Some(path))?;
        Ok(store)
    }

    fn init(conn: Connection, path: Option<&Path>) -> Result<Self, SqliteError> {
        configure(&conn)?;
        conn.execute_batch(SCHEMA)?;
        ensure_list_index(&conn)?;
        let file = match path {
            Some(p) => {
                let not_writable = |why: String| SqliteError::NotWritable {
                    path: p.display().to_string(),
                    why,
                };
                if conn.is_readonly(rusqlite::DatabaseName::Main)? {
                    return Err(not_writable(
                        "opened read-only; the server needs to write it".into(),
                    ));
                }
                conn.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('write_probe', ?1)",
                    params![env!("CARGO_PKG_VERSION")],
                )
                .map_err(|e| not_writable(format!("cannot write: {e}")))?;
                let id = identity(p).map_err(|e| not_writable(e.to_string()))?;
                Some((p.to_path_buf(), id))
            }
            None => None,
        };
        let wal = match &file {
            Some((p, _)) => {
                let wal = wal_path(p);
                let id = identity(&wal).ok();
                Some((wal, Mutex::new(id)))
            }
            None => None,
        };
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                file,
                wal,
                writer: Arc::new(tokio::sync::Mutex::new(conn)),
                readers: Mutex::new(Vec::new()),
                gate: std::sync::RwLock::new(()),
                health: Mutex::new(Health::default()),
            }),
        })
    }

    /// Whether a write would succeed now, as `/healthz` reports it (see the
    /// module's documentation): the file checks, the last write's outcome, and a
    /// probe write when the last is older than [`PROBE_EVERY`] and no write holds
    /// the writer. Never waits behind another writer.
    pub async fn probe(&self) -> Result<(), SqliteError> {
        self.inner.check_writable()?;
        let due = {
            let health = self
                .inner
                .health
                .lock()
                .map_err(|_| SqliteError::Poisoned)?;
            health.probed.is_none_or(|at| at.elapsed() >= PROBE_EVERY) || self.inner.wal_moved()
        };
        if due {
            if let Ok(mut conn) = self.inner.writer.clone().try_lock_owned() {
                let inner = self.inner.clone();
                tokio::task::spawn_blocking(move || inner.probe(&mut conn))
                    .await
                    .map_err(|_| SqliteError::Poisoned)??;
            }
        }
        self.inner.last_failure()
    }

    /// Whether the database can take writes now: its path still names the file
    /// opened, and this process may write it. Takes no lock.
    pub fn check_writable(&self) -> Result<(), SqliteError> {
        self.inner.check_writable()
    }

    /// Loads a document synchronously.
    pub fn load_sync(&self, job_id: &str) -> Result<Option<Stored>, SqliteError> {
        self.inner.load(job_id)
    }

    /// Up to `limit` documents in list order after `after` (see [`Store::list_jobs`]).
    pub fn list_jobs_sync(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Stored>, SqliteError> {
        self.inner.list_jobs(after, limit)
    }

    /// The stored version of a job, without parsing its document.
    pub fn version_sync(&self, job_id: &str) -> Result<Option<u64>, SqliteError> {
        self.inner.version(job_id)
    }

    /// Writes a document (and its archived trials) if the version is as expected.
    pub fn save_sync(&self, job_id: &str, write: Write<'_>) -> Result<Saved, SqliteError> {
        let expected_version = write.expected_version;
        let encoded = encode(write.state, write.archive)?;
        let mut conn = self.inner.writer.blocking_lock();
        let out = self.inner.save(
            &mut conn,
            job_id,
            &encoded,
            expected_version,
            Instant::now(),
        );
        self.inner.note(&out);
        out
    }

    /// Deletes a job and its archived trials if the version is as expected.
    pub fn delete_sync(&self, job_id: &str, expected_version: u64) -> Result<Saved, SqliteError> {
        let mut conn = self.inner.writer.blocking_lock();
        let out = self
            .inner
            .delete(&mut conn, job_id, expected_version, Instant::now());
        self.inner.note(&out);
        out
    }

    /// A job's archived trials, in trial order.
    pub fn archived_trials_sync(&self, job_id: &str) -> Result<Vec<Trial>, SqliteError> {
        self.inner.archived_trials(job_id)
    }

    /// Runs raw SQL on the writer connection (tests corrupt documents with it).
    pub fn execute_sync(&self, sql: &str) -> Result<usize, SqliteError> {
        Ok(self.inner.writer.blocking_lock().execute(sql, [])?)
    }

    /// Runs `f` on a blocking thread.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, SqliteError> + Send + 'static,
    ) -> Result<T, SqliteError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|_| SqliteError::Poisoned)?
    }

    /// Runs `f` with the writer connection on a blocking thread, waiting at most
    /// [`WRITE_WAIT`] in all.
    async fn write(
        &self,
        f: impl FnOnce(&Inner, &mut Connection, Instant) -> Result<Saved, SqliteError> + Send + 'static,
    ) -> Result<Saved, SqliteError> {
        let started = Instant::now();
        let mut guard = tokio::time::timeout(WRITE_WAIT, self.inner.writer.clone().lock_owned())
            .await
            .map_err(|_| SqliteError::Busy(started.elapsed().as_millis()))?;
        self.blocking(move |inner| {
            let out = f(inner, &mut guard, started);
            inner.note(&out);
            out
        })
        .await
    }
}

/// A document and its archived trials as the JSON the tables hold.
/// A write encoded for the tables: the document's JSON, its creation time (the
/// job list's key) and the archived trials' records.
struct Encoded {
    doc: String,
    created_ms: i64,
    records: Vec<(u64, String)>,
}

fn encode(state: &JobState, archive: &[Trial]) -> Result<Encoded, SqliteError> {
    let doc = serde_json::to_string(state).map_err(SqliteError::Encode)?;
    let records = archive
        .iter()
        .map(|t| {
            serde_json::to_string(t)
                .map(|r| (t.trial_number, r))
                .map_err(SqliteError::Encode)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Encoded {
        doc,
        created_ms: state.created_ms(),
        records,
    })
}

impl Inner {
    fn check_writable(&self) -> Result<(), SqliteError> {
        let Some((path, opened)) = &self.file else {
            return Ok(());
        };
        let not_writable = |why: &str| SqliteError::NotWritable {
            path: path.display().to_string(),
            why: why.into(),
        };
        match identity(path) {
            Ok(id) if id == *opened => {}
            Ok(_) => {
                return Err(not_writable(
                    "the file was replaced since the server opened it",
                ))
            }
            Err(_) => {
                return Err(not_writable(
                    "the file (or its directory) was deleted since the server opened it",
                ))
            }
        }
        let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|_| not_writable("path holds a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string that outlives the call.
        if unsafe { libc::access(c.as_ptr(), libc::W_OK) } != 0 {
            return Err(not_writable("this process may not write it"));
        }
        Ok(())
    }

    /// Whether the `-wal` path no longer names the file the connections write.
    fn wal_moved(&self) -> bool {
        let Some((path, opened)) = &self.wal else {
            return false;
        };
        let opened = *opened.lock().unwrap_or_else(|p| p.into_inner());
        opened.is_some() && identity(path).ok() != opened
    }

    /// The `-wal` file was deleted or replaced: its writes (acknowledged, and only
    /// there) are checkpointed into the database through the connections' open
    /// handle, then every connection is closed and the writer opened again, which
    /// makes a new `-wal` file. Reads wait meanwhile (a few milliseconds).
    fn reopen_after_lost_wal(&self, conn: &mut Connection) -> Result<(), SqliteError> {
        let (Some((path, _)), Some((wal, opened))) = (&self.file, &self.wal) else {
            return Ok(());
        };
        let not_writable = |why: String| SqliteError::NotWritable {
            path: path.display().to_string(),
            why,
        };
        let _gate = self.gate.write().map_err(|_| SqliteError::Poisoned)?;
        let (busy, log, done): (i64, i64, i64) = conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .map_err(|e| {
                not_writable(format!(
                    "the -wal file was deleted and saving its writes failed: {e}"
                ))
            })?;
        if busy != 0 || log != done {
            return Err(not_writable(format!(
                "the -wal file was deleted and only {done} of its {log} pages could be saved yet                  (another process is reading); retry the request"
            )));
        }
        self.readers
            .lock()
            .map_err(|_| SqliteError::Poisoned)?
            .clear();
        // Closing the last connection lets SQLite remove the lost file's state; the
        // new connection makes a new -wal file at the path.
        *conn = Connection::open_in_memory()?;
        let fresh = Connection::open(path)?;
        configure(&fresh)?;
        fresh.query_row("SELECT count(*) FROM meta", [], |_| Ok(()))?;
        *conn = fresh;
        let id = identity(wal).map_err(|e| not_writable(format!("no new -wal file: {e}")))?;
        *opened.lock().map_err(|_| SqliteError::Poisoned)? = Some(id);
        tracing::warn!(
            db = %path.display(),
            pages = log,
            "the -wal file was deleted: its writes were saved into the database and a new -wal file opened"
        );
        Ok(())
    }

    /// Notes what a write met, for `/healthz`: a failure other than a busy lock
    /// (full disk, I/O error) until a write succeeds.
    fn note(&self, out: &Result<Saved, SqliteError>) {
        self.note_outcome(out.as_ref().copied());
    }

    fn note_outcome(&self, out: Result<Saved, &SqliteError>) {
        let failure = match out {
            Ok(Saved::Ok) => None,
            Ok(Saved::Conflict) => return,
            Err(SqliteError::Busy(_) | SqliteError::Poisoned) => return,
            Err(e) => Some(e.to_string()),
        };
        if let Ok(mut health) = self.health.lock() {
            health.failure = failure;
        }
    }

    /// The last write's or probe's failure, as an error.
    fn last_failure(&self) -> Result<(), SqliteError> {
        let health = self.health.lock().map_err(|_| SqliteError::Poisoned)?;
        match &health.failure {
            None => Ok(()),
            Some(why) => Err(SqliteError::NotWritable {
                path: self
                    .file
                    .as_ref()
                    .map(|(p, _)| p.display().to_string())
                    .unwrap_or_default(),
                why: format!("the last write failed: {why}"),
            }),
        }
    }

    /// A real write, as a job's write would meet it: a 64 KiB row inserted and
    /// removed in one committed transaction. A busy lock is not a failure.
    fn probe(&self, conn: &mut Connection) -> Result<(), SqliteError> {
        let started = Instant::now() - WRITE_WAIT;
        let out = (|| {
            let tx = self.begin(conn, started)?;
            tx.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('health_probe', ?1)",
                params!["0".repeat(PROBE_BYTES)],
            )?;
            tx.execute("DELETE FROM meta WHERE key = 'health_probe'", [])?;
            tx.commit().map_err(|e| busy_aware(e, started.elapsed()))
        })();
        if let Ok(mut health) = self.health.lock() {
            health.probed = Some(Instant::now());
        }
        let out = match out {
            Err(SqliteError::Sqlite(e)) => Err(busy_aware(e, WRITE_WAIT)),
            other => other,
        };
        self.note_outcome(out.as_ref().map(|_| Saved::Ok));
        match out {
            Err(SqliteError::Busy(_)) => Ok(()),
            other => other,
        }
    }

    /// Runs `f` on a reader connection (the writer's, in memory).
    fn read<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, SqliteError>,
    ) -> Result<T, SqliteError> {
        let Some((path, _)) = &self.file else {
            return f(&self.writer.blocking_lock());
        };
        let _gate = self.gate.read().map_err(|_| SqliteError::Poisoned)?;
        let pooled = self
            .readers
            .lock()
            .map_err(|_| SqliteError::Poisoned)?
            .pop();
        let conn = match pooled {
            Some(c) => c,
            None => {
                let c = Connection::open_with_flags(
                    path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )?;
                c.busy_timeout(READ_WAIT)?;
                c
            }
        };
        let out = f(&conn);
        if let Ok(mut pool) = self.readers.lock() {
            pool.push(conn);
        }
        out
    }

    fn load(&self, job_id: &str) -> Result<Option<Stored>, SqliteError> {
        let row: Option<(i64, String)> = self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT version, doc FROM jobs WHERE job_id = ?1")?
                .query_row(params![job_id], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })?;
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

    fn version(&self, job_id: &str) -> Result<Option<u64>, SqliteError> {
        let v: Option<i64> = self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT version FROM jobs WHERE job_id = ?1")?
                .query_row(params![job_id], |r| r.get(0))
                .optional()?)
        })?;
        v.map(|v| u64::try_from(v).map_err(|_| SqliteError::BadVersion(job_id.into())))
            .transpose()
    }

    /// Starts a write: the file is still ours, the lock is waited for until `started + WRITE_WAIT`.
    fn begin<'c>(
        &self,
        conn: &'c mut Connection,
        started: Instant,
    ) -> Result<rusqlite::Transaction<'c>, SqliteError> {
        self.check_writable()?;
        if self.wal_moved() {
            self.reopen_after_lost_wal(conn)?;
        }
        let left = WRITE_WAIT.saturating_sub(started.elapsed());
        conn.busy_timeout(left.max(Duration::from_millis(1)))?;
        conn.transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| busy_aware(e, started.elapsed()))
    }

    fn save(
        &self,
        conn: &mut Connection,
        job_id: &str,
        encoded: &Encoded,
        expected_version: Option<u64>,
        started: Instant,
    ) -> Result<Saved, SqliteError> {
        let new_version = expected_version.unwrap_or(0).saturating_add(1);
        let new_version =
            i64::try_from(new_version).map_err(|_| SqliteError::BadVersion(job_id.into()))?;
        let tx = self.begin(conn, started)?;
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
            for (n, record) in &encoded.records {
                let n = i64::try_from(*n).map_err(|_| SqliteError::BadVersion(job_id.into()))?;
                insert.execute(params![job_id, n, record])?;
            }
        }
        tx.prepare_cached(
            "INSERT INTO jobs (job_id, version, doc, created_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT(job_id) DO UPDATE SET version = excluded.version, doc = excluded.doc",
        )?
        .execute(params![
            job_id,
            new_version,
            encoded.doc,
            encoded.created_ms
        ])?;
        tx.commit().map_err(|e| busy_aware(e, started.elapsed()))?;
        Ok(Saved::Ok)
    }

    fn delete(
        &self,
        conn: &mut Connection,
        job_id: &str,
        expected_version: u64,
        started: Instant,
    ) -> Result<Saved, SqliteError> {
        let tx = self.begin(conn, started)?;
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
        tx.commit().map_err(|e| busy_aware(e, started.elapsed()))?;
        Ok(Saved::Ok)
    }

    fn load_workload(&self, name: &str) -> Result<Option<StoredWorkload>, SqliteError> {
        let row: Option<(i64, String)> = self.read(|conn| {
            Ok(conn
                .prepare_cached("SELECT version, doc FROM workloads WHERE workload = ?1")?
                .query_row(params![name], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?)
        })?;
        let Some((version, doc)) = row else {
            return Ok(None);
        };
        let key = || format!("workload/{name}");
        let version = u64::try_from(version).map_err(|_| SqliteError::BadVersion(key()))?;
        let state = serde_json::from_str(&doc).map_err(|source| SqliteError::Corrupt {
            job_id: key(),
            source,
        })?;
        Ok(Some(StoredWorkload { state, version }))
    }

    /// A workload's document, written if its version is still `expected_version`.
    fn save_workload(
        &self,
        conn: &mut Connection,
        name: &str,
        doc: &str,
        expected_version: Option<u64>,
        started: Instant,
    ) -> Result<Saved, SqliteError> {
        let bad = || SqliteError::BadVersion(format!("workload/{name}"));
        let new_version =
            i64::try_from(expected_version.unwrap_or(0).saturating_add(1)).map_err(|_| bad())?;
        let tx = self.begin(conn, started)?;
        let current: Option<i64> = tx
            .prepare_cached("SELECT version FROM workloads WHERE workload = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?;
        if current.map(|v| v as u64) != expected_version {
            return Ok(Saved::Conflict);
        }
        tx.prepare_cached(
            "INSERT INTO workloads (workload, version, doc) VALUES (?1, ?2, ?3)
             ON CONFLICT(workload) DO UPDATE SET version = excluded.version, doc = excluded.doc",
        )?
        .execute(params![name, new_version, doc])?;
        tx.commit().map_err(|e| busy_aware(e, started.elapsed()))?;
        Ok(Saved::Ok)
    }

    fn parse_trial(job_id: &str, record: &str) -> Result<Trial, SqliteError> {
        serde_json::from_str(record).map_err(|source| SqliteError::Corrupt {
            job_id: job_id.into(),
            source,
        })
    }

    fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, SqliteError> {
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM trials WHERE job_id = ?1 ORDER BY trial_number",
            )?;
            let rows = stmt
                .query_map(params![job_id], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.iter().map(|r| Self::parse_trial(job_id, r)).collect()
    }

    /// Up to `limit` archived trials numbered `from` or above, in order: one range
    /// scan of the trials table's primary key.
    fn archived_trials_from(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Vec<Trial>, SqliteError> {
        let Ok(from) = i64::try_from(from) else {
            return Ok(Vec::new());
        };
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT record FROM trials WHERE job_id = ?1 AND trial_number >= ?2
                 ORDER BY trial_number LIMIT ?3",
            )?;
            let rows = stmt
                .query_map(params![job_id, from, limit], |r| r.get::<_, String>(0))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })?;
        rows.iter().map(|r| Self::parse_trial(job_id, r)).collect()
    }

    fn archived_trial(
        &self,
        job_id: &str,
        trial_number: u64,
    ) -> Result<Option<Trial>, SqliteError> {
        let Ok(n) = i64::try_from(trial_number) else {
            return Ok(None);
        };
        let row: Option<String> = self.read(|conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT record FROM trials WHERE job_id = ?1 AND trial_number = ?2",
                )?
                .query_row(params![job_id, n], |r| r.get(0))
                .optional()?)
        })?;
        row.map(|r| Self::parse_trial(job_id, &r)).transpose()
    }

    /// Up to `limit` documents in list order after `after` (see [`Store::list_jobs`]).
    fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Vec<Stored>, SqliteError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = self.read(|conn| {
            Ok(match after {
                None => conn
                    .prepare_cached(
                        "SELECT job_id, version, doc FROM jobs
                         ORDER BY created_ms DESC, job_id DESC LIMIT ?1",
                    )?
                    .query_map(params![limit], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<Result<Vec<(String, i64, String)>, _>>()?,
                Some(c) => conn
                    .prepare_cached(
                        "SELECT job_id, version, doc FROM jobs
                         WHERE (created_ms, job_id) < (?1, ?2)
                         ORDER BY created_ms DESC, job_id DESC LIMIT ?3",
                    )?
                    .query_map(params![c.created_ms, c.job_id, limit], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    })?
                    .collect::<Result<Vec<(String, i64, String)>, _>>()?,
            })
        })?;
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
        let job_id = job_id.to_string();
        self.blocking(move |inner| inner.load(&job_id)).await
    }

    async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, SqliteError> {
        let expected_version = write.expected_version;
        let encoded = encode(write.state, write.archive)?;
        let job_id = job_id.to_string();
        self.write(move |inner, conn, started| {
            inner.save(conn, &job_id, &encoded, expected_version, started)
        })
        .await
    }

    async fn delete(&self, job_id: &str, expected_version: u64) -> Result<Saved, SqliteError> {
        let job_id = job_id.to_string();
        self.write(move |inner, conn, started| {
            inner.delete(conn, &job_id, expected_version, started)
        })
        .await
    }

    async fn load_workload(&self, workload: &str) -> Result<Option<StoredWorkload>, SqliteError> {
        let name = workload.to_string();
        self.blocking(move |inner| inner.load_workload(&name)).await
    }

    async fn save_workload(
        &self,
        workload: &str,
        state: &WorkloadState,
        expected_version: Option<u64>,
    ) -> Result<Saved, SqliteError> {
        let doc = serde_json::to_string(state).map_err(SqliteError::Encode)?;
        let name = workload.to_string();
        self.write(move |inner, conn, started| {
            inner.save_workload(conn, &name, &doc, expected_version, started)
        })
        .await
    }

    async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, SqliteError> {
        let job_id = job_id.to_string();
        self.blocking(move |inner| inner.archived_trials(&job_id))
            .await
    }

    async fn archived_trial(
        &self,
        job_id: &str,
        trial_number: u64,
    ) -> Result<Option<Trial>, SqliteError> {
        let job_id = job_id.to_string();
        self.blocking(move |inner| inner.archived_trial(&job_id, trial_number))
            .await
    }

    async fn archived_trials_from(
        &self,
        job_id: &str,
        from: u64,
        limit: usize,
    ) -> Result<Option<Vec<Trial>>, SqliteError> {
        let job_id = job_id.to_string();
        self.blocking(move |inner| inner.archived_trials_from(&job_id, from, limit))
            .await
            .map(Some)
    }

    async fn version(&self, job_id: &str) -> Result<Option<u64>, SqliteError> {
        let job_id = job_id.to_string();
        self.blocking(move |inner| inner.version(&job_id)).await
    }

    async fn writable(&self) -> Result<(), SqliteError> {
        self.probe().await
    }

    async fn list_jobs(
        &self,
        after: Option<&ListCursor>,
        limit: usize,
    ) -> Result<Option<Listed>, SqliteError> {
        let after = after.cloned();
        let page = self
            .blocking(move |inner| inner.list_jobs(after.as_ref(), limit.saturating_add(1)))
            .await?;
        Ok(Some(Listed::from_one_more(page, limit)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wattwise_core::spec::JobSpec;
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
                    energy_uncertainty_j: None,
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
        assert_eq!(
            s.save_sync("job-a", Write::new(&st, None, &[])).unwrap(),
            Saved::Ok
        );
        // Creating again conflicts.
        assert_eq!(
            s.save_sync("job-a", Write::new(&st, None, &[])).unwrap(),
            Saved::Conflict
        );
        let got = s.load_sync("job-a").unwrap().unwrap();
        assert_eq!(got.version, 1);
        assert_eq!(got.state, st);
        // A stale version conflicts and writes nothing.
        assert_eq!(
            s.save_sync("job-a", Write::new(&st, Some(7), &[trial(1)]))
                .unwrap(),
            Saved::Conflict
        );
        assert!(s.archived_trials_sync("job-a").unwrap().is_empty());
        assert_eq!(
            s.save_sync("job-a", Write::new(&st, Some(1), &[trial(1)]))
                .unwrap(),
            Saved::Ok
        );
        assert_eq!(s.load_sync("job-a").unwrap().unwrap().version, 2);
        assert_eq!(s.archived_trials_sync("job-a").unwrap(), vec![trial(1)]);
    }

    #[test]
    fn archive_is_idempotent_and_ordered() {
        let (_dir, s) = temp_store();
        let st = state("job-b");
        s.save_sync("job-b", Write::new(&st, None, &[])).unwrap();
        s.save_sync("job-b", Write::new(&st, Some(1), &[trial(3), trial(1)]))
            .unwrap();
        s.save_sync("job-b", Write::new(&st, Some(2), &[trial(1), trial(2)]))
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
    fn survives_reopen_and_reports_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.save_sync("job-d", Write::new(&state("job-d"), None, &[]))
                .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.load_sync("job-d").unwrap().unwrap().state, state("job-d"));
        s.execute_sync("UPDATE jobs SET doc = '{' WHERE job_id = 'job-d'")
            .unwrap();
        let err = s.load_sync("job-d").unwrap_err();
        assert!(err.to_string().contains("job-d"), "{err}");
        // The version still reads, so the job can still be deleted.
        assert_eq!(s.version_sync("job-d").unwrap(), Some(1));
        assert_eq!(s.delete_sync("job-d", 1).unwrap(), Saved::Ok);
    }

    #[test]
    fn a_database_made_before_the_list_column_gets_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema and a job as a build without the column wrote them.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE jobs (job_id TEXT PRIMARY KEY NOT NULL,
                                    version INTEGER NOT NULL, doc TEXT NOT NULL);",
            )
            .unwrap();
            let doc = serde_json::to_string(&state_at("job-old", 42)).unwrap();
            conn.execute(
                "INSERT INTO jobs (job_id, version, doc) VALUES ('job-old', 1, ?1)",
                params![doc],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        s.save_sync("job-new", Write::new(&state_at("job-new", 50), None, &[]))
            .unwrap();
        let ids: Vec<String> = s
            .list_jobs_sync(None, 10)
            .unwrap()
            .iter()
            .map(|j| j.state.job_id().to_string())
            .collect();
        assert_eq!(ids, ["job-new", "job-old"]);
        // Opening it again finds the column and changes nothing.
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list_jobs_sync(None, 10).unwrap().len(), 2);
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
            s.save_sync(id, Write::new(&state_at(id, at), None, &[]))
                .unwrap();
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
        let conn = s.inner.writer.blocking_lock();
        for sql in [
            "EXPLAIN QUERY PLAN SELECT job_id FROM jobs
             ORDER BY created_ms DESC, job_id DESC LIMIT 5",
            "EXPLAIN QUERY PLAN SELECT job_id FROM jobs
             WHERE (created_ms, job_id) < (30, 'job-a')
             ORDER BY created_ms DESC, job_id DESC LIMIT 5",
        ] {
            let plan: Vec<String> = conn
                .prepare(sql)
                .unwrap()
                .query_map([], |r| r.get::<_, String>(3))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            let plan = plan.join(" | ");
            assert!(plan.contains("jobs_by_created_ms"), "{plan}");
            assert!(!plan.contains("TEMP B-TREE"), "{plan}");
        }
    }

    #[test]
    fn pages_the_archive_in_trial_order() {
        let (_dir, s) = temp_store();
        let st = state("job-p");
        s.save_sync("job-p", Write::new(&st, None, &[])).unwrap();
        s.save_sync(
            "job-p",
            Write::new(&st, Some(1), &[trial(5), trial(2), trial(9)]),
        )
        .unwrap();
        let page = |from, limit| -> Vec<u64> {
            s.inner
                .archived_trials_from("job-p", from, limit)
                .unwrap()
                .iter()
                .map(|t| t.trial_number)
                .collect()
        };
        assert_eq!(page(0, 2), [2, 5]);
        assert_eq!(page(6, 10), [9]);
        assert!(page(10, 10).is_empty());
        assert!(page(u64::MAX, 10).is_empty());
    }

    #[test]
    fn health_reports_what_a_write_meets_on_a_full_database() {
        let (_dir, s) = temp_store();
        let rt = tokio::runtime::Runtime::new().unwrap();
        s.save_sync("job-f", Write::new(&state("job-f"), None, &[]))
            .unwrap();
        // SQLite's own "database or disk is full": no page beyond those it has
        // (and none free: nothing was deleted yet).
        let set_max = |pages: Option<i64>| {
            let conn = s.inner.writer.blocking_lock();
            let now: i64 = conn
                .query_row("PRAGMA page_count", [], |r| r.get(0))
                .unwrap();
            conn.query_row(
                &format!("PRAGMA max_page_count = {}", pages.unwrap_or(now)),
                [],
                |_| Ok(()),
            )
            .unwrap();
        };
        set_max(None);
        let err = rt.block_on(s.probe()).unwrap_err();
        assert!(err.to_string().contains("full"), "{err}");
        // A failed write says the same until a write succeeds.
        let st = state("job-f");
        let archive: Vec<Trial> = (1..=400).map(trial).collect();
        assert!(s
            .save_sync("job-f", Write::new(&st, Some(1), &archive))
            .is_err());
        assert!(rt.block_on(s.probe()).is_err());
        set_max(Some(1 << 30));
        s.save_sync("job-f", Write::new(&st, Some(1), &archive))
            .unwrap();
        rt.block_on(s.probe()).unwrap();
    }

    #[test]
    fn a_deleted_wal_file_is_saved_and_replaced_before_the_next_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.db");
        let s = SqliteStore::open(&path).unwrap();
        s.save_sync("job-w1", Write::new(&state("job-w1"), None, &[]))
            .unwrap();
        std::fs::remove_file(wal_path(&path)).unwrap();
        s.save_sync("job-w2", Write::new(&state("job-w2"), None, &[]))
            .unwrap();
        assert!(wal_path(&path).exists(), "a new -wal file");
        assert!(s.load_sync("job-w1").unwrap().is_some());
        // What a crash now leaves on disk: the database and the -wal file its path names.
        let copy = dir.path().join("copy");
        std::fs::create_dir(&copy).unwrap();
        std::fs::copy(&path, copy.join("w.db")).unwrap();
        std::fs::copy(wal_path(&path), copy.join("w.db-wal")).unwrap();
        let conn = Connection::open(copy.join("w.db")).unwrap();
        let ids: Vec<String> = conn
            .prepare("SELECT job_id FROM jobs ORDER BY job_id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(ids, ["job-w1", "job-w2"]);
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(s.probe()).unwrap();
    }

    #[test]
    fn racing_writers_one_wins() {
        let (_dir, s) = temp_store();
        let s = std::sync::Arc::new(s);
        s.save_sync("job-e", Write::new(&state("job-e"), None, &[]))
            .unwrap();
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    s.save_sync("job-e", Write::new(&state("job-e"), Some(1), &[]))
                })
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
