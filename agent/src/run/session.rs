//! One `wattwise run` session on this host: registers the job, gets its trial
//! (or joins the run across hosts), starts the command with the run's
//! environment, drives the power limit optimizer with the command's events in
//! the wait loop ([`crate::run::watch`]), reports every epoch, restores the
//! power limits the moment the command ends, then delivers what the endpoint
//! must still get. The decisions are in [`crate::run::decisions`] and
//! [`crate::run::driver`]; this module carries them out.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wattwise_core::power::{LimitConstraints, Reading};
use wattwise_core::runs::{HostReport, JoinRun};
use wattwise_core::wire::{TrainingResult, TrialId};

use crate::client::{Delivered, Endpoint, Outgoing, Reply, Reporter, RunAction};
use crate::exporter::{power_state_name, RunInfo, RunStatus};
use crate::log::log;
use crate::nvml::energy_meter::{combined, EnergySource, Stopwatch};
use crate::nvml::gpu::Gpus;
use crate::nvml::ownership::{Ownership, OwnershipError};
use crate::run::child::{Group, Process};
use crate::run::decisions::{
    exit_code, final_ending, host_profile, optimizer, profile_to_post, report_answer,
    reused_measurements, run_uncertain_line, run_view_stop, signal_stop, trial_end, Answer, Ending,
    Stop, TrialEnd,
};
use crate::run::driver::{apply, Driver};
use crate::run::events::{parse_line, Event, Tail};
use crate::run::job_file::{GpuFacts, JobFile};
use crate::run::multihost::{HostIdentity, RunLink};
use crate::run::spools::{replay_leftover_spools, spool_path};
use crate::run::watch::{watch, Watcher};

/// Test hook: the agent panics at this step beginning (to test limit restoring).
/// Read by debug builds only (the e2e tests run those); a release build ignores it,
/// so no environment can make the installed agent panic.
pub const PANIC_AT_STEP_ENV: &str = "WATTWISE_DEBUG_PANIC_AT_STEP";

/// The pgid of the running command, for the panic path (0: none).
static CHILD_GROUP: AtomicU32 = AtomicU32::new(0);

/// Stops the command of a session that panicked (it must not outlive the agent),
/// within `grace`; nothing when none runs.
pub fn stop_command_after_panic(grace: Duration) {
    let pgid = CHILD_GROUP.load(Ordering::SeqCst);
    if pgid != 0 {
        crate::run::child::stop_group_id(pgid, grace);
    }
}

/// Restores the limits found at start (unless done already) and logs it.
pub fn restore_limits(owned: &mut Ownership, gpus: &mut dyn Gpus) -> Result<(), OwnershipError> {
    if owned.is_restored() {
        return Ok(());
    }
    let restored = owned.restore(gpus);
    match &restored {
        Ok(()) => log(format!(
            "restored the power limits found at start: {:?} (gpu, mW)",
            owned.original()
        )),
        Err(e) => log(format!("could not restore the power limits: {e}")),
    }
    restored
}

/// Facts about the job's GPUs (homogeneous limits required, as Zeus does).
fn gpu_facts(gpus: &dyn Gpus, indices: &[u32]) -> anyhow::Result<(GpuFacts, LimitConstraints)> {
    let constraints = gpus.limit_constraints(indices[0])?;
    for &i in &indices[1..] {
        if gpus.limit_constraints(i)? != constraints {
            anyhow::bail!(
                "GPUs {indices:?} accept different power limit ranges; run one job per GPU model"
            );
        }
    }
    let facts = GpuFacts {
        gpu_model: gpus.name(indices[0])?,
        number_of_gpus: indices.len() as u32,
        max_power: f64::from(constraints.max_mw) / 1000.0 * indices.len() as f64,
    };
    Ok((facts, constraints))
}

/// The run's durations.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// See `wattwise run --help`.
    pub grace: Duration,
    /// See `wattwise run --help`.
    pub flush: Duration,
    /// See `wattwise run --help`.
    pub connect: Duration,
    /// See `wattwise run --help`.
    pub power_interval: Duration,
    /// See `wattwise run --help`.
    pub host_timeout: Duration,
}

/// What the phases of a session share: the job's GPUs, the job, the endpoint, the
/// state directory, the durations, this host's place in a run across hosts, the
/// command and the run's metrics.
pub struct Session<'a> {
    /// The GPUs.
    pub gpus: &'a mut dyn Gpus,
    /// The job's GPUs, NVML indices.
    pub indices: &'a [u32],
    /// The job file.
    pub job: &'a JobFile,
    /// The endpoint.
    pub endpoint: &'a Endpoint,
    /// The state directory (events file, spools).
    pub dir: &'a Path,
    /// The durations.
    pub timing: Timing,
    /// This host's place in a run across hosts.
    pub identity: Option<&'a HostIdentity>,
    /// The command and its arguments.
    pub command: &'a [String],
    /// The run's metrics.
    pub metrics: &'a RunStatus,
    /// The GPUs' limits found at start, restored the moment the command ends.
    pub owned: &'a mut Ownership,
}

/// What [`Session::start`] gives the rest of the session: the job, its trial (and
/// the link to the run across hosts), and the driver of the power limit optimizer.
struct Started {
    job_id: String,
    trial: TrialId,
    link: Option<RunLink>,
    facts: GpuFacts,
    driver: Driver,
    /// Whether this run profiles (it reused no profile of the endpoint).
    profiled_here: bool,
}

/// The running command and what watches it.
struct Running {
    process: Box<dyn Process>,
    tail: Tail,
    events_path: PathBuf,
    reporter: Reporter,
    clock: Stopwatch,
    sources: Vec<EnergySource>,
    cpu_start: f64,
    /// Lines of the events file that are no event (the first is logged).
    bad_events: u64,
}

/// How the loop ended: the command's status, why, and whether the run converged.
struct Stopped {
    status: ExitStatus,
    ending: Ending,
    converged: bool,
}

impl Session<'_> {
    /// The whole session: start, launch the command, drive the loop, finish.
    pub fn run(mut self) -> anyhow::Result<i32> {
        let mut started = self.start()?;
        let mut running = self.launch(&started)?;
        let stopped = Drive::new(&mut self, &mut started, &mut running).run();
        self.finish(started, running, stopped)
    }

    /// Whether this host posts the profile: a run on one host, or the first host.
    fn rank0(&self) -> bool {
        self.identity.is_none_or(|id| id.rank == 0)
    }

    /// This host's rank in the run across hosts (0 on one host).
    fn host_rank(&self) -> i64 {
        self.identity.map_or(0, |id| i64::from(id.rank))
    }

    /// Registers the job, gets its trial (or joins the run across hosts), builds
    /// the power limit optimizer (reusing a profile the endpoint has) and sets its
    /// first limit, which also checks the permission before the command starts.
    fn start(&mut self) -> anyhow::Result<Started> {
        let connect = self.timing.connect;
        let (facts, constraints) = gpu_facts(self.gpus, self.indices)?;
        let spec = self.job.spec(&facts)?;
        replay_leftover_spools(self.endpoint, self.dir, connect);
        let registered = self
            .endpoint
            .retrying(connect, |e| e.register(&spec))
            .context("cannot register the job")?;
        let job_id = registered
            .job_id
            .clone()
            .ok_or_else(|| anyhow::anyhow!("the endpoint registered the job without a job_id"))?;
        let (trial, link) = self.trial(&job_id)?;

        // A profile for this GPU model and batch size skips profiling.
        let profiles = match self.endpoint.retrying(connect, |e| e.profiles(&job_id)) {
            Ok(list) => list,
            Err(e) if !e.retryable() => Vec::new(),
            Err(e) => return Err(e).context("cannot read the job's power profiles"),
        };
        let gpu_count = self.indices.len() as u32;
        let power = self.job.power;
        let reused = reused_measurements(&profiles, &facts, &trial, gpu_count, power.profile_steps);
        if !reused.is_empty() {
            log(format!(
                "reusing the endpoint's power profile for {} at batch size {}",
                facts.gpu_model, trial.batch_size
            ));
        }
        let (optimizer, actions) = optimizer(power, constraints, gpu_count, reused)?;
        let profiled_here = !optimizer.is_done();
        self.metrics.start(RunInfo {
            job_id: job_id.clone(),
            trial_number: trial.trial_number,
            batch_size: trial.batch_size,
            epochs: 0,
            power_state: power_state_name(optimizer.state()),
            gpus: self.indices.to_vec(),
        });
        // The first set also checks the permission, before the command starts.
        if let Err(e) = apply(self.gpus, None, self.indices, &actions) {
            // A host of a run across hosts leaves the trial to the run (it times out).
            if link.is_none() {
                let spool = spool_path(self.dir, &job_id, trial.trial_number);
                let reporter = Reporter::start(self.endpoint.clone(), spool);
                reporter.send(Outgoing::EndTrial(trial.clone()));
                reporter.finish(Instant::now() + self.timing.flush);
            }
            return Err(e.into());
        }
        Ok(Started {
            job_id,
            trial,
            link,
            facts,
            driver: Driver::new(optimizer, self.indices, constraints),
            profiled_here,
        })
    }

    /// The trial of this run: the endpoint's next batch size, or on a host of a
    /// run across hosts the run's (with the link to it).
    fn trial(&self, job_id: &str) -> anyhow::Result<(TrialId, Option<RunLink>)> {
        let Some(id) = self.identity else {
            let trial: TrialId = self
                .endpoint
                .retrying(self.timing.connect, |e| e.batch_size(job_id))
                .context("cannot get the batch size")?;
            log(format!(
                "job {job_id}: trial {} with batch size {}",
                trial.trial_number, trial.batch_size
            ));
            return Ok((trial, None));
        };
        let (trial, link) = join_run(
            self.endpoint,
            job_id,
            id,
            self.job,
            self.timing.host_timeout,
            self.timing.connect,
        )?;
        Ok((trial, Some(link)))
    }

    /// Creates the events file and the reporter, starts the energy meter and the
    /// command (in its own process group, with the run's environment).
    fn launch(&mut self, s: &Started) -> anyhow::Result<Running> {
        std::fs::create_dir_all(self.dir)?;
        let events_path = self.dir.join(format!("events-{}.log", std::process::id()));
        let tail = Tail::create(&events_path)
            .with_context(|| format!("cannot create the events file {}", events_path.display()))?;
        let spool = spool_path(self.dir, &s.job_id, s.trial.trial_number);
        let reporter = Reporter::start(self.endpoint.clone(), spool);
        let env = vec![
            (
                "WATTWISE_BATCH_SIZE".to_string(),
                s.trial.batch_size.to_string(),
            ),
            (
                "WATTWISE_EVENTS".to_string(),
                events_path.display().to_string(),
            ),
            ("WATTWISE_JOB_ID".to_string(), s.job_id.clone()),
            (
                "WATTWISE_TRIAL_NUMBER".to_string(),
                s.trial.trial_number.to_string(),
            ),
        ];
        let clock = Stopwatch::start(self.gpus, self.indices, self.timing.power_interval)?;
        let sources = clock.sources();
        let per_gpu: Vec<String> = self
            .indices
            .iter()
            .zip(&sources)
            .map(|(i, s)| format!("GPU {i} {}", s.name()))
            .collect();
        let sampled = if clock.sampling() {
            format!(
                "; power sampled every {:.3} s",
                self.timing.power_interval.as_secs_f64()
            )
        } else {
            String::new()
        };
        log(format!(
            "energy_source {} ({}){sampled}",
            combined(&sources),
            per_gpu.join(", ")
        ));
        let cpu_start = crate::run::child::own_cpu_seconds();
        let group = Group::spawn(self.command, &env)
            .with_context(|| format!("cannot start {:?}", self.command[0]))?;
        CHILD_GROUP.store(group.id(), Ordering::SeqCst);
        Ok(Running {
            process: Box::new(group),
            tail,
            events_path,
            reporter,
            clock,
            sources,
            cpu_start,
            bad_events: 0,
        })
    }

    /// Ends the session: stops the command if the loop failed, restores the
    /// power limits before any network call, spools what the endpoint must still
    /// get (the host's `done` to the run, the profile, the trial's end) and
    /// delivers it for at most the flush timeout from the command's end, then
    /// answers the loop's error or the exit code.
    fn finish(
        &mut self,
        s: Started,
        mut r: Running,
        stopped: anyhow::Result<Stopped>,
    ) -> anyhow::Result<i32> {
        if stopped.is_err() {
            // An NVML failure mid-run: stop the command, then report the error.
            let _ = r.process.stop(self.timing.grace);
        }
        let ended = Instant::now();
        CHILD_GROUP.store(0, Ordering::SeqCst);
        let time = r.clock.elapsed().as_secs_f64();
        let energy = match r.clock.since_start(self.gpus) {
            Ok(m) => {
                let warning = m.warning.as_ref().map(|w| format!(" ({w})"));
                format!("{}{}", m.total_text(), warning.unwrap_or_default())
            }
            Err(e) => format!("energy unknown ({e})"),
        };
        // The limits first: nothing below may keep the GPUs throttled (a failure
        // is logged, and tried again as the agent ends).
        let _ = restore_limits(self.owned, self.gpus);
        self.metrics.end();
        let _ = std::fs::remove_file(&r.events_path);
        let agent_cpu = crate::run::child::own_cpu_seconds() - r.cpu_start;
        if r.bad_events > 0 {
            log(format!("ignored {} bad event line(s)", r.bad_events));
        }

        let epoch = s.driver.epoch();
        let optimizer = s.driver.optimizer();
        if let Some(link) = &s.link {
            r.reporter.send(link.done());
        }
        if let Some(profile) = profile_to_post(
            s.profiled_here,
            optimizer,
            self.rank0(),
            s.trial.batch_size,
            &s.facts.gpu_model,
        ) {
            r.reporter.send(Outgoing::Profile {
                job_id: s.job_id.clone(),
                profile,
            });
        }
        if s.link.is_none() {
            r.reporter.send(Outgoing::EndTrial(s.trial.clone()));
        }
        let (answers, left) = r.reporter.finish(ended + self.timing.flush);
        let mut converged = stopped.as_ref().is_ok_and(|st| st.converged);
        for d in answers {
            if let Some(stop) = delivered(s.link.as_ref(), d) {
                converged |= stop.converged;
                log(stop.line);
            }
        }
        if left > 0 {
            log(format!(
                "{left} message(s) for the endpoint not delivered within --flush-timeout ({:.1} s); they stay in the spool in {}, and the next run replays them",
                self.timing.flush.as_secs_f64(),
                self.dir.display()
            ));
        }
        let run_view = s.link.as_ref().map(RunLink::latest);
        if let TrialEnd::LeftToRun(line) = trial_end(run_view.as_ref().map(Option::as_ref)) {
            log(line);
        }
        let stopped = stopped?;
        let ending = final_ending(stopped.ending, run_view.flatten().as_ref());
        let code = exit_code(&ending, stopped.status);
        log(format!(
            "command ended ({ending:?}, exit code {code}) after {epoch} epoch(s): {time:.3} s, {energy} (energy_source {}){}; agent CPU {agent_cpu:.3} s ({:.2}% of a core), peak memory {}",
            combined(&r.sources),
            if converged { ", converged" } else { "" },
            if time > 0.0 { agent_cpu / time * 100.0 } else { 0.0 },
            crate::run::child::peak_memory().map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
        ));
        Ok(code)
    }
}

/// The run loop (one [`watch`] of the command): forwards the profile to the run
/// across hosts and sets the limit it chose, stops on a signal, on the endpoint's
/// answer or when the run is over, and feeds the command's events to the driver
/// until the command ends. An error (NVML failing mid-run) leaves the command
/// running.
struct Drive<'s, 'a> {
    session: &'s mut Session<'a>,
    s: &'s mut Started,
    r: &'s mut Running,
    /// The step the agent panics at (see [`PANIC_AT_STEP_ENV`]).
    panic_at: Option<u64>,
    profile_sent: bool,
}

impl<'s, 'a> Drive<'s, 'a> {
    fn new(session: &'s mut Session<'a>, s: &'s mut Started, r: &'s mut Running) -> Self {
        let panic_at = std::env::var(PANIC_AT_STEP_ENV)
            .ok()
            .filter(|_| cfg!(debug_assertions))
            .and_then(|v| v.parse().ok());
        Drive {
            session,
            s,
            r,
            panic_at,
            profile_sent: false,
        }
    }

    /// Turns until the command ends or is stopped (at most 100 ms a turn).
    fn run(mut self) -> anyhow::Result<Stopped> {
        watch(&mut self, Duration::from_millis(100))
    }

    /// Logs why the loop stops and stops the command.
    fn stop(&mut self, stop: Stop) -> anyhow::Result<ControlFlow<Stopped>> {
        log(stop.line);
        let status = self.r.process.stop(self.session.timing.grace)?;
        Ok(ControlFlow::Break(Stopped {
            status,
            ending: stop.ending,
            converged: stop.converged,
        }))
    }

    /// Forwards the profile once it is measured, and follows the run's state:
    /// its end, and the power limit it chose.
    fn follow_run(&mut self) -> anyhow::Result<Option<Stop>> {
        let Some(link) = &self.s.link else {
            return Ok(None);
        };
        if !self.profile_sent && self.s.driver.optimizer().is_done() {
            let profile = host_profile(
                self.session.host_rank(),
                self.session.indices.len() as u32,
                self.s.driver.optimizer(),
            );
            self.r
                .reporter
                .send(link.message(RunAction::Profile, &profile));
            self.profile_sent = true;
        }
        let Some(view) = link.latest() else {
            return Ok(None);
        };
        if let Some(stop) = run_view_stop(&view) {
            return Ok(Some(stop));
        }
        if let Some(w) = view.power_limit {
            let gpus = &mut *self.session.gpus;
            if self
                .s
                .driver
                .shared_limit(gpus, Some(&mut self.r.clock), w)?
            {
                log(format!(
                    "run {}: power limit {w} W on every host (chosen from {} hosts' profiles)",
                    view.run_id, view.profiled
                ));
                if let Some(line) = run_uncertain_line(&view) {
                    log(line);
                }
            }
        }
        Ok(None)
    }

    /// Reads the command's events for up to `timeout` (less when it exits), feeds
    /// them to the driver, and sends each epoch's totals to the endpoint (or to the
    /// run across hosts). A bad event is counted, logged once, and skipped.
    fn events(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let also = self.r.process.exit_fd();
        for line in self.r.tail.next_lines(timeout, also)? {
            let event = match parse_line(&line) {
                Ok(e) => e,
                Err(e) => {
                    if self.r.bad_events == 0 {
                        log(format!("ignoring a bad event: {e}"));
                    }
                    self.r.bad_events += 1;
                    continue;
                }
            };
            let gpus = &mut *self.session.gpus;
            // An epoch's totals carry the bound on the energy since the start.
            let mut bound = None;
            let reading = if self.s.driver.needs_reading(&event) {
                let at = self.r.clock.elapsed();
                let now = self.r.clock.reading_at(gpus, at)?;
                if matches!(event, Event::EpochEnd(_)) {
                    let since_start = self.r.clock.measurement(&self.r.clock.origin(), &now);
                    bound = Some(since_start.total_uncertainty_j);
                }
                Reading {
                    time_ms: at.as_millis() as u64,
                    energy_mj: now.energy_mj.iter().sum::<f64>().round() as u64,
                }
            } else {
                Reading::default()
            };
            let step = self.s.driver.steps() + 1;
            if matches!(event, Event::StepBegin) && self.panic_at == Some(step) {
                panic!("{PANIC_AT_STEP_ENV}={step}: test panic");
            }
            let clock = Some(&mut self.r.clock);
            let Some(totals) = self.s.driver.event(gpus, clock, event, reading)? else {
                continue;
            };
            let message = match &self.s.link {
                Some(link) => link.message(
                    RunAction::Report,
                    &HostReport {
                        host_rank: self.session.host_rank(),
                        time: totals.time,
                        energy: totals.energy,
                        metric: totals.metric,
                        current_epoch: totals.epoch,
                        energy_uncertainty_j: bound,
                    },
                ),
                None => Outgoing::Report(TrainingResult {
                    job_id: self.s.job_id.clone(),
                    batch_size: self.s.trial.batch_size,
                    trial_number: self.s.trial.trial_number,
                    time: totals.time,
                    energy: totals.energy,
                    metric: totals.metric,
                    current_epoch: totals.epoch,
                    energy_uncertainty_j: bound,
                }),
            };
            self.r.reporter.send(message);
        }
        Ok(())
    }
}

impl Watcher for Drive<'_, '_> {
    type Done = Stopped;

    fn clock(&mut self) -> (&mut Stopwatch, &dyn Gpus) {
        (&mut self.r.clock, &*self.session.gpus)
    }

    fn turn(&mut self, nap: Duration) -> anyhow::Result<ControlFlow<Stopped>> {
        if let Some(stop) = self.follow_run()? {
            return self.stop(stop);
        }
        if let Some(sig) = crate::run::child::signalled() {
            return self.stop(signal_stop(sig));
        }
        for d in self.r.reporter.answers() {
            if let Some(stop) = delivered(self.s.link.as_ref(), d) {
                return self.stop(stop);
            }
        }
        let exited = self.r.process.try_wait()?;
        self.events(if exited.is_some() {
            Duration::ZERO
        } else {
            nap
        })?;
        let driver = &self.s.driver;
        self.session
            .metrics
            .progress(driver.epoch(), driver.optimizer().state());
        // Once the command exited, every event it wrote is read first.
        Ok(match exited.filter(|_| self.r.tail.caught_up()) {
            Some(status) => ControlFlow::Break(Stopped {
                status,
                ending: Ending::Exited,
                converged: false,
            }),
            None => ControlFlow::Continue(()),
        })
    }
}

/// What one delivered message means for the session: the endpoint's stop (the
/// answer to a report), the run's state (kept by the link), or a log line.
fn delivered(link: Option<&RunLink>, d: Delivered) -> Option<Stop> {
    match (d.message, d.answer) {
        (Outgoing::Report(r), answer) => {
            let answer = answer.and_then(|a| match a {
                Reply::Report(a) => Ok(a),
                other => Err(format!("unexpected answer {other:?}")),
            });
            match report_answer(r.current_epoch, &answer) {
                Answer::Stop(stop) => return Some(stop),
                Answer::Refused(line) => log(line),
                Answer::Continue => {}
            }
        }
        (Outgoing::Run { .. }, Ok(Reply::Run(view))) => {
            if let Some(link) = link {
                link.observe(view);
            }
        }
        (Outgoing::Profile { .. }, Ok(_)) => log("posted the power profile"),
        (m, Ok(_)) => log(format!("delivered {}", m.what())),
        (m, Err(e)) => log(format!("could not deliver {}: {e}", m.what())),
    }
    None
}

/// Joins the run across hosts (the first host opens it): its trial, and the link
/// that forwards this host's profile and epochs and polls the run.
fn join_run(
    endpoint: &Endpoint,
    job_id: &str,
    id: &HostIdentity,
    job: &JobFile,
    host_timeout: Duration,
    connect: Duration,
) -> anyhow::Result<(TrialId, RunLink)> {
    let join = JoinRun {
        run_id: id.run_id.clone(),
        hosts: i64::from(id.hosts),
        host_rank: i64::from(id.rank),
        host_name: crate::run::multihost::host_name(),
        host_timeout_s: host_timeout.as_secs_f64(),
        selector: job.power.selector,
    };
    let view = endpoint
        .retrying(connect, |e| e.join_run(job_id, &join))
        .with_context(|| format!("cannot join run {:?}", id.run_id))?;
    if view.stop_train {
        anyhow::bail!(
            "run {:?} is over already ({}: {})",
            view.run_id,
            view.status,
            view.message
        );
    }
    log(format!(
        "job {job_id}: trial {} with batch size {} (run {}, host {} of {}, from {})",
        view.trial_number, view.batch_size, view.run_id, id.rank, id.hosts, id.source
    ));
    let trial = TrialId {
        job_id: job_id.to_string(),
        batch_size: view.batch_size,
        trial_number: view.trial_number,
    };
    let poll = crate::run::multihost::poll_interval(host_timeout);
    let link = RunLink::start(
        endpoint.clone(),
        job_id.to_string(),
        id.run_id.clone(),
        id.rank,
        poll,
    );
    Ok((trial, link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::energy_meter::Behaviour;
    use crate::nvml::gpu::fake::FakeGpus;
    use crate::run::child::fake::FakeProcess;
    use crate::run::driver::testing::driver;
    use crate::run::job_file::fake_facts;
    use wattwise_core::runs::RunView;

    const JOB: &str = "job_id_prefix = \"t\"\nbatch_sizes = [64]\ndefault_batch_size = 64\ntarget_metric = 0.99\nmax_epochs = 3\n";
    const INDICES: [u32; 2] = [0, 1];

    /// The events of `epochs` epochs of `steps` steps, a bad line in the first.
    fn script(epochs: u32, steps: u32) -> Vec<String> {
        let mut lines = Vec::new();
        for e in 0..epochs {
            for _ in 0..steps {
                lines.push("step_begin".to_string());
                lines.push("step_end".to_string());
            }
            if e == 0 {
                lines.push("no event".to_string());
            }
            lines.push(format!("epoch_end 0.{}", e + 1));
        }
        lines
    }

    /// What a session borrows: two fake GPUs (the second without an energy
    /// counter, so the loop samples its power), an endpoint nothing listens on
    /// (every message stays in the spool), a state directory of its own.
    struct Fixture {
        gpus: FakeGpus,
        job: JobFile,
        endpoint: Endpoint,
        dir: PathBuf,
        owned: Ownership,
        metrics: RunStatus,
        command: Vec<String>,
    }

    impl Fixture {
        fn new(name: &str) -> Fixture {
            let dir = std::env::temp_dir()
                .join(format!("wattwise-session-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut gpus = FakeGpus::new(2);
            gpus.gpus[1].energy_mj = None;
            let (owned, _) =
                Ownership::acquire(&mut gpus, &INDICES, "t", &dir, Duration::ZERO).unwrap();
            Fixture {
                gpus,
                job: JobFile::parse(JOB).unwrap(),
                endpoint: Endpoint::new("http://127.0.0.1:9", None, Duration::from_millis(200)),
                dir,
                owned,
                metrics: RunStatus::default(),
                command: vec!["train".into()],
            }
        }

        fn session(&mut self) -> Session<'_> {
            Session {
                gpus: &mut self.gpus,
                indices: &INDICES,
                job: &self.job,
                endpoint: &self.endpoint,
                dir: &self.dir,
                timing: Timing {
                    grace: Duration::ZERO,
                    flush: Duration::ZERO,
                    connect: Duration::ZERO,
                    power_interval: Duration::from_millis(5),
                    host_timeout: Duration::ZERO,
                },
                identity: None,
                command: &self.command,
                metrics: &self.metrics,
                owned: &mut self.owned,
            }
        }

        /// The trial started (a fresh optimizer), linked to a run across hosts
        /// when `link`.
        fn started(&self, link: Option<RunLink>) -> Started {
            Started {
                job_id: "t-1".into(),
                trial: TrialId {
                    job_id: "t-1".into(),
                    batch_size: 64,
                    trial_number: 1,
                },
                link,
                facts: fake_facts(),
                // Its events come in microseconds apart: windows no meter
                // could bound, which this loop test does not lengthen.
                driver: driver(&mut FakeGpus::new(2), &INDICES).unguarded(),
                profiled_here: true,
            }
        }

        /// The command `process` running, its events file `events.log`.
        fn running(&self, process: FakeProcess) -> Running {
            let events_path = self.dir.join("events.log");
            let exact = [Behaviour::EXACT; INDICES.len()];
            let clock =
                Stopwatch::start_with(&self.gpus, &INDICES, &exact, Duration::from_millis(5))
                    .unwrap();
            Running {
                process: Box::new(process),
                tail: Tail::create(&events_path).unwrap(),
                events_path,
                reporter: Reporter::start(self.endpoint.clone(), self.dir.join("spool.jsonl")),
                sources: clock.sources(),
                clock,
                cpu_start: 0.0,
                bad_events: 0,
            }
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    #[test]
    fn the_run_loop_feeds_every_event_to_the_driver_and_reports_each_epoch() {
        let mut f = Fixture::new("events");
        let mut started = f.started(None);
        let process = FakeProcess::writing(&f.dir.join("events.log"), &script(2, 120), 4);
        let mut running = f.running(process);

        let stopped = Drive::new(&mut f.session(), &mut started, &mut running)
            .run()
            .unwrap();

        assert!(matches!(stopped.ending, Ending::Exited));
        assert_eq!(exit_code(&stopped.ending, stopped.status), 4);
        assert_eq!(started.driver.epoch(), 2);
        assert_eq!(started.driver.steps(), 240);
        assert_eq!(running.bad_events, 1);
        // The profiling moved on from 300 W, on both GPUs.
        assert!(
            f.gpus.sets.iter().any(|&(i, mw)| i == 1 && mw < 300_000),
            "{:?}",
            f.gpus.sets
        );
        // Both epochs' reports wait in the spool, each with its energy's bound.
        let spooled = std::fs::read_to_string(f.dir.join("spool.jsonl")).unwrap();
        let bounds: Vec<_> = spooled
            .lines()
            .map(|l| match serde_json::from_str(l).unwrap() {
                Outgoing::Report(r) => (r.current_epoch, r.energy_uncertainty_j),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(bounds.len(), 2, "{spooled}");
        for (epoch, bound) in bounds {
            assert!(
                bound.is_some_and(|u| u.is_finite() && u >= 0.0),
                "epoch {epoch}: {bound:?}"
            );
        }
        let (answers, left) = running.reporter.finish(Instant::now());
        assert!(answers.is_empty());
        assert_eq!(left, 2);
    }

    fn view(power_limit: Option<u32>, status: &str, stop_train: bool) -> RunView {
        RunView {
            job_id: "t-1".into(),
            run_id: "r".into(),
            trial_number: 1,
            batch_size: 64,
            hosts: 2,
            joined: 2,
            status: status.into(),
            stop_train,
            converged: false,
            message: "host 1 went silent".into(),
            power_limit,
            profiled: 2,
            reported_epoch: 0,
            epochs: Vec::new(),
            uncertain: Vec::new(),
        }
    }

    #[test]
    fn a_host_sets_the_runs_limit_and_stops_when_the_run_fails() {
        let mut f = Fixture::new("run");
        // Polls every hour: the test gives the link the run's state itself.
        let link = RunLink::start(
            f.endpoint.clone(),
            "t-1".into(),
            "r".into(),
            0,
            Duration::from_secs(3600),
        );
        let mut started = f.started(Some(link));
        // A command that never ends by itself.
        let mut running = f.running(FakeProcess::exits_after(u32::MAX, 0));
        let mut session = f.session();
        let mut drive = Drive::new(&mut session, &mut started, &mut running);

        // The run chose 150 W: one turn sets it on both GPUs, and the loop goes on.
        drive
            .s
            .link
            .as_ref()
            .unwrap()
            .observe(view(Some(150), "running", false));
        let turn = drive.turn(Duration::ZERO).unwrap();
        assert!(matches!(turn, ControlFlow::Continue(())));
        // The run failed: the next turn stops the command.
        drive
            .s
            .link
            .as_ref()
            .unwrap()
            .observe(view(Some(150), "failed", true));
        let stopped = drive.run().unwrap();

        assert!(matches!(&stopped.ending, Ending::RunFailed(m) if m == "host 1 went silent"));
        assert_ne!(exit_code(&stopped.ending, stopped.status), 0);
        let sets = &f.gpus.sets;
        assert!(
            sets.contains(&(0, 150_000)) && sets.contains(&(1, 150_000)),
            "{sets:?}"
        );
    }
}
