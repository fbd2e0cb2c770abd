//! `wattwise measure -- <cmd...>`: the time and energy of a command over its GPUs
//! (see [`crate::nvml::selection`] for which).

use std::io::Write;
use std::time::Duration;

use anyhow::Context;

use crate::commands::Format;
use crate::nvml::energy_meter::{Stopwatch, DEFAULT_POWER_INTERVAL_S};
use crate::run::child::Group;
use crate::run::measurement::{measure, table};

/// Arguments of `wattwise measure`.
#[derive(clap::Args, Debug)]
pub struct MeasureArgs {
    /// Output format, written to stderr after the command ends (the command's
    /// stdout and stderr stay its own), or to --output FILE: `table` is a line of
    /// totals and one line per GPU, `json` is one JSON document.
    #[arg(long, value_enum, default_value = "table")]
    pub format: Format,
    /// Write the result to FILE instead of stderr (created or truncated before the
    /// command starts, as `/usr/bin/time -o` does).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
    /// Serve Prometheus metrics of the GPUs on ADDR (HOST:PORT, or a PORT on
    /// 127.0.0.1) while the command runs, at /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Seconds between energy samples (the timeline in the JSON output).
    #[arg(long, default_value_t = 1.0)]
    pub interval: f64,
    /// GPUs to measure: NVML indices (as `wattwise gpus` numbers them) or UUIDs
    /// (`GPU-…`, `MIG-…`: the parent GPU), comma-separated, or `all`. Default:
    /// CUDA_VISIBLE_DEVICES (CUDA's numbering), else NVIDIA_VISIBLE_DEVICES, else all.
    #[arg(long)]
    pub gpus: Option<String>,
    /// Seconds between power samples on GPUs without an energy counter (before
    /// Volta), whose energy is the integral of sampled power.
    #[arg(long, default_value_t = DEFAULT_POWER_INTERVAL_S)]
    pub power_interval: f64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// Runs `wattwise measure`.
pub fn run(args: MeasureArgs) -> anyhow::Result<i32> {
    if !(args.interval.is_finite() && args.interval >= 0.01) {
        anyhow::bail!("--interval: must be a number of seconds >= 0.01");
    }
    let power_interval = crate::nvml::energy_meter::power_interval(args.power_interval)?;
    let mut output = args
        .output
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map(|file| (file, path))
                .with_context(|| format!("--output: cannot create {}", path.display()))
        })
        .transpose()?;
    let mut gpus = crate::nvml::gpu::NvmlGpus::open()?;
    crate::nvml::limits::recover_unless_busy(&mut gpus, &crate::nvml::limits::state_dir())?;
    let (_, selection) = crate::nvml::selection::select_on_host(&gpus, args.gpus.as_deref())?;
    let indices = selection.gpus();
    crate::exporter::start(args.metrics.as_deref(), None)?;
    crate::run::child::catch_termination_signals();
    let clock = Stopwatch::start(&gpus, &indices, power_interval)?;
    let mut command = Group::spawn(&args.command, &[])
        .map_err(|e| anyhow::anyhow!("cannot start {:?}: {e}", args.command[0]))?;
    let interval = Duration::from_secs_f64(args.interval);
    let m = measure(&mut gpus, &indices, clock, &mut command, interval)?;
    let text = match args.format {
        Format::Json => format!("{}\n", serde_json::to_string(&m)?),
        Format::Table => table(&m),
    };
    match &mut output {
        Some((file, path)) => file
            .write_all(text.as_bytes())
            .with_context(|| format!("--output: cannot write {}", path.display()))?,
        None => eprint!("{text}"),
    }
    Ok(m.exit_code)
}
