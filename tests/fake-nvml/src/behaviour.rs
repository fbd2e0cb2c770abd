//! What a GPU's sensor, energy counter and power readings make of the power it
//! really draws: the measurement behaviours of real GPUs (issue 23), as a pure
//! model over a ground truth. The fake NVML answers through it, and the agent's
//! meter tests drive the same model in virtual time (they include this file), so
//! both see one set of behaviours.
//!
//! Times are seconds on the caller's clock, energy mJ, power mW.

/// The ground truth: the energy a GPU drew up to a time.
pub trait Truth {
    /// Energy drawn from the clock's origin to `t`, mJ (non-decreasing).
    fn energy_mj(&self, t: f64) -> f64;
}

/// How a GPU reports what it draws.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Behaviour {
    /// The counter moves every this many seconds (on multiples of it); 0: it is
    /// exact at every read.
    pub period_s: f64,
    /// The counter's step, mJ (it reads as a multiple of it); 0: no step.
    pub quantum_mj: f64,
    /// `nvmlDeviceGetPowerUsage` is the mean over this many seconds; 0: it is
    /// the instantaneous power.
    pub average_s: f64,
    /// Whether `nvmlDeviceGetFieldValues` answers the instantaneous (186) and
    /// averaged (185) power fields.
    pub fields: bool,
    /// The fraction of each update period the sensor samples (1: all of it):
    /// the counter adds, per period, the power seen in its first part times the
    /// whole period.
    pub duty: f64,
    /// The counter's relative error against the power drawn (0.02: it counts 2 %
    /// too much).
    pub drift: f64,
}

impl Default for Behaviour {
    /// An exact counter and instantaneous power (the fake before issue 23).
    fn default() -> Behaviour {
        Behaviour {
            period_s: 0.0,
            quantum_mj: 0.0,
            average_s: 0.0,
            fields: false,
            duty: 1.0,
            drift: 0.0,
        }
    }
}

impl Behaviour {
    /// Reads the behaviour from `FAKE_NVML_COUNTER_MS`, `FAKE_NVML_QUANTUM_MJ`,
    /// `FAKE_NVML_POWER_AVERAGE_MS`, `FAKE_NVML_SENSOR_DUTY` and
    /// `FAKE_NVML_DRIFT` through `var` (unset or unparsable: the default).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Behaviour {
        let num = |name: &str| {
            var(name)
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && *v >= 0.0)
        };
        let d = Behaviour::default();
        let average_s = num("FAKE_NVML_POWER_AVERAGE_MS").map_or(d.average_s, |v| v / 1000.0);
        Behaviour {
            period_s: num("FAKE_NVML_COUNTER_MS").map_or(d.period_s, |v| v / 1000.0),
            quantum_mj: num("FAKE_NVML_QUANTUM_MJ").unwrap_or(d.quantum_mj),
            average_s,
            fields: average_s > 0.0,
            duty: num("FAKE_NVML_SENSOR_DUTY")
                .filter(|v| *v > 0.0 && *v <= 1.0)
                .unwrap_or(d.duty),
            drift: var("FAKE_NVML_DRIFT")
                .and_then(|v| v.trim().parse::<f64>().ok())
                .filter(|v| v.is_finite() && v.abs() < 0.5)
                .unwrap_or(d.drift),
        }
    }

    /// The mean power over `[from, to]`, mW.
    fn mean_mw(truth: &dyn Truth, from: f64, to: f64) -> f64 {
        if to <= from {
            return 0.0;
        }
        (truth.energy_mj(to) - truth.energy_mj(from)) / (to - from)
    }

    /// The energy the sensor sees over update period `k` (`[kT, (k+1)T]`), mJ.
    fn sensed_mj(&self, truth: &dyn Truth, k: f64) -> f64 {
        let (t0, t1) = (k * self.period_s, (k + 1.0) * self.period_s);
        let seen = Behaviour::mean_mw(truth, t0, t0 + self.duty * self.period_s);
        seen * (t1 - t0)
    }

    /// The instantaneous power field at `t`, mW: the power now, or with a
    /// part-time sensor the mean of its last sampled part.
    pub fn instant_mw(&self, truth: &dyn Truth, t: f64) -> f64 {
        const DT: f64 = 1e-4;
        if self.duty >= 1.0 || self.period_s <= 0.0 {
            return Behaviour::mean_mw(truth, t - DT, t);
        }
        let k = (t / self.period_s).floor();
        let sampled_end = k * self.period_s + self.duty * self.period_s;
        let k = if t >= sampled_end { k } else { k - 1.0 };
        let t0 = k * self.period_s;
        Behaviour::mean_mw(truth, t0, t0 + self.duty * self.period_s)
    }

    /// The averaged power at `t`, mW (the averaging window's mean; the
    /// instantaneous power without one).
    pub fn average_mw(&self, truth: &dyn Truth, t: f64) -> f64 {
        if self.average_s > 0.0 {
            Behaviour::mean_mw(truth, t - self.average_s, t)
        } else {
            self.instant_mw(truth, t)
        }
    }
}

/// One GPU's energy counter (it remembers what its part-time sensor added).
#[derive(Clone, Debug, Default)]
pub struct Counter {
    /// The last update period added, and the counter after it, mJ.
    last: Option<(f64, f64)>,
}

impl Counter {
    /// The counter at `t`, mJ.
    pub fn read_mj(&mut self, b: &Behaviour, truth: &dyn Truth, t: f64) -> f64 {
        let scale = 1.0 + b.drift;
        let raw = if b.period_s <= 0.0 {
            truth.energy_mj(t) * scale
        } else {
            // The last update was at k*T: it added period k-1.
            let k = (t / b.period_s).floor();
            let acc = match self.last {
                Some((done, acc)) if k >= done && k - done < 100_000.0 => {
                    let mut acc = acc;
                    let mut j = done;
                    while j < k {
                        acc += b.sensed_mj(truth, j) * scale;
                        j += 1.0;
                    }
                    acc
                }
                // First read, a long gap, or a clock that went back: anchor on
                // the truth at the last update.
                _ => truth.energy_mj(k * b.period_s) * scale,
            };
            self.last = Some((k, acc));
            acc
        };
        if b.quantum_mj > 0.0 {
            (raw / b.quantum_mj + 1e-9).floor() * b.quantum_mj
        } else {
            raw
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 100 W for the first 25 ms of every 100 ms, 300 W for the rest.
    struct Pulsed;
    impl Truth for Pulsed {
        fn energy_mj(&self, t: f64) -> f64 {
            let k = (t / 0.1).floor();
            let r = t - k * 0.1;
            k * (100.0 * 25.0 + 300.0 * 75.0)
                + 100_000.0 * r.min(0.025)
                + 300_000.0 * (r - 0.025).max(0.0)
        }
    }

    struct Flat(f64);
    impl Truth for Flat {
        fn energy_mj(&self, t: f64) -> f64 {
            self.0 * t
        }
    }

    #[test]
    fn a_coarse_counter_moves_on_its_period_in_quanta() {
        let b = Behaviour {
            period_s: 0.1,
            quantum_mj: 1000.0,
            ..Behaviour::default()
        };
        let mut c = Counter::default();
        let truth = Flat(250_000.0);
        assert_eq!(c.read_mj(&b, &truth, 1.05), 250_000.0);
        assert_eq!(c.read_mj(&b, &truth, 1.099), 250_000.0);
        assert_eq!(c.read_mj(&b, &truth, 1.1), 275_000.0);
        // 250 W over 0.1 s floors to whole joules.
        let mut d = Counter::default();
        let b = Behaviour {
            quantum_mj: 1000.0,
            ..Behaviour::default()
        };
        assert_eq!(d.read_mj(&b, &truth, 0.0139), 3000.0);
    }

    #[test]
    fn a_part_time_sensor_sees_only_its_part_and_a_drifting_counter_drifts() {
        let b = Behaviour {
            period_s: 0.1,
            duty: 0.25,
            ..Behaviour::default()
        };
        let mut c = Counter::default();
        let start = c.read_mj(&b, &Pulsed, 1.0);
        // Ten periods seen at 100 W where 250 W was drawn on average.
        let seen = c.read_mj(&b, &Pulsed, 2.0) - start;
        assert!((seen - 10_000.0 * 10.0).abs() < 1e-6, "{seen}");
        assert!((Pulsed.energy_mj(2.0) - Pulsed.energy_mj(1.0) - 250_000.0).abs() < 1e-6);
        assert!((b.instant_mw(&Pulsed, 1.05) - 100_000.0).abs() < 1e-3);
        let drift = Behaviour {
            drift: 0.02,
            ..Behaviour::default()
        };
        let mut d = Counter::default();
        assert!((d.read_mj(&drift, &Flat(100_000.0), 1.0) - 102_000.0).abs() < 1e-6);
        let avg = Behaviour {
            average_s: 1.0,
            ..Behaviour::default()
        };
        assert!((avg.average_mw(&Pulsed, 5.0) - 250_000.0).abs() < 1e-3);
    }

    #[test]
    fn the_environment_selects_the_behaviour() {
        let vars = |name: &str| {
            match name {
                "FAKE_NVML_COUNTER_MS" => Some("100"),
                "FAKE_NVML_QUANTUM_MJ" => Some("1000"),
                "FAKE_NVML_POWER_AVERAGE_MS" => Some("1000"),
                "FAKE_NVML_SENSOR_DUTY" => Some("0.25"),
                "FAKE_NVML_DRIFT" => Some("bad"),
                _ => None,
            }
            .map(String::from)
        };
        let b = Behaviour::from_vars(vars);
        assert_eq!(
            b,
            Behaviour {
                period_s: 0.1,
                quantum_mj: 1000.0,
                average_s: 1.0,
                fields: true,
                duty: 0.25,
                drift: 0.0,
            }
        );
        assert_eq!(Behaviour::from_vars(|_| None), Behaviour::default());
    }
}
