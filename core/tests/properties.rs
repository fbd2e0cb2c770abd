//! Property tests of the optimizer's invariants over random call sequences,
//! under either batch size policy.

use proptest::prelude::*;
use wattwise_core::api::{self, Change, Ctx};
use wattwise_core::job::JobState;
use wattwise_core::policy::Policy;
use wattwise_core::spec::JobSpec;
use wattwise_core::wire::{TrainingResult, TrialId};

#[derive(Clone, Debug)]
enum Op {
    Predict,
    /// Report on the k-th dispatched trial (mod count).
    Report {
        k: usize,
        epoch: u32,
        metric: f64,
        time: f64,
        energy: f64,
    },
    End {
        k: usize,
    },
    /// A report with a hostile value somewhere.
    Hostile {
        k: usize,
        field: u8,
        value: f64,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let hostile_value = prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-1.0),
        Just(-1e300)
    ];
    prop_oneof![
        3 => Just(Op::Predict),
        4 => (any::<usize>(), 0u32..12, 0.0f64..1.0, 0.0f64..5000.0, 0.0f64..1e6)
            .prop_map(|(k, epoch, metric, time, energy)| Op::Report { k, epoch, metric, time, energy }),
        1 => any::<usize>().prop_map(|k| Op::End { k }),
        1 => (any::<usize>(), 0u8..3, hostile_value).prop_map(|(k, field, value)| Op::Hostile { k, field, value }),
    ]
}

fn job(seed: u64, window: i64, rounds: i64, wattwise: bool) -> JobState {
    let mut spec = JobSpec::new("prop", vec![8, 16, 32, 64, 128, 256], 64, 300.0, 1, "V100");
    spec.job_id = Some("prop-1".into());
    spec.window_size = window;
    spec.num_pruning_rounds = rounds;
    spec.max_epochs = 10;
    spec.mab_seed = Some(seed as i64);
    if wattwise {
        spec.policy = Policy::Wattwise;
    }
    let out = api::register_job(
        &spec,
        None,
        Ctx {
            now_ms: 0,
            entropy: 0,
        },
    )
    .unwrap();
    match out.change {
        Change::Put(s) => *s,
        _ => unreachable!(),
    }
}

/// Applies one op; returns a printable trace of the answer.
fn apply(state: &mut JobState, dispatched: &mut Vec<TrialId>, op: &Op, now: i64) -> String {
    let ctx = Ctx {
        now_ms: now,
        entropy: 99,
    };
    let pick = |k: usize, d: &Vec<TrialId>| d.get(k % d.len().max(1)).cloned();
    let before = state.clone();
    let result = match op {
        Op::Predict => api::predict("prop-1", Some(state), ctx).map(|o| {
            let t = o.body.clone();
            let b = &state.params().batch_sizes;
            assert!(
                b.contains(&t.batch_size),
                "predicted {} not among {b:?}",
                t.batch_size
            );
            if let Some(last) = dispatched.last() {
                assert!(
                    t.trial_number > last.trial_number,
                    "trial numbers must increase"
                );
            }
            dispatched.push(t.clone());
            (format!("{t:?}"), o.change)
        }),
        Op::Report {
            k,
            epoch,
            metric,
            time,
            energy,
        } => match pick(*k, dispatched) {
            None => return "none".into(),
            Some(t) => {
                let r = TrainingResult {
                    job_id: t.job_id,
                    batch_size: t.batch_size,
                    trial_number: t.trial_number,
                    time: *time,
                    energy: *energy,
                    metric: *metric,
                    current_epoch: *epoch,
                    energy_uncertainty_j: None,
                };
                api::report(&r, Some(state), ctx).map(|o| (format!("{:?}", o.body), o.change))
            }
        },
        Op::End { k } => match pick(*k, dispatched) {
            None => return "none".into(),
            Some(t) => {
                api::end_trial(&t, Some(state), ctx).map(|o| ("ended".to_string(), o.change))
            }
        },
        Op::Hostile { k, field, value } => match pick(*k, dispatched) {
            None => return "none".into(),
            Some(t) => {
                let mut r = TrainingResult {
                    job_id: t.job_id,
                    batch_size: t.batch_size,
                    trial_number: t.trial_number,
                    time: 1.0,
                    energy: 1.0,
                    metric: 0.5,
                    current_epoch: 1,
                    energy_uncertainty_j: None,
                };
                match field {
                    0 => r.time = *value,
                    1 => r.energy = *value,
                    _ => r.metric = if value.is_finite() { f64::NAN } else { *value },
                }
                let out = api::report(&r, Some(state), ctx);
                assert!(out.is_err(), "hostile report accepted: {r:?}");
                out.map(|o| (String::new(), o.change))
            }
        },
    };
    match result {
        Ok((answer, Change::Put(new))) => {
            *state = *new;
            answer
        }
        Ok((answer, _)) => answer,
        Err(e) => {
            assert_eq!(*state, before, "an error must leave the state unchanged");
            assert!((400..500).contains(&e.status()), "{e:?}");
            format!("err {}", e.status())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn invariants_hold(seed in any::<u32>(), window in prop_oneof![Just(0i64), 1i64..4], rounds in 0i64..3,
                       wattwise in any::<bool>(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut state = job(seed as u64, window, rounds, wattwise);
        let mut dispatched = Vec::new();
        for (i, op) in ops.iter().enumerate() {
            apply(&mut state, &mut dispatched, op, i as i64 * 1000);
            // The document round-trips through JSON exactly.
            let json = serde_json::to_string(&state).unwrap();
            let back: JobState = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(&back, &state);
        }
    }

    #[test]
    fn replay_from_a_stored_state_gives_the_same_decisions(seed in any::<u32>(), wattwise in any::<bool>(),
            prefix in proptest::collection::vec(op(), 0..60), rest in proptest::collection::vec(op(), 1..60)) {
        let mut state = job(seed as u64, 0, 2, wattwise);
        let mut dispatched = Vec::new();
        for (i, op) in prefix.iter().enumerate() {
            apply(&mut state, &mut dispatched, op, i as i64);
        }
        let stored = serde_json::to_string(&state).unwrap();
        let mut a: JobState = serde_json::from_str(&stored).unwrap();
        let mut b: JobState = serde_json::from_str(&stored).unwrap();
        let (mut da, mut db) = (dispatched.clone(), dispatched);
        for (i, op) in rest.iter().enumerate() {
            let x = apply(&mut a, &mut da, op, 1_000_000 + i as i64);
            let y = apply(&mut b, &mut db, op, 1_000_000 + i as i64);
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(a, b);
    }
}

#[test]
fn unknown_job_and_trial_are_404_and_change_nothing() {
    let state = job(1, 0, 2, false);
    let ctx = Ctx {
        now_ms: 0,
        entropy: 0,
    };
    assert_eq!(
        api::predict("nope", Some(&state), ctx)
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(api::predict("prop-1", None, ctx).unwrap_err().status(), 404);
    let t = TrialId {
        job_id: "prop-1".into(),
        batch_size: 64,
        trial_number: 99,
    };
    assert_eq!(
        api::end_trial(&t, Some(&state), ctx).unwrap_err().status(),
        404
    );
}

/// A job of either policy over `batch_sizes` (the first is the default), max 10 epochs.
fn degenerate_job(batch_sizes: Vec<i64>, wattwise: bool) -> JobState {
    let mut spec = JobSpec::new("deg", batch_sizes.clone(), batch_sizes[0], 300.0, 1, "V100");
    spec.job_id = Some("deg-1".into());
    spec.max_epochs = 10;
    spec.mab_seed = Some(3);
    if wattwise {
        spec.policy = Policy::Wattwise;
    }
    let ctx = Ctx {
        now_ms: 0,
        entropy: 0,
    };
    match api::register_job(&spec, None, ctx).unwrap().change {
        Change::Put(s) => *s,
        _ => unreachable!(),
    }
}

/// Runs one trial of `state`: epochs 1.. at `per_epoch` cost units (time = energy,
/// eta 0.5, so the cost is about `per_epoch` per epoch), the target reached at
/// `reach_at` (never when past max_epochs); returns the trial and every answer.
fn run_trial(
    state: &mut JobState,
    per_epoch: f64,
    reach_at: u32,
) -> (TrialId, Vec<wattwise_core::wire::ReportResponse>) {
    let ctx = Ctx {
        now_ms: 0,
        entropy: 0,
    };
    let out = api::predict("deg-1", Some(state), ctx)
        .unwrap_or_else(|e| panic!("a job stopped getting a batch size: {e}"));
    if let Change::Put(s) = out.change {
        *state = *s;
    }
    let t = out.body;
    let mut answers = Vec::new();
    for epoch in 1..=10u32 {
        let c = per_epoch * f64::from(epoch);
        let r = TrainingResult {
            job_id: t.job_id.clone(),
            batch_size: t.batch_size,
            trial_number: t.trial_number,
            time: c,
            energy: c,
            metric: if epoch >= reach_at { 1.0 } else { 0.0 },
            current_epoch: epoch,
            energy_uncertainty_j: None,
        };
        let out = api::report(&r, Some(state), ctx).unwrap();
        if let Change::Put(s) = out.change {
            *state = *s;
        }
        let stop = out.body.stop_train;
        answers.push(out.body);
        if stop {
            break;
        }
    }
    (t, answers)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Under either policy a job's lone batch size carries on, whatever its runs
    /// did (missed the target, cost nothing, cost a lot).
    #[test]
    fn a_lone_batch_size_is_always_dispatched(wattwise in any::<bool>(), bs in 1i64..4096,
            runs in proptest::collection::vec((prop_oneof![Just(0.0f64), 0.0f64..1e6], 1u32..20), 1..12)) {
        let mut state = degenerate_job(vec![bs], wattwise);
        for (per_epoch, reach_at) in runs {
            let (t, answers) = run_trial(&mut state, per_epoch, reach_at);
            prop_assert_eq!(i64::from(t.batch_size), bs);
            prop_assert!(answers.last().unwrap().stop_train);
        }
    }

    /// Under either policy a run that cost nothing bounds nothing: later runs that
    /// all cost the same train until they reach the target (before the fix,
    /// wattwise stopped each at "cost > 0" and counted it failed).
    #[test]
    fn a_run_that_cost_nothing_bounds_nothing(wattwise in any::<bool>(), per_epoch in 1.0f64..1e6,
            reach_at in 1u32..=10, runs in 1usize..12) {
        let mut state = degenerate_job(vec![32, 8, 16, 64, 128], wattwise);
        let (_, answers) = run_trial(&mut state, 0.0, 1);
        prop_assert!(answers[0].converged, "{:?}", answers);
        for _ in 0..runs {
            let (t, answers) = run_trial(&mut state, per_epoch, reach_at);
            prop_assert_eq!(answers.len(), reach_at as usize, "batch size {}: {:?}", t.batch_size, answers);
            prop_assert!(answers.last().unwrap().converged);
        }
    }
}
