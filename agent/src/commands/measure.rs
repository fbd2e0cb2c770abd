//! `wattwise measure -- <cmd...>`: the time and energy of a command over its GPUs
//! (see [`crate::nvml::selection`] for which).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::commands::gpus::Format;
use crate::nvml::energy_meter::{combined, EnergyMeter, EnergySource, DEFAULT_POWER_INTERVAL_S};
use crate::nvml::gpu::Gpus;

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

/// One sample of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the command started.
    pub time_s: f64,
    /// Energy since the command started, all GPUs, J.
    pub energy_j: f64,
}

/// One GPU's share of a measurement.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GpuEnergy {
    /// NVML index.
    pub index: u32,
    /// UUID.
    pub uuid: String,
    /// Energy, J.
    pub energy_j: f64,
    /// How it was measured.
    pub energy_source: EnergySource,
}

/// The measurement of a command.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measurement {
    /// The command's exit code.
    pub exit_code: i32,
    /// Wall time, s.
    pub time_s: f64,
    /// Energy over all GPUs, J.
    pub energy_j: f64,
    /// `counter`, `sampled` (power integrated) or `mixed`: how `energy_j` was measured.
    pub energy_source: String,
    /// Energy per GPU, J (in the order of `gpus`).
    pub gpu_energy_j: Vec<f64>,
    /// The GPUs measured, with their energy and its source.
    pub gpus: Vec<GpuEnergy>,
    /// Average power over all GPUs, W.
    pub average_power_w: f64,
    /// Samples every `--interval` seconds.
    pub samples: Vec<Sample>,
    /// CPU time the agent itself used while the command ran, s.
    pub agent_cpu_s: f64,
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
    crate::commands::exporter::start(args.metrics.as_deref(), None)?;
    crate::run::child::catch_termination_signals();
    let start = Instant::now();
    let mut meter = EnergyMeter::start(&gpus, &indices, start.elapsed())?;
    let cpu_start = crate::run::child::own_cpu_seconds();
    let mut child = crate::run::child::spawn(&args.command, &[])
        .map_err(|e| anyhow::anyhow!("cannot start {:?}: {e}", args.command[0]))?;
    let exit_fd = crate::run::child::exit_fd(&child);
    let interval = Duration::from_secs_f64(args.interval);
    let mut samples = Vec::new();
    let mut next_sample = start + interval;
    let mut next_power = start + power_interval;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if crate::run::child::signalled().is_some() {
            break crate::run::child::stop_group(&mut child, Duration::from_secs(10))?;
        }
        let now = Instant::now();
        if meter.sampling() && now >= next_power {
            meter.sample(&gpus, start.elapsed())?;
            next_power = (next_power + power_interval).max(now);
        }
        if now >= next_sample {
            let t = start.elapsed();
            samples.push(Sample {
                time_s: t.as_secs_f64(),
                energy_j: meter.total_mj(&gpus, t)? as f64 / 1000.0,
            });
            next_sample += interval;
        }
        // Sleep until the next sample, the command's end or a signal (at most
        // 50 ms without a pidfd to notice the end).
        let wake = if meter.sampling() {
            next_sample.min(next_power)
        } else {
            next_sample
        };
        let nap = wake.saturating_duration_since(Instant::now());
        match &exit_fd {
            Some(fd) => {
                crate::run::child::wait_readable(&[std::os::fd::AsRawFd::as_raw_fd(fd)], nap)
            }
            None => std::thread::sleep(nap.min(Duration::from_millis(50))),
        }
    };
    let end = start.elapsed();
    let time_s = end.as_secs_f64();
    let agent_cpu_s = crate::run::child::own_cpu_seconds() - cpu_start;
    let gpu_energy_j: Vec<f64> = meter
        .read(&gpus, end)?
        .iter()
        .map(|mj| mj / 1000.0)
        .collect();
    let energy_j: f64 = gpu_energy_j.iter().sum();
    let sources = meter.sources();
    let mut per_gpu = Vec::with_capacity(indices.len());
    for ((&index, &energy_j), &energy_source) in indices.iter().zip(&gpu_energy_j).zip(&sources) {
        per_gpu.push(GpuEnergy {
            index,
            uuid: gpus.uuid(index)?,
            energy_j,
            energy_source,
        });
    }
    let m = Measurement {
        exit_code: crate::run::child::exit_code(status),
        time_s,
        energy_j,
        energy_source: combined(&sources).to_string(),
        gpu_energy_j,
        gpus: per_gpu,
        average_power_w: if time_s > 0.0 { energy_j / time_s } else { 0.0 },
        samples,
        agent_cpu_s,
    };
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

/// Renders the table.
pub fn table(m: &Measurement) -> String {
    let mut s = format!(
        "time: {:.3} s  energy: {:.3} J ({})  average power: {:.1} W  exit code: {}  agent CPU: {:.3} s\n",
        m.time_s, m.energy_j, m.energy_source, m.average_power_w, m.exit_code, m.agent_cpu_s
    );
    for g in &m.gpus {
        s.push_str(&format!(
            "  gpu {} ({}): {:.3} J ({})\n",
            g.index,
            g.uuid,
            g.energy_j,
            g.energy_source.name()
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_gpu() {
        let m = Measurement {
            exit_code: 3,
            time_s: 2.0,
            energy_j: 500.0,
            energy_source: "mixed".into(),
            gpu_energy_j: vec![200.0, 300.0],
            gpus: vec![
                GpuEnergy {
                    index: 2,
                    uuid: "GPU-a".into(),
                    energy_j: 200.0,
                    energy_source: EnergySource::Counter,
                },
                GpuEnergy {
                    index: 5,
                    uuid: "GPU-b".into(),
                    energy_j: 300.0,
                    energy_source: EnergySource::Sampled,
                },
            ],
            average_power_w: 250.0,
            samples: vec![],
            agent_cpu_s: 0.01,
        };
        let t = table(&m);
        assert!(t.contains("250.0 W") && t.contains("exit code: 3"), "{t}");
        assert!(t.contains("gpu 5 (GPU-b): 300.000 J (sampled)"), "{t}");
        assert!(t.contains("500.000 J (mixed)"), "{t}");
    }
}
