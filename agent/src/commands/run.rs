//! `wattwise run --server URL --job job.toml -- <command...>`: one recurrence of a
//! training job under wattwise.
//!
//! Registers the job (GPU facts from NVML), gets this run's batch size, starts the
//! command in its own process group with `WATTWISE_BATCH_SIZE` and
//! `WATTWISE_EVENTS`, drives the power limit optimizer of the core with the
//! script's step and epoch events (or reuses a profile the endpoint already has for
//! this GPU model and batch size), reports time, energy and metric after every
//! epoch, stops the process group when the endpoint says `stop_train`, restores
//! the power limits found at start the moment the command ends (and on every other
//! exit path), then posts the profile and ends the trial, and exits with the
//! command's status. Every message after the command starts goes through the
//! reporter's spool ([`crate::client::Reporter`]): once the command ended the agent
//! delivers for at most `--flush-timeout`, and the next run replays what is left.
//!
//! On a host of a run across hosts (`--run-id`/`--hosts`/`--host-rank`, or Slurm's
//! or torchrun's environment: [`crate::run::multihost`]) it joins the run instead of
//! asking for a batch size, forwards its profile and per-epoch totals to the run,
//! sets the run's power limit once the endpoint chose it from every host's profile,
//! stops when the run is over (exit 1 when it failed), and leaves ending the trial
//! to the run.

use std::os::fd::OwnedFd;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use wattwise_core::power::{LimitConstraints, Reading};
use wattwise_core::runs::{HostProfile, HostReport, JoinRun};
use wattwise_core::wire::{TrainingResult, TrialId};

use crate::client::{Delivered, Endpoint, Outgoing, Reply, Reporter, RunAction};
use crate::commands::exporter::{power_state_name, RunInfo, RunStatus};
use crate::log::log;
use crate::nvml::energy_meter::{combined, EnergyMeter, EnergySource, DEFAULT_POWER_INTERVAL_S};
use crate::nvml::gpu::{Gpus, NvmlGpus};
use crate::nvml::limits::state_dir;
use crate::nvml::ownership::{Ownership, OwnershipError};
use crate::run::driver::{apply, Driver};
use crate::run::events::{parse_line, Event, Tail};
use crate::run::job_file::{GpuFacts, JobFile};
use crate::run::multihost::{HostIdentity, RunLink};
use crate::run::session::{
    exit_code, final_ending, optimizer, profile_to_post, report_answer, reused_measurements,
    run_view_stop, signal_stop, trial_end, Answer, Ending, Stop, TrialEnd,
};

/// How long one request waits for its answer: a signal that comes while the
/// agent waits for the endpoint before the command starts ends it within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Test hook: the agent panics at this step beginning (to test limit restoring).
/// Read by debug builds only (the e2e tests run those); a release build ignores it,
/// so no environment can make the installed agent panic.
pub const PANIC_AT_STEP_ENV: &str = "WATTWISE_DEBUG_PANIC_AT_STEP";

/// Arguments of `wattwise run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The endpoint's base URL (also `WATTWISE_SERVER`).
    #[arg(long, env = "WATTWISE_SERVER")]
    pub server: String,
    /// The job file (TOML).
    #[arg(long)]
    pub job: PathBuf,
    /// GPUs the job uses: NVML indices (as `wattwise gpus` numbers them) or UUIDs
    /// (`GPU-…`, `MIG-…`: the parent GPU), comma-separated, or `all`. Default:
    /// CUDA_VISIBLE_DEVICES (CUDA's numbering), else NVIDIA_VISIBLE_DEVICES, else all.
    #[arg(long)]
    pub gpus: Option<String>,
    /// Seconds between power samples on GPUs without an energy counter (before
    /// Volta), whose energy is the integral of sampled power.
    #[arg(long, default_value_t = DEFAULT_POWER_INTERVAL_S)]
    pub power_interval: f64,
    /// Seconds to wait for a GPU whose lock is held by a wattwise process that is
    /// not a live run's owner (a run starting, or one restoring a dead run's limit).
    #[arg(long, default_value_t = 5.0)]
    pub lock_timeout: f64,
    /// Seconds between SIGTERM and SIGKILL when stopping the command.
    #[arg(long, default_value_t = 10.0)]
    pub grace: f64,
    /// Seconds to keep delivering what the endpoint must still get after the
    /// command ends (the power limits are restored first; 1 s at most once the
    /// agent got SIGINT, SIGTERM or SIGHUP). What is not delivered stays in the
    /// spool in the state directory, and the next run replays it.
    #[arg(long, default_value_t = 5.0)]
    pub flush_timeout: f64,
    /// Seconds to keep trying to register the job while the endpoint is down.
    #[arg(long, default_value_t = 60.0)]
    pub connect_timeout: f64,
    /// Serve Prometheus metrics of the job's GPUs and of this run on ADDR
    /// (HOST:PORT, or a PORT on 127.0.0.1), at /metrics.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// The run's id when it spans hosts (the same on every host; one agent per
    /// host). Default: Slurm's `slurm-$SLURM_JOB_ID.$SLURM_STEP_ID`, else torchrun's
    /// TORCHELASTIC_RUN_ID, else PET_RDZV_ID.
    #[arg(long)]
    pub run_id: Option<String>,
    /// How many hosts the run spans. Default: SLURM_NNODES (else
    /// SLURM_JOB_NUM_NODES), else GROUP_WORLD_SIZE, else PET_NNODES, else 1.
    #[arg(long)]
    pub hosts: Option<u32>,
    /// This host's rank in the run, 0 to hosts - 1. Default: SLURM_NODEID, else
    /// GROUP_RANK, else PET_NODE_RANK.
    #[arg(long)]
    pub host_rank: Option<u32>,
    /// Seconds a host of a run across hosts may send nothing before the endpoint
    /// fails the run (naming the host); the first host's value counts.
    #[arg(long, default_value_t = 60.0)]
    pub host_timeout: f64,
    /// The command and its arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// The pgid of the running command, for the panic path (0: none).
static CHILD_GROUP: AtomicU32 = AtomicU32::new(0);

fn secs(field: &str, v: f64) -> anyhow::Result<Duration> {
    if (0.0..1e7).contains(&v) {
        Ok(Duration::from_secs_f64(v))
    } else {
        anyhow::bail!("--{field}: must be a number of seconds >= 0")
    }
}

/// Runs `wattwise run`; returns the exit code.
pub fn run(args: RunArgs) -> anyhow::Result<i32> {
    let grace = secs("grace", args.grace)?;
    let flush = secs("flush-timeout", args.flush_timeout)?;
    let connect = secs("connect-timeout", args.connect_timeout)?;
    let lock_timeout = secs("lock-timeout", args.lock_timeout)?;
    let power_interval = crate::nvml::energy_meter::power_interval(args.power_interval)?;
    let host_timeout = secs("host-timeout", args.host_timeout)?;
    let identity = crate::run::multihost::resolve(
        &crate::run::multihost::IdentityFlags {
            run_id: args.run_id.clone(),
            hosts: args.hosts,
            host_rank: args.host_rank,
        },
        &|k| std::env::var(k).ok(),
    )?;
    let text = std::fs::read_to_string(&args.job)
        .with_context(|| format!("cannot read the job file {}", args.job.display()))?;
    let job = JobFile::parse(&text)?;
    if let Some(id) = &identity {
        if job.spec.get("job_id").and_then(|v| v.as_str()).is_none() {
            anyhow::bail!(
                "job_id: run {:?} spans {} hosts, so the job file must set job_id (the same on every host); job_id_prefix alone draws a new job per host",
                id.run_id,
                id.hosts
            );
        }
    }
    let token = crate::client::token_from_env()?;
    let endpoint = Endpoint::new(&args.server, token, REQUEST_TIMEOUT);

    crate::run::child::catch_termination_signals();
    let mut gpus = NvmlGpus::open()?;
    let dir = state_dir();
    let (facts, selection) = crate::nvml::selection::select_on_host(&gpus, args.gpus.as_deref())?;
    crate::nvml::selection::check_limits_allowed(&facts, &selection)?;
    let indices = selection.gpus();
    let job_name = ["job_id", "job_id_prefix"]
        .iter()
        .find_map(|k| job.spec.get(*k).and_then(|v| v.as_str()))
        .unwrap_or("?")
        .to_string();
    let metrics = crate::commands::exporter::start(args.metrics.as_deref(), Some(&indices))?;
    // Every dead run's GPUs first (live runs' are left alone), then ours.
    crate::nvml::limits::recover_unless_busy(&mut gpus, &dir)?;
    let (mut guard, recovered) =
        Ownership::acquire(&mut gpus, &indices, &job_name, &dir, lock_timeout)?;
    if !recovered.is_empty() {
        log(format!(
            "restored the power limits a killed run left: {recovered:?} (gpu, mW)"
        ));
    }
    log(format!(
        "GPUs {indices:?} (NVML indices, from {})",
        selection.source.name()
    ));
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
        Session {
            gpus: &mut gpus,
            indices: &indices,
            job: &job,
            endpoint: &endpoint,
            dir: &dir,
            timing: Timing {
                grace,
                flush,
                connect,
                power_interval,
                host_timeout,
            },
            identity: identity.as_ref(),
            command: &args.command,
            metrics: &metrics,
            owned: &mut guard,
        }
        .run()
    }));
    if result.is_err() {
        // The agent panicked: the command must not outlive it.
        let pgid = CHILD_GROUP.load(Ordering::SeqCst);
        if pgid != 0 {
            crate::run::child::stop_group_id(pgid, grace);
        }
    }
    // Nothing to do when the session restored them as its command ended.
    let restored = restore_limits(&mut guard, &mut gpus);
    match result {
        Ok(r) => {
            let code = r?;
            restored?;
            Ok(code)
        }
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Restores the limits found at start (unless done already) and logs it.
fn restore_limits(owned: &mut Ownership, gpus: &mut dyn Gpus) -> Result<(), OwnershipError> {
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

/// The spool of this agent's trial `trial_number` of `job_id` in `dir`,
/// `spool-<job>-<trial>.<pid>.jsonl`: the agent's pid tells another agent to
/// replay it only once this one is gone.
fn spool_path(dir: &Path, job_id: &str, trial_number: u64) -> PathBuf {
    dir.join(format!(
        "spool-{}-{trial_number}.{}.jsonl",
        job_id.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "_"),
        std::process::id()
    ))
}

/// Whether the spool named `name` belongs to another live agent (an older
/// agent's `spool-<job>-<trial>.jsonl` names none).
fn spool_of_a_live_agent(name: &str) -> bool {
    let pid = name
        .strip_suffix(".jsonl")
        .and_then(|stem| stem.rsplit_once('.'))
        .and_then(|(_, pid)| pid.parse::<u32>().ok());
    pid.is_some_and(|pid| pid != std::process::id() && crate::nvml::ownership::pid_alive(pid))
}

/// Sends what earlier agents could not deliver (they were killed, or the endpoint
/// stayed down past their flush timeout), each spool in order, for up to
/// `patience` in all, before this run starts; the spools of agents still running
/// are theirs.
fn replay_leftover_spools(endpoint: &Endpoint, dir: &std::path::Path, patience: Duration) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut spools: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with("spool-") && n.ends_with(".jsonl") && !spool_of_a_live_agent(n)
            })
        })
        .collect();
    spools.sort();
    let deadline = Instant::now() + patience;
    for spool in spools {
        let (answers, left) = Reporter::start(endpoint.clone(), spool.clone()).finish(deadline);
        log(format!(
            "replayed {} earlier message(s) from {}{}",
            answers.len(),
            spool.display(),
            if left > 0 {
                format!("; {left} still undelivered")
            } else {
                String::new()
            }
        ));
    }
}

/// The run's durations.
#[derive(Clone, Copy, Debug)]
struct Timing {
    grace: Duration,
    flush: Duration,
    connect: Duration,
    power_interval: Duration,
    host_timeout: Duration,
}

/// What the phases of a session share: the job's GPUs, the job, the endpoint, the
/// state directory, the durations, this host's place in a run across hosts, the
/// command and the run's metrics.
struct Session<'a> {
    gpus: &'a mut dyn Gpus,
    indices: &'a [u32],
    job: &'a JobFile,
    endpoint: &'a Endpoint,
    dir: &'a Path,
    timing: Timing,
    identity: Option<&'a HostIdentity>,
    command: &'a [String],
    metrics: &'a RunStatus,
    /// The GPUs' limits found at start, restored the moment the command ends.
    owned: &'a mut Ownership,
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
    child: Child,
    exit_fd: Option<OwnedFd>,
    tail: Tail,
    events_path: PathBuf,
    reporter: Reporter,
    meter: EnergyMeter,
    sources: Vec<EnergySource>,
    start: Instant,
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
    fn run(mut self) -> anyhow::Result<i32> {
        let mut started = self.start()?;
        let mut running = self.launch(&started)?;
        let stopped = self.drive(&mut started, &mut running);
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
        if let Err(e) = apply(self.gpus, &mut None, self.indices, &actions) {
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
        let start = Instant::now();
        let meter = EnergyMeter::start(self.gpus, self.indices, start.elapsed())?;
        let sources = meter.sources();
        let per_gpu: Vec<String> = self
            .indices
            .iter()
            .zip(&sources)
            .map(|(i, s)| format!("GPU {i} {}", s.name()))
            .collect();
        let sampled = if meter.sampling() {
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
        let child = crate::run::child::spawn(self.command, &env)
            .with_context(|| format!("cannot start {:?}", self.command[0]))?;
        CHILD_GROUP.store(child.id(), Ordering::SeqCst);
        let exit_fd = crate::run::child::exit_fd(&child);
        Ok(Running {
            child,
            exit_fd,
            tail,
            events_path,
            reporter,
            meter,
            sources,
            start,
            cpu_start,
            bad_events: 0,
        })
    }

    /// Logs why the loop stops and stops the command.
    fn stop(&self, r: &mut Running, stop: Stop) -> anyhow::Result<Stopped> {
        log(stop.line);
        let status = crate::run::child::stop_group(&mut r.child, self.timing.grace)?;
        Ok(Stopped {
            status,
            ending: stop.ending,
            converged: stop.converged,
        })
    }

    /// The run loop: forwards the profile to the run across hosts and sets the
    /// limit it chose, samples power, stops on a signal, on the endpoint's answer
    /// or when the run is over, and feeds the command's events to the driver until
    /// the command ends. An error (NVML failing mid-run) leaves the command running.
    fn drive(&mut self, s: &mut Started, r: &mut Running) -> anyhow::Result<Stopped> {
        let power_interval = self.timing.power_interval;
        let panic_at: Option<u64> = std::env::var(crate::commands::run::PANIC_AT_STEP_ENV)
            .ok()
            .filter(|_| cfg!(debug_assertions))
            .and_then(|v| v.parse().ok());
        let mut next_power = r.start + power_interval;
        let mut profile_sent = false;
        loop {
            if let Some(link) = &s.link {
                if !profile_sent && s.driver.optimizer().is_done() {
                    let profile = HostProfile {
                        host_rank: self.host_rank(),
                        gpu_count: i64::from(self.indices.len() as u32),
                        measurements: s.driver.optimizer().measurements().to_vec(),
                    };
                    r.reporter.send(link.message(RunAction::Profile, &profile));
                    profile_sent = true;
                }
                if let Some(view) = link.latest() {
                    if let Some(stop) = run_view_stop(&view) {
                        return self.stop(r, stop);
                    }
                    if let Some(w) = view.power_limit {
                        let meter = &mut Some((&mut r.meter, r.start));
                        if s.driver.shared_limit(self.gpus, meter, w)? {
                            log(format!(
                                "run {}: power limit {w} W on every host (chosen from {} hosts' profiles)",
                                view.run_id, view.profiled
                            ));
                        }
                    }
                }
            }
            if r.meter.sampling() && Instant::now() >= next_power {
                r.meter.sample(self.gpus, r.start.elapsed())?;
                next_power = (next_power + power_interval).max(Instant::now());
            }
            if let Some(sig) = crate::run::child::signalled() {
                return self.stop(r, signal_stop(sig));
            }
            for d in r.reporter.answers() {
                if let Some(stop) = delivered(s.link.as_ref(), d) {
                    return self.stop(r, stop);
                }
            }
            let exited = r.child.try_wait()?;
            let timeout = if exited.is_some() {
                Duration::ZERO
            } else if r.meter.sampling() {
                next_power
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(100))
            } else {
                Duration::from_millis(100)
            };
            self.events(s, r, timeout, panic_at)?;
            self.metrics
                .progress(s.driver.epoch(), s.driver.optimizer().state());
            // Once the command exited, every event it wrote is read first.
            if let Some(status) = exited.filter(|_| r.tail.caught_up()) {
                return Ok(Stopped {
                    status,
                    ending: Ending::Exited,
                    converged: false,
                });
            }
        }
    }

    /// Reads the command's events for up to `timeout` (less when it exits), feeds
    /// them to the driver, and sends each epoch's totals to the endpoint (or to the
    /// run across hosts). A bad event is counted, logged once, and skipped.
    fn events(
        &mut self,
        s: &mut Started,
        r: &mut Running,
        timeout: Duration,
        panic_at: Option<u64>,
    ) -> anyhow::Result<()> {
        let also = r.exit_fd.as_ref().map(std::os::fd::AsRawFd::as_raw_fd);
        for line in r.tail.next_lines(timeout, also)? {
            let event = match parse_line(&line) {
                Ok(e) => e,
                Err(e) => {
                    if r.bad_events == 0 {
                        log(format!("ignoring a bad event: {e}"));
                    }
                    r.bad_events += 1;
                    continue;
                }
            };
            let reading = if s.driver.needs_reading(&event) {
                let t = r.start.elapsed();
                Reading {
                    time_ms: t.as_millis() as u64,
                    energy_mj: r.meter.total_mj(self.gpus, t)?,
                }
            } else {
                Reading::default()
            };
            if matches!(event, Event::StepBegin) && panic_at == Some(s.driver.steps() + 1) {
                panic!("{PANIC_AT_STEP_ENV}={}: test panic", s.driver.steps() + 1);
            }
            let meter = &mut Some((&mut r.meter, r.start));
            let Some(totals) = s.driver.event(self.gpus, meter, event, reading)? else {
                continue;
            };
            let message = match &s.link {
                Some(link) => link.message(
                    RunAction::Report,
                    &HostReport {
                        host_rank: self.host_rank(),
                        time: totals.time,
                        energy: totals.energy,
                        metric: totals.metric,
                        current_epoch: totals.epoch,
                    },
                ),
                None => Outgoing::Report(TrainingResult {
                    job_id: s.job_id.clone(),
                    batch_size: s.trial.batch_size,
                    trial_number: s.trial.trial_number,
                    time: totals.time,
                    energy: totals.energy,
                    metric: totals.metric,
                    current_epoch: totals.epoch,
                }),
            };
            r.reporter.send(message);
        }
        Ok(())
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
            let _ = crate::run::child::stop_group(&mut r.child, self.timing.grace);
        }
        let ended = Instant::now();
        CHILD_GROUP.store(0, Ordering::SeqCst);
        let time = r.start.elapsed().as_secs_f64();
        let energy = r
            .meter
            .total_mj(self.gpus, r.start.elapsed())
            .map(|e| e as f64 / 1000.0)
            .unwrap_or(f64::NAN);
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
            "command ended ({ending:?}, exit code {code}) after {epoch} epoch(s): {time:.3} s, {energy:.3} J (energy_source {}){}; agent CPU {agent_cpu:.3} s ({:.2}% of a core), peak memory {}",
            combined(&r.sources),
            if converged { ", converged" } else { "" },
            if time > 0.0 { agent_cpu / time * 100.0 } else { 0.0 },
            crate::run::child::peak_memory().map_or("?".into(), |kib| format!("{:.1} MiB", kib as f64 / 1024.0))
        ));
        Ok(code)
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

    #[test]
    fn a_spool_is_replayed_unless_a_live_agent_other_than_this_one_owns_it() {
        let mine = spool_path(Path::new("/s"), "ag:1.x", 7);
        let name = mine.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, format!("spool-ag_1_x-7.{}.jsonl", std::process::id()));
        assert!(!spool_of_a_live_agent(name));
        // pid 1 lives; pid 0 never does; an older agent's name holds no pid (its
        // trial number is no pid).
        assert!(spool_of_a_live_agent("spool-j-7.1.jsonl"));
        assert!(!spool_of_a_live_agent("spool-j-7.0.jsonl"));
        assert!(!spool_of_a_live_agent("spool-j-1.jsonl"));
    }
}
