//! The wattwise policy against Zeus's on the 24 workload x GPU pairs of the
//! Zeus traces (core/traces): the targets of issue 16. The tables behind these
//! figures: `cargo run --release -p wattwise-core --example policy_bench`
//! (BENCHMARKS.md, "Batch size policies").

use wattwise_core::test_support::policy_bench::{
    evaluate, pairs, sharing, summarize, table, Setting,
};

#[test]
fn wattwise_halves_zeus_regret_on_the_zeus_traces() {
    let pairs = pairs();
    assert_eq!(pairs.len(), 24, "six workloads on four GPUs");
    let main = Setting::MAIN;
    let results = evaluate(&pairs, &main);
    eprintln!("{}\n{}", main.describe(), table(&results));
    let s = summarize(&results);
    // Zeus's own figures, as its simulator gives them (BENCHMARKS.md).
    assert!(
        (1.10..1.15).contains(&s.zeus_oracle),
        "Zeus / oracle {:.4}: the Zeus policy is no longer Zeus's",
        s.zeus_oracle
    );
    assert!(
        s.wattwise_oracle <= 1.065,
        "geometric mean of wattwise / oracle {:.4} > 1.065",
        s.wattwise_oracle
    );
    assert!(
        s.worst_vs_zeus <= 1.01,
        "a pair costs {:+.2}% more than under Zeus",
        (s.worst_vs_zeus - 1.0) * 100.0
    );
    assert!(
        s.wattwise_beats_default >= 20,
        "wattwise costs no more than the default on only {} of 24 pairs",
        s.wattwise_beats_default
    );
    assert!(s.wattwise_beats_default > s.zeus_beats_default);
}

#[test]
fn the_improvement_holds_at_other_etas_and_untuned_seeds() {
    let pairs = pairs();
    let main = Setting::MAIN;
    for setting in [
        Setting { eta: 0.2, ..main },
        Setting { eta: 0.8, ..main },
        Setting {
            seeds: (6, 15),
            ..main
        },
    ] {
        let results = evaluate(&pairs, &setting);
        let s = summarize(&results);
        eprintln!(
            "{}: Zeus / oracle {:.4}, wattwise / oracle {:.4}, worst vs Zeus {:+.2}%",
            setting.describe(),
            s.zeus_oracle,
            s.wattwise_oracle,
            (s.worst_vs_zeus - 1.0) * 100.0
        );
        // At least half of Zeus's regret against the oracle is gone, and no pair
        // is more than 2% worse than under Zeus.
        assert!(
            s.wattwise_oracle - 1.0 <= 0.5 * (s.zeus_oracle - 1.0),
            "{}: wattwise / oracle {:.4} against Zeus's {:.4}",
            setting.describe(),
            s.wattwise_oracle,
            s.zeus_oracle
        );
        assert!(s.worst_vs_zeus <= 1.02, "{}", table(&results));
        assert!(s.wattwise_beats_default >= s.zeus_beats_default);
    }
}

/// Issue 27: every pair warm-started from the workload's jobs on the other GPUs
/// (leave one GPU out). The tables: `cargo run --release -p wattwise-core
/// --example policy_bench -- sharing` (BENCHMARKS.md, "A policy that learns across jobs").
#[test]
fn sharing_what_other_gpus_learned_cuts_the_regret_and_wrong_knowledge_costs_little() {
    let pairs = pairs();
    let main = Setting::MAIN;
    let results = sharing::evaluate(&pairs, &main);
    eprintln!("{}\n{}", main.describe(), sharing::table(&results));
    let s = sharing::summarize(&results);
    // Without sharing the policy is today's (the first test's figure).
    assert!(
        (1.045..1.057).contains(&s.cold_oracle),
        "without sharing {:.4}",
        s.cold_oracle
    );
    assert!(
        s.warm_oracle <= 1.03,
        "geometric mean of shared / oracle {:.4} > 1.03",
        s.warm_oracle
    );
    assert!(s.warm_beats_default >= s.cold_beats_default);
    assert_at_or_near_the_default(main.eta, &results);
    assert!(
        s.worst_warm <= 1.01,
        "sharing costs a pair {:+.2}% more than no sharing",
        (s.worst_warm - 1.0) * 100.0
    );
    for (what, worst) in [
        ("epochs x2", s.worst_doubled),
        ("an easier target", s.worst_easier),
    ] {
        assert!(
            worst <= 1.05,
            "with {what} the worst pair costs {:+.2}% over no sharing",
            (worst - 1.0) * 100.0
        );
    }
}

/// Issue 27's "no more than the default configuration on every pair at eta 0.2,
/// 0.5 and 0.8", as far as a policy that profiles can: where the floor (the
/// cheapest profiled first run, then the oracle) is at or under the default,
/// the shared job is too at eta 0.5 and 0.8, and within 1% of it at eta 0.2
/// (squad/a40, 1.010: its batch sizes cost within 3% of each other); where the
/// floor is over the default (its configuration is the oracle's, so any profile
/// is an excess) the shared job is within 0.6% of the default at eta 0.2
/// (imagenet/rtx6000, 1.005) and within 0.2% at eta 0.5 and 0.8
/// (sentiment140/rtx6000, 1.001). The profile that ends early
/// (`power::PowerSettings::stop_after_rises`) took these from 1.016, 1.008 and
/// 1.011 x the default, and skipping the batch sizes past those the other jobs
/// chose (`warm::CHOSEN_SHARE`) sentiment140/rtx6000's at eta 0.5 from 1.005.
/// Tables: BENCHMARKS.md, "A policy that learns across jobs".
fn assert_at_or_near_the_default(eta: f64, results: &[sharing::SharingResult]) {
    for r in results {
        let (shared, floor) = (r.warm / r.default, r.floor / r.default);
        let allowed = if floor > 1.0 && eta == 0.2 {
            1.006
        } else if floor > 1.0 {
            1.002
        } else if eta == 0.2 {
            1.01
        } else {
            1.0
        };
        assert!(
            shared <= allowed,
            "eta {eta}, {}: shared / default {shared:.4} (floor {floor:.4}) over {allowed}",
            r.key
        );
    }
    let over = results.iter().filter(|r| r.warm > r.default).count();
    let infeasible = results.iter().filter(|r| r.floor > r.default).count();
    assert!(
        over <= infeasible + usize::from(eta == 0.2),
        "eta {eta}: {over} pairs over the default, {infeasible} of them where no profile can be under it"
    );
}

/// [`assert_at_or_near_the_default`] at eta 0.2 and 0.8 (eta 0.5: in the test above).
#[test]
fn shared_costs_no_more_than_the_default_wherever_a_profile_allows() {
    let pairs = pairs();
    for eta in [0.2, 0.8] {
        let setting = Setting {
            eta,
            ..Setting::MAIN
        };
        assert_at_or_near_the_default(eta, &sharing::evaluate_shared(&pairs, &setting));
    }
}
