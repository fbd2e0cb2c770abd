//! The trace-driven simulator: what wattwise would have done, and saved, on a
//! recurring job.
//!
//! Pure like the rest of the core: the host reads the trace files and passes
//! their text in; the simulator returns every run's history. The same inputs and
//! seed give bit-identical results on every host (ChaCha for randomness, `libm`
//! for transcendental math).
//!
//! - [`error`]: why a simulation could not run.
//! - [`trace`]: parsing the Zeus train and power traces, and merging them.
//! - [`builtin`]: the Zeus NSDI '23 traces, compiled in (feature `builtin-traces`).
//! - [`workload`]: the job to simulate and its slice of a trace.
//! - [`synthetic`]: a built-in synthetic workload, so nothing needs files.
//! - [`simulator`]: [`simulate_one_job`] and [`simulate_one_alibaba_group`], under
//!   Zeus's policy or another ([`simulate_one_job_with`], [`simulate_one_alibaba_group_with`]).
//! - [`group`]: one group of the Alibaba trace: which one a request means, its
//!   simulation and totals.
//! - [`baseline`]: the default configuration and the oracle.
//! - [`report`]: cumulative energy, time and cost, and regret against the oracle.
//! - [`catalog`]: the front end: which traces are loaded, which job a request
//!   means (built-in, uploaded or synthetic; overrides; capping), the knob checks.
//! - [`trace_choice`]: which traces a simulation's flags name (built-in,
//!   synthetic or files, and which files), and the catalog made of them.
//! - [`closest`]: which catalog workload a live job is closest to ("simulate this job").
//! - [`learning`]: a job warm-started from the workload's jobs on other GPUs
//!   ([`crate::policy::shared`]), with and without that knowledge.
//! - [`sweep`]: a grid of simulations, its order, progress and cancellation, and
//!   the one-line summary of each.

pub mod baseline;
#[cfg(feature = "builtin-traces")]
pub mod builtin;
pub mod catalog;
pub mod closest;
pub mod error;
pub mod group;
pub mod learning;
pub mod report;
pub mod simulator;
pub mod sweep;
pub mod synthetic;
pub mod trace;
#[cfg(feature = "builtin-traces")]
pub mod trace_choice;
pub mod workload;

pub use baseline::{baselines, Baseline, Baselines};
pub use catalog::{Catalog, Options, PowerFile, SimulateSpec, Source, Target, WorkloadOverrides};
pub use closest::{closest, Closest};
pub use error::SimError;
pub use group::{group_config, Group, GroupReport};
pub use learning::LearningReport;
pub use report::SimReport;
pub use simulator::{
    simulate_one_alibaba_group, simulate_one_alibaba_group_with, simulate_one_job,
    simulate_one_job_shared, simulate_one_job_with, HistoryEntry, SharedRun, SimConfig,
};
pub use sweep::{EtaVerdict, PolicyAtEta, Progress, SimSummary, SweepEnd, SweepSpec};
pub use trace::{group_jobs, parse_groups, GroupJob, GroupRow, Trace, TraceError};
#[cfg(feature = "builtin-traces")]
pub use trace_choice::{TraceChoice, TraceFlags, TracePath, TraceText};
pub use workload::{JobTrace, Workload};
