//! The meter in virtual time against a simulated GPU with the fake NVML's
//! behaviours (the same model: the `gpu-model` crate, tests/gpu-model): learning,
//! sampling and bounds over randomized windows under constant, stepping and
//! bursty loads, in seconds.

pub(crate) use gpu_model as model;

use std::cell::{Cell, RefCell};
use std::time::Duration;

use wattwise_core::power::LimitConstraints;

use super::learn::{probe, Clock};
use super::{EnergyMeter, EnergySource};
use crate::nvml::gpu::{GpuError, Gpus, Mig, PowerFields};
use model::Truth;

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
}

/// The kinds of load.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Constant,
    Stepping,
    Bursty,
}

/// A piecewise constant power: `(start s, W)` segments and the energy before
/// each, mJ.
pub(crate) struct Load {
    starts: Vec<f64>,
    watts: Vec<f64>,
    before_mj: Vec<f64>,
}

impl Load {
    fn random(kind: Kind, horizon: f64, rng: &mut Rng) -> Load {
        let mut starts = vec![0.0];
        let mut watts = Vec::new();
        let mut t = 0.0;
        let mut high = rng.next() < 0.5;
        loop {
            let (w, len) = match kind {
                Kind::Constant => (rng.uniform(60.0, 400.0), horizon + 1.0),
                Kind::Stepping => (rng.uniform(60.0, 400.0), rng.uniform(1.0, 10.0)),
                Kind::Bursty => {
                    high = !high;
                    let w = if high {
                        rng.uniform(250.0, 400.0)
                    } else {
                        rng.uniform(50.0, 150.0)
                    };
                    (w, rng.uniform(0.005, 0.3))
                }
            };
            watts.push(w);
            t += len;
            if t > horizon {
                break;
            }
            starts.push(t);
        }
        let mut before_mj = vec![0.0];
        for k in 1..starts.len() {
            before_mj.push(before_mj[k - 1] + watts[k - 1] * (starts[k] - starts[k - 1]) * 1000.0);
        }
        Load {
            starts,
            watts,
            before_mj,
        }
    }
}

impl Load {
    /// `watts` from time 0 on.
    pub(crate) fn constant(watts: f64) -> Load {
        Load {
            starts: vec![0.0],
            watts: vec![watts],
            before_mj: vec![0.0],
        }
    }

    /// `watts` from `t` on (`t` no earlier than the last change).
    fn change(&mut self, t: f64, watts: f64) {
        let k = self.starts.len() - 1;
        let before = self.before_mj[k] + self.watts[k] * (t - self.starts[k]) * 1000.0;
        self.starts.push(t);
        self.watts.push(watts);
        self.before_mj.push(before);
    }
}

impl Truth for Load {
    fn energy_mj(&self, t: f64) -> f64 {
        let t = t.max(0.0);
        let k = self.starts.partition_point(|&s| s <= t).max(1) - 1;
        self.before_mj[k] + self.watts[k] * (t - self.starts[k]) * 1000.0
    }
}

/// One simulated GPU on a virtual clock; with `draws`, it draws `draws(limit)`
/// watts under each power limit it is set to (between 200 and 300 W).
pub(crate) struct SimGpus {
    pub(crate) now: Cell<f64>,
    load: RefCell<Load>,
    behaviour: model::Behaviour,
    counter: Option<RefCell<model::Counter>>,
    draws: Option<fn(u32) -> f64>,
    limit_mw: u32,
}

impl SimGpus {
    /// A GPU with `behaviour` (and a counter, or none) under `load`, at time 0.
    pub(crate) fn new(behaviour: model::Behaviour, counter: bool, load: Load) -> SimGpus {
        SimGpus {
            now: Cell::new(0.0),
            load: RefCell::new(load),
            behaviour,
            counter: counter.then(RefCell::default),
            draws: None,
            limit_mw: 300_000,
        }
    }

    /// A GPU whose power follows its limit (`draws`, W at a limit in mW).
    pub(crate) fn limited(behaviour: model::Behaviour, draws: fn(u32) -> f64) -> SimGpus {
        let mut g = SimGpus::new(behaviour, true, Load::constant(draws(300_000)));
        g.draws = Some(draws);
        g
    }

    fn not(&self, what: &'static str) -> GpuError {
        GpuError::NotSupported { what, index: 0 }
    }
    pub(crate) fn t(&self) -> Duration {
        Duration::from_secs_f64(self.now.get())
    }
    fn truth_j(&self, from: f64, to: f64) -> f64 {
        let load = self.load.borrow();
        (load.energy_mj(to) - load.energy_mj(from)) / 1000.0
    }
}

impl Gpus for SimGpus {
    fn count(&self) -> Result<u32, GpuError> {
        Ok(1)
    }
    fn name(&self, _: u32) -> Result<String, GpuError> {
        Ok("Simulated GPU".into())
    }
    fn limit_constraints(&self, _: u32) -> Result<LimitConstraints, GpuError> {
        Ok(LimitConstraints {
            min_mw: 200_000,
            max_mw: 300_000,
        })
    }
    fn power_limit(&self, _: u32) -> Result<u32, GpuError> {
        Ok(self.limit_mw)
    }
    fn set_power_limit(&mut self, _: u32, limit_mw: u32) -> Result<(), GpuError> {
        let draws = self.draws.ok_or(self.not("set the limit"))?;
        self.limit_mw = limit_mw;
        self.load.get_mut().change(self.now.get(), draws(limit_mw));
        Ok(())
    }
    fn power_usage(&self, _: u32) -> Result<u32, GpuError> {
        Ok(self
            .behaviour
            .average_mw(&*self.load.borrow(), self.now.get()) as u32)
    }
    fn total_energy(&self, _: u32) -> Result<u64, GpuError> {
        let c = self.counter.as_ref().ok_or(self.not("read the counter"))?;
        let mj = c
            .borrow_mut()
            .read_mj(&self.behaviour, &*self.load.borrow(), self.now.get());
        Ok(mj as u64)
    }
    fn uuid(&self, _: u32) -> Result<String, GpuError> {
        Ok("GPU-sim".into())
    }
    fn pci_bus_id(&self, _: u32) -> Result<String, GpuError> {
        Ok("00000000:10:00.0".into())
    }
    fn compute_capability(&self, _: u32) -> Result<(i32, i32), GpuError> {
        Ok((9, 0))
    }
    fn mig(&self, _: u32) -> Result<Mig, GpuError> {
        Ok(Mig::Unsupported)
    }
    fn power_fields(&self, _: u32) -> Result<PowerFields, GpuError> {
        if !self.behaviour.fields {
            return Ok(PowerFields::default());
        }
        let t = self.now.get();
        let load = self.load.borrow();
        Ok(PowerFields {
            instant_mw: Some(self.behaviour.instant_mw(&*load, t) as u32),
            average_mw: Some(self.behaviour.average_mw(&*load, t) as u32),
        })
    }
}

/// The virtual clock of a [`SimGpus`].
pub(crate) struct SimClock<'a>(pub(crate) &'a SimGpus);

impl Clock for SimClock<'_> {
    fn now(&self) -> Duration {
        self.0.t()
    }
    fn sleep(&mut self, d: Duration) {
        self.0.now.set(self.0.now.get() + d.as_secs_f64());
    }
}

/// What the windows of one mode gave.
#[derive(Default)]
struct Stats {
    windows: usize,
    inside: usize,
    /// Half-width over true energy, windows of 10 s and more.
    long_widths: Vec<f64>,
    /// The same by kind of load.
    long_by_kind: [Vec<f64>; 3],
    /// |naive - true| / true, windows under 1 s.
    naive_short: Vec<f64>,
    /// The same, bursty loads only.
    naive_bursty: Vec<f64>,
    /// |meter - true| / true, windows under 1 s.
    meter_short: Vec<f64>,
    warned_short: usize,
    short: usize,
    misses: Vec<String>,
    /// The averaging windows learned by the windows' ends, s (where one was).
    learned_windows: Vec<f64>,
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

const SAMPLE: f64 = 0.1;

/// One window of `len` seconds under `kind`, measured on a fresh GPU.
fn window(b: model::Behaviour, counter: bool, kind: Kind, len: f64, rng: &mut Rng, s: &mut Stats) {
    let lead = rng.uniform(0.5, 3.0);
    let gpu = SimGpus::new(b, counter, Load::random(kind, lead + len + 5.0, rng));
    gpu.now.set(rng.uniform(0.0, 1.0));
    let behaviours = probe(&gpu, &[0], &mut SimClock(&gpu)).unwrap();
    let mut meter = EnergyMeter::start(&gpu, &[0], &behaviours, gpu.t()).unwrap();
    meter.set_sample_period(Duration::from_secs_f64(SAMPLE));
    let sampling = meter.sampling();
    let begin_at = gpu.now.get() + lead;
    let end_at = begin_at + len;
    let mut next = gpu.now.get() + SAMPLE;
    let mut naive = Vec::new();
    let mut advance = |until: f64, meter: &mut EnergyMeter, naive: &mut Vec<f64>, inside: bool| {
        while next < until {
            gpu.now.set(next);
            if sampling {
                meter.sample(&gpu, gpu.t()).unwrap();
            }
            if inside {
                naive.push(f64::from(gpu.power_usage(0).unwrap()) / 1000.0);
            }
            // The meter says when (as the stopwatch asks it).
            next = meter
                .next_sample(Duration::from_secs_f64(next + SAMPLE))
                .as_secs_f64();
        }
        gpu.now.set(until);
    };
    advance(begin_at, &mut meter, &mut naive, false);
    let begin = meter.reading(&gpu, gpu.t()).unwrap();
    advance(end_at, &mut meter, &mut naive, true);
    let end = meter.reading(&gpu, gpu.t()).unwrap();
    naive.push(f64::from(gpu.power_usage(0).unwrap()) / 1000.0);
    let m = meter.measurement(&begin, &end);
    let truth = gpu.truth_j(begin_at, end_at);
    let (e, u) = (m.energy_j[0], m.uncertainty_j[0]);
    s.windows += 1;
    let learned = meter.behaviours()[0];
    if learned.average_window_learned {
        s.learned_windows.push(learned.average_window_s);
    }
    if (e - truth).abs() <= u {
        s.inside += 1;
    } else if s.misses.len() < 5 {
        s.misses.push(format!(
            "{kind:?} {len:.3} s: {e:.3} ± {u:.3} J, true {truth:.3} J"
        ));
    }
    assert_eq!(m.sources[0] == EnergySource::Counter, counter);
    if len >= 10.0 {
        s.long_widths.push(u / truth);
        s.long_by_kind[kind as usize].push(u / truth);
    }
    if len < 1.0 {
        let naive_j = naive.iter().sum::<f64>() / naive.len() as f64 * len;
        s.naive_short.push((naive_j - truth).abs() / truth);
        if kind == Kind::Bursty {
            s.naive_bursty.push((naive_j - truth).abs() / truth);
        }
        s.meter_short.push((e - truth).abs() / truth);
        s.short += 1;
        s.warned_short += usize::from(m.warning.is_some());
    }
}

/// A counter that moves every 100 ms in steps of 1 mJ (the model's defaults
/// otherwise): the coarse counter the meter's and the profile's tests share.
pub(crate) fn coarse_counter() -> model::Behaviour {
    model::Behaviour {
        period_s: 0.1,
        quantum_mj: 1.0,
        ..model::Behaviour::default()
    }
}

#[test]
fn once_a_coarse_counters_phase_is_learned_an_edge_costs_far_less_than_a_period() {
    // A 100 ms counter in millijoules at a steady 253.712 W (moves of 25,371
    // and 25,372 mJ: their divisor, 1 mJ, bounds the quantum; moves all alike
    // would leave it as large as a move): a whole period at the edge power is
    // 25 J.
    let g = gpu(coarse_counter(), true, 253.712);
    let behaviours = probe(&g, &[0], &mut SimClock(&g)).unwrap();
    let mut meter = EnergyMeter::start(&g, &[0], &behaviours, g.t()).unwrap();
    let run = |meter: &mut EnergyMeter, until: f64| {
        let mut next = g.now.get() + SAMPLE;
        let mut samples = 0;
        while next < until {
            g.now.set(next);
            meter.sample(&g, g.t()).unwrap();
            samples += 1;
            next = meter
                .next_sample(Duration::from_secs_f64(next + SAMPLE))
                .as_secs_f64();
        }
        g.now.set(until);
        samples
    };
    // Learning takes under two seconds, at under two reads a period.
    assert!(run(&mut meter, 5.0437) <= 40);
    let begin = meter.reading(&g, g.t()).unwrap();
    assert!(
        begin.marks[0].since_update.is_some(),
        "{:?}",
        begin.marks[0]
    );
    // Then about one read a period.
    let samples = run(&mut meter, 15.0921);
    assert!((95..=110).contains(&samples), "{samples}");
    let end = meter.reading(&g, g.t()).unwrap();
    let m = meter.measurement(&begin, &end);
    let truth = 253.712 * (15.0921 - 5.0437);
    let (e, u) = (m.energy_j[0], m.uncertainty_j[0]);
    println!("10 s on a learned 100 ms counter: {e:.3} ± {u:.3} J, true {truth:.3} J");
    assert!((e - truth).abs() <= u, "{e} ± {u}, true {truth}");
    assert!(u < 2.5, "{e} ± {u}: a tenth of a period at the edge power");
}

#[test]
fn the_averaging_window_is_learned_from_the_samples_once_power_moves() {
    let d = model::Behaviour::default();
    for window in [0.25, 1.0] {
        let b = model::Behaviour {
            period_s: 0.1,
            quantum_mj: 1.0,
            average_s: window,
            fields: true,
            ..d
        };
        let mut rng = Rng(0x2545_F491_4F6C_DD1D);
        for (load, learns) in [
            (Load::random(Kind::Stepping, 40.0, &mut rng), true),
            (Load::constant(250.0), false),
        ] {
            let g = SimGpus::new(b, true, load);
            g.now.set(0.5);
            let behaviours = probe(&g, &[0], &mut SimClock(&g)).unwrap();
            assert!(!behaviours[0].average_window_learned);
            assert_eq!(behaviours[0].average_window_s, 1.0);
            let mut meter = EnergyMeter::start(&g, &[0], &behaviours, g.t()).unwrap();
            let mut next = g.now.get() + SAMPLE;
            while next < 30.0 {
                g.now.set(next);
                meter.sample(&g, g.t()).unwrap();
                next = meter
                    .next_sample(Duration::from_secs_f64(next + SAMPLE))
                    .as_secs_f64();
            }
            let learned = meter.behaviours()[0];
            println!("averaging window {window} s, learns {learns}: {learned:?}");
            assert_eq!(learned.average_window_learned, learns, "{learned:?}");
            if learns {
                assert!(
                    (learned.average_window_s - window).abs() <= 0.051,
                    "{learned:?}"
                );
            } else {
                assert_eq!(learned.average_window_s, 1.0);
            }
        }
    }
}

fn gpu(b: model::Behaviour, counter: bool, watts: f64) -> SimGpus {
    let g = SimGpus::new(b, counter, Load::constant(watts));
    g.now.set(3.0);
    g
}

#[test]
fn a_probe_learns_the_period_quantum_and_fields_quickly_and_changes_nothing() {
    let d = model::Behaviour::default();
    let coarse = model::Behaviour {
        period_s: 0.1,
        quantum_mj: 1000.0,
        average_s: 1.0,
        fields: true,
        ..d
    };
    // 25.37 J per update floors to moves of 25 and 26 J: a quantum of 1 J.
    let g = gpu(coarse, true, 253.7);
    let before = g.now.get();
    let b = probe(&g, &[0], &mut SimClock(&g)).unwrap();
    assert!((0.1..=0.102).contains(&b[0].update_period_s), "{b:?}");
    // And as an interval holding it, first to last move: the phase rests on it.
    let (lo, hi) = b[0].period_range_s.expect("a period range");
    assert!(lo <= 0.1 && 0.1 <= hi && hi - lo <= 0.0011, "{b:?}");
    assert_eq!(b[0].quantum_mj, 1000.0);
    assert!(b[0].instant_field && b[0].average_window_s == 1.0);
    assert!(b[0].coarse());
    // Four moves of a 100 ms counter: under 0.5 s.
    assert!(g.now.get() - before <= 0.5);
    // An exact counter at 250 W moves at every poll: 2 ms, 1 mJ, no fields.
    let g = gpu(d, true, 250.0);
    let b = probe(&g, &[0], &mut SimClock(&g)).unwrap();
    assert!(
        b[0].update_period_s <= 0.0021 && b[0].quantum_mj == 1.0,
        "{b:?}"
    );
    assert!(!b[0].instant_field && b[0].average_window_s == 0.0);
    assert!(g.now.get() - 3.0 < 0.01);
    // An idle counter that never moves: the whole probe, conservatively.
    let g = gpu(coarse, true, 0.0);
    let b = probe(&g, &[0], &mut SimClock(&g)).unwrap();
    assert!(b[0].update_period_s >= super::learn::PROBE_LIMIT.as_secs_f64());
    // No counter: nothing to poll.
    let g = gpu(d, false, 100.0);
    let b = probe(&g, &[0], &mut SimClock(&g)).unwrap();
    assert_eq!(b[0].update_period_s, 0.0);
    assert_eq!(g.now.get(), 3.0);
}

#[test]
fn over_randomized_windows_in_every_mode_the_truth_lies_inside_the_bound() {
    let d = model::Behaviour::default();
    let modes = [
        (
            "fine counter (10 ms, 1 mJ)",
            model::Behaviour {
                period_s: 0.01,
                quantum_mj: 1.0,
                ..d
            },
            true,
        ),
        (
            "coarse counter (100 ms, 1 J)",
            model::Behaviour {
                period_s: 0.1,
                quantum_mj: 1000.0,
                ..d
            },
            true,
        ),
        (
            "averaged power (1 s) beside the instant field",
            model::Behaviour {
                period_s: 0.1,
                quantum_mj: 1.0,
                average_s: 1.0,
                fields: true,
                ..d
            },
            true,
        ),
        (
            "part-time sensor (25 % of 100 ms)",
            model::Behaviour {
                period_s: 0.1,
                quantum_mj: 1.0,
                average_s: 1.0,
                fields: true,
                duty: 0.25,
                ..d
            },
            true,
        ),
        (
            "counter drifting 2 % against power",
            model::Behaviour {
                period_s: 0.1,
                quantum_mj: 1.0,
                average_s: 1.0,
                fields: true,
                drift: 0.02,
                ..d
            },
            true,
        ),
        ("no counter (sampled power)", d, false),
    ];
    let mut failures = Vec::new();
    for (name, b, counter) in modes {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut s = Stats::default();
        for w in 0..1000 {
            let kind = [Kind::Constant, Kind::Stepping, Kind::Bursty][w % 3];
            let len = (rng.uniform(0.02f64.ln(), 60f64.ln())).exp();
            window(b, counter, kind, len, &mut rng, &mut s);
        }
        let coverage = s.inside as f64 / s.windows as f64;
        let width = median(&mut s.long_widths);
        println!(
            "{name}: {:.1} % inside the bound; median half-width {:.2} % at >= 10 s ({} windows); \
             under 1 s ({} windows, {} flagged short): naive averaged power x time off by {:.1} % median, {:.1} % p90 ({:.1} % median under bursty loads); the meter off by {:.2} % median",
            coverage * 100.0,
            width * 100.0,
            s.long_widths.len(),
            s.short,
            s.warned_short,
            median(&mut s.naive_short) * 100.0,
            {
                let v = &mut s.naive_short;
                v.sort_by(f64::total_cmp);
                v[v.len() * 9 / 10] * 100.0
            },
            median(&mut s.naive_bursty) * 100.0,
            median(&mut s.meter_short) * 100.0,
        );
        println!(
            "  median half-width at >= 10 s: constant {:.2} %, stepping {:.2} %, bursty {:.2} %",
            median(&mut s.long_by_kind[0]) * 100.0,
            median(&mut s.long_by_kind[1]) * 100.0,
            median(&mut s.long_by_kind[2]) * 100.0
        );
        if b.fields {
            println!(
                "  averaging window ({} s): learned in {} of {} windows, median {:.2} s; else assumed 1 s",
                b.average_s,
                s.learned_windows.len(),
                s.windows,
                median(&mut s.learned_windows)
            );
        }
        for miss in &s.misses {
            println!("  outside: {miss}");
        }
        if coverage < 0.95 || width >= 0.02 {
            failures.push(format!(
                "{name}: {:.1} % inside, median width {:.2} %",
                coverage * 100.0,
                width * 100.0
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
