//! The HTTP service over the memory store: auth, limits, routing and error bodies.

use serde_json::json;
use wattwise_core::service::{ServiceConfig, Store};
use wattwise_core::test_support::harness::Harness;

fn spec() -> serde_json::Value {
    json!({"job_id_prefix": "svc", "batch_sizes": [16, 32], "default_batch_size": 32,
           "max_power": 250.0, "number_of_gpus": 2, "gpu_model": "A40"})
}

#[test]
fn generated_job_ids_start_with_the_prefix_and_are_distinct() {
    let mut h = Harness::new();
    let (s1, a) = h.call("POST", "/jobs", &spec().to_string());
    let (s2, b) = h.call("POST", "/jobs", &spec().to_string());
    assert_eq!((s1, s2), (201, 201));
    let (a, b) = (a["job_id"].as_str().unwrap(), b["job_id"].as_str().unwrap());
    assert!(a.starts_with("svc-") && b.starts_with("svc-"));
    assert_ne!(a, b);
}

#[test]
fn token_is_required_everywhere_but_healthz() {
    let mut h = Harness::with_config(ServiceConfig {
        token: Some("s3cret".into()),
        ..Default::default()
    });
    assert_eq!(h.call_raw("GET", "/healthz", "", None).0, 200);
    assert_eq!(
        h.call_raw("POST", "/jobs", &spec().to_string(), None).0,
        401
    );
    assert_eq!(
        h.call_raw("POST", "/jobs", &spec().to_string(), Some("Bearer wrong"))
            .0,
        401
    );
    assert_eq!(
        h.call_raw("POST", "/jobs", &spec().to_string(), Some("s3cret"))
            .0,
        401
    );
    assert_eq!(
        h.call_raw("POST", "/jobs", &spec().to_string(), Some("Bearer s3cret"))
            .0,
        201
    );
}

#[test]
fn oversized_bodies_are_413() {
    let mut h = Harness::new();
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(70_000));
    let (status, body) = h.call("POST", "/jobs", &big);
    assert_eq!(status, 413);
    assert!(body["message"].as_str().unwrap().contains("65536"));
}

#[test]
fn routes_methods_and_bodies() {
    let mut h = Harness::new();
    assert_eq!(h.call("GET", "/nowhere", "").0, 404);
    assert_eq!(h.call("PUT", "/jobs", "").0, 405);
    assert_eq!(h.call("GET", "/report", "").0, 405);
    let (status, body) = h.call("GET", "/jobs/batch_size", "");
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().starts_with("job_id:"));
    let (status, body) = h.call("POST", "/jobs", r#"{"job_id_prefix": "svc"}"#);
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().contains("batch_sizes"),
        "{body}"
    );
    let mut bad = spec();
    bad["max_epochs"] = json!("ten");
    let (status, body) = h.call("POST", "/jobs", &bad.to_string());
    assert_eq!(status, 422);
    assert!(
        body["message"].as_str().unwrap().starts_with("max_epochs:"),
        "{body}"
    );
    let mut bad = spec();
    bad["eta_knob"] = json!(2.0);
    let (status, body) = h.call("POST", "/jobs", &bad.to_string());
    assert_eq!(status, 422);
    assert_eq!(body["message"], "eta_knob: must be in [0, 1]");
    let (status, doc) = h.call("GET", "/openapi.json", "");
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
}

#[test]
fn profiles_are_stored_replaced_and_validated() {
    let mut h = Harness::new();
    let mut s = spec();
    s["job_id"] = json!("svc-p");
    assert_eq!(h.call("POST", "/jobs", &s.to_string()).0, 201);
    let profile = json!({"batch_size": 32, "phase": "train", "gpu_model": "A40",
        "measurements": [{"power_limit": 300, "average_power": 280.5, "throughput": 900.0},
                         {"power_limit": 250, "average_power": 240.0, "throughput": 850.0}]});
    assert_eq!(
        h.call("POST", "/jobs/svc-p/profiles", &profile.to_string())
            .0,
        201
    );
    let mut newer = profile.clone();
    newer["measurements"][0]["throughput"] = json!(910.0);
    assert_eq!(
        h.call("POST", "/jobs/svc-p/profiles", &newer.to_string()).0,
        201
    );
    let (_, list) = h.call("GET", "/jobs/svc-p/profiles", "");
    assert_eq!(list, json!([newer]));
    let before = h.state("svc-p");
    let mut bad = profile.clone();
    bad["batch_size"] = json!(48);
    let (status, body) = h.call("POST", "/jobs/svc-p/profiles", &bad.to_string());
    assert_eq!(status, 422);
    assert!(body["message"].as_str().unwrap().starts_with("batch_size:"));
    let mut bad = profile.clone();
    bad["phase"] = json!("warmup");
    assert_eq!(
        h.call("POST", "/jobs/svc-p/profiles", &bad.to_string()).0,
        422
    );
    assert_eq!(
        h.call("POST", "/jobs/nope/profiles", &profile.to_string())
            .0,
        404
    );
    assert_eq!(h.state("svc-p"), before);
}

#[test]
fn profile_bounds_and_the_uncertain_note_are_stored_and_validated() {
    let mut h = Harness::new();
    let mut s = spec();
    s["job_id"] = json!("svc-b");
    assert_eq!(h.call("POST", "/jobs", &s.to_string()).0, 201);
    let profile = json!({"batch_size": 32, "phase": "train", "gpu_model": "A40",
        "measurements": [
            {"power_limit": 300, "average_power": 280.5, "throughput": 900.0, "energy_uncertainty_j": 0.25},
            {"power_limit": 250, "average_power": 240.0, "throughput": 850.0, "energy_uncertainty_j": 0.5},
            {"power_limit": 200, "average_power": 200.0, "throughput": 700.0}],
        "uncertain": [250, 300]});
    let (status, echo) = h.call("POST", "/jobs/svc-b/profiles", &profile.to_string());
    assert_eq!((status, &echo), (201, &profile));
    let (_, list) = h.call("GET", "/jobs/svc-b/profiles", "");
    assert_eq!(list, json!([profile]));
    let before = h.state("svc-b");
    let bad_cases = [
        (
            "/measurements/1/energy_uncertainty_j",
            json!(-1.0),
            "measurements.energy_uncertainty_j:",
        ),
        (
            "/measurements/1/energy_uncertainty_j",
            json!("wide"),
            "energy_uncertainty_j",
        ),
        ("/uncertain", json!([250]), "uncertain:"),
        ("/uncertain", json!([250, 150]), "uncertain:"),
        ("/uncertain", json!([250, 250]), "uncertain:"),
        ("/uncertain", json!([250, -3]), "uncertain"),
    ];
    for (at, value, names) in bad_cases {
        let mut bad = profile.clone();
        *bad.pointer_mut(at).unwrap() = value.clone();
        let (status, body) = h.call("POST", "/jobs/svc-b/profiles", &bad.to_string());
        assert_eq!(status, 422, "{at} = {value}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(names), "{at} = {value}: {message}");
    }
    assert_eq!(h.state("svc-b"), before);
}

#[test]
fn a_reports_energy_bound_is_validated_and_kept_with_its_trial() {
    let mut h = Harness::new();
    let mut s = spec();
    s["job_id"] = json!("svc-u");
    s["max_epochs"] = json!(2);
    assert_eq!(h.call("POST", "/jobs", &s.to_string()).0, 201);
    let (_, t) = h.call("GET", "/jobs/batch_size?job_id=svc-u", "");
    let report = |epoch: u32, bound: serde_json::Value| {
        let mut r = json!({"job_id": "svc-u", "batch_size": t["batch_size"],
            "trial_number": t["trial_number"], "time": 10.0 * f64::from(epoch),
            "energy": 100.0 * f64::from(epoch), "metric": 0.1, "current_epoch": epoch});
        if !bound.is_null() {
            r["energy_uncertainty_j"] = bound;
        }
        r.to_string()
    };
    // Bad bounds: 422 naming the field and the rule, nothing stored.
    let before = h.state("svc-u");
    for bad in [
        json!(-0.5),
        json!(1e19),
        json!("NaN"),
        json!("0.5"),
        json!([0.5]),
        json!(true),
    ] {
        let (status, body) = h.call("POST", "/report", &report(2, bad.clone()));
        assert_eq!(status, 422, "{bad}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(
            message.starts_with("energy_uncertainty_j"),
            "{bad}: {message}"
        );
        if bad.is_number() {
            assert!(
                message.contains("finite number in [0e0, 1e18]"),
                "{bad}: {message}"
            );
        }
    }
    assert_eq!(h.state("svc-u"), before);
    let (status, body) = h.call("POST", "/report", &report(1, json!(0.25)));
    assert_eq!((status, body["stop_train"].as_bool()), (200, Some(false)));
    // The last report (max_epochs) stops the run: the trial keeps its bound.
    let (status, body) = h.call("POST", "/report", &report(2, json!(1.5)));
    assert_eq!((status, body["stop_train"].as_bool()), (200, Some(true)));
    let (_, trials) = h.call("GET", "/jobs/svc-u/trials", "");
    assert_eq!(trials[0]["energy"], json!(200.0), "{trials}");
    assert_eq!(trials[0]["energy_uncertainty_j"], json!(1.5), "{trials}");
    let (_, doc) = h.call("GET", "/jobs/svc-u", "");
    assert_eq!(
        doc["recent_trials"][0]["energy_uncertainty_j"],
        json!(1.5),
        "{doc}"
    );
    // A report without the field: the trial has none (never invented).
    s["job_id"] = json!("svc-v");
    assert_eq!(h.call("POST", "/jobs", &s.to_string()).0, 201);
    let (_, t2) = h.call("GET", "/jobs/batch_size?job_id=svc-v", "");
    let plain = json!({"job_id": "svc-v", "batch_size": t2["batch_size"],
        "trial_number": t2["trial_number"], "time": 20.0, "energy": 200.0, "metric": 0.1,
        "current_epoch": 2});
    let (status, body) = h.call("POST", "/report", &plain.to_string());
    assert_eq!(status, 200, "{body}");
    let (_, trials) = h.call("GET", "/jobs/svc-v/trials", "");
    assert_eq!(trials[0]["status"], json!("Succeeded"), "{trials}");
    assert!(trials[0].get("energy_uncertainty_j").is_none(), "{trials}");
}

#[test]
fn a_keep_training_report_writes_nothing() {
    let mut h = Harness::new();
    let mut s = spec();
    s["job_id"] = json!("svc-k");
    h.call("POST", "/jobs", &s.to_string());
    let (_, t) = h.call("GET", "/jobs/batch_size?job_id=svc-k", "");
    let before = h.state("svc-k");
    let version = |h: &Harness| {
        pollster::block_on(h.service.store().load("svc-k"))
            .unwrap()
            .unwrap()
            .version
    };
    let v0 = version(&h);
    let r = json!({"job_id": "svc-k", "batch_size": t["batch_size"], "trial_number": t["trial_number"],
        "time": 10.0, "energy": 100.0, "metric": 0.1, "current_epoch": 1});
    let (status, body) = h.call("POST", "/report", &r.to_string());
    assert_eq!((status, body["stop_train"].as_bool()), (200, Some(false)));
    assert_eq!(h.state("svc-k"), before);
    assert_eq!(version(&h), v0, "no write for a keep-training report");
}

#[test]
fn job_list_pages_newest_first_with_totals() {
    let mut h = Harness::new();
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut s = spec();
        s["job_id"] = json!(format!("svc-{i}"));
        assert_eq!(h.call("POST", "/jobs", &s.to_string()).0, 201);
        ids.push(format!("svc-{i}"));
    }
    // One trial of svc-4 with a result.
    let (status, trial) = h.call("GET", "/jobs/batch_size?job_id=svc-4", "");
    assert_eq!(status, 200, "{trial}");
    let report = json!({"job_id": "svc-4", "batch_size": trial["batch_size"],
        "trial_number": trial["trial_number"], "time": 10.0, "energy": 2000.0,
        "metric": 0.9, "current_epoch": 1});
    assert_eq!(h.call("POST", "/report", &report.to_string()).0, 200);
    let mut seen = Vec::new();
    let mut path = "/jobs?limit=2".to_string();
    loop {
        let (status, page) = h.call("GET", &path, "");
        assert_eq!(status, 200, "{page}");
        let jobs = page["jobs"].as_array().unwrap();
        assert!(jobs.len() <= 2);
        seen.extend(
            jobs.iter()
                .map(|j| j["job_id"].as_str().unwrap().to_string()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/jobs?limit=2&cursor={c}"),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids);
    let (_, page) = h.call("GET", "/jobs?limit=1", "");
    let top = &page["jobs"][0];
    assert_eq!(top["job_id"], "svc-4");
    assert_eq!(top["trials"], 1);
    assert_eq!(top["totals"]["finished_trials"], 1);
    assert_eq!(top["totals"]["energy"], 2000.0);
    assert_eq!(top["totals"]["time"], 10.0);
    assert!(top["totals"]["cost"].as_f64().unwrap() > 0.0);
    assert!(top["last_activity_ms"].as_i64() >= top["created_ms"].as_i64());
    for bad in ["/jobs?limit=0", "/jobs?limit=201", "/jobs?cursor=zz"] {
        let (status, body) = h.call("GET", bad, "");
        assert_eq!(status, 422, "{bad}: {body}");
    }
}

/// A wattwise job of workload `wl` (issue 27).
fn workload_spec(job_id: &str, workload: Option<&str>) -> serde_json::Value {
    let mut spec = json!({"job_id": job_id, "job_id_prefix": "wl", "batch_sizes": [16, 32, 64],
           "default_batch_size": 32, "max_power": 250.0, "number_of_gpus": 1,
           "gpu_model": "A40", "policy": "wattwise", "target_metric": 0.5, "max_epochs": 10});
    if let Some(w) = workload {
        spec["workload"] = json!(w);
    }
    spec
}

/// Runs one recurrence of `job_id`: its batch size, then epochs until told to stop
/// (the target is reached at epoch 4). Answers the batch size.
fn run_once(h: &mut Harness, job_id: &str) -> u64 {
    let (status, trial) = h.call("GET", &format!("/jobs/batch_size?job_id={job_id}"), "");
    assert_eq!(status, 200, "{trial}");
    for epoch in 1..=10 {
        let report = json!({"job_id": job_id, "batch_size": trial["batch_size"],
            "trial_number": trial["trial_number"], "time": 10.0 * epoch as f64,
            "energy": 2000.0 * epoch as f64, "metric": if epoch >= 4 { 0.6 } else { 0.1 },
            "current_epoch": epoch});
        let (status, answer) = h.call("POST", "/report", &report.to_string());
        assert_eq!(status, 200, "{answer}");
        if answer["stop_train"] == json!(true) {
            break;
        }
    }
    trial["batch_size"].as_u64().unwrap()
}

#[test]
fn jobs_of_one_workload_share_what_they_learned_through_the_store() {
    let mut h = Harness::new();
    let (status, _) = h.call(
        "POST",
        "/jobs",
        &workload_spec("wl-a", Some("wl")).to_string(),
    );
    assert_eq!(status, 201);
    for _ in 0..3 {
        run_once(&mut h, "wl-a");
    }
    let (_, a) = h.call("GET", "/jobs/wl-a/summary", "");
    assert_eq!(a["workload"], "wl");
    assert_eq!(a["sharing"]["taught_runs"], 3, "{a}");
    assert_eq!(a["sharing"]["from"], json!([]), "{a}");
    let stored = pollster::block_on(h.service.store().load_workload("wl"))
        .unwrap()
        .expect("the workload's document is stored");
    assert_eq!(stored.state.jobs.len(), 1);
    assert_eq!(stored.state.jobs[0].job_id, "wl-a");

    // A second job of the workload starts from the first one's runs.
    h.call(
        "POST",
        "/jobs",
        &workload_spec("wl-b", Some("wl")).to_string(),
    );
    run_once(&mut h, "wl-b");
    let (_, b) = h.call("GET", "/jobs/wl-b/summary", "");
    assert_eq!(b["sharing"]["from"], json!(["wl-a"]), "{b}");
    assert!(b["sharing"]["reused_runs"].as_u64().unwrap() >= 3, "{b}");
    let stored = pollster::block_on(h.service.store().load_workload("wl"))
        .unwrap()
        .unwrap();
    assert_eq!(stored.state.jobs.len(), 2, "{:?}", stored.state);

    // Without the field, or under Zeus's policy, a job neither shares nor writes one.
    h.call("POST", "/jobs", &workload_spec("wl-c", None).to_string());
    let mut zeus = workload_spec("wl-d", Some("other"));
    zeus["policy"] = json!("zeus");
    h.call("POST", "/jobs", &zeus.to_string());
    for job in ["wl-c", "wl-d"] {
        run_once(&mut h, job);
        let (_, s) = h.call("GET", &format!("/jobs/{job}/summary"), "");
        assert!(s.get("sharing").is_none(), "{s}");
    }
    assert!(pollster::block_on(h.service.store().load_workload("other"))
        .unwrap()
        .is_none());
}

#[test]
fn a_hostile_workload_document_is_ignored_then_replaced() {
    use wattwise_core::policy::shared::{Contribution, EpochStats, SharedEpochs, WorkloadState};
    let mut h = Harness::new();
    let bad = EpochStats {
        runs: 1,
        successes: 5,
        mean: f64::NAN,
        m2: -1.0,
    };
    let hostile = WorkloadState {
        workload: "wl".into(),
        jobs: (0..100)
            .map(|k| Contribution {
                job_id: format!("j{k}"),
                epochs: SharedEpochs {
                    sizes: vec![(32, bad), (16, bad)],
                },
                ..Contribution::default()
            })
            .collect(),
        ..WorkloadState::default()
    };
    let saved = pollster::block_on(h.service.store().save_workload("wl", &hostile, None)).unwrap();
    assert_eq!(saved, wattwise_core::service::Saved::Ok);
    h.call(
        "POST",
        "/jobs",
        &workload_spec("wl-h", Some("wl")).to_string(),
    );
    run_once(&mut h, "wl-h");
    let (_, s) = h.call("GET", "/jobs/wl-h/summary", "");
    // Nothing of it was reused, and the job's own run replaced it.
    assert_eq!(s["sharing"]["from"], json!([]), "{s}");
    let stored = pollster::block_on(h.service.store().load_workload("wl"))
        .unwrap()
        .unwrap();
    assert!(stored.state.is_sane());
    assert_eq!(stored.version, 2);
    assert_eq!(stored.state.jobs.len(), 1);
}
