//! The trace-driven simulator: a recurring job (or an Alibaba group of
//! overlapping submissions) run under wattwise's batch size optimizer and the
//! JIT power limit optimizer.
//!
//! The batch size decisions come from the core's own optimizer
//! ([`JobState::predict`] / [`JobState::record_result`]), the very code the
//! endpoint runs. The rest follows Zeus's trace-driven simulator: a run samples
//! one training path (a run of the train trace) of its batch size; the first run
//! of a batch size profiles every power limit during its first epoch; a run is
//! stopped before the epoch that would take its cost past `beta * min_cost`.

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use super::error::SimError;
use super::trace::GroupJob;
use super::workload::{BatchSizeTrace, JobTrace, PowerPoint};
use crate::api::{self, Change};
use crate::cost::zeus_cost;
use crate::job::JobState;
use crate::policy::shared::SharedEpochs;
use crate::policy::shared::WarmState;
use crate::policy::Policy;
use crate::power::{profile_settled, select, PowerLimitMeasurement, PowerSettings, WINDOW_BOUND};
use crate::rng::unbiased_index;
use crate::spec::JobSpec;
use crate::wire::{
    Phase, PowerMeasurement, PowerProfile, TrainingResult, TrialId, MAX_PROFILE_POINTS,
};

/// Tries per recurrence before the target is deemed unreachable.
pub const MAX_TRIES: u32 = 20;

/// The knobs of one simulation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct SimConfig {
    /// Weight of energy against time in the cost, in `[0, 1]`.
    pub eta_knob: f64,
    /// Early stopping threshold `beta * min_cost`; `f64::INFINITY` disables early stopping.
    pub beta_knob: f64,
    /// Seeds both the training path sampler and the optimizer's RNG.
    pub seed: u64,
}

impl SimConfig {
    /// Checks the knobs; the error names the knob and the rule.
    pub fn validate(&self) -> Result<(), SimError> {
        check_eta(self.eta_knob)?;
        check_beta(self.beta_knob)
    }
}

/// Checks beta, the early stopping threshold: > 0, or infinite to disable
/// early stopping.
pub fn check_beta(beta: f64) -> Result<(), SimError> {
    if beta.is_nan() || beta <= 0.0 {
        return Err(SimError::knob(
            "beta",
            "must be > 0 (or infinite to disable early stopping)",
        ));
    }
    Ok(())
}

/// The first of the values a host was given for a knob (`field`), for a
/// simulation that runs once where a sweep would run each.
pub fn first_of<T: Copy>(field: &'static str, values: &[T]) -> Result<T, SimError> {
    values
        .first()
        .copied()
        .ok_or_else(|| SimError::knob(field, "give at least one"))
}

/// Checks eta, the weight of energy against time: in `[0, 1]`.
pub fn check_eta(eta: f64) -> Result<(), SimError> {
    if eta.is_finite() && (0.0..=1.0).contains(&eta) {
        Ok(())
    } else {
        Err(SimError::knob("eta", "must be in [0, 1]"))
    }
}

/// One run of the job (Zeus's `HistoryEntry`, with its recurrence and cost).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Which recurrence (from 0) the run belongs to; for a group, the submission it
    /// retries. Written from 1 (`"recurrence": 1` is the first), as the command
    /// line's table and CSV and the page count.
    #[serde(with = "from_one")]
    pub recurrence: u32,
    /// Batch size.
    pub batch_size: u32,
    /// Power limit in watts.
    pub power_limit: u32,
    /// Energy in joules.
    pub energy: f64,
    /// Time in seconds.
    pub time: f64,
    /// Whether the run reached the target metric.
    pub reached: bool,
    /// Zeus cost of the run.
    pub cost: f64,
}

/// A 0-based index written and read as a count from 1.
mod from_one {
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(index: &u32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(index.saturating_add(1))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
        let n = u32::deserialize(d)?;
        n.checked_sub(1)
            .ok_or_else(|| serde::de::Error::custom("recurrence: counts from 1"))
    }
}

/// The simulator's own random source (training path sampling), seeded from the
/// simulation's seed on a ChaCha stream apart from the optimizer's.
#[derive(Clone, Debug)]
struct PathRng(ChaCha20Rng);

impl PathRng {
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        rng.set_stream(0x7369_6d75_6c61_7465); // "simulate"
        PathRng(rng)
    }

    /// Uniform index in `0..n` (`n > 0`) without modulo bias.
    fn index(&mut self, n: usize) -> usize {
        unbiased_index(&mut self.0, n)
    }
}

/// Energy and time of the first `epochs` epochs of a run at `point`. A run that
/// profiles (`profiled`: how many limits its profile visited, from the highest
/// down) spends `1 / n` of its first epoch at each visited limit of the `n`,
/// the rest of it at `point`: under Zeus's policy every limit is visited (Zeus's
/// simulator: the first epoch split evenly over every limit), under wattwise's
/// the profile ends early ([`crate::power::profile_settled`]).
fn energy_time(
    bs: &BatchSizeTrace,
    point: &PowerPoint,
    profiled: Option<usize>,
    epochs: f64,
) -> (f64, f64) {
    if let Some(visited) = profiled {
        let (e1, t1) = profiled_epoch(bs, point, visited);
        (
            e1 + point.energy_per_epoch * (epochs - 1.0),
            t1 + point.time_per_epoch * (epochs - 1.0),
        )
    } else {
        (
            point.energy_per_epoch * epochs,
            point.time_per_epoch * epochs,
        )
    }
}

/// Energy and time of a first epoch that profiles the `visited` highest limits
/// of `bs` (`1 / n` of the epoch each, of the `n`) and runs the rest of it at
/// `point`.
pub(crate) fn profiled_epoch(
    bs: &BatchSizeTrace,
    point: &PowerPoint,
    visited: usize,
) -> (f64, f64) {
    let n = bs.limits.len();
    let rest = n.saturating_sub(visited) as f64 / n as f64;
    let slices = &bs.limits[n.saturating_sub(visited)..];
    let n = n as f64;
    (
        slices.iter().map(|p| p.energy_per_epoch).sum::<f64>() / n + point.energy_per_epoch * rest,
        slices.iter().map(|p| p.time_per_epoch).sum::<f64>() / n + point.time_per_epoch * rest,
    )
}

/// The power limit a wattwise job's profile of `bs` selects at `eta`, and how
/// many limits it visited (from the highest down): the agent's rule
/// ([`PowerSettings::wattwise`]) on the trace's epochs, each limit's energy
/// bounded by [`WINDOW_BOUND`] of it (the bound the agent lengthens its
/// windows to).
pub fn wattwise_profile(bs: &BatchSizeTrace, eta: f64) -> Option<(u32, usize)> {
    let settings = PowerSettings::wattwise(eta);
    let mut measured = Vec::with_capacity(bs.limits.len());
    for p in bs.limits.iter().rev() {
        measured.push(PowerLimitMeasurement {
            power_limit: p.power_limit,
            energy: p.energy_per_epoch,
            time: p.time_per_epoch,
            steps: 1,
        });
        let settled = settings.stop_after_rises.is_some_and(|rises| {
            let bound = |w: u32| {
                measured
                    .iter()
                    .find(|m| m.power_limit == w)
                    .map_or(0.0, |m| m.energy * WINDOW_BOUND)
            };
            profile_settled(&settings.selector, rises, &measured, &bound, 1)
        });
        if settled {
            break;
        }
    }
    let pl = select(&settings.selector, &measured, 1).ok()?;
    Some((pl, measured.len()))
}

/// Python's float floor division `a // b` (for `b > 0`), bit for bit.
fn py_floordiv(a: f64, b: f64) -> f64 {
    let m = libm::fmod(a, b);
    let mut div = (a - m) / b;
    if m != 0.0 && ((b < 0.0) != (m < 0.0)) {
        div -= 1.0;
    }
    if div == 0.0 {
        return libm::copysign(0.0, a / b);
    }
    let mut floor = libm::floor(div);
    if div - floor > 0.5 {
        floor += 1.0;
    }
    floor
}

/// The result of running a job once.
struct RunOutcome {
    energy: f64,
    time: f64,
    reached: bool,
    /// Epochs run.
    epochs: f64,
}

/// State shared by both simulations: the trace, the knobs, the path sampler
/// and the JIT power limit optimizer.
struct Engine<'a> {
    job: &'a JobTrace,
    cfg: SimConfig,
    rng: PathRng,
    /// Best power limit per batch size (index into `job.batch_sizes`), once
    /// profiled, and how many limits its profile visited.
    best_pl: Vec<Option<(u32, usize)>>,
}

impl<'a> Engine<'a> {
    fn new(job: &'a JobTrace, cfg: SimConfig) -> Self {
        Engine {
            job,
            cfg,
            rng: PathRng::new(cfg.seed),
            best_pl: vec![None; job.batch_sizes.len()],
        }
    }

    fn slice(&self, batch_size: u32) -> Result<(usize, &'a BatchSizeTrace), SimError> {
        let i = self
            .job
            .batch_sizes
            .binary_search_by_key(&batch_size, |b| b.batch_size)
            .map_err(|_| SimError::UnknownBatchSize(batch_size))?;
        Ok((i, &self.job.batch_sizes[i]))
    }

    /// The power limit to run a batch size at under `policy`, and how many limits
    /// this run profiles first (the batch size's first run; `None` after it).
    fn power_limit(
        &mut self,
        i: usize,
        bs: &BatchSizeTrace,
        policy: Policy,
    ) -> Result<(u32, Option<usize>), SimError> {
        if let Some((pl, _)) = self.best_pl[i] {
            return Ok((pl, None));
        }
        let eta = self.cfg.eta_knob;
        let chosen = if policy == Policy::Zeus {
            // Epoch cost of every power limit, visited from high to low; the first
            // strictly cheaper one wins, so ties go to the higher limit.
            let max_pl = bs.max_power_limit() as f64;
            let mut best: Option<(u32, f64)> = None;
            for p in bs.limits.iter().rev() {
                let cost = (eta * p.average_power + (1.0 - eta) * max_pl) * p.time_per_epoch;
                if best.is_none_or(|(_, c)| c > cost) {
                    best = Some((p.power_limit, cost));
                }
            }
            best.map(|(pl, _)| (pl, bs.limits.len()))
        } else {
            wattwise_profile(bs, eta)
        };
        let (pl, visited) = chosen.ok_or(SimError::NoPowerLimit(bs.batch_size))?;
        self.best_pl[i] = Some((pl, visited));
        Ok((pl, Some(visited)))
    }

    /// Samples a training path of `bs` at `pl`: its power point and the epoch
    /// at which it reaches the target (`None`: never), drawn from the trace's runs.
    fn sample_path<'b>(
        &mut self,
        bs: &'b BatchSizeTrace,
        pl: u32,
    ) -> Result<(&'b PowerPoint, Option<f64>), SimError> {
        if bs.target_epochs.is_empty() {
            return Err(SimError::NoRuns {
                batch_size: bs.batch_size,
                target_metric: self.job.workload.target_metric,
            });
        }
        let point = bs.at(pl).ok_or(SimError::NoPowerLimit(bs.batch_size))?;
        let target_epoch = bs.target_epochs[self.rng.index(bs.target_epochs.len())];
        Ok((point, target_epoch))
    }

    /// Runs the job once: samples a training path, stops before the epoch that
    /// would pass `cost_ub`. Energy and time are zero when not even one epoch fits.
    fn run(
        &mut self,
        bs: &BatchSizeTrace,
        pl: u32,
        cost_ub: f64,
        profile: Option<usize>,
    ) -> Result<RunOutcome, SimError> {
        let (point, target_epoch) = self.sample_path(bs, pl)?;
        let job_max = self.job.workload.max_epochs as f64;
        let max_epochs = if cost_ub == f64::INFINITY {
            job_max
        } else {
            let eta = self.cfg.eta_knob;
            let cost_per_epoch = eta * point.energy_per_epoch
                + (1.0 - eta) * bs.max_power_limit() as f64 * point.time_per_epoch;
            py_floordiv(cost_ub, cost_per_epoch).min(job_max)
        };
        if max_epochs <= 0.0 || max_epochs.is_nan() {
            return Ok(RunOutcome {
                energy: 0.0,
                time: 0.0,
                reached: false,
                epochs: 0.0,
            });
        }
        let energy_time = |epochs: f64| energy_time(bs, point, profile, epochs);
        match target_epoch {
            Some(te) if te <= max_epochs => {
                let (energy, time) = energy_time(te);
                Ok(RunOutcome {
                    energy,
                    time,
                    reached: true,
                    epochs: te,
                })
            }
            _ => {
                let (energy, time) = energy_time(max_epochs);
                Ok(RunOutcome {
                    energy,
                    time,
                    reached: false,
                    epochs: max_epochs,
                })
            }
        }
    }

    /// Runs the job once as a client of the endpoint would: after every epoch it
    /// reports the totals so far to the optimizer ([`JobState::report`]) and stops
    /// when told to; the optimizer records the result itself.
    fn run_reported(
        &mut self,
        state: &mut JobState,
        trial: &TrialId,
        bs: &'a BatchSizeTrace,
        pl: u32,
        profile: Option<usize>,
        now_ms: i64,
    ) -> Result<RunOutcome, SimError> {
        self.run_epochs(state, bs, pl, profile, |_, state, epoch, run| {
            let answer = state.report(
                &TrainingResult {
                    job_id: trial.job_id.clone(),
                    batch_size: trial.batch_size,
                    trial_number: trial.trial_number,
                    time: run.time,
                    energy: run.energy,
                    metric: if run.reached { 1.0 } else { 0.0 },
                    current_epoch: epoch,
                    energy_uncertainty_j: None,
                },
                now_ms + (run.time * 1000.0) as i64,
            )?;
            Ok(answer.stop_train)
        })
    }

    /// Starts a run that the optimizer stops ([`Engine::start_reported`]), then
    /// runs it epoch by epoch until `stop`, given the epoch (from 1) and the
    /// totals so far, says to stop; returns those totals.
    fn run_epochs(
        &mut self,
        state: &mut JobState,
        bs: &'a BatchSizeTrace,
        pl: u32,
        profile: Option<usize>,
        mut stop: impl FnMut(&Self, &mut JobState, u32, &RunOutcome) -> Result<bool, SimError>,
    ) -> Result<RunOutcome, SimError> {
        let (point, target_epoch) = self.start_reported(state, bs, pl, profile)?;
        let mut epoch = 0u32;
        loop {
            epoch += 1;
            let (energy, time) = energy_time(bs, point, profile, epoch as f64);
            let run = RunOutcome {
                energy,
                time,
                reached: target_epoch.is_some_and(|te| te <= epoch as f64),
                epochs: epoch as f64,
            };
            if stop(self, state, epoch, &run)? {
                return Ok(run);
            }
        }
    }

    /// Samples a training path for a run that the optimizer stops (not the
    /// simulator), and posts the batch size's power profile when the run profiles.
    fn start_reported(
        &mut self,
        state: &mut JobState,
        bs: &'a BatchSizeTrace,
        pl: u32,
        profile: Option<usize>,
    ) -> Result<(&'a PowerPoint, Option<f64>), SimError> {
        let (point, target_epoch) = self.sample_path(bs, pl)?;
        if let Some(visited) = profile {
            self.post_profile(state, bs, visited)?;
        }
        Ok((point, target_epoch))
    }

    /// Runs the job once under the wattwise policy's stop rule as the job
    /// document stands now, without recording it (a group's run is recorded
    /// when it ends, and others may end before).
    fn run_decided(
        &mut self,
        state: &mut JobState,
        bs: &'a BatchSizeTrace,
        pl: u32,
        profile: Option<usize>,
    ) -> Result<RunOutcome, SimError> {
        self.run_epochs(state, bs, pl, profile, |engine, state, epoch, run| {
            let cost = engine.cost(run.energy, run.time);
            Ok(state
                .wattwise_stop(bs.batch_size, cost, run.reached, epoch)
                .is_some())
        })
    }

    /// Posts the power profile of a batch size's first epoch to the job, as the
    /// GPU agent does: its `visited` limits from the highest down (throughput in
    /// epochs per second: the trace has no dataset size).
    fn post_profile(
        &self,
        state: &mut JobState,
        bs: &BatchSizeTrace,
        visited: usize,
    ) -> Result<(), SimError> {
        let profile = PowerProfile {
            batch_size: bs.batch_size,
            phase: Phase::Train,
            gpu_model: state.params().gpu_model.clone(),
            measurements: bs
                .limits
                .iter()
                .rev()
                .take(visited.min(MAX_PROFILE_POINTS))
                .map(|p| PowerMeasurement {
                    power_limit: p.power_limit,
                    average_power: p.average_power,
                    throughput: 1.0 / p.time_per_epoch,
                    energy_uncertainty_j: None,
                })
                .collect(),
            uncertain: Vec::new(),
        };
        let out =
            api::post_profile(state.job_id(), &profile, Some(state)).map_err(SimError::Api)?;
        if let Change::Put(new) = out.change {
            *state = *new;
        }
        Ok(())
    }

    fn cost(&self, energy: f64, time: f64) -> f64 {
        zeus_cost(energy, time, self.cfg.eta_knob, self.job.max_power)
    }

    /// The optimizer's job document for this simulation. A run reported epoch by
    /// epoch ([`Engine::run_reported`]) reports metric 1 once it reached the target, 0 before.
    fn new_state(&self, policy: Policy) -> Result<JobState, SimError> {
        self.new_shared_state(policy, None)
    }

    /// [`Engine::new_state`] for a job that names its workload (the trace's
    /// dataset) and starts from what the workload's other jobs taught, when given.
    fn new_shared_state(
        &self,
        policy: Policy,
        shared: Option<&SharedEpochs>,
    ) -> Result<JobState, SimError> {
        let w = &self.job.workload;
        let mut spec = JobSpec::new(
            "sim",
            self.job
                .batch_sizes
                .iter()
                .map(|b| b.batch_size as i64)
                .collect(),
            w.default_batch_size as i64,
            self.job.max_power,
            1,
            if self.job.gpu.is_empty() {
                "unknown"
            } else {
                &self.job.gpu
            },
        );
        spec.eta_knob = self.cfg.eta_knob;
        spec.beta_knob = self.cfg.beta_knob.is_finite().then_some(self.cfg.beta_knob);
        spec.target_metric = w.target_metric;
        if policy != Policy::Zeus {
            spec.target_metric = 1.0;
        }
        spec.max_epochs = w.max_epochs as i64;
        spec.policy = policy;
        if shared.is_some() {
            let id: String = w
                .dataset
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            spec.workload = Some(if id.is_empty() { "workload".into() } else { id });
        }
        let params = spec.validate().map_err(SimError::Job)?;
        let mut state = JobState::new("sim".to_string(), params, self.cfg.seed, 0);
        if let Some(shared) = shared {
            state.share(shared);
        }
        Ok(state)
    }

    /// Feeds a run that could not afford one epoch to the optimizer: a
    /// non-converged run costing `100 * beta * min_cost`, as Zeus's simulator does.
    /// (The optimizer takes energy and time, so the cost is split into an energy
    /// of `c` joules and a time of `c / max_power` seconds, which costs `c` at any eta.)
    fn record_unaffordable(
        &self,
        state: &mut JobState,
        trial: u64,
        min_cost: f64,
        now_ms: i64,
    ) -> Result<(), SimError> {
        let c = 100.0 * self.cfg.beta_knob * min_cost;
        state.record_result(trial, c / self.job.max_power, c, false, now_ms)?;
        Ok(())
    }
}

/// Simulates a job recurring `recurrences` times, one run after another.
///
/// Each recurrence runs until a run reaches the target (at most [`MAX_TRIES`]
/// runs); `min_cost` is the smallest total cost of a recurrence, and later runs
/// stop before their cost passes `beta * min_cost`. A run that cannot afford one
/// epoch is fed to the optimizer as a failure but is not in the history.
///
/// Errors: the first recurrence's run (the default batch size) does not reach the
/// target; a recurrence does not reach it in [`MAX_TRIES`] runs; a batch size the
/// optimizer picks has no run at the target in the trace; bad knobs.
pub fn simulate_one_job(
    job: &JobTrace,
    recurrences: u32,
    cfg: &SimConfig,
) -> Result<Vec<HistoryEntry>, SimError> {
    simulate_one_job_with(job, recurrences, cfg, Policy::Zeus)
}

/// [`simulate_one_job`] under either batch size policy.
///
/// Under [`Policy::Zeus`] a run is cut before the epoch that would take it past
/// `beta * min_cost`, as in Zeus's simulator. Under any other policy the run
/// reports to the optimizer after every epoch, as a client of the endpoint
/// does, and stops when the optimizer says so.
pub fn simulate_one_job_with(
    job: &JobTrace,
    recurrences: u32,
    cfg: &SimConfig,
    policy: Policy,
) -> Result<Vec<HistoryEntry>, SimError> {
    Ok(simulate_one_job_shared(job, recurrences, cfg, policy, None)?.history)
}

/// A job's simulation and what its runs taught about its workload.
#[derive(Clone, Debug, PartialEq)]
pub struct SharedRun {
    /// Every run.
    pub history: Vec<HistoryEntry>,
    /// Epochs to target per batch size of the runs that reached the target or ran
    /// to `max_epochs` (a run stopped early says too little and is left out).
    pub learned: SharedEpochs,
    /// The job's warm start at the end (`None` without shared knowledge).
    pub warm: Option<WarmState>,
}

/// [`simulate_one_job_with`] for a job of a workload whose other jobs taught
/// `shared` (the wattwise policy warm-starts from it; Zeus's ignores it), also
/// returning what this job's runs teach the next ones.
pub fn simulate_one_job_shared(
    job: &JobTrace,
    recurrences: u32,
    cfg: &SimConfig,
    policy: Policy,
    shared: Option<&SharedEpochs>,
) -> Result<SharedRun, SimError> {
    cfg.validate()?;
    let mut engine = Engine::new(job, *cfg);
    let mut state = engine.new_shared_state(policy, shared)?;
    let mut learned = SharedEpochs::default();
    let max_epochs = job.workload.max_epochs as f64;
    let mut history = Vec::with_capacity(recurrences.min(1 << 16) as usize * 2);
    let mut min_cost = f64::INFINITY;
    // A virtual clock: the simulated time so far, in ms, for the trials' timestamps.
    let mut clock_s = 0.0f64;
    for recurrence in 0..recurrences {
        let mut cost_acc = 0.0;
        let mut reached_in = None;
        // not a retry: each try is one of the recurrence's training runs.
        for tries in 1..=MAX_TRIES {
            let now_ms = (clock_s * 1000.0) as i64;
            let trial = state.predict(now_ms)?;
            let (i, bs) = engine.slice(trial.batch_size)?;
            let (pl, profile) = engine.power_limit(i, bs, policy)?;
            let run = if policy == Policy::Zeus {
                let run = engine.run(bs, pl, cfg.beta_knob * min_cost, profile)?;
                if run.energy == 0.0 && run.time == 0.0 && !run.reached {
                    engine.record_unaffordable(&mut state, trial.trial_number, min_cost, now_ms)?;
                    state.take_archive();
                    continue;
                }
                clock_s += run.time;
                state.record_result(
                    trial.trial_number,
                    run.time,
                    run.energy,
                    run.reached,
                    (clock_s * 1000.0) as i64,
                )?;
                run
            } else {
                let run = engine.run_reported(&mut state, &trial, bs, pl, profile, now_ms)?;
                clock_s += run.time;
                run
            };
            state.take_archive();
            if run.reached || run.epochs >= max_epochs {
                learned.push(bs.batch_size, run.epochs, run.reached);
            }
            let cost = engine.cost(run.energy, run.time);
            cost_acc += cost;
            history.push(HistoryEntry {
                recurrence,
                batch_size: bs.batch_size,
                power_limit: pl,
                energy: run.energy,
                time: run.time,
                reached: run.reached,
                cost,
            });
            if run.reached {
                if cost_acc < min_cost {
                    min_cost = cost_acc;
                }
                reached_in = Some(tries);
                break;
            }
            // A wattwise run may be stopped early (a probe): only one that ran to
            // the end without the target means the default does not converge.
            if recurrence == 0 && (policy == Policy::Zeus || run.epochs >= max_epochs) {
                return Err(SimError::DefaultDidNotConverge {
                    batch_size: bs.batch_size,
                });
            }
        }
        if reached_in.is_none() {
            return Err(SimError::TooManyTries {
                recurrence,
                tries: MAX_TRIES,
            });
        }
    }
    Ok(SharedRun {
        history,
        learned,
        warm: state.warm_start().cloned(),
    })
}

/// A run in flight during a group simulation.
#[derive(Clone, Copy, Debug)]
struct InFlight {
    submission: u32,
    start: f64,
    end: f64,
    runtime_ratio: f64,
    trial: u64,
    batch_size: u32,
    power_limit: u32,
    outcome_energy: f64,
    outcome_time: f64,
    reached: bool,
}

/// Simulates one group of the Alibaba trace: submissions (sorted by start time)
/// that may overlap.
///
/// At each submission, the runs that ended by then are reaped in end-time order:
/// the optimizer records each result, and a run that missed the target is retried
/// at once (starting when it ended and lasting as long). Every run gets its batch
/// size from the optimizer, which hands out the best known batch size to runs
/// submitted while a pruning exploration is still in flight. Energy and time in
/// the history are scaled by the submission's runtime ratio; the optimizer and
/// `min_cost` see the unscaled values.
pub fn simulate_one_alibaba_group(
    job: &JobTrace,
    group: &[GroupJob],
    cfg: &SimConfig,
) -> Result<Vec<HistoryEntry>, SimError> {
    simulate_one_alibaba_group_with(job, group, cfg, Policy::Zeus)
}

/// [`simulate_one_alibaba_group`] under either batch size policy. Under a policy
/// other than Zeus's, a run's length is the optimizer's stop rule applied, epoch by
/// epoch, to the job document as it stands at the run's launch; the result is
/// recorded when the run ends.
pub fn simulate_one_alibaba_group_with(
    job: &JobTrace,
    group: &[GroupJob],
    cfg: &SimConfig,
    policy: Policy,
) -> Result<Vec<HistoryEntry>, SimError> {
    cfg.validate()?;
    for (i, g) in group.iter().enumerate() {
        let ok = g.start_time.is_finite()
            && g.end_time.is_finite()
            && g.end_time >= g.start_time
            && g.runtime_ratio.is_finite()
            && g.runtime_ratio >= 0.0;
        if !ok {
            return Err(SimError::BadGroupRow { row: i });
        }
        if i > 0 && g.start_time < group[i - 1].start_time {
            return Err(SimError::GroupNotSorted { row: i });
        }
    }
    let engine = Engine::new(job, *cfg);
    let state = engine.new_state(policy)?;
    let mut sim = GroupSim {
        engine,
        state,
        policy,
        running: Vec::new(),
        history: Vec::with_capacity(group.len().min(1 << 16) * 2),
        min_cost: f64::INFINITY,
        launches: 0,
        max_launches: group.len() as u64 * MAX_TRIES as u64,
    };
    for (k, g) in group.iter().enumerate() {
        sim.reap(g.start_time)?;
        sim.launch(k as u32, g.start_time, g.end_time, g.runtime_ratio)?;
    }
    sim.reap(f64::INFINITY)?;
    Ok(sim.history)
}

/// The state of a group simulation.
struct GroupSim<'a> {
    engine: Engine<'a>,
    state: JobState,
    policy: Policy,
    running: Vec<InFlight>,
    history: Vec<HistoryEntry>,
    min_cost: f64,
    launches: u64,
    max_launches: u64,
}

impl GroupSim<'_> {
    /// Launches a run; `start` and `end` are its place in the Alibaba timeline.
    fn launch(
        &mut self,
        submission: u32,
        start: f64,
        end: f64,
        runtime_ratio: f64,
    ) -> Result<(), SimError> {
        self.launches += 1;
        if self.launches > self.max_launches {
            return Err(SimError::TooManyTries {
                recurrence: submission,
                tries: MAX_TRIES,
            });
        }
        let now_ms = (start * 1000.0) as i64;
        let trial = self.state.predict(now_ms)?;
        let (i, bs) = self.engine.slice(trial.batch_size)?;
        let (pl, profile) = self.engine.power_limit(i, bs, self.policy)?;
        let run = if self.policy == Policy::Zeus {
            self.engine
                .run(bs, pl, self.engine.cfg.beta_knob * self.min_cost, profile)?
        } else {
            self.engine.run_decided(&mut self.state, bs, pl, profile)?
        };
        self.running.push(InFlight {
            submission,
            start,
            end,
            runtime_ratio,
            trial: trial.trial_number,
            batch_size: bs.batch_size,
            power_limit: pl,
            outcome_energy: run.energy,
            outcome_time: run.time,
            reached: run.reached,
        });
        Ok(())
    }

    /// Reaps every run that ended by `now`, earliest end first, retrying the failures.
    fn reap(&mut self, now: f64) -> Result<(), SimError> {
        loop {
            // Earliest end first; among equal ends, the earliest launched.
            let next = self
                .running
                .iter()
                .enumerate()
                .filter(|(_, r)| r.end <= now)
                .min_by(|a, b| a.1.end.total_cmp(&b.1.end).then(a.0.cmp(&b.0)))
                .map(|(i, _)| i);
            let Some(i) = next else { return Ok(()) };
            let r = self.running.remove(i);
            let end_ms = (r.end * 1000.0) as i64;
            let never_ran = self.policy == Policy::Zeus
                && r.outcome_energy == 0.0
                && r.outcome_time == 0.0
                && !r.reached;
            if never_ran {
                self.engine
                    .record_unaffordable(&mut self.state, r.trial, self.min_cost, end_ms)?;
            } else {
                self.state.record_result(
                    r.trial,
                    r.outcome_time,
                    r.outcome_energy,
                    r.reached,
                    end_ms,
                )?;
                let cost = self.engine.cost(r.outcome_energy, r.outcome_time);
                self.history.push(HistoryEntry {
                    recurrence: r.submission,
                    batch_size: r.batch_size,
                    power_limit: r.power_limit,
                    energy: r.outcome_energy * r.runtime_ratio,
                    time: r.outcome_time * r.runtime_ratio,
                    reached: r.reached,
                    cost,
                });
                if r.reached && cost < self.min_cost {
                    self.min_cost = cost;
                }
            }
            self.state.take_archive();
            if !r.reached {
                let duration = r.end - r.start;
                self.launch(r.submission, r.end, r.end + duration, r.runtime_ratio)?;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::py_floordiv;

    #[test]
    fn floordiv_matches_python() {
        // Python: 1.0 // 0.1 == 9.0 (not 10.0).
        for (a, b, python) in [
            (7.0, 2.0, 3.0),
            (6.0, 2.0, 3.0),
            (0.5, 2.0, 0.0),
            (1.0, 0.1, 9.0),
        ] {
            assert_eq!(py_floordiv(a, b), python, "{a} // {b}");
        }
    }
}
