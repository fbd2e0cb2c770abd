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

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

use crate::client::Endpoint;
use crate::log::log;
use crate::nvml::energy_meter::DEFAULT_POWER_INTERVAL_S;
use crate::nvml::gpu::NvmlGpus;
use crate::nvml::limits::state_dir;
use crate::nvml::ownership::Ownership;
use crate::run::job_file::JobFile;
use crate::run::session::{restore_limits, stop_command_after_panic, Session, Timing};

/// How long one request waits for its answer: a signal that comes while the
/// agent waits for the endpoint before the command starts ends it within this.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

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
    let metrics = crate::exporter::start(args.metrics.as_deref(), Some(&indices))?;
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
        stop_command_after_panic(grace);
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
