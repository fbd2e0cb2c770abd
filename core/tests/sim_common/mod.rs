//! Shared helpers of the simulator tests (not a test target on its own: included with `mod`).
#![allow(dead_code)]

use std::path::PathBuf;

use wattwise_core::sim::{JobTrace, Trace, Workload};

/// `shared/traces` beside the repository, or `None` (with a note) when absent.
pub fn traces_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/traces");
    if dir.join("summary_train.csv").exists() {
        Some(dir)
    } else {
        eprintln!(
            "note: {} is absent; skipping the Zeus trace test",
            dir.display()
        );
        None
    }
}

/// The parsed train trace joined with one GPU's power trace.
pub fn trace(dir: &std::path::Path, gpu: &str) -> Trace {
    let train = std::fs::read_to_string(dir.join("summary_train.csv")).unwrap();
    let power = std::fs::read_to_string(dir.join(format!("summary_power_{gpu}.csv"))).unwrap();
    Trace::from_csv(&train, &power).unwrap()
}

/// A Zeus workload on a GPU, its default batch size capped to the trace.
pub fn job(trace: &Trace, dataset: &str, gpu: &str) -> JobTrace {
    let w = Workload::zeus(dataset).unwrap();
    let job = JobTrace::new(trace, &w, gpu).unwrap();
    let w = w.capped_to(&job);
    JobTrace::new(trace, &w, gpu).unwrap()
}
