//! The simulator's edge cases on small hand-made traces, the synthetic
//! workload, determinism, and the Alibaba group simulation.

mod sim_common;

use sim_common::{digest, synthetic_job};

use wattwise_core::field_error::FieldError;
use wattwise_core::policy::Policy;
use wattwise_core::sim::synthetic::{synthetic_trace, SYNTHETIC_TRACE_SEED};
use wattwise_core::sim::{
    simulate_one_alibaba_group, simulate_one_alibaba_group_with, simulate_one_job,
    simulate_one_job_with, GroupJob, JobTrace, SimConfig, SimError, SimReport, Trace, Workload,
};

const TRAIN_HEADER: &str =
    "dataset,network,batch_size,optimizer,learning_rate,run,target_metric,target_epoch\n";
const POWER_HEADER: &str =
    "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power\n";

/// A trace of one job ("d/n/o", target 0.5) from `(batch size, [target epochs])`
/// and `(batch size, power limit, time per epoch, average power)`.
fn tiny(paths: &[(u32, &[Option<f64>])], power: &[(u32, u32, f64, f64)]) -> Trace {
    let mut train = TRAIN_HEADER.to_string();
    for (bs, epochs) in paths {
        for (run, e) in epochs.iter().enumerate() {
            let e = e.map_or("nan".to_string(), |e| e.to_string());
            train += &format!("d,n,{bs},o,0.1,{},0.5,{e}\n", run + 1);
        }
    }
    let mut p = POWER_HEADER.to_string();
    for (bs, pl, t, w) in power {
        p += &format!("d,n,{bs},o,{pl},{t},{w}\n");
    }
    Trace::from_csv(&train, &p).unwrap()
}

fn workload(default: u32, max_epochs: u32) -> Workload {
    Workload {
        dataset: "d".into(),
        network: "n".into(),
        optimizer: "o".into(),
        target_metric: 0.5,
        max_epochs,
        default_batch_size: default,
    }
}

fn cfg(seed: u64) -> SimConfig {
    SimConfig {
        eta_knob: 0.5,
        beta_knob: 2.0,
        seed,
    }
}

#[test]
fn a_run_that_cannot_afford_one_epoch_is_not_in_the_history_but_prunes_its_batch_size() {
    // bs 8 (default) reaches in one epoch; an epoch of bs 4 costs far more than
    // 2x that; bs 16 is cheap too.
    let trace = tiny(
        &[(4, &[Some(1.0)]), (8, &[Some(1.0)]), (16, &[Some(1.0)])],
        &[
            (4, 100, 1000.0, 100.0),
            (8, 100, 10.0, 100.0),
            (16, 100, 8.0, 100.0),
        ],
    );
    let job = JobTrace::new(&trace, &workload(8, 10), "g").unwrap();
    let history = simulate_one_job(&job, 30, &cfg(1)).unwrap();
    assert_eq!(
        history.len(),
        30,
        "one run per recurrence: the unaffordable run is not recorded"
    );
    assert_eq!(history[0].batch_size, 8);
    // Recurrence 1 tried bs 4 (pruning goes down first), could not afford it,
    // and went on with bs 16 in the same recurrence.
    assert_eq!((history[1].recurrence, history[1].batch_size), (1, 16));
    assert!(history.iter().all(|h| h.batch_size != 4 && h.reached));
}

#[test]
fn the_default_batch_size_must_converge_first() {
    let trace = tiny(
        &[(8, &[None, None]), (16, &[Some(1.0)])],
        &[(8, 100, 1.0, 50.0), (16, 100, 1.0, 50.0)],
    );
    let job = JobTrace::new(&trace, &workload(8, 10), "g").unwrap();
    let err = simulate_one_job(&job, 5, &cfg(1)).unwrap_err();
    assert_eq!(err, SimError::DefaultDidNotConverge { batch_size: 8 });
    assert!(err.to_string().contains("default batch size 8"), "{err}");
    // A target epoch beyond max_epochs does not converge either.
    let trace = tiny(&[(8, &[Some(11.0)])], &[(8, 100, 1.0, 50.0)]);
    let job = JobTrace::new(&trace, &workload(8, 10), "g").unwrap();
    assert_eq!(
        simulate_one_job(&job, 1, &cfg(1)),
        Err(SimError::DefaultDidNotConverge { batch_size: 8 })
    );
}

#[test]
fn twenty_failed_tries_end_the_simulation() {
    // One batch size: 1 run in 100 reaches the target in 2 epochs, the others in
    // 20. Once a 2-epoch run sets min_cost, the bound (2x) allows 4 epochs, and
    // each later try reaches the target with probability 1%.
    let mut epochs = vec![Some(20.0); 99];
    epochs.push(Some(2.0));
    let trace = tiny(&[(8, &epochs)], &[(8, 100, 1.0, 50.0)]);
    let job = JobTrace::new(&trace, &workload(8, 30), "g").unwrap();
    for seed in 1..=3 {
        match simulate_one_job(&job, 5000, &cfg(seed)) {
            Err(SimError::TooManyTries {
                recurrence,
                tries: 20,
            }) => assert!(recurrence > 1),
            other => panic!("seed {seed}: expected 20 failed tries, got {other:?}"),
        }
    }
}

#[test]
fn bad_knobs_and_missing_workload_are_errors() {
    let trace = tiny(&[(8, &[Some(1.0)])], &[(8, 100, 1.0, 50.0)]);
    let job = JobTrace::new(&trace, &workload(8, 10), "g").unwrap();
    let bad_knobs = [
        (
            "eta",
            SimConfig {
                eta_knob: 1.5,
                ..cfg(1)
            },
        ),
        (
            "beta",
            SimConfig {
                beta_knob: 0.0,
                ..cfg(1)
            },
        ),
    ];
    for (field, bad) in bad_knobs {
        match simulate_one_job(&job, 1, &bad) {
            Err(SimError::Knob(FieldError { field: f, .. })) => assert_eq!(f, field),
            other => panic!("{field}: {other:?}"),
        }
    }
    let mut w = workload(8, 10);
    w.dataset = "other".into();
    assert!(matches!(
        JobTrace::new(&trace, &w, "g"),
        Err(SimError::NoRows { .. })
    ));
    let mut w = workload(8, 10);
    w.target_metric = 0.9;
    let err = JobTrace::new(&trace, &w, "g").unwrap_err();
    assert!(err.to_string().contains("no run at target 0.9"), "{err}");
    // A default batch size the trace does not have.
    let job = JobTrace::new(&trace, &workload(32, 10), "g").unwrap();
    assert!(matches!(
        simulate_one_job(&job, 1, &cfg(1)),
        Err(SimError::Job(_))
    ));
    // No early stopping is fine.
    let job = JobTrace::new(&trace, &workload(8, 10), "g").unwrap();
    let open = SimConfig {
        beta_knob: f64::INFINITY,
        ..cfg(1)
    };
    assert_eq!(simulate_one_job(&job, 3, &open).unwrap().len(), 3);
}

#[test]
fn same_inputs_and_seed_give_bit_identical_histories() {
    let job = synthetic_job();
    let a = simulate_one_job(&job, 100, &cfg(7)).unwrap();
    let b = simulate_one_job(&job, 100, &cfg(7)).unwrap();
    assert_eq!(digest(&a), digest(&b));
    assert_eq!(
        serde_json::to_string(&a).unwrap(),
        serde_json::to_string(&b).unwrap()
    );
    let c = simulate_one_job(&job, 100, &cfg(8)).unwrap();
    assert_ne!(
        digest(&a),
        digest(&c),
        "another seed should take another path"
    );
    // The trace itself is part of the input: the synthetic one is generated bit-identically too.
    assert_eq!(
        synthetic_trace(SYNTHETIC_TRACE_SEED),
        synthetic_trace(SYNTHETIC_TRACE_SEED)
    );
}

#[test]
fn synthetic_workload_saves_against_the_default() {
    let job = synthetic_job();
    let report = SimReport::run(&job, 100, &cfg(1)).unwrap();
    assert_eq!(report.cum_cost.len(), 100);
    assert_eq!(report.history.iter().filter(|h| h.reached).count(), 100);
    assert!(report.cum_cost.windows(2).all(|w| w[1] > w[0]));
    let o = report.baselines.oracle;
    let d = report.baselines.default;
    assert!(
        o.cost < d.cost,
        "the oracle should beat the default on the synthetic workload"
    );
    assert!(
        report.savings_vs_default() > 0.0,
        "wattwise should beat the default: {}",
        report.savings_vs_default()
    );
    // Regret grows slower at the end than at the start (the optimizer learns).
    let r = &report.regret;
    assert!(r[99] - r[89] < r[9] - r[0] + 1e-9, "regret: {:?}", &r[..10]);
}

#[test]
fn alibaba_group_overlapping_submissions() {
    let job = synthetic_job();
    // Submission 1 starts before submission 0 ends: a concurrent submission.
    let mut group = vec![
        GroupJob {
            start_time: 0.0,
            end_time: 1000.0,
            runtime_ratio: 1.0,
        },
        GroupJob {
            start_time: 500.0,
            end_time: 1400.0,
            runtime_ratio: 2.0,
        },
    ];
    for k in 2..40 {
        group.push(GroupJob {
            start_time: 1000.0 * k as f64,
            end_time: 1000.0 * k as f64 + 700.0,
            runtime_ratio: 0.5,
        });
    }
    // Under the wattwise policy too, every submission reaches the target once.
    let w = simulate_one_alibaba_group_with(&job, &group, &cfg(3), Policy::Wattwise).unwrap();
    for k in 0..group.len() as u32 {
        let reached = w.iter().filter(|h| h.recurrence == k && h.reached).count();
        assert_eq!(reached, 1, "wattwise, submission {k}");
    }
    assert_eq!(
        simulate_one_alibaba_group_with(&job, &group, &cfg(3), Policy::Wattwise).unwrap(),
        w
    );
    let history = simulate_one_alibaba_group(&job, &group, &cfg(3)).unwrap();
    let default = job.workload.default_batch_size;
    // Every submission reaches the target exactly once.
    for k in 0..group.len() as u32 {
        assert_eq!(
            history
                .iter()
                .filter(|h| h.recurrence == k && h.reached)
                .count(),
            1,
            "submission {k}"
        );
    }
    // While the default's exploration runs, the concurrent submission gets the best known (the default).
    let first_of_1 = history.iter().find(|h| h.recurrence == 1).unwrap();
    assert_eq!(first_of_1.batch_size, default);
    // Energy and time are scaled by the runtime ratio; the cost is not.
    let first_of_0 = history.iter().find(|h| h.recurrence == 0).unwrap();
    let unscaled = first_of_1.energy / 2.0;
    assert!(
        unscaled < first_of_0.energy,
        "submission 1 does not profile power limits, so it costs less unscaled"
    );
    assert_eq!(
        simulate_one_alibaba_group(&job, &group, &cfg(3)).unwrap(),
        history
    );
    // Unsorted or malformed rows are errors.
    let mut bad = group.clone();
    bad.swap(0, 3);
    assert!(matches!(
        simulate_one_alibaba_group(&job, &bad, &cfg(3)),
        Err(SimError::GroupNotSorted { .. })
    ));
    bad = group.clone();
    bad[2].end_time = -1.0;
    assert!(matches!(
        simulate_one_alibaba_group(&job, &bad, &cfg(3)),
        Err(SimError::BadGroupRow { row: 2 })
    ));
}

mod parse_never_panics {
    use proptest::prelude::*;
    use wattwise_core::sim::trace::{parse_groups, parse_power, parse_train};

    fn csvish() -> impl Strategy<Value = String> {
        // Headers that parse, then rows of random cells.
        let cell = prop::sample::select(vec![
            "",
            "nan",
            "0",
            "-1",
            "8",
            "1e309",
            "0.5",
            "x",
            "cifar100",
            "\"q\"",
            "1.5",
            "4294967296",
            "NaN",
            "inf",
        ]);
        let row = prop::collection::vec(cell, 0..10).prop_map(|c| c.join(","));
        let header = prop::sample::select(vec![
            "dataset,network,batch_size,optimizer,learning_rate,run,target_metric,target_epoch",
            "dataset,network,batch_size,optimizer,power_limit,time_per_epoch,average_power",
            "group,start_time,end_time,dataset,runtime_ratio",
            "",
            "a,b",
        ]);
        (header, prop::collection::vec(row, 0..6))
            .prop_map(|(h, rows)| format!("{h}\n{}", rows.join("\n")))
    }

    proptest! {
        #[test]
        fn parsers_return_errors_instead_of_panicking(text in csvish(), raw in "\\PC{0,200}") {
            let _ = parse_train(&text);
            let _ = parse_power(&text);
            let _ = parse_groups(&text);
            let _ = parse_train(&raw);
            let _ = parse_power(&raw);
            let _ = parse_groups(&raw);
        }
    }
}

mod simulate_never_panics {
    use super::*;
    use proptest::prelude::*;

    /// Paths per batch size, and power rows (batch size, limit, time per epoch, power).
    type SmallTrace = (Vec<(u32, Vec<Option<f64>>)>, Vec<(u32, u32, f64, f64)>);

    fn small_trace() -> impl Strategy<Value = SmallTrace> {
        let sizes = prop::sample::subsequence(vec![4u32, 8, 16, 32], 1..=4);
        sizes.prop_flat_map(|sizes| {
            let paths = sizes
                .iter()
                .map(|&bs| {
                    prop::collection::vec(
                        prop::option::weighted(0.7, 1.0f64..15.0).prop_map(|e| e.map(f64::ceil)),
                        1..4,
                    )
                    .prop_map(move |e| (bs, e))
                })
                .collect::<Vec<_>>();
            let power = sizes
                .iter()
                .map(|&bs| {
                    prop::collection::vec(
                        (
                            prop::sample::select(vec![100u32, 150, 200]),
                            0.1f64..100.0,
                            10.0f64..300.0,
                        ),
                        1..3,
                    )
                    .prop_map(move |v| {
                        let mut seen = Vec::new();
                        v.into_iter()
                            .filter(|(pl, _, _)| {
                                let fresh = !seen.contains(pl);
                                seen.push(*pl);
                                fresh
                            })
                            .map(|(pl, t, w)| (bs, pl, t, w))
                            .collect::<Vec<_>>()
                    })
                })
                .collect::<Vec<_>>();
            (
                paths,
                power.prop_map(|v| v.into_iter().flatten().collect::<Vec<_>>()),
            )
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn any_small_trace_simulates_or_errs(
            (paths, power) in small_trace(),
            default_pick in 0usize..4,
            eta in 0.0f64..=1.0,
            beta in prop::sample::select(vec![1.0, 1.5, 2.0, 5.0, f64::INFINITY]),
            seed in 0u64..1000,
            recurrences in 1u32..40,
        ) {
            let refs: Vec<(u32, &[Option<f64>])> = paths.iter().map(|(b, e)| (*b, e.as_slice())).collect();
            let trace = tiny(&refs, &power);
            let default = paths[default_pick % paths.len()].0;
            let job = JobTrace::new(&trace, &workload(default, 10), "g").unwrap();
            let cfg = SimConfig { eta_knob: eta, beta_knob: beta, seed };
            for policy in Policy::ALL {
                if let Ok(history) = simulate_one_job_with(&job, recurrences, &cfg, policy) {
                    prop_assert_eq!(history.iter().filter(|h| h.reached).count(), recurrences as usize);
                    prop_assert!(history.iter().all(|h| h.energy > 0.0 && h.time > 0.0 && h.cost.is_finite()));
                    prop_assert_eq!(history.last().unwrap().recurrence, recurrences - 1);
                }
                let group: Vec<GroupJob> = (0..recurrences)
                    .map(|k| GroupJob { start_time: k as f64 * 50.0, end_time: k as f64 * 50.0 + 120.0, runtime_ratio: 1.0 })
                    .collect();
                if let Ok(history) = simulate_one_alibaba_group_with(&job, &group, &cfg, policy) {
                    prop_assert_eq!(history.iter().filter(|h| h.reached).count(), recurrences as usize);
                }
            }
        }
    }
}
