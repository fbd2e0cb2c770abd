//! The energy of a run's GPUs since a start: NVML's total energy counter where a
//! GPU has one (Volta and newer), else its power draw sampled every
//! `--power-interval` and integrated with the trapezoid rule (older GPUs, where
//! NVML answers "not supported" for the counter). Each figure says which it used,
//! and carries its bound ([`Measurement`], [`bound`]), derived from what was
//! learned of the GPU once per process ([`learn`]) and the power samples taken
//! between readings.

use std::time::{Duration, Instant};

use crate::nvml::gpu::{GpuError, Gpus};

pub mod learn;
pub mod phase;
#[cfg(test)]
pub(crate) mod sim;
#[cfg(test)]
mod through_fake;
pub mod window;

/// A stopwatch moves to a sampler thread (the Python extension keeps one behind
/// a mutex): this fails to compile if it stops being `Send`.
const _: fn() = || {
    fn send<T: Send>() {}
    send::<Stopwatch>();
};

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

/// How a GPU reports energy and power: what the meter learned of it once per
/// process (see [`learn`]), and what its bounds are derived from.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Behaviour {
    /// How often the energy counter moves, s (a GPU without one: how often its
    /// power is sampled).
    pub update_period_s: f64,
    /// The counter's period as an interval `(low, high)`, s, where the probe saw
    /// it move twice or more (the meter learns the counter's phase from it).
    pub period_range_s: Option<(f64, f64)>,
    /// The counter's step, mJ.
    pub quantum_mj: f64,
    /// Whether NVML offers the instantaneous power field (then power samples
    /// read it rather than the averaged reading).
    pub instant_field: bool,
    /// The averaging window of `nvmlDeviceGetPowerUsage`, s (0: instantaneous).
    pub average_window_s: f64,
    /// Whether `average_window_s` was learned from the power samples (see
    /// [`window`]); else it is assumed (1 s where the averaged field exists).
    pub average_window_learned: bool,
}

impl Behaviour {
    /// What is assumed of a GPU nothing was learned of: a counter moving every
    /// 100 ms in millijoules, power averaged over 1 s.
    pub const ASSUMED: Behaviour = Behaviour {
        update_period_s: 0.1,
        period_range_s: None,
        quantum_mj: 1.0,
        instant_field: false,
        average_window_s: 1.0,
        average_window_learned: false,
    };

    /// A counter that moves every millisecond in millijoules, instantaneous
    /// power: what the unit tests' fake GPUs, whose counters only move when a
    /// test moves them, are taken to have.
    pub const EXACT: Behaviour = Behaviour {
        update_period_s: 0.001,
        period_range_s: None,
        quantum_mj: 1.0,
        instant_field: false,
        average_window_s: 0.0,
        average_window_learned: false,
    };

    /// Whether the counter is coarse enough (50 ms or more between updates, as on
    /// A100/H100, whose sensor also samples only part of each period) that power
    /// is sampled between readings to bound what the counter misses.
    pub fn coarse(&self) -> bool {
        self.update_period_s >= COARSE_PERIOD_S
    }
}

/// Update periods from this on are coarse (see [`Behaviour::coarse`]).
pub const COARSE_PERIOD_S: f64 = 0.05;

/// How much of the moves of power between samples a coarse counter's bound
/// counts (see [`bound`]): a part-time sensor misses at most the unsampled part
/// of a period of each move, 75 % where it samples a quarter of each period (as
/// on A100 and H100, Yang et al. SC24), in either direction, so the moves add as
/// independent errors.
pub const PART_TIME: f64 = 0.75;

/// How far apart a sample's time stamp and NVML's answer may be, s.
pub const TIMING_S: f64 = 0.001;

/// Windows shorter than this many update periods are flagged.
pub const SHORT_WINDOW_PERIODS: f64 = 3.0;

/// The power samples of one GPU, accumulated since the start.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Marks {
    /// Sampled power integrated (trapezoids), J.
    pub power_j: f64,
    /// Sum over samples of `(span * |Δpower|)²`, J² (the span: a counter's update
    /// period, else the sample interval): how much
    /// power moved between samples, where a counter or the samples may miss it.
    pub variation_j2: f64,
    /// The higher of the last two power samples, W (the power near this edge).
    pub edge_w: f64,
    /// What the counter rose by from the start to the last sample, J (0 without
    /// a counter): set against `power_j`, how far the counter drifts from power.
    pub counter_j: f64,
    /// Where the counter's phase is known (see [`phase`]): the energy since it
    /// last moved, sampled power times the time since, J, and how far off that
    /// may be, J.
    pub since_update: Option<(f64, f64)>,
    /// With `since_update`: what a part-time sensor may have missed of the
    /// power's moves since the counter last moved ([`PART_TIME`] of an update
    /// period of each move between samples), J. The counter's next update
    /// holds them; a window that begins here counts it, but its own moves
    /// begin later.
    pub lead_j: f64,
    /// The marks at the first sample whose `since_update` was known: the drift
    /// check's baseline.
    pub base: Option<Base>,
}

/// The baseline of the drift check (see [`Marks::base`]).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Base {
    /// [`Marks::power_j`] then, J.
    pub power_j: f64,
    /// [`Marks::counter_j`] then, with the energy since the counter moved, J.
    pub counter_j: f64,
    /// [`Marks::variation_j2`] then, J².
    pub variation_j2: f64,
    /// How far off `counter_j` may be, J.
    pub error_j: f64,
}

/// A reading of a stopwatch: time since its start and energy per GPU since then.
#[derive(Clone, Debug)]
pub struct Reading {
    /// Time since the stopwatch started.
    pub at: Duration,
    /// Energy per GPU since the start, mJ (in the stopwatch's order).
    pub energy_mj: Vec<f64>,
    /// Per GPU, its power samples so far.
    pub marks: Vec<Marks>,
}

/// Energy over a window between two readings, per GPU and in total, with bounds.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct Measurement {
    /// Length of the window, s.
    pub time_s: f64,
    /// NVML indices, in the stopwatch's order.
    pub gpus: Vec<u32>,
    /// Energy per GPU, J.
    pub energy_j: Vec<f64>,
    /// Half-width per GPU, J: the true energy lies in `energy_j ± uncertainty_j`.
    pub uncertainty_j: Vec<f64>,
    /// How each GPU's energy was measured.
    pub sources: Vec<EnergySource>,
    /// Energy of all the GPUs, J.
    pub total_j: f64,
    /// Half-width of the total, J (the GPUs' bounds added).
    pub total_uncertainty_j: f64,
    /// One line when the window is too short to be measured well.
    pub warning: Option<String>,
}

impl Measurement {
    /// `E ± U J`, the total with its bound.
    pub fn total_text(&self) -> String {
        with_bound(self.total_j, self.total_uncertainty_j)
    }
}

/// `E ± U J` (three decimals).
pub fn with_bound(energy_j: f64, uncertainty_j: f64) -> String {
    format!("{energy_j:.3} ± {uncertainty_j:.3} J")
}

#[derive(Clone, Debug)]
struct Channel {
    behaviour: Behaviour,
    /// The counter at the start (`None`: the GPU has none, power is integrated).
    start_mj: Option<u64>,
    last_s: f64,
    last_w: f64,
    prev_w: f64,
    /// The counter at the last sample, mJ.
    last_mj: u64,
    /// The greatest common divisor of the counter's moves seen between
    /// samples, mJ (0: none yet): no less than its quantum.
    moves_gcd_mj: u64,
    /// The counter's phase, learned where it is coarse and its period known.
    phase: Option<phase::Phase>,
    /// With a phase: the samples of the last three update periods, `(time s,
    /// integrated power J, W)`.
    recent: std::collections::VecDeque<(f64, f64, f64)>,
    /// The averaged power field's window, learned from the samples.
    window: window::WindowFit,
    marks: Marks,
}

/// Energy since the start, per GPU, and the power samples its bounds need.
#[derive(Clone, Debug)]
pub struct EnergyMeter {
    indices: Vec<u32>,
    channels: Vec<Channel>,
    origin: Reading,
}

/// Power drawn now, W: the instantaneous field where the GPU offers it (with
/// the averaged field, where it answers it too).
fn power_w(gpus: &dyn Gpus, index: u32, b: &Behaviour) -> Result<(f64, Option<f64>), GpuError> {
    if b.instant_field {
        let fields = gpus.power_fields(index)?;
        if let Some(mw) = fields.instant_mw {
            let average = fields.average_mw.map(|a| f64::from(a) / 1000.0);
            return Ok((f64::from(mw) / 1000.0, average));
        }
    }
    Ok((f64::from(gpus.power_usage(index)?) / 1000.0, None))
}

impl EnergyMeter {
    /// Starts measuring `indices`, whose behaviours are `behaviours`, at time `t`
    /// (the caller's clock since its start): reads each counter, or takes the
    /// first power sample where there is none.
    pub fn start(
        gpus: &dyn Gpus,
        indices: &[u32],
        behaviours: &[Behaviour],
        t: Duration,
    ) -> Result<EnergyMeter, GpuError> {
        let mut channels = Vec::with_capacity(indices.len());
        for (k, &i) in indices.iter().enumerate() {
            let behaviour = behaviours.get(k).copied().unwrap_or(Behaviour::ASSUMED);
            let start_mj = match gpus.total_energy(i) {
                Ok(mj) => Some(mj),
                Err(GpuError::NotSupported { .. }) => None,
                Err(e) => return Err(e),
            };
            let (w, _) = power_w(gpus, i, &behaviour)?;
            let phase = match (start_mj, behaviour.period_range_s) {
                (Some(mj), Some(range)) if behaviour.coarse() => {
                    Some(phase::Phase::new(range, t.as_secs_f64(), mj))
                }
                _ => None,
            };
            channels.push(Channel {
                behaviour,
                start_mj,
                last_s: t.as_secs_f64(),
                last_w: w,
                prev_w: w,
                last_mj: start_mj.unwrap_or(0),
                moves_gcd_mj: 0,
                phase,
                recent: std::collections::VecDeque::from([(t.as_secs_f64(), 0.0, w)]),
                window: window::WindowFit::default(),
                marks: Marks {
                    edge_w: w,
                    ..Marks::default()
                },
            });
        }
        let origin = Reading {
            at: t,
            energy_mj: vec![0.0; channels.len()],
            marks: channels.iter().map(|c| c.marks).collect(),
        };
        Ok(EnergyMeter {
            indices: indices.to_vec(),
            channels,
            origin,
        })
    }

    /// Whether any GPU is sampled or has a coarse counter (the caller must then
    /// call [`EnergyMeter::sample`] every `--power-interval`).
    pub fn sampling(&self) -> bool {
        self.channels
            .iter()
            .any(|c| c.start_mj.is_none() || c.behaviour.coarse())
    }

    /// Per GPU, how it is measured.
    pub fn sources(&self) -> Vec<EnergySource> {
        self.channels
            .iter()
            .map(|c| match c.start_mj {
                Some(_) => EnergySource::Counter,
                None => EnergySource::Sampled,
            })
            .collect()
    }

    /// Per GPU, its behaviour.
    pub fn behaviours(&self) -> Vec<Behaviour> {
        self.channels.iter().map(|c| c.behaviour).collect()
    }

    /// The reading at the start (no energy yet).
    pub fn origin(&self) -> Reading {
        self.origin.clone()
    }

    /// Takes `interval` as the update period of the GPUs without a counter (how
    /// often they are sampled).
    pub fn set_sample_period(&mut self, interval: Duration) {
        for c in self.channels.iter_mut().filter(|c| c.start_mj.is_none()) {
            c.behaviour.update_period_s = interval.as_secs_f64();
        }
    }

    /// Takes a power sample of every GPU at `t` (and reads the counters).
    pub fn sample(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<(), GpuError> {
        self.sample_with(gpus, t, &|| t)
    }

    /// [`EnergyMeter::sample`] on a clock that moves while NVML answers:
    /// `now` says when each counter read was over (a read late after its time
    /// stamp must not mislead the counter's phase).
    pub fn sample_with(
        &mut self,
        gpus: &dyn Gpus,
        t: Duration,
        now: &dyn Fn() -> Duration,
    ) -> Result<(), GpuError> {
        let now_s = t.as_secs_f64();
        for (c, &i) in self.channels.iter_mut().zip(&self.indices) {
            if now_s < c.last_s {
                continue;
            }
            let (w, average_w) = power_w(gpus, i, &c.behaviour)?;
            if let Some(average_w) = average_w {
                c.window.sample(now_s, w, average_w);
                if let Some(window) = c.window.learned() {
                    c.behaviour.average_window_s = window;
                    c.behaviour.average_window_learned = true;
                }
            }
            let mut read_end_s = now_s;
            if let Some(start) = c.start_mj {
                let mj = gpus.total_energy(i)?;
                read_end_s = now().as_secs_f64();
                c.moves_gcd_mj = learn::gcd(c.moves_gcd_mj, mj.saturating_sub(c.last_mj));
                c.last_mj = mj;
                c.marks.counter_j = c.last_mj.saturating_sub(start) as f64 / 1000.0;
            }
            let dt = now_s - c.last_s;
            c.marks.power_j += (c.last_w + w) / 2.0 * dt;
            // A part-time sensor may miss up to one update period of a move,
            // however often it is sampled (a move shows once, when its period
            // is sampled); samples miss up to the whole interval.
            let span = match c.start_mj {
                Some(_) => c.behaviour.update_period_s,
                None => dt,
            };
            let moved = span * (w - c.last_w).abs();
            c.marks.variation_j2 += moved * moved;
            c.prev_w = c.last_w;
            c.last_s = now_s;
            c.last_w = w;
            c.marks.edge_w = c.prev_w.max(w);
            let quantum_j = c.moves_gcd_mj as f64 / 1000.0;
            if let Some(p) = c.phase.as_mut() {
                p.read(now_s, read_end_s, c.last_mj);
                c.recent.push_back((now_s, c.marks.power_j, w));
                let keep_s = now_s - 3.0 * c.behaviour.update_period_s;
                while c.recent.len() > 2 && c.recent[1].0 <= keep_s {
                    c.recent.pop_front();
                }
                let last = p.last_update().filter(|_| quantum_j > 0.0);
                c.marks.since_update =
                    last.and_then(|(lo, hi)| since_update(&c.recent, lo, hi, quantum_j));
                c.marks.lead_j = last.map_or(0.0, |(lo, _)| {
                    let moves_w: f64 = c
                        .recent
                        .iter()
                        .zip(c.recent.iter().skip(1))
                        .filter(|(_, b)| b.0 > lo)
                        .map(|(a, b)| (b.2 - a.2).abs())
                        .sum();
                    PART_TIME * c.behaviour.update_period_s * moves_w
                });
            }
            if c.marks.base.is_none() {
                c.marks.base = c.marks.since_update.map(|(since_j, error_j)| Base {
                    power_j: c.marks.power_j,
                    counter_j: c.marks.counter_j + since_j,
                    variation_j2: c.marks.variation_j2,
                    error_j: error_j + c.marks.lead_j,
                });
            }
        }
        Ok(())
    }

    /// When the next power sample should be taken, given that the regular one
    /// is due at `due`: earlier while a coarse counter's phase is being learned
    /// (see [`phase::Phase::next_read`]), else `due` (moved past an update).
    pub fn next_sample(&self, due: Duration) -> Duration {
        let due_s = due.as_secs_f64();
        let at = self
            .channels
            .iter()
            .filter_map(|c| c.phase.as_ref().map(|p| p.next_read(due_s)))
            .fold(f64::INFINITY, f64::min);
        if at.is_finite() {
            Duration::from_secs_f64(at.max(0.0))
        } else {
            due
        }
    }

    /// A reading at `t` (takes a power sample first).
    pub fn reading(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<Reading, GpuError> {
        self.reading_with(gpus, t, &|| t)
    }

    /// [`EnergyMeter::reading`] on a clock that moves while NVML answers (see
    /// [`EnergyMeter::sample_with`]).
    pub fn reading_with(
        &mut self,
        gpus: &dyn Gpus,
        t: Duration,
        now: &dyn Fn() -> Duration,
    ) -> Result<Reading, GpuError> {
        self.sample_with(gpus, t, now)?;
        let energy_mj = self
            .channels
            .iter()
            .zip(&self.indices)
            .map(|(c, _)| match c.start_mj {
                Some(start) => c.last_mj.saturating_sub(start) as f64,
                None => c.marks.power_j * 1000.0,
            })
            .collect::<Vec<f64>>();
        Ok(Reading {
            at: t,
            energy_mj,
            marks: self.channels.iter().map(|c| c.marks).collect(),
        })
    }

    /// Energy per GPU since the start, mJ, at `t` (takes a sample first).
    pub fn read(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<Vec<f64>, GpuError> {
        Ok(self.reading(gpus, t)?.energy_mj)
    }

    /// Energy of all the GPUs since the start, mJ, at `t`.
    pub fn total_mj(&mut self, gpus: &dyn Gpus, t: Duration) -> Result<u64, GpuError> {
        Ok(self.read(gpus, t)?.iter().sum::<f64>().round() as u64)
    }

    /// The energy between two readings, with its bound (see [`bound`]).
    pub fn measurement(&self, begin: &Reading, end: &Reading) -> Measurement {
        let time_s = end.at.saturating_sub(begin.at).as_secs_f64();
        let sources = self.sources();
        let mut energy_j = Vec::with_capacity(self.channels.len());
        let mut uncertainty_j = Vec::with_capacity(self.channels.len());
        let mut longest_period = 0.0f64;
        for (k, c) in self.channels.iter().enumerate() {
            let (e0, e1) = (
                begin.energy_mj.get(k).copied().unwrap_or(0.0),
                end.energy_mj.get(k).copied().unwrap_or(0.0),
            );
            let (m0, m1) = (
                begin.marks.get(k).copied().unwrap_or_default(),
                end.marks.get(k).copied().unwrap_or_default(),
            );
            let raw = ((e1 - e0) / 1000.0).max(0.0);
            let counted = match (sources[k], m0.since_update, m1.since_update) {
                (EnergySource::Counter, Some((s0, _)), Some((s1, _))) => (raw + s1 - s0).max(0.0),
                _ => raw,
            };
            // The power near the edges: what the counter moved by counts too.
            let u = bound(&c.behaviour, sources[k], time_s, raw.max(counted), &m0, &m1);
            let (e, drifting) = match sources[k] {
                EnergySource::Counter => {
                    between_counter_and_power(counted, drift(&c.behaviour, &m1))
                }
                EnergySource::Sampled => (counted, 0.0),
            };
            energy_j.push(e);
            uncertainty_j.push(u + drifting);
            longest_period = longest_period.max(c.behaviour.update_period_s);
        }
        let total_j = energy_j.iter().sum();
        let total_uncertainty_j = uncertainty_j.iter().sum();
        let warning = (time_s < SHORT_WINDOW_PERIODS * longest_period).then(|| {
            format!(
                "window of {:.0} ms is shorter than {SHORT_WINDOW_PERIODS} energy counter updates ({:.0} ms each): its energy is uncertain",
                time_s * 1000.0,
                longest_period * 1000.0
            )
        });
        Measurement {
            time_s,
            gpus: self.indices.clone(),
            energy_j,
            uncertainty_j,
            sources,
            total_j,
            total_uncertainty_j,
            warning,
        }
    }
}

/// The energy since a counter last moved, between `lo` and `hi` (s), from the
/// power samples `recent` (`(time s, integrated power J, W)`, oldest first, the
/// last one now): the integrated power since the middle of the two, and how far
/// off that may be: the unknown half of `[lo, hi]` at the highest power around
/// it, what a sample-to-sample move of power may hide over the time since `lo`
/// (the whole move over each sampled stretch), and half of the counter's
/// quantum `quantum_j` (its floor at this edge). `None` where the samples do not
/// reach back to `lo`.
fn since_update(
    recent: &std::collections::VecDeque<(f64, f64, f64)>,
    lo: f64,
    hi: f64,
    quantum_j: f64,
) -> Option<(f64, f64)> {
    let &(now, now_j, now_w) = recent.back()?;
    if recent.front()?.0 > lo {
        return None;
    }
    let at = |x: f64| -> f64 {
        if x >= now {
            return now_j + now_w * (x - now);
        }
        let k = recent.partition_point(|s| s.0 <= x).saturating_sub(1);
        let (t0, j0, w0) = recent[k];
        let (t1, _, w1) = recent[(k + 1).min(recent.len() - 1)];
        let wx = if t1 > t0 {
            w0 + (w1 - w0) * (x - t0) / (t1 - t0)
        } else {
            w0
        };
        j0 + (w0 + wx) / 2.0 * (x - t0)
    };
    let since_j = now_j - at((lo + hi) / 2.0);
    let (mut top_w, mut moved_j) = (now_w, 0.0);
    for (a, b) in recent.iter().zip(recent.iter().skip(1)) {
        let overlap = b.0.min(now) - a.0.max(lo);
        if overlap > 0.0 {
            moved_j += overlap * (b.2 - a.2).abs();
        }
        if b.0 >= lo && a.0 <= hi {
            top_w = top_w.max(a.2).max(b.2);
        }
    }
    Some((since_j, top_w * (hi - lo) / 2.0 + moved_j + quantum_j / 2.0))
}

/// The half-width of one GPU's energy `energy_j` over a window of `time_s`
/// between the samples `begin` and `end`, J.
///
/// - A counter is read late by up to one update period at each edge, and floors
///   to its quantum: one quantum plus one period at the higher edge power (or the
///   window's mean power). Where a coarse counter's phase is known at both
///   edges ([`Marks::since_update`]), the energy since it last moved is added at
///   each edge, and each edge costs what that interpolation may miss instead
///   (with, at the first edge, what a part-time sensor may have missed since
///   the counter last moved, [`Marks::lead_j`]); a window shorter than
///   [`SHORT_WINDOW_PERIODS`] updates keeps the whole period if that is more.
/// - A coarse counter (or sampled power) misses how power moved between samples:
///   twice the root of the summed squared moves (as independent errors).
/// - Sampled power averaged over a window spreads each edge by half of it.
pub fn bound(
    b: &Behaviour,
    source: EnergySource,
    time_s: f64,
    energy_j: f64,
    begin: &Marks,
    end: &Marks,
) -> f64 {
    let mean_w = if time_s > 0.0 { energy_j / time_s } else { 0.0 };
    let edge_w = begin.edge_w.max(end.edge_w).max(mean_w);
    let moved = (end.variation_j2 - begin.variation_j2).max(0.0).sqrt();
    match source {
        EnergySource::Counter => {
            let whole = b.quantum_mj / 1000.0 + b.update_period_s * edge_w;
            let edges = match (begin.since_update, end.since_update) {
                // A window under a few updates long keeps the whole period too:
                // a part-time sensor's instantaneous field may be up to a
                // period old, and the interpolation rests on it.
                (Some((_, e0)), Some((_, e1))) => {
                    let interpolated = e0 + begin.lead_j + e1;
                    if time_s < SHORT_WINDOW_PERIODS * b.update_period_s {
                        interpolated.max(whole)
                    } else {
                        interpolated
                    }
                }
                _ => whole,
            };
            edges + if b.coarse() { PART_TIME * moved } else { 0.0 }
        }
        EnergySource::Sampled => {
            let window = if b.instant_field {
                0.0
            } else {
                b.average_window_s
            };
            // Power reads in whole milliwatts, and each edge's sample is taken
            // within a millisecond of its time stamp.
            2.0 * moved + window / 2.0 * edge_w + 0.001 * time_s + 2.0 * TIMING_S * edge_w
        }
    }
}

/// How the counter drifts from the sampled power, judged over the whole time
/// since the start (since its phase was known, where it is: the counter then
/// read with the energy since it last moved): the sampled energy per counted
/// joule and the noise (what the samples and the counter's own edges explain)
/// relative to the sampled energy where they disagree beyond it; where they
/// agree within it, `None`, or, with the counter's phase known, the ratio with
/// no noise. Only
/// coarse counters are sampled often enough to tell; fine ones are taken as
/// true.
pub fn drift(b: &Behaviour, last: &Marks) -> Option<(f64, f64)> {
    let window = if b.instant_field {
        0.0
    } else {
        b.average_window_s
    };
    let (power_j, counter_j, noise, known) = match (last.base, last.since_update) {
        (Some(base), Some((since_j, error_j))) => (
            last.power_j - base.power_j,
            last.counter_j + since_j - base.counter_j,
            (last.variation_j2 - base.variation_j2).max(0.0).sqrt()
                + base.error_j
                + error_j
                + window * last.edge_w,
            true,
        ),
        _ => (
            last.power_j,
            last.counter_j,
            last.variation_j2.sqrt()
                + b.quantum_mj / 1000.0
                + b.update_period_s.max(window) * last.edge_w,
            false,
        ),
    };
    if !b.coarse() || power_j <= 0.0 || counter_j <= 0.0 {
        return None;
    }
    if (counter_j - power_j).abs() > noise {
        Some((power_j / counter_j, noise / power_j))
    } else {
        // Within the noise, but the counter's edges known: the two may still
        // differ by as much as they do, so the figure goes between them all the
        // same (the noise then not added).
        known.then(|| (power_j / counter_j, 0.0))
    }
}

/// Energy `energy_j` of a GPU whose counter drifts (see [`drift`]), re-centred
/// between what the counter and the sampled power say, and the half-width that
/// covers both: `(energy, extra half-width)`.
pub fn between_counter_and_power(energy_j: f64, drift: Option<(f64, f64)>) -> (f64, f64) {
    match drift {
        None => (energy_j, 0.0),
        Some((ratio, noise)) => (
            energy_j * (1.0 + ratio) / 2.0,
            energy_j * ((1.0 - ratio).abs() / 2.0 + noise),
        ),
    }
}

/// The energy and time of a set of GPUs since a start: an [`EnergyMeter`] with its
/// own clock, which takes the power samples its bounds need (GPUs without an
/// energy counter, or with a coarse one) when [`Stopwatch::tick`] finds one due.
/// What `measure` and `run` measure a command with; also the entry point for a
/// library user (open the GPUs with [`crate::nvml::gpu::NvmlGpus::open`], pick
/// them with [`crate::nvml::selection::select_on_host`], start a stopwatch, take
/// [`Stopwatch::reading`]s and ask for the [`Stopwatch::measurement`] between two).
#[derive(Clone, Debug)]
pub struct Stopwatch {
    meter: EnergyMeter,
    start: Instant,
    power_interval: Duration,
    next_power: Instant,
}

impl Stopwatch {
    /// Starts measuring `indices` now; GPUs without an energy counter, or with a
    /// coarse one, are sampled every `power_interval` (see [`power_interval`]).
    pub fn start(
        gpus: &dyn Gpus,
        indices: &[u32],
        power_interval: Duration,
    ) -> Result<Stopwatch, GpuError> {
        let behaviours = learn::learned(gpus, indices)?;
        Stopwatch::start_with(gpus, indices, &behaviours, power_interval)
    }

    /// [`Stopwatch::start`] with the GPUs' behaviours given (a GPU without a
    /// counter takes `power_interval` as its update period).
    pub fn start_with(
        gpus: &dyn Gpus,
        indices: &[u32],
        behaviours: &[Behaviour],
        power_interval: Duration,
    ) -> Result<Stopwatch, GpuError> {
        let start = Instant::now();
        let mut meter = EnergyMeter::start(gpus, indices, behaviours, Duration::ZERO)?;
        meter.set_sample_period(power_interval);
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

    /// Whether power is sampled (see [`EnergyMeter::sampling`]).
    pub fn sampling(&self) -> bool {
        self.meter.sampling()
    }

    /// Per GPU, how it is measured.
    pub fn sources(&self) -> Vec<EnergySource> {
        self.meter.sources()
    }

    /// Per GPU, its behaviour.
    pub fn behaviours(&self) -> Vec<Behaviour> {
        self.meter.behaviours()
    }

    /// Takes a power sample of every GPU now (around a limit change).
    pub fn sample(&mut self, gpus: &dyn Gpus) -> Result<(), GpuError> {
        let start = self.start;
        self.meter
            .sample_with(gpus, start.elapsed(), &|| start.elapsed())
    }

    /// Takes a power sample of every GPU stamped `at` since the start.
    pub fn sample_at(&mut self, gpus: &dyn Gpus, at: Duration) -> Result<(), GpuError> {
        self.meter.sample(gpus, at)
    }

    /// A reading now.
    pub fn reading(&mut self, gpus: &dyn Gpus) -> Result<Reading, GpuError> {
        let start = self.start;
        self.meter
            .reading_with(gpus, start.elapsed(), &|| start.elapsed())
    }

    /// A reading stamped `at` since the start (a caller that took the time
    /// itself, or a test on a virtual clock).
    pub fn reading_at(&mut self, gpus: &dyn Gpus, at: Duration) -> Result<Reading, GpuError> {
        self.meter.reading(gpus, at)
    }

    /// The reading at the start (no energy yet): what a measurement since the
    /// start begins with.
    pub fn origin(&self) -> Reading {
        self.meter.origin()
    }

    /// The measurement from the start to now.
    pub fn since_start(&mut self, gpus: &dyn Gpus) -> Result<Measurement, GpuError> {
        let end = self.reading(gpus)?;
        Ok(self.measurement(&self.origin(), &end))
    }

    /// The energy between two readings of this stopwatch, with its bound.
    pub fn measurement(&self, begin: &Reading, end: &Reading) -> Measurement {
        self.meter.measurement(begin, end)
    }

    /// Energy per GPU since the start, mJ, now.
    pub fn read(&mut self, gpus: &dyn Gpus) -> Result<Vec<f64>, GpuError> {
        Ok(self.reading(gpus)?.energy_mj)
    }

    /// Energy of all the GPUs since the start, mJ, now.
    pub fn total_mj(&mut self, gpus: &dyn Gpus) -> Result<u64, GpuError> {
        Ok(self.read(gpus)?.iter().sum::<f64>().round() as u64)
    }

    /// Takes the power sample that is due, if one is; answers how long the
    /// caller may wait before the next one is (`longest` at most).
    pub fn tick(&mut self, gpus: &dyn Gpus, longest: Duration) -> Result<Duration, GpuError> {
        if !self.meter.sampling() {
            return Ok(longest);
        }
        let now = Instant::now();
        if now >= self.next_power {
            let start = self.start;
            self.meter
                .sample_with(gpus, now - start, &|| start.elapsed())?;
            let due = (self.next_power + self.power_interval).max(now) - self.start;
            self.next_power = self.start + self.meter.next_sample(due).max(now - self.start);
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

    const FINE: Behaviour = Behaviour::EXACT;

    #[test]
    fn a_measurement_carries_its_bound_and_flags_a_short_window() {
        let mut g = FakeGpus::new(2);
        g.gpus[0].power_mw = 200_000;
        g.gpus[1].power_mw = 200_000;
        let coarse = Behaviour {
            update_period_s: 0.1,
            ..FINE
        };
        let mut m = EnergyMeter::start(&g, &[0, 1], &[FINE, coarse], ms(0)).unwrap();
        assert!(m.sampling());
        let begin = m.reading(&g, ms(0)).unwrap();
        // 200 W for 10 s on both.
        g.gpus[0].energy_mj = Some(2_000_000);
        g.gpus[1].energy_mj = Some(2_000_000);
        let end = m.reading(&g, ms(10_000)).unwrap();
        let r = m.measurement(&begin, &end);
        assert_eq!(r.gpus, vec![0, 1]);
        assert_eq!(r.energy_j, vec![2000.0, 2000.0]);
        // One quantum and one update period at 200 W: 0.201 J and 20.001 J.
        assert!((r.uncertainty_j[0] - 0.201).abs() < 1e-9, "{r:?}");
        assert!((r.uncertainty_j[1] - 20.001).abs() < 1e-9, "{r:?}");
        assert!((r.total_uncertainty_j - 20.202).abs() < 1e-9, "{r:?}");
        assert_eq!(r.total_text(), "4000.000 ± 20.202 J");
        assert!(r.warning.is_none());
        // 250 ms is under three updates of the coarse counter.
        let short = m.reading(&g, ms(10_250)).unwrap();
        let w = m.measurement(&end, &short).warning.unwrap();
        assert!(w.contains("250 ms") && w.contains("100 ms"), "{w}");
    }

    #[test]
    fn counters_are_read_where_the_gpu_has_one() {
        let mut g = FakeGpus::new(2);
        g.gpus[0].energy_mj = Some(1000);
        g.gpus[1].energy_mj = Some(50);
        let mut m = EnergyMeter::start(&g, &[0, 1], &[FINE, FINE], ms(0)).unwrap();
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
        let mut m = EnergyMeter::start(&g, &[0, 1], &[FINE, FINE], ms(0)).unwrap();
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
        assert!(EnergyMeter::start(&g, &[3], &[], ms(0)).is_err());
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
        let mut c = Stopwatch::start_with(&g, &[1], &[FINE], ms(20)).unwrap();
        assert!(!c.sampling());
        assert_eq!(c.tick(&g, ms(300)).unwrap(), ms(300));
    }
}
