//! wattwise's simulator against Zeus's own on the NSDI'23 traces: on every
//! workload x GPU pair, 50 recurrences, seeds 1-5, eta 0.5, beta 2.0, the mean
//! cumulative cost must be within 5% of what Zeus's legacy simulator gives
//! (PruningGTSBatchSizeOptimizer + JITPowerLimitOptimizer, zeus==0.16.0).
//!
//! It runs on every clone: the traces are built into the core (`core/traces/`).
//! The Zeus figures below come from
//! `tests/zeus-sim/run.sh compare` (see BENCHMARKS.md, `## Simulator`).

mod sim_common;

use wattwise_core::sim::{simulate_one_job, SimConfig};

/// Mean over seeds 1-5 of Zeus's cumulative cost (J), per `dataset/gpu`.
const ZEUS_MEAN_CUM_COST: [(&str, f64); 24] = [
    ("cifar100/a40", 4249422.9),
    ("imagenet/a40", 1125349579.9),
    ("librispeech/a40", 486991961.8),
    ("movielens-1m/a40", 427677.8),
    ("squad/a40", 52911527.2),
    ("sentiment140/a40", 90212967.5),
    ("cifar100/v100", 3386083.5),
    ("imagenet/v100", 896953275.6),
    ("librispeech/v100", 493488009.0),
    ("movielens-1m/v100", 281442.8),
    ("squad/v100", 80996466.7),
    ("sentiment140/v100", 142871767.4),
    ("cifar100/p100", 5884040.1),
    ("imagenet/p100", 2106131339.6),
    ("librispeech/p100", 1580625514.8),
    ("movielens-1m/p100", 485520.8),
    ("squad/p100", 115049216.2),
    ("sentiment140/p100", 225273937.4),
    ("cifar100/rtx6000", 5343145.0),
    ("imagenet/rtx6000", 1385326299.1),
    ("librispeech/rtx6000", 507462100.6),
    ("movielens-1m/rtx6000", 552495.9),
    ("squad/rtx6000", 85573537.6),
    ("sentiment140/rtx6000", 168619052.1),
];

#[test]
fn mean_cumulative_cost_within_5_percent_of_zeus_on_all_24_pairs() {
    let mut failures = Vec::new();
    let mut lines = Vec::new();
    for gpu in ["a40", "v100", "p100", "rtx6000"] {
        for (key, zeus) in ZEUS_MEAN_CUM_COST
            .iter()
            .filter(|(k, _)| k.ends_with(&format!("/{gpu}")))
        {
            let dataset = key.split('/').next().unwrap();
            let job = sim_common::job(dataset, gpu);
            let mut total = 0.0;
            for seed in 1..=5 {
                let cfg = SimConfig {
                    eta_knob: 0.5,
                    beta_knob: 2.0,
                    seed,
                };
                let history = simulate_one_job(&job, 50, &cfg).unwrap();
                assert!(
                    history.iter().filter(|h| h.reached).count() == 50,
                    "{key}: one success per recurrence"
                );
                total += history.iter().map(|h| h.cost).sum::<f64>();
            }
            let ours = total / 5.0;
            let diff = ours / zeus - 1.0;
            lines.push(format!(
                "{key:24} zeus {zeus:>16.1} wattwise {ours:>16.1} diff {:+.2}%",
                diff * 100.0
            ));
            if diff.abs() > 0.05 {
                failures.push(key.to_string());
            }
        }
    }
    eprintln!("{}", lines.join("\n"));
    assert!(
        failures.is_empty(),
        "more than 5% away from Zeus: {failures:?}"
    );
}
