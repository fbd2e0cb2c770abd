//! The power limit optimizer: a pure state machine (JIT profiling).
//!
//! During the first epoch of a run, the host (the GPU agent) feeds the optimizer the
//! training script's events (`step_begin`, `step_end`, `epoch_end`) together with a
//! [`Reading`] of its clock (ms) and the GPUs' summed energy counter (mJ) taken at
//! that event. The optimizer answers with [`Action`]s: set a power limit, open,
//! close or cancel a measurement window, and finally the optimal limit. It never
//! touches a GPU or a clock itself.
//!
//! The sequence follows Zeus's global power limit optimizer:
//!
//! ```text
//! Ready  --(wait_steps + 1)'th step_begin-->  Warmup (limit L set)
//! Warmup --warmup_steps step_begins------->   Profiling (window opened)
//! Profiling --profile_steps step_begins--->   Warmup (next limit, L - pl_step)
//!                                          or Done   (optimal limit set)
//! Warmup | Profiling --epoch_end---------->   Ready (same L, 1 step; max limit set; window cancelled)
//! Profiling --epoch_end, >= profile_steps -->  Ready (next limit) or Done (window kept, scaled)
//! ```
//!
//! How long a window runs, when a host's meter bounds its energy, is the rule of
//! [`window`]: the host measures the window before it closes and asks
//! [`PowerOptimizer::judge_window`].
//!
//! Limits go from the maximum allowed down in `pl_step` watts, never below the
//! minimum. The selected limit minimises the chosen [`Selector`]'s objective over the
//! profiled limits (ties go to the earlier, that is higher, limit). With
//! [`PowerSettings::stop_after_rises`] (the wattwise agent's setting) profiling is
//! `Done` as soon as that many limits in a row cost more than the cheapest so far,
//! beyond the energy bounds the host's meter measured ([`PowerOptimizer::measure_window`],
//! [`profile_settled`]); without it (Zeus's) every limit is profiled.
//!
//! The optimizer is the one owner of the measured windows' energies and bounds
//! ([`PowerOptimizer::profiled`]): the host measures a window just before the
//! event that closes it and hands the measurement over; the window's close
//! records it, and the early end, the judgement of later windows, the profile's
//! note ([`uncertain_limits`]) and the posted profile
//! ([`PowerOptimizer::bounded_profile`]) all read that one record.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::cost::zeus_cost;
use crate::field_error::FieldError;
use crate::policy::Policy;
use crate::wire::{Phase, PowerMeasurement, PowerProfile};

mod measured;
pub mod window;
pub use measured::{ProfiledEnergy, ProfiledWindow, Reading};
use window::{steps_needed, StepEnd};
pub use window::{Uncertain, WindowCall, WindowCut, WindowEnergy, MAX_WINDOW_FACTOR, WINDOW_BOUND};

/// Why the optimizer cannot be built or cannot select.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum PowerError {
    /// A setting breaks its rule.
    #[error(transparent)]
    InvalidSetting(#[from] FieldError),
    /// There is no measurement to select from.
    #[error("measurements: need at least one power limit measurement to select from")]
    NoMeasurements,
}

fn invalid(field: &'static str, rule: impl Into<String>) -> PowerError {
    PowerError::InvalidSetting(FieldError::new(field, rule))
}

/// How the optimal power limit is chosen from the profiled limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Selector {
    /// Least energy.
    Energy,
    /// Least time.
    Time,
    /// Least Zeus cost `eta * energy + (1 - eta) * max_power * time`.
    ZeusCost {
        /// Weight of energy against time, in [0, 1].
        eta: f64,
        /// Maximum power of the job's GPUs together, watts; `None`: the highest
        /// profiled limit times the number of GPUs (as Zeus does).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_power: Option<f64>,
    },
    /// The lowest limit whose time is at most `factor` times the time at the
    /// highest profiled limit.
    MaxSlowdown {
        /// Allowed slowdown, >= 1.
        factor: f64,
    },
}

impl Default for Selector {
    /// Zeus's default: the Zeus cost with eta = 0.5.
    fn default() -> Self {
        Selector::ZeusCost {
            eta: 0.5,
            max_power: None,
        }
    }
}

impl Selector {
    /// Checks the selector's parameters; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), PowerError> {
        match *self {
            Selector::Energy | Selector::Time => Ok(()),
            Selector::ZeusCost { eta, max_power } => {
                if !(0.0..=1.0).contains(&eta) {
                    return Err(invalid("selector.eta", "must be between 0 and 1"));
                }
                match max_power {
                    Some(p) if !(p.is_finite() && p > 0.0) => {
                        Err(invalid("selector.max_power", "must be a finite number > 0"))
                    }
                    _ => Ok(()),
                }
            }
            Selector::MaxSlowdown { factor } => {
                if factor.is_finite() && factor >= 1.0 {
                    Ok(())
                } else {
                    Err(invalid("selector.factor", "must be a finite number >= 1"))
                }
            }
        }
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Energy => write!(f, "energy"),
            Selector::Time => write!(f, "time"),
            Selector::ZeusCost {
                eta,
                max_power: None,
            } => write!(f, "zeus-cost:{eta}"),
            Selector::ZeusCost {
                eta,
                max_power: Some(p),
            } => write!(f, "zeus-cost:{eta}:{p}"),
            Selector::MaxSlowdown { factor } => write!(f, "max-slowdown:{factor}"),
        }
    }
}

impl FromStr for Selector {
    type Err = PowerError;

    /// Parses `energy`, `time`, `zeus-cost:ETA[:MAX_POWER]` or `max-slowdown:FACTOR`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.trim().split(':');
        let kind = parts.next().unwrap_or("").replace('_', "-");
        let num = |field: &'static str, v: Option<&str>| -> Result<f64, PowerError> {
            v.ok_or_else(|| invalid(field, "is required"))?
                .trim()
                .parse::<f64>()
                .map_err(|_| invalid(field, "must be a number"))
        };
        let sel = match kind.as_str() {
            "energy" => Selector::Energy,
            "time" => Selector::Time,
            "zeus-cost" => {
                let eta = num("selector.eta", parts.next())?;
                let max_power = match parts.next() {
                    Some(v) => Some(num("selector.max_power", Some(v))?),
                    None => None,
                };
                Selector::ZeusCost { eta, max_power }
            }
            "max-slowdown" => Selector::MaxSlowdown {
                factor: num("selector.factor", parts.next())?,
            },
            _ => {
                return Err(invalid(
                    "selector",
                    "must be energy, time, zeus-cost:ETA[:MAX_POWER] or max-slowdown:FACTOR",
                ))
            }
        };
        if parts.next().is_some() {
            return Err(invalid("selector", "has too many ':' parts"));
        }
        sel.validate()?;
        Ok(sel)
    }
}

/// The optimizer's knobs (Zeus's defaults: 1 wait step, 10 warmup steps, 40 profile
/// steps, 25 W between limits, Zeus cost with eta = 0.5).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PowerSettings {
    /// Steps to let pass before profiling starts.
    pub wait_steps: u32,
    /// Steps run under each limit before its measurement window opens.
    pub warmup_steps: u32,
    /// Steps measured under each limit (> 0).
    pub profile_steps: u32,
    /// Watts between two profiled limits (> 0).
    pub pl_step: u32,
    /// How the optimal limit is chosen.
    pub selector: Selector,
    /// Stop profiling once this many limits in a row (>= 1) cost more than the
    /// cheapest so far, beyond their measured bounds ([`profile_settled`]); the
    /// rest of the epoch runs at the limit selected from those profiled. `None`
    /// (the default, Zeus's): every limit is profiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_after_rises: Option<u32>,
}

impl Default for PowerSettings {
    fn default() -> Self {
        PowerSettings {
            wait_steps: 1,
            warmup_steps: 10,
            profile_steps: 40,
            pl_step: 25,
            selector: Selector::default(),
            stop_after_rises: None,
        }
    }
}

/// How many limits in a row that cost more than the cheapest so far end the
/// wattwise agent's profile ([`PowerSettings::stop_after_rises`]; the simulator
/// models a wattwise job's profile with the same rule). Measured on the Zeus
/// traces (BENCHMARKS.md, issue 27): 1 stops in the traces' noise (shared /
/// oracle 1.043 at eta 0.8, without bounds), 3 profiles longer for no gain.
pub const WATTWISE_STOP_AFTER_RISES: u32 = 2;

/// Which of the settings [`PowerSettings::for_job`] may choose a job's file set
/// itself.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SetInFile {
    /// `selector`.
    pub selector: bool,
    /// `stop_after_rises`.
    pub stop_after_rises: bool,
}

impl PowerSettings {
    /// The wattwise agent's settings for a job of weight `eta`: Zeus's, with the
    /// Zeus cost at `eta` and the profile ended after
    /// [`WATTWISE_STOP_AFTER_RISES`] costlier limits in a row.
    pub fn wattwise(eta: f64) -> PowerSettings {
        PowerSettings {
            selector: Selector::ZeusCost {
                eta,
                max_power: None,
            },
            stop_after_rises: Some(WATTWISE_STOP_AFTER_RISES),
            ..PowerSettings::default()
        }
    }

    /// A job's settings from the `given` ones (its file's `[power]` table, the
    /// defaults without one): what the file left unset (`set` says what it set)
    /// follows the job's `policy` and `eta`: the Zeus cost at `eta`, and for
    /// wattwise's policy the profile ended after [`WATTWISE_STOP_AFTER_RISES`]
    /// costlier limits in a row (Zeus's profiles every limit).
    pub fn for_job(mut given: PowerSettings, set: SetInFile, policy: Policy, eta: f64) -> Self {
        if !set.stop_after_rises && policy == Policy::Wattwise {
            given.stop_after_rises = Some(WATTWISE_STOP_AFTER_RISES);
        }
        if !set.selector {
            given.selector = Selector::ZeusCost {
                eta,
                max_power: None,
            };
        }
        given
    }

    /// Checks every setting; the error names the field and the rule.
    pub fn validate(&self) -> Result<(), PowerError> {
        if self.profile_steps == 0 {
            return Err(invalid("profile_steps", "must be > 0"));
        }
        if self.pl_step == 0 {
            return Err(invalid("pl_step", "must be > 0"));
        }
        if self.stop_after_rises == Some(0) {
            return Err(invalid("stop_after_rises", "must be >= 1 (or absent)"));
        }
        self.selector.validate()
    }
}

/// The power limits the GPUs accept, milliwatts (NVML's limit constraints).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LimitConstraints {
    /// Lowest limit, mW.
    pub min_mw: u32,
    /// Highest limit, mW.
    pub max_mw: u32,
}

impl LimitConstraints {
    /// The limits to profile, mW: from the maximum down in `pl_step_w` watts, never
    /// below the minimum.
    pub fn limits(&self, pl_step_w: u32) -> Result<Vec<u32>, PowerError> {
        if self.max_mw == 0 {
            return Err(invalid("max_mw", "must be > 0"));
        }
        if self.min_mw > self.max_mw {
            return Err(invalid("min_mw", "must be <= max_mw"));
        }
        if pl_step_w == 0 {
            return Err(invalid("pl_step", "must be > 0"));
        }
        let step = u64::from(pl_step_w) * 1000;
        let mut out = Vec::new();
        let mut limit = u64::from(self.max_mw);
        while limit >= u64::from(self.min_mw) && limit > 0 {
            // Bounded: at most 64 limits, the most a profile holds.
            if out.len() == crate::wire::MAX_PROFILE_POINTS {
                break;
            }
            out.push(limit as u32);
            if limit < step {
                break;
            }
            limit -= step;
        }
        Ok(out)
    }
}

/// What one power limit cost over its measurement window.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerLimitMeasurement {
    /// The power limit, watts.
    pub power_limit: u32,
    /// Energy of all the job's GPUs over the window, joules.
    pub energy: f64,
    /// Length of the window, seconds.
    pub time: f64,
    /// Training steps in the window.
    pub steps: u32,
}

impl PowerLimitMeasurement {
    /// Converts to a profile point for `batch_size` samples per step over `gpu_count`
    /// GPUs: average power per GPU (W) and throughput (samples/s).
    pub fn to_profile_point(&self, batch_size: u32, gpu_count: u32) -> PowerMeasurement {
        let gpus = f64::from(gpu_count.max(1));
        let (average_power, throughput) = if self.time > 0.0 {
            (
                self.energy / self.time / gpus,
                f64::from(self.steps) * f64::from(batch_size) / self.time,
            )
        } else {
            (0.0, 0.0)
        };
        PowerMeasurement {
            power_limit: self.power_limit,
            average_power,
            throughput,
            energy_uncertainty_j: None,
        }
    }

    /// The inverse of [`Self::to_profile_point`] for `steps` steps; `None` when the
    /// point has no throughput (it cannot be turned into a time).
    pub fn from_profile_point(
        point: &PowerMeasurement,
        batch_size: u32,
        gpu_count: u32,
        steps: u32,
    ) -> Option<PowerLimitMeasurement> {
        if !(point.throughput.is_finite() && point.throughput > 0.0) {
            return None;
        }
        let time = f64::from(steps) * f64::from(batch_size) / point.throughput;
        Some(PowerLimitMeasurement {
            power_limit: point.power_limit,
            energy: point.average_power * f64::from(gpu_count.max(1)) * time,
            time,
            steps,
        })
    }
}

/// The limits the choice of `chosen_w` is uncertain among: `chosen_w` first, then
/// every other profiled limit whose energy lies within their bounds of it (the
/// last window of each limit counts); empty when none does or `chosen_w` was not
/// profiled.
pub fn uncertain_limits(chosen_w: u32, profiled: &[ProfiledEnergy]) -> Vec<u32> {
    let last = |w: u32| profiled.iter().rev().find(|p| p.limit_w == w);
    let Some(a) = last(chosen_w) else {
        return Vec::new();
    };
    let mut out = vec![chosen_w];
    for p in profiled {
        if !out.contains(&p.limit_w)
            && last(p.limit_w).is_some_and(|b| b.overlaps(a.energy_j, a.uncertainty_j))
        {
            out.push(p.limit_w);
        }
    }
    if out.len() < 2 {
        out.clear();
    }
    out
}

/// Picks the optimal power limit (watts) from `measurements` for a job on
/// `gpu_count` GPUs. Ties go to the earlier measurement.
pub fn select(
    selector: &Selector,
    measurements: &[PowerLimitMeasurement],
    gpu_count: u32,
) -> Result<u32, PowerError> {
    selector.validate()?;
    let first = measurements.first().ok_or(PowerError::NoMeasurements)?;
    let max_limit = max_limit(measurements, first);
    Ok(match objective(selector, max_limit, gpu_count) {
        Some(key) => {
            let mut best = first;
            for m in &measurements[1..] {
                if key(m) < key(best) {
                    best = m;
                }
            }
            best.power_limit
        }
        None => {
            let factor = slowdown_factor(selector);
            let reference = slowdown_reference(measurements, max_limit, first);
            measurements
                .iter()
                .filter(|m| m.time <= factor * reference)
                .map(|m| m.power_limit)
                .min()
                .unwrap_or(max_limit)
        }
    })
}

/// The highest limit of `measurements` (`first`'s when they hold no other).
fn max_limit(measurements: &[PowerLimitMeasurement], first: &PowerLimitMeasurement) -> u32 {
    measurements
        .iter()
        .map(|m| m.power_limit)
        .max()
        .unwrap_or(first.power_limit)
}

/// The time a [`Selector::MaxSlowdown`] compares with: the highest limit's.
fn slowdown_reference(
    measurements: &[PowerLimitMeasurement],
    max_limit: u32,
    first: &PowerLimitMeasurement,
) -> f64 {
    measurements
        .iter()
        .find(|m| m.power_limit == max_limit)
        .map(|m| m.time)
        .unwrap_or(first.time)
}

fn slowdown_factor(selector: &Selector) -> f64 {
    match *selector {
        Selector::MaxSlowdown { factor } => factor,
        _ => f64::INFINITY,
    }
}

/// What a selector minimises over the measurements (the highest measured limit
/// `max_limit`, W), and the weight of energy in it; `None` for
/// [`Selector::MaxSlowdown`], which minimises no quantity.
#[allow(clippy::type_complexity)]
fn objective(
    selector: &Selector,
    max_limit: u32,
    gpu_count: u32,
) -> Option<Box<dyn Fn(&PowerLimitMeasurement) -> f64>> {
    match *selector {
        Selector::Energy => Some(Box::new(|m| m.energy)),
        Selector::Time => Some(Box::new(|m| m.time)),
        Selector::ZeusCost { eta, max_power } => {
            let max_power = max_power.unwrap_or(f64::from(max_limit) * f64::from(gpu_count.max(1)));
            Some(Box::new(move |m| {
                zeus_cost(m.energy, m.time, eta, max_power)
            }))
        }
        Selector::MaxSlowdown { .. } => None,
    }
}

/// The weight of energy in a selector's objective (how much of an energy bound
/// its comparison inherits).
fn energy_weight(selector: &Selector) -> f64 {
    match *selector {
        Selector::Energy => 1.0,
        Selector::ZeusCost { eta, .. } => eta,
        Selector::Time | Selector::MaxSlowdown { .. } => 0.0,
    }
}

/// Whether a profile may stop after `measured` (in profiling order: from the
/// highest limit down): its last `rises` limits each cost more than the cheapest
/// limit profiled before them, by more than both their energies' bounds allow
/// (`bound_j(limit_w)`: the half-width of a limit's measured energy, J over its
/// window, 0 where the host measured none), under the selector's objective
/// (for [`Selector::MaxSlowdown`]: each slower than the selector allows). A
/// limit that is cheaper, or within the bounds, starts the count over.
///
/// The cost of a limit is near-unimodal from the maximum down (time grows as the
/// limit drops), so the limits left would rarely be chosen; [`select`] then picks
/// among those profiled. `rises == 0` never stops.
pub fn profile_settled(
    selector: &Selector,
    rises: u32,
    measured: &[PowerLimitMeasurement],
    bound_j: &dyn Fn(u32) -> f64,
    gpu_count: u32,
) -> bool {
    let Some(first) = measured.first() else {
        return false;
    };
    if rises == 0 || selector.validate().is_err() {
        return false;
    }
    let max_limit = max_limit(measured, first);
    let mut risen = 0u32;
    match objective(selector, max_limit, gpu_count) {
        Some(key) => {
            let weight = energy_weight(selector);
            let mut best = first;
            for m in &measured[1..] {
                let (cost, least) = (key(m), key(best));
                if cost < least {
                    best = m;
                    risen = 0;
                } else if cost - least
                    > weight * (bound_j(m.power_limit) + bound_j(best.power_limit))
                {
                    risen += 1;
                } else {
                    risen = 0;
                }
            }
        }
        None => {
            let limit = slowdown_factor(selector) * slowdown_reference(measured, max_limit, first);
            for m in measured {
                risen = if m.time > limit { risen + 1 } else { 0 };
            }
        }
    }
    risen >= rises
}

/// Where the optimizer is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum PowerState {
    /// Waiting `steps` more step beginnings before warming up `next_limit_mw`.
    Ready {
        /// The limit to profile next, mW.
        next_limit_mw: u32,
        /// Step beginnings left to wait, >= 1.
        steps: u32,
    },
    /// Running under `limit_mw` for `steps` more step beginnings before measuring.
    Warmup {
        /// The limit being warmed up, mW.
        limit_mw: u32,
        /// Step beginnings left, >= 1.
        steps: u32,
    },
    /// Measuring `limit_mw` for `steps` more step beginnings.
    Profiling {
        /// The limit being measured, mW.
        limit_mw: u32,
        /// Step beginnings left, >= 1.
        steps: u32,
        /// The reading when the window opened.
        start: Reading,
    },
    /// Profiling is over; `optimal_mw` is set.
    Done {
        /// The selected limit, mW.
        optimal_mw: u32,
    },
}

/// What the host must do, in order.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Set every GPU of the job to this limit, mW.
    SetPowerLimit {
        /// The limit, mW.
        limit_mw: u32,
    },
    /// A measurement window opened for this limit.
    BeginWindow {
        /// The limit, mW.
        limit_mw: u32,
    },
    /// A measurement window closed with this result.
    EndWindow {
        /// The result.
        measurement: PowerLimitMeasurement,
    },
    /// The window of this limit was interrupted by an epoch end and discarded.
    CancelWindow {
        /// The limit, mW.
        limit_mw: u32,
    },
    /// Profiling is over; this limit was selected (a `SetPowerLimit` precedes it).
    Optimal {
        /// The limit, mW.
        limit_mw: u32,
    },
}

/// The power limit optimizer of one job run.
///
/// A stored optimizer is read back through the same checks [`PowerOptimizer::new`]
/// makes (valid settings, at least one GPU, at least one limit, highest first), so
/// no document, however edited, can make a later call panic.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
// The derived (de)serializers are inherent functions; the trait impls below add the checks.
#[serde(remote = "Self")]
pub struct PowerOptimizer {
    settings: PowerSettings,
    gpu_count: u32,
    limits_mw: Vec<u32>,
    state: PowerState,
    measurements: Vec<PowerLimitMeasurement>,
    current_mw: Option<u32>,
    /// Steps the open window was lengthened by (see
    /// [`PowerOptimizer::lengthen_window`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    lengthened_by: u32,
    /// The host's measurement of the open window as it stands (see
    /// [`PowerOptimizer::measure_window`]), recorded in `profiled` when it closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    open_measured: Option<WindowEnergy>,
    /// The closed windows the host measured, in profiling order (see
    /// [`PowerOptimizer::profiled`]). A document of before this field (its
    /// `open_bound_j` and `bounds_j`) reads as one whose windows were measured
    /// without a meter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    profiled: Vec<ProfiledWindow>,
    /// Step beginnings seen since the last epoch end.
    #[serde(default, skip_serializing_if = "is_zero")]
    epoch_steps: u32,
    /// Step beginnings of the last epoch that had any (0: none ended yet).
    #[serde(default, skip_serializing_if = "is_zero")]
    steps_per_epoch: u32,
    /// The open window's last step end, once it covers `profile_steps` steps:
    /// where an epoch end cuts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    window_end: Option<window::StepEnd>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

impl Serialize for PowerOptimizer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PowerOptimizer::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for PowerOptimizer {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let stored = PowerOptimizer::deserialize(deserializer)?;
        stored.check().map_err(serde::de::Error::custom)?;
        Ok(stored)
    }
}

impl PowerOptimizer {
    /// The checks [`PowerOptimizer::new`] makes, on a stored optimizer.
    fn check(&self) -> Result<(), PowerError> {
        self.settings.validate()?;
        if self.gpu_count == 0 {
            return Err(invalid("gpu_count", "must be > 0"));
        }
        if self.limits_mw.is_empty() || self.limits_mw.windows(2).any(|w| w[0] <= w[1]) {
            return Err(invalid(
                "limits_mw",
                "must hold at least one limit, strictly decreasing",
            ));
        }
        Ok(())
    }

    /// A fresh optimizer that will profile every limit. The returned actions set the
    /// maximum limit.
    pub fn new(
        settings: PowerSettings,
        constraints: LimitConstraints,
        gpu_count: u32,
    ) -> Result<(PowerOptimizer, Vec<Action>), PowerError> {
        settings.validate()?;
        if gpu_count == 0 {
            return Err(invalid("gpu_count", "must be > 0"));
        }
        let limits_mw = constraints.limits(settings.pl_step)?;
        let Some(&max_mw) = limits_mw.first() else {
            return Err(invalid("max_mw", "no power limit lies in [min_mw, max_mw]"));
        };
        let mut opt = PowerOptimizer {
            settings,
            gpu_count,
            state: PowerState::Ready {
                next_limit_mw: max_mw,
                steps: settings.wait_steps.saturating_add(1),
            },
            limits_mw,
            measurements: Vec::new(),
            current_mw: None,
            lengthened_by: 0,
            open_measured: None,
            profiled: Vec::new(),
            epoch_steps: 0,
            steps_per_epoch: 0,
            window_end: None,
        };
        let mut actions = Vec::new();
        opt.set(opt.max_mw(), &mut actions);
        Ok((opt, actions))
    }

    /// An optimizer that reuses earlier measurements: it starts `Done` and the
    /// returned actions set the selected limit (clamped into the constraints).
    pub fn with_measurements(
        settings: PowerSettings,
        constraints: LimitConstraints,
        gpu_count: u32,
        measurements: Vec<PowerLimitMeasurement>,
    ) -> Result<(PowerOptimizer, Vec<Action>), PowerError> {
        let (mut opt, _) = Self::new(settings, constraints, gpu_count)?;
        let watts = select(&settings.selector, &measurements, gpu_count)?;
        let optimal_mw = watts
            .saturating_mul(1000)
            .clamp(constraints.min_mw, constraints.max_mw);
        opt.measurements = measurements;
        opt.state = PowerState::Done { optimal_mw };
        // Nothing was set yet: the actions of `new` are not the host's.
        opt.current_mw = None;
        let mut actions = Vec::new();
        opt.set(optimal_mw, &mut actions);
        actions.push(Action::Optimal {
            limit_mw: optimal_mw,
        });
        Ok((opt, actions))
    }

    /// The settings.
    pub fn settings(&self) -> &PowerSettings {
        &self.settings
    }

    /// The current state.
    pub fn state(&self) -> &PowerState {
        &self.state
    }

    /// The limits profiled, mW, highest first.
    pub fn limits_mw(&self) -> &[u32] {
        &self.limits_mw
    }

    /// Measurements so far, in profiling order.
    pub fn measurements(&self) -> &[PowerLimitMeasurement] {
        &self.measurements
    }

    /// The limit the optimizer last asked for, mW.
    pub fn current_limit_mw(&self) -> Option<u32> {
        self.current_mw
    }

    /// The selected limit once done, mW.
    pub fn optimal_limit_mw(&self) -> Option<u32> {
        match self.state {
            PowerState::Done { optimal_mw } => Some(optimal_mw),
            _ => None,
        }
    }

    /// Whether profiling is over.
    pub fn is_done(&self) -> bool {
        matches!(self.state, PowerState::Done { .. })
    }

    /// The profile of the measured limits, for `batch_size` samples per step; `None`
    /// when nothing was measured.
    pub fn profile(&self, batch_size: u32, gpu_model: &str) -> Option<PowerProfile> {
        if self.measurements.is_empty() {
            return None;
        }
        Some(PowerProfile {
            batch_size,
            phase: Phase::Train,
            gpu_model: gpu_model.to_string(),
            measurements: self
                .measurements
                .iter()
                .map(|m| m.to_profile_point(batch_size, self.gpu_count))
                .collect(),
            uncertain: Vec::new(),
        })
    }

    /// The closed windows the host's meter measured ([`Self::measure_window`]),
    /// over all the job's GPUs, in profiling order; none for a window measured
    /// without a meter.
    pub fn profiled_windows(&self) -> &[ProfiledWindow] {
        &self.profiled
    }

    /// The measured windows' energies per step with their bounds, over all the
    /// job's GPUs, in profiling order ([`Self::profiled_windows`] per step).
    pub fn profiled(&self) -> Vec<ProfiledEnergy> {
        self.profiled.iter().map(ProfiledWindow::per_step).collect()
    }

    /// The last measured window of `limit_w`, if any.
    pub fn profiled_window(&self, limit_w: u32) -> Option<&ProfiledWindow> {
        self.profiled.iter().rev().find(|p| p.limit_w == limit_w)
    }

    /// The limits the choice of the selected limit is uncertain among, by the
    /// measured windows ([`uncertain_limits`]); empty before the selection.
    pub fn uncertain_limits(&self) -> Vec<u32> {
        match self.optimal_limit_mw() {
            Some(chosen_mw) => uncertain_limits(chosen_mw / 1000, &self.profiled()),
            None => Vec::new(),
        }
    }

    /// [`Self::profile`] with the bounds the host's meter measured
    /// ([`Self::profiled`]): each limit's bound per step per GPU (its last
    /// window's), and the note of [`uncertain_limits`] around the chosen limit
    /// once profiling is done.
    pub fn bounded_profile(&self, batch_size: u32, gpu_model: &str) -> Option<PowerProfile> {
        let mut profile = self.profile(batch_size, gpu_model)?;
        let gpus = f64::from(self.gpu_count.max(1));
        for m in &mut profile.measurements {
            m.energy_uncertainty_j = self
                .profiled_window(m.power_limit)
                .map(|p| p.per_step().uncertainty_j / gpus);
        }
        profile.uncertain = self.uncertain_limits();
        Some(profile)
    }

    fn max_mw(&self) -> u32 {
        // Never empty: `new` and the stored form's checks both refuse that.
        self.limits_mw.first().copied().unwrap_or_default()
    }

    fn set(&mut self, limit_mw: u32, actions: &mut Vec<Action>) {
        if self.current_mw != Some(limit_mw) {
            self.current_mw = Some(limit_mw);
            actions.push(Action::SetPowerLimit { limit_mw });
        }
    }

    /// Enters warmup for `limit_mw` at a step beginning (straight to profiling when
    /// there are no warmup steps).
    fn warm_up(&mut self, limit_mw: u32, at: Reading, actions: &mut Vec<Action>) {
        self.set(limit_mw, actions);
        if self.settings.warmup_steps == 0 {
            self.begin_window(limit_mw, at, actions);
        } else {
            self.state = PowerState::Warmup {
                limit_mw,
                steps: self.settings.warmup_steps,
            };
        }
    }

    /// Lengthens the open measurement window by `steps` step beginnings (a host
    /// whose energy reading is too coarse for the window as it is; the window's
    /// measurement is then scaled back to `profile_steps` steps, so windows of
    /// every limit compare). Answers whether a window was open.
    pub fn lengthen_window(&mut self, steps: u32) -> bool {
        match &mut self.state {
            PowerState::Profiling { steps: left, .. } if steps > 0 => {
                *left = left.saturating_add(steps);
                self.lengthened_by = self.lengthened_by.saturating_add(steps);
                // Measured as it stood: the longer window is measured again.
                self.open_measured = None;
                true
            }
            _ => false,
        }
    }

    /// The open window as the host's meter measured it, all the job's GPUs
    /// together, just before the event that closes it: the step beginning that
    /// would close it ([`Self::window_closes_next`]; [`Self::judge_window`]
    /// takes it too), or an epoch end that cuts it, measured to its cut
    /// ([`Self::window_cut`]). The window's close records it
    /// ([`Self::profiled`]): the early end of a profile
    /// ([`PowerSettings::stop_after_rises`]) counts a limit as costlier only
    /// beyond its bound (scaled as the window's measurement is), later windows
    /// are judged against it, and the profile carries it. A later call
    /// replaces it; a lengthened or cancelled window drops it. Answers whether
    /// a window was open and the measurement is a finite energy with a finite
    /// bound >= 0 (another one is not kept).
    pub fn measure_window(&mut self, measured: WindowEnergy) -> bool {
        let ok = matches!(self.state, PowerState::Profiling { .. }) && measured.is_bounded();
        if ok {
            self.open_measured = Some(measured);
        }
        ok
    }

    /// The bound of the last measured window of `limit_w`, J over the window's
    /// measurement (`profile_steps` steps; 0 when unmeasured).
    fn bound_of(&self, limit_w: u32) -> f64 {
        self.profiled_window(limit_w)
            .map_or(0.0, |p| p.bound_over(self.settings.profile_steps))
    }

    fn begin_window(&mut self, limit_mw: u32, at: Reading, actions: &mut Vec<Action>) {
        self.lengthened_by = 0;
        self.open_measured = None;
        self.window_end = None;
        self.state = PowerState::Profiling {
            limit_mw,
            steps: self.settings.profile_steps,
            start: at,
        };
        actions.push(Action::BeginWindow { limit_mw });
    }

    /// A training step begins.
    pub fn step_begin(&mut self, at: Reading) -> Vec<Action> {
        let mut actions = Vec::new();
        self.epoch_steps = self.epoch_steps.saturating_add(1);
        // A wait, warmup or window with steps left only counts this step.
        if let PowerState::Ready { steps, .. }
        | PowerState::Warmup { steps, .. }
        | PowerState::Profiling { steps, .. } = &mut self.state
        {
            if *steps > 1 {
                *steps -= 1;
                return actions;
            }
        }
        match self.state {
            PowerState::Ready { next_limit_mw, .. } => {
                self.warm_up(next_limit_mw, at, &mut actions);
            }
            PowerState::Warmup { limit_mw, .. } => {
                self.begin_window(limit_mw, at, &mut actions);
            }
            PowerState::Profiling {
                limit_mw, start, ..
            } => {
                let covered = self
                    .settings
                    .profile_steps
                    .saturating_add(self.lengthened_by);
                self.close_window(limit_mw, start, at, covered, &mut actions);
                self.after_window(limit_mw, at, &mut actions);
            }
            PowerState::Done { .. } => {}
        }
        actions
    }

    /// Records the window of `limit_mw` opened at `start` and ended at `end` after
    /// `covered` steps, scaled to `profile_steps` steps.
    fn close_window(
        &mut self,
        limit_mw: u32,
        start: Reading,
        end: Reading,
        covered: u32,
        actions: &mut Vec<Action>,
    ) {
        let steps = self.settings.profile_steps;
        // A lengthened (or cut) window, scaled back to `profile_steps` steps.
        let scale = f64::from(steps) / f64::from(covered.max(1));
        let measurement = PowerLimitMeasurement {
            power_limit: limit_mw / 1000,
            energy: end.energy_mj.saturating_sub(start.energy_mj) as f64 / 1000.0 * scale,
            time: end.time_ms.saturating_sub(start.time_ms) as f64 / 1000.0 * scale,
            steps,
        };
        self.lengthened_by = 0;
        self.window_end = None;
        if let Some(m) = self.open_measured.take() {
            self.profiled.push(ProfiledWindow {
                limit_w: measurement.power_limit,
                steps: covered,
                energy_j: m.energy_j,
                uncertainty_j: m.uncertainty_j,
            });
        }
        self.measurements.push(measurement);
        actions.push(Action::EndWindow { measurement });
    }

    /// After the window of `limit_mw` closed at a step beginning `at`: the next
    /// limit's warmup, or the selection.
    fn after_window(&mut self, limit_mw: u32, at: Reading, actions: &mut Vec<Action>) {
        match self.next_limit(limit_mw) {
            Some(next) => self.warm_up(next, at, actions),
            None => self.finish(actions),
        }
    }

    /// The limit profiled after `limit_mw`, if any: none once the profile has
    /// settled ([`PowerSettings::stop_after_rises`], [`profile_settled`]).
    fn next_limit(&self, limit_mw: u32) -> Option<u32> {
        let settled = self.settings.stop_after_rises.is_some_and(|rises| {
            profile_settled(
                &self.settings.selector,
                rises,
                &self.measurements,
                &|w| self.bound_of(w),
                self.gpu_count,
            )
        });
        let index = self.limits_mw.iter().position(|&l| l == limit_mw);
        index
            .and_then(|i| self.limits_mw.get(i + 1))
            .copied()
            .filter(|_| !settled)
    }

    /// Selects the optimal limit from the measurements and sets it.
    fn finish(&mut self, actions: &mut Vec<Action>) {
        let watts = select(&self.settings.selector, &self.measurements, self.gpu_count)
            .unwrap_or(self.max_mw() / 1000);
        let optimal_mw = self
            .limits_mw
            .iter()
            .copied()
            .find(|&l| l / 1000 == watts)
            .unwrap_or(self.max_mw());
        self.state = PowerState::Done { optimal_mw };
        self.set(optimal_mw, actions);
        actions.push(Action::Optimal {
            limit_mw: optimal_mw,
        });
    }

    /// A training step ends (no transition: windows run from step beginning to step
    /// beginning; a window that covers `profile_steps` steps remembers it, for an
    /// epoch end that cuts it).
    pub fn step_end(&mut self, at: Reading) -> Vec<Action> {
        self.note_step_end(at);
        Vec::new()
    }

    /// An epoch ends: a window that covered at least `profile_steps` steps is
    /// kept (to its last step end, scaled as a lengthened window is) and the next
    /// limit waits for the next epoch (or the optimum is selected); an unfinished
    /// warmup or shorter window of a limit is abandoned and the same limit starts
    /// over at the next step. The maximum limit is set until then.
    pub fn epoch_end(&mut self, at: Reading) -> Vec<Action> {
        let mut actions = Vec::new();
        let cut = self.window_cut(at);
        if self.epoch_steps > 0 {
            self.steps_per_epoch = self.epoch_steps;
        }
        self.epoch_steps = 0;
        if let (
            Some(cut),
            PowerState::Profiling {
                limit_mw, start, ..
            },
        ) = (cut, self.state)
        {
            self.close_window(limit_mw, start, cut.end, cut.steps, &mut actions);
            match self.next_limit(limit_mw) {
                Some(next_limit_mw) => {
                    self.state = PowerState::Ready {
                        next_limit_mw,
                        steps: 1,
                    };
                    let max = self.max_mw();
                    self.set(max, &mut actions);
                }
                None => self.finish(&mut actions),
            }
            return actions;
        }
        match self.state {
            PowerState::Warmup { limit_mw, .. } | PowerState::Profiling { limit_mw, .. } => {
                if matches!(self.state, PowerState::Profiling { .. }) {
                    actions.push(Action::CancelWindow { limit_mw });
                }
                self.open_measured = None;
                self.state = PowerState::Ready {
                    next_limit_mw: limit_mw,
                    steps: 1,
                };
                let max = self.max_mw();
                self.set(max, &mut actions);
            }
            PowerState::Ready { .. } | PowerState::Done { .. } => {}
        }
        actions
    }
}

/// The profile-window rule's side of the optimizer (see [`window`]).
impl PowerOptimizer {
    /// Steps the open window covers by the next event (the step beginning that
    /// would close it, or an epoch end after the current step); `None` when no
    /// window is open.
    pub fn window_steps(&self) -> Option<u32> {
        match self.state {
            PowerState::Profiling { steps: left, .. } => Some(
                self.settings
                    .profile_steps
                    .saturating_add(self.lengthened_by)
                    .saturating_sub(left)
                    .saturating_add(1),
            ),
            _ => None,
        }
    }

    /// Whether the next step beginning closes the open window (the host measures
    /// it then and asks [`Self::judge_window`] first).
    pub fn window_closes_next(&self) -> bool {
        matches!(self.state, PowerState::Profiling { steps: 1, .. })
    }

    /// Whether a step end now is where an epoch end would cut the open window
    /// (it covers `profile_steps` steps): a host that bounds the window's energy
    /// reads its meter at it.
    pub fn keeps_step_end(&self) -> bool {
        self.window_steps()
            .is_some_and(|s| s >= self.settings.profile_steps)
    }

    pub(super) fn note_step_end(&mut self, at: Reading) {
        if self.keeps_step_end() {
            self.window_end = self.window_steps().map(|steps| StepEnd { at, steps });
        }
    }

    /// Where an epoch end read at `at` would cut the open window, when it keeps it
    /// (it covers at least `profile_steps` steps); `None` when it would cancel it
    /// or no window is open.
    pub fn window_cut(&self, at: Reading) -> Option<WindowCut> {
        let steps = self.window_steps()?;
        if steps < self.settings.profile_steps {
            return None;
        }
        Some(match self.window_end {
            Some(e) if e.steps == steps => WindowCut {
                end: e.at,
                steps,
                at_step_end: true,
            },
            _ => WindowCut {
                end: at,
                steps,
                at_step_end: false,
            },
        })
    }

    /// The most steps the open window of `limit_mw`, `steps` steps long now, may
    /// run: [`MAX_WINDOW_FACTOR`] times `profile_steps`, and once the steps of an
    /// epoch are known, its share of what is left of this epoch (each limit after
    /// it that can still fit gets a warmup and as many steps).
    fn window_room(&self, limit_mw: u32, steps: u32) -> u32 {
        let most = self
            .settings
            .profile_steps
            .saturating_mul(MAX_WINDOW_FACTOR);
        if self.steps_per_epoch == 0 {
            return most.max(steps);
        }
        // Steps still to begin this epoch, this one included.
        let left = u64::from(self.steps_per_epoch.saturating_sub(self.epoch_steps));
        let later = self
            .limits_mw
            .iter()
            .position(|&l| l == limit_mw)
            .map_or(0, |i| self.limits_mw.len() - i - 1) as u64;
        let (n, warmup) = (u64::from(steps), u64::from(self.settings.warmup_steps));
        // With `l` limits after it in this epoch, each window gets `t` steps:
        // (t - n) + l * (warmup + t) <= left.
        let share = (0..=later)
            .rev()
            .map(|l| (left + n).saturating_sub(l * warmup) / (l + 1))
            .find(|&t| t >= n)
            .unwrap_or(n);
        u32::try_from(share)
            .unwrap_or(u32::MAX)
            .min(most)
            .max(steps)
    }

    /// Judges the open window before the step beginning that would close it, as
    /// the host's meter measured it (`measured`, over all the job's GPUs),
    /// against the limits measured before ([`Self::profiled`]): closes it,
    /// lengthens it, or accepts it with its bound (see [`window`]). The
    /// measurement is the window's, as [`Self::measure_window`] takes it, unless
    /// the window is lengthened. `None` when no window closes at the next step
    /// beginning.
    pub fn judge_window(&mut self, measured: WindowEnergy) -> Option<WindowCall> {
        let PowerState::Profiling {
            limit_mw, steps: 1, ..
        } = self.state
        else {
            return None;
        };
        let steps = self.window_steps()?;
        self.measure_window(measured);
        let Some((needed, why)) = steps_needed(steps, measured, &self.profiled()) else {
            return Some(WindowCall::Close);
        };
        let to = needed.min(self.window_room(limit_mw, steps));
        if to > steps && self.lengthen_window(to - steps) {
            Some(WindowCall::Lengthen {
                by: to - steps,
                to,
                needed,
                why,
            })
        } else {
            Some(WindowCall::Accept { needed, why })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const C: LimitConstraints = LimitConstraints {
        min_mw: 100_000,
        max_mw: 175_000,
    };

    fn settings(wait: u32, warmup: u32, profile: u32, selector: Selector) -> PowerSettings {
        PowerSettings {
            wait_steps: wait,
            warmup_steps: warmup,
            profile_steps: profile,
            pl_step: 25,
            selector,
            stop_after_rises: None,
        }
    }

    fn r(time_ms: u64, energy_mj: u64) -> Reading {
        Reading { time_ms, energy_mj }
    }

    fn m(power_limit: u32, energy: f64, time: f64) -> PowerLimitMeasurement {
        PowerLimitMeasurement {
            power_limit,
            energy,
            time,
            steps: 4,
        }
    }

    #[test]
    fn a_lengthened_window_runs_longer_and_is_scaled_back_to_its_steps() {
        let one = LimitConstraints {
            min_mw: 100_000,
            max_mw: 100_000,
        };
        let (mut opt, _) =
            PowerOptimizer::new(settings(0, 0, 2, Selector::Energy), one, 1).unwrap();
        assert!(!opt.lengthen_window(2), "no window open yet");
        assert!(matches!(
            opt.step_begin(r(0, 0))[..],
            [Action::BeginWindow { .. }]
        ));
        opt.step_begin(r(100, 10_000));
        assert!(opt.lengthen_window(2));
        assert!(!opt.lengthen_window(0));
        // Two more step beginnings than profile_steps: 4 steps in 400 ms, 40 J.
        assert!(opt.step_begin(r(200, 20_000)).is_empty());
        assert!(opt.step_begin(r(300, 30_000)).is_empty());
        let a = opt.step_begin(r(400, 40_000));
        let Some(Action::EndWindow { measurement }) = a.first() else {
            panic!("{a:?}");
        };
        assert_eq!(
            (measurement.energy, measurement.time, measurement.steps),
            (20.0, 0.2, 2)
        );
        assert!(opt.is_done());
        // The stored form round-trips, and an old one (no field) still reads.
        let text = serde_json::to_string(&opt).unwrap();
        assert!(!text.contains("lengthened_by"), "{text}");
        let back: PowerOptimizer = serde_json::from_str(&text).unwrap();
        assert_eq!(back, opt);
    }

    #[test]
    fn defaults_are_zeus_defaults() {
        let s = PowerSettings::default();
        assert_eq!(
            (s.wait_steps, s.warmup_steps, s.profile_steps, s.pl_step),
            (1, 10, 40, 25)
        );
        assert_eq!(
            s.selector,
            Selector::ZeusCost {
                eta: 0.5,
                max_power: None
            }
        );
    }

    #[test]
    fn limits_go_down_from_max_in_steps_never_below_min() {
        assert_eq!(
            C.limits(25).unwrap(),
            vec![175_000, 150_000, 125_000, 100_000]
        );
        let odd = LimitConstraints {
            min_mw: 100_000,
            max_mw: 160_000,
        };
        assert_eq!(odd.limits(25).unwrap(), vec![160_000, 135_000, 110_000]);
        let one = LimitConstraints {
            min_mw: 100_000,
            max_mw: 100_000,
        };
        assert_eq!(one.limits(25).unwrap(), vec![100_000]);
        let bad = LimitConstraints {
            min_mw: 200_000,
            max_mw: 100_000,
        };
        assert!(matches!(
            bad.limits(25),
            Err(PowerError::InvalidSetting(e)) if e.field == "min_mw"
        ));
        let tiny = LimitConstraints {
            min_mw: 0,
            max_mw: 30_000,
        };
        assert_eq!(tiny.limits(25).unwrap(), vec![30_000, 5_000]);
        let wide = LimitConstraints {
            min_mw: 1,
            max_mw: u32::MAX,
        };
        assert_eq!(
            wide.limits(1).unwrap().len(),
            crate::wire::MAX_PROFILE_POINTS
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let mut s = PowerSettings {
            profile_steps: 0,
            ..Default::default()
        };
        assert!(matches!(
            PowerOptimizer::new(s, C, 1),
            Err(PowerError::InvalidSetting(e)) if e.field == "profile_steps"
        ));
        s.profile_steps = 1;
        s.pl_step = 0;
        assert!(matches!(
            s.validate(),
            Err(PowerError::InvalidSetting(e)) if e.field == "pl_step"
        ));
        s.pl_step = 25;
        s.selector = Selector::ZeusCost {
            eta: 1.5,
            max_power: None,
        };
        assert!(matches!(
            s.validate(),
            Err(PowerError::InvalidSetting(e)) if e.field == "selector.eta"
        ));
        s.selector = Selector::MaxSlowdown { factor: 0.9 };
        assert!(matches!(
            s.validate(),
            Err(PowerError::InvalidSetting(e)) if e.field == "selector.factor"
        ));
        s.selector = Selector::MaxSlowdown { factor: f64::NAN };
        assert!(s.validate().is_err());
        assert!(matches!(
            PowerOptimizer::new(PowerSettings::default(), C, 0),
            Err(PowerError::InvalidSetting(e)) if e.field == "gpu_count"
        ));
    }

    #[test]
    fn selector_parses_and_prints() {
        for (text, sel) in [
            ("energy", Selector::Energy),
            ("time", Selector::Time),
            (
                "zeus-cost:0.3",
                Selector::ZeusCost {
                    eta: 0.3,
                    max_power: None,
                },
            ),
            (
                "zeus_cost:0.3:600",
                Selector::ZeusCost {
                    eta: 0.3,
                    max_power: Some(600.0),
                },
            ),
            ("max-slowdown:1.1", Selector::MaxSlowdown { factor: 1.1 }),
        ] {
            assert_eq!(text.parse::<Selector>().unwrap(), sel);
            assert_eq!(sel.to_string().parse::<Selector>().unwrap(), sel);
        }
        for bad in [
            "",
            "fast",
            "zeus-cost",
            "zeus-cost:x",
            "zeus-cost:2",
            "max-slowdown:0.5",
            "energy:1",
            "zeus-cost:0.5:0",
        ] {
            assert!(bad.parse::<Selector>().is_err(), "{bad}");
        }
        let json = serde_json::to_string(&Selector::MaxSlowdown { factor: 1.2 }).unwrap();
        assert_eq!(json, r#"{"kind":"max_slowdown","factor":1.2}"#);
        let back: Selector = serde_json::from_str(r#"{"kind":"zeus_cost","eta":0.1}"#).unwrap();
        assert_eq!(
            back,
            Selector::ZeusCost {
                eta: 0.1,
                max_power: None
            }
        );
    }

    #[test]
    fn selectors_pick_their_optimum() {
        // 175 W: fastest, most energy; 125 W: least energy; 100 W: slow.
        let ms = [
            m(175, 1000.0, 4.0),
            m(150, 900.0, 4.2),
            m(125, 800.0, 4.8),
            m(100, 850.0, 6.0),
        ];
        assert_eq!(select(&Selector::Energy, &ms, 1).unwrap(), 125);
        assert_eq!(select(&Selector::Time, &ms, 1).unwrap(), 175);
        // eta = 1: energy only; eta = 0: time only.
        let zc = |eta| Selector::ZeusCost {
            eta,
            max_power: None,
        };
        assert_eq!(select(&zc(1.0), &ms, 1).unwrap(), 125);
        assert_eq!(select(&zc(0.0), &ms, 1).unwrap(), 175);
        // eta = 0.5, max power 175 W: 175 -> 850, 150 -> 817.5, 125 -> 820, 100 -> 950.
        assert_eq!(select(&zc(0.5), &ms, 1).unwrap(), 150);
        // Two GPUs double max power: time weighs more -> 175: 1200, 150: 1185, 125: 1240.
        assert_eq!(select(&zc(0.5), &ms, 2).unwrap(), 150);
        // An explicit max power large enough makes time dominate.
        let zc_big = Selector::ZeusCost {
            eta: 0.5,
            max_power: Some(10_000.0),
        };
        assert_eq!(select(&zc_big, &ms, 1).unwrap(), 175);
        let slow = |factor| Selector::MaxSlowdown { factor };
        assert_eq!(select(&slow(1.0), &ms, 1).unwrap(), 175);
        assert_eq!(select(&slow(1.06), &ms, 1).unwrap(), 150);
        assert_eq!(select(&slow(1.2), &ms, 1).unwrap(), 125);
        assert_eq!(select(&slow(2.0), &ms, 1).unwrap(), 100);
        assert_eq!(
            select(&Selector::Energy, &[], 1),
            Err(PowerError::NoMeasurements)
        );
        // Ties go to the earlier (higher) limit.
        let tie = [m(175, 500.0, 1.0), m(150, 500.0, 1.0)];
        assert_eq!(select(&Selector::Energy, &tie, 1).unwrap(), 175);
    }

    /// Drives `n` step beginnings 100 ms apart, the energy counter growing by
    /// `watts` W, returning every action.
    fn steps(opt: &mut PowerOptimizer, clock: &mut Reading, n: u32, watts: u64) -> Vec<Action> {
        metered(opt, clock, n, watts, &|_| None)
    }

    /// `n` steps as [`steps`] takes them, the host's meter measuring each
    /// window that closes on the way as `per_step(limit W)` gives (its energy
    /// and bound per step), or not at all.
    fn metered(
        opt: &mut PowerOptimizer,
        clock: &mut Reading,
        n: u32,
        watts: u64,
        per_step: &dyn Fn(u32) -> Option<(f64, f64)>,
    ) -> Vec<Action> {
        let mut all = Vec::new();
        for _ in 0..n {
            clock.time_ms += 100;
            clock.energy_mj += watts * 100;
            let limit_w = opt.current_limit_mw().unwrap_or_default() / 1000;
            if let Some((e, u)) = per_step(limit_w).filter(|_| opt.window_closes_next()) {
                let covered = f64::from(opt.window_steps().unwrap_or(1));
                assert!(opt.measure_window(energy(e * covered, u * covered)));
            }
            all.extend(opt.step_begin(*clock));
        }
        all
    }

    fn energy(energy_j: f64, uncertainty_j: f64) -> WindowEnergy {
        WindowEnergy {
            energy_j,
            uncertainty_j,
            too_short: false,
        }
    }

    #[test]
    fn new_sets_the_maximum_and_waits() {
        let (opt, actions) =
            PowerOptimizer::new(settings(2, 3, 4, Selector::Energy), C, 1).unwrap();
        assert_eq!(actions, vec![Action::SetPowerLimit { limit_mw: 175_000 }]);
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 175_000,
                steps: 3
            }
        );
        assert_eq!(opt.optimal_limit_mw(), None);
        assert!(opt.profile(8, "X").is_none());
    }

    #[test]
    fn every_transition_of_a_full_profile() {
        let (mut opt, _) = PowerOptimizer::new(settings(1, 2, 3, Selector::Energy), C, 1).unwrap();
        let mut clock = r(0, 0);
        // Ready(2) -> Ready(1) on the first step (the wait step).
        assert!(steps(&mut opt, &mut clock, 1, 200).is_empty());
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 175_000,
                steps: 1
            }
        );
        // Ready -> Warmup(175 W); the limit is already the maximum: no action.
        assert!(steps(&mut opt, &mut clock, 1, 200).is_empty());
        assert_eq!(
            *opt.state(),
            PowerState::Warmup {
                limit_mw: 175_000,
                steps: 2
            }
        );
        // Warmup(2) -> Warmup(1) -> Profiling.
        assert!(steps(&mut opt, &mut clock, 1, 200).is_empty());
        let a = steps(&mut opt, &mut clock, 1, 200);
        assert_eq!(a, vec![Action::BeginWindow { limit_mw: 175_000 }]);
        assert!(matches!(
            *opt.state(),
            PowerState::Profiling {
                limit_mw: 175_000,
                steps: 3,
                ..
            }
        ));
        // Profiling(3) -> (2) -> (1) -> window ends, warmup of 150 W.
        assert!(steps(&mut opt, &mut clock, 2, 175).is_empty());
        let a = steps(&mut opt, &mut clock, 1, 175);
        let measured = PowerLimitMeasurement {
            power_limit: 175,
            energy: 52.5,
            time: 0.3,
            steps: 3,
        };
        assert_eq!(
            a,
            vec![
                Action::EndWindow {
                    measurement: measured
                },
                Action::SetPowerLimit { limit_mw: 150_000 },
            ]
        );
        assert_eq!(
            *opt.state(),
            PowerState::Warmup {
                limit_mw: 150_000,
                steps: 2
            }
        );
        // 150 W, 125 W, 100 W at decreasing power: 100 W is least energy.
        steps(&mut opt, &mut clock, 5, 150);
        steps(&mut opt, &mut clock, 5, 120);
        let a = steps(&mut opt, &mut clock, 5, 90);
        assert_eq!(opt.measurements().len(), 4);
        assert_eq!(
            a.last(),
            Some(&Action::Optimal { limit_mw: 100_000 }),
            "{a:?}"
        );
        assert_eq!(
            *opt.state(),
            PowerState::Done {
                optimal_mw: 100_000
            }
        );
        assert_eq!(opt.current_limit_mw(), Some(100_000));
        // Done absorbs everything.
        assert!(steps(&mut opt, &mut clock, 20, 90).is_empty());
        assert!(opt.epoch_end(clock).is_empty());
        assert!(opt.step_end(clock).is_empty());
        assert!(opt.is_done());
    }

    #[test]
    fn windows_measure_from_step_begin_to_step_begin() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 1, 2, Selector::Time), C, 2).unwrap();
        assert!(opt.step_begin(r(1000, 5000)).is_empty()); // Ready -> Warmup(175)
        assert_eq!(
            opt.step_begin(r(1100, 6000)),
            vec![Action::BeginWindow { limit_mw: 175_000 }]
        );
        assert!(opt.step_begin(r(1200, 9000)).is_empty());
        let a = opt.step_begin(r(1350, 12_500));
        assert_eq!(
            a[0],
            Action::EndWindow {
                measurement: PowerLimitMeasurement {
                    power_limit: 175,
                    energy: 6.5,
                    time: 0.25,
                    steps: 2
                }
            }
        );
    }

    #[test]
    fn epoch_end_in_warmup_restarts_that_limit() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 3, 2, Selector::Energy), C, 1).unwrap();
        let mut clock = r(0, 0);
        // Profile 175 W fully (1 + 3 + 2 steps), then into 150 W warmup.
        steps(&mut opt, &mut clock, 6, 200);
        assert_eq!(
            *opt.state(),
            PowerState::Warmup {
                limit_mw: 150_000,
                steps: 3
            }
        );
        let a = opt.epoch_end(clock);
        assert_eq!(a, vec![Action::SetPowerLimit { limit_mw: 175_000 }]);
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 150_000,
                steps: 1
            }
        );
        // The next step starts 150 W's warmup again from the full count.
        let a = steps(&mut opt, &mut clock, 1, 200);
        assert_eq!(a, vec![Action::SetPowerLimit { limit_mw: 150_000 }]);
        assert_eq!(
            *opt.state(),
            PowerState::Warmup {
                limit_mw: 150_000,
                steps: 3
            }
        );
        assert_eq!(opt.measurements().len(), 1);
    }

    #[test]
    fn epoch_end_in_profiling_cancels_the_window() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 1, 5, Selector::Energy), C, 1).unwrap();
        let mut clock = r(0, 0);
        steps(&mut opt, &mut clock, 1, 200); // Warmup(175)
        steps(&mut opt, &mut clock, 1, 200); // Profiling(175)
        steps(&mut opt, &mut clock, 5, 200); // 175 done, Warmup(150)
        steps(&mut opt, &mut clock, 1, 150); // Profiling(150)
        steps(&mut opt, &mut clock, 2, 150);
        assert!(matches!(
            *opt.state(),
            PowerState::Profiling {
                limit_mw: 150_000,
                steps: 3,
                ..
            }
        ));
        let a = opt.epoch_end(clock);
        assert_eq!(
            a,
            vec![
                Action::CancelWindow { limit_mw: 150_000 },
                Action::SetPowerLimit { limit_mw: 175_000 }
            ]
        );
        assert_eq!(opt.measurements().len(), 1);
        // A second epoch end in Ready changes nothing.
        assert!(opt.epoch_end(clock).is_empty());
        // Next epoch: 150 W restarts with a full warmup and a full window.
        let a = steps(&mut opt, &mut clock, 1, 150);
        assert_eq!(a, vec![Action::SetPowerLimit { limit_mw: 150_000 }]);
        let a = steps(&mut opt, &mut clock, 1, 150);
        assert_eq!(a, vec![Action::BeginWindow { limit_mw: 150_000 }]);
        steps(&mut opt, &mut clock, 5, 150);
        assert_eq!(opt.measurements().len(), 2);
        assert_eq!(opt.measurements()[1].power_limit, 150);
        assert!((opt.measurements()[1].time - 0.5).abs() < 1e-9);
    }

    #[test]
    fn epoch_end_while_waiting_keeps_waiting() {
        let (mut opt, _) = PowerOptimizer::new(settings(3, 1, 1, Selector::Energy), C, 1).unwrap();
        opt.step_begin(r(1, 1));
        assert!(opt.epoch_end(r(2, 2)).is_empty());
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 175_000,
                steps: 3
            }
        );
    }

    #[test]
    fn zero_warmup_goes_straight_to_profiling() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 0, 1, Selector::Energy), C, 1).unwrap();
        let a = opt.step_begin(r(0, 0));
        assert_eq!(a, vec![Action::BeginWindow { limit_mw: 175_000 }]);
        let a = opt.step_begin(r(100, 20_000));
        assert_eq!(
            a[1..],
            [
                Action::SetPowerLimit { limit_mw: 150_000 },
                Action::BeginWindow { limit_mw: 150_000 }
            ]
        );
    }

    #[test]
    fn a_single_limit_profiles_once_and_keeps_it() {
        let one = LimitConstraints {
            min_mw: 250_000,
            max_mw: 250_000,
        };
        let (mut opt, _) =
            PowerOptimizer::new(settings(0, 1, 1, Selector::default()), one, 1).unwrap();
        let mut clock = r(0, 0);
        let a = steps(&mut opt, &mut clock, 3, 250);
        assert_eq!(a.last(), Some(&Action::Optimal { limit_mw: 250_000 }));
        // The limit never changed, so no SetPowerLimit after the first.
        assert!(!a.iter().any(|x| matches!(x, Action::SetPowerLimit { .. })));
    }

    #[test]
    fn reused_measurements_start_done() {
        let ms = vec![m(175, 1000.0, 4.0), m(150, 700.0, 4.4), m(125, 800.0, 5.0)];
        let (opt, a) =
            PowerOptimizer::with_measurements(settings(1, 1, 4, Selector::Energy), C, 1, ms)
                .unwrap();
        assert_eq!(
            a,
            vec![
                Action::SetPowerLimit { limit_mw: 150_000 },
                Action::Optimal { limit_mw: 150_000 }
            ]
        );
        assert_eq!(opt.optimal_limit_mw(), Some(150_000));
        // A profiled limit outside the constraints is clamped.
        let (opt, _) = PowerOptimizer::with_measurements(
            settings(1, 1, 4, Selector::Energy),
            C,
            1,
            vec![m(400, 1.0, 1.0)],
        )
        .unwrap();
        assert_eq!(opt.optimal_limit_mw(), Some(175_000));
        assert_eq!(
            opt.current_limit_mw(),
            Some(175_000),
            "the maximum is set even though new() started there"
        );
        assert_eq!(
            PowerOptimizer::with_measurements(PowerSettings::default(), C, 1, vec![]),
            Err(PowerError::NoMeasurements)
        );
    }

    #[test]
    fn profile_points_round_trip() {
        let meas = PowerLimitMeasurement {
            power_limit: 150,
            energy: 600.0,
            time: 2.0,
            steps: 40,
        };
        let p = meas.to_profile_point(32, 2);
        assert_eq!(p.power_limit, 150);
        assert!((p.average_power - 150.0).abs() < 1e-9);
        assert!((p.throughput - 640.0).abs() < 1e-9);
        let back = PowerLimitMeasurement::from_profile_point(&p, 32, 2, 40).unwrap();
        assert!((back.energy - 600.0).abs() < 1e-9 && (back.time - 2.0).abs() < 1e-9);
        let zero = PowerLimitMeasurement { time: 0.0, ..meas }.to_profile_point(32, 1);
        assert_eq!((zero.average_power, zero.throughput), (0.0, 0.0));
        assert!(PowerLimitMeasurement::from_profile_point(&zero, 32, 1, 40).is_none());
    }

    #[test]
    fn profile_of_a_run_selects_like_the_run() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 1, 4, Selector::Energy), C, 1).unwrap();
        let mut clock = r(0, 0);
        for watts in [200, 160, 110, 100] {
            steps(&mut opt, &mut clock, 6, watts);
        }
        let chosen = opt.optimal_limit_mw().unwrap();
        let profile = opt.profile(16, "Fake GPU").unwrap();
        assert_eq!(profile.measurements.len(), 4);
        let reused: Vec<_> = profile
            .measurements
            .iter()
            .filter_map(|p| PowerLimitMeasurement::from_profile_point(p, 16, 1, 40))
            .collect();
        let (again, _) = PowerOptimizer::with_measurements(*opt.settings(), C, 1, reused).unwrap();
        assert_eq!(again.optimal_limit_mw(), Some(chosen));
    }

    fn pe(limit_w: u32, energy_j: f64, uncertainty_j: f64) -> ProfiledEnergy {
        ProfiledEnergy {
            limit_w,
            energy_j,
            uncertainty_j,
        }
    }

    #[test]
    fn uncertain_limits_are_the_chosen_and_those_within_their_bounds_of_it() {
        let p = [pe(300, 6.0, 0.1), pe(250, 4.5, 0.2), pe(200, 4.8, 0.15)];
        assert_eq!(uncertain_limits(250, &p), vec![250, 200]);
        // 300 W and 200 W are far apart; 250 W's windows are not the question.
        assert_eq!(uncertain_limits(300, &p), Vec::<u32>::new());
        // Bounds that just touch overlap; the last window of a limit counts.
        let touch = [pe(250, 4.5, 0.15), pe(200, 4.8, 0.15)];
        assert_eq!(uncertain_limits(250, &touch), vec![250, 200]);
        let lengthened = [pe(250, 4.5, 0.2), pe(200, 4.8, 0.15), pe(200, 4.8, 0.01)];
        assert_eq!(uncertain_limits(250, &lengthened), Vec::<u32>::new());
        assert_eq!(uncertain_limits(150, &p), Vec::<u32>::new());
        assert_eq!(uncertain_limits(250, &[]), Vec::<u32>::new());
    }

    #[test]
    fn a_bounded_profile_carries_each_bound_per_gpu_and_the_note() {
        // The profile, its windows measured by a meter as `per_step` gives.
        let run = |per_step: &dyn Fn(u32) -> Option<(f64, f64)>| {
            let s = settings(0, 1, 4, Selector::Energy);
            let (mut opt, _) = PowerOptimizer::new(s, C, 2).unwrap();
            let mut clock = r(0, 0);
            for watts in [200, 160, 110, 100] {
                metered(&mut opt, &mut clock, 6, watts, per_step);
            }
            opt
        };
        let plain = run(&|_| None);
        let chosen_w = plain.optimal_limit_mw().unwrap() / 1000;
        let limits: Vec<u32> = plain.measurements().iter().map(|m| m.power_limit).collect();
        let other = *limits.iter().find(|&&w| w != chosen_w).unwrap();
        let two = |chosen: (f64, f64), next: (f64, f64)| {
            run(&move |w| match w {
                w if w == chosen_w => Some(chosen),
                w if w == other => Some(next),
                _ => None,
            })
        };
        // Only two limits bounded; the other two as if measured without a meter.
        let opt = two((10.0, 1.0), (10.5, 0.5));
        let p = opt.bounded_profile(16, "Fake GPU").unwrap();
        assert_eq!(p.uncertain, vec![chosen_w, other]);
        for m in &p.measurements {
            let want = match m.power_limit {
                w if w == chosen_w => Some(0.5),
                w if w == other => Some(0.25),
                _ => None,
            };
            assert_eq!(m.energy_uncertainty_j, want, "{} W", m.power_limit);
        }
        let job = crate::spec::JobSpec::new("p", vec![16], 16, 300.0, 1, "A100");
        assert_eq!(p.validate(&job.validate().unwrap()), Ok(()));
        // Told apart: no note; the unbounded profile is the plain one.
        let apart = two((10.0, 0.1), (10.5, 0.1));
        assert!(apart.bounded_profile(16, "g").unwrap().uncertain.is_empty());
        assert_eq!(plain.bounded_profile(16, "g"), plain.profile(16, "g"));
    }

    #[test]
    fn a_profile_settles_after_its_rises_in_a_row_beyond_their_bounds() {
        let none = |_: u32| 0.0;
        // Energy: 175 W 1000, 150 W 900 (best), 125 W 950, 100 W 980: two rises.
        let ms = [
            m(175, 1000.0, 4.0),
            m(150, 900.0, 4.2),
            m(125, 950.0, 4.8),
            m(100, 980.0, 6.0),
        ];
        let settled = |k, n: usize, bound: &dyn Fn(u32) -> f64| {
            profile_settled(&Selector::Energy, k, &ms[..n], bound, 1)
        };
        assert!(!settled(1, 2, &none), "the best so far is not a rise");
        assert!(settled(1, 3, &none));
        assert!(!settled(2, 3, &none));
        assert!(settled(2, 4, &none));
        assert!(!settled(0, 4, &none), "0 never settles");
        assert!(!profile_settled(&Selector::Energy, 1, &[], &none, 1));
        // Bounds of 30 J each: 125 W is within 60 J of 150 W, so the count
        // starts over; 100 W (80 J over) is a rise again.
        let wide = |_: u32| 30.0;
        assert!(!settled(1, 3, &wide));
        assert!(settled(1, 4, &wide));
        assert!(!settled(2, 4, &wide));
        // The Zeus cost weighs the energy's bound by eta: time rises are exact.
        let zc = Selector::ZeusCost {
            eta: 0.0,
            max_power: None,
        };
        assert!(profile_settled(&zc, 2, &ms[..3], &|_| 1e9, 1));
        // Max slowdown: limits slower than allowed count.
        let slow = Selector::MaxSlowdown { factor: 1.1 };
        assert!(!profile_settled(&slow, 1, &ms[..2], &none, 1));
        assert!(profile_settled(&slow, 2, &ms, &none, 1));
        // A broken selector never settles (and never panics).
        let bad = Selector::ZeusCost {
            eta: f64::NAN,
            max_power: None,
        };
        assert!(!profile_settled(&bad, 1, &ms, &none, 1));
    }

    /// Seven limits, 250 W down to 100 W.
    const SEVEN: LimitConstraints = LimitConstraints {
        min_mw: 100_000,
        max_mw: 250_000,
    };

    /// An energy-selecting optimizer on [`SEVEN`] that ends its profile after `rises`.
    fn ending_after(rises: u32) -> (PowerOptimizer, PowerSettings) {
        let s = PowerSettings {
            stop_after_rises: Some(rises),
            ..settings(0, 1, 4, Selector::Energy)
        };
        (PowerOptimizer::new(s, SEVEN, 1).unwrap().0, s)
    }

    #[test]
    fn stop_after_rises_ends_the_profile_at_the_cheapest_so_far() {
        let (mut opt, s) = ending_after(2);
        let mut clock = r(0, 0);
        // 250 W, 225 W (cheapest), then 200 W and 175 W draw more: done there,
        // without 150, 125 and 100 W.
        steps(&mut opt, &mut clock, 6, 200);
        steps(&mut opt, &mut clock, 5, 150);
        steps(&mut opt, &mut clock, 5, 160);
        let a = steps(&mut opt, &mut clock, 5, 170);
        assert_eq!(
            a[a.len() - 2..],
            [
                Action::SetPowerLimit { limit_mw: 225_000 },
                Action::Optimal { limit_mw: 225_000 }
            ]
        );
        assert_eq!(opt.measurements().len(), 4);
        assert_eq!(opt.profile(8, "X").unwrap().measurements.len(), 4);
        // Without the setting every limit is profiled.
        let (mut full, _) =
            PowerOptimizer::new(settings(0, 1, 4, Selector::Energy), SEVEN, 1).unwrap();
        let mut clock = r(0, 0);
        for watts in [200, 150, 160, 170, 180, 190, 195] {
            steps(&mut full, &mut clock, 5 + u32::from(watts == 200), watts);
        }
        assert_eq!(full.optimal_limit_mw(), Some(225_000));
        assert_eq!(full.measurements().len(), 7);
        // The stored form keeps the setting; an old one (no field) reads as None.
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.contains("\"stop_after_rises\":2"), "{text}");
        assert!(!serde_json::to_string(&PowerSettings::default())
            .unwrap()
            .contains("stop_after_rises"));
        let bad = PowerSettings {
            stop_after_rises: Some(0),
            ..s
        };
        assert!(matches!(
            bad.validate(),
            Err(PowerError::InvalidSetting(e)) if e.field == "stop_after_rises"
        ));
    }

    #[test]
    fn a_bounded_window_is_no_rise_within_its_bound() {
        let (mut opt, _) = ending_after(1);
        assert!(!opt.measure_window(energy(80.0, 1.0)), "no window open");
        let mut clock = r(0, 0);
        // 250 W: 80 J over its window; 225 W: 84 J, but both within 3 J.
        steps(&mut opt, &mut clock, 2, 200);
        assert!(opt.measure_window(energy(80.0, 3.0)));
        assert!(!opt.measure_window(energy(80.0, f64::NAN)));
        steps(&mut opt, &mut clock, 4, 200);
        steps(&mut opt, &mut clock, 1, 210);
        assert!(opt.measure_window(energy(84.0, 3.0)));
        steps(&mut opt, &mut clock, 4, 210);
        assert!(!opt.is_done(), "within the bounds: profiling goes on");
        // 200 W draws far more: a rise beyond any bound ends it at 250 W.
        let a = steps(&mut opt, &mut clock, 5, 300);
        assert_eq!(a.last(), Some(&Action::Optimal { limit_mw: 250_000 }));
        assert_eq!(opt.measurements().len(), 3);
        let text = serde_json::to_string(&opt).unwrap();
        let back: PowerOptimizer = serde_json::from_str(&text).unwrap();
        assert_eq!(back, opt);
    }

    #[test]
    fn the_early_end_and_the_posted_profile_read_one_bound_after_lengthened_and_cut_windows() {
        // One GPU, 4-step windows, the profile ends after one rise.
        let (mut opt, _) = ending_after(1);
        let mut clock = r(0, 0);
        let to_closing = |opt: &mut PowerOptimizer, clock: &mut Reading, watts| {
            while !opt.window_closes_next() {
                steps(opt, clock, 1, watts);
            }
        };
        // 250 W, 20 J a step: judged too wide over 4 steps and lengthened; the
        // longer window is measured again at its close, within 1.25 %.
        to_closing(&mut opt, &mut clock, 200);
        let call = opt.judge_window(energy(80.0, 8.0));
        let Some(WindowCall::Lengthen { to, .. }) = call else {
            panic!("{call:?}")
        };
        to_closing(&mut opt, &mut clock, 200);
        assert_eq!(opt.window_steps(), Some(to));
        let covered = f64::from(to);
        let call = opt.judge_window(energy(20.0 * covered, covered / 4.0));
        assert_eq!(call, Some(WindowCall::Close));
        steps(&mut opt, &mut clock, 1, 200);
        // 225 W, 21 J a step (84 J over 4 steps, 4 J over 250 W's): judged too
        // wide and lengthened, then cut by an epoch end two steps on.
        to_closing(&mut opt, &mut clock, 210);
        let call = opt.judge_window(energy(84.0, 8.0));
        assert!(
            matches!(call, Some(WindowCall::Lengthen { .. })),
            "{call:?}"
        );
        steps(&mut opt, &mut clock, 2, 210);
        let end = r(clock.time_ms + 100, clock.energy_mj + 21_000);
        assert_eq!(opt.window_cut(end).map(|c| c.steps), Some(6));
        // Cut unmeasured: the judged bound was dropped with the lengthening, so
        // 225 W is a rise beyond 250 W's 1 J (a stale 8 J would hide it).
        let mut unmeasured = opt.clone();
        unmeasured.epoch_end(end);
        assert_eq!(unmeasured.optimal_limit_mw(), Some(250_000));
        // Measured to its cut, 6 J over 6 steps (4 J over the window's 4): within
        // the bounds, profiling goes on.
        assert!(opt.measure_window(energy(126.0, 6.0)));
        opt.epoch_end(end);
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 200_000,
                steps: 1
            }
        );
        // The early end, the posted profile and the note read the same records.
        for (o, want) in [
            (&opt, [Some(0.25), Some(1.0)]),
            (&unmeasured, [Some(0.25), None]),
        ] {
            let posted = o.bounded_profile(8, "X").unwrap();
            let got: Vec<_> = posted
                .measurements
                .iter()
                .map(|m| m.energy_uncertainty_j)
                .collect();
            assert_eq!(got, want);
            for m in &posted.measurements {
                let over_window = m.energy_uncertainty_j.map_or(0.0, |u| u * 4.0);
                assert!((o.bound_of(m.power_limit) - over_window).abs() < 1e-9);
            }
            let per_step: Vec<_> = o.profiled().iter().map(|p| p.uncertainty_j).collect();
            assert_eq!(per_step, want.iter().flatten().copied().collect::<Vec<_>>());
        }
        assert_eq!(opt.profiled_windows()[1].steps, 6);
        // The stored form keeps them; one of before (the bounds alone, in
        // `bounds_j` and `open_bound_j`) still reads, as measured without a meter.
        let text = serde_json::to_string(&opt).unwrap();
        let back: PowerOptimizer = serde_json::from_str(&text).unwrap();
        assert_eq!(back, opt);
        let mut old = serde_json::to_value(&opt).unwrap();
        let doc = old.as_object_mut().unwrap();
        doc.remove("profiled").unwrap();
        doc.insert(
            "bounds_j".into(),
            serde_json::json!([[250, 1.0], [225, 4.0]]),
        );
        doc.insert("open_bound_j".into(), serde_json::json!(2.0));
        let back: PowerOptimizer = serde_json::from_value(old).unwrap();
        assert!(back.profiled_windows().is_empty());
        assert_eq!(back.measurements(), opt.measurements());
    }

    #[test]
    fn state_round_trips_through_serde() {
        let (mut opt, _) = PowerOptimizer::new(settings(0, 1, 2, Selector::Time), C, 1).unwrap();
        opt.step_begin(r(0, 0));
        opt.step_begin(r(10, 10));
        let json = serde_json::to_string(&opt).unwrap();
        let back: PowerOptimizer = serde_json::from_str(&json).unwrap();
        assert_eq!(back, opt);
        let s: PowerSettings = serde_json::from_str(r#"{"pl_step": 50}"#).unwrap();
        assert_eq!(s.pl_step, 50);
        assert_eq!(s.profile_steps, 40);
        assert!(serde_json::from_str::<PowerSettings>(r#"{"pl_stp": 50}"#).is_err());
    }

    #[test]
    fn a_stored_optimizer_is_checked_when_read() {
        let (opt, _) = PowerOptimizer::new(PowerSettings::default(), C, 2).unwrap();
        let mut doc = serde_json::to_value(&opt).unwrap();
        let back: PowerOptimizer = serde_json::from_value(doc.clone()).unwrap();
        assert_eq!(back, opt);
        for (field, bad) in [
            ("limits_mw", serde_json::json!([])),
            ("limits_mw", serde_json::json!([100_000, 150_000])),
            ("gpu_count", serde_json::json!(0)),
        ] {
            let saved = doc[field].clone();
            doc[field] = bad;
            let err = serde_json::from_value::<PowerOptimizer>(doc.clone()).unwrap_err();
            assert!(err.to_string().contains(field), "{field}: {err}");
            doc[field] = saved;
        }
    }
}
