//! How long a profile window runs when a host's meter bounds its energy.
//!
//! Before the step beginning that would close a window, the host measures the
//! window so far (its energy with its bound, over all the job's GPUs) and asks
//! [`super::PowerOptimizer::judge_window`]. The window closes when it is measured well:
//! its bound under [`WINDOW_BOUND`] of its energy, not shorter than the meter can
//! measure, and not within the bounds of the cheapest limit profiled before it.
//! Otherwise it is lengthened at once by the steps that should bring its bound
//! under what is needed: a window's bound comes from its edges and does not grow
//! with its length, so its ratio to the energy falls about as one over the
//! length. It is never lengthened past [`MAX_WINDOW_FACTOR`] times `profile_steps`,
//! nor, once the steps of an epoch are known, past its share of what is left of
//! the epoch (the limits after it get theirs); when it cannot be lengthened, it is
//! accepted with its bound (a choice it leaves uncertain is flagged in the
//! profile, see [`super::uncertain_limits`]). An epoch end that cuts a window of
//! at least `profile_steps` steps keeps it (see [`super::PowerOptimizer::epoch_end`]).

use serde::{Deserialize, Serialize};

use super::measured::{ProfiledEnergy, Reading};

/// A profile window's energy is measured well enough when its bound is under
/// this fraction of it (the simulator bounds a modelled window's energy by it).
pub const WINDOW_BOUND: f64 = 0.02;

/// A window runs at most this many times `profile_steps` steps.
pub const MAX_WINDOW_FACTOR: u32 = 16;

/// What a host's meter measured over the open window so far, all the job's GPUs
/// together.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowEnergy {
    /// Energy, J.
    pub energy_j: f64,
    /// Its half-width, J.
    pub uncertainty_j: f64,
    /// Whether the window is shorter than the meter can measure (a few updates
    /// of the energy counter).
    pub too_short: bool,
}

impl WindowEnergy {
    /// Whether it is a measurement a window may keep: a finite energy and a
    /// finite bound >= 0.
    pub fn is_bounded(&self) -> bool {
        self.energy_j.is_finite() && self.uncertainty_j.is_finite() && self.uncertainty_j >= 0.0
    }
}

/// Why a window is too uncertain to close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Uncertain {
    /// Its bound is over [`WINDOW_BOUND`] of its energy.
    Wide,
    /// It is shorter than the meter can measure.
    TooShort,
    /// Its energy lies within the bounds of the cheapest limit profiled before.
    Near {
        /// That limit, W.
        limit_w: u32,
    },
}

/// What [`super::PowerOptimizer::judge_window`] decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowCall {
    /// Measured well: it closes at this step beginning.
    Close,
    /// Lengthened by `by` steps, to `to` steps in all.
    Lengthen {
        /// Steps added.
        by: u32,
        /// The window's steps now.
        to: u32,
        /// The steps that should bound it well (`u32::MAX`: none can); over `to`
        /// when the window could not be lengthened that far and will be accepted
        /// with its bound.
        needed: u32,
        /// Why.
        why: Uncertain,
    },
    /// Uncertain, but there is no room to lengthen it: it closes with its bound.
    Accept {
        /// The steps that should have bounded it well (`u32::MAX`: none can).
        needed: u32,
        /// Why.
        why: Uncertain,
    },
}

/// The last step end of an open window, once the window covers `profile_steps`
/// steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct StepEnd {
    /// The reading at that step end.
    pub at: Reading,
    /// The window's steps by then.
    pub steps: u32,
}

/// Where an epoch end ending now would cut the open window, kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowCut {
    /// The window's end: its last step end, or the epoch end when that step's
    /// end was not seen.
    pub end: Reading,
    /// Steps the window covers to `end`.
    pub steps: u32,
    /// Whether `end` is the last step's end (not the epoch end).
    pub at_step_end: bool,
}

/// The steps a window of `steps` steps measured as `m` needs in all to be
/// measured well, and why; `None` when it is measured well already. Readings
/// that are not numbers count as unbounded.
pub fn steps_needed(
    steps: u32,
    m: WindowEnergy,
    profiled: &[ProfiledEnergy],
) -> Option<(u32, Uncertain)> {
    let n = f64::from(steps.max(1));
    let energy = if m.energy_j.is_finite() {
        m.energy_j.max(0.0)
    } else {
        0.0
    } / n;
    let bound = if m.uncertainty_j.is_nan() {
        f64::INFINITY
    } else {
        m.uncertainty_j.max(0.0)
    } / n;
    let cheapest = profiled
        .iter()
        .filter(|p| p.energy_j.is_finite() && p.uncertainty_j.is_finite())
        .min_by(|a, b| a.energy_j.total_cmp(&b.energy_j));
    let near = cheapest.filter(|p| p.overlaps(energy, bound));
    let wide = bound > WINDOW_BOUND * energy;
    let (target, why) = match near {
        // Told apart once its bound is under the gap the other's leaves.
        Some(p) => {
            let gap = (energy - p.energy_j).abs() - p.uncertainty_j;
            let target = if wide {
                gap.min(WINDOW_BOUND * energy)
            } else {
                gap
            };
            (target, Uncertain::Near { limit_w: p.limit_w })
        }
        None if m.too_short => (WINDOW_BOUND * energy, Uncertain::TooShort),
        None if wide => (WINDOW_BOUND * energy, Uncertain::Wide),
        None => return None,
    };
    // The bound per step falls as one over the window's steps.
    let needed = if target > 0.0 && bound.is_finite() {
        (n * bound / target).ceil().min(f64::from(u32::MAX)) as u32
    } else {
        u32::MAX
    };
    let needed = if m.too_short {
        needed.max(steps.saturating_mul(2))
    } else {
        needed
    };
    Some((needed.max(steps.saturating_add(1)), why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::{
        Action, LimitConstraints, PowerOptimizer, PowerSettings, PowerState, Selector,
    };
    use proptest::prelude::*;

    fn energy(energy_j: f64, uncertainty_j: f64) -> WindowEnergy {
        WindowEnergy {
            energy_j,
            uncertainty_j,
            too_short: false,
        }
    }

    fn pe(limit_w: u32, energy_j: f64, uncertainty_j: f64) -> ProfiledEnergy {
        ProfiledEnergy {
            limit_w,
            energy_j,
            uncertainty_j,
        }
    }

    /// 300, 200 and 100 W, as the python suite's job profiles them: 1 wait step,
    /// 1 warmup step, 3 profile steps.
    fn job(warmup: u32, profile: u32) -> PowerOptimizer {
        let settings = PowerSettings {
            wait_steps: 1,
            warmup_steps: warmup,
            profile_steps: profile,
            pl_step: 100,
            selector: Selector::Energy,
            stop_after_rises: Some(crate::power::WATTWISE_STOP_AFTER_RISES),
        };
        let limits = LimitConstraints {
            min_mw: 100_000,
            max_mw: 300_000,
        };
        PowerOptimizer::new(settings, limits, 1).unwrap().0
    }

    fn r(time_ms: u64, energy_mj: u64) -> Reading {
        Reading { time_ms, energy_mj }
    }

    #[test]
    fn a_window_needs_the_steps_that_bring_its_bound_under_the_threshold() {
        // 100 J ± 1 J over 5 steps: 1 % is measured well.
        assert_eq!(steps_needed(5, energy(100.0, 1.0), &[]), None);
        // ± 10 J is 10 %: the bound stays, the energy grows, 25 steps make 2 %.
        assert_eq!(
            steps_needed(5, energy(100.0, 10.0), &[]),
            Some((25, Uncertain::Wide))
        );
        // Too short for the counter: at least twice as long, even when its bound
        // looks small.
        let short = WindowEnergy {
            too_short: true,
            ..energy(100.0, 1.0)
        };
        assert_eq!(steps_needed(5, short, &[]), Some((10, Uncertain::TooShort)));
        // Within the bounds of the cheapest limit before (20 ± 0.4 J a step
        // against 19.6 ± 0.1, its bound 2 % already): its bound per step must
        // fall under the 0.3 J gap the other leaves, 7 steps.
        let near = [pe(300, 30.0, 0.1), pe(200, 19.6, 0.1)];
        assert_eq!(
            steps_needed(5, energy(100.0, 2.0), &near),
            Some((7, Uncertain::Near { limit_w: 200 }))
        );
        // Wide too: the tighter of the two, 2 J a step under 0.3 J.
        assert_eq!(
            steps_needed(5, energy(100.0, 10.0), &near),
            Some((34, Uncertain::Near { limit_w: 200 }))
        );
        // Equal energies: no length tells them apart.
        assert_eq!(
            steps_needed(5, energy(98.0, 1.0), &near),
            Some((u32::MAX, Uncertain::Near { limit_w: 200 }))
        );
        // Apart from the cheapest: only its own bound counts.
        assert_eq!(steps_needed(5, energy(50.0, 0.5), &near), None);
    }

    #[test]
    fn readings_that_are_not_numbers_count_as_unbounded() {
        for (e, u) in [
            (f64::NAN, 1.0),
            (100.0, f64::NAN),
            (100.0, f64::INFINITY),
            (f64::INFINITY, 1.0),
            (-5.0, 1.0),
        ] {
            let got = steps_needed(5, energy(e, u), &[pe(1, f64::NAN, 1.0)]);
            assert_eq!(got, Some((u32::MAX, Uncertain::Wide)), "{e} ± {u}");
        }
        // Nothing measured, exactly: measured well.
        assert_eq!(steps_needed(5, energy(0.0, 0.0), &[]), None);
        // A negative bound is no bound.
        assert_eq!(steps_needed(5, energy(100.0, -1.0), &[]), None);
        assert_eq!(steps_needed(0, energy(100.0, 10.0), &[]).unwrap().0, 5);
        assert_eq!(
            steps_needed(u32::MAX, energy(1.0, 1.0), &[]).unwrap().0,
            u32::MAX
        );
    }

    /// One step of 100 ms at 200 W from `at` (its beginning), `at` its end.
    fn step(opt: &mut PowerOptimizer, at: &mut Reading) {
        opt.step_begin(*at);
        at.time_ms += 100;
        at.energy_mj += 20_000;
        opt.step_end(*at);
    }

    /// Drives `opt` to the step beginning that would close its window, at `at`.
    fn to_closing(opt: &mut PowerOptimizer, at: &mut Reading) {
        while !opt.window_closes_next() {
            step(opt, at);
        }
    }

    #[test]
    fn in_the_first_epoch_a_window_is_lengthened_at_once_at_most_16_times() {
        let mut opt = job(1, 3);
        let mut at = r(0, 0);
        assert_eq!(opt.judge_window(energy(1.0, 1.0)), None, "no window");
        to_closing(&mut opt, &mut at);
        assert_eq!(opt.window_steps(), Some(3));
        // 10 % over 3 steps: 15 steps, at once.
        assert_eq!(
            opt.judge_window(energy(60.0, 6.0)),
            Some(WindowCall::Lengthen {
                by: 12,
                to: 15,
                needed: 15,
                why: Uncertain::Wide
            })
        );
        to_closing(&mut opt, &mut at);
        assert_eq!(opt.window_steps(), Some(15));
        // Now measured well: it closes, scaled back to 3 steps (60 J a step ±
        // 0.6, the record the next limit is judged against: far from its 20 J).
        assert_eq!(
            opt.judge_window(energy(900.0, 9.0)),
            Some(WindowCall::Close)
        );
        let a = opt.step_begin(at);
        let Action::EndWindow { measurement } = a[0] else {
            panic!("{a:?}")
        };
        assert_eq!(measurement.steps, 3);
        assert!((measurement.time - 0.3).abs() < 1e-9, "{measurement:?}");
        // The next limit's window needs more than 16 times its steps: 48, and
        // there it is accepted with its bound.
        to_closing(&mut opt, &mut at);
        let call = opt.judge_window(energy(60.0, 60.0));
        assert_eq!(
            call,
            Some(WindowCall::Lengthen {
                by: 45,
                to: 48,
                needed: 150,
                why: Uncertain::Wide
            })
        );
        to_closing(&mut opt, &mut at);
        assert_eq!(
            opt.judge_window(energy(960.0, 60.0)),
            Some(WindowCall::Accept {
                needed: 150,
                why: Uncertain::Wide
            })
        );
        assert!(matches!(opt.step_begin(at)[0], Action::EndWindow { .. }));
    }

    #[test]
    fn an_epoch_end_keeps_a_window_of_profile_steps_to_its_last_step_end() {
        let mut opt = job(1, 3);
        let mut at = r(0, 0);
        to_closing(&mut opt, &mut at);
        opt.judge_window(energy(1.0, 1.0));
        // Two more steps (5 in all), then an evaluation of 10 s before the epoch
        // end.
        for _ in 0..2 {
            step(&mut opt, &mut at);
        }
        let eval = r(at.time_ms + 10_000, at.energy_mj + 5_000_000);
        let cut = opt.window_cut(eval).unwrap();
        assert_eq!((cut.steps, cut.at_step_end, cut.end), (5, true, at));
        let a = opt.epoch_end(eval);
        let Action::EndWindow { measurement } = a[0] else {
            panic!("{a:?}")
        };
        // 5 steps of 100 ms at 200 W, scaled to 3: the evaluation is left out.
        assert!((measurement.time - 0.3).abs() < 1e-9, "{measurement:?}");
        assert!((measurement.energy - 60.0).abs() < 1e-9, "{measurement:?}");
        assert_eq!(
            *opt.state(),
            PowerState::Ready {
                next_limit_mw: 200_000,
                steps: 1
            }
        );
        assert_eq!(opt.measurements().len(), 1);
        // Without the last step's end (a host that sends none), the epoch end
        // ends it.
        let mut opt = job(0, 2);
        let mut at = r(0, 0);
        for _ in 0..3 {
            at.time_ms += 100;
            opt.step_begin(at);
        }
        let cut = opt.window_cut(r(400, 0)).unwrap();
        assert_eq!((cut.steps, cut.at_step_end), (2, false));
        // One step short of profile_steps: cancelled, the same limit restarts.
        let mut opt = job(0, 3);
        opt.step_begin(r(0, 0));
        opt.step_begin(r(100, 0));
        assert_eq!(opt.window_cut(r(150, 0)), None);
        assert!(matches!(
            opt.epoch_end(r(150, 0))[0],
            Action::CancelWindow { .. }
        ));
    }

    /// A job of `per_epoch` steps a epoch whose windows are never measured well;
    /// answers the epochs it took to profile every limit (`None`: not within 10).
    fn epochs_to_profile(mut opt: PowerOptimizer, per_epoch: u32) -> Option<u32> {
        let mut at = r(0, 0);
        for epoch in 1..=10 {
            for _ in 0..per_epoch {
                opt.judge_window(energy(1.0, 1.0));
                step(&mut opt, &mut at);
            }
            opt.epoch_end(r(at.time_ms + 1, at.energy_mj));
            if opt.is_done() {
                return Some(epoch);
            }
        }
        None
    }

    #[test]
    fn a_job_of_32_steps_an_epoch_whose_windows_stay_uncertain_is_profiled_in_two_epochs() {
        // The python suite's plain PyTorch job: 3 limits, 1 warmup step, 3-step
        // windows, 32 steps an epoch. The first epoch's window runs to its end
        // (the steps of an epoch are not known yet), the second shares its epoch.
        assert_eq!(epochs_to_profile(job(1, 3), 32), Some(2));
        // Ten steps an epoch: still two epochs, with shorter windows.
        assert_eq!(epochs_to_profile(job(1, 3), 10), Some(2));
        // Six: one limit an epoch.
        assert_eq!(epochs_to_profile(job(1, 3), 6), Some(3));
        // Four: the first epoch's window is one step short and starts over.
        assert_eq!(epochs_to_profile(job(1, 3), 4), Some(4));
    }

    #[derive(Clone, Debug)]
    enum Ev {
        Begin(u64, u64),
        End(u64, u64),
        Epoch(u64, u64),
        Judge(f64, f64, bool),
    }

    fn any_f64() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            0.0f64..1e4,
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(-1.0)
        ]
    }

    fn event() -> impl Strategy<Value = Ev> {
        prop_oneof![
            6 => (any::<u64>(), any::<u64>()).prop_map(|(t, e)| Ev::Begin(t, e)),
            3 => (any::<u64>(), any::<u64>()).prop_map(|(t, e)| Ev::End(t, e)),
            1 => (any::<u64>(), any::<u64>()).prop_map(|(t, e)| Ev::Epoch(t, e)),
            3 => (any_f64(), any_f64(), any::<bool>()).prop_map(|(e, u, s)| Ev::Judge(e, u, s)),
        ]
    }

    proptest! {
        // Each case round-trips the stored form after every event: 64 cases keep
        // it about a second.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn any_readings_never_panic_nor_lengthen_past_the_cap_and_the_stored_form_reads_back(
            warmup in 0u32..4,
            profile in 1u32..6,
            events in proptest::collection::vec(event(), 0..400),
        ) {
            let mut opt = job(warmup, profile);
            for ev in events {
                match ev {
                    Ev::Begin(t, e) => { opt.step_begin(r(t, e)); }
                    Ev::End(t, e) => { opt.step_end(r(t, e)); }
                    Ev::Epoch(t, e) => { opt.epoch_end(r(t, e)); }
                    Ev::Judge(e, u, short) => {
                        let m = WindowEnergy { energy_j: e, uncertainty_j: u, too_short: short };
                        opt.judge_window(m);
                    }
                }
                let most = profile * MAX_WINDOW_FACTOR;
                prop_assert!(opt.window_steps().is_none_or(|s| s <= most), "{opt:?}");
                prop_assert!(profile + opt.lengthened_by <= most, "{opt:?}");
                for m in opt.measurements() {
                    prop_assert!(m.energy.is_finite() && m.time.is_finite() && m.steps == profile);
                }
                // One record a measured window, each a number with its bound.
                prop_assert!(opt.profiled_windows().len() <= opt.measurements().len());
                for p in opt.profiled_windows() {
                    prop_assert!(p.energy_j.is_finite() && p.uncertainty_j.is_finite() && p.uncertainty_j >= 0.0);
                }
                let text = serde_json::to_string(&opt).unwrap();
                let back: PowerOptimizer = serde_json::from_str(&text).unwrap();
                prop_assert_eq!(&back, &opt);
            }
        }

        #[test]
        fn a_job_with_room_for_its_first_window_an_epoch_is_profiled_within_as_many_epochs_as_limits(
            warmup in 0u32..4,
            profile in 1u32..6,
            extra in 0u32..40,
        ) {
            let opt = job(warmup, profile);
            let limits = opt.limits_mw().len() as u32;
            let per_epoch = 1 + warmup + profile + extra;
            let took = epochs_to_profile(opt, per_epoch);
            prop_assert!(took.is_some_and(|e| e <= limits), "{took:?}");
        }
    }
}
