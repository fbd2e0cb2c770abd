//! The simulator's reports as `wattwise simulate` prints them: aligned tables for
//! people and CSV, with joules, durations and verdicts in words. The numbers are
//! the core's ([`wattwise_core::sim`]); this module only lays them out.

use std::io::Write;

use wattwise_core::sim::{
    EtaVerdict, GroupReport, JobTrace, LearningReport, Options, PolicyAtEta, SimReport, SimSummary,
};

/// `--list` as CSV: one row per workload and GPU.
pub fn write_list_csv(out: &mut impl Write, options: &[Options]) -> std::io::Result<()> {
    writeln!(
        out,
        "dataset,network,optimizer,target_metric,max_epochs,default_batch_size,gpu"
    )?;
    for o in options {
        for w in &o.workloads {
            let wl = &w.workload;
            for gpu in &w.gpus {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{gpu}",
                    wl.dataset,
                    wl.network,
                    wl.optimizer,
                    wl.target_metric,
                    wl.max_epochs,
                    wl.default_batch_size
                )?;
            }
        }
    }
    Ok(())
}

/// `--list` as a table: one row per workload, its GPUs in the last column.
pub fn write_list_table(out: &mut impl Write, options: &[Options]) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<14} {:<18} {:<9} {:>7} {:>10} {:>10}  gpus (--gpu)",
        "--dataset", "network", "optimizer", "target", "max epochs", "default bs"
    )?;
    for w in options.iter().flat_map(|o| &o.workloads) {
        let wl = &w.workload;
        writeln!(
            out,
            "{:<14} {:<18} {:<9} {:>7} {:>10} {:>10}  {}",
            wl.dataset,
            wl.network,
            wl.optimizer,
            wl.target_metric,
            wl.max_epochs,
            wl.default_batch_size,
            w.gpus.join(", ")
        )?;
    }
    writeln!(
        out,
        "\nThe default batch size is Zeus's, capped per GPU to the largest the trace has."
    )
}

/// A group's runs as CSV (`submission` counts from 1).
pub fn write_group_csv(out: &mut impl Write, r: &GroupReport) -> std::io::Result<()> {
    writeln!(
        out,
        "submission,batch_size,power_limit,energy,time,reached,cost"
    )?;
    for h in &r.history {
        writeln!(out, "{}", history_cells(h))?;
    }
    Ok(())
}

/// A group's table: every run, then the totals.
pub fn write_group_table(out: &mut impl Write, r: &GroupReport) -> std::io::Result<()> {
    writeln!(
        out,
        "wattwise simulate: group {} ({} submissions) of {} on {}, eta {}, beta {}, seed {}\n",
        r.group,
        r.submissions,
        r.workload.name(),
        r.gpu,
        r.config.eta_knob,
        r.config.beta_knob,
        r.config.seed
    )?;
    writeln!(
        out,
        "{:>10} {:>6} {:>5} {:>8} {:>12} {:>10}",
        "submission", "bs", "pl W", "reached", "energy", "time"
    )?;
    for h in &r.history {
        writeln!(
            out,
            "{:>10} {:>6} {:>5} {:>8} {:>12} {:>10}",
            h.recurrence + 1,
            h.batch_size,
            h.power_limit,
            if h.reached { "yes" } else { "no" },
            joules(h.energy),
            duration(h.time)
        )?;
    }
    writeln!(
        out,
        "\n{} runs, energy {}, time {}",
        r.history.len(),
        joules(r.energy),
        duration(r.time)
    )
}

/// `--learn-from` as CSV: both simulations' runs, each row saying which.
pub fn write_learning_csv(out: &mut impl Write, r: &LearningReport) -> std::io::Result<()> {
    writeln!(out, "sharing,{HISTORY_HEADER}")?;
    for (name, rep) in [("alone", &r.alone), ("shared", &r.shared_run)] {
        for h in &rep.history {
            let i = h.recurrence as usize;
            writeln!(
                out,
                "{name},{},{},{}",
                history_cells(h),
                rep.cum_cost[i],
                rep.regret[i]
            )?;
        }
    }
    Ok(())
}

/// `--learn-from`'s table: what the other GPUs taught, and the job with and
/// without it.
pub fn write_learning_table(
    out: &mut impl Write,
    job: &JobTrace,
    r: &LearningReport,
) -> std::io::Result<()> {
    let w = &job.workload;
    let c = &r.alone.config;
    writeln!(
        out,
        "wattwise simulate: {} on {}, learning from {}; {} recurrences, eta {}, beta {}, seed {}, policy wattwise\n",
        w.name(),
        job.gpu,
        r.learn_from.join(", "),
        r.alone.recurrences,
        c.eta_knob,
        c.beta_knob,
        c.seed
    )?;
    writeln!(out, "what the other GPUs' runs taught (epochs to target):")?;
    writeln!(
        out,
        "{:>8} {:>6} {:>10} {:>12} {:>8}",
        "bs", "runs", "reached", "mean epochs", "sd"
    )?;
    for (bs, s) in &r.shared.sizes {
        writeln!(
            out,
            "{:>8} {:>6} {:>10} {:>12} {:>8}",
            bs,
            s.runs,
            s.successes,
            if s.successes > 0 {
                format!("{:.1}", s.mean)
            } else {
                "-".into()
            },
            s.sd().map_or("-".into(), |sd| format!("{sd:.1}"))
        )?;
    }
    writeln!(
        out,
        "\n{:<16} {:>6} {:>14} {:>14} {:>12} {:>10}",
        "", "runs", "cost", "regret", "of oracle", "vs default"
    )?;
    for (name, rep) in [
        ("without sharing", &r.alone),
        ("with sharing", &r.shared_run),
    ] {
        let s = SimSummary::of(rep);
        writeln!(
            out,
            "{:<16} {:>6} {:>14} {:>14} {:>12} {:>10}",
            name,
            rep.history.len(),
            joules(s.cum_cost),
            joules(s.regret),
            percent(s.relative_regret),
            percent(-s.savings_vs_default),
        )?;
    }
    if let Some(warm) = &r.warm {
        writeln!(
            out,
            "\nreused: {} batch size{} probed for one epoch ({} in all){}",
            warm.probed.len(),
            if warm.probed.len() == 1 { "" } else { "s" },
            joules(warm.probe_cost),
            if warm.distrust {
                "; the job's own runs disagreed with the shared epochs, so it explored on its own"
            } else {
                ""
            }
        )?;
    }
    Ok(())
}

/// `1234567.0` J as `1.23 MJ`.
pub fn joules(j: f64) -> String {
    let (v, unit) = if j.abs() >= 1e9 {
        (j / 1e9, "GJ")
    } else if j.abs() >= 1e6 {
        (j / 1e6, "MJ")
    } else if j.abs() >= 1e3 {
        (j / 1e3, "kJ")
    } else {
        (j, "J")
    };
    format!("{v:.2} {unit}")
}

/// Seconds as hours when long.
pub fn duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else {
        format!("{s:.0} s")
    }
}

/// A fraction as a signed percentage: `+2.5%`.
pub fn percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

/// A fraction saved against the default in words (positive: saved), as the page
/// says it: `saves 1.9%`, `costs 2.5% more`, `same as the default`.
fn verdict(saved: f64) -> String {
    let p = format!("{:.1}", (saved * 100.0).abs());
    if p == "0.0" {
        "same as the default".into()
    } else if saved > 0.0 {
        format!("saves {p}%")
    } else {
        format!("costs {p}% more")
    }
}

/// Writes `rows` under `header`, every column as wide as its widest cell: the
/// first `left` columns left-aligned, the others right-aligned.
fn write_aligned(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    left: usize,
) -> std::io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (c, &w))| {
                if i < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    writeln!(out, "{}", line(header.to_vec()))?;
    for row in rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// One simulation's table: every run, then the totals against the baselines.
pub fn write_table(out: &mut impl Write, job: &JobTrace, r: &SimReport) -> std::io::Result<()> {
    let w = &job.workload;
    writeln!(
        out,
        "wattwise simulate: {} ({}) on {}, target {} within {} epochs, default batch size {}",
        w.name(),
        w.optimizer,
        job.gpu,
        w.target_metric,
        w.max_epochs,
        w.default_batch_size
    )?;
    writeln!(
        out,
        "{} recurrences, eta {}, beta {}, seed {}, {} policy; batch sizes {:?}\n",
        r.recurrences,
        r.config.eta_knob,
        r.config.beta_knob,
        r.config.seed,
        r.policy.display_name(),
        job.batch_size_list()
    )?;
    writeln!(
        out,
        "{:>5} {:>6} {:>5} {:>8} {:>12} {:>10} {:>12} {:>14} {:>14}",
        "rec", "bs", "pl W", "reached", "energy", "time", "cost", "cum cost", "regret"
    )?;
    let mut last_rec = u32::MAX;
    for h in &r.history {
        let (rec, cum, regret) = if h.recurrence != last_rec {
            let i = h.recurrence as usize;
            (
                format!("{}", h.recurrence + 1),
                joules(r.cum_cost[i]),
                joules(r.regret[i]),
            )
        } else {
            (String::new(), String::new(), String::new())
        };
        last_rec = h.recurrence;
        writeln!(
            out,
            "{:>5} {:>6} {:>5} {:>8} {:>12} {:>10} {:>12} {:>14} {:>14}",
            rec,
            h.batch_size,
            h.power_limit,
            if h.reached { "yes" } else { "no" },
            joules(h.energy),
            duration(h.time),
            joules(h.cost),
            cum,
            regret
        )?;
    }
    let s = SimSummary::of(r);
    let (d, o) = (&r.baselines.default, &r.baselines.oracle);
    writeln!(out)?;
    let rows = vec![
        vec![
            format!("{} policy", r.policy.display_name()),
            "(learned)".to_string(),
            joules(s.cum_energy),
            duration(s.cum_time),
            joules(s.cum_cost),
        ],
        vec![
            "default bs at max power (expected)".to_string(),
            format!("{} @ {}", d.batch_size, d.power_limit),
            joules(s.default_energy),
            duration(s.default_time),
            joules(s.default_cost),
        ],
        vec![
            "oracle (expected)".to_string(),
            format!("{} @ {}", o.batch_size, o.power_limit),
            joules(s.oracle_energy),
            duration(s.oracle_time),
            joules(s.oracle_cost),
        ],
    ];
    write_aligned(
        out,
        &[
            "over all recurrences",
            "bs @ pl W",
            "energy",
            "time",
            "cost",
        ],
        &rows,
        1,
    )?;
    writeln!(
        out,
        "\nAgainst the default: {} policy {} in cost ({} energy); regret vs the oracle: {} ({} of the oracle's cost)",
        r.policy.display_name(),
        verdict(r.savings_vs_default()),
        verdict(r.energy_savings_vs_default()),
        joules(s.regret),
        percent(s.relative_regret),
    )?;
    Ok(())
}

/// A sweep's table: one row per simulation, one per (policy, eta), and which
/// policy did better at each eta.
pub fn write_sweep_table(
    out: &mut impl Write,
    job: &JobTrace,
    reports: &[SimReport],
) -> std::io::Result<()> {
    let w = &job.workload;
    writeln!(
        out,
        "wattwise simulate: {} on {}, {} recurrences, beta {}\n",
        w.name(),
        job.gpu,
        reports[0].recurrences,
        reports[0].config.beta_knob
    )?;
    let summaries: Vec<SimSummary> = reports.iter().map(SimSummary::of).collect();
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.policy.display_name().to_string(),
                s.eta.to_string(),
                s.seed.to_string(),
                joules(s.cum_energy),
                duration(s.cum_time),
                joules(s.cum_cost),
                joules(s.default_cost),
                verdict(s.savings_vs_default),
                percent(s.relative_regret),
            ]
        })
        .collect();
    write_aligned(
        out,
        &[
            "policy",
            "eta",
            "seed",
            "energy",
            "time",
            "cost",
            "default cost",
            "against the default",
            "regret vs oracle",
        ],
        &rows,
        1,
    )?;
    // One line per (policy, eta): its cost over every seed against the default's.
    let groups = PolicyAtEta::of(&summaries);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            vec![
                g.policy.display_name().to_string(),
                g.eta.to_string(),
                g.seeds.to_string(),
                joules(g.mean_cost),
                verdict(g.savings_vs_default),
            ]
        })
        .collect();
    writeln!(out, "\nPer policy and eta, over its seeds:")?;
    write_aligned(
        out,
        &["policy", "eta", "seeds", "mean cost", "against the default"],
        &rows,
        1,
    )?;
    // With both policies: which one is better at each eta.
    for v in EtaVerdict::of(&groups) {
        writeln!(
            out,
            "eta {}: {} policy is the better one on these knobs ({}).",
            v.eta,
            v.best.policy.display_name(),
            v.all
                .iter()
                .map(|g| format!(
                    "{} policy {}",
                    g.policy.display_name(),
                    verdict(g.savings_vs_default)
                ))
                .collect::<Vec<_>>()
                .join("; ")
        )?;
    }
    Ok(())
}

/// The header of a simulation's runs as CSV.
pub const HISTORY_HEADER: &str =
    "recurrence,batch_size,power_limit,energy,time,reached,cost,cum_cost,regret";

/// One simulation's runs as CSV.
pub fn write_history_csv(out: &mut impl Write, r: &SimReport) -> std::io::Result<()> {
    writeln!(out, "{HISTORY_HEADER}")?;
    for h in &r.history {
        let i = h.recurrence as usize;
        writeln!(
            out,
            "{},{},{}",
            history_cells(h),
            r.cum_cost[i],
            r.regret[i]
        )?;
    }
    Ok(())
}

/// A sweep as CSV: one row per simulation, the fields of [`SimSummary`] in order
/// (the page's sweep export).
pub fn write_sweep_csv(out: &mut impl Write, reports: &[SimReport]) -> std::io::Result<()> {
    writeln!(
        out,
        "dataset,gpu,policy,eta,seed,recurrences,cum_energy,cum_time,cum_cost,default_energy,default_time,default_cost,oracle_energy,oracle_time,oracle_cost,regret,relative_regret,savings_vs_default"
    )?;
    for s in reports.iter().map(SimSummary::of) {
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            s.dataset,
            s.gpu,
            s.policy,
            s.eta,
            s.seed,
            s.recurrences,
            s.cum_energy,
            s.cum_time,
            s.cum_cost,
            s.default_energy,
            s.default_time,
            s.default_cost,
            s.oracle_energy,
            s.oracle_time,
            s.oracle_cost,
            s.regret,
            s.relative_regret,
            s.savings_vs_default
        )?;
    }
    Ok(())
}

/// The CSV cells every history row starts with: recurrence (from 1), batch size,
/// power limit, energy, time, whether it reached the target, cost.
pub fn history_cells(h: &wattwise_core::sim::HistoryEntry) -> String {
    format!(
        "{},{},{},{},{},{},{}",
        h.recurrence + 1,
        h.batch_size,
        h.power_limit,
        h.energy,
        h.time,
        h.reached,
        h.cost
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units() {
        assert_eq!(joules(1_500_000.0), "1.50 MJ");
        assert_eq!(duration(7200.0), "2.00 h");
        assert_eq!(percent(-0.025), "-2.5%");
        assert_eq!(verdict(0.019), "saves 1.9%");
        assert_eq!(verdict(-0.025), "costs 2.5% more");
        assert_eq!(verdict(0.0001), "same as the default");
    }
}
