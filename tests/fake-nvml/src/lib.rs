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
//!
//! # Model
//!
//! - Power drawn: `P = min(limit, load)` (mW), constant while the limit is.
//! - Energy counter (mJ): the integral of `P` over `CLOCK_MONOTONIC` time since the
//!   state was created. It is the ground truth: a test that reads
//!   [`ground_truth_energy_mj`] before and after a run knows the energy spent.
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
    /// Unlimited power draw of the load, mW.
    pub load_mw: u32,
    /// Shared state file.
    pub state: Option<PathBuf>,
    /// Refuse to set limits.
    pub deny: bool,
    /// The history file.
    pub history: Option<PathBuf>,
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
            load_mw: env_u32("FAKE_NVML_LOAD", 250).saturating_mul(1000),
            state: std::env::var_os("FAKE_NVML_STATE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            deny: std::env::var("FAKE_NVML_DENY").is_ok_and(|v| v == "1"),
            history: std::env::var_os("FAKE_NVML_HISTORY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        }
    }
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
    load_mw: u32,
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
    Some(energy_at(&state, load_mw, at_ns))
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

/// The UUID of GPU `index`.
pub fn uuid(index: usize) -> String {
    format!("GPU-fa4e0000-0000-4000-8000-{index:012x}")
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
pub fn energy_at(gpu: &GpuState, load_mw: u32, now_ns: u64) -> f64 {
    let dt_s = now_ns.saturating_sub(gpu.since_ns) as f64 / 1e9;
    gpu.energy_mj + f64::from(power_mw(gpu.limit_mw, load_mw)) * dt_s
}

/// The energy counters of every GPU in the state file at `path`, read now, mJ:
/// what a test uses as the ground truth.
pub fn ground_truth_energy_mj(path: &Path, load_mw: u32) -> std::io::Result<Vec<f64>> {
    let state = read_state(path)?;
    let now = monotonic_ns();
    Ok(state
        .gpus
        .iter()
        .map(|g| energy_at(g, load_mw, now))
        .collect())
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

/// The device handle NVML hands out for `index` (never null).
fn handle(index: u32) -> *mut c_void {
    (index as usize + 1) as *mut c_void
}

/// Runs `f` with the fake and the device index behind `device`.
fn with_device(device: *mut c_void, f: impl FnOnce(&mut Fake, usize) -> u32) -> u32 {
    let mut guard = match FAKE.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    };
    let Some(fake) = guard.as_mut() else {
        return ret::UNINITIALIZED;
    };
    let index = device as usize;
    if index == 0 || index > fake.config.count as usize {
        return ret::INVALID_ARGUMENT;
    }
    f(fake, index - 1)
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
    if count.is_null() {
        return ret::INVALID_ARGUMENT;
    }
    *count = fake.config.count;
    ret::SUCCESS
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

/// Copies `text` and a NUL into `out` of `length` bytes.
///
/// # Safety
/// `out` must be null or valid for `length` bytes of writes.
unsafe fn copy_c_string(text: &str, out: *mut c_char, length: c_uint) -> u32 {
    let bytes = text.as_bytes();
    if out.is_null() {
        return ret::INVALID_ARGUMENT;
    }
    if bytes.len() + 1 > length as usize {
        return ret::INSUFFICIENT_SIZE;
    }
    std::ptr::copy_nonoverlapping(bytes.as_ptr(), out.cast::<u8>(), bytes.len());
    *out.add(bytes.len()) = 0;
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
        copy_c_string(&fake.config.name, name, length)
    })
}

/// The UUID, NUL-terminated, into `uuid` of `length` bytes.
///
/// # Safety
/// `uuid` must be null or valid for `length` bytes of writes.
#[no_mangle]
pub unsafe extern "C" fn nvmlDeviceGetUUID(
    device: *mut c_void,
    uuid: *mut c_char,
    length: c_uint,
) -> u32 {
    with_device(device, |_, i| copy_c_string(&self::uuid(i), uuid, length))
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
        if min.is_null() || max.is_null() {
            return ret::INVALID_ARGUMENT;
        }
        *min = fake.config.min_mw;
        *max = fake.config.max_mw;
        ret::SUCCESS
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
        if limit.is_null() {
            return ret::INVALID_ARGUMENT;
        }
        match fake.with_state(|s| (s.gpus[i].limit_mw, false)) {
            Ok(v) => {
                *limit = v;
                ret::SUCCESS
            }
            Err(code) => code,
        }
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
        let load = fake.config.load_mw;
        let now = monotonic_ns();
        match fake.with_state(|s| {
            let g = &mut s.gpus[i];
            g.energy_mj = energy_at(g, load, now);
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
        if power.is_null() {
            return ret::INVALID_ARGUMENT;
        }
        let load = fake.config.load_mw;
        match fake.with_state(|s| (power_mw(s.gpus[i].limit_mw, load), false)) {
            Ok(v) => {
                *power = v;
                ret::SUCCESS
            }
            Err(code) => code,
        }
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
        if energy.is_null() {
            return ret::INVALID_ARGUMENT;
        }
        let load = fake.config.load_mw;
        let now = monotonic_ns();
        match fake.with_state(|s| (energy_at(&s.gpus[i], load, now), false)) {
            Ok(v) => {
                *energy = v as c_ulonglong;
                ret::SUCCESS
            }
            Err(code) => code,
        }
    })
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
        assert!((energy_at(&g, 250_000, 3_000_000_000) - 401_000.0).abs() < 1e-6);
        // A clock before `since` counts nothing.
        assert_eq!(energy_at(&g, 250_000, 0), 1000.0);
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
            energy_from_history(&segs, 0, 250_000, 1_000_000_000),
            Some(250_000.0)
        );
        assert_eq!(
            energy_from_history(&segs, 0, 250_000, 3_000_000_000),
            Some(700_000.0)
        );
        assert_eq!(
            energy_from_history(&segs, 1, 250_000, 1_000_000_000),
            Some(100_005.0)
        );
        assert_eq!(energy_from_history(&segs, 2, 250_000, 1), None);
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
        assert_ne!(uuid(0), uuid(1));
        assert_eq!(uuid(10), "GPU-fa4e0000-0000-4000-8000-00000000000a");
    }
}
