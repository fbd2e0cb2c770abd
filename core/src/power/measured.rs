//! What a host measured: the readings the optimizer is driven by, and a profiled
//! limit's energy with its bound.

use serde::{Deserialize, Serialize};

/// The host's clock and the job's GPUs' summed energy counter at one event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reading {
    /// Monotonic time, milliseconds.
    pub time_ms: u64,
    /// Energy counter summed over the job's GPUs, millijoules.
    pub energy_mj: u64,
}

/// A profiled limit's energy per step over all the job's GPUs, with its bound, J:
/// what a host's energy meter measured over the limit's profile window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ProfiledEnergy {
    /// The limit, W.
    pub limit_w: u32,
    /// Energy per step, J.
    pub energy_j: f64,
    /// Its half-width, J.
    pub uncertainty_j: f64,
}

impl ProfiledEnergy {
    /// Whether the two energies lie within their bounds of each other.
    pub fn overlaps(&self, energy_j: f64, uncertainty_j: f64) -> bool {
        (self.energy_j - energy_j).abs() <= self.uncertainty_j + uncertainty_j
    }
}

/// A closed profile window as the host's meter measured it, all the job's GPUs
/// together: the one record of its energy's bound, which the early end of a
/// profile, the next windows' judgement, the profile's note and the posted
/// profile all read (see `PowerOptimizer::profiled`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProfiledWindow {
    /// The limit, W.
    pub limit_w: u32,
    /// The steps the window covered as measured (lengthening included; to its
    /// last step end when an epoch end cut it).
    pub steps: u32,
    /// Energy over those steps, J.
    pub energy_j: f64,
    /// Its half-width, J.
    pub uncertainty_j: f64,
}

impl ProfiledWindow {
    /// Its energy per step, with its bound.
    pub fn per_step(&self) -> ProfiledEnergy {
        let steps = f64::from(self.steps.max(1));
        ProfiledEnergy {
            limit_w: self.limit_w,
            energy_j: self.energy_j / steps,
            uncertainty_j: self.uncertainty_j / steps,
        }
    }

    /// Its bound scaled to `steps` steps (a window's measurement is scaled to
    /// `profile_steps`), J.
    pub fn bound_over(&self, steps: u32) -> f64 {
        self.uncertainty_j * (f64::from(steps) / f64::from(self.steps.max(1)))
    }
}
