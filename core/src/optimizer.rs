//! The batch size optimizer over one job document: predict, report, end.
//!
//! Every method either returns an error and leaves the document exactly as it
//! was, or applies its whole change.

use crate::bandit::{self, ArmState};
use crate::explore::{self, Exploration, ExplorationOutcome, NoConvergedBatchSize, Pruning};
use crate::field_error::FieldError;
use crate::job::{JobState, Stage};
use crate::policy::shared::{SharedEpochs, WorkloadState};
use crate::policy::{warm, wattwise, Policy};
use crate::spec::{finite_in, JobParams, MAX_ENERGY_JOULES, MAX_TIME_SECONDS};
use crate::trial::{RunResult, Trial, TrialStatus, TrialType};
use crate::wire::{Phase, PowerProfile, ReportResponse, TrainingResult, TrialId};

/// Why an optimizer call was refused.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OptimizerError {
    /// A field broke a rule.
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// The job has no trial with that number.
    #[error("trial_number: job {job_id} has no trial {trial_number}")]
    UnknownTrial {
        /// The job.
        job_id: String,
        /// The trial asked for.
        trial_number: u64,
    },
    /// The trial finished long ago and is only in the archive.
    #[error("trial_number: trial {0} is archived")]
    Archived(u64),
    /// The trial was dispatched with another batch size.
    #[error(
        "batch_size: trial {trial_number} was dispatched with batch size {expected}, not {got}"
    )]
    BatchSizeMismatch {
        /// The trial.
        trial_number: u64,
        /// Its batch size.
        expected: u32,
        /// The batch size in the request.
        got: u32,
    },
    /// The trial was ended without a result.
    #[error("trial_number: trial {0} was already ended without a result (Failed)")]
    TrialFailed(u64),
    /// Pruning found nothing that converges.
    #[error(transparent)]
    NoConverged(#[from] NoConvergedBatchSize),
}

/// Checks a run's time and energy: finite, >= 0 and within the limits that keep
/// every cost derived from them finite.
fn time_and_energy(time: f64, energy: f64) -> Result<(f64, f64), FieldError> {
    Ok((
        finite_in("time", time, 0.0, MAX_TIME_SECONDS)?,
        finite_in("energy", energy, 0.0, MAX_ENERGY_JOULES)?,
    ))
}

/// Checks a report's numbers (time, energy, metric and the energy's bound when
/// given), as every report is checked first.
pub fn validate_report(r: &TrainingResult) -> Result<(f64, f64), FieldError> {
    let out = time_and_energy(r.time, r.energy)?;
    if !r.metric.is_finite() {
        return Err(FieldError::new("metric", "must be a finite number"));
    }
    energy_bound(r.energy_uncertainty_j)?;
    Ok(out)
}

/// Checks an energy's bound when one is given: finite, >= 0 and within the
/// energy limit (so every sum of bounds stays finite).
pub fn energy_bound(bound: Option<f64>) -> Result<Option<f64>, FieldError> {
    bound
        .map(|u| finite_in("energy_uncertainty_j", u, 0.0, MAX_ENERGY_JOULES))
        .transpose()
}

/// The answer to a report for a trial that already finished, wherever the trial
/// lives (the document or the archive): `None` while it is still Dispatched.
/// A Succeeded trial answers "already reported" with its recorded `converged`; a
/// Failed one (ended without a result) refuses the report, so a late result never
/// disappears behind a 2xx.
pub fn finished_trial_answer(
    trial: &Trial,
    r: &TrainingResult,
) -> Option<Result<ReportResponse, OptimizerError>> {
    if r.batch_size != trial.batch_size {
        return Some(Err(OptimizerError::BatchSizeMismatch {
            trial_number: trial.trial_number,
            expected: trial.batch_size,
            got: r.batch_size,
        }));
    }
    match trial.status {
        TrialStatus::Succeeded { result, .. } => Some(Ok(ReportResponse {
            stop_train: true,
            converged: result.converged,
            message: format!(
                "Result for this trial({}) is already reported.",
                r.trial_number
            ),
        })),
        TrialStatus::Failed { .. } => Some(Err(OptimizerError::TrialFailed(r.trial_number))),
        TrialStatus::Dispatched => None,
    }
}

/// The answer that keeps a run training (the document is untouched).
fn keep_training() -> ReportResponse {
    ReportResponse {
        stop_train: false,
        converged: false,
        message: "Stop condition not met, keep training".into(),
    }
}

/// The wattwise policy's view of a job's parameters.
fn knobs<'a>(p: &'a JobParams, profiles: &[PowerProfile]) -> wattwise::Knobs<'a> {
    let default_utilization = profiles
        .iter()
        .find(|f| f.batch_size == p.default_batch_size && f.phase == Phase::Train)
        .and_then(|f| f.measurements.iter().max_by_key(|m| m.power_limit))
        .map(|m| m.average_power / m.power_limit as f64);
    wattwise::Knobs {
        batch_sizes: &p.batch_sizes,
        default_batch_size: p.default_batch_size,
        beta_knob: p.beta_knob,
        max_epochs: p.max_epochs,
        default_utilization,
    }
}

/// A batch size's cost per epoch from the job's own power profiles (the cheapest
/// power limit's; in the profile's unit of throughput), per batch size.
fn epoch_costs(p: &JobParams, profiles: &[PowerProfile]) -> Vec<Option<f64>> {
    let gpus = f64::from(p.number_of_gpus);
    p.batch_sizes
        .iter()
        .map(|&bs| {
            profiles
                .iter()
                .filter(|f| f.batch_size == bs && f.phase == Phase::Train)
                .flat_map(|f| &f.measurements)
                .filter(|m| m.throughput > 0.0)
                .map(|m| {
                    (p.eta_knob * m.average_power * gpus + (1.0 - p.eta_knob) * p.max_power)
                        / m.throughput
                })
                .filter(|c| c.is_finite() && *c > 0.0)
                .min_by(f64::total_cmp)
        })
        .collect()
}

/// How a wattwise run ended, for its statistics.
#[derive(Clone, Copy, Debug)]
struct RunNote {
    /// Epochs reported.
    epochs: u32,
    /// Stopped early without reaching the target.
    censored: bool,
    /// A warm start's probe ([`warm::probe_stop`]).
    probe: bool,
}

impl JobState {
    /// Gives a wattwise job what the other jobs of its workload learned (the host
    /// reads it from its store at dispatch): the policy warm-starts from it until
    /// the job's own runs disagree. A Zeus job, or a job whose shared knowledge was
    /// already found wrong, ignores it. Replaces the previous knowledge and keeps
    /// the job's own statistics.
    pub fn share(&mut self, shared: &SharedEpochs) {
        let sizes = &self.params.batch_sizes;
        let Some(w) = &mut self.wattwise else { return };
        if !shared.is_sane() {
            return;
        }
        let fresh = crate::policy::shared::WarmState::new(shared, sizes);
        match &mut w.warm {
            Some(old) if old.distrust => {}
            Some(old) => old.shared = fresh.shared,
            None => w.warm = Some(fresh),
        }
    }

    /// Shares with this job what the other jobs of its workload taught, as the
    /// workload's document holds it ([`WorkloadState::others`]): the jobs' runs
    /// pooled, and which jobs those are. Nothing changes for a job that names no
    /// workload, a Zeus job, or when no other job's run reached the target yet.
    pub fn share_workload(&mut self, workload: &WorkloadState) {
        if self.shared_workload() != Some(workload.workload.as_str()) || !workload.is_sane() {
            return;
        }
        let (shared, from) = workload.others(&self.job_id);
        if !shared.any_success() {
            return;
        }
        self.share(&shared);
        if let Some(warm) = self.wattwise.as_mut().and_then(|w| w.warm.as_mut()) {
            if !warm.distrust {
                warm.from = from;
            }
        }
    }

    /// The workload whose knowledge this job shares: its `workload` when it runs
    /// the wattwise policy (which learns from and teaches it), else `None`.
    pub fn shared_workload(&self) -> Option<&str> {
        self.wattwise.as_ref()?.taught.as_ref()?;
        self.params.workload.as_deref()
    }

    /// What this job's own runs taught its workload, when it names one.
    pub fn taught(&self) -> Option<&SharedEpochs> {
        self.wattwise.as_ref()?.taught.as_ref()
    }

    /// The warm start's state, when the job has one.
    pub fn warm_start(&self) -> Option<&crate::policy::shared::WarmState> {
        self.wattwise.as_ref().and_then(|w| w.warm.as_ref())
    }

    /// Dispatches the next run: creates a Dispatched trial and returns its id.
    pub fn predict(&mut self, now_ms: i64) -> Result<TrialId, OptimizerError> {
        let (kind, batch_size) = match self.stage {
            _ if self.params.policy == Policy::Wattwise => self.wattwise_next()?,
            Stage::Mab => (TrialType::Mab, self.choose_arm()),
            Stage::Pruning => {
                match explore::next_step(&self.params, &self.pruned, &self.explorations)? {
                    Pruning::Explore(bs) => (TrialType::Exploration, bs),
                    Pruning::Concurrent => (TrialType::Concurrent, self.min_cost_batch_size),
                    Pruning::Done(survivors) => {
                        self.start_bandit(&survivors);
                        (TrialType::Mab, self.choose_arm())
                    }
                }
            }
        };
        let trial_number = self.next_trial_number;
        self.next_trial_number += 1;
        self.totals.touch(now_ms);
        if kind == TrialType::Exploration && self.params.policy == Policy::Zeus {
            self.explorations.push(Exploration {
                batch_size,
                trial_number,
                outcome: None,
            });
        }
        self.open_trials.push(Trial {
            trial_number,
            batch_size,
            kind,
            start_ms: now_ms,
            status: TrialStatus::Dispatched,
        });
        if self.open_trials.len() > Self::MAX_OPEN_TRIALS {
            let oldest = self.open_trials[0].trial_number;
            self.finish(oldest, TrialStatus::Failed { end_ms: now_ms });
        }
        Ok(TrialId {
            job_id: self.job_id.clone(),
            batch_size,
            trial_number,
        })
    }

    /// Zeus's report: keep training (the document is untouched), or record the
    /// run's result and tell the client to stop.
    pub fn report(
        &mut self,
        r: &TrainingResult,
        now_ms: i64,
    ) -> Result<ReportResponse, OptimizerError> {
        let (time, energy) = validate_report(r)?;
        let trial = self.find_trial(r.trial_number, r.batch_size)?;
        if let Some(answer) = finished_trial_answer(&trial, r) {
            return answer;
        }
        let p = &self.params;
        let cost = explore::cost_of(p, energy, time);
        if p.policy == Policy::Wattwise {
            return Ok(self.wattwise_report(r, time, energy, cost, now_ms));
        }
        // A zero min cost (a run that cost nothing) bounds nothing: every later run
        // would exceed it and the job could never converge again.
        let cost_bound = match (p.beta_knob, self.min_cost) {
            (Some(beta), Some(min)) if min > 0.0 => beta * min,
            _ => f64::INFINITY,
        };
        let within_bound = cost <= cost_bound;
        let reached = p.reaches_target(r.metric);
        if within_bound && r.current_epoch < p.max_epochs && !reached {
            return Ok(keep_training());
        }
        let message = if reached && within_bound {
            "Train succeeded".to_string()
        } else if !within_bound {
            format!(
                "Batch Size({}) exceeded the cost upper bound: current cost({cost}) > beta_knob({}) * min_cost({})",
                r.batch_size,
                p.beta_knob.unwrap_or(f64::INFINITY),
                self.min_cost.unwrap_or(f64::INFINITY)
            )
        } else {
            format!(
                "Train failed to converge within max_epoch({})",
                p.max_epochs
            )
        };
        let run = RunResult {
            time,
            energy,
            converged: reached && within_bound,
            energy_uncertainty_j: r.energy_uncertainty_j,
        };
        Ok(self.stop_and_record(r, run, message, now_ms))
    }

    /// Records a stopped run's result and tells the client to stop.
    fn stop_and_record(
        &mut self,
        r: &TrainingResult,
        run: RunResult,
        message: String,
        now_ms: i64,
    ) -> ReportResponse {
        let converged = run.converged;
        self.record(r.trial_number, run, now_ms);
        ReportResponse {
            stop_train: true,
            converged,
            message,
        }
    }

    /// Records a finished run directly, as `report` does when it stops a run.
    pub fn record_result(
        &mut self,
        trial_number: u64,
        time: f64,
        energy: f64,
        converged: bool,
        now_ms: i64,
    ) -> Result<(), OptimizerError> {
        let (time, energy) = time_and_energy(time, energy)?;
        let trial = self.find_trial(trial_number, None)?;
        match trial.status {
            TrialStatus::Dispatched => {
                self.record(
                    trial_number,
                    RunResult {
                        time,
                        energy,
                        converged,
                        energy_uncertainty_j: None,
                    },
                    now_ms,
                );
                Ok(())
            }
            TrialStatus::Succeeded { .. } => Ok(()),
            TrialStatus::Failed { .. } => Err(OptimizerError::TrialFailed(trial_number)),
        }
    }

    /// Zeus's end_trial: a trial still Dispatched becomes Failed; a finished one is left as it is.
    pub fn end_trial(&mut self, trial_number: u64, now_ms: i64) -> Result<(), OptimizerError> {
        let trial = self.find_trial(trial_number, None)?;
        if trial.is_dispatched() {
            self.explorations.retain(|e| e.trial_number != trial_number);
            self.finish(
                trial_number,
                TrialStatus::Failed {
                    end_ms: now_ms.max(trial.start_ms),
                },
            );
        }
        Ok(())
    }

    /// Finds a trial in the document, checking the batch size when one is given.
    fn find_trial(
        &self,
        trial_number: u64,
        batch_size: impl Into<Option<u32>>,
    ) -> Result<Trial, OptimizerError> {
        let found = self
            .open_trials
            .iter()
            .chain(&self.recent_trials)
            .find(|t| t.trial_number == trial_number);
        let Some(trial) = found else {
            if trial_number > 0 && trial_number < self.next_trial_number {
                return Err(OptimizerError::Archived(trial_number));
            }
            return Err(OptimizerError::UnknownTrial {
                job_id: self.job_id.clone(),
                trial_number,
            });
        };
        if let Some(got) = batch_size.into() {
            if got != trial.batch_size {
                return Err(OptimizerError::BatchSizeMismatch {
                    trial_number,
                    expected: trial.batch_size,
                    got,
                });
            }
        }
        Ok(trial.clone())
    }

    /// Where trial `trial_number` stands among the open trials.
    fn open_index(&self, trial_number: u64) -> Option<usize> {
        self.open_trials
            .iter()
            .position(|t| t.trial_number == trial_number)
    }

    /// Applies a run's result: the trial, the exploration, the rewards, the arm and min cost.
    fn record(&mut self, trial_number: u64, result: RunResult, now_ms: i64) {
        self.record_run(trial_number, result, now_ms, None)
    }

    /// [`JobState::record`], with how a wattwise run ended when it is known.
    fn record_run(
        &mut self,
        trial_number: u64,
        result: RunResult,
        now_ms: i64,
        note: Option<RunNote>,
    ) {
        let Some(i) = self.open_index(trial_number) else {
            return;
        };
        let trial = &self.open_trials[i];
        let batch_size = trial.batch_size;
        let end_ms = now_ms.max(trial.start_ms);
        let cost = explore::cost_of(&self.params, result.energy, result.time);
        if let Some(e) = self
            .explorations
            .iter_mut()
            .find(|e| e.trial_number == trial_number)
        {
            e.outcome = Some(ExplorationOutcome {
                cost,
                converged: result.converged,
            });
        }
        let (prior_mean, prior_precision) =
            (self.params.mab_prior_mean, self.params.mab_prior_precision);
        if let Some(state) = self
            .batch_sizes
            .iter_mut()
            .find(|s| s.batch_size == batch_size)
        {
            state.rewards.push(trial_number, -cost);
            if let Some(arm) = &mut state.arm {
                *arm = ArmState::fit(prior_mean, prior_precision, state.rewards.summary());
            }
        }
        let costs = match note {
            Some(_) => epoch_costs(&self.params, &self.profiles),
            None => Vec::new(),
        };
        // Whether the warm start decides for this job now (not merely holds knowledge).
        let warm_decides = note.is_some()
            && self.wattwise.as_ref().is_some_and(|w| {
                warm::View::of(knobs(&self.params, &self.profiles), w, &costs).is_some()
            });
        if let Some(w) = &mut self.wattwise {
            let i = self.params.batch_sizes.binary_search(&batch_size);
            match note {
                Some(n) if n.probe => {
                    let units = i.ok().and_then(|i| costs.get(i).copied().flatten());
                    warm::record_probe(w, batch_size, cost, units)
                }
                Some(n) if n.censored && !result.converged && warm_decides => {
                    warm::record_stopped(w, batch_size)
                }
                _ => w.record(i.unwrap_or(usize::MAX), cost, result.converged),
            }
            if let (Some(n), Ok(i)) = (note, i) {
                if !n.probe {
                    warm::note_run(w, i, n.epochs, result.converged, n.censored, batch_size);
                }
            }
            // What the workload's other jobs learn from this one: runs that reached
            // the target or ran to the end (a run stopped early says too little).
            if let (Some(n), Some(taught)) = (note, &mut w.taught) {
                if !n.probe && !n.censored {
                    taught.push(batch_size, f64::from(n.epochs), result.converged);
                }
            }
        }
        // Min cost counts only runs that reached the target within the bound
        // (Zeus also counts runs that stopped without converging).
        if result.converged && self.min_cost.is_none_or(|m| cost < m) {
            self.min_cost = Some(cost);
            self.min_cost_batch_size = batch_size;
        }
        self.totals.add_result(
            result.energy,
            result.time,
            cost,
            result.energy_uncertainty_j,
            end_ms,
        );
        self.finish(trial_number, TrialStatus::Succeeded { end_ms, result });
        self.fold_finished_rounds();
    }

    /// Moves the explorations of finished pruning rounds out of the document,
    /// keeping their rewards as each batch size's exploration statistics.
    fn fold_finished_rounds(&mut self) {
        let removed =
            explore::fold_finished_rounds(&self.params, &mut self.pruned, &mut self.explorations);
        for e in removed {
            let (Some(outcome), Some(state)) = (
                e.outcome,
                self.batch_sizes
                    .iter_mut()
                    .find(|s| s.batch_size == e.batch_size),
            ) else {
                continue;
            };
            state.explored.push(e.trial_number, -outcome.cost);
        }
    }

    /// Moves an open trial to the recent ones with its final status, archiving the oldest.
    fn finish(&mut self, trial_number: u64, status: TrialStatus) {
        let Some(i) = self.open_index(trial_number) else {
            return;
        };
        let mut trial = self.open_trials.remove(i);
        if let TrialStatus::Failed { end_ms } = status {
            self.totals.add_failed(end_ms);
        }
        if matches!(status, TrialStatus::Failed { .. }) {
            self.explorations.retain(|e| e.trial_number != trial_number);
        }
        trial.status = status;
        let at = self
            .recent_trials
            .partition_point(|t| t.trial_number < trial_number);
        self.recent_trials.insert(at, trial);
        while self.recent_trials.len() > Self::RECENT_TRIALS {
            self.archive_out.push(self.recent_trials.remove(0));
        }
    }

    /// Builds the arms of the surviving batch sizes from their explorations and enters the MAB stage.
    fn start_bandit(&mut self, survivors: &[u32]) {
        let p = &self.params;
        for state in &mut self.batch_sizes {
            if survivors.contains(&state.batch_size) {
                // The folded rounds' rewards, then those still in the list, in round order.
                let mut rewards = state.explored.clone();
                for e in &self.explorations {
                    if let (true, Some(o)) = (e.batch_size == state.batch_size, e.outcome) {
                        rewards.push(e.trial_number, -o.cost);
                    }
                }
                let summary = rewards.summary();
                state.arm = Some(ArmState::fit(
                    p.mab_prior_mean,
                    p.mab_prior_precision,
                    summary,
                ));
            }
        }
        self.stage = Stage::Mab;
    }

    /// The wattwise policy's next run; the stage turns MAB when its search is over.
    fn wattwise_next(&mut self) -> Result<(TrialType, u32), OptimizerError> {
        let n = self.params.batch_sizes.len();
        let state = self
            .wattwise
            .get_or_insert_with(|| wattwise::WattwiseState::new(n));
        if state.arms.len() != n {
            // Not a document this core wrote: start the policy's statistics afresh.
            *state = wattwise::WattwiseState::new(n);
        }
        let open = &self.open_trials;
        let pending = |bs: u32| {
            open.iter()
                .any(|t| t.batch_size == bs && t.kind == TrialType::Exploration)
        };
        let knobs = knobs(&self.params, &self.profiles);
        let costs = epoch_costs(&self.params, &self.profiles);
        let warm_next = warm::View::of(knobs, state, &costs)
            .and_then(|view| warm::next(&view, pending, &mut self.rng));
        let next = match warm_next {
            Some(next) => next,
            None => wattwise::next(&knobs, state, pending, &mut self.rng)?,
        };
        if next.0 == TrialType::Mab {
            self.stage = Stage::Mab;
        }
        Ok(next)
    }

    /// The wattwise policy's stop rule for a run of `batch_size` that has cost
    /// `cost` after `epoch` epochs ([`wattwise::decide`]): `None` keeps it
    /// training, else whether it converged. Changes nothing.
    pub(crate) fn wattwise_stop(
        &self,
        batch_size: u32,
        cost: f64,
        reached: bool,
        epoch: u32,
    ) -> Option<bool> {
        let empty = wattwise::WattwiseState::default();
        let state = self.wattwise.as_ref().unwrap_or(&empty);
        let knobs = knobs(&self.params, &self.profiles);
        let cold = wattwise::decide(&knobs, state, batch_size, cost, reached, epoch);
        if cold.is_some() {
            return cold;
        }
        // The warm start also bounds a run by the predicted best.
        let costs = epoch_costs(&self.params, &self.profiles);
        let view = warm::View::of(knobs, state, &costs)?;
        (cost > warm::cost_bound(&view, batch_size)).then_some(false)
    }

    /// Whether the warm start stops a run of `batch_size` at its `epoch`-th report
    /// as a probe ([`warm::probe_stop`]). Changes nothing.
    pub(crate) fn wattwise_probe(&self, batch_size: u32, epoch: u32) -> bool {
        let Some(state) = &self.wattwise else {
            return false;
        };
        let costs = epoch_costs(&self.params, &self.profiles);
        warm::View::of(knobs(&self.params, &self.profiles), state, &costs)
            .is_some_and(|view| warm::probe_stop(&view, batch_size, epoch))
    }

    /// The cost at which the wattwise policy stops a run of `batch_size`.
    fn wattwise_bound(&self, batch_size: u32) -> f64 {
        let empty = wattwise::WattwiseState::default();
        let state = self.wattwise.as_ref().unwrap_or(&empty);
        let knobs = knobs(&self.params, &self.profiles);
        let cold = wattwise::cost_bound(&knobs, state, batch_size);
        let costs = epoch_costs(&self.params, &self.profiles);
        warm::View::of(knobs, state, &costs)
            .map_or(cold, |view| cold.min(warm::cost_bound(&view, batch_size)))
    }

    /// The wattwise policy's answer to a report (see [`wattwise::decide`]).
    fn wattwise_report(
        &mut self,
        r: &TrainingResult,
        time: f64,
        energy: f64,
        cost: f64,
        now_ms: i64,
    ) -> ReportResponse {
        let reached = self.params.reaches_target(r.metric);
        if !reached && self.wattwise_probe(r.batch_size, r.current_epoch) {
            let run = RunResult {
                time,
                energy,
                converged: false,
                energy_uncertainty_j: r.energy_uncertainty_j,
            };
            let note = RunNote {
                epochs: r.current_epoch,
                censored: true,
                probe: true,
            };
            self.record_run(r.trial_number, run, now_ms, Some(note));
            return ReportResponse {
                stop_train: true,
                converged: false,
                message: format!(
                    "Batch Size({}) probed: the workload's shared epochs to target predict it costs more than another",
                    r.batch_size
                ),
            };
        }
        let Some(converged) = self.wattwise_stop(r.batch_size, cost, reached, r.current_epoch)
        else {
            return keep_training();
        };
        let message = if converged {
            "Train succeeded".to_string()
        } else if r.current_epoch >= self.params.max_epochs {
            format!(
                "Train failed to converge within max_epoch({})",
                self.params.max_epochs
            )
        } else {
            format!(
                "Batch Size({}) exceeded the cost upper bound: current cost({cost}) > {}",
                r.batch_size,
                self.wattwise_bound(r.batch_size)
            )
        };
        let run = RunResult {
            time,
            energy,
            converged,
            energy_uncertainty_j: r.energy_uncertainty_j,
        };
        let note = RunNote {
            epochs: r.current_epoch,
            censored: !reached && r.current_epoch < self.params.max_epochs,
            probe: false,
        };
        self.record_run(r.trial_number, run, now_ms, Some(note));
        ReportResponse {
            stop_train: true,
            converged,
            message,
        }
    }

    /// The bandit's choice among the arms.
    fn choose_arm(&mut self) -> u32 {
        let arms: Vec<(u32, ArmState)> = self
            .batch_sizes
            .iter()
            .filter_map(|s| s.arm.map(|a| (s.batch_size, a)))
            .collect();
        bandit::choose(&arms, self.params.mab_num_explorations, &mut self.rng)
            .unwrap_or(self.min_cost_batch_size)
    }
}
