//! A workload (the job the simulator runs) and its slice of a trace.
//!
//! [`JobTrace::new`] picks out of a [`Trace`] everything one job needs, indexed
//! for the simulator's inner loop: its feasible batch sizes, the training paths
//! (epochs to target of every run) of each batch size, and each batch size's
//! time and power per epoch at every power limit.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::SimError;
use super::trace::{Configuration, Trace};

/// The job a simulation runs (Zeus's legacy `Job`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workload {
    /// Dataset name, as in the traces.
    pub dataset: String,
    /// Network name, as in the traces.
    pub network: String,
    /// Optimizer name, as in the traces.
    pub optimizer: String,
    /// Target validation metric (matched exactly against the train trace).
    pub target_metric: f64,
    /// Epochs after which a run stops without having reached the target.
    pub max_epochs: u32,
    /// The batch size of the first run.
    pub default_batch_size: u32,
}

/// The six workloads of the Zeus traces: (dataset, network, optimizer, target, max epochs, preferred default bs).
pub const ZEUS_WORKLOADS: [(&str, &str, &str, f64, u32, u32); 6] = [
    ("cifar100", "shufflenetv2", "adadelta", 0.6, 100, 1024),
    ("imagenet", "resnet50", "adadelta", 0.65, 100, 256),
    ("librispeech", "deepspeech2", "adamw", 40.0, 16, 192),
    ("movielens-1m", "ncf", "adam", 0.41, 100, 1024),
    ("squad", "bert_base_uncased", "adamw", 84.0, 6, 32),
    ("sentiment140", "bert_base_uncased", "adamw", 0.84, 10, 128),
];

/// The GPUs of the Zeus power traces (`summary_power_{gpu}.csv`).
pub const ZEUS_GPUS: [&str; 4] = ["a40", "v100", "p100", "rtx6000"];

impl Workload {
    /// The Zeus workload of a dataset, with its preferred default batch size
    /// (cap it with [`Workload::capped_to`] for a given GPU's trace).
    pub fn zeus(dataset: &str) -> Option<Workload> {
        ZEUS_WORKLOADS.iter().find(|w| w.0 == dataset).map(
            |&(dataset, network, optimizer, target_metric, max_epochs, default_batch_size)| {
                Workload {
                    dataset: dataset.into(),
                    network: network.into(),
                    optimizer: optimizer.into(),
                    target_metric,
                    max_epochs,
                    default_batch_size,
                }
            },
        )
    }

    /// The same workload with the default batch size capped at the largest
    /// batch size of `job` (the Zeus traces do not have every batch size on every GPU).
    pub fn capped_to(mut self, job: &JobTrace) -> Workload {
        if let Some(largest) = job.batch_sizes.last() {
            self.default_batch_size = self.default_batch_size.min(largest.batch_size);
        }
        self
    }

    /// A short name: `dataset/network`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.dataset, self.network)
    }
}

/// Time and power of one epoch at one power limit.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PowerPoint {
    /// Power limit in watts.
    pub power_limit: u32,
    /// Seconds per epoch.
    pub time_per_epoch: f64,
    /// Average power in watts.
    pub average_power: f64,
    /// Joules per epoch (`time_per_epoch * average_power`).
    pub energy_per_epoch: f64,
}

/// Everything the simulator knows about one batch size of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BatchSizeTrace {
    /// The batch size.
    pub batch_size: u32,
    /// Epochs to the target of each run at this batch size (`None`: never reached), in trace order.
    pub target_epochs: Vec<Option<f64>>,
    /// Per power limit, ascending.
    pub limits: Vec<PowerPoint>,
}

impl BatchSizeTrace {
    /// The largest power limit this batch size was measured at.
    pub fn max_power_limit(&self) -> u32 {
        self.limits.last().map_or(0, |p| p.power_limit)
    }

    /// The point at a power limit.
    pub fn at(&self, power_limit: u32) -> Option<&PowerPoint> {
        self.limits.iter().find(|p| p.power_limit == power_limit)
    }
}

/// One job's slice of a trace, ready to simulate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobTrace {
    /// The workload.
    pub workload: Workload,
    /// GPU name (for the optimizer's job spec and reports).
    pub gpu: String,
    /// Zeus's `MAXPOWER`: the largest power limit in the merged trace, in watts.
    pub max_power: f64,
    /// The feasible batch sizes (every batch size with train and power rows), ascending.
    pub batch_sizes: Vec<BatchSizeTrace>,
}

impl JobTrace {
    /// Picks the workload's rows out of the trace.
    ///
    /// Fails when the trace has no row for the workload's (dataset, network,
    /// optimizer), or none at its target metric.
    pub fn new(trace: &Trace, workload: &Workload, gpu: &str) -> Result<JobTrace, SimError> {
        let max_power = trace.max_power().ok_or(SimError::EmptyMerge)? as f64;
        let is_job = |c: &Configuration| {
            c.dataset == workload.dataset
                && c.network == workload.network
                && c.optimizer == workload.optimizer
        };
        let index = trace.power_index();
        let mut by_bs: BTreeMap<u32, BatchSizeTrace> = BTreeMap::new();
        let mut targets_seen: Vec<f64> = Vec::new();
        for t in trace.train.iter().filter(|t| is_job(&t.config)) {
            let Some(power_rows) = index.get(&t.config) else {
                continue;
            };
            let entry = by_bs.entry(t.config.batch_size).or_insert_with(|| {
                let mut limits: Vec<PowerPoint> = power_rows
                    .iter()
                    .map(|&i| {
                        let p = &trace.power[i];
                        PowerPoint {
                            power_limit: p.power_limit,
                            time_per_epoch: p.time_per_epoch,
                            average_power: p.average_power,
                            energy_per_epoch: p.time_per_epoch * p.average_power,
                        }
                    })
                    .collect();
                limits.sort_by_key(|p| p.power_limit);
                BatchSizeTrace {
                    batch_size: t.config.batch_size,
                    target_epochs: Vec::new(),
                    limits,
                }
            });
            if t.target_metric == workload.target_metric {
                entry.target_epochs.push(t.target_epoch);
            } else if !targets_seen.contains(&t.target_metric) {
                targets_seen.push(t.target_metric);
            }
        }
        if by_bs.is_empty() {
            return Err(SimError::NoRows {
                workload: format!(
                    "{}/{}/{}",
                    workload.dataset, workload.network, workload.optimizer
                ),
            });
        }
        if by_bs.values().all(|b| b.target_epochs.is_empty()) {
            targets_seen.sort_by(f64::total_cmp);
            return Err(SimError::NoTarget {
                target_metric: workload.target_metric,
                available: targets_seen
                    .iter()
                    .map(|t| t.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        Ok(JobTrace {
            workload: workload.clone(),
            gpu: gpu.to_string(),
            max_power,
            batch_sizes: by_bs.into_values().collect(),
        })
    }

    /// The batch size's slice.
    pub fn batch_size(&self, batch_size: u32) -> Option<&BatchSizeTrace> {
        self.batch_sizes
            .binary_search_by_key(&batch_size, |b| b.batch_size)
            .ok()
            .map(|i| &self.batch_sizes[i])
    }

    /// The feasible batch sizes, ascending.
    pub fn batch_size_list(&self) -> Vec<u32> {
        self.batch_sizes.iter().map(|b| b.batch_size).collect()
    }
}
