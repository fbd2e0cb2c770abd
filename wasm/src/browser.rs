//! Browser bindings for the what-if page: JavaScript conversion around the core's
//! simulator front end (`wattwise_core::sim::catalog` and `sweep`).
//!
//! Everything crosses the boundary as plain JavaScript objects, converted with
//! `serde-wasm-bindgen`'s JSON-compatible serializer, so a value has the same
//! shape as the core's serde types and as `wattwise simulate --format json`
//! (a `SimReport` here is the same document the command line prints). Which job a
//! request means, the knob checks, the sweep and its summary rows are the core's:
//! the page and the command line agree by construction.
//!
//! - [`Simulator`] holds a catalog: the Zeus traces built into the core, the
//!   synthetic workload, or a user's train trace with one power trace per GPU.
//! - [`Simulator::simulate`] runs one simulation, [`Simulator::baselines`] the
//!   default and oracle baselines, [`Simulator::sweep`] a grid of simulations
//!   (workload x GPU pairs x etas x seeds x recurrences) with a progress callback,
//!   [`Simulator::closest`] the workload closest to a live job ("simulate this job").
//!
//! Errors are thrown as JavaScript `Error`s whose message names the field and the
//! rule; a malformed trace's error also carries `trace`, `file`, `line` and
//! `column` properties.

use std::ops::ControlFlow;

use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;
use wattwise_core::sim::workload::ZEUS_GPUS;
use wattwise_core::sim::{
    Catalog, PowerFile, SimError, SimSummary, SimulateSpec, SweepSpec, Target, TraceError,
};
use wattwise_core::spec::JobParams;
use wattwise_core::wire::PowerProfile;

/// Why a binding call failed, before it becomes a JavaScript `Error`.
#[derive(Debug, thiserror::Error)]
pub enum BrowserError {
    /// The simulator refused the inputs.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// A request object does not have the expected shape.
    #[error("request: {0}")]
    Request(String),
}

impl From<BrowserError> for JsValue {
    fn from(e: BrowserError) -> JsValue {
        let err = js_sys::Error::new(&e.to_string());
        let set = |k: &str, v: JsValue| {
            // Setting a property on a fresh Error object cannot fail.
            let _ = js_sys::Reflect::set(&err, &JsValue::from_str(k), &v);
        };
        if let BrowserError::Sim(SimError::TraceFile { file, source }) = &e {
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

/// A catalog of traces, ready to simulate; jobs compiled out of it are cached.
#[wasm_bindgen]
pub struct Simulator {
    catalog: Catalog,
}

#[wasm_bindgen]
impl Simulator {
    /// The Zeus NSDI '23 traces built into the core: six workloads on four GPUs.
    pub fn zeus() -> Result<Simulator, JsValue> {
        Ok(Simulator {
            catalog: Catalog::zeus().map_err(BrowserError::from)?,
        })
    }

    /// The built-in synthetic workload (no files needed), as `wattwise simulate`
    /// with no flag runs it.
    pub fn synthetic() -> Simulator {
        Simulator {
            catalog: Catalog::synthetic(),
        }
    }

    /// Parses a user's train trace and power traces.
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
        let powers: Vec<PowerFile> = from_js(powers)?;
        Ok(Simulator {
            catalog: Catalog::from_csv(train_name, train_text, &powers)
                .map_err(BrowserError::from)?,
        })
    }

    /// What the traces offer: `{ source, synthetic, gpus, workloads: [{ workload, gpus }] }`.
    pub fn options(&mut self) -> Result<JsValue, JsValue> {
        Ok(to_js(&self.catalog.options())?)
    }

    /// Runs one simulation: `{ gpu, dataset | workload, eta, beta, recurrences,
    /// seed }` (beta `null`: no early stopping) -> the report, the same document
    /// as `wattwise simulate --format json`.
    pub fn simulate(&mut self, request: JsValue) -> Result<JsValue, JsValue> {
        let spec: SimulateSpec = from_js(request)?;
        let report = self.catalog.simulate(&spec).map_err(BrowserError::from)?;
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
        let b = self
            .catalog
            .baselines(&req.target, req.eta)
            .map_err(BrowserError::from)?;
        Ok(to_js(&b)?)
    }

    /// "Simulate this job": the loaded traces' workload closest to a live job,
    /// `{ params, profiles }` (the job document's `params` and its power profiles,
    /// as GET /jobs/{id} and /jobs/{id}/profiles answer them) -> `{ dataset, gpu,
    /// gpu_match, default_batch_size, batch_sizes: [{ job, trace }], eta, beta,
    /// policy, distance }`. The rules are the core's (`wattwise_core::sim::closest`).
    pub fn closest(&mut self, request: JsValue) -> Result<JsValue, JsValue> {
        #[derive(Deserialize)]
        struct Req {
            params: JobParams,
            #[serde(default)]
            profiles: Vec<PowerProfile>,
        }
        let req: Req = from_js(request)?;
        let c = self
            .catalog
            .closest(&req.params, &req.profiles)
            .map_err(BrowserError::from)?;
        Ok(to_js(&c)?)
    }

    /// Runs a grid of simulations: `{ pairs?: [{ gpu, dataset | workload }], gpu,
    /// dataset | workload, etas: [], seeds: [], recurrences: [], beta }`, pairs
    /// outermost, then etas, seeds and recurrences. Calls `progress(done, total)`
    /// after each simulation when given (a throw cancels the sweep and is
    /// rethrown). Returns one summary row per simulation.
    pub fn sweep(
        &mut self,
        request: JsValue,
        progress: Option<js_sys::Function>,
    ) -> Result<JsValue, JsValue> {
        let spec: SweepSpec = from_js(request)?;
        let mut rows: Vec<SimSummary> = Vec::with_capacity(spec.len().min(1 << 16));
        let mut thrown: Option<JsValue> = None;
        self.catalog
            .sweep(&spec, |p, report| {
                rows.push(SimSummary::of(&report));
                let Some(f) = &progress else {
                    return ControlFlow::Continue(());
                };
                match f.call2(
                    &JsValue::NULL,
                    &JsValue::from(p.done as u32),
                    &JsValue::from(p.total as u32),
                ) {
                    Ok(_) => ControlFlow::Continue(()),
                    Err(e) => {
                        thrown = Some(e);
                        ControlFlow::Break(())
                    }
                }
            })
            .map_err(BrowserError::from)?;
        if let Some(e) = thrown {
            return Err(e);
        }
        Ok(to_js(&rows)?)
    }
}

/// The Zeus GPUs (`summary_power_{gpu}.csv`), to name uploaded power traces.
#[wasm_bindgen(js_name = zeusGpus)]
pub fn zeus_gpus() -> Vec<String> {
    ZEUS_GPUS.iter().map(|g| g.to_string()).collect()
}
