//! `wattwise._native`: the agent's energy meter for Python, in-process. The
//! Python package (`wattwise.Monitor`, `wattwise.ZeusMonitor`) wraps [`Meter`];
//! nothing here is meant to be called directly.
//!
//! A [`Meter`] opens NVML, selects its GPUs as the agent does
//! ([`select_on_host`]: the `gpus` string as `--gpus`, else
//! `CUDA_VISIBLE_DEVICES`, else `NVIDIA_VISIBLE_DEVICES`, else all), and starts
//! one [`Stopwatch`]: windows are pairs of its readings, and their energy is its
//! [`Stopwatch::measurement`]. When a GPU is measured by sampled power (no
//! counter, or a coarse one) a sampler thread takes the stopwatch's power
//! samples until the meter is dropped.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use wattwise_agent::nvml::energy_meter::{combined, power_interval, Reading, Stopwatch};
use wattwise_agent::nvml::gpu::NvmlGpus;
use wattwise_agent::nvml::selection::{cuda_devices_on_host, select_on_host};

// The Python package's exception (wattwise.monitor.MonitorError), so Python
// code catches one class whether the error comes from here or from Python.
pyo3::import_exception!(wattwise.monitor, MonitorError);

/// The version of the wattwise build this extension comes from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The NVML indices of this process's CUDA devices `indices` (Zeus's
/// `gpu_indices`), in their order; `None`: every visible one, CUDA indices
/// `0..n`. CUDA's numbering is the agent's reading of `CUDA_VISIBLE_DEVICES`
/// (else `NVIDIA_VISIBLE_DEVICES`, else every GPU, in CUDA's order). An index
/// not visible, or two that are one GPU, is a ValueError naming it;
/// MonitorError when the GPUs cannot be read.
#[pyfunction]
#[pyo3(signature = (indices=None))]
fn cuda_gpus(indices: Option<Vec<i64>>) -> PyResult<Vec<u32>> {
    let nvml = NvmlGpus::open().map_err(monitor_error)?;
    let devices = cuda_devices_on_host(&nvml).map_err(|e| monitor_error(format!("{e:#}")))?;
    devices
        .nvml_indices(indices.as_deref())
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// NVML and the one stopwatch, shared with the sampler thread.
struct Shared {
    gpus: NvmlGpus,
    clock: Stopwatch,
}

/// The sampler thread and its stop flag.
struct Sampler {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// One window's measurement as Python gets it, in the order of the fields of
/// `wattwise.monitor.Measurement`: time s, {NVML index: J}, {index: bound J},
/// {index: source}, the sources combined, the total's bound J, the warning.
type Window<'py> = (
    f64,
    Bound<'py, PyDict>,
    Bound<'py, PyDict>,
    Bound<'py, PyDict>,
    &'static str,
    f64,
    Option<String>,
);

/// The GPUs' energy over named windows (see the module docs).
#[pyclass(frozen)]
struct Meter {
    shared: Arc<Mutex<Shared>>,
    windows: Mutex<HashMap<String, Reading>>,
    indices: Vec<u32>,
    sampling: bool,
    _sampler: Option<Sampler>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn monitor_error(e: impl std::fmt::Display) -> PyErr {
    MonitorError::new_err(format!("wattwise.Monitor: {e}"))
}

impl Meter {
    fn reading(&self) -> PyResult<Reading> {
        let mut shared = lock(&self.shared);
        let Shared { gpus, clock } = &mut *shared;
        clock.reading(gpus).map_err(monitor_error)
    }
}

#[pymethods]
impl Meter {
    /// Opens NVML and starts the stopwatch over the selected GPUs. `gpus`: the
    /// agent's `--gpus` syntax (NVML indices or UUIDs, comma-separated, or
    /// `all`); `None` selects as the agent does. `power_interval_s`: seconds
    /// between power samples of sampled GPUs.
    #[new]
    #[pyo3(signature = (gpus=None, power_interval_s=0.1))]
    fn new(gpus: Option<&str>, power_interval_s: f64) -> PyResult<Self> {
        let interval = power_interval(power_interval_s)
            .map_err(|e| PyValueError::new_err(format!("power_interval: {e}")))?;
        let nvml = NvmlGpus::open().map_err(monitor_error)?;
        let (_, selection) = select_on_host(&nvml, gpus)
            .map_err(|e| monitor_error(format!("{e:#}").replace("--gpus", "gpus")))?;
        let indices = selection.gpus();
        let clock = Stopwatch::start(&nvml, &indices, interval).map_err(monitor_error)?;
        let sampling = clock.sampling();
        let shared = Arc::new(Mutex::new(Shared { gpus: nvml, clock }));
        let sampler = sampling.then(|| {
            let stop = Arc::new(AtomicBool::new(false));
            let (shared, flag) = (shared.clone(), stop.clone());
            let thread = std::thread::Builder::new()
                .name("wattwise-sampler".into())
                .spawn(move || {
                    while !flag.load(Ordering::Relaxed) {
                        let wait = {
                            let mut shared = lock(&shared);
                            let Shared { gpus, clock } = &mut *shared;
                            // A failed sample is retried at the next tick; the
                            // window's reading reports a lasting failure.
                            clock.tick(gpus, interval).unwrap_or(interval)
                        };
                        std::thread::park_timeout(wait.max(Duration::from_micros(100)));
                    }
                })
                .ok();
            Sampler { stop, thread }
        });
        Ok(Meter {
            shared,
            windows: Mutex::new(HashMap::new()),
            indices,
            sampling,
            _sampler: sampler,
        })
    }

    /// The measured GPUs' NVML indices, ascending.
    #[getter]
    fn gpus(&self) -> Vec<u32> {
        self.indices.clone()
    }

    /// Whether any GPU is measured by sampled power (a sampler thread runs).
    #[getter]
    fn sampling(&self) -> bool {
        self.sampling
    }

    /// The names of the open windows.
    #[getter]
    fn open_windows(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.windows).keys().cloned().collect();
        names.sort();
        names
    }

    /// Opens the window `name` now (ValueError if one of that name is open).
    fn begin(&self, name: &str) -> PyResult<()> {
        if lock(&self.windows).contains_key(name) {
            return Err(PyValueError::new_err(format!(
                "window {name:?} is already open: end it before beginning it again"
            )));
        }
        let reading = self.reading()?;
        // Checked again: another thread may have opened it meanwhile.
        match lock(&self.windows).entry(name.to_string()) {
            std::collections::hash_map::Entry::Occupied(_) => Err(PyValueError::new_err(format!(
                "window {name:?} is already open: end it before beginning it again"
            ))),
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(reading);
                Ok(())
            }
        }
    }

    /// Closes the window `name` now and answers its measurement (ValueError if
    /// no window of that name is open). `cancel`: close it without reading.
    #[pyo3(signature = (name, cancel=false))]
    fn end<'py>(&self, py: Python<'py>, name: &str, cancel: bool) -> PyResult<Option<Window<'py>>> {
        let Some(begin) = lock(&self.windows).remove(name) else {
            return Err(PyValueError::new_err(format!(
                "no window {name:?} is open (open windows: {:?})",
                self.open_windows()
            )));
        };
        if cancel {
            return Ok(None);
        }
        let end = self.reading()?;
        let m = lock(&self.shared).clock.measurement(&begin, &end);
        let (energy, bound, source) = (PyDict::new(py), PyDict::new(py), PyDict::new(py));
        for (k, &gpu) in m.gpus.iter().enumerate() {
            energy.set_item(gpu, m.energy_j[k])?;
            bound.set_item(gpu, m.uncertainty_j[k])?;
            source.set_item(gpu, m.sources[k].name())?;
        }
        Ok(Some((
            m.time_s,
            energy,
            bound,
            source,
            combined(&m.sources),
            m.total_uncertainty_j,
            m.warning,
        )))
    }
}

/// The module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add_function(wrap_pyfunction!(cuda_gpus, m)?)?;
    m.add_class::<Meter>()?;
    Ok(())
}
