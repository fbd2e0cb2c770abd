//! The trace-driven simulator: what wattwise would have done, and saved, on a
//! recurring job.
//!
//! Pure like the rest of the core: the host reads the trace files and passes
//! their text in; the simulator returns every run's history. The same inputs and
//! seed give bit-identical results on every host (ChaCha for randomness, `libm`
//! for transcendental math).
//!
//! - [`trace`]: parsing the Zeus train and power traces, and merging them.
//! - [`builtin`]: the Zeus NSDI '23 traces, compiled in (feature `builtin-traces`).
//! - [`workload`]: the job to simulate and its slice of a trace.
//! - [`synthetic`]: a built-in synthetic workload, so nothing needs files.
//! - [`simulator`]: [`simulate_one_job`] and [`simulate_one_alibaba_group`], under
//!   Zeus's policy or another ([`simulate_one_job_with`], [`simulate_one_alibaba_group_with`]).
//! - [`baseline`]: the default configuration and the oracle.
//! - [`report`]: cumulative energy, time and cost, and regret against the oracle.
//! - [`catalog`]: the front end: which traces are loaded, which job a request
//!   means (built-in, uploaded or synthetic; overrides; capping), the knob checks.
//! - [`closest`]: which catalog workload a live job is closest to ("simulate this job").
//! - [`sweep`]: a grid of simulations, its order, progress and cancellation, and
//!   the one-line summary of each.

pub mod baseline;
#[cfg(feature = "builtin-traces")]
pub mod builtin;
pub mod catalog;
pub mod closest;
pub mod report;
pub mod simulator;
pub mod sweep;
pub mod synthetic;
pub mod trace;
pub mod workload;

pub use baseline::{baselines, Baseline, Baselines};
pub use catalog::{Catalog, Options, PowerFile, SimulateSpec, Source, Target, WorkloadOverrides};
pub use closest::{closest, Closest};
pub use report::SimReport;
pub use simulator::{
    simulate_one_alibaba_group, simulate_one_alibaba_group_with, simulate_one_job,
    simulate_one_job_with, GroupJob, HistoryEntry, SimConfig,
};
pub use sweep::{Progress, SimSummary, SweepEnd, SweepSpec};
pub use trace::{group_jobs, parse_groups, GroupRow, Trace, TraceError};
pub use workload::{JobTrace, Workload};

use crate::optimizer::OptimizerError;

/// Why a simulation could not run.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum SimError {
    /// A trace could not be parsed.
    #[error(transparent)]
    Trace(#[from] TraceError),
    /// No train row joins a power row.
    #[error(
        "the train and power traces have no (dataset, network, batch_size, optimizer) in common"
    )]
    EmptyMerge,
    /// The traces have no row for the workload.
    #[error("the traces have no row for {workload} (dataset/network/optimizer) with both train and power data")]
    NoRows {
        /// `dataset/network/optimizer`.
        workload: String,
    },
    /// The train trace has no run at the workload's target metric.
    #[error("target_metric: the train trace has no run at target {target_metric} for this workload (targets in the trace: {available})")]
    NoTarget {
        /// The asked target.
        target_metric: f64,
        /// The targets the trace has.
        available: String,
    },
    /// A batch size has no run at the target metric, or none reaching it.
    #[error(
        "batch size {batch_size}: the train trace has no usable run at target {target_metric}"
    )]
    NoRuns {
        /// The batch size (0: any).
        batch_size: u32,
        /// The target metric.
        target_metric: f64,
    },
    /// No run of any batch size reaches the target within `max_epochs`.
    #[error("no run of the trace reaches target {target_metric} within {max_epochs} epochs at any batch size")]
    Unreachable {
        /// The target metric.
        target_metric: f64,
        /// The workload's max epochs.
        max_epochs: u32,
    },
    /// A batch size is not in the job's trace.
    #[error("batch size {0} is not in the trace of this workload")]
    UnknownBatchSize(u32),
    /// A batch size has no power limit in the power trace.
    #[error("batch size {0} has no usable power limit in the power trace")]
    NoPowerLimit(u32),
    /// A trace file is malformed.
    #[error("{file}: {source}")]
    TraceFile {
        /// The file's name, as the user knows it.
        file: String,
        /// What is wrong, and where.
        source: TraceError,
    },
    /// No power trace was given.
    #[error("powers: give at least one power trace")]
    NoPowerTrace,
    /// Two power traces name the same GPU.
    #[error("powers: two power traces for gpu {0:?}")]
    DuplicateGpu(String),
    /// The GPU has no loaded trace.
    #[error("gpu: {gpu:?} is not loaded (loaded: {loaded})")]
    UnknownGpu {
        /// The asked GPU.
        gpu: String,
        /// The loaded GPUs.
        loaded: String,
    },
    /// The dataset is not built in, and the fields that would define it are missing.
    #[error("dataset: {dataset:?} is not a built-in workload; give {missing}")]
    UnknownDataset {
        /// The asked dataset.
        dataset: String,
        /// The workload fields missing.
        missing: String,
    },
    /// A knob is out of range.
    #[error("{knob}: {rule}")]
    Knob {
        /// The knob.
        knob: &'static str,
        /// The rule.
        rule: &'static str,
    },
    /// The optimizer's job spec was refused.
    #[error("job spec: {0}")]
    Job(String),
    /// The optimizer refused a call.
    #[error("optimizer: {0}")]
    Optimizer(#[from] OptimizerError),
    /// The first run, at the default batch size, did not reach the target.
    #[error("the default batch size {batch_size} did not reach the target metric in the first recurrence; pick a default that converges")]
    DefaultDidNotConverge {
        /// The default batch size.
        batch_size: u32,
    },
    /// A recurrence did not reach the target.
    #[error("recurrence {recurrence}: the job did not reach the target metric in {tries} tries; the target looks unreachable")]
    TooManyTries {
        /// The recurrence (from 0).
        recurrence: u32,
        /// Tries made.
        tries: u32,
    },
    /// A group row has a non-finite time, an end before its start or a negative ratio.
    #[error("group row {row}: start_time and end_time must be finite with end_time >= start_time, runtime_ratio finite and >= 0")]
    BadGroupRow {
        /// 0-based row.
        row: usize,
    },
    /// Group rows must be sorted by start time.
    #[error("group row {row}: rows must be sorted by start_time")]
    GroupNotSorted {
        /// 0-based row.
        row: usize,
    },
}
