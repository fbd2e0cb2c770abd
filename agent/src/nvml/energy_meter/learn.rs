//! Learning how each GPU reports energy, once per process, cheaply and changing
//! no setting: the counter is polled every millisecond until it moved a few
//! times (at most [`PROBE_LIMIT`]), which gives its update period (the median
//! time between moves) and its quantum (the greatest common divisor of its
//! moves, where they differ; 1 mJ where a steady load makes them all the same);
//! the power fields are asked for once. The averaging window of
//! `nvmlDeviceGetPowerUsage` cannot be seen without the power changing, so it is
//! taken as NVML documents it, 1 s where the GPU offers the averaged field (Ampere
//! and newer), instantaneous where it does not, until the meter learns it from
//! its power samples (see [`super::window`]). The probe also gives the period as
//! an interval (first to last move), from which the meter learns the counter's
//! phase (see [`super::phase`]).
//!
//! The probe runs on a [`Clock`], so tests drive it in virtual time.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Behaviour;
use crate::nvml::gpu::{GpuError, Gpus};

/// The longest a probe polls.
pub const PROBE_LIMIT: Duration = Duration::from_millis(350);
/// How often a probe polls.
pub const POLL: Duration = Duration::from_millis(1);
/// Moves of the counter a probe waits for.
const MOVES: usize = 4;

/// Time for a probe: the real one, or a test's virtual one.
pub trait Clock {
    /// Time since some origin.
    fn now(&self) -> Duration;
    /// Lets `d` pass.
    fn sleep(&mut self, d: Duration);
}

/// The real clock.
pub struct RealClock(Instant);

impl RealClock {
    /// A clock from now.
    pub fn new() -> RealClock {
        RealClock(Instant::now())
    }
}

impl Default for RealClock {
    fn default() -> Self {
        RealClock::new()
    }
}

impl Clock for RealClock {
    fn now(&self) -> Duration {
        self.0.elapsed()
    }
    fn sleep(&mut self, d: Duration) {
        std::thread::sleep(d);
    }
}

/// What a probe saw of one counter.
#[derive(Default)]
struct Moves {
    last_mj: Option<u64>,
    at: Vec<f64>,
    steps_mj: Vec<u64>,
}

/// The period between the first and the last move seen, as an interval: each
/// move was seen up to `poll_s` (the longest gap between polls) late, and the
/// moves are a whole number of periods apart (the nearest to `period_s`).
fn period_range(at: &[f64], period_s: f64, poll_s: f64) -> Option<(f64, f64)> {
    let (first, last) = (at.first()?, at.last()?);
    let n = ((last - first) / period_s).round();
    (n >= 1.0).then(|| ((last - first - poll_s) / n, (last - first + poll_s) / n))
}

/// The greatest common divisor.
pub(crate) fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

impl Moves {
    fn done(&self) -> bool {
        self.last_mj.is_none() || self.at.len() >= MOVES
    }

    /// The update period and quantum seen (a counter seen moving less than
    /// twice: the whole probe, conservatively).
    fn behaviour(&self, waited_s: f64) -> (f64, f64) {
        let mut gaps: Vec<f64> = self.at.windows(2).map(|w| w[1] - w[0]).collect();
        gaps.sort_by(f64::total_cmp);
        let period = match gaps.get(gaps.len() / 2) {
            // Polling sees a move up to one poll late.
            Some(&median) => median + POLL.as_secs_f64(),
            None => waited_s.max(PROBE_LIMIT.as_secs_f64()),
        };
        // Moves that all are the same hide the quantum (a steady load): NVML's
        // unit, 1 mJ, is assumed (a counter that moves a quantum at a time is
        // then covered by its update period).
        let quantum = match self.steps_mj.split_first() {
            Some((first, rest)) if rest.iter().any(|s| s != first) => {
                self.steps_mj.iter().fold(0, |g, &s| gcd(g, s)).max(1)
            }
            _ => 1,
        };
        (period, quantum as f64)
    }
}

/// Probes the GPUs `indices` together on `clock`: their behaviours, in order.
/// GPUs without a counter answer an update period of 0 (the stopwatch samples
/// them at its own interval).
pub fn probe(
    gpus: &dyn Gpus,
    indices: &[u32],
    clock: &mut dyn Clock,
) -> Result<Vec<Behaviour>, GpuError> {
    let mut moves = Vec::with_capacity(indices.len());
    for &i in indices {
        moves.push(Moves {
            last_mj: match gpus.total_energy(i) {
                Ok(mj) => Some(mj),
                Err(GpuError::NotSupported { .. }) => None,
                Err(e) => return Err(e),
            },
            ..Moves::default()
        });
    }
    let start = clock.now();
    let (mut polled, mut poll_s) = (0.0f64, POLL.as_secs_f64());
    while !moves.iter().all(Moves::done) && clock.now() - start < PROBE_LIMIT {
        clock.sleep(POLL);
        let t = (clock.now() - start).as_secs_f64();
        poll_s = poll_s.max(t - polled);
        polled = t;
        for (m, &i) in moves.iter_mut().zip(indices) {
            let Some(last) = m.last_mj.filter(|_| !m.done()) else {
                continue;
            };
            let now = gpus.total_energy(i)?;
            if now != last {
                m.at.push(t);
                m.steps_mj.push(now.abs_diff(last));
                m.last_mj = Some(now);
            }
        }
    }
    let waited = (clock.now() - start).as_secs_f64();
    indices
        .iter()
        .zip(&moves)
        .map(|(&i, m)| {
            let fields = gpus.power_fields(i)?;
            let (update_period_s, quantum_mj) = match m.last_mj {
                Some(_) => m.behaviour(waited),
                None => (0.0, 1.0),
            };
            let period_range_s = m
                .last_mj
                .and_then(|_| period_range(&m.at, update_period_s, poll_s));
            Ok(Behaviour {
                update_period_s,
                period_range_s,
                quantum_mj,
                instant_field: fields.instant_mw.is_some(),
                average_window_s: if fields.average_mw.is_some() {
                    1.0
                } else {
                    0.0
                },
                average_window_learned: false,
            })
        })
        .collect()
}

/// The behaviours of `indices`, probed once per process (by UUID) on the real
/// clock: GPUs not seen yet are probed together, the others answered at once.
pub fn learned(gpus: &dyn Gpus, indices: &[u32]) -> Result<Vec<Behaviour>, GpuError> {
    static LEARNED: Mutex<Vec<(String, Behaviour)>> = Mutex::new(Vec::new());
    let mut known = match LEARNED.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let uuids = indices
        .iter()
        .map(|&i| gpus.uuid(i))
        .collect::<Result<Vec<_>, _>>()?;
    let find = |known: &[(String, Behaviour)], uuid: &str| {
        known.iter().find(|(u, _)| u == uuid).map(|(_, b)| *b)
    };
    let new: Vec<u32> = indices
        .iter()
        .zip(&uuids)
        .filter(|(_, u)| find(&known, u).is_none())
        .map(|(&i, _)| i)
        .collect();
    if !new.is_empty() {
        let probed = probe(gpus, &new, &mut RealClock::new())?;
        for (i, b) in new.iter().zip(probed) {
            let k = indices.iter().position(|x| x == i).unwrap_or(0);
            known.push((uuids[k].clone(), b));
        }
    }
    Ok(uuids
        .iter()
        .map(|u| find(&known, u).unwrap_or(Behaviour::ASSUMED))
        .collect())
}
