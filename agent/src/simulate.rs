//! `wattwise simulate`: what wattwise would have done on a recurring job.
//!
//! With no file, it runs the core's built-in synthetic workload. With Zeus's
//! traces (`--train` and `--power`, or `--traces DIR --gpu GPU`) it runs one
//! workload of them; the six Zeus workloads need only `--dataset`. `--seed` and
//! `--eta` take lists (`1-5`, `0.25,0.5`): each combination is one simulation,
//! with a progress bar on a terminal. `--groups FILE` simulates one group of the
//! Alibaba trace (overlapping submissions) instead.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use wattwise_core::sim::synthetic::{
    synthetic_trace, synthetic_workload, SYNTHETIC_GPU, SYNTHETIC_TRACE_SEED,
};
use wattwise_core::sim::{
    group_jobs, parse_groups, simulate_one_alibaba_group, JobTrace, SimConfig, SimReport, Trace,
    Workload,
};

/// Output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// One JSON document (a report, or a list of reports for a sweep).
    Json,
    /// CSV: the runs of one simulation, or one row per simulation of a sweep.
    Csv,
}

/// Arguments of `wattwise simulate`.
#[derive(clap::Args, Debug)]
pub struct SimulateArgs {
    /// Train trace CSV (Zeus's summary_train.csv). Without trace files, the synthetic workload runs.
    #[arg(long, value_name = "FILE")]
    pub train: Option<PathBuf>,
    /// Power trace CSV of one GPU (Zeus's summary_power_{gpu}.csv).
    #[arg(long, value_name = "FILE")]
    pub power: Option<PathBuf>,
    /// Directory holding summary_train.csv and summary_power_{gpu}.csv (instead of --train/--power).
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,
    /// GPU name: picks summary_power_{gpu}.csv under --traces, and labels the output.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Dataset of the workload (a Zeus dataset fills in the other workload flags).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Network of the workload.
    #[arg(long)]
    pub network: Option<String>,
    /// Optimizer of the workload, as in the traces.
    #[arg(long)]
    pub optimizer: Option<String>,
    /// Target metric (must appear in the train trace).
    #[arg(long)]
    pub target_metric: Option<f64>,
    /// Epochs after which a run stops.
    #[arg(long)]
    pub max_epochs: Option<u32>,
    /// Default batch size (the first run's).
    #[arg(long)]
    pub default_bs: Option<u32>,
    /// How many times the job recurs.
    #[arg(long, default_value_t = 50)]
    pub recurrences: u32,
    /// Seed, or seeds to sweep: `1`, `1,3,7` or `1-5`.
    #[arg(long, default_value = "1")]
    pub seed: String,
    /// Eta (energy weight, in [0, 1]), or a comma-separated list to sweep.
    #[arg(long, default_value = "0.5")]
    pub eta: String,
    /// Beta: early stop above beta x min cost (`inf` disables).
    #[arg(long, default_value_t = 2.0)]
    pub beta: f64,
    /// Alibaba group trace CSV (group,start_time,end_time,dataset,runtime_ratio): simulate
    /// one group's overlapping submissions instead of sequential recurrences.
    #[arg(long, value_name = "FILE")]
    pub groups: Option<PathBuf>,
    /// The group to simulate (default: the first group of the workload's dataset).
    #[arg(long, requires = "groups")]
    pub group: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// Parses `1`, `1,3,7`, `1-5` or a mix (`1-3,9`).
fn parse_seeds(text: &str) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: u64 = a
                .trim()
                .parse()
                .with_context(|| format!("--seed: {a:?} is not a whole number"))?;
            let b: u64 = b
                .trim()
                .parse()
                .with_context(|| format!("--seed: {b:?} is not a whole number"))?;
            if b < a || b - a >= 100_000 {
                bail!("--seed: range {part} must be ascending and at most 100000 long");
            }
            out.extend(a..=b);
        } else {
            out.push(
                part.parse()
                    .with_context(|| format!("--seed: {part:?} is not a whole number"))?,
            );
        }
    }
    if out.is_empty() {
        bail!("--seed: give at least one seed");
    }
    Ok(out)
}

fn parse_etas(text: &str) -> anyhow::Result<Vec<f64>> {
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let eta: f64 = part
            .parse()
            .with_context(|| format!("--eta: {part:?} is not a number"))?;
        if !(0.0..=1.0).contains(&eta) {
            bail!("--eta: {eta} must be in [0, 1]");
        }
        out.push(eta);
    }
    if out.is_empty() {
        bail!("--eta: give at least one value");
    }
    Ok(out)
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The job to simulate: the synthetic workload, or one workload of the given traces.
fn load_job(args: &SimulateArgs) -> anyhow::Result<JobTrace> {
    let (train, power, gpu) = match (&args.traces, &args.train, &args.power) {
        (None, None, None) => {
            if args.dataset.is_some() || args.gpu.is_some() {
                bail!("--dataset and --gpu need trace files: --traces DIR, or --train FILE --power FILE");
            }
            let trace = synthetic_trace(SYNTHETIC_TRACE_SEED);
            let mut w = synthetic_workload();
            override_workload(&mut w, args);
            return Ok(JobTrace::new(&trace, &w, SYNTHETIC_GPU)?);
        }
        (Some(dir), None, None) => {
            let Some(gpu) = &args.gpu else {
                bail!("--traces needs --gpu (one of a40, v100, p100, rtx6000 for the Zeus traces)");
            };
            (
                dir.join("summary_train.csv"),
                dir.join(format!("summary_power_{gpu}.csv")),
                gpu.clone(),
            )
        }
        (None, Some(train), Some(power)) => {
            let gpu = args.gpu.clone().unwrap_or_else(|| {
                power
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .and_then(|s| s.strip_prefix("summary_power_"))
                    .unwrap_or("gpu")
                    .to_string()
            });
            (train.clone(), power.clone(), gpu)
        }
        _ => bail!("give either --traces DIR --gpu GPU, or both --train FILE and --power FILE"),
    };
    let trace = Trace::from_csv(&read(&train)?, &read(&power)?)?;
    let Some(dataset) = &args.dataset else {
        bail!("--dataset is required with trace files (the Zeus datasets: cifar100, imagenet, librispeech, movielens-1m, squad, sentiment140)");
    };
    let mut w = match Workload::zeus(dataset) {
        Some(w) => w,
        None => {
            let missing: Vec<&str> = [
                ("--network", args.network.is_none()),
                ("--optimizer", args.optimizer.is_none()),
                ("--target-metric", args.target_metric.is_none()),
                ("--max-epochs", args.max_epochs.is_none()),
                ("--default-bs", args.default_bs.is_none()),
            ]
            .iter()
            .filter(|(_, m)| *m)
            .map(|(f, _)| *f)
            .collect();
            if !missing.is_empty() {
                bail!(
                    "{dataset} is not a Zeus workload: give {}",
                    missing.join(", ")
                );
            }
            Workload {
                dataset: dataset.clone(),
                network: String::new(),
                optimizer: String::new(),
                target_metric: 0.0,
                max_epochs: 1,
                default_batch_size: 1,
            }
        }
    };
    override_workload(&mut w, args);
    let job = JobTrace::new(&trace, &w, &gpu)?;
    if args.default_bs.is_none() {
        // Zeus's preferred default batch size, capped at what this GPU's trace has.
        let w = w.capped_to(&job);
        return Ok(JobTrace::new(&trace, &w, &gpu)?);
    }
    Ok(job)
}

fn override_workload(w: &mut Workload, args: &SimulateArgs) {
    if let Some(n) = &args.network {
        w.network = n.clone();
    }
    if let Some(o) = &args.optimizer {
        w.optimizer = o.clone();
    }
    if let Some(m) = args.target_metric {
        w.target_metric = m;
    }
    if let Some(e) = args.max_epochs {
        w.max_epochs = e;
    }
    if let Some(b) = args.default_bs {
        w.default_batch_size = b;
    }
}

/// Runs the simulator and prints the result on stdout.
pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match run_to(args, &mut out) {
        // `wattwise simulate | head` is not an error.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Runs the simulator and writes the result to `out`.
pub fn run_to(args: SimulateArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let seeds = parse_seeds(&args.seed)?;
    let etas = parse_etas(&args.eta)?;
    if args.recurrences == 0 {
        bail!("--recurrences must be at least 1");
    }
    if args.beta.is_nan() || args.beta <= 0.0 {
        bail!("--beta must be > 0 (or inf to disable early stopping)");
    }
    let job = load_job(&args)?;
    if let Some(path) = &args.groups {
        return run_group(&args, &job, path, seeds[0], etas[0], out);
    }
    let runs: Vec<SimConfig> = etas
        .iter()
        .flat_map(|&eta_knob| {
            seeds.iter().map(move |&seed| SimConfig {
                eta_knob,
                beta_knob: args.beta,
                seed,
            })
        })
        .collect();
    let bar = (runs.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(runs.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} simulating [{bar:30}] {pos}/{len} {msg}",
            )
            .expect("static template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut reports = Vec::with_capacity(runs.len());
    for cfg in &runs {
        if let Some(bar) = &bar {
            bar.set_message(format!("eta {} seed {}", cfg.eta_knob, cfg.seed));
        }
        let report = SimReport::run(&job, args.recurrences, cfg).with_context(|| {
            format!(
                "simulating {} (eta {}, seed {})",
                job.workload.name(),
                cfg.eta_knob,
                cfg.seed
            )
        })?;
        reports.push(report);
        if let Some(bar) = &bar {
            bar.inc(1);
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match (args.format, reports.len()) {
        (Format::Json, 1) => {
            serde_json::to_writer_pretty(&mut *out, &reports[0]).map_err(std::io::Error::from)?
        }
        (Format::Json, _) => {
            serde_json::to_writer_pretty(&mut *out, &reports).map_err(std::io::Error::from)?
        }
        (Format::Csv, 1) => write_history_csv(out, &reports[0])?,
        (Format::Csv, _) => write_sweep_csv(out, &reports)?,
        (Format::Table, 1) => write_table(out, &job, &reports[0])?,
        (Format::Table, _) => write_sweep_table(out, &job, &reports)?,
    }
    writeln!(out)?;
    Ok(())
}

/// Simulates one Alibaba group and prints its runs.
fn run_group(
    args: &SimulateArgs,
    job: &JobTrace,
    path: &Path,
    seed: u64,
    eta_knob: f64,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let rows = parse_groups(&read(path)?)?;
    let group = match &args.group {
        Some(g) => g.clone(),
        None => match rows.iter().find(|r| r.dataset == job.workload.dataset) {
            Some(r) => r.group.clone(),
            None => bail!(
                "{} has no group of dataset {}",
                path.display(),
                job.workload.dataset
            ),
        },
    };
    let jobs = group_jobs(&rows, &group);
    if jobs.is_empty() {
        bail!("{} has no group {group:?}", path.display());
    }
    let cfg = SimConfig {
        eta_knob,
        beta_knob: args.beta,
        seed,
    };
    let history = simulate_one_alibaba_group(job, &jobs, &cfg)
        .with_context(|| format!("simulating group {group} of {}", job.workload.name()))?;
    match args.format {
        Format::Json => {
            let doc = serde_json::json!({
                "workload": job.workload, "gpu": job.gpu, "group": group, "config": cfg,
                "submissions": jobs.len(), "history": history,
                "energy": history.iter().map(|h| h.energy).sum::<f64>(),
                "time": history.iter().map(|h| h.time).sum::<f64>(),
            });
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
        }
        Format::Csv => {
            writeln!(
                out,
                "submission,batch_size,power_limit,energy,time,reached,cost"
            )?;
            for h in &history {
                writeln!(
                    out,
                    "{},{},{},{},{},{},{}",
                    h.recurrence + 1,
                    h.batch_size,
                    h.power_limit,
                    h.energy,
                    h.time,
                    h.reached,
                    h.cost
                )?;
            }
        }
        Format::Table => {
            writeln!(
                out,
                "wattwise simulate: group {group} ({} submissions) of {} on {}, eta {}, beta {}, seed {}\n",
                jobs.len(),
                job.workload.name(),
                job.gpu,
                eta_knob,
                args.beta,
                seed
            )?;
            writeln!(
                out,
                "{:>10} {:>6} {:>5} {:>8} {:>12} {:>10}",
                "submission", "bs", "pl W", "reached", "energy", "time"
            )?;
            for h in &history {
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
            let energy: f64 = history.iter().map(|h| h.energy).sum();
            let time: f64 = history.iter().map(|h| h.time).sum();
            writeln!(
                out,
                "\n{} runs, energy {}, time {}",
                history.len(),
                joules(energy),
                duration(time)
            )?;
        }
    }
    writeln!(out)?;
    Ok(())
}

/// `1234567.0` J as `1.23 MJ`.
fn joules(j: f64) -> String {
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
fn duration(s: f64) -> String {
    if s >= 3600.0 {
        format!("{:.2} h", s / 3600.0)
    } else {
        format!("{s:.0} s")
    }
}

fn percent(x: f64) -> String {
    format!("{:+.1}%", x * 100.0)
}

fn write_table(out: &mut impl Write, job: &JobTrace, r: &SimReport) -> std::io::Result<()> {
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
        "{} recurrences, eta {}, beta {}, seed {}; batch sizes {:?}\n",
        r.recurrences,
        r.config.eta_knob,
        r.config.beta_knob,
        r.config.seed,
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
    let n = r.recurrences as f64;
    let (d, o) = (&r.baselines.default, &r.baselines.oracle);
    writeln!(
        out,
        "\n{:<34} {:>10} {:>12} {:>12} {:>12}",
        "over all recurrences", "bs @ pl", "energy", "time", "cost"
    )?;
    writeln!(
        out,
        "{:<34} {:>10} {:>12} {:>12} {:>12}",
        "wattwise",
        "(learned)",
        joules(r.total_energy()),
        duration(r.total_time()),
        joules(r.total_cost())
    )?;
    for (name, b) in [
        ("default bs at max power (expected)", d),
        ("oracle (expected)", o),
    ] {
        writeln!(
            out,
            "{:<34} {:>10} {:>12} {:>12} {:>12}",
            name,
            format!("{} @ {}", b.batch_size, b.power_limit),
            joules(b.energy * n),
            duration(b.time * n),
            joules(b.cost * n)
        )?;
    }
    writeln!(
        out,
        "\nvs the default: cost {}, energy {} (negative is saved); regret vs the oracle: {} ({} of the oracle's cost)",
        percent(-r.savings_vs_default()),
        percent(-r.energy_savings_vs_default()),
        joules(r.regret.last().copied().unwrap_or(0.0)),
        percent(r.regret.last().copied().unwrap_or(0.0) / (o.cost * n)),
    )?;
    Ok(())
}

fn write_sweep_table(
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
    writeln!(
        out,
        "{:>5} {:>6} {:>14} {:>14} {:>14} {:>14} {:>10} {:>10}",
        "eta", "seed", "energy", "cost", "default cost", "oracle cost", "vs default", "regret"
    )?;
    for r in reports {
        let n = r.recurrences as f64;
        writeln!(
            out,
            "{:>5} {:>6} {:>14} {:>14} {:>14} {:>14} {:>10} {:>10}",
            r.config.eta_knob,
            r.config.seed,
            joules(r.total_energy()),
            joules(r.total_cost()),
            joules(r.baselines.default.cost * n),
            joules(r.baselines.oracle.cost * n),
            percent(-r.savings_vs_default()),
            percent(r.regret.last().copied().unwrap_or(0.0) / (r.baselines.oracle.cost * n)),
        )?;
    }
    let mean = reports.iter().map(|r| r.total_cost()).sum::<f64>() / reports.len() as f64;
    writeln!(
        out,
        "\nmean cumulative cost over {} simulations: {}",
        reports.len(),
        joules(mean)
    )?;
    Ok(())
}

fn write_history_csv(out: &mut impl Write, r: &SimReport) -> std::io::Result<()> {
    writeln!(
        out,
        "recurrence,batch_size,power_limit,energy,time,reached,cost,cum_cost,regret"
    )?;
    for h in &r.history {
        let i = h.recurrence as usize;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            h.recurrence + 1,
            h.batch_size,
            h.power_limit,
            h.energy,
            h.time,
            h.reached,
            h.cost,
            r.cum_cost[i],
            r.regret[i]
        )?;
    }
    Ok(())
}

fn write_sweep_csv(out: &mut impl Write, reports: &[SimReport]) -> std::io::Result<()> {
    writeln!(
        out,
        "eta,seed,recurrences,cum_energy,cum_time,cum_cost,default_cost,oracle_cost,regret,savings_vs_default"
    )?;
    for r in reports {
        let n = r.recurrences as f64;
        writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{}",
            r.config.eta_knob,
            r.config.seed,
            r.recurrences,
            r.total_energy(),
            r.total_time(),
            r.total_cost(),
            r.baselines.default.cost * n,
            r.baselines.oracle.cost * n,
            r.regret.last().copied().unwrap_or(0.0),
            r.savings_vs_default()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_lists_and_ranges() {
        assert_eq!(parse_seeds("1-5").unwrap(), vec![1, 2, 3, 4, 5]);
        assert_eq!(parse_seeds("7, 1-2").unwrap(), vec![7, 1, 2]);
        assert!(parse_seeds("5-1").is_err());
        assert!(parse_seeds("x").is_err());
        assert!(parse_seeds("").is_err());
        assert_eq!(parse_etas("0.25,0.5").unwrap(), vec![0.25, 0.5]);
        assert!(parse_etas("1.5")
            .unwrap_err()
            .to_string()
            .contains("[0, 1]"));
    }

    fn args(extra: &[&str]) -> SimulateArgs {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            args: SimulateArgs,
        }
        let mut argv = vec!["simulate"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().args
    }

    fn output(extra: &[&str]) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run_to(args(extra), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn no_arguments_runs_the_synthetic_workload_readably() {
        let text = output(&[]).unwrap();
        assert!(
            text.starts_with("wattwise simulate: synthetic/resnet"),
            "{text}"
        );
        assert!(
            text.contains("oracle (expected)") && text.contains("vs the default"),
            "{text}"
        );
        // One numbered line per recurrence.
        assert!(
            text.lines().any(|l| l.trim_start().starts_with("50 ")),
            "{text}"
        );
    }

    #[test]
    fn json_has_the_documented_fields() {
        let text = output(&["--recurrences", "20", "--format", "json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in [
            "history",
            "cum_energy",
            "cum_time",
            "cum_cost",
            "baselines",
            "regret",
        ] {
            assert!(v.get(field).is_some(), "missing {field}");
        }
        assert_eq!(v["cum_cost"].as_array().unwrap().len(), 20);
        let h = &v["history"][0];
        for field in ["batch_size", "power_limit", "energy", "reached", "time"] {
            assert!(h.get(field).is_some(), "history lacks {field}");
        }
        assert!(v["baselines"]["oracle"]["cost"].as_f64().unwrap() > 0.0);
    }

    #[test]
    fn sweeps_and_csv() {
        let text = output(&[
            "--recurrences",
            "10",
            "--seed",
            "1-3",
            "--eta",
            "0.2,0.8",
            "--format",
            "csv",
        ])
        .unwrap();
        let lines: Vec<&str> = text.trim().lines().collect();
        assert_eq!(lines.len(), 1 + 6, "{text}");
        assert!(lines[0].starts_with("eta,seed,"));
        let text = output(&["--recurrences", "10", "--seed", "1-2", "--format", "json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        let text = output(&["--recurrences", "5", "--format", "csv"]).unwrap();
        assert!(text.starts_with("recurrence,batch_size,power_limit,energy,time,reached,cost"));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let e = output(&["--dataset", "squad"]).unwrap_err().to_string();
        assert!(e.contains("need trace files"), "{e}");
        let e = output(&["--traces", "/nonexistent"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--gpu"), "{e}");
        let e = output(&[
            "--traces",
            "/nonexistent",
            "--gpu",
            "v100",
            "--dataset",
            "squad",
        ])
        .unwrap_err();
        assert!(format!("{e:#}").contains("summary_train.csv"), "{e:#}");
        let e = output(&["--beta", "0"]).unwrap_err().to_string();
        assert!(e.contains("--beta"), "{e}");
        let e = format!("{:#}", output(&["--default-bs", "24"]).unwrap_err());
        assert!(e.contains("default_batch_size"), "{e}");
    }

    #[test]
    fn zeus_traces_when_present() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/traces");
        if !std::path::Path::new(dir).join("summary_train.csv").exists() {
            eprintln!("note: {dir} is absent; skipping");
            return;
        }
        let text = output(&["--traces", dir, "--gpu", "v100", "--dataset", "librispeech"]).unwrap();
        assert!(
            text.contains("librispeech/deepspeech2 (adamw) on v100"),
            "{text}"
        );
        assert!(
            text.contains("48 @ 150"),
            "the oracle of librispeech on V100: {text}"
        );
    }

    #[test]
    fn alibaba_group_from_a_file() {
        let path = std::env::temp_dir().join(format!("wattwise-groups-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "group,start_time,end_time,dataset,runtime_ratio\n\
             g,0,1000,synthetic,1.0\ng,500,1500,synthetic,2.0\ng,3000,3600,synthetic,0.5\n",
        )
        .unwrap();
        let p = path.to_str().unwrap();
        let text = output(&["--groups", p]).unwrap();
        assert!(text.contains("group g (3 submissions)"), "{text}");
        let v: serde_json::Value =
            serde_json::from_str(&output(&["--groups", p, "--format", "json"]).unwrap()).unwrap();
        let reached = v["history"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|h| h["reached"] == true)
            .count();
        assert_eq!(reached, 3);
        let e = output(&["--groups", p, "--group", "nope"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no group"), "{e}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn units() {
        assert_eq!(joules(1_500_000.0), "1.50 MJ");
        assert_eq!(duration(7200.0), "2.00 h");
    }
}
