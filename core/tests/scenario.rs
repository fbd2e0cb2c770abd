//! A whole job, walked through the service as a client would: registration, two
//! pruning rounds down and up from the default, a concurrent request during
//! exploration, early stop above beta x min_cost, the switch to the bandit, fifty
//! bandit rounds, a repeated report, an ended trial, the exports and deletion.

use serde_json::{json, Value};
use wattwise_core::test_support::harness::Harness;

const JOB: &str = "scen-1";

/// Per-epoch (time s, energy J) for a batch size; the cost grows away from 16.
fn per_epoch(bs: u64) -> (f64, f64) {
    match bs {
        8 => (30.0, 6000.0),
        16 => (10.0, 2000.0),
        32 => (12.0, 2500.0),
        64 => (14.0, 3000.0),
        128 => (20.0, 5000.0),
        _ => unreachable!(),
    }
}

fn report(h: &mut Harness, trial: &Value, epoch: u64, metric: f64) -> Value {
    let bs = trial["batch_size"].as_u64().unwrap();
    let (t, e) = per_epoch(bs);
    let body = json!({
        "job_id": JOB, "batch_size": bs, "trial_number": trial["trial_number"],
        "time": t * epoch as f64, "energy": e * epoch as f64, "metric": metric, "current_epoch": epoch,
    });
    let (status, resp) = h.call("POST", "/report", &body.to_string());
    assert_eq!(status, 200, "{resp}");
    resp
}

/// Trains until the target at `epochs` epochs (metric 0.1 before, 0.9 at the end).
fn train(h: &mut Harness, trial: &Value, epochs: u64) -> Value {
    for epoch in 1..epochs {
        let r = report(h, trial, epoch, 0.1);
        if r["stop_train"] == true {
            return r;
        }
    }
    report(h, trial, epochs, 0.9)
}

fn predict(h: &mut Harness) -> Value {
    let (status, trial) = h.call("GET", &format!("/jobs/batch_size?job_id={JOB}"), "");
    assert_eq!(status, 200, "{trial}");
    trial
}

/// Asks for a trial, checks it is `batch_size`, trains it for `epochs` epochs
/// and checks that the run stopped, converged or not; returns the last answer.
fn expect_run(h: &mut Harness, batch_size: u64, epochs: u64, converged: bool) -> Value {
    let t = predict(h);
    assert_eq!(t["batch_size"], batch_size, "{t}");
    let r = train(h, &t, epochs);
    assert_eq!(
        (r["stop_train"].as_bool(), r["converged"].as_bool()),
        (Some(true), Some(converged)),
        "{r}"
    );
    r
}

#[test]
fn whole_job() {
    let mut h = Harness::new();
    let spec = json!({
        "job_id": JOB, "job_id_prefix": "scen", "batch_sizes": [128, 8, 64, 16, 32],
        "default_batch_size": 32, "max_epochs": 10, "mab_seed": 7,
        "max_power": 300.0, "number_of_gpus": 1, "gpu_model": "V100",
    });
    let (status, body) = h.call("POST", "/jobs", &spec.to_string());
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["batch_sizes"], json!([8, 16, 32, 64, 128]));
    assert_eq!(body["eta_knob"], 0.5);
    // Registering the same job again is fine; a different configuration is not.
    assert_eq!(h.call("POST", "/jobs", &spec.to_string()).0, 200);
    let mut other = spec.clone();
    other["eta_knob"] = json!(0.3);
    assert_eq!(h.call("POST", "/jobs", &other.to_string()).0, 409);

    // Round 1 starts at the default, 32.
    let t1 = predict(&mut h);
    assert_eq!(
        (t1["batch_size"].as_u64(), t1["trial_number"].as_u64()),
        (Some(32), Some(1))
    );
    // Another run asks while 32 is still exploring: a concurrent trial at the best known size.
    let c = predict(&mut h);
    assert_eq!(
        (c["batch_size"].as_u64(), c["trial_number"].as_u64()),
        (Some(32), Some(2))
    );
    let r = report(&mut h, &t1, 1, 0.1);
    assert_eq!(r["stop_train"], false, "{r}");
    let r = train(&mut h, &t1, 5);
    assert_eq!(
        (r["stop_train"].as_bool(), r["converged"].as_bool()),
        (Some(true), Some(true)),
        "{r}"
    );
    let state = h.state(JOB);
    let min_32 = 0.5 * 2500.0 * 5.0 + 0.5 * 300.0 * 12.0 * 5.0;
    assert_eq!(state["min_cost"], json!(min_32));
    assert_eq!(state["min_cost_batch_size"], 32);
    // The concurrent run ends without a report: Failed.
    let end = json!({"job_id": JOB, "batch_size": 32, "trial_number": c["trial_number"]});
    assert_eq!(h.call("PATCH", "/trials", &end.to_string()).0, 200);

    // Downwards: 16 is cheaper.
    expect_run(&mut h, 16, 5, true);
    // 8 costs more than beta x min_cost: stopped early, not converged.
    let r = expect_run(&mut h, 8, 5, false);
    assert!(
        r["message"]
            .as_str()
            .unwrap()
            .contains("exceeded the cost upper bound"),
        "{r}"
    );
    // Upwards: 64 converges, 128 does not reach the target in max_epochs.
    expect_run(&mut h, 64, 5, true);
    let r = expect_run(&mut h, 128, 11, false);
    assert!(
        r["message"].as_str().unwrap().contains("exceeded")
            || r["message"].as_str().unwrap().contains("max_epoch"),
        "{r}"
    );

    // Round 2 starts at the cheapest, 16, over the survivors 16, 32, 64.
    for expected in [16, 32, 64] {
        expect_run(&mut h, expected, 5, true);
    }
    assert_eq!(h.state(JOB)["stage"], "Pruning");

    // The bandit: 50 rounds; 16 is the cheapest and should win most of them.
    let mut picks = std::collections::BTreeMap::new();
    let mut last = Value::Null;
    for _ in 0..50 {
        let t = predict(&mut h);
        let bs = t["batch_size"].as_u64().unwrap();
        assert!(
            [16, 32, 64].contains(&bs),
            "the bandit only picks survivors, got {bs}"
        );
        *picks.entry(bs).or_insert(0) += 1;
        assert_eq!(train(&mut h, &t, 5)["converged"], true);
        last = t;
    }
    assert_eq!(h.state(JOB)["stage"], "MAB");
    assert!(picks[&16] > 25, "16 should dominate: {picks:?}");

    // A repeated report of a finished trial: stop, with the recorded result.
    let again = report(&mut h, &last, 5, 0.9);
    assert_eq!(
        (again["stop_train"].as_bool(), again["converged"].as_bool()),
        (Some(true), Some(true))
    );
    assert!(again["message"]
        .as_str()
        .unwrap()
        .contains("already reported"));
    // ... even once the trial has left the document for the archive.
    let (_, trials) = h.call("GET", &format!("/jobs/{JOB}/trials"), "");
    let first = &trials.as_array().unwrap()[0];
    assert_eq!(first["trial_number"], 1);
    let again = report(&mut h, first, 5, 0.9);
    assert_eq!(
        (again["stop_train"].as_bool(), again["converged"].as_bool()),
        (Some(true), Some(true))
    );

    // An ended trial: Failed, and a late report is refused without touching the state.
    let t = predict(&mut h);
    let end =
        json!({"job_id": JOB, "batch_size": t["batch_size"], "trial_number": t["trial_number"]});
    assert_eq!(h.call("PATCH", "/trials", &end.to_string()).0, 200);
    let before = h.state(JOB);
    let (status, body) = h.call(
        "POST",
        "/report",
        &json!({"job_id": JOB, "batch_size": t["batch_size"], "trial_number": t["trial_number"],
                "time": 1.0, "energy": 1.0, "metric": 0.9, "current_epoch": 1})
        .to_string(),
    );
    assert_eq!(status, 400, "{body}");
    assert_eq!(h.state(JOB), before);

    // The export has every trial exactly once, in order, in JSON and CSV.
    let (_, trials) = h.call("GET", &format!("/jobs/{JOB}/trials"), "");
    let numbers: Vec<u64> = trials
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["trial_number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, (1..=numbers.len() as u64).collect::<Vec<_>>());
    // Round 1: 32, the concurrent one, 16, 8, 64, 128; round 2: three; the bandit: 50; the ended one.
    assert_eq!(numbers.len(), 6 + 3 + 50 + 1);
    let (status, csv) = h.call_raw("GET", &format!("/jobs/{JOB}/trials?format=csv"), "", None);
    assert_eq!(status, 200);
    assert_eq!(
        String::from_utf8(csv).unwrap().lines().count(),
        numbers.len() + 1
    );

    // Deletion, then the job is gone.
    assert_eq!(h.call("DELETE", &format!("/jobs?job_id={JOB}"), "").0, 200);
    assert_eq!(h.call("GET", &format!("/jobs/{JOB}"), "").0, 404);
    assert_eq!(
        h.call("GET", &format!("/jobs/batch_size?job_id={JOB}"), "")
            .0,
        404
    );
    assert_eq!(h.call("DELETE", &format!("/jobs?job_id={JOB}"), "").0, 404);
}
