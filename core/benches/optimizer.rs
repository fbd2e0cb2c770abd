//! Cost of one predict and one report on jobs of growing age.
//!
//! Each iteration does what a host does per request: parse the stored document,
//! call the core, and serialize the new document. The cost must not grow with the
//! number of past trials (the document is bounded). Both policies: Zeus's
//! (`per_request/predict/1000`) and wattwise's (`per_request/wattwise_predict/1000`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use wattwise_core::api;
use wattwise_core::job::JobState;
use wattwise_core::policy::Policy;
use wattwise_core::spec::{JobSpec, MAX_BATCH_SIZES, MAX_WINDOW_REWARDS};
use wattwise_core::wire::{self, Phase, PowerMeasurement, PowerProfile, TrainingResult};

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

/// The largest document the parameters permit, in the pruning stage after `past`
/// finished trials: 256 batch sizes that all keep converging (so every pruning round
/// explores all of them), 100 rounds, the largest windows, `JobState::MAX_OPEN_TRIALS`
/// runs left open, and profiles holding the most measurements a job keeps.
fn worst_case_job(past: u64) -> JobState {
    let sizes: Vec<i64> = (1..=MAX_BATCH_SIZES as i64).map(|i| i * 8).collect();
    let mut spec = JobSpec::new("worst", sizes, 1024, 300.0, 1, "V100");
    spec.mab_seed = Some(1);
    spec.num_pruning_rounds = 100;
    spec.window_size = MAX_WINDOW_REWARDS / MAX_BATCH_SIZES as i64;
    spec.mab_num_explorations = 1000;
    let mut state = JobState::new("worst-1".into(), spec.validate().unwrap(), 0, 0);
    for i in 0..past {
        let t = state.predict(i as i64).unwrap();
        let time = 100.0 + (t.batch_size as f64).ln() * 10.0 + (i % 7) as f64 / 3.0;
        state
            .record_result(t.trial_number, time, time * 200.0, true, i as i64)
            .unwrap();
        state.take_archive();
    }
    for i in 0..JobState::MAX_OPEN_TRIALS as i64 {
        state.predict(past as i64 + i).unwrap();
        state.take_archive();
    }
    let per_profile = wire::MAX_PROFILE_MEASUREMENTS / JobState::MAX_PROFILES;
    for p in 0..JobState::MAX_PROFILES {
        let profile = PowerProfile {
            batch_size: 8 * (1 + p as u32 / 2),
            phase: if p % 2 == 0 {
                Phase::Train
            } else {
                Phase::Eval
            },
            gpu_model: "NVIDIA H100 80GB HBM3".into(),
            measurements: (0..per_profile as u32)
                .map(|k| PowerMeasurement {
                    power_limit: 100 + 5 * k,
                    average_power: 99.123456789 + k as f64,
                    throughput: 1234.56789012 + k as f64,
                    energy_uncertainty_j: None,
                })
                .collect(),
            uncertain: Vec::new(),
        };
        let out = api::post_profile("worst-1", &profile, Some(&state)).unwrap();
        if let api::Change::Put(s) = out.change {
            state = *s;
        }
    }
    state
}

/// What a host does per request: parse the stored document, apply `f`, write it back.
fn per_request<T>(doc: &str, f: impl FnOnce(&mut JobState) -> T) -> (T, String) {
    let mut state: JobState = serde_json::from_str(doc).unwrap();
    let out = f(&mut state);
    (out, serde_json::to_string(&state).unwrap())
}

fn bench(c: &mut Criterion) {
    let mut worst = c.benchmark_group("worst_case");
    worst.sample_size(20);
    for past in [1_000u64, 11_000, 100_000] {
        let state = worst_case_job(past);
        let doc = serde_json::to_string(&state).unwrap();
        println!(
            "worst-case document ({:?} stage) with {past} past trials: {} bytes",
            state.stage(),
            doc.len()
        );
        worst.bench_with_input(BenchmarkId::new("predict", past), &doc, |b, doc| {
            b.iter(|| per_request(doc, |state| state.predict(1).unwrap()))
        });
    }
    worst.finish();

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
            |b, doc| b.iter(|| per_request(doc, |state| state.predict(1).unwrap())),
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
            energy_uncertainty_j: None,
        };
        group.bench_with_input(
            BenchmarkId::new(format!("{prefix}report"), past),
            &doc,
            |b, doc| b.iter(|| per_request(doc, |state| state.report(&result, 2).unwrap())),
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
