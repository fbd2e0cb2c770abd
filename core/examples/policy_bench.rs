//! The policy benchmark: wattwise's policy against Zeus's on the 24 workload x
//! GPU pairs of the Zeus traces (core/traces), relative to the oracle and the
//! default configuration. Prints markdown tables (BENCHMARKS.md has them).
//!
//! `cargo run --release -p wattwise-core --example policy_bench`
//! (`-- quick`: only the setting; `-- sharing`: the leave-one-GPU-out
//! tables of issue 27, a policy that learns across jobs).

use wattwise_core::test_support::policy_bench::{
    evaluate, pairs, profile_agreement, summary_row, table, Setting,
};

fn main() {
    if std::env::args().any(|a| a == "sharing") {
        sharing();
        return;
    }
    let quick = std::env::args().any(|a| a == "quick");
    let pairs = pairs();
    let main = Setting::MAIN;
    println!("### {}\n", main.describe());
    println!("{}", table(&evaluate(&pairs, &main)));
    if quick {
        return;
    }
    let mut settings = Vec::new();
    for eta in [0.2, 0.8] {
        settings.push(Setting { eta, ..main });
    }
    settings.push(Setting {
        seeds: (6, 15),
        ..main
    });
    for recurrences in [20, 100] {
        settings.push(Setting {
            recurrences,
            ..main
        });
    }
    for beta in [1.5, 3.0] {
        settings.push(Setting { beta, ..main });
    }
    let rows: Vec<(Setting, Vec<_>)> = settings.iter().map(|s| (*s, evaluate(&pairs, s))).collect();
    for (s, r) in &rows[..2] {
        println!("### {}\n\n{}", s.describe(), table(r));
    }
    println!("### Summary per setting\n");
    println!("| setting | Zeus / oracle | wattwise / oracle | Zeus / default | wattwise / default | Zeus <= default | wattwise <= default | worst vs Zeus |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!("{}", summary_row(&main, &evaluate(&pairs, &main)));
    for (s, r) in &rows {
        println!("{}", summary_row(s, r));
    }
}

/// Leave-one-GPU-out: every pair warm-started from the other GPUs of its workload.
fn sharing() {
    use wattwise_core::test_support::policy_bench::sharing;
    let pairs = pairs();
    let main = Setting::MAIN;
    println!("| setting | no sharing / oracle | shared / oracle | no sharing <= default | shared <= default | floor > default | worst shared / no sharing | worst epochs x2 / no sharing | worst easier target / no sharing |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    let mut tables = Vec::new();
    let settings = [0.5, 0.2, 0.8]
        .map(|eta| Setting { eta, ..main })
        .into_iter()
        .chain([Setting {
            seeds: (6, 15),
            ..main
        }]);
    for s in settings {
        let r = sharing::evaluate(&pairs, &s);
        let m = sharing::summarize(&r);
        println!(
            "| {} | {:.3} | {:.3} | {} | {} | {} | {:+.1}% | {:+.1}% | {:+.1}% |",
            s.describe(),
            m.cold_oracle,
            m.warm_oracle,
            m.cold_beats_default,
            m.warm_beats_default,
            m.floor_over_default,
            (m.worst_warm - 1.0) * 100.0,
            (m.worst_doubled - 1.0) * 100.0,
            (m.worst_easier - 1.0) * 100.0
        );
        tables.push((s, r));
    }
    println!("\nThe wattwise profile (ends after {} costlier limits in a row) against a full profile, on every batch size of the 24 pairs:\n", wattwise_core::power::WATTWISE_STOP_AFTER_RISES);
    println!("| eta | batch sizes | same limit as a full profile | worst epoch cost where not | limits profiled |");
    println!("| ---: | ---: | ---: | ---: | ---: |");
    for eta in [0.2, 0.5, 0.8] {
        let a = profile_agreement(&pairs, eta);
        println!(
            "| {eta} | {} | {} | {:+.1}% | {} of {} ({:.0}%) |",
            a.batch_sizes,
            a.batch_sizes - a.differ,
            (a.worst - 1.0) * 100.0,
            a.visited,
            a.limits,
            a.visited as f64 / a.limits as f64 * 100.0
        );
    }
    // The tables of the three etas (the untuned seeds have their summary line only).
    for (s, r) in &tables[..3] {
        println!("\n#### {}\n\n{}", s.describe(), sharing::table(r));
    }
}
