//! The decisions of a `wattwise run` session around its loop, free of the OS and
//! the network: which power profile the endpoint already has for this run, why the
//! loop stops (the run across hosts is over, the endpoint says stop, a signal), and
//! how the run ends (whether to post the profile, what ends the trial, the ending
//! and the exit code).
//!
//! [`crate::run::session::Session`] does what they decide (the endpoint's routes, the command, the
//! log) and feeds the per-event decisions to a [`crate::run::driver::Driver`]; the tests
//! here call them directly, with the recording fake GPUs where GPUs are involved.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use wattwise_core::power::{
    Action, LimitConstraints, PowerError, PowerLimitMeasurement, PowerOptimizer, PowerSettings,
};
use wattwise_core::runs::{HostMeasurement, HostProfile, RunView};
use wattwise_core::wire::{Phase, PowerProfile, ReportResponse, TrialId};

use crate::run::job_file::GpuFacts;

/// Why the command ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Ending {
    /// It exited by itself.
    Exited,
    /// The endpoint (or the run across hosts) said stop; the agent stopped it.
    StopTrain,
    /// The agent got this signal and stopped it.
    Signal(i32),
    /// The run across hosts failed (a host timed out).
    RunFailed(String),
}

/// The measurements a profile the endpoint already has gives this run: those of
/// the first profile of the same GPU model and batch size, of the Train phase, as
/// `profile_steps` steps on `gpu_count` GPUs (points without a throughput are
/// left out). Empty when there is none: the run profiles.
pub fn reused_measurements(
    profiles: &[PowerProfile],
    facts: &GpuFacts,
    trial: &TrialId,
    gpu_count: u32,
    profile_steps: u32,
) -> Vec<PowerLimitMeasurement> {
    let known = profiles.iter().find(|p| {
        p.gpu_model == facts.gpu_model
            && p.batch_size == trial.batch_size
            && p.phase == Phase::Train
    });
    known
        .iter()
        .flat_map(|p| p.measurements.iter())
        .filter_map(|m| {
            PowerLimitMeasurement::from_profile_point(m, trial.batch_size, gpu_count, profile_steps)
        })
        .collect()
}

/// The run's power limit optimizer and the actions that start it: one already
/// done with `reused` when there are any (its actions set the limit they select),
/// else one that profiles (its actions set the highest limit).
pub fn optimizer(
    settings: PowerSettings,
    constraints: LimitConstraints,
    gpu_count: u32,
    reused: Vec<PowerLimitMeasurement>,
) -> Result<(PowerOptimizer, Vec<Action>), PowerError> {
    if reused.is_empty() {
        PowerOptimizer::new(settings, constraints, gpu_count)
    } else {
        PowerOptimizer::with_measurements(settings, constraints, gpu_count, reused)
    }
}

/// The loop stops: why, whether the run reached its target, and the log line
/// that says so (written before the command is stopped).
#[derive(Clone, Debug, PartialEq)]
pub struct Stop {
    /// Why the command ends.
    pub ending: Ending,
    /// Whether the run converged.
    pub converged: bool,
    /// The log line.
    pub line: String,
}

/// What the run's latest view means for this host's loop: `None` while the run
/// goes on; once it says `stop_train`, a failed run stops as `RunFailed` with its
/// message, any other as `StopTrain`, converged as the run says.
pub fn run_view_stop(view: &RunView) -> Option<Stop> {
    if !view.stop_train {
        return None;
    }
    let failed = view.status == "failed";
    Some(Stop {
        ending: if failed {
            Ending::RunFailed(view.message.clone())
        } else {
            Ending::StopTrain
        },
        converged: !failed && view.converged,
        line: format!("run {}: {} ({})", view.run_id, view.status, view.message),
    })
}

/// What the endpoint's answer to the report of an epoch means for the loop.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// Train on.
    Continue,
    /// The report was given up; the log line says why (training goes on).
    Refused(String),
    /// The endpoint says stop.
    Stop(Stop),
}

/// Reads the endpoint's answer to the report of `epoch` (or why it was given up).
pub fn report_answer(epoch: u32, answer: &Result<ReportResponse, String>) -> Answer {
    match answer {
        Ok(r) if r.stop_train => Answer::Stop(Stop {
            ending: Ending::StopTrain,
            converged: r.converged,
            line: format!("endpoint after epoch {epoch}: stop ({})", r.message),
        }),
        Ok(_) => Answer::Continue,
        Err(e) => Answer::Refused(format!("report of epoch {epoch} refused: {e}")),
    }
}

/// The agent got signal `sig`: the loop stops the command.
pub fn signal_stop(sig: i32) -> Stop {
    Stop {
        ending: Ending::Signal(sig),
        converged: false,
        line: format!("signal {sig}: stopping the command"),
    }
}

/// The profile to post once the command ended: only a profile measured by this
/// run (`profiled_here`: none was reused), once the optimizer is done, and only by
/// the run's first host (`rank0`; a run on one host is its own first host). `None`
/// when there is nothing to post. It carries the bounds the meter measured
/// (see [`PowerOptimizer::bounded_profile`]).
pub fn profile_to_post(
    profiled_here: bool,
    optimizer: &PowerOptimizer,
    rank0: bool,
    batch_size: u32,
    gpu_model: &str,
) -> Option<PowerProfile> {
    if profiled_here && optimizer.is_done() && rank0 {
        optimizer.bounded_profile(batch_size, gpu_model)
    } else {
        None
    }
}

/// This host's profile for its run across hosts (host `host_rank`, `gpu_count`
/// GPUs): each limit the optimizer measured, with the bound the meter measured
/// over it (the optimizer's record of the limit's last window, per step over
/// the host's GPUs, over the measurement's steps), none for a limit measured
/// without one.
pub fn host_profile(host_rank: i64, gpu_count: u32, optimizer: &PowerOptimizer) -> HostProfile {
    let measurements = optimizer
        .measurements()
        .iter()
        .map(|m| {
            let bound = optimizer
                .profiled_window(m.power_limit)
                .map(|p| p.per_step().uncertainty_j * f64::from(m.steps));
            HostMeasurement::with_bound(*m, bound)
        })
        .collect();
    HostProfile {
        host_rank,
        gpu_count: i64::from(gpu_count),
        measurements,
    }
}

/// The line that says the run's combined profile could not tell the limit it
/// chose from others (the run's `uncertain` note); `None` when it could.
pub fn run_uncertain_line(view: &RunView) -> Option<String> {
    let [chosen, others @ ..] = view.uncertain.as_slice() else {
        return None;
    };
    let others: Vec<String> = others.iter().map(|w| format!("{w} W")).collect();
    Some(format!(
        "run {}: profile uncertain: the chosen {chosen} W and {} lie within their energy bounds (summed over the hosts)",
        view.run_id,
        others.join(", ")
    ))
}

/// What ends the trial once the command ended.
#[derive(Clone, Debug, PartialEq)]
pub enum TrialEnd {
    /// A run on one host: the agent ends its own trial.
    Own,
    /// A host of a run across hosts: the run ends its trial once every host is
    /// done (or one timed out); the log line says how the run ended, as far as
    /// the endpoint said.
    LeftToRun(String),
}

/// What ends the trial, from the run's final view: `None` for a run on one host,
/// `Some(None)` when the endpoint never answered this host of a run across hosts.
pub fn trial_end(run_view: Option<Option<&RunView>>) -> TrialEnd {
    match run_view {
        None => TrialEnd::Own,
        Some(None) => {
            TrialEnd::LeftToRun("the run's state is unknown: the endpoint never answered".into())
        }
        Some(Some(view)) => TrialEnd::LeftToRun(format!(
            "run {}: {}{}",
            view.run_id,
            view.status,
            if view.message.is_empty() {
                String::new()
            } else {
                format!(" ({})", view.message)
            }
        )),
    }
}

/// The run's ending, given its final view (`None`: none): a run that failed
/// ends this host as `RunFailed` with the run's message, unless the loop already
/// stopped for that (its message stays).
pub fn final_ending(ending: Ending, run_view: Option<&RunView>) -> Ending {
    match run_view {
        Some(view) if view.status == "failed" && !matches!(ending, Ending::RunFailed(_)) => {
            Ending::RunFailed(view.message.clone())
        }
        _ => ending,
    }
}

/// The agent's exit code: 1 when the run across hosts failed; 0 when the agent
/// stopped the command by its signal on the endpoint's order (a normal end of the
/// run); else the command's own (`128 + s` when signal `s` ended it).
pub fn exit_code(ending: &Ending, status: ExitStatus) -> i32 {
    match (ending, status.signal()) {
        (Ending::RunFailed(_), _) => 1,
        (Ending::StopTrain, Some(_)) => 0,
        _ => crate::run::child::exit_code(status),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;
    use crate::run::driver::apply;
    use wattwise_core::power::{Reading, WindowEnergy};
    use wattwise_core::wire::PowerMeasurement;

    use crate::run::driver::testing::{profiled, LIMITS};
    use crate::run::job_file::fake_facts as facts;

    fn trial(batch_size: u32) -> TrialId {
        TrialId {
            job_id: "mnist".into(),
            batch_size,
            trial_number: 3,
        }
    }

    fn point(power_limit: u32, average_power: f64, throughput: f64) -> PowerMeasurement {
        PowerMeasurement {
            power_limit,
            average_power,
            throughput,
            energy_uncertainty_j: None,
        }
    }

    fn profile(model: &str, batch_size: u32, phase: Phase, points: &[u32]) -> PowerProfile {
        PowerProfile {
            batch_size,
            phase,
            gpu_model: model.into(),
            measurements: points
                .iter()
                .map(|&w| point(w, f64::from(w) * 0.8, 1000.0 - f64::from(w)))
                .collect(),
            uncertain: Vec::new(),
        }
    }

    fn view(status: &str, stop_train: bool, converged: bool, message: &str) -> RunView {
        RunView {
            job_id: "mnist".into(),
            run_id: "slurm-7.0".into(),
            trial_number: 3,
            batch_size: 64,
            hosts: 3,
            joined: 3,
            status: status.into(),
            stop_train,
            converged,
            message: message.into(),
            power_limit: None,
            profiled: 0,
            reported_epoch: 0,
            epochs: Vec::new(),
            uncertain: Vec::new(),
        }
    }

    #[test]
    fn reuse_takes_the_first_train_profile_of_this_model_and_batch_size() {
        let profiles = [
            profile("Other GPU", 64, Phase::Train, &[290]),
            profile("Fake GPU", 32, Phase::Train, &[280]),
            profile("Fake GPU", 64, Phase::Eval, &[270]),
            profile("Fake GPU", 64, Phase::Train, &[300, 200]),
            profile("Fake GPU", 64, Phase::Train, &[250]),
        ];
        let m = reused_measurements(&profiles, &facts(), &trial(64), 2, 40);
        let limits: Vec<u32> = m.iter().map(|m| m.power_limit).collect();
        assert_eq!(limits, [300, 200]);
        // 40 steps of 64 samples at 700 samples/s; 240 W on each of 2 GPUs.
        let time = 40.0 * 64.0 / 700.0;
        assert!((m[0].time - time).abs() < 1e-9, "{:?}", m[0]);
        assert!(
            (m[0].energy - 240.0 * 2.0 * time).abs() < 1e-6,
            "{:?}",
            m[0]
        );
        assert_eq!(m[0].steps, 40);
        assert!(reused_measurements(&profiles, &facts(), &trial(128), 2, 40).is_empty());
        assert!(reused_measurements(&[], &facts(), &trial(64), 2, 40).is_empty());
    }

    #[test]
    fn reuse_leaves_out_points_without_throughput_and_looks_no_further() {
        let mut first = profile("Fake GPU", 64, Phase::Train, &[300, 250, 200]);
        first.measurements[1].throughput = 0.0;
        first.measurements[2].throughput = f64::NAN;
        let profiles = [first, profile("Fake GPU", 64, Phase::Train, &[150])];
        let m = reused_measurements(&profiles, &facts(), &trial(64), 2, 40);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].power_limit, 300);
        // A matching profile with no usable point gives nothing: the run profiles.
        let mut empty = profile("Fake GPU", 64, Phase::Train, &[300]);
        empty.measurements[0].throughput = -1.0;
        let profiles = [empty, profile("Fake GPU", 64, Phase::Train, &[150])];
        assert!(reused_measurements(&profiles, &facts(), &trial(64), 2, 40).is_empty());
    }

    #[test]
    fn a_reused_profile_sets_its_optimum_at_once_and_posts_nothing() {
        let profiles = [profile("Fake GPU", 64, Phase::Train, &[300, 250, 200, 150])];
        let reused = reused_measurements(&profiles, &facts(), &trial(64), 2, 40);
        let (opt, actions) = optimizer(PowerSettings::default(), LIMITS, 2, reused).unwrap();
        assert!(opt.is_done());
        let optimum = opt.optimal_limit_mw().unwrap();
        assert!((LIMITS.min_mw..=LIMITS.max_mw).contains(&optimum));
        let mut g = FakeGpus::new(3);
        apply(&mut g, None, &[0, 2], &actions).unwrap();
        assert_eq!(g.sets, [(0, optimum), (2, optimum)]);
        assert_eq!(g.gpus[1].limit_mw, 300_000);
        // Profiled elsewhere: this run posts no profile, even as rank 0.
        let profiled_here = !opt.is_done();
        assert_eq!(
            profile_to_post(profiled_here, &opt, true, 64, "Fake GPU"),
            None
        );
    }

    #[test]
    fn without_a_profile_the_run_profiles_from_the_highest_limit() {
        let (opt, actions) = optimizer(PowerSettings::default(), LIMITS, 2, Vec::new()).unwrap();
        assert!(!opt.is_done());
        let mut g = FakeGpus::new(2);
        g.gpus[0].limit_mw = 150_000;
        g.gpus[1].limit_mw = 150_000;
        apply(&mut g, None, &[0, 1], &actions).unwrap();
        assert_eq!(g.sets, [(0, 300_000), (1, 300_000)]);
    }

    #[test]
    fn a_run_view_stops_the_loop_only_when_it_says_stop_train() {
        assert_eq!(run_view_stop(&view("running", false, false, "")), None);
        assert_eq!(
            run_view_stop(&view("stopped", true, true, "reached the target")),
            Some(Stop {
                ending: Ending::StopTrain,
                converged: true,
                line: "run slurm-7.0: stopped (reached the target)".into(),
            })
        );
        assert_eq!(
            run_view_stop(&view("failed", true, true, "host 2 sent nothing for 60 s")),
            Some(Stop {
                ending: Ending::RunFailed("host 2 sent nothing for 60 s".into()),
                converged: false,
                line: "run slurm-7.0: failed (host 2 sent nothing for 60 s)".into(),
            })
        );
    }

    #[test]
    fn an_endpoint_answer_stops_continues_or_is_logged_as_refused() {
        let answer = |stop_train, converged| {
            Ok(ReportResponse {
                stop_train,
                converged,
                message: "cost bound".into(),
            })
        };
        assert_eq!(report_answer(2, &answer(false, false)), Answer::Continue);
        assert_eq!(
            report_answer(4, &answer(true, true)),
            Answer::Stop(Stop {
                ending: Ending::StopTrain,
                converged: true,
                line: "endpoint after epoch 4: stop (cost bound)".into(),
            })
        );
        assert!(matches!(
            report_answer(4, &answer(true, false)),
            Answer::Stop(Stop {
                converged: false,
                ..
            })
        ));
        assert_eq!(
            report_answer(5, &Err("400 bad epoch".into())),
            Answer::Refused("report of epoch 5 refused: 400 bad epoch".into())
        );
    }

    #[test]
    fn a_signal_stops_the_loop_unconverged() {
        assert_eq!(
            signal_stop(15),
            Stop {
                ending: Ending::Signal(15),
                converged: false,
                line: "signal 15: stopping the command".into(),
            }
        );
    }

    #[test]
    fn the_profile_is_posted_by_rank_0_of_a_run_that_profiled_to_the_end() {
        let mut g = FakeGpus::new(2);
        let (d, _) = profiled(&mut g, &[0, 1]);
        let posted = profile_to_post(true, d.optimizer(), true, 64, "Fake GPU").unwrap();
        assert_eq!((posted.batch_size, posted.phase), (64, Phase::Train));
        assert_eq!(posted.gpu_model, "Fake GPU");
        assert_eq!(
            posted.measurements.len(),
            d.optimizer().measurements().len()
        );
        assert!(posted.measurements.len() > 2);
        // Another host of the run, or a run that reused a profile: nothing.
        assert_eq!(
            profile_to_post(true, d.optimizer(), false, 64, "Fake GPU"),
            None
        );
        assert_eq!(
            profile_to_post(false, d.optimizer(), true, 64, "Fake GPU"),
            None
        );
        // Profiling cut short (the command ended first): nothing.
        let (fresh, _) = optimizer(PowerSettings::default(), LIMITS, 2, Vec::new()).unwrap();
        assert_eq!(profile_to_post(true, &fresh, true, 64, "Fake GPU"), None);
    }

    #[test]
    fn a_host_profile_carries_each_limits_last_bound_over_its_steps() {
        let mut g = FakeGpus::new(2);
        let (d, _) = profiled(&mut g, &[0, 1]);
        let measured = d.optimizer().measurements();
        // Profiled without a meter: no bounds.
        let plain = host_profile(1, 2, d.optimizer());
        assert_eq!((plain.host_rank, plain.gpu_count), (1, 2));
        assert_eq!(plain.measurements.len(), measured.len());
        assert!(plain
            .measurements
            .iter()
            .all(|m| m.energy_uncertainty_j.is_none()));
        // With the meter's bounds per step, handed to the optimizer before each
        // window closes (the last measurement of a window counts; the first
        // limit has none), on the same steps.
        let (mut opt, _) = PowerOptimizer::new(PowerSettings::default(), LIMITS, 2).unwrap();
        let mut at = Reading::default();
        while !opt.is_done() {
            let w = u64::from(opt.current_limit_mw().unwrap_or_default() / 1000);
            if opt.window_closes_next() && w != u64::from(LIMITS.max_mw / 1000) {
                let steps = f64::from(opt.window_steps().unwrap_or(1));
                for per_step in [9.0, 0.25] {
                    opt.measure_window(WindowEnergy {
                        energy_j: steps,
                        uncertainty_j: per_step * steps,
                        too_short: false,
                    });
                }
            }
            opt.step_begin(at);
            at.time_ms += 10_000 / w.max(1);
            at.energy_mj += 2 * w * (10_000 / w.max(1));
        }
        assert_eq!(opt.measurements(), measured);
        let posted = host_profile(0, 2, &opt);
        for (m, p) in measured.iter().zip(&posted.measurements) {
            assert_eq!(
                (p.power_limit, p.energy, p.time, p.steps),
                (m.power_limit, m.energy, m.time, m.steps)
            );
        }
        assert_eq!(posted.measurements[0].energy_uncertainty_j, None);
        for p in &posted.measurements[1..] {
            assert_eq!(p.energy_uncertainty_j, Some(0.25 * f64::from(p.steps)));
        }
        // What the endpoint takes.
        posted.validate().unwrap();
    }

    #[test]
    fn the_runs_uncertain_note_is_one_line() {
        let mut v = view("running", false, false, "");
        assert_eq!(run_uncertain_line(&v), None);
        v.uncertain = vec![200, 250, 150];
        assert_eq!(
            run_uncertain_line(&v).as_deref(),
            Some("run slurm-7.0: profile uncertain: the chosen 200 W and 250 W, 150 W lie within their energy bounds (summed over the hosts)")
        );
    }

    #[test]
    fn a_run_on_one_host_ends_its_own_trial_a_run_across_hosts_leaves_it_to_the_run() {
        assert_eq!(trial_end(None), TrialEnd::Own);
        assert_eq!(
            trial_end(Some(None)),
            TrialEnd::LeftToRun("the run's state is unknown: the endpoint never answered".into())
        );
        let failed = view("failed", true, false, "host 1 sent nothing for 60 s");
        assert_eq!(
            trial_end(Some(Some(&failed))),
            TrialEnd::LeftToRun("run slurm-7.0: failed (host 1 sent nothing for 60 s)".into())
        );
        let ended = view("ended", true, false, "");
        assert_eq!(
            trial_end(Some(Some(&ended))),
            TrialEnd::LeftToRun("run slurm-7.0: ended".into())
        );
    }

    #[test]
    fn a_failed_run_is_the_final_ending_whatever_stopped_this_host() {
        let failed = view("failed", true, false, "host 1 timed out");
        let run_failed = || Ending::RunFailed("host 1 timed out".into());
        assert_eq!(final_ending(Ending::Exited, Some(&failed)), run_failed());
        assert_eq!(final_ending(Ending::StopTrain, Some(&failed)), run_failed());
        assert_eq!(
            final_ending(Ending::Signal(15), Some(&failed)),
            run_failed()
        );
        // The loop's own RunFailed keeps its message.
        let own = Ending::RunFailed("host 2 timed out".into());
        assert_eq!(final_ending(own.clone(), Some(&failed)), own);
        // A run that did not fail, or no view: unchanged.
        let stopped = view("stopped", true, true, "reached the target");
        assert_eq!(
            final_ending(Ending::StopTrain, Some(&stopped)),
            Ending::StopTrain
        );
        assert_eq!(final_ending(Ending::Exited, None), Ending::Exited);
    }

    #[test]
    fn the_exit_code_is_the_commands_unless_the_agent_stopped_it_or_the_run_failed() {
        let exited = |code: i32| ExitStatus::from_raw(code << 8);
        let killed = ExitStatus::from_raw;
        let failed = Ending::RunFailed("host 1 timed out".into());
        assert_eq!(exit_code(&failed, exited(0)), 1);
        assert_eq!(exit_code(&failed, killed(15)), 1);
        // Stopped on the endpoint's order by the agent's signal: a normal end.
        assert_eq!(exit_code(&Ending::StopTrain, killed(15)), 0);
        assert_eq!(exit_code(&Ending::StopTrain, killed(9)), 0);
        // It exited by itself while being stopped: its own code.
        assert_eq!(exit_code(&Ending::StopTrain, exited(3)), 3);
        assert_eq!(exit_code(&Ending::Exited, exited(0)), 0);
        assert_eq!(exit_code(&Ending::Exited, exited(2)), 2);
        assert_eq!(exit_code(&Ending::Exited, killed(9)), 137);
        assert_eq!(exit_code(&Ending::Signal(15), killed(15)), 143);
    }
}
