//! A built-in synthetic workload, so the simulator runs with no files at all.
//!
//! It is made of the same two traces as Zeus's (a train trace and a power
//! trace), generated from a seed with a simple model of a GPU and a training job:
//!
//! - **Epochs to target** follow a U-shaped curve over the batch size: small
//!   batches need a few extra epochs (noisy gradients, many steps per epoch),
//!   large ones need many more (fewer updates per epoch, the generalization gap),
//!   `E(b) = e_min * (1 + (b_small / b) + (b / b_crit)^alpha)`. Each run draws a
//!   log-normal factor around it (run-to-run noise); a run whose draw is beyond
//!   the trained epochs never reaches the target (`nan`).
//! - **Time per epoch** at full power falls with the batch size as the GPU fills
//!   up: `samples / (peak * b / (b + b_half))`.
//! - **Power**: a batch size draws `P(b) = idle + (tdp - idle) * b / (b + b_power)`
//!   unthrottled. Under a power limit `p < P(b)` the GPU averages about `p` and the
//!   epoch slows by `(P(b) / p)^0.6` (frequency scaling is sub-linear in power).
//!
//! The numbers are plausible for an image classifier on a 300 W data-center GPU.

use super::trace::{Configuration, PowerRow, Trace, TrainRow};
use super::workload::Workload;
use crate::rng::JobRng;

/// Seed of the trace [`synthetic_trace`] makes by default.
pub const SYNTHETIC_TRACE_SEED: u64 = 2023;
/// Dataset name of the synthetic workload.
pub const SYNTHETIC_DATASET: &str = "synthetic";
/// Network name of the synthetic workload.
pub const SYNTHETIC_NETWORK: &str = "resnet";
/// Optimizer name of the synthetic workload.
pub const SYNTHETIC_OPTIMIZER: &str = "sgd";
/// GPU name of the synthetic power trace.
pub const SYNTHETIC_GPU: &str = "synthetic-300w";

const BATCH_SIZES: [u32; 9] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
const POWER_LIMITS: [u32; 9] = [100, 125, 150, 175, 200, 225, 250, 275, 300];
const RUNS: i64 = 6;
const TARGET: f64 = 0.75;
const MAX_EPOCHS: u32 = 60;
/// Epochs the trace "trained" for: a run needing more never reached the target.
const TRAINED_EPOCHS: f64 = 120.0;

/// The synthetic workload's job: target accuracy 0.75, 60 epochs at most, default batch size 1024.
pub fn synthetic_workload() -> Workload {
    Workload {
        dataset: SYNTHETIC_DATASET.into(),
        network: SYNTHETIC_NETWORK.into(),
        optimizer: SYNTHETIC_OPTIMIZER.into(),
        target_metric: TARGET,
        max_epochs: MAX_EPOCHS,
        default_batch_size: 1024,
    }
}

/// Mean epochs to the target at batch size `b`.
fn mean_epochs(b: f64) -> f64 {
    10.0 * (1.0 + 16.0 / b + libm::pow(b / 900.0, 1.6))
}

/// The synthetic workload at batch size `bs`.
fn configuration(bs: u32) -> Configuration {
    Configuration {
        dataset: SYNTHETIC_DATASET.into(),
        network: SYNTHETIC_NETWORK.into(),
        batch_size: bs,
        optimizer: SYNTHETIC_OPTIMIZER.into(),
    }
}

/// The synthetic train and power traces, generated from `seed`.
pub fn synthetic_trace(seed: u64) -> Trace {
    let mut rng = JobRng::from_seed(seed);
    let mut train = Vec::new();
    for &bs in &BATCH_SIZES {
        let mean = mean_epochs(bs as f64);
        // Larger batches are less stable run to run.
        let sigma = 0.08 + 0.04 * libm::log2(bs as f64 / 16.0) / 8.0;
        for run in 1..=RUNS {
            let epochs = libm::ceil(mean * libm::exp(rng.normal(0.0, sigma)));
            train.push(TrainRow {
                config: configuration(bs),
                learning_rate: 0.1 * libm::sqrt(bs as f64 / 256.0),
                run,
                target_metric: TARGET,
                target_epoch: (epochs <= TRAINED_EPOCHS).then_some(epochs),
            });
        }
    }
    let (samples, peak, b_half) = (50_000.0, 5_000.0, 96.0);
    let (idle, tdp, b_power) = (70.0, 300.0, 48.0);
    let mut power = Vec::new();
    for &bs in &BATCH_SIZES {
        let b = bs as f64;
        let full_time = samples / (peak * b / (b + b_half));
        let draw = idle + (tdp - idle) * b / (b + b_power);
        for &pl in &POWER_LIMITS {
            let p = pl as f64;
            let (time, avg) = if p >= draw {
                (full_time, draw)
            } else {
                (full_time * libm::pow(draw / p, 0.6), 0.97 * p)
            };
            // Measurement noise of about 1%.
            let jitter = 1.0 + 0.01 * rng.normal(0.0, 1.0).clamp(-2.0, 2.0);
            power.push(PowerRow {
                config: configuration(bs),
                power_limit: pl,
                time_per_epoch: time * jitter,
                average_power: avg,
            });
        }
    }
    Trace { train, power }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::workload::JobTrace;

    #[test]
    fn epochs_curve_is_u_shaped() {
        let e: Vec<f64> = BATCH_SIZES.iter().map(|&b| mean_epochs(b as f64)).collect();
        let min = e.iter().cloned().fold(f64::INFINITY, f64::min);
        assert!(e[0] > min && e[e.len() - 1] > min);
        assert!(
            e[e.len() - 1] > MAX_EPOCHS as f64,
            "the largest batch size should mostly fail"
        );
    }

    #[test]
    fn same_seed_same_trace_and_it_compiles_to_a_job() {
        assert_eq!(synthetic_trace(1), synthetic_trace(1));
        assert_ne!(synthetic_trace(1), synthetic_trace(2));
        let t = synthetic_trace(SYNTHETIC_TRACE_SEED);
        let job = JobTrace::new(&t, &synthetic_workload(), SYNTHETIC_GPU).unwrap();
        assert_eq!(job.batch_sizes.len(), BATCH_SIZES.len());
        assert_eq!(job.max_power, 300.0);
        // Lower limits save energy per epoch for a power-hungry batch size.
        let big = job.batch_size(1024).unwrap();
        assert!(big.limits[0].energy_per_epoch < big.limits.last().unwrap().energy_per_epoch);
        assert!(big.limits[0].time_per_epoch > big.limits.last().unwrap().time_per_epoch);
    }
}
