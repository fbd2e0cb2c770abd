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
