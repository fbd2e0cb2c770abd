//! The run loop's decisions, free of the OS: what each event of the training
//! command, and each power limit a run across hosts agrees on, means for the GPUs
//! (through [`Gpus`]) and for the endpoint (the epoch totals it returns).
//!
//! [`crate::run::session::Session`] owns the command, the events file, the clock, the energy meter
//! and the network, and feeds a [`Driver`]; the tests here feed it directly, with
//! the recording fake GPUs.

use wattwise_core::power::{Action, LimitConstraints, PowerOptimizer, Reading};

use crate::log::log;
use crate::nvml::energy_meter::Stopwatch;
use crate::nvml::gpu::{GpuError, Gpus};
use crate::run::events::Event;

/// The run's stopwatch, when power is sampled around limit changes.
pub type Meter<'a> = Option<&'a mut Stopwatch>;

/// One epoch's totals since the command started, for the endpoint.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochTotals {
    /// The epoch (1 for the first).
    pub epoch: u32,
    /// Seconds since the command started.
    pub time: f64,
    /// Joules of the job's GPUs since the command started.
    pub energy: f64,
    /// The metric the command reported.
    pub metric: f64,
}

/// The run loop's state: the power limit optimizer, the job's GPUs, the epochs
/// and steps seen, and the limit a run across hosts set.
pub struct Driver {
    optimizer: PowerOptimizer,
    indices: Vec<u32>,
    constraints: LimitConstraints,
    epoch: u32,
    steps: u64,
    shared_limit_w: Option<u32>,
}

impl Driver {
    /// A driver of `optimizer` over the GPUs `indices`, which accept `constraints`.
    pub fn new(optimizer: PowerOptimizer, indices: &[u32], constraints: LimitConstraints) -> Self {
        Driver {
            optimizer,
            indices: indices.to_vec(),
            constraints,
            epoch: 0,
            steps: 0,
            shared_limit_w: None,
        }
    }

    /// The power limit optimizer.
    pub fn optimizer(&self) -> &PowerOptimizer {
        &self.optimizer
    }

    /// Epochs ended so far.
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Steps begun so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Whether `event` needs a reading of time and energy: every event while the
    /// optimizer profiles, and every epoch end (its totals go to the endpoint).
    pub fn needs_reading(&self, event: &Event) -> bool {
        !self.optimizer.is_done() || matches!(event, Event::EpochEnd(_))
    }

    /// Handles one event read at `reading`: drives the optimizer and carries out
    /// its actions on the GPUs. An epoch end answers the totals to report.
    pub fn event(
        &mut self,
        gpus: &mut dyn Gpus,
        meter: Meter<'_>,
        event: Event,
        reading: Reading,
    ) -> Result<Option<EpochTotals>, GpuError> {
        match event {
            Event::StepBegin => {
                self.steps += 1;
                if !self.optimizer.is_done() {
                    let a = self.optimizer.step_begin(reading);
                    apply(gpus, meter, &self.indices, &a)?;
                }
                Ok(None)
            }
            Event::StepEnd => {
                let a = self.optimizer.step_end(reading);
                apply(gpus, meter, &self.indices, &a)?;
                Ok(None)
            }
            Event::EpochEnd(metric) => {
                let a = self.optimizer.epoch_end(reading);
                apply(gpus, meter, &self.indices, &a)?;
                self.epoch += 1;
                Ok(Some(EpochTotals {
                    epoch: self.epoch,
                    time: reading.time_ms as f64 / 1000.0,
                    energy: reading.energy_mj as f64 / 1000.0,
                    metric,
                }))
            }
        }
    }

    /// The power limit a run across hosts chose for every host, in watts: set on
    /// every GPU (clamped into what they accept) when it differs from the last one
    /// set. Answers whether it was set.
    pub fn shared_limit(
        &mut self,
        gpus: &mut dyn Gpus,
        meter: Meter<'_>,
        watts: u32,
    ) -> Result<bool, GpuError> {
        if self.shared_limit_w == Some(watts) {
            return Ok(false);
        }
        let limit_mw = watts
            .saturating_mul(1000)
            .clamp(self.constraints.min_mw, self.constraints.max_mw);
        apply(
            gpus,
            meter,
            &self.indices,
            &[Action::SetPowerLimit { limit_mw }],
        )?;
        self.shared_limit_w = Some(watts);
        Ok(true)
    }
}

/// Sets `limit_mw` on every GPU of `indices`.
pub fn set_all(gpus: &mut dyn Gpus, indices: &[u32], limit_mw: u32) -> Result<(), GpuError> {
    for &i in indices {
        gpus.set_power_limit(i, limit_mw)?;
    }
    Ok(())
}

/// Carries out the optimizer's actions; a power sample is taken on both sides of
/// a limit change, so sampled energy sees the step where it happens.
pub fn apply(
    gpus: &mut dyn Gpus,
    mut meter: Meter<'_>,
    indices: &[u32],
    actions: &[Action],
) -> Result<(), GpuError> {
    let sets = actions
        .iter()
        .any(|a| matches!(a, Action::SetPowerLimit { .. }));
    if let Some(m) = meter.as_deref_mut().filter(|m| sets && m.sampling()) {
        m.sample(gpus)?;
    }
    for action in actions {
        match *action {
            Action::SetPowerLimit { limit_mw } => set_all(gpus, indices, limit_mw)?,
            Action::BeginWindow { limit_mw } => log(format!("profiling {} W", limit_mw / 1000)),
            Action::EndWindow { measurement: m } => log(format!(
                "{} W: {:.3} J in {:.3} s over {} steps",
                m.power_limit, m.energy, m.time, m.steps
            )),
            Action::CancelWindow { limit_mw } => log(format!(
                "profiling {} W interrupted by the epoch end; it restarts next epoch",
                limit_mw / 1000
            )),
            Action::Optimal { limit_mw } => log(format!(
                "power limit set to the optimum, {} W",
                limit_mw / 1000
            )),
        }
    }
    if let Some(m) = meter.filter(|m| sets && m.sampling()) {
        m.sample(gpus)?;
    }
    Ok(())
}

/// Test support: drivers on the recording fake GPUs, for this module's tests and
/// the session's.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;
    use wattwise_core::power::PowerSettings;

    /// The fake GPUs' limits: 100 W to 300 W.
    pub(crate) const LIMITS: LimitConstraints = LimitConstraints {
        min_mw: 100_000,
        max_mw: 300_000,
    };

    /// A driver of a fresh optimizer over two GPUs, `indices`, its first limits set.
    pub(crate) fn driver(gpus: &mut FakeGpus, indices: &[u32]) -> Driver {
        let (optimizer, actions) =
            PowerOptimizer::new(PowerSettings::default(), LIMITS, 2).unwrap();
        apply(gpus, None, indices, &actions).unwrap();
        Driver::new(optimizer, indices, LIMITS)
    }

    /// A step of `ms` milliseconds at `watts` per GPU over two GPUs.
    pub(crate) fn step(d: &mut Driver, g: &mut FakeGpus, at: &mut Reading, ms: u64, watts: u64) {
        d.event(g, None, Event::StepBegin, *at).unwrap();
        at.time_ms += ms;
        at.energy_mj += 2 * watts * ms;
        d.event(g, None, Event::StepEnd, *at).unwrap();
    }

    /// A fresh driver over `indices` stepped until its profiling is done (lower
    /// limits run slower and draw less: the optimum is in between), with the
    /// reading it ended at.
    pub(crate) fn profiled(g: &mut FakeGpus, indices: &[u32]) -> (Driver, Reading) {
        let mut d = driver(g, indices);
        let mut at = Reading::default();
        let mut guard = 0;
        while !d.optimizer().is_done() {
            let w = u64::from(g.gpus[indices[0] as usize].limit_mw / 1000);
            step(&mut d, g, &mut at, 10_000 / w.max(1), w);
            guard += 1;
            assert!(guard < 10_000, "profiling never ended");
        }
        (d, at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;
    use wattwise_core::power::PowerState;

    use super::testing::{driver, profiled, step};

    #[test]
    fn profiling_walks_the_limits_on_the_job_gpus_only_then_settles() {
        let mut g = FakeGpus::new(4);
        let (mut d, mut at) = profiled(&mut g, &[1, 3]);
        assert!(
            g.sets.iter().all(|&(i, _)| i == 1 || i == 3),
            "{:?}",
            g.sets
        );
        assert_eq!(g.gpus[0].limit_mw, 300_000);
        assert_eq!(g.gpus[2].limit_mw, 300_000);
        let tried: std::collections::BTreeSet<u32> = g.sets.iter().map(|s| s.1).collect();
        assert!(tried.len() > 2, "{tried:?}");
        assert!(matches!(d.optimizer().state(), PowerState::Done { .. }));
        assert_eq!(g.gpus[1].limit_mw, g.gpus[3].limit_mw);
        // Once done, steps set nothing and need no reading.
        let before = g.sets.len();
        step(&mut d, &mut g, &mut at, 10, 100);
        assert_eq!(g.sets.len(), before);
        assert!(!d.needs_reading(&Event::StepBegin));
        assert!(d.needs_reading(&Event::EpochEnd(0.5)));
    }

    #[test]
    fn an_epoch_end_answers_its_totals() {
        let mut g = FakeGpus::new(2);
        let mut d = driver(&mut g, &[0, 1]);
        let mut at = Reading::default();
        step(&mut d, &mut g, &mut at, 1_500, 200);
        let totals = d
            .event(&mut g, None, Event::EpochEnd(0.75), at)
            .unwrap()
            .unwrap();
        assert_eq!(
            totals,
            EpochTotals {
                epoch: 1,
                time: 1.5,
                energy: 600.0,
                metric: 0.75
            }
        );
        assert_eq!((d.epoch(), d.steps()), (1, 1));
        let second = d.event(&mut g, None, Event::EpochEnd(0.8), at).unwrap();
        assert_eq!(second.map(|t| t.epoch), Some(2));
    }

    #[test]
    fn a_shared_limit_is_set_once_and_clamped() {
        let mut g = FakeGpus::new(3);
        let mut d = driver(&mut g, &[0, 2]);
        g.sets.clear();
        assert!(d.shared_limit(&mut g, None, 250).unwrap());
        assert_eq!(g.sets, [(0, 250_000), (2, 250_000)]);
        assert!(!d.shared_limit(&mut g, None, 250).unwrap());
        assert_eq!(g.sets.len(), 2);
        // Beyond what the GPUs accept: clamped, never refused.
        assert!(d.shared_limit(&mut g, None, 5_000).unwrap());
        assert_eq!(g.gpus[0].limit_mw, 300_000);
        assert!(d.shared_limit(&mut g, None, 1).unwrap());
        assert_eq!(g.gpus[2].limit_mw, 100_000);
        assert_eq!(g.gpus[1].limit_mw, 300_000);
    }

    #[test]
    fn a_refused_limit_is_an_error_not_a_silent_skip() {
        let mut g = FakeGpus::new(2);
        let mut d = driver(&mut g, &[0, 1]);
        g.deny = true;
        assert!(matches!(
            d.shared_limit(&mut g, None, 200),
            Err(GpuError::NoPermission { index: 0 })
        ));
        // Not recorded as set: the next try sets it again.
        g.deny = false;
        assert!(d.shared_limit(&mut g, None, 200).unwrap());
    }
}
