//! The SQLite store under hostile numbers, a corrupt document, another process's
//! write lock and a deleted database directory.

use std::time::{Duration, Instant};

use wattwise_core::service::{Request, Service, ServiceConfig, Store};
use wattwise_core::test_support::hostile_docs;
use wattwise_lambda::sqlite::{SqliteError, SqliteStore, WRITE_WAIT};
use wattwise_lambda::SystemEnv;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn call(
    service: &Service<SqliteStore>,
    method: &str,
    target: &str,
    body: &str,
) -> (u16, serde_json::Value) {
    let req = Request::new(method, target, body.as_bytes());
    let out = service.handle(req, &mut SystemEnv).await;
    (
        out.status,
        serde_json::from_slice(&out.body).unwrap_or_default(),
    )
}

const SPEC: &str = r#"{"job_id": "rel-1", "job_id_prefix": "rel", "batch_sizes": [8, 16],
    "default_batch_size": 16, "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "A40"}"#;

#[test]
fn ten_thousand_hostile_documents_read_back_from_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("h.db")).unwrap();
    let service = Service::new(store, ServiceConfig::default());
    let tally = runtime().block_on(hostile_docs::run(&service, 29, 10_000));
    assert!(tally.documents >= 10_000, "{tally:?}");
}

#[test]
fn a_job_whose_document_does_not_parse_can_still_be_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("c.db")).unwrap();
    let service = Service::new(store.clone(), ServiceConfig::default());
    let rt = runtime();
    rt.block_on(async { assert_eq!(call(&service, "POST", "/jobs", SPEC).await.0, 201) });
    // What an older build wrote after an overflow: a null where a number belongs.
    let changed = store
        .execute_sync(
            "UPDATE jobs SET doc = replace(doc, '\"max_power\":300.0', '\"max_power\":null')",
        )
        .unwrap();
    assert_eq!(changed, 1);
    rt.block_on(async {
        let (status, body) = call(&service, "GET", "/jobs/rel-1", "").await;
        assert_eq!(status, 503, "{body}");
        let (status, body) = call(&service, "DELETE", "/jobs?job_id=rel-1", "").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(call(&service, "GET", "/jobs/rel-1", "").await.0, 404);
        assert_eq!(call(&service, "POST", "/jobs", SPEC).await.0, 201);
    });
}

#[test]
fn reads_do_not_wait_behind_another_writer_and_writes_wait_a_bounded_time() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.db");
    let store = SqliteStore::open(&path).unwrap();
    let service = Service::new(store, ServiceConfig::default());
    let rt = runtime();
    rt.block_on(async { assert_eq!(call(&service, "POST", "/jobs", SPEC).await.0, 201) });
    // Another connection (as another process would) holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    rt.block_on(async {
        let t = Instant::now();
        let (status, _) = call(&service, "GET", "/jobs/rel-1", "").await;
        assert_eq!(status, 200);
        assert_eq!(call(&service, "GET", "/healthz", "").await.0, 200);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );
        let t = Instant::now();
        let (status, body) = call(&service, "GET", "/jobs/batch_size?job_id=rel-1", "").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("locked"),
            "{body}"
        );
        assert!(t.elapsed() < WRITE_WAIT * 2, "{:?}", t.elapsed());
    });
    other.execute_batch("COMMIT").unwrap();
    rt.block_on(async {
        let (status, body) = call(&service, "GET", "/jobs/batch_size?job_id=rel-1", "").await;
        assert_eq!(status, 200, "{body}");
    });
}

#[test]
fn a_deleted_database_refuses_writes_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("db");
    std::fs::create_dir(&sub).unwrap();
    let store = SqliteStore::open(sub.join("d.db")).unwrap();
    let service = Service::new(store.clone(), ServiceConfig::default());
    let rt = runtime();
    rt.block_on(async { assert_eq!(call(&service, "POST", "/jobs", SPEC).await.0, 201) });
    std::fs::remove_dir_all(&sub).unwrap();
    assert!(matches!(
        store.check_writable(),
        Err(SqliteError::NotWritable { .. })
    ));
    rt.block_on(async {
        let (status, body) = call(&service, "GET", "/healthz", "").await;
        assert_eq!(status, 503, "{body}");
        assert!(
            body["message"].as_str().unwrap().contains("deleted"),
            "{body}"
        );
        let (status, body) = call(&service, "GET", "/jobs/batch_size?job_id=rel-1", "").await;
        assert_eq!(status, 503, "{body}");
        let spec = SPEC.replace("rel-1", "rel-2");
        assert_eq!(call(&service, "POST", "/jobs", &spec).await.0, 503);
        assert!(store.writable().await.is_err());
    });
}

#[test]
fn a_database_that_cannot_be_written_does_not_open() {
    let dir = tempfile::tempdir().unwrap();
    // A directory where the file should be: SQLite cannot open it at all.
    let err = SqliteStore::open(dir.path()).err().expect("must not open");
    assert!(!err.to_string().is_empty());
    // A file that is not a database.
    let junk = dir.path().join("junk.db");
    std::fs::write(&junk, vec![7u8; 8192]).unwrap();
    assert!(SqliteStore::open(&junk).is_err());
}
