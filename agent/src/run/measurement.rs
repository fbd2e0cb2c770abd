//! The measurement of a command: its time and the energy of its GPUs (each
//! with how it was measured), a timeline of samples, its exit code and the
//! agent's own CPU time. What `wattwise measure` prints; a library user with a
//! command of its own calls [`measure`].

use std::ops::ControlFlow;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::nvml::energy_meter::{combined, with_bound, EnergySource, Stopwatch};
use crate::nvml::gpu::Gpus;
use crate::run::child::{exit_code, own_cpu_seconds, signalled, wait_for, Process};
use crate::run::watch::{watch, Watcher};

/// How long a command asked to stop (by a signal to the agent) may take.
const GRACE: Duration = Duration::from_secs(10);

/// One sample of the timeline.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Sample {
    /// Seconds since the command started.
    pub time_s: f64,
    /// Energy since the command started, all GPUs, J.
    pub energy_j: f64,
    /// Its bound, J: the true energy lies within `energy_j ± uncertainty_j`.
    pub uncertainty_j: f64,
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
    /// Its bound, J: the true energy lies within `energy_j ± uncertainty_j`.
    pub uncertainty_j: f64,
    /// How it was measured.
    pub energy_source: EnergySource,
    /// How often its energy counter was found to move, s (a GPU without one:
    /// how often its power was sampled).
    pub update_period_s: f64,
    /// The averaging window of its averaged power reading, s (0: it has none,
    /// the reading is instantaneous).
    pub average_window_s: f64,
    /// Whether `average_window_s` was learned from the power samples (else it
    /// is assumed: 1 s where NVML offers the averaged field).
    pub average_window_learned: bool,
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
    /// Its bound, J: the true energy lies within `energy_j ± uncertainty_j`
    /// (see [`crate::nvml::energy_meter::bound`]).
    pub uncertainty_j: f64,
    /// One line when the command was too short to be measured well.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
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

/// The wait loop of a measurement: a timeline sample every `interval`, and the
/// command's end (or the agent's termination signal, which stops it).
struct Measuring<'a> {
    gpus: &'a mut dyn Gpus,
    clock: Stopwatch,
    process: &'a mut dyn Process,
    interval: Duration,
    next_sample: Instant,
    samples: Vec<Sample>,
}

impl Watcher for Measuring<'_> {
    type Done = ExitStatus;

    fn clock(&mut self) -> (&mut Stopwatch, &dyn Gpus) {
        (&mut self.clock, &*self.gpus)
    }

    fn turn(&mut self, nap: Duration) -> anyhow::Result<ControlFlow<ExitStatus>> {
        if let Some(status) = self.process.try_wait()? {
            return Ok(ControlFlow::Break(status));
        }
        if signalled().is_some() {
            return Ok(ControlFlow::Break(self.process.stop(GRACE)?));
        }
        if Instant::now() >= self.next_sample {
            let m = self.clock.since_start(&*self.gpus)?;
            self.samples.push(Sample {
                time_s: m.time_s,
                energy_j: m.total_j,
                uncertainty_j: m.total_uncertainty_j,
            });
            self.next_sample += self.interval;
        }
        // Until the next sample, the command's end or a signal.
        let to_sample = self.next_sample.saturating_duration_since(Instant::now());
        wait_for(&*self.process, nap.min(to_sample));
        Ok(ControlFlow::Continue(()))
    }
}

/// Measures `process` on the GPUs `indices` until it ends (stopping it when the
/// agent gets SIGINT, SIGTERM or SIGHUP, see
/// [`crate::run::child::catch_termination_signals`]): `clock` started just
/// before it, a sample of the timeline every `interval`.
pub fn measure(
    gpus: &mut dyn Gpus,
    indices: &[u32],
    clock: Stopwatch,
    process: &mut dyn Process,
    interval: Duration,
) -> anyhow::Result<Measurement> {
    let cpu_start = own_cpu_seconds();
    let mut m = Measuring {
        gpus,
        clock,
        process,
        interval,
        next_sample: Instant::now() + interval,
        samples: Vec::new(),
    };
    let status = watch(&mut m, Duration::MAX)?;
    let Measuring {
        gpus,
        mut clock,
        samples,
        ..
    } = m;
    let agent_cpu_s = own_cpu_seconds() - cpu_start;
    let m = clock.since_start(gpus)?;
    let time_s = m.time_s;
    let behaviours = clock.behaviours();
    let mut per_gpu = Vec::with_capacity(indices.len());
    for (k, &index) in indices.iter().enumerate() {
        per_gpu.push(GpuEnergy {
            index,
            uuid: gpus.uuid(index)?,
            energy_j: m.energy_j[k],
            uncertainty_j: m.uncertainty_j[k],
            energy_source: m.sources[k],
            update_period_s: behaviours[k].update_period_s,
            average_window_s: behaviours[k].average_window_s,
            average_window_learned: behaviours[k].average_window_learned,
        });
    }
    Ok(Measurement {
        exit_code: exit_code(status),
        time_s,
        energy_j: m.total_j,
        uncertainty_j: m.total_uncertainty_j,
        warning: m.warning.clone(),
        energy_source: combined(&m.sources).to_string(),
        gpu_energy_j: m.energy_j.clone(),
        gpus: per_gpu,
        average_power_w: if time_s > 0.0 {
            m.total_j / time_s
        } else {
            0.0
        },
        samples,
        agent_cpu_s,
    })
}

/// Renders the table.
pub fn table(m: &Measurement) -> String {
    let mut s = format!(
        "time: {:.3} s  energy: {} ({})  average power: {:.1} W  exit code: {}  agent CPU: {:.3} s\n",
        m.time_s,
        with_bound(m.energy_j, m.uncertainty_j),
        m.energy_source,
        m.average_power_w,
        m.exit_code,
        m.agent_cpu_s
    );
    for g in &m.gpus {
        s.push_str(&format!(
            "  gpu {} ({}): {} ({})\n",
            g.index,
            g.uuid,
            with_bound(g.energy_j, g.uncertainty_j),
            g.energy_source.name()
        ));
    }
    if let Some(w) = &m.warning {
        s.push_str(&format!("  warning: {w}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    #[test]
    fn table_lists_every_gpu() {
        let m = Measurement {
            exit_code: 3,
            time_s: 2.0,
            energy_j: 500.0,
            uncertainty_j: 1.5,
            warning: Some("window of 2000 ms is short".into()),
            energy_source: "mixed".into(),
            gpu_energy_j: vec![200.0, 300.0],
            gpus: vec![
                GpuEnergy {
                    index: 2,
                    uuid: "GPU-a".into(),
                    energy_j: 200.0,
                    uncertainty_j: 0.5,
                    energy_source: EnergySource::Counter,
                    update_period_s: 0.1,
                    average_window_s: 1.0,
                    average_window_learned: false,
                },
                GpuEnergy {
                    index: 5,
                    uuid: "GPU-b".into(),
                    energy_j: 300.0,
                    uncertainty_j: 1.0,
                    energy_source: EnergySource::Sampled,
                    update_period_s: 0.1,
                    average_window_s: 1.0,
                    average_window_learned: false,
                },
            ],
            average_power_w: 250.0,
            samples: vec![],
            agent_cpu_s: 0.01,
        };
        let t = table(&m);
        assert!(t.contains("250.0 W") && t.contains("exit code: 3"), "{t}");
        assert!(
            t.contains("gpu 5 (GPU-b): 300.000 ± 1.000 J (sampled)"),
            "{t}"
        );
        assert!(t.contains("500.000 ± 1.500 J (mixed)"), "{t}");
        assert!(
            t.ends_with("  warning: window of 2000 ms is short\n"),
            "{t}"
        );
    }

    #[test]
    fn a_command_is_measured_until_it_ends_with_a_timeline() {
        use crate::run::child::fake::FakeProcess;
        let mut g = FakeGpus::new(3);
        g.gpus[2].energy_mj = None;
        g.gpus[2].power_mw = 100_000;
        let clock = Stopwatch::start(&g, &[0, 2], Duration::from_millis(5)).unwrap();
        g.gpus[0].energy_mj = Some(9_000);
        // It ends (code 3) once it was asked 20 times, each after a wait of 5 ms at most.
        let mut p = FakeProcess::exits_after(20, 3);
        let m = measure(&mut g, &[0, 2], clock, &mut p, Duration::from_millis(10)).unwrap();
        assert_eq!(m.exit_code, 3);
        assert_eq!(m.energy_source, "mixed");
        assert_eq!(m.gpus[0].uuid, g.gpus[0].uuid);
        assert_eq!(m.gpus[0].energy_j, 9.0);
        // The sampled GPU: 100 W over the time measured (read just after it).
        let sampled = m.gpus[1].energy_j;
        let expected = 100.0 * m.time_s;
        assert!(
            (sampled - expected).abs() < 0.01 * expected,
            "{sampled} J in {} s",
            m.time_s
        );
        assert!(m.time_s >= 0.03, "{}", m.time_s);
        assert!((m.energy_j - m.gpu_energy_j.iter().sum::<f64>()).abs() < 1e-9);
        assert!(!m.samples.is_empty());
        assert!(m
            .samples
            .windows(2)
            .all(|w| w[0].time_s < w[1].time_s && w[0].energy_j <= w[1].energy_j));
        assert!(!p.stopped());
    }
}
