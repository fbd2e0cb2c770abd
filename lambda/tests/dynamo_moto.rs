//! The DynamoDB store against a real DynamoDB API: moto's server on 127.0.0.1.
//!
//! tests/endpoint/run.sh starts moto, exports the AWS variables (endpoint, dummy
//! credentials, region) and runs these with `--include-ignored`; they are ignored
//! in a plain `cargo test`, and fail (saying why) when asked to run without moto.

use aws_sdk_dynamodb::types::AttributeValue;
use wattwise_core::job::JobState;
use wattwise_core::service::{Request, Saved, Service, ServiceConfig, Store, Write};
use wattwise_core::spec::JobSpec;
use wattwise_core::test_support::hostile_docs;
use wattwise_core::trial::{RunResult, Trial, TrialStatus, TrialType};
use wattwise_lambda::dynamo::DynamoStore;

/// A fresh table on moto. The AWS variables come from the caller's environment
/// (never set here: tests run in parallel threads).
async fn store(name: &str) -> DynamoStore {
    for var in ["WATTWISE_DYNAMO_TEST_URL", "AWS_ENDPOINT_URL", "AWS_REGION"] {
        assert!(
            std::env::var_os(var).is_some(),
            "{var} is unset: run these tests through tests/endpoint/run.sh, which starts moto"
        );
    }
    let table = format!("store-test-{name}-{}", std::process::id());
    let s = DynamoStore::from_env(table).await;
    s.create_table().await.expect("create table");
    s
}

/// A fresh store holding job `job_id` (seed 1) with `trials` archived.
async fn store_with(name: &str, job_id: &str, trials: &[Trial]) -> DynamoStore {
    let s = store(name).await;
    s.save(job_id, Write::new(&state(job_id, 1), None, trials))
        .await
        .unwrap();
    s
}

/// The key of a job's document item, to edit it behind the store's back.
fn document_key(job_id: &str) -> std::collections::HashMap<String, AttributeValue> {
    [
        ("job_id".to_string(), AttributeValue::S(job_id.into())),
        ("item".to_string(), AttributeValue::S("job".into())),
    ]
    .into()
}

fn state(job_id: &str, seed: u64) -> JobState {
    let mut spec = JobSpec::new("job", vec![8, 16, 32], 16, 300.0, 1, "A100");
    spec.job_id = Some(job_id.into());
    JobState::new(job_id.into(), spec.validate().unwrap(), seed, 1_000)
}

fn trial(n: u64) -> Trial {
    Trial {
        trial_number: n,
        batch_size: 16,
        kind: TrialType::Mab,
        start_ms: 1,
        status: TrialStatus::Succeeded {
            end_ms: 2,
            result: RunResult {
                time: n as f64,
                energy: 2.0,
                converged: true,
                energy_uncertainty_j: None,
            },
        },
    }
}

#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn conditional_writes_archive_and_delete() {
    let s = store("cond").await;
    let a = state("job-a", 1);
    let b = state("job-a", 2);
    assert_eq!(s.load("job-a").await.unwrap(), None);
    assert_eq!(
        s.save("job-a", Write::new(&a, None, &[])).await.unwrap(),
        Saved::Ok
    );
    assert_eq!(
        s.save("job-a", Write::new(&b, None, &[])).await.unwrap(),
        Saved::Conflict
    );
    let got = s.load("job-a").await.unwrap().unwrap();
    assert_eq!((got.version, &got.state), (1, &a));
    // Stale version: nothing written, not even the trials (one transaction).
    assert_eq!(
        s.save("job-a", Write::new(&b, Some(5), &[trial(1)]))
            .await
            .unwrap(),
        Saved::Conflict
    );
    assert!(s.archived_trials("job-a").await.unwrap().is_empty());
    assert_eq!(
        s.save("job-a", Write::new(&b, Some(1), &[trial(1), trial(2)]))
            .await
            .unwrap(),
        Saved::Ok
    );
    let got = s.load("job-a").await.unwrap().unwrap();
    assert_eq!((got.version, &got.state), (2, &b));
    // More trials than one transaction holds, some repeated: idempotent, all there.
    let many: Vec<Trial> = (2..=150).map(trial).collect();
    assert_eq!(
        s.save("job-a", Write::new(&a, Some(2), &many))
            .await
            .unwrap(),
        Saved::Ok
    );
    let mut numbers: Vec<u64> = s
        .archived_trials("job-a")
        .await
        .unwrap()
        .iter()
        .map(|t| t.trial_number)
        .collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=150).collect::<Vec<_>>());
    // One archived trial by its key, and the version without the document.
    assert_eq!(
        s.archived_trial("job-a", 77).await.unwrap(),
        Some(trial(77))
    );
    assert_eq!(s.archived_trial("job-a", 151).await.unwrap(), None);
    assert_eq!(s.version("job-a").await.unwrap(), Some(3));
    assert_eq!(s.version("job-b").await.unwrap(), None);
    // Other jobs do not see them.
    assert!(s.archived_trials("job-b").await.unwrap().is_empty());

    assert_eq!(s.delete("job-a", 2).await.unwrap(), Saved::Conflict);
    assert!(s.load("job-a").await.unwrap().is_some());
    assert_eq!(s.delete("job-a", 3).await.unwrap(), Saved::Ok);
    assert_eq!(s.load("job-a").await.unwrap(), None);
    assert!(s.archived_trials("job-a").await.unwrap().is_empty());
}

#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn racing_writers_one_wins() {
    let s = store("race").await;
    s.save("job-r", Write::new(&state("job-r", 1), None, &[]))
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.save(
                "job-r",
                Write::new(&state("job-r", 10 + i), Some(1), &[trial(i + 1)]),
            )
            .await
            .unwrap()
        }));
    }
    let mut wins = 0;
    for t in tasks {
        if t.await.unwrap() == Saved::Ok {
            wins += 1;
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(s.load("job-r").await.unwrap().unwrap().version, 2);
    assert_eq!(s.archived_trials("job-r").await.unwrap().len(), 1);
}

fn state_at(job_id: &str, created_ms: i64) -> JobState {
    let mut spec = JobSpec::new("job", vec![8, 16, 32], 16, 300.0, 1, "A100");
    spec.job_id = Some(job_id.into());
    JobState::new(job_id.into(), spec.validate().unwrap(), 1, created_ms)
}

#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn lists_documents_newest_first_through_the_index() {
    let s = store("list").await;
    for (id, at) in [("job-a", 30), ("job-b", 10), ("job-c", 30), ("job-d", 20)] {
        assert_eq!(
            s.save(id, Write::new(&state_at(id, at), None, &[]))
                .await
                .unwrap(),
            Saved::Ok
        );
    }
    // Archived trials never show in the list.
    s.save(
        "job-b",
        Write::new(&state_at("job-b", 10), Some(1), &[trial(1), trial(2)]),
    )
    .await
    .unwrap();
    let ids = |v: wattwise_core::store::Listed| -> Vec<String> {
        v.jobs
            .iter()
            .map(|s| s.state.job_id().to_string())
            .collect()
    };
    let all = s.list_jobs(None, 10).await.unwrap().unwrap();
    assert_eq!(all.next, None);
    assert_eq!(all.jobs[3].version, 2);
    assert_eq!(ids(all), ["job-c", "job-a", "job-d", "job-b"]);
    let after = wattwise_core::store::ListCursor {
        created_ms: 30,
        job_id: "job-a".into(),
        resume: None,
    };
    let one = s.list_jobs(Some(&after), 1).await.unwrap().unwrap();
    assert_eq!(one.next.as_ref().map(|c| c.job_id.as_str()), Some("job-d"));
    assert_eq!(ids(one), ["job-d"]);
    s.delete("job-c", 1).await.unwrap();
    assert_eq!(
        ids(s.list_jobs(None, 2).await.unwrap().unwrap()),
        ["job-a", "job-d"]
    );
}

#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn a_job_whose_document_does_not_parse_can_still_be_deleted() {
    let s = store_with("corrupt", "job-c", &[trial(1)]).await;
    // A document no build can read back (what an overflow once stored).
    s.client()
        .update_item()
        .table_name(s.table())
        .set_key(Some(document_key("job-c")))
        .update_expression("SET doc = :d")
        .expression_attribute_values(":d", AttributeValue::S("{\"max_power\": null".into()))
        .send()
        .await
        .unwrap();
    assert!(s.load("job-c").await.is_err());
    let service = Service::new(s.clone(), ServiceConfig::default());
    let req = Request::new("DELETE", "/jobs?job_id=job-c", b"");
    let out = service.handle(req, &mut wattwise_lambda::SystemEnv).await;
    assert_eq!(out.status, 200, "{}", String::from_utf8_lossy(&out.body));
    assert_eq!(s.load("job-c").await.unwrap(), None);
    assert!(s.archived_trials("job-c").await.unwrap().is_empty());
}

/// Hostile documents through DynamoDB: `WATTWISE_DYNAMO_HOSTILE_DOCS` of them
/// (default 10,000), each written to moto and read back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn hostile_documents_read_back_from_dynamodb() {
    let s = store("hostile").await;
    let want: usize = std::env::var("WATTWISE_DYNAMO_HOSTILE_DOCS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    let service = Service::new(s, ServiceConfig::default());
    let tally = hostile_docs::run(&service, 31, want).await;
    assert!(tally.documents >= want, "{tally:?}");
}

/// The store contract (the `Store` trait's rules, as the core writes them).
#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn keeps_the_store_contract() {
    let s = store("contract").await;
    let violations = wattwise_core::store_contract::check(&s, "contract").await;
    assert!(violations.is_empty(), "{violations:#?}");
}

/// Trial records a failed purge left behind are not seen by the job created again.
#[tokio::test]
#[ignore = "needs moto's server: tests/endpoint/run.sh runs it"]
async fn a_job_created_again_does_not_see_trials_a_purge_left() {
    let s = store_with("leftover", "job-l", &[trial(1), trial(2)]).await;
    // The document goes, its trials stay: what a purge that failed midway leaves.
    s.client()
        .delete_item()
        .table_name(s.table())
        .set_key(Some(document_key("job-l")))
        .send()
        .await
        .unwrap();
    assert_eq!(s.archived_trials("job-l").await.unwrap().len(), 2);
    assert_eq!(
        s.save("job-l", Write::new(&state("job-l", 2), None, &[]))
            .await
            .unwrap(),
        Saved::Ok
    );
    assert!(s.archived_trials("job-l").await.unwrap().is_empty());
}
