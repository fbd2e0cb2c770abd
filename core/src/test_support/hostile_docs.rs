//! Hostile numbers against any store: registrations, predictions, reports, ends
//! and profiles with extreme values, through the service. After every accepted
//! write the job document is read back through `GET /jobs/{id}` and must parse as a
//! `JobState` with every number finite; no request may answer 5xx; and every job
//! can be deleted at the end. Shared by the core's memory-store test and the local
//! server's SQLite and DynamoDB store tests.

use crate::job::JobState;
use crate::rng::JobRng;
use crate::service::{Request, Service, Store};
use serde_json::{json, Value};

use super::env::TestEnv;

/// Extreme but JSON-representable numbers.
const HOSTILE: [f64; 18] = [
    0.0,
    -0.0,
    5e-324,
    1e-310,
    1e-300,
    1e-12,
    1.0,
    1e6,
    1e9,
    1e12,
    1e18,
    1e30,
    1e300,
    1e308,
    f64::MAX,
    -1.0,
    -1e308,
    f64::MIN_POSITIVE,
];

struct Gen(JobRng);

impl Gen {
    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.0.index(xs.len())]
    }
    fn chance(&mut self, p: f64) -> bool {
        self.0.uniform() < p
    }
    /// A hostile number half of the time, else an ordinary one in `[0, scale)`.
    fn number(&mut self, scale: f64) -> f64 {
        if self.chance(0.5) {
            self.pick(&HOSTILE)
        } else {
            self.0.uniform() * scale
        }
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Tally {
    /// Accepted writes whose document was read back and checked.
    pub documents: usize,
    /// Jobs registered (all deleted again).
    pub jobs: usize,
    /// Registrations refused with a 4xx.
    pub refused: usize,
}

/// [`call`] with no request body.
async fn call_without_body<S: Store>(
    service: &Service<S>,
    env: &mut TestEnv,
    method: &str,
    target: &str,
) -> (u16, Value) {
    call(service, env, method, target, &Value::Null).await
}

async fn call<S: Store>(
    service: &Service<S>,
    env: &mut TestEnv,
    method: &str,
    target: &str,
    body: &Value,
) -> (u16, Value) {
    let body = if body.is_null() {
        Vec::new()
    } else {
        serde_json::to_vec(body).unwrap()
    };
    let out = service
        .handle(Request::new(method, target, &body), env)
        .await;
    assert!(
        out.status < 500,
        "{method} {target} answered {}: {}",
        out.status,
        String::from_utf8_lossy(&out.body)
    );
    let v = serde_json::from_slice(&out.body).unwrap_or(Value::Null);
    if out.status >= 400 {
        let msg = v["message"].as_str().unwrap_or("");
        assert!(msg.contains(':'), "{method} {target}: no field in {msg:?}");
    }
    (out.status, v)
}

fn all_finite(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.as_f64().is_some_and(f64::is_finite),
        Value::Array(a) => a.iter().all(all_finite),
        Value::Object(o) => o.values().all(all_finite),
        _ => true,
    }
}

/// Reads the job back and checks it; counts one document.
async fn check_document<S: Store>(
    service: &Service<S>,
    env: &mut TestEnv,
    job_id: &str,
    tally: &mut Tally,
) {
    let (status, doc) = call_without_body(service, env, "GET", &format!("/jobs/{job_id}")).await;
    assert_eq!(status, 200, "job {job_id} cannot be read back: {doc}");
    assert!(
        all_finite(&doc),
        "job {job_id} holds a non-finite number: {doc}"
    );
    let text = doc.to_string();
    let state: JobState = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("job {job_id} does not parse back: {e}: {text}"));
    assert_eq!(serde_json::to_value(&state).unwrap(), doc);
    tally.documents += 1;
}

fn hostile_spec(g: &mut Gen, job_id: &str) -> Value {
    let n = if g.chance(0.2) { 1 } else { 1 + g.0.index(8) };
    let batch_sizes: Vec<u64> = (0..n).map(|i| 8 << i).collect();
    let default = g.pick(&batch_sizes);
    let mut spec = json!({
        "job_id": job_id,
        "job_id_prefix": "hostile",
        "batch_sizes": batch_sizes,
        "default_batch_size": default,
        "eta_knob": if g.chance(0.5) { g.pick(&[0.0, 1.0, 0.5, 5e-324]) } else { g.0.uniform() },
        "beta_knob": if g.chance(0.2) { Value::Null } else { json!(g.number(4.0)) },
        "target_metric": g.number(1.0),
        "max_epochs": 1 + g.0.index(4),
        "num_pruning_rounds": g.0.index(4),
        "window_size": g.pick(&[0, 0, 1, 2, 5]),
        "mab_prior_mean": if g.chance(0.5) { -g.number(1e6) } else { g.number(1e6) },
        "mab_prior_precision": g.number(1.0),
        "mab_num_explorations": g.0.index(3),
        "mab_seed": g.0.index(1000),
        "max_power": g.number(3000.0),
        "number_of_gpus": 1 + g.0.index(8),
        "gpu_model": "H100",
    });
    if g.chance(0.5) {
        spec["higher_is_better_metric"] = json!(false);
    }
    spec
}

/// Drives hostile traffic until at least `min_documents` documents were written
/// and read back.
pub async fn run<S: Store>(service: &Service<S>, seed: u64, min_documents: usize) -> Tally {
    let mut g = Gen(JobRng::from_seed(seed));
    let mut env = TestEnv {
        now: 1_700_000_000_000,
        tick_ms: 7,
        seed,
    };
    let mut tally = Tally::default();
    let env = &mut env;
    let mut job = 0u64;
    while tally.documents < min_documents {
        job += 1;
        let job_id = format!("hostile-{seed}-{job}");
        let spec = hostile_spec(&mut g, &job_id);
        let (status, answer) = call(service, env, "POST", "/jobs", &spec).await;
        if status != 201 {
            assert!((400..500).contains(&status), "{status} {answer}");
            tally.refused += 1;
            continue;
        }
        tally.jobs += 1;
        check_document(service, env, &job_id, &mut tally).await;
        let mut dispatched: Vec<Value> = Vec::new();
        for _ in 0..40 {
            let op = g.0.index(10);
            if op < 4 || dispatched.is_empty() {
                let (status, trial) = call_without_body(
                    service,
                    env,
                    "GET",
                    &format!("/jobs/batch_size?job_id={job_id}"),
                )
                .await;
                if status == 200 {
                    dispatched.push(trial);
                    check_document(service, env, &job_id, &mut tally).await;
                } else {
                    // Only a real "nothing converged" may refuse a batch size.
                    assert_eq!(status, 400, "{trial}");
                    assert!(
                        trial["message"]
                            .as_str()
                            .unwrap_or("")
                            .contains("converged"),
                        "{trial}"
                    );
                    break;
                }
            } else if op < 9 {
                let t = g.pick(&dispatched.iter().collect::<Vec<_>>()).clone();
                let epoch = g.0.index(6);
                let report = json!({
                    "job_id": job_id, "batch_size": t["batch_size"], "trial_number": t["trial_number"],
                    "time": g.number(1e4), "energy": g.number(1e7),
                    "metric": if g.chance(0.5) { -g.number(1.0) } else { g.number(1.0) },
                    "current_epoch": epoch,
                });
                let (status, answer) = call(service, env, "POST", "/report", &report).await;
                assert!(matches!(status, 200 | 400 | 404 | 422), "{status} {answer}");
                if status == 200 && answer["stop_train"] == json!(true) {
                    check_document(service, env, &job_id, &mut tally).await;
                }
            } else {
                let t = g.pick(&dispatched.iter().collect::<Vec<_>>()).clone();
                let (status, answer) = call(service, env, "PATCH", "/trials", &t).await;
                assert!(matches!(status, 200 | 404), "{status} {answer}");
                let profile = json!({
                    "batch_size": t["batch_size"], "phase": "train", "gpu_model": "H100",
                    "measurements": [{"power_limit": 1 + g.0.index(700),
                        "average_power": g.number(700.0), "throughput": g.number(1e4)}],
                });
                let (status, answer) = call(
                    service,
                    env,
                    "POST",
                    &format!("/jobs/{job_id}/profiles"),
                    &profile,
                )
                .await;
                assert!(matches!(status, 201 | 422), "{status} {answer}");
                check_document(service, env, &job_id, &mut tally).await;
            }
        }
        let (status, answer) =
            call_without_body(service, env, "DELETE", &format!("/jobs?job_id={job_id}")).await;
        assert_eq!(status, 200, "{answer}");
    }
    tally
}
