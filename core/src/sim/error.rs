//! Why a simulation could not run.

use super::trace::TraceError;
use crate::api::ApiError;
use crate::field_error::FieldError;
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
    /// `--traces DIR` without `--gpu`: which power trace of the directory is unknown.
    #[error("--traces needs --gpu (the GPU of summary_power_{{gpu}}.csv)")]
    TracesNeedGpu,
    /// The trace file flags mix `--traces` with `--train`/`--power`, or give only one of those two.
    #[error("give either --traces DIR --gpu GPU, or both --train FILE and --power FILE")]
    TraceFlags,
    /// No power trace was given.
    #[error("powers: give at least one power trace")]
    NoPowerTrace,
    /// Two power traces name the same GPU.
    #[error("powers: two power traces for gpu {0:?}")]
    DuplicateGpu(String),
    /// The GPU has no loaded trace.
    #[error("gpu: {gpu:?} is not loaded{hint} (loaded: {loaded})")]
    UnknownGpu {
        /// The asked GPU.
        gpu: String,
        /// The loaded GPUs.
        loaded: String,
        /// `; did you mean "a40"?` when a loaded GPU is close, else empty.
        hint: String,
    },
    /// The dataset is not built in, and the fields that would define it are missing.
    #[error("dataset: {dataset:?} is not a built-in workload{hint} (built in: {known}; for a workload of your own traces, give {missing})")]
    UnknownDataset {
        /// The asked dataset.
        dataset: String,
        /// The built-in datasets.
        known: String,
        /// `; did you mean "imagenet"?` when a built-in dataset is close, else empty.
        hint: String,
        /// The workload fields missing.
        missing: String,
    },
    /// A knob is out of range.
    #[error(transparent)]
    Knob(FieldError),
    /// The optimizer's job spec (or a power profile made for it) was refused.
    #[error("job spec: {0}")]
    Job(FieldError),
    /// The service refused a power profile made from the trace.
    #[error("power profile: {0}")]
    Api(ApiError),
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
    /// The group trace has no group of the workload's dataset.
    #[error("{file} has no group of dataset {dataset}")]
    NoGroupOfDataset {
        /// The group trace, as the user knows it.
        file: String,
        /// The workload's dataset.
        dataset: String,
    },
    /// The group trace has no group of that name.
    #[error("{file} has no group {group:?}")]
    UnknownGroup {
        /// The group trace, as the user knows it.
        file: String,
        /// The asked group.
        group: String,
    },
    /// Group rows must be sorted by start time.
    #[error("group row {row}: rows must be sorted by start_time")]
    GroupNotSorted {
        /// 0-based row.
        row: usize,
    },
}

impl SimError {
    /// A knob outside its range: the knob's field and the rule it breaks.
    pub fn knob(field: &'static str, rule: impl Into<String>) -> Self {
        SimError::Knob(FieldError::new(field, rule))
    }
}

/// `; did you mean "imagenet"?` when one of `names` is within a few edits of
/// `asked` (case aside), else an empty string.
pub fn did_you_mean<'a>(asked: &str, names: impl IntoIterator<Item = &'a str>) -> String {
    let asked = asked.to_lowercase();
    let best = names
        .into_iter()
        .map(|n| (edit_distance(&asked, &n.to_lowercase()), n))
        .min_by_key(|(d, _)| *d);
    match best {
        Some((d, name)) if d <= 2.max(asked.chars().count() / 3) => {
            format!("; did you mean {name:?}?")
        }
        _ => String::new(),
    }
}

/// Levenshtein distance, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diag = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (diag + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            diag = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod did_you_mean_tests {
    use super::did_you_mean;

    #[test]
    fn suggests_the_closest_name_only_when_close() {
        let names = ["cifar100", "imagenet", "squad", "librispeech"];
        assert_eq!(
            did_you_mean("imagnet", names),
            "; did you mean \"imagenet\"?"
        );
        assert_eq!(did_you_mean("SQUAD", names), "; did you mean \"squad\"?");
        assert_eq!(did_you_mean("mnist", names), "");
        assert_eq!(did_you_mean("", names), "");
    }
}
