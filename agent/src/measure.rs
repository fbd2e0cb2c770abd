//! `wattwise measure -- <cmd...>`: the time and energy of a command over all GPUs.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;

use crate::gpu::{energy_sum, Gpus};
use crate::gpus::Format;

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

/// The measurement of a command.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Measurement {
    /// The command's exit code.
    pub exit_code: i32,
    /// Wall time, s.
    pub time_s: f64,
    /// Energy over all GPUs, J.
    pub energy_j: f64,
    /// Energy per GPU, J.
    pub gpu_energy_j: Vec<f64>,
    /// Average power over all GPUs, W.
    pub average_power_w: f64,
    /// Samples every `--interval` seconds.
    pub samples: Vec<Sample>,
    /// CPU time the agent itself used while the command ran, s.
    pub agent_cpu_s: f64,
}

fn per_gpu(gpus: &dyn Gpus, n: u32) -> anyhow::Result<Vec<u64>> {
    (0..n).map(|i| Ok(gpus.total_energy(i)?)).collect()
}

/// Runs `wattwise measure`.
pub fn run(args: MeasureArgs) -> anyhow::Result<i32> {
    if !(args.interval.is_finite() && args.interval >= 0.01) {
        anyhow::bail!("--interval: must be a number of seconds >= 0.01");
    }
    let mut output = args
        .output
        .as_ref()
        .map(|path| {
            std::fs::File::create(path)
                .map(|file| (file, path))
                .with_context(|| format!("--output: cannot create {}", path.display()))
        })
        .transpose()?;
    let mut gpus = crate::gpu::NvmlGpus::open()?;
    crate::limits::recover_unless_busy(&mut gpus, &crate::limits::state_dir())?;
    crate::exporter::start(args.metrics.as_deref(), None)?;
    let n = gpus.count()?;
    let indices: Vec<u32> = (0..n).collect();
    crate::child::catch_termination_signals();
    let start_energy = per_gpu(&gpus, n)?;
    let start_sum: u64 = start_energy.iter().sum();
    let start = Instant::now();
    let cpu_start = crate::child::own_cpu_seconds();
    let mut child = crate::child::spawn(&args.command, &[])
        .map_err(|e| anyhow::anyhow!("cannot start {:?}: {e}", args.command[0]))?;
    let exit_fd = crate::child::exit_fd(&child);
    let interval = Duration::from_secs_f64(args.interval);
    let mut samples = Vec::new();
    let mut next_sample = start + interval;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if crate::child::signalled().is_some() {
            break crate::child::stop_group(&mut child, Duration::from_secs(10))?;
        }
        let now = Instant::now();
        if now >= next_sample {
            samples.push(Sample {
                time_s: start.elapsed().as_secs_f64(),
                energy_j: energy_sum(&gpus, &indices)?.saturating_sub(start_sum) as f64 / 1000.0,
            });
            next_sample += interval;
        }
        // Sleep until the next sample, the command's end or a signal (at most
        // 50 ms without a pidfd to notice the end).
        let nap = next_sample.saturating_duration_since(Instant::now());
        match &exit_fd {
            Some(fd) => crate::child::wait_readable(&[std::os::fd::AsRawFd::as_raw_fd(fd)], nap),
            None => std::thread::sleep(nap.min(Duration::from_millis(50))),
        }
    };
    let time_s = start.elapsed().as_secs_f64();
    let agent_cpu_s = crate::child::own_cpu_seconds() - cpu_start;
    let end_energy = per_gpu(&gpus, n)?;
    let gpu_energy_j: Vec<f64> = end_energy
        .iter()
        .zip(&start_energy)
        .map(|(e, s)| e.saturating_sub(*s) as f64 / 1000.0)
        .collect();
    let energy_j: f64 = gpu_energy_j.iter().sum();
    let m = Measurement {
        exit_code: crate::child::exit_code(status),
        time_s,
        energy_j,
        gpu_energy_j,
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
        "time: {:.3} s  energy: {:.3} J  average power: {:.1} W  exit code: {}  agent CPU: {:.3} s\n",
        m.time_s, m.energy_j, m.average_power_w, m.exit_code, m.agent_cpu_s
    );
    for (i, e) in m.gpu_energy_j.iter().enumerate() {
        s.push_str(&format!("  gpu {i}: {e:.3} J\n"));
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
            gpu_energy_j: vec![200.0, 300.0],
            average_power_w: 250.0,
            samples: vec![],
            agent_cpu_s: 0.01,
        };
        let t = table(&m);
        assert!(t.contains("250.0 W") && t.contains("exit code: 3"), "{t}");
        assert!(t.contains("gpu 1: 300.000 J"), "{t}");
    }
}
