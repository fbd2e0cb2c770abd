//! The energy of a run's GPUs since a start: NVML's total energy counter where a
//! GPU has one (Volta and newer), else its power draw sampled every
//! `--power-interval` and integrated with the trapezoid rule (older GPUs, where
//! NVML answers "not supported" for the counter). Each figure says which it used.

use std::time::{Duration, Instant};

use crate::nvml::gpu::{GpuError, Gpus};

/// Default seconds between power samples on GPUs without an energy counter.
pub const DEFAULT_POWER_INTERVAL_S: f64 = 0.1;

/// How a GPU's energy is measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EnergySource {
    /// NVML's total energy counter.
    Counter,
    /// Sampled power, integrated.
    Sampled,
}

impl EnergySource {
    /// `counter` or `sampled`.
    pub fn name(self) -> &'static str {
        match self {
            EnergySource::Counter => "counter",
            EnergySource::Sampled => "sampled",
        }
    }
}

/// The source of a sum over GPUs: `counter`, `sampled`, or `mixed`.
pub fn combined(sources: &[EnergySource]) -> &'static str {
    match sources.first() {
        Some(first) if sources.iter().all(|s| s == first) => first.name(),
        Some(_) => "mixed",
        None => "none",
    }
}

/// Checks a `--power-interval` value, seconds.
pub fn power_interval(secs: f64) -> anyhow::Result<Duration> {
    if secs.is_finite() && (0.001..=60.0).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        anyhow::bail!("--power-interval: must be a number of seconds from 0.001 to 60")
    }
}

#[derive(Clone, Debug)]
enum Channel {
    Counter {
        start_mj: u64,
    },
    Sampled {
        last_s: f64,
        last_mw: u32,
        acc_mj: f64,
    },
}

/// Energy since the start, per GPU.
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    indices: Vec<u32>,
    channels: Vec<Channel>,
}

impl EnergyMeter {
    /// Starts measuring `indices` at time `t` (the caller's clock since its start):
    /// reads each counter, or takes the first power sample where there is none.
    pub fn start(gpus: &dyn Gpus, indices: &[u32], t: Duration) -> Result<EnergyMeter, GpuError> {
        let mut channels = Vec::with_capacity(indices.len());
        for &i in indices {
            channels.push(match gpus.total_energy(i) {
                Ok(mj) => Channel::Counter { start_mj: mj },
                Err(GpuError::NotSupported { .. }) => Channel::Sampled {
                    last_s: t.as_secs_f64(),
                    last_mw: gpus.power_usage(i)?,
                    acc_mj: 0.0,
                },
                Err(e) => return Err(e),
            });
        }
        Ok(EnergyMeter {
            indices: indices.to_vec(),
            channels,
        })
    }

    /// Whether any GPU is sampled (the caller must then call [`EnergyMeter::sample`]
    /// every `--power-interval`).
    pub fn sampling(&self) -> bool {
        self.channels
            .iter()
            .any(|c| matches!(c, Channel::Sampled { .. }))
    }

    /// Per GPU, how it is measured.
    pub fn sources(&self) -> Vec<EnergySource> {
        self.channels
            .iter()
            .map(|c| match c {
                Channel::Counter { .. } => EnergySource::Counter,
                Channel::Sampled { .. } => EnergySource::Sampled,
            })
            .collect()
    }

    /// Takes a power sample of every sampled GPU at `t`.
    pub fn sample(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<(), GpuError> {
        let now_s = t.as_secs_f64();
        for (c, &i) in self.channels.iter_mut().zip(&self.indices) {
            if let Channel::Sampled {
                last_s,
                last_mw,
                acc_mj,
            } = c
            {
                if now_s < *last_s {
                    continue;
                }
                let mw = gpus.power_usage(i)?;
                let dt = now_s - *last_s;
                *acc_mj += (f64::from(*last_mw) + f64::from(mw)) / 2.0 * dt;
                *last_s = now_s;
                *last_mw = mw;
            }
        }
        Ok(())
    }

    /// Energy per GPU since the start, mJ, at `t` (takes a sample first).
    pub fn read(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<Vec<f64>, GpuError> {
        if self.sampling() {
            self.sample(gpus, t)?;
        }
        self.channels
            .iter()
            .zip(&self.indices)
            .map(|(c, &i)| match c {
                Channel::Counter { start_mj } => {
                    Ok(gpus.total_energy(i)?.saturating_sub(*start_mj) as f64)
                }
                Channel::Sampled { acc_mj, .. } => Ok(*acc_mj),
            })
            .collect()
    }

    /// Energy of all the GPUs since the start, mJ, at `t`.
    pub fn total_mj(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<u64, GpuError> {
        Ok(self.read(gpus, t)?.iter().sum::<f64>().round() as u64)
    }
}

/// The energy and time of a set of GPUs since a start: an [`EnergyMeter`] with its
/// own clock, which takes the power samples of GPUs without an energy counter
/// when [`Stopwatch::tick`] finds one due. What `measure` and `run` measure a
/// command with; also the entry point for a library user (open the GPUs with
/// [`crate::nvml::gpu::NvmlGpus::open`], pick them with
/// [`crate::nvml::selection::select_on_host`], start a stopwatch, read it).
#[derive(Clone, Debug)]
pub struct Stopwatch {
    meter: EnergyMeter,
    start: Instant,
    power_interval: Duration,
    next_power: Instant,
}

impl Stopwatch {
    /// Starts measuring `indices` now; GPUs without an energy counter are
    /// sampled every `power_interval` (see [`power_interval`]).
    pub fn start(
        gpus: &dyn Gpus,
        indices: &[u32],
        power_interval: Duration,
    ) -> Result<Stopwatch, GpuError> {
        let start = Instant::now();
        let meter = EnergyMeter::start(gpus, indices, Duration::ZERO)?;
        Ok(Stopwatch {
            meter,
            start,
            power_interval,
            next_power: start + power_interval,
        })
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Whether any GPU is sampled (see [`EnergyMeter::sampling`]).
    pub fn sampling(&self) -> bool {
        self.meter.sampling()
    }

    /// Per GPU, how it is measured.
    pub fn sources(&self) -> Vec<EnergySource> {
        self.meter.sources()
    }

    /// Takes a power sample of every sampled GPU now (around a limit change).
    pub fn sample(&mut self, gpus: &dyn Gpus) -> Result<(), GpuError> {
        self.meter.sample(gpus, self.start.elapsed())
    }

    /// Energy per GPU since the start, mJ, now.
    pub fn read(&mut self, gpus: &dyn Gpus) -> Result<Vec<f64>, GpuError> {
        self.meter.read(gpus, self.start.elapsed())
    }

    /// Energy of all the GPUs since the start, mJ, now.
    pub fn total_mj(&mut self, gpus: &dyn Gpus) -> Result<u64, GpuError> {
        self.meter.total_mj(gpus, self.start.elapsed())
    }

    /// Takes the power sample that is due, if one is; answers how long the
    /// caller may wait before the next one is (`longest` at most).
    pub fn tick(&mut self, gpus: &dyn Gpus, longest: Duration) -> Result<Duration, GpuError> {
        if !self.meter.sampling() {
            return Ok(longest);
        }
        let now = Instant::now();
        if now >= self.next_power {
            self.meter.sample(gpus, now - self.start)?;
            self.next_power = (self.next_power + self.power_interval).max(now);
        }
        Ok(self
            .next_power
            .saturating_duration_since(Instant::now())
            .min(longest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn counters_are_read_where_the_gpu_has_one() {
        let mut g = FakeGpus::new(2);
        g.gpus[0].energy_mj = Some(1000);
        g.gpus[1].energy_mj = Some(50);
        let mut m = EnergyMeter::start(&g, &[0, 1], ms(0)).unwrap();
        assert!(!m.sampling());
        g.gpus[0].energy_mj = Some(4000);
        g.gpus[1].energy_mj = Some(150);
        assert_eq!(m.read(&g, ms(10)).unwrap(), vec![3000.0, 100.0]);
        assert_eq!(m.total_mj(&g, ms(10)).unwrap(), 3100);
        assert_eq!(combined(&m.sources()), "counter");
    }

    #[test]
    fn without_a_counter_power_is_integrated_by_trapezoids() {
        let mut g = FakeGpus::new(2);
        g.gpus[1].energy_mj = None;
        g.gpus[1].power_mw = 100_000;
        let mut m = EnergyMeter::start(&g, &[0, 1], ms(0)).unwrap();
        assert!(m.sampling());
        assert_eq!(
            m.sources(),
            vec![EnergySource::Counter, EnergySource::Sampled]
        );
        assert_eq!(combined(&m.sources()), "mixed");
        // 100 W for 1 s, then a ramp to 200 W over 1 s: 100 J + 150 J.
        m.sample(&g, ms(1000)).unwrap();
        g.gpus[1].power_mw = 200_000;
        m.sample(&g, ms(2000)).unwrap();
        assert_eq!(m.read(&g, ms(2000)).unwrap()[1], 250_000.0);
        // A step sampled on both sides of the change costs nothing in accuracy.
        m.sample(&g, ms(3000)).unwrap();
        g.gpus[1].power_mw = 50_000;
        m.sample(&g, ms(3000)).unwrap();
        let e = m.read(&g, ms(4000)).unwrap()[1];
        assert_eq!(e, 250_000.0 + 200_000.0 + 50_000.0);
        // The clock never goes back.
        m.sample(&g, ms(3500)).unwrap();
        assert_eq!(m.read(&g, ms(3500)).unwrap()[1], e);
    }

    #[test]
    fn other_errors_are_errors_and_the_interval_is_checked() {
        let g = FakeGpus::new(1);
        assert!(EnergyMeter::start(&g, &[3], ms(0)).is_err());
        assert!(power_interval(0.1).is_ok());
        for bad in [0.0, -1.0, f64::NAN, 1e9] {
            let err = power_interval(bad).unwrap_err().to_string();
            assert!(err.starts_with("--power-interval"), "{err}");
        }
        assert_eq!(combined(&[]), "none");
        assert_eq!(
            combined(&[EnergySource::Sampled, EnergySource::Sampled]),
            "sampled"
        );
    }

    #[test]
    fn a_stopwatch_samples_when_a_sample_is_due_and_says_how_long_to_wait() {
        let mut g = FakeGpus::new(2);
        g.gpus[0].energy_mj = None;
        g.gpus[0].power_mw = 100_000;
        let mut w = Stopwatch::start(&g, &[0, 1], ms(20)).unwrap();
        assert!(w.sampling());
        assert_eq!(w.sources()[1], EnergySource::Counter);
        // Not due yet: nothing sampled, and a wait no longer than asked for.
        assert!(w.tick(&g, ms(5)).unwrap() <= ms(5));
        std::thread::sleep(ms(25));
        let nap = w.tick(&g, ms(1000)).unwrap();
        assert!(nap <= ms(20), "{nap:?}");
        g.gpus[1].energy_mj = Some(7000);
        let e = w.read(&g).unwrap();
        // 100 W for at least 25 ms; the counter's 7 J as it is.
        assert!(e[0] >= 2500.0, "{e:?}");
        assert_eq!(e[1], 7000.0);
        assert!(w.total_mj(&g).unwrap() >= 9500);
        assert!(w.elapsed() >= ms(25));
        // GPUs with counters only: never a sample, the whole wait.
        let mut c = Stopwatch::start(&g, &[1], ms(20)).unwrap();
        assert!(!c.sampling());
        assert_eq!(c.tick(&g, ms(300)).unwrap(), ms(300));
    }
}
