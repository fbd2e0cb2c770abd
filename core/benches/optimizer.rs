//! Cost of one predict and one report on jobs of growing age.
//!
//! Each iteration does what a host does per request: parse the stored document,
//! call the core, and serialize the new document. The cost must not grow with the
//! number of past trials (the document is bounded). Both policies: Zeus's
//! (`per_request/predict/1000`) and wattwise's (`per_request/wattwise_predict/1000`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wattwise_core::api::TrainingResult;
use wattwise_core::job::{JobSpec, JobState};
use wattwise_core::policy::Policy;

/// A job in the MAB stage with `past` finished trials.
fn aged_job(past: u64, policy: Policy) -> JobState {
    let mut spec = JobSpec::new("bench", vec![16, 32, 64, 128, 256], 64, 300.0, 1, "V100");
    spec.mab_seed = Some(1);
    spec.policy = policy;
    let mut state = JobState::new("bench-1".into(), spec.validate().unwrap(), 0, 0);
    for i in 0..past {
        let t = state.predict(i as i64).unwrap();
        let time = 100.0 + (t.batch_size as f64).ln() * 10.0 + (i % 7) as f64;
        state
            .record_result(t.trial_number, time, time * 200.0, true, i as i64)
            .unwrap();
        state.take_archive();
    }
    state
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("per_request");
    for (policy, past) in [Policy::Zeus, Policy::Wattwise]
        .into_iter()
        .flat_map(|p| [10u64, 1_000, 100_000].map(|n| (p, n)))
    {
        let prefix = match policy {
            Policy::Zeus => "",
            Policy::Wattwise => "wattwise_",
        };
        let doc = serde_json::to_string(&aged_job(past, policy)).unwrap();
        group.bench_with_input(
            BenchmarkId::new(format!("{prefix}predict"), past),
            &doc,
            |b, doc| {
                b.iter(|| {
                    let mut state: JobState = serde_json::from_str(doc).unwrap();
                    let t = state.predict(1).unwrap();
                    (t, serde_json::to_string(&state).unwrap())
                })
            },
        );
        let mut with_open: JobState = serde_json::from_str(&doc).unwrap();
        let t = with_open.predict(1).unwrap();
        let doc = serde_json::to_string(&with_open).unwrap();
        let result = TrainingResult {
            job_id: t.job_id,
            batch_size: t.batch_size,
            trial_number: t.trial_number,
            time: 120.0,
            energy: 24_000.0,
            metric: 0.9,
            current_epoch: 5,
        };
        group.bench_with_input(
            BenchmarkId::new(format!("{prefix}report"), past),
            &doc,
            |b, doc| {
                b.iter(|| {
                    let mut state: JobState = serde_json::from_str(doc).unwrap();
                    let r = state.report(&result, 2).unwrap();
                    (r, serde_json::to_string(&state).unwrap())
                })
            },
        );
        println!(
            "{policy} document size with {past} past trials: {} bytes",
            doc.len()
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
