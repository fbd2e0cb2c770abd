//! A fake `libnvidia-ml.so` for tests.
//!
//! Built as `libnvidia_ml.so`, it exports the NVML C functions the wattwise agent
//! calls through `nvml-wrapper` (which resolves every symbol lazily, so only these
//! must exist), so that tests run the agent's real NVML code path with no GPU.
//!
//! # Configuration (environment of the process that loads the library)
//!
//! | variable            | meaning                                              | default          |
//! |---------------------|------------------------------------------------------|------------------|
//! | `FAKE_NVML_COUNT`   | number of GPUs                                       | 1                |
//! | `FAKE_NVML_NAME`    | model name of every GPU                              | `Fake GPU F100`  |
//! | `FAKE_NVML_MIN_W`   | lowest power limit, W                                | 100              |
//! | `FAKE_NVML_MAX_W`   | highest (and default) power limit, W                 | 300              |
//! | `FAKE_NVML_LOAD`    | the load: power the work would draw unlimited, W     | 250              |
//! | `FAKE_NVML_KNEE`    | limit below which steps slow down sharply, W         | 200              |
//! | `FAKE_NVML_STATE`   | JSON state file shared by every process (see below)  | in-process only  |
//! | `FAKE_NVML_DENY`    | `1`: setting a power limit answers NO_PERMISSION     | off              |
//! | `FAKE_NVML_HISTORY` | JSON-lines file: one line per energy segment (below) | none             |
//! | `FAKE_NVML_CC`      | compute capability per GPU, `major.minor`, comma-separated (the last repeats) | `8.0` |
//! | `FAKE_NVML_MIG`     | MIG-enabled GPUs and their instance counts, `gpu:n,...` | none          |
//! | `FAKE_NVML_NO_ENERGY` | GPUs without the total energy counter (answers NOT_SUPPORTED, as before Volta): `all` or indices, comma-separated | none |
//! | `FAKE_NVML_LOAD_STEPS` | a load that steps over time, `W:seconds,...`, repeating over `CLOCK_MONOTONIC` (replaces `FAKE_NVML_LOAD` in the power and energy model) | constant |
//! | `FAKE_NVML_COUNTER_MS` | the energy counter moves only every this many ms (on multiples of it over `CLOCK_MONOTONIC`) | exact at every read |
//! | `FAKE_NVML_QUANTUM_MJ` | the counter reads as a multiple of this many mJ | 1 (whole mJ) |
//! | `FAKE_NVML_POWER_AVERAGE_MS` | `nvmlDeviceGetPowerUsage` is the mean power over this many ms, and `nvmlDeviceGetFieldValues` answers the instantaneous (186) and averaged (185) power fields | instantaneous, no fields |
//! | `FAKE_NVML_SENSOR_DUTY` | the sensor samples only this fraction of each counter period (the counter adds the power of that part times the whole period; the instantaneous field shows it), as on A100/H100 | 1 |
//! | `FAKE_NVML_DRIFT` | the counter counts this fraction too much (`0.02`: 2 %) against the power drawn | 0 |
//!
//! # Identity
//!
//! GPU `i` has the UUID `GPU-fa4e0000-0000-4000-8000-0000000000ii` (`i` in hex, 12
//! digits), the PCI bus id `00000000:XX:00.0` with `XX = 0x10 + i` in hex, and MIG
//! instance `j` of GPU `i` the UUID `MIG-fa4e00ii-00jj-4000-8000-000000000000`
//! (`ii`, `jj` in hex, 2 digits). GPUs of compute capability below 8.0 answer
//! NOT_SUPPORTED for their MIG mode, as pre-Ampere GPUs do.
//!
//! # Model
//!
//! - Power drawn: `P = min(limit, load)` (mW), constant while the limit and the
//!   load are (with `FAKE_NVML_LOAD_STEPS`, the load is a step function of time).
//! - Energy counter (mJ): the integral of `P` over `CLOCK_MONOTONIC` time since the
//!   state was created, computed exactly, steps included. It is the ground truth: a
//!   test that reads [`ground_truth_energy_mj`] (or calls the exported
//!   `fakeNvmlGroundTruthEnergy`, which answers even for GPUs without the counter)
//!   before and after a run knows the energy spent.
//! - Step time, for training scripts that emulate a workload on this GPU
//!   (`agent/examples/train.py` does, reading the limit from the state file):
//!   `t(limit) = base * (load / P)^0.3 * max(1, knee / limit)^3`. Capping power
//!   slows steps a little while the limit stays above the knee, and sharply below
//!   it, so the energy of a step, `P * t`, is lowest at the lowest limit above the
//!   knee, time is lowest at the highest limit, and the selectors in between
//!   differ. [`step_time_factor`] is the formula.
//!
//! # State file
//!
//! `{"gpus": [{"limit_mw": 300000, "energy_mj": 0.0, "since_ns": 123}, ...]}`:
//! per GPU the power limit, and the energy counter's value at `since_ns`
//! (`CLOCK_MONOTONIC`, ns), when the limit last changed. Written atomically
//! (temporary file and rename) under an `flock` on `<state>.lock`, so the
//! limits persist across processes (an agent killed with SIGKILL leaves its
//! limit there for the next one to find).
//!
//! # History
//!
//! With `FAKE_NVML_HISTORY` set, every change of a GPU's energy segment (its state
//! created, its limit set) appends a line `{"gpu": 0, "at_ns": 123, "energy_mj":
//! 0.0, "limit_mw": 300000}` ([`Segment`]): from `at_ns` on, the counter rises from
//! `energy_mj` at `min(limit, load)`. So a test knows the ground truth at any past
//! instant ([`energy_from_history`]), e.g. at the times a scraper read the counter.
//!
//! # Identity and lifetime
//!
//! GPU `i`'s UUID is `GPU-fa4e0000-0000-4000-8000-` followed by `i` in 12 hex
//! digits. `nvmlInit_v2` and `nvmlShutdown` are counted, as NVML's are: the
//! fake stays initialized until the last handle of the process shuts down.

use serde::{Deserialize, Serialize};
use std::ffi::{c_char, c_uint, c_ulonglong, c_void};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// NVML return codes used here.
pub mod ret {
    /// Success.
    pub const SUCCESS: u32 = 0;
    /// `nvmlInit` was not called.
    pub const UNINITIALIZED: u32 = 1;
    /// A bad argument (null pointer, unknown device, limit out of range).
    pub const INVALID_ARGUMENT: u32 = 2;
    /// The caller may not change this setting.
    pub const NO_PERMISSION: u32 = 4;
    /// The device does not support this (an energy counter before Volta, MIG).
    pub const NOT_SUPPORTED: u32 = 3;
    /// Nothing at that index (an empty MIG slot).
    pub const NOT_FOUND: u32 = 6;
    /// A buffer is too small.
    pub const INSUFFICIENT_SIZE: u32 = 7;
    /// Anything else (state file unreadable).
    pub const UNKNOWN: u32 = 999;
}

/// The fake's configuration, read from the environment at `nvmlInit_v2`.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Number of GPUs.
    pub count: u32,
    /// Model name.
    pub name: String,
    /// Lowest limit, mW.
    pub min_mw: u32,
    /// Highest and default limit, mW.
    pub max_mw: u32,
    /// The load: unlimited power draw over time.
    pub load: Load,
    /// Shared state file.
    pub state: Option<PathBuf>,
    /// Refuse to set limits.
    pub deny: bool,
    /// The history file.
    pub history: Option<PathBuf>,
    /// Compute capability per GPU (the last entry repeats).
    pub cc: Vec<(i32, i32)>,
    /// `(gpu, instance count)` of the MIG-enabled GPUs.
    pub mig: Vec<(u32, u32)>,
    /// GPUs without the energy counter (`None`: all of them).
    pub no_energy: Option<Vec<u32>>,
}

/// The work's unlimited power draw over time.
#[derive(Clone, Debug, PartialEq)]
pub enum Load {
    /// Always this many mW.
    Constant(u32),
    /// `(mW, ns)` steps, repeating over `CLOCK_MONOTONIC` from 0.
    Steps(Vec<(u32, u64)>),
}

impl Load {
    /// Parses `FAKE_NVML_LOAD_STEPS` (`W:seconds,...`); `None` when empty or bad.
    pub fn parse_steps(text: &str) -> Option<Load> {
        let mut steps = Vec::new();
        for part in text.split(',').filter(|p| !p.trim().is_empty()) {
            let (w, secs) = part.split_once(':')?;
            let w: u32 = w.trim().parse().ok()?;
            let secs: f64 = secs.trim().parse().ok()?;
            if !(secs.is_finite() && secs > 0.0) {
                return None;
            }
            steps.push((w.saturating_mul(1000), (secs * 1e9) as u64));
        }
        (!steps.is_empty()).then_some(Load::Steps(steps))
    }

    fn period_ns(steps: &[(u32, u64)]) -> u64 {
        steps.iter().map(|s| s.1).sum::<u64>().max(1)
    }

    /// The load at `t_ns`, mW.
    pub fn at(&self, t_ns: u64) -> u32 {
        match self {
            Load::Constant(mw) => *mw,
            Load::Steps(steps) => {
                let mut r = t_ns % Load::period_ns(steps);
                for &(mw, len) in steps {
                    if r < len {
                        return mw;
                    }
                    r -= len;
                }
                steps[steps.len() - 1].0
            }
        }
    }

    /// The integral of `min(limit, load)` over `[0, t_ns]`, mW*ns (exact).
    fn integral(&self, limit_mw: u32, t_ns: u64) -> u128 {
        match self {
            Load::Constant(mw) => u128::from(power_mw(limit_mw, *mw)) * u128::from(t_ns),
            Load::Steps(steps) => {
                let period = Load::period_ns(steps);
                let per_period: u128 = steps
                    .iter()
                    .map(|&(mw, len)| u128::from(power_mw(limit_mw, mw)) * u128::from(len))
                    .sum();
                let mut total = per_period * u128::from(t_ns / period);
                let mut r = t_ns % period;
                for &(mw, len) in steps {
                    let d = r.min(len);
                    total += u128::from(power_mw(limit_mw, mw)) * u128::from(d);
                    r -= d;
                    if r == 0 {
                        break;
                    }
                }
                total
            }
        }
    }

    /// Energy drawn under `limit_mw` from `from_ns` to `to_ns`, mJ.
    pub fn energy_mj(&self, limit_mw: u32, from_ns: u64, to_ns: u64) -> f64 {
        if to_ns <= from_ns {
            return 0.0;
        }
        let e = self.integral(limit_mw, to_ns) - self.integral(limit_mw, from_ns);
        e as f64 / 1e9
    }
}

fn env_list<T>(name: &str, parse: impl Fn(&str) -> Option<T>) -> Vec<T> {
    std::env::var(name)
        .unwrap_or_default()
        .split(',')
        .filter_map(|p| parse(p.trim()))
        .collect()
}

fn env_u32(name: &str, default: u32) -> u32 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Config {
    /// Reads `FAKE_NVML_*` (unset or unparsable values take the defaults).
    pub fn from_env() -> Config {
        Config {
            count: env_u32("FAKE_NVML_COUNT", 1).min(64),
            name: std::env::var("FAKE_NVML_NAME").unwrap_or_else(|_| "Fake GPU F100".into()),
            min_mw: env_u32("FAKE_NVML_MIN_W", 100).saturating_mul(1000),
            max_mw: env_u32("FAKE_NVML_MAX_W", 300).saturating_mul(1000),
            load: std::env::var("FAKE_NVML_LOAD_STEPS")
                .ok()
                .and_then(|v| Load::parse_steps(&v))
                .unwrap_or(Load::Constant(
                    env_u32("FAKE_NVML_LOAD", 250).saturating_mul(1000),
                )),
            state: std::env::var_os("FAKE_NVML_STATE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            deny: std::env::var("FAKE_NVML_DENY").is_ok_and(|v| v == "1"),
            history: std::env::var_os("FAKE_NVML_HISTORY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            cc: {
                let cc = env_list("FAKE_NVML_CC", |p| {
                    let (a, b) = p.split_once('.')?;
                    Some((a.parse().ok()?, b.parse().ok()?))
                });
                if cc.is_empty() {
                    vec![(8, 0)]
                } else {
                    cc
                }
            },
            mig: env_list("FAKE_NVML_MIG", |p| {
                let (g, n) = p.split_once(':')?;
                Some((g.parse().ok()?, n.parse::<u32>().ok()?.min(7)))
            }),
            no_energy: match std::env::var("FAKE_NVML_NO_ENERGY") {
                Ok(v) if v.trim() == "all" => None,
                _ => Some(env_list("FAKE_NVML_NO_ENERGY", |p| p.parse().ok())),
            },
        }
    }

    /// Compute capability of GPU `i`.
    pub fn cc_of(&self, i: u32) -> (i32, i32) {
        self.cc[(i as usize).min(self.cc.len() - 1)]
    }

    /// MIG instances of GPU `i` (`None`: MIG disabled).
    pub fn mig_of(&self, i: u32) -> Option<u32> {
        self.mig.iter().find(|m| m.0 == i).map(|m| m.1)
    }

    /// Whether GPU `i` has the total energy counter.
    pub fn has_energy_counter(&self, i: u32) -> bool {
        match &self.no_energy {
            None => false,
            Some(list) => !list.contains(&i),
        }
    }
}

/// The UUID of GPU `i`.
pub fn gpu_uuid(i: u32) -> String {
    format!("GPU-fa4e0000-0000-4000-8000-{i:012x}")
}

/// The UUID of MIG instance `j` of GPU `i`.
pub fn mig_uuid(i: u32, j: u32) -> String {
    format!("MIG-fa4e00{i:02x}-00{j:02x}-4000-8000-000000000000")
}

/// The PCI bus id of GPU `i`.
pub fn pci_bus_id(i: u32) -> String {
    format!("00000000:{:02X}:00.0", 0x10 + i)
}

/// One GPU's persistent state.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GpuState {
    /// Current power limit, mW.
    pub limit_mw: u32,
    /// Energy counter at `since_ns`, mJ.
    pub energy_mj: f64,
    /// When the limit last changed, `CLOCK_MONOTONIC` ns.
    pub since_ns: u64,
}

/// Every GPU's state (the state file's content).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Per GPU, by index.
    pub gpus: Vec<GpuState>,
}

/// One line of the history file: from `at_ns` on, GPU `gpu`'s counter rises
/// from `energy_mj` at `min(limit_mw, load)`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    /// The GPU's index.
    pub gpu: usize,
    /// When the segment began, `CLOCK_MONOTONIC` ns.
    pub at_ns: u64,
    /// The counter then, mJ.
    pub energy_mj: f64,
    /// The power limit from then on, mW.
    pub limit_mw: u32,
}

/// GPU `gpu`'s energy counter at `at_ns` (mJ) from the history's segments (in
/// the order they were written); `None` before its first segment.
pub fn energy_from_history(
    segments: &[Segment],
    gpu: usize,
    load: &Load,
    at_ns: u64,
) -> Option<f64> {
    let seg = segments
        .iter()
        .rfind(|s| s.gpu == gpu && s.at_ns <= at_ns)?;
    let state = GpuState {
        limit_mw: seg.limit_mw,
        energy_mj: seg.energy_mj,
        since_ns: seg.at_ns,
    };
    Some(energy_at(&state, load, at_ns))
}

fn append_history(path: &Path, segments: &[Segment]) -> std::io::Result<()> {
    let mut text = String::new();
    for seg in segments {
        text.push_str(&serde_json::to_string(seg).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?
        .write_all(text.as_bytes())
}

/// `CLOCK_MONOTONIC` now, ns (the clock Python's `time.monotonic_ns` reads).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write into.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Power drawn under `limit_mw` by a load of `load_mw`, mW.
pub fn power_mw(limit_mw: u32, load_mw: u32) -> u32 {
    limit_mw.min(load_mw)
}

/// How much longer a step takes under `limit_mw` than unlimited, for a load of
/// `load_mw` and a knee at `knee_mw`.
pub fn step_time_factor(limit_mw: u32, load_mw: u32, knee_mw: u32) -> f64 {
    let p = power_mw(limit_mw, load_mw);
    if p == 0 || limit_mw == 0 {
        return f64::INFINITY;
    }
    let throttle = (f64::from(load_mw) / f64::from(p)).powf(0.3);
    let knee = (f64::from(knee_mw) / f64::from(limit_mw)).max(1.0);
    throttle * knee.powi(3)
}

/// The energy counter of `gpu` at `now_ns`, mJ.
pub fn energy_at(gpu: &GpuState, load: &Load, now_ns: u64) -> f64 {
    gpu.energy_mj + load.energy_mj(gpu.limit_mw, gpu.since_ns, now_ns)
}

/// The energy counters of every GPU in the state file at `path`, read now, mJ:
/// what a test uses as the ground truth.
pub fn ground_truth_energy_mj(path: &Path, load: &Load) -> std::io::Result<Vec<f64>> {
    let state = read_state(path)?;
    let now = monotonic_ns();
    Ok(state.gpus.iter().map(|g| energy_at(g, load, now)).collect())
}

fn read_state(path: &Path) -> std::io::Result<State> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(State::default()),
        Err(e) => Err(e),
    }
}

fn write_state(path: &Path, state: &State) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
    std::fs::rename(&tmp, path)
}

/// Holds an exclusive `flock` on `<state>.lock` while alive.
struct FileLock(std::fs::File);

impl FileLock {
    fn take(path: &Path) -> std::io::Result<FileLock> {
        let mut lock = path.as_os_str().to_owned();
        lock.push(".lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(PathBuf::from(lock))?;
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(FileLock(f))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid open file descriptor.
        unsafe { libc::flock(self.0.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// The simulated GPUs of one process.
struct Fake {
    config: Config,
    /// The state when there is no state file.
    local: State,
    /// `nvmlInit_v2` calls not yet matched by `nvmlShutdown`.
    inits: u32,
}

impl Fake {
    /// GPU `i`'s energy since the state was created, mJ.
    fn ground_truth(&mut self, i: usize) -> Result<f64, u32> {
        let load = self.config.load.clone();
        let now = monotonic_ns();
        self.with_state(|s| (energy_at(&s.gpus[i], &load, now), false))
    }

    fn fill(&self, state: &mut State, now: u64) {
        let first = state.gpus.len();
        while state.gpus.len() < self.config.count as usize {
            state.gpus.push(GpuState {
                limit_mw: self.config.max_mw,
                energy_mj: 0.0,
                since_ns: now,
            });
        }
        self.record(state, first..state.gpus.len());
    }

    /// Appends the current segments of GPUs `gpus` to the history file, if any.
    fn record(&self, state: &State, gpus: std::ops::Range<usize>) {
        let Some(path) = &self.config.history else {
            return;
        };
        let segments: Vec<Segment> = gpus
            .map(|i| Segment {
                gpu: i,
                at_ns: state.gpus[i].since_ns,
                energy_mj: state.gpus[i].energy_mj,
                limit_mw: state.gpus[i].limit_mw,
            })
            .collect();
        if !segments.is_empty() {
            // A test reading the history fails loudly on a missing line.
            let _ = append_history(path, &segments);
        }
    }

    /// Runs `f` on the current state; when it returns true the state is saved.
    fn with_state<T>(&mut self, f: impl FnOnce(&mut State) -> (T, bool)) -> Result<T, u32> {
        let now = monotonic_ns();
        match self.config.state.clone() {
            None => {
                let mut state = std::mem::take(&mut self.local);
                self.fill(&mut state, now);
                let (out, _) = f(&mut state);
                self.local = state;
                Ok(out)
            }
            Some(path) => {
                let _lock = FileLock::take(&path).map_err(|_| ret::UNKNOWN)?;
                let mut state = read_state(&path).map_err(|_| ret::UNKNOWN)?;
                let before = state.gpus.len();
                self.fill(&mut state, now);
                let (out, changed) = f(&mut state);
                if changed || state.gpus.len() != before {
                    write_state(&path, &state).map_err(|_| ret::UNKNOWN)?;
                }
                Ok(out)
            }
        }
    }
}

static FAKE: Mutex<Option<Fake>> = Mutex::new(None);

/// The device handle NVML hands out for GPU `index` (never null): `index + 1`;
/// MIG instance `j` of it adds `(j + 1) << 16`.
fn handle(index: u32) -> *mut c_void {
    (index as usize + 1) as *mut c_void
}

/// `(gpu index, MIG instance)` behind a handle, if valid.
fn decode(fake: &Fake, device: *mut c_void) -> Option<(usize, Option<u32>)> {
    let raw = device as usize;
    let gpu = raw & 0xffff;
    let mig = raw >> 16;
    if gpu == 0 || gpu > fake.config.count as usize {
        return None;
    }
    if mig == 0 {
        return Some((gpu - 1, None));
    }
    let n = fake.config.mig_of(gpu as u32 - 1)?;
    (mig as u32 <= n).then_some((gpu - 1, Some(mig as u32 - 1)))
}

fn lock_fake() -> std::sync::MutexGuard<'static, Option<Fake>> {
    match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Runs `f` with the fake and the GPU index behind `device` (a MIG handle is
/// refused, as NVML does for the calls that take the whole GPU).
fn with_device(device: *mut c_void, f: impl FnOnce(&mut Fake, usize) -> u32) -> u32 {
    let mut guard = lock_fake();
    let Some(fake) = guard.as_mut() else {
        return ret::UNINITIALIZED;
    };
    match decode(fake, device) {
        Some((index, None)) => f(fake, index),
        _ => ret::INVALID_ARGUMENT,
    }
}

/// Copies `text` NUL-terminated into `buf` of `length` bytes.
///
/// # Safety
/// `buf` must be null or valid for `length` bytes of writes.
unsafe fn write_c_string(text: &str, buf: *mut c_char, length: c_uint) -> u32 {
    let bytes = text.as_bytes();
    if buf.is_null() {
        return ret::INVALID_ARGUMENT;
    }
    if bytes.len() + 1 > length as usize {
        return ret::INSUFFICIENT_SIZE;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf.cast::<u8>(), bytes.len());
    *buf.add(bytes.len()) = 0;
    ret::SUCCESS
}

/// Answers through the out-pointer `out`: INVALID_ARGUMENT when it is null (before
/// `value` runs), the code of a failed `value`, else SUCCESS with the value written.
///
/// # Safety
/// `out` must be null or valid for a write.
unsafe fn answer<T>(out: *mut T, value: impl FnOnce() -> Result<T, u32>) -> u32 {
    if out.is_null() {
        return ret::INVALID_ARGUMENT;
    }
    match value() {
        Ok(v) => {
            *out = v;
            ret::SUCCESS
        }
        Err(code) => code,
    }
}

/// [`answer`] through two out-pointers at once.
///
/// # Safety
/// `a` and `b` must be null or valid for writes.
unsafe fn answer_both<A, B>(
    a: *mut A,
    b: *mut B,
    value: impl FnOnce() -> Result<(A, B), u32>,
) -> u32 {
    if b.is_null() {
        return ret::INVALID_ARGUMENT;
    }
    answer(a, || {
        let (va, vb) = value()?;
        *b = vb;
        Ok(va)
    })
}

/// Initializes the fake from the environment.
#[no_mangle]
pub extern "C" fn nvmlInit_v2() -> u32 {
    let mut guard = match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    match guard.as_mut() {
        Some(fake) => fake.inits += 1,
        None => {
            *guard = Some(Fake {
                config: Config::from_env(),
                local: State::default(),
                inits: 1,
            })
        }
    }
    ret::SUCCESS
}

/// Shuts the fake down when the last handle does.
#[no_mangle]
pub extern "C" fn nvmlShutdown() -> u32 {
    let mut guard = match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    match guard.as_mut() {
        Some(fake) => {
            fake.inits -= 1;
            if fake.inits == 0 {
                *guard = None;
            }
            ret::SUCCESS
        }
        None => ret::UNINITIALIZED,
    }
}

/// A static description of a return code.
#[no_mangle]
pub extern "C" fn nvmlErrorString(result: u32) -> *const c_char {
    let s: &'static [u8] = match result {
        ret::SUCCESS => b"Success\0",
        ret::UNINITIALIZED => b"Uninitialized\0",
        ret::INVALID_ARGUMENT => b"Invalid Argument\0",
        ret::NO_PERMISSION => b"Insufficient Permissions\0",
        ret::INSUFFICIENT_SIZE => b"Insufficient Size\0",
        ret::NOT_SUPPORTED => b"Not Supported\0",
        ret::NOT_FOUND => b"Not Found\0",
        _ => b"Unknown Error\0",
    };
    s.as_ptr().cast()
}

/// Number of GPUs.
///
/// # Safety
/// `count` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCount_v2(count: *mut c_uint) -> u32 {
    let guard = match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let Some(fake) = guard.as_ref() else {
        return ret::UNINITIALIZED;
    };
    answer(count, || Ok(fake.config.count))
}

/// The handle of GPU `index`.
///
/// # Safety
/// `device` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetHandleByIndex_v2(
    index: c_uint,
    device: *mut *mut c_void,
) -> u32 {
    let guard = match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let Some(fake) = guard.as_ref() else {
        return ret::UNINITIALIZED;
    };
    if device.is_null() || index >= fake.config.count {
        return ret::INVALID_ARGUMENT;
    }
    *device = handle(index);
    ret::SUCCESS
}

/// The model name, NUL-terminated, into `name` of `length` bytes.
///
/// # Safety
/// `name` must be null or valid for `length` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetName(
    device: *mut c_void,
    name: *mut c_char,
    length: c_uint,
) -> u32 {
    with_device(device, |fake, _| {
        write_c_string(&fake.config.name, name, length)
    })
}

/// The limits allowed, mW.
///
/// # Safety
/// `min` and `max` must be null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimitConstraints(
    device: *mut c_void,
    min: *mut c_uint,
    max: *mut c_uint,
) -> u32 {
    with_device(device, |fake, _| {
        answer_both(min, max, || Ok((fake.config.min_mw, fake.config.max_mw)))
    })
}

/// The current limit, mW.
///
/// # Safety
/// `limit` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerManagementLimit(
    device: *mut c_void,
    limit: *mut c_uint,
) -> u32 {
    with_device(device, |fake, i| {
        answer(limit, || fake.with_state(|s| (s.gpus[i].limit_mw, false)))
    })
}

/// Sets the limit, mW (closing the energy integral at the old limit first).
#[no_mangle]
pub extern "C" fn nvmlDeviceSetPowerManagementLimit(device: *mut c_void, limit: c_uint) -> u32 {
    with_device(device, |fake, i| {
        if fake.config.deny {
            return ret::NO_PERMISSION;
        }
        if limit < fake.config.min_mw || limit > fake.config.max_mw {
            return ret::INVALID_ARGUMENT;
        }
        let load = fake.config.load.clone();
        let now = monotonic_ns();
        match fake.with_state(|s| {
            let g = &mut s.gpus[i];
            g.energy_mj = energy_at(g, &load, now);
            g.since_ns = now;
            g.limit_mw = limit;
            (s.clone(), true)
        }) {
            Ok(state) => {
                fake.record(&state, i..i + 1);
                ret::SUCCESS
            }
            Err(code) => code,
        }
    })
}

/// Power drawn now, mW.
///
/// # Safety
/// `power` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPowerUsage(device: *mut c_void, power: *mut c_uint) -> u32 {
    with_device(device, |fake, i| {
        answer(power, || {
            if let Some(mw) = behaving(fake, i, |b, truth, t| b.average_mw(truth, t))? {
                return Ok(mw as c_uint);
            }
            let load = fake.config.load.at(monotonic_ns());
            fake.with_state(|s| (power_mw(s.gpus[i].limit_mw, load), false))
        })
    })
}

/// The energy counter, mJ.
///
/// # Safety
/// `energy` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetTotalEnergyConsumption(
    device: *mut c_void,
    energy: *mut c_ulonglong,
) -> u32 {
    with_device(device, |fake, i| {
        answer(energy, || {
            if !fake.config.has_energy_counter(i as u32) {
                return Err(ret::NOT_SUPPORTED);
            }
            if let Some(mj) = behaving(fake, i, |b, truth, t| counter_mj(i, b, truth, t))? {
                return Ok(mj as c_ulonglong);
            }
            fake.ground_truth(i).map(|v| v as c_ulonglong)
        })
    })
}

/// Not NVML: the fake's ground truth, GPU `index`'s energy since the state was
/// created, mJ (exact, unrounded; answers for GPUs without the counter too). Tests
/// load the library (e.g. with Python's ctypes) to call it.
///
/// # Safety
/// `energy` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn fakeNvmlGroundTruthEnergy(index: c_uint, energy: *mut f64) -> u32 {
    with_device(handle(index), |fake, i| {
        answer(energy, || fake.ground_truth(i))
    })
}

/// The UUID (`GPU-…`, or `MIG-…` for a MIG handle).
///
/// # Safety
/// `uuid` must be null or valid for `length` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut c_void,
    uuid: *mut c_char,
    length: c_uint,
) -> u32 {
    let guard = lock_fake();
    let Some(fake) = guard.as_ref() else {
        return ret::UNINITIALIZED;
    };
    match decode(fake, device) {
        Some((i, None)) => write_c_string(&gpu_uuid(i as u32), uuid, length),
        Some((i, Some(j))) => write_c_string(&mig_uuid(i as u32, j), uuid, length),
        None => ret::INVALID_ARGUMENT,
    }
}

/// The PCI attributes (`nvmlPciInfo_t`: bus id legacy [16], domain, bus, device,
/// PCI device id, subsystem id, bus id [32]).
#[repr(C)]
pub struct PciInfo {
    bus_id_legacy: [c_char; 16],
    domain: c_uint,
    bus: c_uint,
    device: c_uint,
    pci_device_id: c_uint,
    pci_sub_system_id: c_uint,
    bus_id: [c_char; 32],
}

/// The PCI attributes of a GPU.
///
/// # Safety
/// `pci` must be null or valid for a write of an `nvmlPciInfo_t`.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetPciInfo_v3(device: *mut c_void, pci: *mut PciInfo) -> u32 {
    with_device(device, |_, i| {
        if pci.is_null() {
            return ret::INVALID_ARGUMENT;
        }
        let id = pci_bus_id(i as u32);
        let out = &mut *pci;
        out.domain = 0;
        out.bus = 0x10 + i as c_uint;
        out.device = 0;
        out.pci_device_id = 0x20b0_10de;
        out.pci_sub_system_id = 0x1450_10de;
        let legacy = &id[4..];
        let r = write_c_string(legacy, out.bus_id_legacy.as_mut_ptr(), 16);
        if r != ret::SUCCESS {
            return r;
        }
        write_c_string(&id, out.bus_id.as_mut_ptr(), 32)
    })
}

/// The CUDA compute capability.
///
/// # Safety
/// `major` and `minor` must be null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetCudaComputeCapability(
    device: *mut c_void,
    major: *mut i32,
    minor: *mut i32,
) -> u32 {
    with_device(device, |fake, i| {
        answer_both(major, minor, || Ok(fake.config.cc_of(i as u32)))
    })
}

/// The MIG mode (current and pending: 1 enabled, 0 disabled); NOT_SUPPORTED
/// below compute capability 8.0.
///
/// # Safety
/// `current` and `pending` must be null or valid for writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigMode(
    device: *mut c_void,
    current: *mut c_uint,
    pending: *mut c_uint,
) -> u32 {
    with_device(device, |fake, i| {
        answer_both(current, pending, || {
            if fake.config.cc_of(i as u32).0 < 8 {
                return Err(ret::NOT_SUPPORTED);
            }
            let on = c_uint::from(fake.config.mig_of(i as u32).is_some());
            Ok((on, on))
        })
    })
}

/// The number of MIG slots of a GPU (7, as an A100's).
///
/// # Safety
/// `count` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMaxMigDeviceCount(
    device: *mut c_void,
    count: *mut c_uint,
) -> u32 {
    with_device(device, |fake, i| {
        answer(count, || {
            if fake.config.cc_of(i as u32).0 < 8 {
                return Err(ret::NOT_SUPPORTED);
            }
            Ok(7)
        })
    })
}

/// The handle of MIG instance `index` of a GPU; NOT_FOUND for an empty slot.
///
/// # Safety
/// `mig` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetMigDeviceHandleByIndex(
    device: *mut c_void,
    index: c_uint,
    mig: *mut *mut c_void,
) -> u32 {
    with_device(device, |fake, i| {
        answer(mig, || match fake.config.mig_of(i as u32) {
            None => Err(ret::INVALID_ARGUMENT),
            Some(n) if index >= n => Err(ret::NOT_FOUND),
            Some(_) => Ok(((i + 1) | ((index as usize + 1) << 16)) as *mut c_void),
        })
    })
}

// ---- measurement behaviours (issue 23) ----
//
// With any of `FAKE_NVML_COUNTER_MS`, `FAKE_NVML_QUANTUM_MJ`,
// `FAKE_NVML_POWER_AVERAGE_MS`, `FAKE_NVML_SENSOR_DUTY` or `FAKE_NVML_DRIFT`
// set, the counter and the power readings answer through [`behaviour`] over the
// ground truth (which stays the power drawn, `fakeNvmlGroundTruthEnergy`).

pub use gpu_model as behaviour;

/// The measurement behaviour of every GPU, read from the environment once.
pub fn measurement_behaviour() -> behaviour::Behaviour {
    static B: std::sync::OnceLock<behaviour::Behaviour> = std::sync::OnceLock::new();
    *B.get_or_init(|| behaviour::Behaviour::from_vars(|name| std::env::var(name).ok()))
}

/// The ground truth of one GPU over `CLOCK_MONOTONIC` seconds, from its state.
struct GpuTruth {
    gpu: GpuState,
    load: Load,
}

impl behaviour::Truth for GpuTruth {
    fn energy_mj(&self, t: f64) -> f64 {
        energy_at(&self.gpu, &self.load, (t.max(0.0) * 1e9) as u64)
    }
}

/// `f` of GPU `i`'s behaviour, its truth and now (s), or `None` when no
/// behaviour is configured (the exact model answers).
fn behaving(
    fake: &mut Fake,
    i: usize,
    f: impl FnOnce(&behaviour::Behaviour, &GpuTruth, f64) -> f64,
) -> Result<Option<f64>, u32> {
    let b = measurement_behaviour();
    if b == behaviour::Behaviour::default() {
        return Ok(None);
    }
    let gpu = fake.with_state(|s| (s.gpus[i], false))?;
    let truth = GpuTruth {
        gpu,
        load: fake.config.load.clone(),
    };
    Ok(Some(f(&b, &truth, monotonic_ns() as f64 / 1e9)))
}

/// GPU `i`'s counter under its behaviour, mJ.
fn counter_mj(i: usize, b: &behaviour::Behaviour, truth: &GpuTruth, t: f64) -> f64 {
    static COUNTERS: Mutex<Vec<behaviour::Counter>> = Mutex::new(Vec::new());
    let mut counters = match COUNTERS.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    if counters.len() <= i {
        counters.resize(i + 1, behaviour::Counter::default());
    }
    counters[i].read_mj(b, truth, t)
}

/// NVML's `nvmlFieldValue_t`.
#[repr(C)]
pub struct FieldValue {
    /// The field asked for.
    pub field_id: c_uint,
    /// Its scope.
    pub scope_id: c_uint,
    /// When it was read, µs.
    pub timestamp: i64,
    /// How long it took, µs.
    pub latency_usec: i64,
    /// The value's type (1: unsigned int).
    pub value_type: c_uint,
    /// This field's return code.
    pub nvml_return: u32,
    /// The value (a union of 8 bytes).
    pub value: u64,
}

/// The instantaneous (186) and averaged (185) power fields, mW, with
/// `FAKE_NVML_POWER_AVERAGE_MS` set; every other field (and these without it)
/// answers NOT_SUPPORTED in its own return code.
///
/// # Safety
/// `values` must be null or valid for `count` reads and writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetFieldValues(
    device: *mut c_void,
    count: std::ffi::c_int,
    values: *mut FieldValue,
) -> u32 {
    if values.is_null() || count < 0 {
        return ret::INVALID_ARGUMENT;
    }
    with_device(device, |fake, i| {
        // SAFETY: the caller's promise.
        let values = unsafe { std::slice::from_raw_parts_mut(values, count as usize) };
        for v in values {
            let read: Option<fn(&behaviour::Behaviour, &GpuTruth, f64) -> f64> = match v.field_id {
                186 => Some(|b, truth, t| b.instant_mw(truth, t)),
                185 => Some(|b, truth, t| b.average_mw(truth, t)),
                _ => None,
            };
            let answer = match read {
                Some(read) if measurement_behaviour().fields => behaving(fake, i, read),
                _ => Ok(None),
            };
            v.value_type = 1;
            v.timestamp = (monotonic_ns() / 1000) as i64;
            v.latency_usec = 0;
            match answer {
                Ok(Some(mw)) => {
                    v.nvml_return = ret::SUCCESS;
                    v.value = u64::from(mw as u32);
                }
                Ok(None) => v.nvml_return = ret::NOT_SUPPORTED,
                Err(code) => v.nvml_return = code,
            }
        }
        ret::SUCCESS
    })
}

// ---- nvidia-ml-py and Zeus (issue 22) ----
// What nvidia-ml-py's `nvmlInit` and Zeus's `ZeusMonitor` call besides the
// functions above, so Zeus runs against this fake (tests/wheel/zeus_side_by_side.py).

/// NVML's architecture numbers (`nvmlDeviceArchitecture_t`), by compute capability.
fn architecture(cc: (i32, i32)) -> c_uint {
    match cc {
        (major, _) if major >= 9 => 9, // Hopper
        (8, minor) if minor >= 9 => 8, // Ada
        (8, _) => 7,                   // Ampere
        (7, minor) if minor >= 5 => 6, // Turing
        (7, _) => 5,                   // Volta
        (6, _) => 4,                   // Pascal
        (5, _) => 3,                   // Maxwell
        _ => 2,                        // Kepler
    }
}

/// `nvmlInit_v2` with flags (nvidia-ml-py's `nvmlInit` calls this); the flags are ignored.
#[no_mangle]
pub extern "C" fn nvmlInitWithFlags(_flags: c_uint) -> u32 {
    nvmlInit_v2()
}

/// The GPU's architecture, from its compute capability (Zeus reads the energy
/// counter only from Volta on).
///
/// # Safety
/// `arch` must be null or valid for a write.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetArchitecture(device: *mut c_void, arch: *mut c_uint) -> u32 {
    with_device(device, |fake, i| {
        answer(arch, || Ok(architecture(fake.config.cc_of(i as u32))))
    })
}

/// Chip-to-chip (Grace Hopper) mode: NOT_SUPPORTED, as on a GPU in a PCIe host.
#[no_mangle]
pub extern "C" fn nvmlDeviceGetC2cModeInfoV(device: *mut c_void, _info: *mut c_void) -> u32 {
    with_device(device, |_, _| ret::NOT_SUPPORTED)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn power_is_capped_by_the_limit() {
        assert_eq!(power_mw(300_000, 250_000), 250_000);
        assert_eq!(power_mw(200_000, 250_000), 200_000);
    }

    #[test]
    fn steps_slow_down_below_the_load_and_sharply_below_the_knee() {
        assert_eq!(step_time_factor(300_000, 250_000, 200_000), 1.0);
        assert_eq!(step_time_factor(250_000, 250_000, 200_000), 1.0);
        let above = step_time_factor(200_000, 300_000, 200_000);
        assert!((above - 1.5f64.powf(0.3)).abs() < 1e-12);
        let below = step_time_factor(100_000, 300_000, 200_000);
        assert!((below - 3f64.powf(0.3) * 8.0).abs() < 1e-9);
        assert!(step_time_factor(0, 0, 0).is_infinite());
    }

    #[test]
    fn energy_integrates_power_over_time() {
        let g = GpuState {
            limit_mw: 200_000,
            energy_mj: 1000.0,
            since_ns: 1_000_000_000,
        };
        // 2 s at 200 W = 400 J.
        let load = Load::Constant(250_000);
        assert!((energy_at(&g, &load, 3_000_000_000) - 401_000.0).abs() < 1e-6);
        // A clock before `since` counts nothing.
        assert_eq!(energy_at(&g, &load, 0), 1000.0);
    }

    #[test]
    fn a_stepping_load_integrates_exactly() {
        let load = Load::parse_steps("300:0.5, 100:1.5").unwrap();
        assert_eq!(load.at(0), 300_000);
        assert_eq!(load.at(600_000_000), 100_000);
        assert_eq!(load.at(2_100_000_000), 300_000);
        // Unlimited: one period is 0.5*300 + 1.5*100 = 300 J.
        let s = 1_000_000_000u64;
        assert!((load.energy_mj(400_000, 0, 2 * s) - 300_000.0).abs() < 1e-6);
        // Capped at 200 W: 0.5*200 + 1.5*100 = 250 J a period; 0.25 s into the
        // first step to 0.25 s into the second period: 0.25*200 + 150 + 0.25*200.
        let e = load.energy_mj(200_000, s / 4, 2 * s + s / 4);
        assert!((e - 250_000.0).abs() < 1e-6, "{e}");
        assert!((load.energy_mj(200_000, s / 4, s / 2) - 50_000.0).abs() < 1e-6);
        assert_eq!(load.energy_mj(200_000, s, s / 2), 0.0);
        assert!(Load::parse_steps("").is_none());
        assert!(Load::parse_steps("300:0").is_none());
        assert!(Load::parse_steps("300").is_none());
    }

    #[test]
    fn identities_follow_the_documented_formats() {
        assert_eq!(gpu_uuid(10), "GPU-fa4e0000-0000-4000-8000-00000000000a");
        assert_eq!(mig_uuid(3, 1), "MIG-fa4e0003-0001-4000-8000-000000000000");
        assert_eq!(pci_bus_id(2), "00000000:12:00.0");
    }

    #[test]
    fn history_gives_the_counter_at_past_instants() {
        let segs = [
            Segment {
                gpu: 0,
                at_ns: 0,
                energy_mj: 0.0,
                limit_mw: 300_000,
            },
            Segment {
                gpu: 1,
                at_ns: 0,
                energy_mj: 5.0,
                limit_mw: 100_000,
            },
            Segment {
                gpu: 0,
                at_ns: 2_000_000_000,
                energy_mj: 500_000.0,
                limit_mw: 200_000,
            },
        ];
        // 250 W for 1 s, then (after 2 s at 250 W = 500 J) 200 W for 1 s.
        assert_eq!(
            energy_from_history(&segs, 0, &Load::Constant(250_000), 1_000_000_000),
            Some(250_000.0)
        );
        assert_eq!(
            energy_from_history(&segs, 0, &Load::Constant(250_000), 3_000_000_000),
            Some(700_000.0)
        );
        assert_eq!(
            energy_from_history(&segs, 1, &Load::Constant(250_000), 1_000_000_000),
            Some(100_005.0)
        );
        assert_eq!(
            energy_from_history(&segs, 2, &Load::Constant(250_000), 1),
            None
        );
    }

    #[test]
    fn init_and_shutdown_are_counted_and_uuids_differ() {
        assert_eq!(nvmlInit_v2(), ret::SUCCESS);
        assert_eq!(nvmlInit_v2(), ret::SUCCESS);
        assert_eq!(nvmlShutdown(), ret::SUCCESS);
        let mut count = 0;
        // SAFETY: a valid pointer.
        assert_eq!(unsafe { nvmlDeviceGetCount_v2(&mut count) }, ret::SUCCESS);
        assert_eq!(nvmlShutdown(), ret::SUCCESS);
        assert_eq!(nvmlShutdown(), ret::UNINITIALIZED);
        assert_ne!(gpu_uuid(0), gpu_uuid(1));
    }

    #[test]
    fn architecture_follows_compute_capability() {
        assert_eq!(architecture((7, 0)), 5);
        assert_eq!(architecture((7, 5)), 6);
        assert_eq!(architecture((8, 0)), 7);
        assert_eq!(architecture((9, 0)), 9);
        assert_eq!(architecture((6, 1)), 4);
    }
}
