//! `wattwise simulate`: what wattwise would have done on a recurring job.
//!
//! With no flag, it runs the core's built-in synthetic workload. `--dataset` and
//! `--gpu` pick one of the Zeus NSDI '23 workloads built into the core (`--list`
//! prints them); a user's own traces come with `--train` and `--power`, or
//! `--traces DIR --gpu GPU`. Which traces the flags name and which files to read
//! (`wattwise_core::sim::trace_choice`), which job they mean, the knob checks, the
//! sweep and its summary, the group's and the learning run's knobs are the core's
//! (`wattwise_core::sim::catalog`, `wattwise_core::sim::sweep`,
//! `wattwise_core::sim::group`, `wattwise_core::sim::learning`), the layout of
//! tables and CSV is [`crate::sim_text`]'s; this module parses flags, reads files,
//! calls them and prints. `--seed` and
//! `--eta` take lists (`1-5`, `0.25,0.5`): each combination is one simulation,
//! with a progress bar on a terminal. `--groups FILE` simulates one group of the
//! Alibaba trace (overlapping submissions) instead.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use std::ops::ControlFlow;

use anyhow::{bail, Context};
use wattwise_core::policy::Policy;
use wattwise_core::sim::{
    group_config, Catalog, Group, SimConfig, SimulateSpec, SweepSpec, Target, TraceFlags,
    TracePath, TraceText, WorkloadOverrides,
};

use crate::sim_text;

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
    /// Print the built-in workloads and their GPUs (or those of the trace files given), then exit.
    #[arg(long)]
    pub list: bool,
    /// Train trace CSV (summary_train.csv format), for your own traces. Without
    /// trace files, --dataset/--gpu pick a built-in Zeus workload, and no flag at
    /// all runs the synthetic workload.
    #[arg(long, value_name = "FILE")]
    pub train: Option<PathBuf>,
    /// Power trace CSV of one GPU (Zeus's summary_power_{gpu}.csv).
    #[arg(long, value_name = "FILE")]
    pub power: Option<PathBuf>,
    /// Directory holding summary_train.csv and summary_power_{gpu}.csv (instead of --train/--power).
    #[arg(long, value_name = "DIR")]
    pub traces: Option<PathBuf>,
    /// GPU: a built-in one (a40, v100, p100, rtx6000), or summary_power_{gpu}.csv under --traces.
    #[arg(long)]
    pub gpu: Option<String>,
    /// Dataset of the workload: a Zeus dataset (see --list) fills in the other
    /// workload flags; `synthetic` is the synthetic workload.
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
    /// Batch size policy: `zeus` (Zeus's), `wattwise`, or both (`zeus,wattwise`)
    /// to compare them on the same knobs.
    #[arg(long, default_value = "zeus")]
    pub policy: String,
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
    /// GPUs whose jobs of the same workload run first (comma-separated, e.g.
    /// `a40,p100,rtx6000`): the job then runs under the wattwise policy with and
    /// without what they learned about epochs to target, and both regrets print.
    #[arg(long, value_name = "GPUS", conflicts_with = "groups")]
    pub learn_from: Option<String>,
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

/// A comma-separated list given to `--flag`, each item read by `parse`; at least
/// one item (`at_least` says what).
fn parse_list<T>(
    flag: &str,
    text: &str,
    at_least: &str,
    parse: impl Fn(&str) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<T>> {
    let items = text
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(parse)
        .collect::<anyhow::Result<Vec<T>>>()?;
    if items.is_empty() {
        bail!("--{flag}: give at least {at_least}");
    }
    Ok(items)
}

fn parse_etas(text: &str) -> anyhow::Result<Vec<f64>> {
    parse_list("eta", text, "one value", |part| {
        part.parse()
            .with_context(|| format!("--eta: {part:?} is not a number"))
    })
}

fn parse_policies(text: &str) -> anyhow::Result<Vec<Policy>> {
    parse_list("policy", text, "one of zeus, wattwise", |p| {
        p.parse::<Policy>().map_err(anyhow::Error::from)
    })
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The catalog of the traces the flags name: the core chooses them
/// ([`TraceFlags::choose`]), this reads the files it names, and the core loads them.
fn load_catalog(args: &SimulateArgs) -> anyhow::Result<Catalog> {
    let flags = TraceFlags {
        list: args.list,
        dataset: args.dataset.as_deref(),
        gpu: args.gpu.as_deref(),
        traces: args.traces.as_deref(),
        train: args.train.as_deref(),
        power: args.power.as_deref(),
        power_stem: args
            .power
            .as_deref()
            .and_then(Path::file_stem)
            .and_then(|s| s.to_str()),
    };
    let choice = flags.choose()?.try_map(|file| {
        let path = match file {
            TracePath::Given(path) => path.to_path_buf(),
            TracePath::InDir { dir, name } => dir.join(name),
        };
        anyhow::Ok(TraceText {
            text: read(&path)?,
            name: path.display().to_string(),
        })
    })?;
    Ok(Catalog::load(choice)?)
}

/// The workload and GPU the flags name.
fn target(args: &SimulateArgs) -> Target {
    Target {
        gpu: args.gpu.clone(),
        dataset: args.dataset.clone(),
        workload: None,
        overrides: WorkloadOverrides {
            network: args.network.clone(),
            optimizer: args.optimizer.clone(),
            target_metric: args.target_metric,
            max_epochs: args.max_epochs,
            default_batch_size: args.default_bs,
        },
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
    let mut catalog = load_catalog(&args)?;
    if args.list {
        return write_list(out, &mut catalog, args.format);
    }
    let target = target(&args);
    // Every mode refuses a policy it does not know, even one it does not use.
    let policies = parse_policies(&args.policy)?;
    if let Some(path) = &args.groups {
        let seeds = parse_seeds(&args.seed)?;
        let cfg = group_config(&parse_etas(&args.eta)?, &seeds, args.beta)?;
        return run_group(&args, &mut catalog, &target, path, &cfg, out);
    }
    if let Some(gpus) = &args.learn_from {
        return run_learning(&args, &mut catalog, target, gpus, out);
    }
    let spec = SweepSpec {
        pairs: Vec::new(),
        target,
        etas: parse_etas(&args.eta)?,
        seeds: parse_seeds(&args.seed)?,
        recurrences: vec![args.recurrences],
        beta: Some(args.beta),
        policies,
    };
    spec.validate()?;
    let job = catalog.job(&spec.target)?.clone();
    let bar = (spec.len() > 1 && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(spec.len() as u64);
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} simulating [{bar:30}] {pos}/{len}")
                .expect("static template")
                .progress_chars("=> "),
        );
        bar
    });
    let mut reports = Vec::with_capacity(spec.len());
    catalog
        .sweep(&spec, |_, report| {
            reports.push(report);
            if let Some(bar) = &bar {
                bar.inc(1);
            }
            ControlFlow::Continue(())
        })
        .with_context(|| format!("simulating {} on {}", job.workload.name(), job.gpu))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match (args.format, reports.as_slice()) {
        (Format::Json, [one]) => {
            serde_json::to_writer_pretty(&mut *out, one).map_err(std::io::Error::from)?
        }
        (Format::Json, _) => {
            serde_json::to_writer_pretty(&mut *out, &reports).map_err(std::io::Error::from)?
        }
        (Format::Csv, [one]) => sim_text::write_history_csv(out, one)?,
        (Format::Csv, _) => sim_text::write_sweep_csv(out, &reports)?,
        (Format::Table, [one]) => sim_text::write_table(out, &job, one)?,
        (Format::Table, _) => sim_text::write_sweep_table(out, &job, &reports)?,
    }
    writeln!(out)?;
    Ok(())
}

/// `--list`: the workloads and GPUs of the built-in traces (or of the files given).
fn write_list(out: &mut impl Write, catalog: &mut Catalog, format: Format) -> anyhow::Result<()> {
    let options = catalog.listing();
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &options).map_err(std::io::Error::from)?
        }
        Format::Csv => sim_text::write_list_csv(out, &options)?,
        Format::Table => sim_text::write_list_table(out, &options)?,
    }
    writeln!(out)?;
    Ok(())
}

/// Simulates one Alibaba group and prints its runs.
fn run_group(
    args: &SimulateArgs,
    catalog: &mut Catalog,
    target: &Target,
    path: &Path,
    cfg: &SimConfig,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let job = catalog.job(target)?;
    let file = path.display().to_string();
    let group = Group::choose(&file, &read(path)?, args.group.as_deref(), job)?;
    let report = group
        .simulate(job, cfg)
        .with_context(|| format!("simulating group {} of {}", group.name, job.workload.name()))?;
    match args.format {
        // Through a `Value`, whose keys are sorted.
        Format::Json => {
            let doc = serde_json::to_value(&report).map_err(std::io::Error::from)?;
            serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::from)?;
        }
        Format::Csv => sim_text::write_group_csv(out, &report)?,
        Format::Table => sim_text::write_group_table(out, &report)?,
    }
    writeln!(out)?;
    Ok(())
}

/// `--learn-from`: the job with and without the other GPUs' knowledge.
fn run_learning(
    args: &SimulateArgs,
    catalog: &mut Catalog,
    target: Target,
    gpus: &str,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let learn_from = parse_list("learn-from", gpus, "one GPU", |g| Ok(g.to_string()))?;
    let etas = parse_etas(&args.eta)?;
    let spec = SimulateSpec::for_learning(
        target,
        &etas,
        &parse_seeds(&args.seed)?,
        args.beta,
        args.recurrences,
    )?;
    let job = catalog.job(&spec.target)?.clone();
    let r = catalog
        .simulate_learning(&spec, &learn_from)
        .with_context(|| format!("simulating {} on {}", job.workload.name(), job.gpu))?;
    match args.format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *out, &r).map_err(std::io::Error::from)?
        }
        Format::Csv => sim_text::write_learning_csv(out, &r)?,
        Format::Table => sim_text::write_learning_table(out, &job, &r)?,
    }
    writeln!(out)?;
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
        // Parsed here, checked by the core (bad_flags_are_clear_errors).
        assert_eq!(parse_etas("1.5").unwrap(), vec![1.5]);
        assert!(parse_etas("high").is_err());
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
            text.contains("oracle (expected)")
                && text.contains("Against the default: Zeus policy "),
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
        // Recurrences count from 1, as in the table and the CSV.
        assert_eq!(h["recurrence"], 1, "{h}");
        let table = output(&["--recurrences", "20"]).unwrap();
        assert!(
            table.lines().any(|l| l.trim_start().starts_with("1 ")),
            "{table}"
        );
        let csv = output(&["--recurrences", "20", "--format", "csv"]).unwrap();
        assert!(csv.lines().nth(1).unwrap().starts_with("1,"), "{csv}");
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
        assert!(lines[0].starts_with("dataset,gpu,policy,eta,seed,"));
        let text = output(&["--recurrences", "10", "--seed", "1-2", "--format", "json"]).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        let text = output(&["--recurrences", "5", "--format", "csv"]).unwrap();
        assert!(text.starts_with("recurrence,batch_size,power_limit,energy,time,reached,cost"));
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let e = output(&["--dataset", "mnist"]).unwrap_err().to_string();
        assert!(e.contains("not a built-in workload"), "{e}");
        // A typo: the valid names and the closest.
        let e = output(&["--dataset", "imagnet"]).unwrap_err().to_string();
        assert!(e.contains("built in: cifar100, "), "{e}");
        assert!(e.contains("did you mean \"imagenet\"?"), "{e}");
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
        assert!(e.starts_with("beta: "), "{e}");
        let e = output(&["--eta", "1.5"]).unwrap_err().to_string();
        assert_eq!(e, "eta: must be in [0, 1]");
        let e = output(&["--recurrences", "0"]).unwrap_err().to_string();
        assert_eq!(e, "recurrences: must be at least 1");
        let e = format!("{:#}", output(&["--default-bs", "24"]).unwrap_err());
        assert!(e.contains("default_batch_size"), "{e}");
        let e = output(&["--gpu", "h100", "--dataset", "squad"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("\"h100\" is not loaded"), "{e}");
    }

    #[test]
    fn built_in_zeus_traces_need_no_file() {
        let text = output(&["--gpu", "v100", "--dataset", "librispeech"]).unwrap();
        assert!(
            text.contains("librispeech/deepspeech2 (adamw) on v100"),
            "{text}"
        );
        assert!(
            text.contains("48 @ 150"),
            "the oracle of librispeech on V100: {text}"
        );
        // The same numbers as the files the product carries, read as a user's traces.
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../core/traces");
        let from_files = output(&["--traces", dir, "--gpu", "v100", "--dataset", "librispeech"]);
        assert_eq!(from_files.unwrap(), text);
    }

    #[test]
    fn policies_side_by_side() {
        let text = output(&[
            "--dataset",
            "movielens-1m",
            "--gpu",
            "rtx6000",
            "--policy",
            "zeus,wattwise",
            "--seed",
            "1-2",
            "--format",
            "csv",
        ])
        .unwrap();
        let rows: Vec<&str> = text.trim().lines().skip(1).collect();
        assert_eq!(rows.len(), 4, "{text}");
        assert!(
            rows[0].starts_with("movielens-1m,rtx6000,zeus,0.5,1,"),
            "{text}"
        );
        assert!(
            rows[3].starts_with("movielens-1m,rtx6000,wattwise,0.5,2,"),
            "{text}"
        );
        let one: serde_json::Value = serde_json::from_str(
            &output(&[
                "--dataset",
                "squad",
                "--policy",
                "wattwise",
                "--format",
                "json",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(one["policy"], "wattwise");
        let e = output(&["--policy", "greedy"]).unwrap_err().to_string();
        assert!(e.starts_with("policy: must be"), "{e}");
        // The table: every row as wide as the header, a verdict per row and per group.
        let text = output(&[
            "--dataset",
            "imagenet",
            "--gpu",
            "v100",
            "--policy",
            "zeus,wattwise",
        ])
        .unwrap();
        let lines: Vec<&str> = text.lines().skip(2).take(3).collect();
        let header = lines[0];
        for row in &lines[1..] {
            assert_eq!(row.chars().count(), header.chars().count(), "{text}");
        }
        assert!(
            lines[1].starts_with("Zeus ") && lines[2].starts_with("wattwise's "),
            "{text}"
        );
        assert!(
            text.contains("Per policy and eta, over its seeds:"),
            "{text}"
        );
        assert!(
            text.contains("eta 0.5: wattwise's policy is the better one"),
            "{text}"
        );
        assert_eq!(
            text.matches("eta 0.5: ").count(),
            1,
            "one verdict per eta: {text}"
        );
        // The table's words and the CSV's sign agree: positive is saved.
        let csv = output(&[
            "--dataset",
            "imagenet",
            "--gpu",
            "v100",
            "--policy",
            "zeus,wattwise",
            "--format",
            "csv",
        ])
        .unwrap();
        for (row, line) in csv.trim().lines().skip(1).zip(&lines[1..]) {
            let saved: f64 = row.rsplit(',').next().unwrap().parse().unwrap();
            let words = if saved > 0.0 { "saves " } else { "costs " };
            assert!(line.contains(words), "{row} / {line}");
        }
    }

    #[test]
    fn learning_from_other_gpus_prints_both_regrets() {
        let base = [
            "--dataset",
            "imagenet",
            "--gpu",
            "v100",
            "--learn-from",
            "a40,p100,rtx6000",
        ];
        let text = output(&base).unwrap();
        assert!(text.contains("learning from a40, p100, rtx6000"), "{text}");
        // The regret as a share of the oracle's cost: the first percentage of a row.
        let regret = |name: &str| -> f64 {
            let line = text.lines().find(|l| l.starts_with(name)).unwrap();
            let cell = line.split_whitespace().find(|t| t.ends_with('%')).unwrap();
            cell.trim_end_matches('%').parse().unwrap()
        };
        assert!(regret("with sharing") < regret("without sharing"), "{text}");
        assert!(text.contains("reused: "), "{text}");
        let mut json = base.to_vec();
        json.extend(["--format", "json"]);
        let doc: serde_json::Value = serde_json::from_str(&output(&json).unwrap()).unwrap();
        let last = |k: &str| {
            doc[k]["regret"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()
                .as_f64()
                .unwrap()
        };
        assert!(last("shared_run") < last("alone"), "{doc}");
        // imagenet on v100, learning from `gpus`, with `extra` flags: the error.
        let error = |gpus: &str, extra: &[&str]| {
            let mut flags = vec![
                "--dataset",
                "imagenet",
                "--gpu",
                "v100",
                "--learn-from",
                gpus,
            ];
            flags.extend(extra);
            format!("{:#}", output(&flags).unwrap_err())
        };
        let e = error("v100", &[]);
        assert!(e.contains("learn_from"), "{e}");
        // Its knobs are checked as a plain run's are.
        let e = error("a40", &["--beta", "nan"]);
        assert!(e.contains("beta: must be > 0"), "{e}");
    }

    #[test]
    fn list_names_every_workload_and_gpu() {
        let text = output(&["--list"]).unwrap();
        for dataset in [
            "cifar100",
            "imagenet",
            "librispeech",
            "movielens-1m",
            "squad",
            "sentiment140",
            "synthetic",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(dataset)),
                "{dataset}: {text}"
            );
        }
        assert!(text.contains("a40, v100, p100, rtx6000"), "{text}");
        let csv = output(&["--list", "--format", "csv"]).unwrap();
        assert_eq!(csv.trim().lines().count(), 1 + 24 + 1, "{csv}");
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
        // Its knobs are checked as a plain run's are, the policy too.
        let e = output(&["--groups", p, "--beta", "0"]).unwrap_err();
        assert!(format!("{e:#}").contains("beta: must be > 0"), "{e:#}");
        let e = output(&["--groups", p, "--policy", "greedy"]).unwrap_err();
        assert!(format!("{e:#}").starts_with("policy: must be"), "{e:#}");
        std::fs::remove_file(&path).unwrap();
    }
}
