//! The run loop's decisions, free of the OS: what each event of the training
//! command, and each power limit a run across hosts agrees on, means for the GPUs
//! (through [`Gpus`]) and for the endpoint (the epoch totals it returns).
//!
//! [`crate::run::session::Session`] owns the command, the events file, the clock, the energy meter
//! and the network, and feeds a [`Driver`]; the tests here feed it directly, with
//! the recording fake GPUs.

use std::time::Duration;

use wattwise_core::power::{
    Action, LimitConstraints, PowerOptimizer, Reading, Uncertain, WindowCall, WindowCut,
    WindowEnergy,
};

use crate::log::log;
use crate::nvml::energy_meter::{self, Stopwatch};
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

/// The measurement window open now, as the meter saw it begin and, once an
/// epoch end would keep it, its last step end.
struct OpenWindow {
    begin: energy_meter::Reading,
    last_end: Option<energy_meter::Reading>,
}

/// The run loop's state: the power limit optimizer, the job's GPUs, the epochs
/// and steps seen, the limit a run across hosts set, and the open profile
/// window's readings. The meter measures each window just before the event that
/// closes it and hands the measurement to the optimizer, which keeps the
/// windows' energies and bounds (`PowerOptimizer::profiled`).
pub struct Driver {
    optimizer: PowerOptimizer,
    indices: Vec<u32>,
    constraints: LimitConstraints,
    epoch: u32,
    steps: u64,
    shared_limit_w: Option<u32>,
    window: Option<OpenWindow>,
    lengthenings: u32,
    guard: bool,
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
            window: None,
            lengthenings: 0,
            guard: true,
        }
    }

    /// A driver that never lengthens a window (what the optimizer alone would
    /// pick), for the tests that show what the bounds change.
    #[cfg(test)]
    pub(crate) fn unguarded(mut self) -> Self {
        self.guard = false;
        self
    }

    /// How many times a profile window was lengthened.
    pub fn lengthenings(&self) -> u32 {
        self.lengthenings
    }

    /// One line when the selected limit's energy and another profiled limit's
    /// lie within their bounds of each other even after lengthening: the
    /// choice between them is uncertain (the optimizer's
    /// `PowerOptimizer::uncertain_limits`).
    pub fn profile_note(&self) -> Option<String> {
        let limits = self.optimizer.uncertain_limits();
        let last = |w: u32| self.optimizer.profiled_window(w).map(|p| p.per_step());
        let (a, b) = (last(*limits.first()?)?, last(*limits.get(1)?)?);
        Some(format!(
            "profile uncertain: the chosen {} W ({:.3} ± {:.3} J per step) and {} W ({:.3} ± {:.3} J per step) lie within their energy bounds",
            a.limit_w, a.energy_j, a.uncertainty_j, b.limit_w, b.energy_j, b.uncertainty_j
        ))
    }

    /// Before a step beginning that would close the open window: measures it and
    /// hands it to the optimizer, asking whether it closes, is lengthened, or is
    /// accepted with its bound (the rule is the core's,
    /// `wattwise_core::power::window`); a window that closes keeps this
    /// measurement.
    fn judge_window(
        &mut self,
        gpus: &dyn Gpus,
        meter: &mut Stopwatch,
        at: Reading,
    ) -> Result<(), GpuError> {
        let closing = self.optimizer.window_closes_next();
        let Some(w) = self.window.as_ref().filter(|_| closing) else {
            return Ok(());
        };
        let now = meter.reading_at(gpus, Duration::from_millis(at.time_ms))?;
        let m = meter.measurement(&w.begin, &now);
        let measured = window_energy(&m);
        if !self.guard {
            self.optimizer.measure_window(measured);
            return Ok(());
        }
        let steps = self.optimizer.window_steps().unwrap_or(1);
        let so_far = energy_meter::with_bound(m.total_j, m.total_uncertainty_j);
        let why = |why: Uncertain| match why {
            Uncertain::Near { limit_w } => format!("within the bounds of {limit_w} W"),
            Uncertain::Wide => "more than its bound allows".into(),
            Uncertain::TooShort => "too short for the energy counter".into(),
        };
        let needs = |needed: u32| match needed {
            u32::MAX => "no length would settle it".to_string(),
            n => format!("{n} steps would bound it"),
        };
        match self.optimizer.judge_window(measured) {
            Some(WindowCall::Lengthen {
                to,
                needed,
                why: w,
                ..
            }) => {
                self.lengthenings += 1;
                let fits = if needed > to {
                    "; the most there is room for, then accepted with its bound"
                } else {
                    ""
                };
                log(format!(
                    "profile window lengthened to {to} steps: {so_far} over {steps} steps is uncertain ({}; {}){fits}",
                    why(w),
                    needs(needed)
                ));
            }
            Some(WindowCall::Accept { needed, why: w }) => log(format!(
                "profile window accepted with its bound: {so_far} over {steps} steps is uncertain ({}; {}) and there is no room to lengthen it",
                why(w),
                needs(needed)
            )),
            Some(WindowCall::Close) | None => {}
        }
        Ok(())
    }

    /// Before an epoch end that cuts the open window (`cut`, kept): measures it
    /// to its cut (its last step end, or the epoch end read at `at`) and hands
    /// it to the optimizer, which closes it with this measurement.
    fn measure_cut(
        &mut self,
        gpus: &dyn Gpus,
        meter: Meter<'_>,
        at: Reading,
        cut: Option<WindowCut>,
    ) -> Result<(), GpuError> {
        let (Some(cut), Some(w), Some(m)) = (cut, self.window.as_ref(), meter) else {
            return Ok(());
        };
        let got = match &w.last_end {
            Some(end) if cut.at_step_end => m.measurement(&w.begin, end),
            _ => {
                let end = m.reading_at(gpus, Duration::from_millis(at.time_ms))?;
                m.measurement(&w.begin, &end)
            }
        };
        self.optimizer.measure_window(window_energy(&got));
        Ok(())
    }

    /// Follows the optimizer's windows with the meter: a window's begin
    /// reading, none once it ends or is cancelled; a window's end is logged
    /// with the bound the optimizer recorded for it (none when it kept no
    /// measurement; a limit's window closes once) over the `steps` it covered
    /// (`cut`: where an epoch end cut it).
    fn follow_windows(
        &mut self,
        gpus: &dyn Gpus,
        mut meter: Meter<'_>,
        actions: &[Action],
        at: Reading,
        steps: Option<u32>,
        cut: Option<WindowCut>,
    ) -> Result<(), GpuError> {
        let stamp = Duration::from_millis(at.time_ms);
        for action in actions {
            match *action {
                Action::BeginWindow { .. } => {
                    self.window = match meter.as_deref_mut() {
                        Some(m) => Some(OpenWindow {
                            begin: m.reading_at(gpus, stamp)?,
                            last_end: None,
                        }),
                        None => None,
                    };
                }
                Action::EndWindow { measurement: p } => {
                    self.window = None;
                    let steps = cut.map_or(steps, |c| Some(c.steps)).unwrap_or(p.steps);
                    // In the optimizer's terms: `p.steps` steps.
                    let bound = self
                        .optimizer
                        .profiled_window(p.power_limit)
                        .map_or(String::new(), |w| {
                            format!(" ± {:.3}", w.bound_over(p.steps))
                        });
                    let cut = if cut.is_some() {
                        ", cut by the epoch end"
                    } else {
                        ""
                    };
                    log(format!(
                        "{} W: {:.3}{bound} J in {:.3} s over {} steps (measured over {steps}{cut})",
                        p.power_limit, p.energy, p.time, p.steps
                    ));
                }
                Action::CancelWindow { .. } => self.window = None,
                Action::Optimal { .. } => {
                    if let Some(note) = self.profile_note() {
                        log(note);
                    }
                }
                Action::SetPowerLimit { .. } => {}
            }
        }
        Ok(())
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
                    let mut meter = meter;
                    if let Some(m) = meter.as_deref_mut() {
                        self.judge_window(gpus, m, reading)?;
                    }
                    let steps = self.optimizer.window_steps();
                    let a = self.optimizer.step_begin(reading);
                    self.follow_windows(gpus, meter.as_deref_mut(), &a, reading, steps, None)?;
                    apply(gpus, meter, &self.indices, &a)?;
                }
                Ok(None)
            }
            Event::StepEnd => {
                let mut meter = meter;
                if self.optimizer.keeps_step_end() {
                    if let (Some(w), Some(m)) = (self.window.as_mut(), meter.as_deref_mut()) {
                        let stamp = Duration::from_millis(reading.time_ms);
                        w.last_end = Some(m.reading_at(gpus, stamp)?);
                    }
                }
                let a = self.optimizer.step_end(reading);
                apply(gpus, meter, &self.indices, &a)?;
                Ok(None)
            }
            Event::EpochEnd(metric) => {
                let mut meter = meter;
                let cut = self.optimizer.window_cut(reading);
                self.measure_cut(gpus, meter.as_deref_mut(), reading, cut)?;
                let a = self.optimizer.epoch_end(reading);
                self.follow_windows(gpus, meter.as_deref_mut(), &a, reading, None, cut)?;
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

/// A window's energy as the meter measured it, in the core's terms.
fn window_energy(m: &energy_meter::Measurement) -> WindowEnergy {
    WindowEnergy {
        energy_j: m.total_j,
        uncertainty_j: m.total_uncertainty_j,
        too_short: m.warning.is_some(),
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
            // Logged by the driver, with its bound.
            Action::EndWindow { .. } => {}
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

    use crate::nvml::energy_meter::learn::probe;
    use crate::nvml::energy_meter::sim::{coarse_counter, model, SimClock, SimGpus};
    use wattwise_core::power::{PowerSettings, Selector};

    /// Profiles 300, 250 and 200 W by energy (5-step windows) on a simulated GPU
    /// that draws its limit and runs a step in `step_s(limit)` seconds, its counter
    /// behaving as `b`, from `phase` s into the counter's period; answers the limit
    /// picked and the driver.
    fn profile_on(
        b: model::Behaviour,
        step_s: fn(u32) -> f64,
        phase: f64,
        guard: bool,
    ) -> (u32, Driver) {
        let (d, _) = train_on(b, step_s, phase, guard, None, 10_000);
        (d.optimizer().optimal_limit_mw().unwrap(), d)
    }

    /// [`profile_on`]'s job trained step by step (an epoch end every `epoch`
    /// steps, when given) until profiling is done or `most` steps ran; answers
    /// the driver and the steps run.
    fn train_on(
        b: model::Behaviour,
        step_s: fn(u32) -> f64,
        phase: f64,
        guard: bool,
        epoch: Option<u64>,
        most: u64,
    ) -> (Driver, u64) {
        let mut g = SimGpus::limited(b, |mw| f64::from(mw) / 1000.0);
        g.now.set(10.0 + phase);
        let behaviours = probe(&g, &[0], &mut SimClock(&g)).unwrap();
        let settings = PowerSettings {
            wait_steps: 1,
            warmup_steps: 2,
            profile_steps: 5,
            pl_step: 50,
            selector: Selector::Energy,
            stop_after_rises: None,
        };
        let limits = g.limit_constraints(0).unwrap();
        let (opt, actions) = PowerOptimizer::new(settings, limits, 1).unwrap();
        apply(&mut g, None, &[0], &actions).unwrap();
        let mut d = Driver::new(opt, &[0], limits);
        if !guard {
            d = d.unguarded();
        }
        let interval = Duration::from_millis(100);
        let mut w = Stopwatch::start_with(&g, &[0], &behaviours, interval).unwrap();
        let t0 = g.now.get();
        let mut next_sample = 0.1;
        let mut steps = 0;
        let event = |d: &mut Driver, g: &mut SimGpus, w: &mut Stopwatch, e: Event| {
            let ms = ((g.now.get() - t0) * 1000.0).round() as u64;
            let r = w.reading_at(g, Duration::from_millis(ms)).unwrap();
            let at = Reading {
                time_ms: ms,
                energy_mj: r.energy_mj.iter().sum::<f64>() as u64,
            };
            d.event(g, Some(w), e, at).unwrap();
        };
        while !d.optimizer().is_done() && steps < most {
            event(&mut d, &mut g, &mut w, Event::StepBegin);
            // The step, with the stopwatch's samples at their times.
            let end = g.now.get() + step_s(g.power_limit(0).unwrap());
            while t0 + next_sample < end {
                g.now.set(t0 + next_sample);
                if w.sampling() {
                    w.sample_at(&g, Duration::from_secs_f64(next_sample))
                        .unwrap();
                }
                next_sample += 0.1;
            }
            g.now.set(end);
            event(&mut d, &mut g, &mut w, Event::StepEnd);
            steps += 1;
            if epoch.is_some_and(|e| steps % e == 0) {
                // An evaluation at the epoch's end, outside every step.
                g.now.set(end + 0.5);
                event(&mut d, &mut g, &mut w, Event::EpochEnd(0.5));
            }
        }
        (d, steps)
    }

    /// 6 J per step at 300 W, 4.5 J at 250 W, 6 J at 200 W: 250 W is the
    /// cheapest.
    fn distinct(limit_mw: u32) -> f64 {
        match limit_mw {
            300_000 => 0.020,
            250_000 => 0.018,
            _ => 0.030,
        }
    }

    #[test]
    fn on_a_100_ms_counter_short_profile_windows_are_lengthened_and_the_cheapest_limit_wins() {
        let d = model::Behaviour::default();
        let coarse = coarse_counter();
        let mut misled = Vec::new();
        for k in 0..20 {
            let phase = f64::from(k) * 0.005;
            let (naive, _) = profile_on(coarse, distinct, phase, false);
            if naive != 250_000 {
                misled.push((phase, naive));
            }
            let (picked, guarded) = profile_on(coarse, distinct, phase, true);
            assert_eq!(
                picked,
                250_000,
                "phase {phase}: {:?}",
                guarded.optimizer().profiled()
            );
            assert!(guarded.lengthenings() > 0);
            assert_eq!(
                guarded.profile_note(),
                None,
                "{:?}",
                guarded.optimizer().profiled()
            );
            let posted = guarded.optimizer().bounded_profile(64, "Fake GPU");
            assert_eq!(posted.unwrap().uncertain, Vec::<u32>::new());
        }
        println!("5-step windows on a 100 ms counter picked the wrong limit at {} of 20 phases: {misled:?}", misled.len());
        assert!(
            !misled.is_empty(),
            "the short windows never misled the selector"
        );
        // A counter that moves every millisecond measures windows of 5 steps of
        // 90 ms and more within 1 %: none is lengthened.
        fn slower(limit_mw: u32) -> f64 {
            5.0 * distinct(limit_mw)
        }
        let fine = model::Behaviour {
            period_s: 0.001,
            quantum_mj: 1.0,
            ..d
        };
        let (picked, guarded) = profile_on(fine, slower, 0.0, true);
        assert_eq!((picked, guarded.lengthenings()), (250_000, 0));
        assert_eq!(guarded.profile_note(), None);
    }

    #[test]
    fn a_job_of_32_steps_an_epoch_on_a_100_ms_counter_is_profiled_within_two_epochs() {
        let coarse = coarse_counter();
        let mut flagged = 0;
        for k in 0..20 {
            let phase = f64::from(k) * 0.005;
            let (d, steps) = train_on(coarse, distinct, phase, true, Some(32), 64);
            assert!(
                d.optimizer().is_done(),
                "phase {phase}: not profiled after {steps} steps: {:?}",
                d.optimizer().state()
            );
            let posted = d.optimizer().bounded_profile(64, "Fake GPU").unwrap();
            let limits: Vec<u32> = posted.measurements.iter().map(|m| m.power_limit).collect();
            assert_eq!(limits, [300, 250, 200], "phase {phase}");
            assert!(posted
                .measurements
                .iter()
                .all(|m| m.energy_uncertainty_j.is_some_and(|u| u > 0.0)));
            // Windows as long as two epochs of 32 steps allow: the cheapest limit,
            // or a choice flagged uncertain between it and the one picked.
            let picked = d.optimizer().optimal_limit_mw().unwrap() / 1000;
            if !posted.uncertain.is_empty() {
                flagged += 1;
                assert!(posted.uncertain.contains(&250), "phase {phase}: {posted:?}");
                assert!(d.profile_note().is_some());
            } else {
                assert_eq!(picked, 250, "phase {phase}: {:?}", d.optimizer().profiled());
            }
            assert!(
                picked == 250 || posted.uncertain.contains(&picked),
                "phase {phase}: {posted:?}"
            );
        }
        println!("32 steps an epoch on a 100 ms counter: profiled within 2 epochs at 20 of 20 phases, {flagged} flagged uncertain");
    }

    #[test]
    fn limits_whose_energies_stay_within_their_bounds_are_lengthened_then_flagged() {
        // 7.5 J per step at 300 W, 5 J at both 250 W and 200 W.
        fn tie(limit_mw: u32) -> f64 {
            match limit_mw {
                300_000 => 0.025,
                250_000 => 0.020,
                _ => 0.025,
            }
        }
        let coarse = coarse_counter();
        let (_, d) = profile_on(coarse, tie, 0.0, true);
        // Lengthened as far as a window may run (no length tells two equal
        // energies apart), then flagged.
        assert!(d.lengthenings() > 0, "{}", d.lengthenings());
        let note = d.profile_note().expect("a note");
        assert!(note.contains("250 W") && note.contains("200 W"), "{note}");
        assert!(!note.contains("300 W"), "{note}");
        // The profile posted carries the note and each limit's bound per step
        // per GPU (the driver's are over all the job's GPUs).
        let profile = d.optimizer().bounded_profile(64, "Fake GPU").unwrap();
        let chosen = d.optimizer().optimal_limit_mw().unwrap() / 1000;
        assert_eq!(profile.uncertain.len(), 2, "{:?}", profile.uncertain);
        assert_eq!(profile.uncertain[0], chosen);
        assert!(profile.uncertain.contains(&250) && profile.uncertain.contains(&200));
        let gpus = f64::from(d.indices.len() as u32);
        for m in &profile.measurements {
            let p = d
                .optimizer()
                .profiled()
                .into_iter()
                .rev()
                .find(|p| p.limit_w == m.power_limit);
            let u = m.energy_uncertainty_j.expect("a bound");
            assert!(u > 0.0 && (u - p.unwrap().uncertainty_j / gpus).abs() < 1e-12);
        }
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
