//! Runs across hosts: the agents of every host of one training run share one trial.
//!
//! A run spanning N hosts has one agent per host; they share a run id, the host
//! count and each has a rank. The endpoint is their only rendezvous, and this
//! module decides everything about it, from the request and `now` alone:
//! - joining: the first host to arrive dispatches the trial (one batch size), the
//!   others join it;
//! - combining: a host reports its own cumulative time and energy per epoch; once
//!   every host reported epoch `e`, the optimizer gets ONE report for it, with the
//!   energy summed over the hosts and the time of the slowest host (the metric is
//!   rank 0's);
//! - the power limit: each host posts its profile (per limit: energy and time over
//!   its profiled steps); the run combines them per limit (energy summed, time of the
//!   slowest host) and picks one limit for all with the job's selector, so
//!   synchronous training is never held back by one host;
//! - timing out: a host that sends nothing for the run's host timeout ends the run,
//!   and its trial, as Failed, naming the host. Every call of any host of the job
//!   checks the deadlines first, so the others learn it on their next call.
//!
//! The state lives inside the job document ([`Runs`], bounded, validated when read),
//! so every host stores it through the ordinary `Store` like everything else.

use crate::api::{ApiError, Change, Ctx, Outcome};
use crate::field_error::FieldError;
use crate::job::JobState;
use crate::runs::{
    check_rank, sum_bounds, EpochTotals, HostMessage, HostReport, HostSlot, JoinRun, PastRun, Run,
    RunStatus, RunView, MAX_OPEN_RUNS, MAX_PENDING_EPOCHS, MAX_RUNS, RECENT_EPOCHS,
};
use crate::spec::MAX_ENERGY_JOULES;
use crate::wire::{ReportResponse, TrainingResult};

impl Run {
    /// Ends the run (once): the trial ends too, unless the optimizer recorded it.
    fn finish(&mut self, status: RunStatus, state: &mut JobState, now_ms: i64) {
        if self.status != RunStatus::Running {
            return;
        }
        if !matches!(status, RunStatus::Stopped { .. }) {
            // A trial that already left the document, or was ended by PATCH /trials, stays as it is.
            let _ = state.end_trial(self.trial_number, now_ms);
        }
        self.status = status;
        self.slots.clear();
        self.pending.clear();
    }

    /// Fails the run if a host that is not done has been silent past the timeout.
    fn expire(&mut self, state: &mut JobState, now_ms: i64) {
        if self.status != RunStatus::Running {
            return;
        }
        // The host silent the longest (one that never joined first, on a tie) is named.
        let late = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                !s.done && now_ms.saturating_sub(s.last_seen_ms) > self.host_timeout_ms
            })
            .min_by_key(|(_, s)| (s.last_seen_ms, s.joined))
            .map(|(rank, _)| rank);
        if let Some(rank) = late {
            let slot = &self.slots[rank];
            let what = if slot.joined {
                "sent nothing"
            } else {
                "never joined"
            };
            let message = format!(
                "{} {what} for {:.1} s (host timeout {:.1} s): run {:?} and its trial {} failed",
                self.host_label(rank),
                now_ms.saturating_sub(slot.last_seen_ms) as f64 / 1000.0,
                self.host_timeout_ms as f64 / 1000.0,
                self.run_id,
                self.trial_number
            );
            self.finish(RunStatus::Failed { message }, state, now_ms);
        }
    }

    /// Adds a host's epoch; reports every epoch all hosts have to the optimizer.
    fn add_report(
        &mut self,
        rank: usize,
        r: &HostReport,
        state: &mut JobState,
        now_ms: i64,
    ) -> Result<(), ApiError> {
        // Each host's share of the bound on a report's energy, so the run's sum
        // over its hosts is a report the optimizer takes.
        let share = MAX_ENERGY_JOULES / f64::from(self.hosts);
        for (field, joules) in [
            ("energy", Some(r.energy)),
            ("energy_uncertainty_j", r.energy_uncertainty_j),
        ] {
            if joules.is_some_and(|j| j > share) {
                return Err(FieldError::new(
                    field,
                    format!(
                        "must be <= {share:e} J on a run across {} hosts (their sum is at most {MAX_ENERGY_JOULES:e} J)",
                        self.hosts
                    ),
                )
                .into());
            }
        }
        let slot = &mut self.slots[rank];
        if r.current_epoch <= slot.epoch {
            return Ok(()); // a repeated report: already counted
        }
        if r.current_epoch != slot.epoch + 1 {
            return Err(FieldError::new(
                "current_epoch",
                format!(
                    "host {rank} reported epoch {} after epoch {}; epochs are reported in order",
                    r.current_epoch, slot.epoch
                ),
            )
            .into());
        }
        let index = (r.current_epoch - self.reported_epoch - 1) as usize;
        if index >= MAX_PENDING_EPOCHS {
            return Err(ApiError::BadRequest(format!(
                "current_epoch: host {rank} is {} epochs ahead of the slowest host (at most {MAX_PENDING_EPOCHS})",
                index + 1
            )));
        }
        slot.epoch = r.current_epoch;
        while self.pending.len() <= index {
            let epoch = self.reported_epoch + self.pending.len() as u32 + 1;
            self.pending.push(EpochTotals {
                epoch,
                time: 0.0,
                energy: 0.0,
                metric: None,
                hosts: 0,
                energy_uncertainty_j: Some(0.0),
            });
        }
        let e = &mut self.pending[index];
        e.time = e.time.max(r.time);
        e.energy += r.energy;
        e.energy_uncertainty_j = sum_bounds(e.energy_uncertainty_j, r.energy_uncertainty_j);
        e.hosts += 1;
        if rank == 0 {
            e.metric = Some(r.metric);
        }
        while self
            .pending
            .first()
            .is_some_and(|e| e.hosts == self.hosts && self.status == RunStatus::Running)
        {
            let e = self.pending.remove(0);
            self.reported_epoch = e.epoch;
            self.epochs.push(e);
            if self.epochs.len() > RECENT_EPOCHS {
                self.epochs.remove(0);
            }
            let combined = TrainingResult {
                job_id: state.job_id().to_string(),
                batch_size: self.batch_size,
                trial_number: self.trial_number,
                time: e.time,
                energy: e.energy,
                metric: e.metric.unwrap_or(f64::NAN),
                current_epoch: e.epoch,
                energy_uncertainty_j: e.energy_uncertainty_j,
            };
            match state.report(&combined, now_ms) {
                Ok(ReportResponse {
                    stop_train: true,
                    converged,
                    message,
                }) => self.finish(RunStatus::Stopped { converged, message }, state, now_ms),
                Ok(_) => {}
                Err(err) => {
                    let message = format!(
                        "the trial did not take epoch {} of run {:?}: {err}",
                        e.epoch, self.run_id
                    );
                    self.finish(RunStatus::Failed { message }, state, now_ms);
                }
            }
        }
        Ok(())
    }
}
fn loaded<'a>(job_id: &str, current: Option<&'a JobState>) -> Result<&'a JobState, ApiError> {
    current.filter(|s| s.job_id() == job_id).ok_or_else(|| {
        ApiError::NotFound(format!("job_id: unknown job {job_id:?}; register it first"))
    })
}

fn unknown_run(job_id: &str, run_id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "run_id: job {job_id:?} has no run {run_id:?}; join it first"
    ))
}

/// Fails every running run with a silent host.
fn expire_all(state: &mut JobState, now_ms: i64) {
    let mut runs = std::mem::take(&mut state.runs.0);
    for run in &mut runs {
        run.expire(state, now_ms);
    }
    state.runs.0 = runs;
}

/// The outcome: a write when the document changed, none otherwise.
fn answer(view: RunView, current: &JobState, mut state: JobState) -> Outcome<RunView> {
    if state == *current {
        return Outcome {
            status: 200,
            body: view,
            change: Change::Keep,
            archive: Vec::new(),
        };
    }
    let archive = state.take_archive();
    Outcome {
        status: 200,
        body: view,
        change: Change::Put(Box::new(state)),
        archive,
    }
}

/// `POST /jobs/{job_id}/runs`: joins the run `req.run_id`, opening it (and
/// dispatching its trial) when this host is the first.
pub fn join(
    job_id: &str,
    req: &JoinRun,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<RunView>, ApiError> {
    req.validate()?;
    let current = loaded(job_id, current)?;
    let mut state = current.clone();
    let now = ctx.now_ms;
    expire_all(&mut state, now);
    let hosts = req.hosts as u32;
    let rank = req.host_rank as usize;
    if let Some(past) = state.past_runs.find(&req.run_id) {
        let view = past.view(job_id);
        return Ok(answer(view, current, state));
    }
    let index = match state.runs.0.iter().position(|r| r.run_id == req.run_id) {
        Some(i) => {
            if state.runs.0[i].hosts != hosts {
                return Err(ApiError::Conflict(format!(
                    "hosts: run {:?} spans {} hosts; this host says {hosts}",
                    req.run_id, state.runs.0[i].hosts
                )));
            }
            i
        }
        None => {
            let open = state
                .runs
                .0
                .iter()
                .filter(|r| r.status == RunStatus::Running)
                .count();
            if open >= MAX_OPEN_RUNS {
                return Err(ApiError::Conflict(format!(
                    "runs: job {job_id:?} has {MAX_OPEN_RUNS} runs across hosts running; one must end first"
                )));
            }
            if state.runs.0.len() >= MAX_RUNS {
                // The oldest finished run leaves (one is finished: open < MAX_OPEN_RUNS < MAX_RUNS).
                // Its outcome stays (bounded) so a late host never reopens it.
                if let Some(i) = state
                    .runs
                    .0
                    .iter()
                    .position(|r| r.status != RunStatus::Running)
                {
                    let old = state.runs.0.remove(i);
                    state.past_runs.push(PastRun::of(&old, job_id));
                }
            }
            let trial = state.predict(now)?;
            let slot = HostSlot {
                name: None,
                joined: false,
                last_seen_ms: now,
                profiled: false,
                epoch: 0,
                done: false,
            };
            state.runs.0.push(Run {
                run_id: req.run_id.clone(),
                hosts,
                trial_number: trial.trial_number,
                batch_size: trial.batch_size,
                host_timeout_ms: (req.host_timeout_s * 1000.0).round() as i64,
                created_ms: now,
                selector: req.selector,
                status: RunStatus::Running,
                slots: vec![slot; hosts as usize],
                profile: Vec::new(),
                profiled: 0,
                gpus: 0,
                power_limit: None,
                uncertain: Vec::new(),
                reported_epoch: 0,
                pending: Vec::new(),
                epochs: Vec::new(),
            });
            state.runs.0.len() - 1
        }
    };
    let run = &mut state.runs.0[index];
    if let Some(slot) = run.slots.get_mut(rank) {
        slot.joined = true;
        slot.last_seen_ms = slot.last_seen_ms.max(now);
        if req.host_name.is_some() {
            slot.name.clone_from(&req.host_name);
        }
    }
    let view = run.view(job_id);
    Ok(answer(view, current, state))
}

/// `POST /jobs/{job_id}/runs/{run_id}/{heartbeat|profile|report|done}`: one host's
/// message. The host must have joined; a run that is over answers its outcome.
pub fn host_message(
    job_id: &str,
    run_id: &str,
    rank: i64,
    message: &HostMessage,
    current: Option<&JobState>,
    ctx: Ctx,
) -> Result<Outcome<RunView>, ApiError> {
    match message {
        HostMessage::Profile(p) => p.validate()?,
        HostMessage::Report(r) => r.validate()?,
        HostMessage::Heartbeat | HostMessage::Done => {}
    }
    let current = loaded(job_id, current)?;
    let mut state = current.clone();
    let now = ctx.now_ms;
    expire_all(&mut state, now);
    let Some(index) = state.runs.0.iter().position(|r| r.run_id == run_id) else {
        let view = past_run(&state, job_id, run_id)?;
        return Ok(answer(view, current, state));
    };
    let mut run = state.runs.0[index].clone();
    let rank = check_rank(rank, run.hosts)?;
    if run.status == RunStatus::Running {
        let slot = &mut run.slots[rank];
        if !slot.joined {
            return Err(ApiError::BadRequest(format!(
                "host_rank: host {rank} has not joined run {run_id:?}"
            )));
        }
        // A heartbeat is written only when it moves the deadline by an eighth of the
        // timeout, so a host's polling rarely writes.
        let stale = now.saturating_sub(slot.last_seen_ms) >= run.host_timeout_ms / 8;
        if !matches!(message, HostMessage::Heartbeat) || stale {
            slot.last_seen_ms = slot.last_seen_ms.max(now);
        }
        match message {
            HostMessage::Heartbeat => {}
            HostMessage::Done => {
                run.slots[rank].done = true;
                if run.slots.iter().all(|s| s.done) {
                    run.finish(RunStatus::Ended, &mut state, now);
                }
            }
            HostMessage::Profile(p) => {
                if !run.slots[rank].profiled {
                    run.add_profile(p)?;
                    run.slots[rank].profiled = true;
                }
            }
            HostMessage::Report(r) => run.add_report(rank, r, &mut state, now)?,
        }
    }
    let view = run.view(job_id);
    state.runs.0[index] = run;
    Ok(answer(view, current, state))
}

/// `GET /jobs/{job_id}/runs/{run_id}`: the run as it stands now (deadlines
/// included), without writing.
pub fn view(
    job_id: &str,
    run_id: &str,
    current: Option<&JobState>,
    now_ms: i64,
) -> Result<RunView, ApiError> {
    let mut state = loaded(job_id, current)?.clone();
    expire_all(&mut state, now_ms);
    match state.runs.0.iter().find(|r| r.run_id == run_id) {
        Some(r) => Ok(r.view(job_id)),
        None => past_run(&state, job_id, run_id),
    }
}

/// The answer for a run that is not among the kept ones: its outcome when it
/// finished and left them, else 404.
fn past_run(state: &JobState, job_id: &str, run_id: &str) -> Result<RunView, ApiError> {
    state
        .past_runs
        .find(run_id)
        .map(|p| p.view(job_id))
        .ok_or_else(|| unknown_run(job_id, run_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::power::{PowerLimitMeasurement, Selector};
    use crate::runs::{
        CombinedPoint, HostMeasurement, HostProfile, Runs, MAX_HOSTS, MAX_HOST_NAME,
        MAX_HOST_TIMEOUT_S, MAX_PAST_RUNS, MAX_PROFILE_LIMITS,
    };
    use crate::spec::JobSpec;
    use crate::trial::TrialStatus;
    use proptest::prelude::*;

    const T0: i64 = 1_700_000_000_000;

    fn job(max_epochs: i64) -> JobState {
        let mut spec = JobSpec::new("mh", vec![32, 64], 64, 300.0, 8, "F100");
        spec.job_id = Some("mh-1".into());
        spec.max_epochs = max_epochs;
        spec.target_metric = 0.99;
        let params = spec.validate().unwrap();
        JobState::new("mh-1".into(), params, 7, T0)
    }

    fn ctx(now_ms: i64) -> Ctx {
        Ctx { now_ms, entropy: 1 }
    }

    fn join_req(rank: i64, hosts: i64) -> JoinRun {
        JoinRun {
            run_id: "slurm-42.0".into(),
            hosts,
            host_rank: rank,
            host_name: Some(format!("node{rank}")),
            host_timeout_s: 10.0,
            selector: Selector::Energy,
        }
    }

    /// Applies an outcome's change to the state (as a host would store it).
    fn apply<T>(state: &mut JobState, out: &Outcome<T>) {
        if let Change::Put(s) = &out.change {
            *state = (**s).clone();
        }
    }

    fn join_all(state: &mut JobState, hosts: i64, now: i64) -> Vec<RunView> {
        (0..hosts)
            .map(|r| {
                let out = join("mh-1", &join_req(r, hosts), Some(state), ctx(now)).unwrap();
                apply(state, &out);
                out.body
            })
            .collect()
    }

    fn send(
        state: &mut JobState,
        rank: i64,
        m: HostMessage,
        now: i64,
    ) -> Result<RunView, ApiError> {
        let out = host_message("mh-1", "slurm-42.0", rank, &m, Some(state), ctx(now))?;
        apply(state, &out);
        Ok(out.body)
    }

    fn report(rank: i64, epoch: u32, time: f64, energy: f64) -> HostMessage {
        bounded_report(rank, epoch, time, energy, None)
    }

    fn bounded_report(
        rank: i64,
        epoch: u32,
        time: f64,
        energy: f64,
        energy_uncertainty_j: Option<f64>,
    ) -> HostMessage {
        HostMessage::Report(HostReport {
            host_rank: rank,
            time,
            energy,
            metric: 0.1 * f64::from(epoch),
            current_epoch: epoch,
            energy_uncertainty_j,
        })
    }

    #[test]
    fn every_host_gets_the_same_trial() {
        let mut s = job(10);
        let views = join_all(&mut s, 3, T0);
        assert!(views
            .windows(2)
            .all(|w| w[0].trial_number == w[1].trial_number && w[0].batch_size == w[1].batch_size));
        assert_eq!(views[2].joined, 3);
        assert_eq!(s.trials().len(), 1, "one trial for the run");
        // A repeated join (a retry) changes nothing.
        let again = join("mh-1", &join_req(1, 3), Some(&s), ctx(T0)).unwrap();
        assert_eq!(again.change, Change::Keep);
        assert_eq!(again.body.trial_number, views[0].trial_number);
    }

    #[test]
    fn one_report_per_epoch_once_all_hosts_reported() {
        let mut s = job(10);
        join_all(&mut s, 3, T0);
        let v = send(&mut s, 2, report(2, 1, 12.0, 100.0), T0 + 1).unwrap();
        assert_eq!(v.reported_epoch, 0);
        let v = send(&mut s, 0, report(0, 1, 10.0, 200.0), T0 + 2).unwrap();
        assert_eq!(v.reported_epoch, 0);
        // A host may run ahead; its epoch 2 waits.
        let v = send(&mut s, 0, report(0, 2, 20.0, 400.0), T0 + 3).unwrap();
        assert_eq!(v.reported_epoch, 0);
        let v = send(&mut s, 1, report(1, 1, 11.0, 300.0), T0 + 4).unwrap();
        assert_eq!(v.reported_epoch, 1);
        assert_eq!(v.epochs.len(), 1);
        let e = v.epochs[0];
        assert_eq!(
            (e.time, e.energy, e.metric, e.hosts),
            (12.0, 600.0, Some(0.1), 3)
        );
        // A repeated report is not counted twice.
        let before = s.runs.list()[0].clone();
        let v = send(&mut s, 1, report(1, 1, 11.0, 300.0), T0 + 5).unwrap();
        assert_eq!(v.epochs[0].energy, 600.0);
        let after = &s.runs.list()[0];
        assert_eq!(
            (&after.pending, &after.epochs),
            (&before.pending, &before.epochs)
        );
        // A gap is refused and changes nothing.
        let e = send(&mut s, 1, report(1, 3, 33.0, 900.0), T0 + 6).unwrap_err();
        assert!(e.to_string().starts_with("current_epoch:"), "{e}");
    }

    #[test]
    fn the_trial_ends_once_with_the_combined_result() {
        let mut s = job(2);
        let views = join_all(&mut s, 2, T0);
        let n = views[0].trial_number;
        for epoch in 1..=2u32 {
            let t = f64::from(epoch);
            send(&mut s, 0, report(0, epoch, 10.0 * t, 100.0 * t), T0 + 10).unwrap();
            send(&mut s, 1, report(1, epoch, 12.0 * t, 150.0 * t), T0 + 10).unwrap();
        }
        let v = send(&mut s, 0, HostMessage::Heartbeat, T0 + 11).unwrap();
        assert!(v.stop_train, "max_epochs reached: {v:?}");
        assert_eq!(v.status, "stopped");
        let trial = s.trial(n).unwrap();
        match trial.status {
            TrialStatus::Succeeded { result, .. } => {
                assert_eq!((result.time, result.energy), (24.0, 500.0));
            }
            other => panic!("{other:?}"),
        }
        // Done from both hosts does not end the trial again.
        send(&mut s, 0, HostMessage::Done, T0 + 12).unwrap();
        send(&mut s, 1, HostMessage::Done, T0 + 12).unwrap();
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Succeeded { .. }
        ));
        assert_eq!(s.trials().len(), 1);
    }

    #[test]
    fn all_hosts_done_without_a_stop_ends_the_trial_failed() {
        let mut s = job(10);
        let n = join_all(&mut s, 2, T0)[0].trial_number;
        send(&mut s, 0, HostMessage::Done, T0 + 1).unwrap();
        assert_eq!(
            send(&mut s, 1, HostMessage::Heartbeat, T0 + 1)
                .unwrap()
                .status,
            "running"
        );
        let v = send(&mut s, 1, HostMessage::Done, T0 + 2).unwrap();
        assert_eq!(v.status, "ended");
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Failed { .. }
        ));
    }

    #[test]
    fn a_silent_host_fails_the_run_naming_it() {
        let mut s = job(10);
        let n = join_all(&mut s, 3, T0)[0].trial_number;
        // Hosts 0 and 1 keep calling; host 2 falls silent.
        let mut now = T0;
        for _ in 0..9 {
            now += 1000;
            for r in 0..2 {
                assert_eq!(
                    send(&mut s, r, HostMessage::Heartbeat, now).unwrap().status,
                    "running"
                );
            }
        }
        now += 2000;
        let v = send(&mut s, 0, HostMessage::Heartbeat, now).unwrap();
        assert_eq!(v.status, "failed");
        assert!(v.stop_train);
        assert!(
            v.message.starts_with("host 2 (node2) sent nothing"),
            "{}",
            v.message
        );
        assert!(matches!(
            s.trial(n).unwrap().status,
            TrialStatus::Failed { .. }
        ));
        // The others learn it on their next call, and the GET sees it too.
        assert_eq!(
            send(&mut s, 1, report(1, 1, 1.0, 1.0), now + 1)
                .unwrap()
                .status,
            "failed"
        );
        assert_eq!(
            view("mh-1", "slurm-42.0", Some(&s), now).unwrap().status,
            "failed"
        );
    }

    #[test]
    fn a_host_that_never_joins_times_out_too_and_get_does_not_write() {
        let mut s = job(10);
        let out = join("mh-1", &join_req(0, 2), Some(&s), ctx(T0)).unwrap();
        apply(&mut s, &out);
        let v = view("mh-1", "slurm-42.0", Some(&s), T0 + 10_001).unwrap();
        assert_eq!(v.status, "failed");
        assert!(
            v.message.starts_with("host 1 never joined"),
            "{}",
            v.message
        );
        // The GET wrote nothing: the stored run still runs.
        assert_eq!(s.runs.list()[0].status, RunStatus::Running);
    }

    #[test]
    fn heartbeats_write_rarely() {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let out = host_message(
            "mh-1",
            "slurm-42.0",
            0,
            &HostMessage::Heartbeat,
            Some(&s),
            ctx(T0 + 100),
        )
        .unwrap();
        assert_eq!(out.change, Change::Keep);
        let out = host_message(
            "mh-1",
            "slurm-42.0",
            0,
            &HostMessage::Heartbeat,
            Some(&s),
            ctx(T0 + 1300),
        )
        .unwrap();
        assert!(matches!(out.change, Change::Put(_)));
    }

    fn profile(rank: i64, points: &[(u32, f64, f64)]) -> HostMessage {
        let unbounded: Vec<_> = points.iter().map(|&(w, e, t)| (w, e, t, None)).collect();
        bounded_profile(rank, &unbounded)
    }

    /// A host's profile of `(limit, energy, time, bound)` over 10 steps per limit.
    fn bounded_profile(rank: i64, points: &[(u32, f64, f64, Option<f64>)]) -> HostMessage {
        HostMessage::Profile(HostProfile {
            host_rank: rank,
            gpu_count: 8,
            measurements: points
                .iter()
                .map(|&(power_limit, energy, time, bound)| {
                    let m = PowerLimitMeasurement {
                        power_limit,
                        energy,
                        time,
                        steps: 10,
                    };
                    HostMeasurement::with_bound(m, bound)
                })
                .collect(),
        })
    }

    #[test]
    fn one_power_limit_from_every_hosts_profile() {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        // Alone, host 0 would pick 150 W (least energy); host 1 is much slower
        // there, so the summed energy is least at 200 W.
        let v = send(
            &mut s,
            0,
            profile(0, &[(300, 30.0, 1.0), (200, 25.0, 1.2), (150, 20.0, 1.5)]),
            T0,
        )
        .unwrap();
        assert_eq!(v.power_limit, None);
        let v = send(
            &mut s,
            1,
            profile(
                1,
                &[
                    (300, 30.0, 1.0),
                    (200, 24.0, 1.2),
                    (150, 40.0, 3.0),
                    (100, 1.0, 9.0),
                ],
            ),
            T0,
        )
        .unwrap();
        assert_eq!(v.profiled, 2);
        assert_eq!(v.power_limit, Some(200));
        // A repeated profile changes nothing.
        let v = send(&mut s, 1, profile(1, &[(100, 0.0, 1.0)]), T0).unwrap();
        assert_eq!(v.power_limit, Some(200));
    }

    #[test]
    fn the_run_sums_its_hosts_energy_bounds_and_its_trial_keeps_them() {
        let mut s = job(2);
        let n = join_all(&mut s, 2, T0)[0].trial_number;
        send(&mut s, 0, bounded_report(0, 1, 10.0, 100.0, Some(1.5)), T0).unwrap();
        let v = send(&mut s, 1, bounded_report(1, 1, 12.0, 150.0, Some(2.0)), T0).unwrap();
        assert_eq!(v.epochs[0].energy_uncertainty_j, Some(3.5));
        // A host without a bound: the combined epoch has none (never invented).
        send(&mut s, 0, bounded_report(0, 2, 20.0, 200.0, Some(1.5)), T0).unwrap();
        let v = send(&mut s, 1, report(1, 2, 24.0, 300.0), T0).unwrap();
        assert_eq!(v.epochs[1].energy_uncertainty_j, None);
        assert!(v.stop_train, "max_epochs: {v:?}");
        let Some(TrialStatus::Succeeded { result, .. }) = s.trial(n).map(|t| t.status) else {
            panic!("{:?}", s.trial(n));
        };
        assert_eq!((result.energy, result.energy_uncertainty_j), (500.0, None));
        // Every host bounded through the last epoch: the trial keeps the sum.
        let mut s = job(1);
        let n = join_all(&mut s, 2, T0)[0].trial_number;
        send(&mut s, 0, bounded_report(0, 1, 10.0, 100.0, Some(1.5)), T0).unwrap();
        send(&mut s, 1, bounded_report(1, 1, 12.0, 150.0, Some(0.25)), T0).unwrap();
        let Some(TrialStatus::Succeeded { result, .. }) = s.trial(n).map(|t| t.status) else {
            panic!("{:?}", s.trial(n));
        };
        assert_eq!(
            (result.energy, result.energy_uncertainty_j),
            (250.0, Some(1.75))
        );
    }

    /// A run of two hosts after both profiles: host `rank` measured
    /// `energies[rank]` J at 300, 200 and 150 W over 10 steps each, every limit
    /// with the bound `bounds[rank]`; the run's answer to the second.
    fn profiled_pair(energies: [[f64; 3]; 2], bounds: [Option<f64>; 2]) -> (JobState, RunView) {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let mut view = None;
        for (rank, (e, b)) in (0i64..).zip(energies.into_iter().zip(bounds)) {
            let points = [
                (300, e[0], 1.0, b),
                (200, e[1], 1.2, b),
                (150, e[2], 1.5, b),
            ];
            view = Some(send(&mut s, rank, bounded_profile(rank, &points), T0).unwrap());
        }
        (s, view.unwrap())
    }

    #[test]
    fn the_combined_profile_sums_the_bounds_and_notes_what_it_cannot_tell_apart() {
        // Per step over both hosts: 300 W 6.0 J ± 0.2, 200 W 4.9 J ± 0.2 (the
        // least), 150 W 5.0 J ± 0.2: within their bounds of 200 W.
        let close = [[30.0, 24.0, 25.0], [30.0, 25.0, 25.0]];
        let (s, v) = profiled_pair(close, [Some(1.0); 2]);
        assert_eq!(v.power_limit, Some(200));
        assert_eq!(v.uncertain, vec![200, 150]);
        let run = &s.runs.list()[0];
        let u: Vec<_> = run.profile.iter().map(|c| c.energy_uncertainty_j).collect();
        assert_eq!(u, vec![Some(0.2); 3]);
        assert_eq!(run.uncertain, vec![200, 150]);
        // Tight bounds tell every limit apart: no note.
        let (_, v) = profiled_pair([[30.0, 24.5, 25.0]; 2], [Some(0.1); 2]);
        assert_eq!((v.power_limit, v.uncertain.len()), (Some(200), 0));
        // A host that measured no bound: the combined limits have none, and no note.
        let (s, v) = profiled_pair(close, [Some(1.0), None]);
        assert_eq!((v.power_limit, v.uncertain.len()), (Some(200), 0));
        assert!(s.runs.list()[0]
            .profile
            .iter()
            .all(|c| c.energy_uncertainty_j.is_none()));
    }

    #[test]
    fn hostile_input_is_refused_with_the_field_and_nothing_changes() {
        let s = job(10);
        for (f, field) in [
            (
                Box::new(|j: &mut JoinRun| j.hosts = 0) as Box<dyn Fn(&mut JoinRun)>,
                "hosts",
            ),
            (Box::new(|j| j.hosts = 1_000_000_000), "hosts"),
            (Box::new(|j| j.hosts = -3), "hosts"),
            (Box::new(|j| j.host_rank = 3), "host_rank"),
            (Box::new(|j| j.host_rank = -1), "host_rank"),
            (Box::new(|j| j.run_id = "a/b".into()), "run_id"),
            (Box::new(|j| j.run_id = String::new()), "run_id"),
            (Box::new(|j| j.run_id = ".".into()), "run_id"),
            (Box::new(|j| j.run_id = "..".into()), "run_id"),
            (Box::new(|j| j.host_timeout_s = f64::NAN), "host_timeout_s"),
            (Box::new(|j| j.host_timeout_s = 0.0), "host_timeout_s"),
            (
                Box::new(|j| j.host_name = Some("x".repeat(33))),
                "host_name",
            ),
            (
                Box::new(|j| {
                    j.selector = Selector::MaxSlowdown {
                        factor: f64::INFINITY,
                    }
                }),
                "selector",
            ),
        ] {
            let mut req = join_req(0, 3);
            f(&mut req);
            let e = join("mh-1", &req, Some(&s), ctx(T0)).unwrap_err();
            assert_eq!(e.status(), 422, "{e}");
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let before = s.clone();
        for (m, field) in [
            (report(0, 1, f64::NAN, 1.0), "time"),
            (report(0, 1, 1.0, f64::INFINITY), "energy"),
            (report(0, 1, -1.0, 1.0), "time"),
            (report(0, 0, 1.0, 1.0), "current_epoch"),
            (
                bounded_report(0, 1, 1.0, 1.0, Some(-0.5)),
                "energy_uncertainty_j",
            ),
            (
                bounded_report(0, 1, 1.0, 1.0, Some(f64::NAN)),
                "energy_uncertainty_j",
            ),
            (
                bounded_report(0, 1, 1.0, 1.0, Some(f64::INFINITY)),
                "energy_uncertainty_j",
            ),
            // Its share of the run's bound (two hosts: half of 1e18 J).
            (
                bounded_report(0, 1, 1.0, 1.0, Some(6e17)),
                "energy_uncertainty_j",
            ),
            (
                bounded_profile(0, &[(300, 1.0, 1.0, Some(-1.0))]),
                "measurements.energy_uncertainty_j",
            ),
            (
                bounded_profile(0, &[(300, 1.0, 1.0, Some(f64::NAN))]),
                "measurements.energy_uncertainty_j",
            ),
            (profile(0, &[]), "measurements"),
            (profile(0, &[(300, -1.0, 1.0)]), "measurements.energy"),
            (profile(0, &[(300, 1.0, 0.0)]), "measurements.time"),
            (
                profile(0, &[(300, 1.0, 1.0), (300, 1.0, 1.0)]),
                "measurements.power_limit",
            ),
        ] {
            let e = send(&mut s, 0, m, T0).unwrap_err();
            assert!(
                e.to_string().starts_with(&format!("{field}:")),
                "{field}: {e}"
            );
        }
        let e = send(&mut s, 5, HostMessage::Heartbeat, T0).unwrap_err();
        assert!(e.to_string().starts_with("host_rank:"), "{e}");
        assert_eq!(s, before);
        // Another host count for the same run is a conflict.
        let e = join("mh-1", &join_req(0, 4), Some(&s), ctx(T0)).unwrap_err();
        assert_eq!(e.status(), 409);
    }

    #[test]
    fn the_hosts_energies_always_sum_to_a_report_the_trial_takes() {
        let mut s = job(10);
        join_all(&mut s, 2, T0);
        let before = s.clone();
        let e = send(&mut s, 0, report(0, 1, 1.0, 1e18), T0).unwrap_err();
        assert_eq!(e.status(), 422);
        assert!(e.to_string().starts_with("energy:"), "{e}");
        assert_eq!(s, before, "a refused report changes nothing");
        send(&mut s, 0, report(0, 1, 1.0, 5e17), T0).unwrap();
        let v = send(&mut s, 1, report(1, 1, 1.0, 5e17), T0).unwrap();
        assert_eq!(v.status, "running", "{}", v.message);
        assert_eq!((v.reported_epoch, v.epochs[0].energy), (1, 1e18));
    }

    #[test]
    fn host_names_that_reorder_or_hide_text_are_refused() {
        let s = job(10);
        for bad in [
            "evil\u{202E}gnp.exe",
            "a\u{200B}b",
            "x\u{2066}y",
            "\u{FEFF}n",
            "l\u{2028}m",
            "t\u{0007}",
        ] {
            let mut req = join_req(0, 2);
            req.host_name = Some(bad.into());
            let e = join("mh-1", &req, Some(&s), ctx(T0)).unwrap_err();
            assert_eq!(e.status(), 422, "{bad:?}");
            assert!(e.to_string().starts_with("host_name:"), "{e}");
        }
        // Printable names of any script pass, up to 32 characters (not bytes).
        for good in ["gpu-node-01.cluster", "узел-7", &"é".repeat(MAX_HOST_NAME)] {
            let mut req = join_req(0, 2);
            req.host_name = Some(good.to_string());
            join("mh-1", &req, Some(&s), ctx(T0)).unwrap();
        }
    }

    #[test]
    fn the_document_reads_back_and_old_documents_read_unchanged() {
        let mut s = job(10);
        join_all(&mut s, 3, T0);
        send(&mut s, 0, report(0, 1, 1.0, 2.0), T0).unwrap();
        let text = serde_json::to_string(&s).unwrap();
        let back: JobState = serde_json::from_str(&text).unwrap();
        assert_eq!(back, s);
        // No runs: the field is absent, and a document without it reads.
        let plain = job(10);
        let text = serde_json::to_string(&plain).unwrap();
        assert!(!text.contains("\"runs\""));
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), plain);
        // A stored run that breaks a bound is refused when read.
        let mut v: serde_json::Value = serde_json::to_value(&s).unwrap();
        v["runs"][0]["hosts"] = 100_000.into();
        assert!(serde_json::from_value::<JobState>(v).is_err());
    }

    #[test]
    fn runs_are_bounded() {
        let mut s = job(1000);
        for i in 0..MAX_OPEN_RUNS {
            let mut req = join_req(0, 2);
            req.run_id = format!("r{i}");
            let out = join("mh-1", &req, Some(&s), ctx(T0)).unwrap();
            apply(&mut s, &out);
        }
        let mut req = join_req(0, 2);
        req.run_id = "one-too-many".into();
        assert_eq!(
            join("mh-1", &req, Some(&s), ctx(T0)).unwrap_err().status(),
            409
        );
        // Once they time out, new runs are let in and old ones leave.
        for i in 0..40 {
            let mut req = join_req(0, 2);
            req.run_id = format!("later{i}");
            let now = T0 + 20_000 * (i + 1);
            let out = join("mh-1", &req, Some(&s), ctx(now)).unwrap();
            apply(&mut s, &out);
            assert!(s.runs.list().len() <= MAX_RUNS);
        }
    }

    #[test]
    fn a_finished_run_that_left_the_kept_ones_answers_its_outcome() {
        let mut s = job(1);
        let mut now = T0;
        let run = |s: &mut JobState, id: &str, now: i64| {
            let mut req = join_req(0, 1);
            req.run_id = id.into();
            let out = join("mh-1", &req, Some(s), ctx(now)).unwrap();
            apply(s, &out);
            let m = HostMessage::Report(HostReport {
                host_rank: 0,
                time: 1.0,
                energy: 1.0,
                metric: 1.0,
                current_epoch: 1,
                energy_uncertainty_j: None,
            });
            let out = host_message("mh-1", id, 0, &m, Some(s), ctx(now)).unwrap();
            apply(s, &out);
            out.body
        };
        let first = run(&mut s, "old", now);
        assert_eq!((first.status.as_str(), first.converged), ("stopped", true));
        for i in 0..MAX_RUNS {
            now += 1000;
            run(&mut s, &format!("later{i}"), now);
        }
        assert!(s.runs.list().iter().all(|r| r.run_id != "old"));
        let trials = s.next_trial_number();
        // A late join, a report, a heartbeat and the GET all answer the outcome.
        let mut req = join_req(0, 1);
        req.run_id = "old".into();
        let v = join("mh-1", &req, Some(&s), ctx(now)).unwrap().body;
        assert_eq!((v.trial_number, v.stop_train), (first.trial_number, true));
        assert_eq!((v.status.as_str(), v.converged), ("stopped", true));
        let v = host_message(
            "mh-1",
            "old",
            0,
            &HostMessage::Heartbeat,
            Some(&s),
            ctx(now),
        );
        assert_eq!(v.unwrap().body.trial_number, first.trial_number);
        assert_eq!(
            view("mh-1", "old", Some(&s), now).unwrap().status,
            "stopped"
        );
        assert_eq!(s.next_trial_number(), trials, "no new trial");
        // Bounded: beyond MAX_PAST_RUNS the oldest is forgotten.
        for i in 0..MAX_PAST_RUNS {
            now += 1000;
            run(&mut s, &format!("more{i}"), now);
        }
        assert_eq!(s.past_runs.0.len(), MAX_PAST_RUNS);
        assert!(s.past_runs.find("old").is_none());
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s);
    }

    #[test]
    fn the_largest_runs_stay_small() {
        // Every bound at once: the most running runs, the most hosts with the
        // longest names, a full profile and full epoch windows.
        let mut s = job(1000);
        let name = "n".repeat(MAX_HOST_NAME);
        for i in 0..MAX_OPEN_RUNS {
            let req = JoinRun {
                run_id: format!("{}{i}", "r".repeat(100)),
                hosts: i64::from(MAX_HOSTS),
                host_rank: 0,
                host_name: Some(name.clone()),
                host_timeout_s: MAX_HOST_TIMEOUT_S,
                selector: Selector::Energy,
            };
            let out = join("mh-1", &req, Some(&s), ctx(T0)).unwrap();
            apply(&mut s, &out);
        }
        for run in &mut s.runs.0 {
            for slot in &mut run.slots {
                slot.name = Some(name.clone());
            }
            let full = EpochTotals {
                epoch: u32::MAX,
                time: 1.234_567_890_123e9,
                energy: 1.234_567_890_123e18,
                metric: Some(0.123_456_789_012_345),
                hosts: MAX_HOSTS,
                energy_uncertainty_j: Some(1.234_567_890_123e17),
            };
            run.pending = vec![full; MAX_PENDING_EPOCHS];
            run.epochs = vec![full; RECENT_EPOCHS];
            run.profile = (0..MAX_PROFILE_LIMITS as u32)
                .map(|w| CombinedPoint {
                    power_limit: 100 + w,
                    energy: 1.234_567_890_123e10,
                    time: 1.234_567_890_123,
                    energy_uncertainty_j: Some(1.234_567_890_123e8),
                })
                .collect();
            run.uncertain = (0..MAX_PROFILE_LIMITS as u32).map(|w| 100 + w).collect();
        }
        let bytes = serde_json::to_vec(&s.runs).unwrap().len();
        assert!(bytes < 100_000, "{bytes} bytes");
        let past = PastRun {
            run_id: "r".repeat(128),
            trial_number: u64::MAX,
            batch_size: u32::MAX,
            hosts: MAX_HOSTS,
            status: "stopped".into(),
            converged: false,
            reported_epoch: u32::MAX,
        };
        for _ in 0..MAX_PAST_RUNS + 3 {
            s.past_runs.push(past.clone());
        }
        let bytes = serde_json::to_vec(&s.past_runs).unwrap().len();
        assert!(bytes < 70_000, "{bytes} bytes");
        let back: Runs = serde_json::from_slice(&serde_json::to_vec(&s.runs).unwrap()).unwrap();
        assert_eq!(back, s.runs);
    }

    proptest! {
        /// Whatever order the hosts' reports arrive in (with duplicates), the
        /// optimizer sees each epoch once, summed and with the slowest time.
        #[test]
        fn reports_in_any_order_combine_the_same(order in proptest::collection::vec(0usize..3, 0..60), energies in proptest::collection::vec(0.0f64..1e6, 3)) {
            let mut s = job(1000);
            join_all(&mut s, 3, T0);
            let mut next = [1u32; 3];
            for &rank in &order {
                let epoch = next[rank];
                // Some repeats: send the previous epoch again.
                let (epoch, advance) = if epoch > 1 && rank == 1 && epoch % 3 == 0 { (epoch - 1, false) } else { (epoch, true) };
                let t = f64::from(epoch);
                let r = send(&mut s, rank as i64, report(rank as i64, epoch, t * (rank as f64 + 1.0), t * energies[rank]), T0);
                match r {
                    Ok(_) => if advance { next[rank] += 1 },
                    Err(e) => prop_assert_eq!(e.status(), 400, "{}", e),
                }
            }
            let run = &s.runs.list()[0];
            let slowest = *next.iter().min().unwrap() - 1;
            prop_assert_eq!(run.reported_epoch, slowest);
            for e in &run.epochs {
                let t = f64::from(e.epoch);
                prop_assert_eq!(e.hosts, 3);
                prop_assert_eq!(e.time, 3.0 * t);
                let sum: f64 = energies.iter().map(|x| x * t).sum();
                prop_assert!((e.energy - sum).abs() <= 1e-9 * sum.max(1.0));
            }
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s.clone());
        }

        /// Any numbers a host may send keep the document readable and finite.
        #[test]
        fn any_accepted_numbers_stay_finite(time in -1e300f64..1e300, energy in -1e300f64..1e300, metric in -1e300f64..1e300, bound in -1e300f64..1e300) {
            let mut s = job(1000);
            join_all(&mut s, 2, T0);
            for rank in 0..2 {
                let _ = send(&mut s, rank, HostMessage::Report(HostReport { host_rank: rank, time, energy, metric, current_epoch: 1, energy_uncertainty_j: Some(bound) }), T0);
                let _ = send(&mut s, rank, bounded_profile(rank, &[(300, energy, time, Some(bound)), (200, energy / 2.0, time * 2.0, Some(bound))]), T0);
            }
            let text = serde_json::to_string(&s).unwrap();
            prop_assert_eq!(serde_json::from_str::<JobState>(&text).unwrap(), s.clone());
        }
    }
}
