//! The meter in real time through `nvml-wrapper` and the fake NVML
//! (tests/fake-nvml), whose `FAKE_NVML_*` behaviours the caller sets:
//! `tests/agent/run.sh` runs this once per behaviour (the fake reads them once
//! per process).

use std::ffi::{c_uint, CString};
use std::time::Duration;

use super::Stopwatch;
use crate::nvml::gpu::{nvml_lib_path, NvmlGpus, DEFAULT_NVML_LIB};

type Truth = unsafe extern "C" fn(c_uint, *mut f64) -> u32;

/// The fake's `fakeNvmlGroundTruthEnergy`, from the library nvml-wrapper loaded
/// (`dlopen` answers the same, already loaded, copy).
fn ground_truth(lib: &str) -> Truth {
    let path = CString::new(lib).expect("a library path without NUL");
    // SAFETY: a valid C string; the handle is never closed.
    let handle = unsafe { libc::dlopen(path.as_ptr(), libc::RTLD_NOW) };
    assert!(!handle.is_null(), "cannot dlopen {lib}");
    // SAFETY: a valid handle and C string.
    let sym = unsafe { libc::dlsym(handle, c"fakeNvmlGroundTruthEnergy".as_ptr()) };
    assert!(
        !sym.is_null(),
        "{lib} is not the fake NVML (no fakeNvmlGroundTruthEnergy)"
    );
    // SAFETY: the fake exports it with this signature.
    unsafe { std::mem::transmute::<*mut libc::c_void, Truth>(sym) }
}

#[test]
#[ignore = "real time through the fake NVML: tests/agent/run.sh runs it once per behaviour"]
fn fifty_real_windows_through_the_fake_nvml_hold_the_truth() {
    let lib = nvml_lib_path();
    assert_ne!(
        lib, DEFAULT_NVML_LIB,
        "set WATTWISE_NVML_LIB to the fake NVML's libnvidia_ml.so (tests/agent/run.sh does)"
    );
    let gpus = NvmlGpus::open().expect("the fake NVML loads");
    let truth = ground_truth(&lib);
    let truth_j = || {
        let mut mj = 0.0;
        // SAFETY: a valid pointer.
        assert_eq!(unsafe { truth(0, &mut mj) }, 0);
        mj / 1000.0
    };
    let mut w = Stopwatch::start(&gpus, &[0], Duration::from_millis(100)).unwrap();
    let b = w.behaviours()[0];
    // Readings every 10 ms for 2.5 s, each between two reads of the truth (a
    // busy machine may pause this process between a reading and the truth).
    let mut readings = Vec::new();
    while w.elapsed() < Duration::from_millis(2500) {
        let nap = w.tick(&gpus, Duration::from_millis(10)).unwrap();
        std::thread::sleep(nap.min(Duration::from_millis(10)));
        let before = truth_j();
        let r = w.reading(&gpus).unwrap();
        readings.push((r, (before, truth_j())));
    }
    let last = readings.last().unwrap().0.at.as_secs_f64();
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let (mut inside, mut widths, mut misses) = (0, Vec::new(), Vec::new());
    for _ in 0..50 {
        let len = (0.02f64.ln() + next() * (2.0f64.ln() - 0.02f64.ln())).exp();
        let from = next() * (last - len);
        let at = |t: f64| {
            readings
                .iter()
                .position(|(r, _)| r.at.as_secs_f64() >= t)
                .unwrap()
        };
        let (i, j) = (at(from), at(from + len));
        let ((begin, t0), (end, t1)) = (&readings[i], &readings[j]);
        let m = w.measurement(begin, end);
        // The truth over the window: between what it was from the end of the
        // first reading to the start of the second and the other way round.
        let (e, u) = (m.energy_j[0], m.uncertainty_j[0]);
        let (least, most) = (t1.0 - t0.1, t1.1 - t0.0);
        let t = (least + most) / 2.0;
        if e + u >= least && e - u <= most {
            inside += 1;
        } else {
            misses.push(format!(
                "{:.3} s: {e:.3} ± {u:.3} J, true {least:.3} to {most:.3} J",
                m.time_s
            ));
        }
        widths.push(u / t.max(1e-9));
    }
    widths.sort_by(f64::total_cmp);
    let end = w.behaviours()[0];
    println!(
        "behaviour learned {b:?}, by the end {end:?}; {inside}/50 windows (20 ms to 2 s) inside the bound, median half-width {:.1} %; outside: {misses:?}",
        widths[25] * 100.0
    );
    assert!(inside >= 48, "{inside}/50 inside: {misses:#?}");
    // The averaged field's window, where the fake has one, learned from the
    // samples (its load steps every 70 to 250 ms).
    // A part-time sensor's instantaneous field is the mean of its sampled part
    // (not the power now): no window to check it against.
    let part_time = std::env::var("FAKE_NVML_SENSOR_DUTY").is_ok();
    if let Some(ms) = std::env::var("FAKE_NVML_POWER_AVERAGE_MS")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|_| !part_time)
    {
        assert!(
            !b.average_window_learned && b.average_window_s == 1.0,
            "{b:?}"
        );
        assert!(end.average_window_learned, "{end:?}");
        assert!(
            (end.average_window_s - ms / 1000.0).abs() <= 0.051,
            "learned {} s, the fake averages over {ms} ms",
            end.average_window_s
        );
    }
}
