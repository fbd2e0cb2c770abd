//! Reliability under hostile numbers, degenerate results and late reports, over
//! the memory store (the SQLite store runs the same hostile traffic in the
//! lambda crate's tests).

use serde_json::{json, Value};
use wattwise_core::job::JobState;
use wattwise_core::service::{MemoryStore, Service, ServiceConfig};
use wattwise_core::test_support::harness::Harness;
use wattwise_core::test_support::hostile_docs;

#[test]
fn ten_thousand_hostile_documents_read_back() {
    let service = Service::new(MemoryStore::default(), ServiceConfig::default());
    let tally = pollster::block_on(hostile_docs::run(&service, 17, 10_000));
    assert!(tally.documents >= 10_000, "{tally:?}");
    assert!(tally.jobs > 50 && tally.refused > 50, "{tally:?}");
}

fn register(h: &mut Harness, id: &str, extra: Value) {
    let mut spec = json!({"job_id": id, "job_id_prefix": "rel", "batch_sizes": [8, 16, 32],
        "default_batch_size": 16, "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "A40",
        "max_epochs": 5, "mab_seed": 3});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let (status, body) = h.call("POST", "/jobs", &spec.to_string());
    assert_eq!(status, 201, "{body}");
}

fn predict(h: &mut Harness, id: &str) -> Value {
    let (status, body) = h.call("GET", &format!("/jobs/batch_size?job_id={id}"), "");
    assert_eq!(status, 200, "predict must give a batch size: {body}");
    body
}

fn report(h: &mut Harness, t: &Value, time: f64, energy: f64, metric: f64) -> (u16, Value) {
    let body = json!({"job_id": t["job_id"], "batch_size": t["batch_size"],
        "trial_number": t["trial_number"], "time": time, "energy": energy,
        "metric": metric, "current_epoch": 1});
    h.call("POST", "/report", &body.to_string())
}

#[test]
fn huge_inputs_are_refused_with_the_field_and_the_rule() {
    let mut h = Harness::new();
    for (field, value) in [
        ("max_power", json!(1e308)),
        ("beta_knob", json!(1e300)),
        ("mab_prior_mean", json!(-1e300)),
        ("mab_prior_precision", json!(1e300)),
    ] {
        let spec = json!({"job_id": "rel-x", "job_id_prefix": "rel", "batch_sizes": [8],
            "default_batch_size": 8, "max_power": 300.0, "number_of_gpus": 1,
            "gpu_model": "A40", field: value});
        let (status, body) = h.call("POST", "/jobs", &spec.to_string());
        assert_eq!(status, 422, "{field}: {body}");
        let msg = body["message"].as_str().unwrap();
        assert!(msg.starts_with(&format!("{field}: must")), "{msg}");
    }
    register(&mut h, "rel-1", json!({}));
    let t = predict(&mut h, "rel-1");
    for (time, energy, field) in [(1e300, 1.0, "time"), (1.0, 1e300, "energy")] {
        let (status, body) = report(&mut h, &t, time, energy, 1.0);
        assert_eq!(status, 422, "{body}");
        assert!(
            body["message"].as_str().unwrap().starts_with(field),
            "{body}"
        );
    }
}

#[test]
fn the_largest_accepted_numbers_keep_the_document_finite() {
    let mut h = Harness::new();
    register(
        &mut h,
        "rel-big",
        json!({"max_power": 1e9, "mab_prior_mean": -1e18, "mab_prior_precision": 1e18,
               "beta_knob": 1e6, "eta_knob": 0.0, "window_size": 2}),
    );
    for i in 0..40 {
        let t = predict(&mut h, "rel-big");
        let (time, energy) = if i % 2 == 0 {
            (1e9, 1e18)
        } else {
            (0.0, 5e-324)
        };
        let (status, body) = report(&mut h, &t, time, energy, 1.0);
        assert_eq!(status, 200, "{body}");
        let doc = h.state("rel-big");
        serde_json::from_value::<JobState>(doc.clone()).expect("document reads back");
        assert!(!doc.to_string().contains("null,") || doc["min_cost"].is_number());
    }
}

#[test]
fn a_zero_cost_result_never_bricks_a_job() {
    let mut h = Harness::new();
    register(&mut h, "rel-zero", json!({"num_pruning_rounds": 2}));
    let t = predict(&mut h, "rel-zero");
    let (status, body) = report(&mut h, &t, 0.0, 0.0, 1.0);
    assert_eq!((status, body["converged"].clone()), (200, json!(true)));
    for _ in 0..30 {
        let t = predict(&mut h, "rel-zero");
        let (status, body) = report(&mut h, &t, 10.0, 1000.0, 1.0);
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["converged"], json!(true), "{body}");
    }
}

#[test]
fn identical_costs_and_a_single_batch_size_always_give_a_batch_size() {
    let mut h = Harness::new();
    register(&mut h, "rel-same", json!({}));
    register(
        &mut h,
        "rel-one",
        json!({"batch_sizes": [16], "num_pruning_rounds": 3, "max_epochs": 1}),
    );
    for _ in 0..30 {
        let t = predict(&mut h, "rel-same");
        assert_eq!(report(&mut h, &t, 10.0, 1000.0, 1.0).0, 200);
        // The lone batch size never reaches the target: it is still the answer.
        let t = predict(&mut h, "rel-one");
        assert_eq!(t["batch_size"], json!(16));
        assert_eq!(report(&mut h, &t, 10.0, 1000.0, 0.0).0, 200);
    }
    assert_eq!(h.state("rel-same")["stage"], json!("MAB"));
    assert_eq!(h.state("rel-one")["stage"], json!("MAB"));
}

#[test]
fn a_late_report_gets_the_same_answer_in_the_document_and_in_the_archive() {
    let mut h = Harness::new();
    register(&mut h, "rel-late", json!({}));
    let ended = predict(&mut h, "rel-late");
    let done = predict(&mut h, "rel-late");
    assert_eq!(report(&mut h, &done, 1.0, 10.0, 1.0).0, 200);
    let (status, _) = h.call("PATCH", "/trials", &ended.to_string());
    assert_eq!(status, 200);
    let answers = |h: &mut Harness| {
        let failed = report(h, &ended, 1.0, 10.0, 1.0);
        let succeeded = report(h, &done, 1.0, 10.0, 1.0);
        let mut wrong = done.clone();
        wrong["batch_size"] = json!(8 + 16 + 32);
        let mismatch = report(h, &wrong, 1.0, 10.0, 1.0).0;
        let invalid = report(h, &ended, -1.0, 10.0, 1.0).0;
        (failed, succeeded, mismatch, invalid)
    };
    let in_document = answers(&mut h);
    assert_eq!(in_document.0 .0, 400, "{:?}", in_document.0);
    // Push both trials out of the document into the archive.
    for _ in 0..(JobState::RECENT_TRIALS + 2) {
        let t = predict(&mut h, "rel-late");
        assert_eq!(report(&mut h, &t, 1.0, 10.0, 1.0).0, 200);
    }
    let doc = h.state("rel-late").to_string();
    assert!(!doc.contains(&format!("\"trial_number\":{},", ended["trial_number"])));
    let in_archive = answers(&mut h);
    assert_eq!(in_archive, in_document);
}
