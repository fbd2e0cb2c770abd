//! Shared helpers of the simulator tests (not a test target on its own: included with `mod`).
#![allow(dead_code)]

use wattwise_core::sim::{builtin, Catalog, JobTrace, Target, Trace};

include!("digests.rs");

/// The built-in train trace joined with one GPU's power trace.
pub(crate) fn trace(gpu: &str) -> Trace {
    builtin::trace(gpu).unwrap()
}

/// A Zeus workload on a GPU of the built-in traces, resolved as the command line
/// and the page resolve it (its default batch size capped to the trace).
pub(crate) fn job(dataset: &str, gpu: &str) -> JobTrace {
    Catalog::zeus()
        .unwrap()
        .job(&Target {
            gpu: Some(gpu.into()),
            dataset: Some(dataset.into()),
            ..Target::default()
        })
        .unwrap()
        .clone()
}
