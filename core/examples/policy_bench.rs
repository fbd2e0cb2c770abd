//! The policy benchmark: wattwise's policy against Zeus's on the 24 workload x
//! GPU pairs of the Zeus traces (core/traces), relative to the oracle and the
//! default configuration. Prints markdown tables (BENCHMARKS.md has them).
//!
//! `cargo run --release -p wattwise-core --example policy_bench`
//! (`-- quick`: only the setting).

#[path = "../tests/policy_common/mod.rs"]
mod policy_common;

use policy_common::{evaluate, pairs, summary_row, table, Setting};

fn main() {
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
