//! The SQLite store keeps the store contract (the `Store` trait's rules, as the
//! core writes them in `wattwise_core::store_contract`).

use wattwise_core::store_contract;
use wattwise_lambda::sqlite::SqliteStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_keeps_the_contract() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path().join("contract.db")).expect("open");
    let violations = store_contract::check(&store, "sqlite").await;
    assert!(violations.is_empty(), "{violations:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_sqlite_file_still_keeps_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("contract.db");
    drop(SqliteStore::open(&path).expect("open"));
    let store = SqliteStore::open(&path).expect("reopen");
    let violations = store_contract::check(&store, "reopened").await;
    assert!(violations.is_empty(), "{violations:#?}");
}
