//! Browser bindings for the what-if page: a thin facade over the core's simulator.
//!
//! Everything crosses the boundary as plain JavaScript objects, converted with
//! `serde-wasm-bindgen`'s JSON-compatible serializer, so a value has the same
//! shape as the core's serde types and as `wattwise simulate --format json`
//! (a [`SimReport`] here is the same document the command line prints).
//!
//! - [`Simulator`] holds parsed traces: the built-in synthetic workload, or a
//!   Zeus train trace with one power trace per GPU.
//! - [`Simulator::simulate`] runs one simulation, [`Simulator::baselines`] the
//!   default and oracle baselines, [`Simulator::sweep`] a grid of simulations
//!   (workload x GPU pairs x etas x seeds x recurrences) with a progress callback.
//!
//! Errors are thrown as JavaScript `Error`s whose message names the field and the
//! rule; a malformed trace's error also carries `trace`, `file`, `line` and
//! `column` properties.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wattwise_core::sim::synthetic::{
    synthetic_trace, synthetic_workload, SYNTHETIC_GPU, SYNTHETIC_TRACE_SEED,
};
use wattwise_core::sim::trace::{parse_power, parse_train, PowerRow, TrainRow};
use wattwise_core::sim::workload::{ZEUS_GPUS, ZEUS_WORKLOADS};
use wattwise_core::sim::{
    baselines, Baselines, JobTrace, SimConfig, SimError, SimReport, Trace, TraceError, Workload,
};

/// Why a binding call failed, before it becomes a JavaScript `Error`.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// A trace file is malformed.
    #[error("{file}: {source}")]
    Trace {
        /// The file's name (as the page knows it).
        file: String,
        /// What is wrong, and where.
        source: TraceError,
    },
    /// The simulator refused the inputs.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A request object does not have the expected shape.
    #[error("request: {0}")]
    Request(String),
    /// The GPU is not among the loaded power traces.
    #[error("gpu: {gpu:?} is not loaded (loaded: {loaded})")]
    UnknownGpu {
        /// The asked GPU.
        gpu: String,
        /// The loaded GPUs.
        loaded: String,
    },
    /// The dataset is neither a Zeus workload nor the synthetic one, and no workload was given.
    #[error("dataset: {0:?} is not a known workload; pass a full `workload` object (dataset, network, optimizer, target_metric, max_epochs, default_batch_size)")]
    UnknownDataset(String),
    /// A knob is out of range.
    #[error("{knob}: {rule}")]
    Knob {
        /// The knob.
        knob: &'static str,
        /// The rule.
        rule: &'static str,
    },
}

impl From<BrowserError> for JsValue {
    fn from(e: BrowserError) -> JsValue {
        let err = js_sys::Error::new(&e.to_string());
        let set = |k: &str, v: JsValue| {
            // Setting a property on a fresh Error object cannot fail.
            let _ = js_sys::Reflect::set(&err, &JsValue::from_str(k), &v);
        };
        if let BrowserError::Trace { file, source } = &e {
            set("file", file.as_str().into());
            match source {
                TraceError::Empty { trace, .. } => {
                    set("trace", (*trace).into());
                    set("line", 1.into());
                }
                TraceError::MissingColumn { trace, column } => {
                    set("trace", (*trace).into());
                    set("line", 1.into());
                    set("column", (*column).into());
                }
                TraceError::BadCell {
                    trace,
                    line,
                    column,
                    ..
                } => {
                    set("trace", (*trace).into());
                    set("line", (*line as u32).into());
                    set("column", (*column).into());
                }
                TraceError::RowLength { trace, line, .. } => {
                    set("trace", (*trace).into());
                    set("line", (*line as u32).into());
                }
                TraceError::DuplicatePower { line, .. } => {
                    set("trace", "power".into());
                    set("line", (*line as u32).into());
                }
            }
        }
        err.into()
    }
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, BrowserError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| BrowserError::Request(e.to_string()))
}

fn from_js<T: for<'de> Deserialize<'de>>(value: JsValue) -> Result<T, BrowserError> {
    serde_wasm_bindgen::from_value(value).map_err(|e| {
        // serde-wasm-bindgen's errors are JavaScript errors: drop their "Error: " prefix.
        let text = e.to_string();
        BrowserError::Request(text.strip_prefix("Error: ").unwrap_or(&text).to_string())
    })
}

/// Which workload a request means: a dataset name (a Zeus workload, or
/// `synthetic`), or a full workload.
#[derive(Clone, Debug, Default, Deserialize)]
struct Target {
    /// The power trace's GPU (default: the first loaded).
    #[serde(default)]
    gpu: Option<String>,
    /// A Zeus dataset, or `synthetic` (default: the first workload available).
    #[serde(default)]
    dataset: Option<String>,
    /// A full workload, instead of `dataset`.
    #[serde(default)]
    workload: Option<Workload>,
}

/// One simulation's knobs, as the page sends them.
#[derive(Clone, Debug, Deserialize)]
struct SimulateRequest {
    #[serde(flatten)]
    target: Target,
    eta: f64,
    /// Early stopping threshold; `null` or absent disables it (JSON has no infinity).
    #[serde(default)]
    beta: Option<f64>,
    recurrences: u32,
    seed: u64,
}

/// A grid of simulations.
#[derive(Clone, Debug, Deserialize)]
struct SweepRequest {
    /// Workload x GPU pairs (default: the one of `target`).
    #[serde(default)]
    pairs: Option<Vec<Target>>,
    #[serde(flatten)]
    target: Target,
    etas: Vec<f64>,
    seeds: Vec<u64>,
    recurrences: Vec<u32>,
    #[serde(default)]
    beta: Option<f64>,
}

/// One simulation of a sweep, summarized (the columns of `wattwise simulate`'s
/// sweep CSV, plus the pair, and the baselines' totals).
#[derive(Clone, Debug, Serialize)]
struct SweepRow {
    dataset: String,
    gpu: String,
    eta: f64,
    seed: u64,
    recurrences: u32,
    cum_energy: f64,
    cum_time: f64,
    cum_cost: f64,
    default_energy: f64,
    default_time: f64,
    default_cost: f64,
    oracle_energy: f64,
    oracle_time: f64,
    oracle_cost: f64,
    regret: f64,
    savings_vs_default: f64,
}

impl SweepRow {
    fn new(r: &SimReport) -> SweepRow {
        let n = r.recurrences as f64;
        let (d, o) = (&r.baselines.default, &r.baselines.oracle);
        SweepRow {
            dataset: r.workload.dataset.clone(),
            gpu: r.gpu.clone(),
            eta: r.config.eta_knob,
            seed: r.config.seed,
            recurrences: r.recurrences,
            cum_energy: r.total_energy(),
            cum_time: r.total_time(),
            cum_cost: r.total_cost(),
            default_energy: d.energy * n,
            default_time: d.time * n,
            default_cost: d.cost * n,
            oracle_energy: o.energy * n,
            oracle_time: o.time * n,
            oracle_cost: o.cost * n,
            regret: r.regret.last().copied().unwrap_or(0.0),
            savings_vs_default: r.savings_vs_default(),
        }
    }
}

/// A workload the loaded traces can simulate, as [`Simulator::options`] lists it.
#[derive(Clone, Debug, Serialize)]
struct WorkloadOption {
    /// The workload (its default batch size capped to the first GPU that has it).
    workload: Workload,
    /// The GPUs whose power trace has rows for it.
    gpus: Vec<String>,
}

/// What the loaded traces offer.
#[derive(Clone, Debug, Serialize)]
struct Options {
    synthetic: bool,
    gpus: Vec<String>,
    workloads: Vec<WorkloadOption>,
}

/// Parsed traces, ready to simulate: the synthetic workload, or a Zeus train
/// trace with one power trace per GPU. Compiled jobs are cached per (GPU, workload).
#[wasm_bindgen]
pub struct Simulator {
    synthetic: bool,
    /// Per GPU, in load order: the train trace joined with that GPU's power trace.
    traces: Vec<(String, Trace)>,
    jobs: HashMap<(String, String), JobTrace>,
}

fn knob_beta(beta: Option<f64>) -> f64 {
    beta.unwrap_or(f64::INFINITY)
}

fn check_sizes(n: usize) -> Result<(), BrowserError> {
    if n == 0 {
        return Err(BrowserError::Knob {
            knob: "sweep",
            rule: "needs at least one eta, one seed, one recurrence count and one pair",
        });
    }
    if n > 1_000_000 {
        return Err(BrowserError::Knob {
            knob: "sweep",
            rule: "at most 1,000,000 simulations at once",
        });
    }
    Ok(())
}

impl Simulator {
    fn power_names(&self) -> String {
        self.traces
            .iter()
            .map(|(g, _)| g.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The workload a target means, before capping.
    fn workload_of(&self, target: &Target) -> Result<(Workload, bool), BrowserError> {
        if let Some(w) = &target.workload {
            return Ok((w.clone(), false));
        }
        let dataset = match &target.dataset {
            Some(d) => d.clone(),
            None if self.synthetic => synthetic_workload().dataset,
            None => ZEUS_WORKLOADS[0].0.to_string(),
        };
        if self.synthetic && dataset == synthetic_workload().dataset {
            return Ok((synthetic_workload(), false));
        }
        Workload::zeus(&dataset)
            .map(|w| (w, true))
            .ok_or(BrowserError::UnknownDataset(dataset))
    }

    /// The compiled job of a target, as `wattwise simulate` builds it: a Zeus
    /// workload's default batch size is capped to the GPU's largest.
    fn job(&mut self, target: &Target) -> Result<&JobTrace, BrowserError> {
        let gpu = match &target.gpu {
            Some(g) => g.clone(),
            None => self.traces[0].0.clone(),
        };
        let (workload, cap) = self.workload_of(target)?;
        let key = (gpu.clone(), serde_json_key(&workload));
        if !self.jobs.contains_key(&key) {
            let Some((_, trace)) = self.traces.iter().find(|(g, _)| *g == gpu) else {
                return Err(BrowserError::UnknownGpu {
                    gpu,
                    loaded: self.power_names(),
                });
            };
            let mut job = JobTrace::new(trace, &workload, &gpu)?;
            if cap {
                let capped = workload.capped_to(&job);
                job = JobTrace::new(trace, &capped, &gpu)?;
            }
            self.jobs.insert(key.clone(), job);
        }
        Ok(&self.jobs[&key])
    }
}

/// A cache key for a workload (its fields, in order).
fn serde_json_key(w: &Workload) -> String {
    format!(
        "{}\u{1f}{}\u{1f}{}\u{1f}{:?}\u{1f}{}\u{1f}{}",
        w.dataset, w.network, w.optimizer, w.target_metric, w.max_epochs, w.default_batch_size
    )
}

#[wasm_bindgen]
impl Simulator {
    /// The built-in synthetic workload (no files needed), as `wattwise simulate`
    /// with no trace runs it.
    pub fn synthetic() -> Simulator {
        Simulator {
            synthetic: true,
            traces: vec![(
                SYNTHETIC_GPU.to_string(),
                synthetic_trace(SYNTHETIC_TRACE_SEED),
            )],
            jobs: HashMap::new(),
        }
    }

    /// Parses a Zeus train trace and power traces.
    ///
    /// `powers` is an array of `{ gpu, name, text }` (name: the file's name, for
    /// error messages). A malformed file throws an `Error` naming the file, the
    /// line and the column, with `file`, `trace`, `line` and `column` properties.
    #[wasm_bindgen(js_name = fromCsv)]
    pub fn from_csv(
        train_name: &str,
        train_text: &str,
        powers: JsValue,
    ) -> Result<Simulator, JsValue> {
        #[derive(Deserialize)]
        struct PowerFile {
            gpu: String,
            name: String,
            text: String,
        }
        let powers: Vec<PowerFile> = from_js(powers)?;
        if powers.is_empty() {
            return Err(BrowserError::Request("give at least one power trace".into()).into());
        }
        let train: Vec<TrainRow> =
            parse_train(train_text).map_err(|source| BrowserError::Trace {
                file: train_name.to_string(),
                source,
            })?;
        let mut traces = Vec::with_capacity(powers.len());
        for p in powers {
            let power: Vec<PowerRow> =
                parse_power(&p.text).map_err(|source| BrowserError::Trace {
                    file: p.name.clone(),
                    source,
                })?;
            if traces.iter().any(|(g, _): &(String, Trace)| *g == p.gpu) {
                return Err(
                    BrowserError::Request(format!("two power traces for gpu {:?}", p.gpu)).into(),
                );
            }
            traces.push((
                p.gpu,
                Trace {
                    train: train.clone(),
                    power,
                },
            ));
        }
        Ok(Simulator {
            synthetic: false,
            traces,
            jobs: HashMap::new(),
        })
    }

    /// What the traces offer: `{ synthetic, gpus, workloads: [{ workload, gpus }] }`.
    /// With Zeus traces, the Zeus workloads that at least one GPU can simulate.
    pub fn options(&mut self) -> Result<JsValue, JsValue> {
        let gpus: Vec<String> = self.traces.iter().map(|(g, _)| g.clone()).collect();
        let datasets: Vec<String> = if self.synthetic {
            vec![synthetic_workload().dataset]
        } else {
            ZEUS_WORKLOADS.iter().map(|w| w.0.to_string()).collect()
        };
        let mut workloads = Vec::new();
        for dataset in datasets {
            let mut first: Option<Workload> = None;
            let mut ok = Vec::new();
            for gpu in &gpus {
                let target = Target {
                    gpu: Some(gpu.clone()),
                    dataset: Some(dataset.clone()),
                    workload: None,
                };
                if let Ok(job) = self.job(&target) {
                    first.get_or_insert_with(|| job.workload.clone());
                    ok.push(gpu.clone());
                }
            }
            if let Some(workload) = first {
                workloads.push(WorkloadOption { workload, gpus: ok });
            }
        }
        Ok(to_js(&Options {
            synthetic: self.synthetic,
            gpus,
            workloads,
        })?)
    }

    /// Runs one simulation: `{ gpu, dataset | workload, eta, beta, recurrences,
    /// seed }` (beta `null`: no early stopping) -> the report, the same document
    /// as `wattwise simulate --format json`.
    pub fn simulate(&mut self, request: JsValue) -> Result<JsValue, JsValue> {
        let req: SimulateRequest = from_js(request)?;
        if req.recurrences == 0 {
            return Err(BrowserError::Knob {
                knob: "recurrences",
                rule: "must be at least 1",
            }
            .into());
        }
        let cfg = SimConfig {
            eta_knob: req.eta,
            beta_knob: knob_beta(req.beta),
            seed: req.seed,
        };
        let job = self.job(&req.target)?;
        let report = SimReport::run(job, req.recurrences, &cfg).map_err(BrowserError::from)?;
        Ok(to_js(&report)?)
    }

    /// The default and oracle baselines of `{ gpu, dataset | workload, eta }`.
    pub fn baselines(&mut self, request: JsValue) -> Result<JsValue, JsValue> {
        #[derive(Deserialize)]
        struct Req {
            #[serde(flatten)]
            target: Target,
            eta: f64,
        }
        let req: Req = from_js(request)?;
        if !(0.0..=1.0).contains(&req.eta) {
            return Err(BrowserError::Knob {
                knob: "eta",
                rule: "must be in [0, 1]",
            }
            .into());
        }
        let job = self.job(&req.target)?;
        let b: Baselines = baselines(job, req.eta).map_err(BrowserError::from)?;
        Ok(to_js(&b)?)
    }

    /// Runs a grid of simulations: `{ pairs?: [{ gpu, dataset | workload }], gpu,
    /// dataset | workload, etas: [], seeds: [], recurrences: [], beta }`, pairs
    /// outermost, then etas, seeds and recurrences. Calls `progress(done, total)`
    /// after each simulation when given. Returns one summary row per simulation.
    pub fn sweep(
        &mut self,
        request: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let req: SweepRequest = from_js(request)?;
        let pairs = req
            .pairs
            .clone()
            .unwrap_or_else(|| vec![req.target.clone()]);
        let total = pairs
            .len()
            .saturating_mul(req.etas.len())
            .saturating_mul(req.seeds.len())
            .saturating_mul(req.recurrences.len());
        check_sizes(total)?;
        if req.recurrences.contains(&0) {
            return Err(BrowserError::Knob {
                knob: "recurrences",
                rule: "must be at least 1",
            }
            .into());
        }
        let beta = knob_beta(req.beta);
        let mut rows = Vec::with_capacity(total);
        for pair in &pairs {
            let job = self.job(pair)?;
            for &eta in &req.etas {
                for &seed in &req.seeds {
                    for &n in &req.recurrences {
                        let cfg = SimConfig {
                            eta_knob: eta,
                            beta_knob: beta,
                            seed,
                        };
                        let report = SimReport::run(job, n, &cfg).map_err(BrowserError::from)?;
                        rows.push(SweepRow::new(&report));
                        if let Some(f) = &progress {
                            f.call2(
                                &JsValue::NULL,
                                &JsValue::from(rows.len() as u32),
                                &JsValue::from(total as u32),
                            )?;
                        }
                    }
                }
            }
        }
        Ok(to_js(&rows)?)
    }
}

/// The Zeus GPUs (`summary_power_{gpu}.csv`), to name uploaded power traces.
#[wasm_bindgen(js_name = zeusGpus)]
pub fn zeus_gpus() -> Vec<String> {
    ZEUS_GPUS.iter().map(|g| g.to_string()).collect()
}
