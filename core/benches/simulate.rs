//! Speed of `simulate_one_job` on Zeus's traces: librispeech on V100, 50 and
//! 210 recurrences (210 = 2 x 15 batch sizes x 7 power limits, Zeus's paper
//! setting), eta 0.5, beta 2.0. Also the synthetic workload, which needs no file.
//!
//! Zeus's own Python simulator is timed on the same workload by
//! `tests/zeus-sim/run.sh time`; BENCHMARKS.md has both figures.

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};
use wattwise_core::sim::synthetic::{
    synthetic_trace, synthetic_workload, SYNTHETIC_GPU, SYNTHETIC_TRACE_SEED,
};
use wattwise_core::sim::{builtin, simulate_one_job, JobTrace, SimConfig, Trace, Workload};

fn librispeech_v100() -> JobTrace {
    let trace = builtin::trace("v100").expect("the built-in traces parse");
    let w = Workload::zeus("librispeech").expect("a Zeus workload");
    JobTrace::new(&trace, &w, "v100").expect("librispeech is in the traces")
}

/// Times `simulate_one_job` on a job at eta 0.5, beta 2, seeds cycling 1-5.
fn simulations(c: &mut Criterion, name: &str, job: &JobTrace, recurrences: &[u32]) {
    let mut group = c.benchmark_group("simulate_one_job");
    for &r in recurrences {
        group.bench_with_input(BenchmarkId::new(name, r), &r, |b, &r| {
            let mut seed = 0;
            b.iter(|| {
                seed = seed % 5 + 1;
                let cfg = SimConfig {
                    eta_knob: 0.5,
                    beta_knob: 2.0,
                    seed,
                };
                black_box(simulate_one_job(job, r, &cfg).expect("simulates"))
            })
        });
    }
    group.finish();
}

fn bench(c: &mut Criterion) {
    simulations(c, "librispeech_v100", &librispeech_v100(), &[50, 210]);
    let synthetic = JobTrace::new(
        &synthetic_trace(SYNTHETIC_TRACE_SEED),
        &synthetic_workload(),
        SYNTHETIC_GPU,
    )
    .expect("the synthetic workload compiles");
    simulations(c, "synthetic", &synthetic, &[50]);

    let power = builtin::POWER_CSV[1];
    assert_eq!(power.0, "v100");
    c.bench_function("parse_traces_v100", |b| {
        b.iter(|| black_box(Trace::from_csv(builtin::TRAIN_CSV, power.1).unwrap()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
