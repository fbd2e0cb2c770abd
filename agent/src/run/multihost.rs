//! A run across hosts, as one host's agent sees it: who it is in the run (flags,
//! Slurm's or torchrun's environment), and the link that names its messages to
//! the run (sent through the reporter's spool) and polls the run's state. Every
//! decision (joining, combining, the power limit, timing out a host) is the
//! endpoint's core's; this module only forwards.

use std::sync::mpsc::{RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use wattwise_core::runs::{HostCall, RunView};

use crate::client::{Endpoint, Outgoing, RunAction};
use crate::log::log;

/// Who this host is in a run across hosts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostIdentity {
    /// The run's id, the same on every host.
    pub run_id: String,
    /// Hosts in the run.
    pub hosts: u32,
    /// This host's rank, 0 to `hosts - 1`.
    pub rank: u32,
    /// Where these came from, for the log.
    pub source: &'static str,
}

/// The flags that name the run (each overrides the environment).
#[derive(Clone, Debug, Default)]
pub struct IdentityFlags {
    /// `--run-id`.
    pub run_id: Option<String>,
    /// `--hosts`.
    pub hosts: Option<u32>,
    /// `--host-rank`.
    pub host_rank: Option<u32>,
}

fn number(env: &dyn Fn(&str) -> Option<String>, var: &str) -> anyhow::Result<Option<u32>> {
    match env(var) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("{var}={v:?}: must be a whole number")),
    }
}

/// A run as the environment names it: run id, hosts and rank (each if set).
type Named = (String, Option<u32>, Option<u32>);

/// A run named by three variables, `[run id, hosts, rank]`: `None` without the run id.
fn named_by(
    env: &dyn Fn(&str) -> Option<String>,
    [id, hosts, rank]: [&str; 3],
) -> anyhow::Result<Option<Named>> {
    let Some(id) = env(id) else {
        return Ok(None);
    };
    Ok(Some((id, number(env, hosts)?, number(env, rank)?)))
}

/// The sources whose run id is torchrun's `--rdzv_id`, which defaults to `none`.
const TORCHRUN_SOURCES: [&str; 2] = [TORCHRUN_WORKER, TORCHRUN_SETTINGS];
const TORCHRUN_WORKER: &str = "torchrun worker";
const TORCHRUN_SETTINGS: &str = "torchrun settings";

/// The host's identity in a run, from the flags, else from the environment:
/// - Slurm (`srun`, one task per node): `SLURM_JOB_ID` and `SLURM_STEP_ID` (run id
///   `slurm-<job>.<step>`), `SLURM_NNODES` else `SLURM_JOB_NUM_NODES` (hosts),
///   `SLURM_NODEID` (rank);
/// - a torchrun worker (the agent started by torchrun): `TORCHELASTIC_RUN_ID`,
///   `GROUP_WORLD_SIZE` (hosts), `GROUP_RANK` (rank);
/// - torchrun's own settings, when the agent wraps torchrun configured by its
///   environment: `PET_RDZV_ID`, `PET_NNODES` (a fixed count), `PET_NODE_RANK`.
///
/// `None` when the run spans one host (or nothing says otherwise). Refused: 0
/// hosts, and torchrun's default run id `none` (the same for every run of a job,
/// so two runs would join one trial) unless `--run-id` names the run.
pub fn resolve(
    flags: &IdentityFlags,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Option<HostIdentity>> {
    type Source = (
        &'static str,
        fn(&dyn Fn(&str) -> Option<String>) -> anyhow::Result<Option<Named>>,
    );
    let sources: [Source; 3] = [
        ("Slurm", |env| {
            let Some(job) = env("SLURM_JOB_ID") else {
                return Ok(None);
            };
            let step = env("SLURM_STEP_ID").unwrap_or_else(|| "0".into());
            let hosts = match number(env, "SLURM_NNODES")? {
                Some(n) => Some(n),
                None => number(env, "SLURM_JOB_NUM_NODES")?,
            };
            Ok(Some((
                format!("slurm-{}.{}", job.trim(), step.trim()),
                hosts,
                number(env, "SLURM_NODEID")?,
            )))
        }),
        (TORCHRUN_WORKER, |env| {
            named_by(
                env,
                ["TORCHELASTIC_RUN_ID", "GROUP_WORLD_SIZE", "GROUP_RANK"],
            )
        }),
        (TORCHRUN_SETTINGS, |env| {
            named_by(env, ["PET_RDZV_ID", "PET_NNODES", "PET_NODE_RANK"])
        }),
    ];
    let mut found = None;
    for (name, read) in sources {
        if let Some(v) = read(env)? {
            found = Some((name, v));
            break;
        }
    }
    let (source, (env_id, env_hosts, env_rank)) = match found {
        Some((name, v)) => (name, v),
        None => ("flags", (String::new(), None, None)),
    };
    if flags.hosts == Some(0) || (flags.hosts.is_none() && env_hosts == Some(0)) {
        anyhow::bail!(
            "--hosts: 0 hosts (from {}): a run spans at least 1 host",
            if flags.hosts.is_some() {
                "the flag"
            } else {
                source
            }
        );
    }
    let hosts = flags.hosts.or(env_hosts).unwrap_or(1);
    if hosts <= 1 {
        return Ok(None);
    }
    let source = if flags.run_id.is_some() && flags.hosts.is_some() && flags.host_rank.is_some() {
        "flags"
    } else {
        source
    };
    let run_id = match &flags.run_id {
        Some(id) => id.clone(),
        None if TORCHRUN_SOURCES.contains(&source)
            && env_id.trim().eq_ignore_ascii_case("none") =>
        {
            anyhow::bail!(
                "--run-id: torchrun names this run {:?}, its default --rdzv_id, which is the same for every run of the job, so two runs would join one trial; give torchrun a distinct --rdzv_id per run (e.g. the scheduler's job id), or give wattwise --run-id",
                env_id.trim()
            )
        }
        None => env_id,
    };
    if run_id.trim().is_empty() {
        anyhow::bail!(
            "--run-id: a run across {hosts} hosts needs a run id (the same on every host)"
        );
    }
    let Some(rank) = flags.host_rank.or(env_rank) else {
        anyhow::bail!(
            "--host-rank: a run across {hosts} hosts needs this host's rank (0 to {})",
            hosts - 1
        );
    };
    if rank >= hosts {
        anyhow::bail!("--host-rank: {rank} is not below the host count {hosts}");
    }
    Ok(Some(HostIdentity {
        run_id: run_id.trim().to_string(),
        hosts,
        rank,
        source,
    }))
}

/// This host's name, for the endpoint's messages (its first 32 characters).
pub fn host_name() -> Option<String> {
    shown_host_name(&std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?)
}

/// The part of a machine's host name the endpoint takes: the characters the core
/// accepts in a host name (no control, bidirectional or invisible ones), at most
/// as many as it accepts; `None` when nothing is left.
fn shown_host_name(raw: &str) -> Option<String> {
    let name: String = raw
        .trim()
        .chars()
        .filter(|&c| wattwise_core::runs::host_name_char(c))
        .take(wattwise_core::runs::MAX_HOST_NAME)
        .collect();
    (!name.is_empty()).then_some(name)
}

/// How often a host polls its run for a host timeout: often enough that a live
/// host never looks silent, at most every 5 s.
pub fn poll_interval(host_timeout: Duration) -> Duration {
    (host_timeout / 5).clamp(Duration::from_millis(200), Duration::from_secs(5))
}

/// One host's link to its run: its messages to the run (profile, epoch totals,
/// `done`) go through the reporter's spool ([`RunLink::message`]); the link polls
/// the run between them (`heartbeat`, every poll interval, in its own thread) and
/// keeps the latest state either brought.
pub struct RunLink {
    job_id: String,
    run_id: String,
    rank: u32,
    latest: Arc<Mutex<Option<RunView>>>,
    /// Dropping it ends the polls.
    _stop: Sender<()>,
}

impl RunLink {
    /// Starts the link of host `rank` to run `run_id` of job `job_id`, polling
    /// every `poll`.
    pub fn start(
        endpoint: Endpoint,
        job_id: String,
        run_id: String,
        rank: u32,
        poll: Duration,
    ) -> RunLink {
        let (stop, stopped) = std::sync::mpsc::channel();
        let latest = Arc::new(Mutex::new(None));
        let link = RunLink {
            job_id,
            run_id,
            rank,
            latest: latest.clone(),
            _stop: stop,
        };
        let (job_id, run_id) = (link.job_id.clone(), link.run_id.clone());
        let me = HostCall {
            host_rank: i64::from(rank),
        };
        std::thread::spawn(move || {
            // Each poll is one request; a failed one is tried again at the next.
            while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(poll) {
                match endpoint.heartbeat(&job_id, &run_id, &me) {
                    Ok(view) => set(&latest, view),
                    Err(e) if e.retryable() => {}
                    Err(e) => log(format!("run {run_id}: heartbeat refused: {e}")),
                }
            }
        });
        link
    }

    /// This host's message `action` to the run, for the reporter's spool.
    pub fn message(&self, action: RunAction, body: &impl Serialize) -> Outgoing {
        Outgoing::Run {
            job_id: self.job_id.clone(),
            run_id: self.run_id.clone(),
            action,
            body: serde_json::to_value(body).unwrap_or_default(),
        }
    }

    /// This host's `done`: its command ended.
    pub fn done(&self) -> Outgoing {
        self.message(
            RunAction::Done,
            &HostCall {
                host_rank: i64::from(self.rank),
            },
        )
    }

    /// Keeps `view`, the endpoint's answer to one of this host's messages.
    pub fn observe(&self, view: RunView) {
        set(&self.latest, view);
    }

    /// The run's state as last answered.
    pub fn latest(&self) -> Option<RunView> {
        self.latest.lock().ok().and_then(|v| v.clone())
    }
}

fn set(latest: &Mutex<Option<RunView>>, view: RunView) {
    if let Ok(mut l) = latest.lock() {
        *l = Some(view);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn a_host_name_keeps_only_what_the_endpoint_accepts() {
        // A bidi override or a zero-width space in a machine's name would get the
        // run's join refused (422 naming host_name): they are left out instead.
        assert_eq!(
            shown_host_name("node\u{202E}7\u{200B}\n").as_deref(),
            Some("node7")
        );
        assert_eq!(shown_host_name(" \u{202E}\n"), None);
        let long = "h".repeat(wattwise_core::runs::MAX_HOST_NAME + 5);
        assert_eq!(
            shown_host_name(&long).map(|n| n.chars().count()),
            Some(wattwise_core::runs::MAX_HOST_NAME)
        );
    }

    /// An environment of `NAME=value` words.
    fn env_of(vars: &str) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .split_whitespace()
            .filter_map(|w| w.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// What `resolve` makes of `flags` and the environment `vars`: the identity as
    /// (run id, hosts, rank, source), or the error's text.
    fn identity(
        flags: &IdentityFlags,
        vars: &str,
    ) -> Result<Option<(String, u32, u32, &'static str)>, String> {
        resolve(flags, &env_of(vars))
            .map(|id| id.map(|id| (id.run_id, id.hosts, id.rank, id.source)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn names_the_run_from_slurm_or_torchrun() {
        let cases = [
            (
                "SLURM_JOB_ID=4242 SLURM_STEP_ID=1 SLURM_NNODES=4 SLURM_NODEID=3",
                Some(("slurm-4242.1", 4, 3, "Slurm")),
            ),
            (
                "SLURM_JOB_ID=7 SLURM_JOB_NUM_NODES=2 SLURM_NODEID=0",
                Some(("slurm-7.0", 2, 0, "Slurm")),
            ),
            // One node: an ordinary single-host run.
            ("SLURM_JOB_ID=7 SLURM_NNODES=1 SLURM_NODEID=0", None),
            (
                "TORCHELASTIC_RUN_ID=abc GROUP_WORLD_SIZE=3 GROUP_RANK=2",
                Some(("abc", 3, 2, "torchrun worker")),
            ),
            (
                "PET_RDZV_ID=r9 PET_NNODES=2 PET_NODE_RANK=1",
                Some(("r9", 2, 1, "torchrun settings")),
            ),
            ("", None),
        ];
        for (vars, want) in cases {
            let got = identity(&IdentityFlags::default(), vars).unwrap();
            let want =
                want.map(|(run, hosts, rank, source)| (run.to_string(), hosts, rank, source));
            assert_eq!(got, want, "{vars}");
        }
    }

    #[test]
    fn flags_override_and_bad_values_are_clear() {
        let slurm = "SLURM_JOB_ID=1 SLURM_NNODES=4 SLURM_NODEID=3";
        let flags = IdentityFlags {
            run_id: Some("mine".into()),
            hosts: Some(2),
            host_rank: Some(1),
        };
        assert_eq!(
            identity(&flags, slurm).unwrap(),
            Some(("mine".to_string(), 2, 1, "flags"))
        );
        let only_hosts = IdentityFlags {
            hosts: Some(2),
            ..Default::default()
        };
        let no_rank = IdentityFlags {
            hosts: Some(2),
            run_id: Some("r".into()),
            ..Default::default()
        };
        let bad_rank = IdentityFlags {
            host_rank: Some(2),
            ..no_rank.clone()
        };
        let none = IdentityFlags::default();
        let cases = [
            (&only_hosts, "", "--run-id"),
            (&no_rank, "", "--host-rank"),
            (&bad_rank, "", "--host-rank"),
            (
                &none,
                "SLURM_JOB_ID=1 SLURM_NNODES=x SLURM_NODEID=0",
                "SLURM_NNODES",
            ),
            // An elastic range is not a host count.
            (
                &none,
                "PET_RDZV_ID=r9 PET_NNODES=1:4 PET_NODE_RANK=1",
                "PET_NNODES",
            ),
        ];
        for (flags, vars, names) in cases {
            let err = identity(flags, vars).unwrap_err();
            assert!(err.contains(names), "{flags:?} {vars}: {err}");
        }
    }

    #[test]
    fn zero_hosts_are_refused_not_run_as_one() {
        let zero = IdentityFlags {
            hosts: Some(0),
            ..Default::default()
        };
        for (flags, vars) in [
            (&zero, ""),
            (&zero, "SLURM_JOB_ID=1 SLURM_NNODES=2 SLURM_NODEID=0"),
            (
                &IdentityFlags::default(),
                "SLURM_JOB_ID=1 SLURM_NNODES=0 SLURM_NODEID=0",
            ),
        ] {
            let err = identity(flags, vars).unwrap_err();
            assert!(err.starts_with("--hosts: 0 hosts"), "{vars}: {err}");
        }
    }

    #[test]
    fn torchruns_default_run_id_none_is_refused_unless_the_flag_names_the_run() {
        for vars in [
            "TORCHELASTIC_RUN_ID=none GROUP_WORLD_SIZE=2 GROUP_RANK=1",
            "PET_RDZV_ID=None PET_NNODES=2 PET_NODE_RANK=0",
        ] {
            let err = identity(&IdentityFlags::default(), vars).unwrap_err();
            assert!(
                err.contains("--rdzv_id") && err.contains("--run-id"),
                "{vars}: {err}"
            );
        }
        let flagged = IdentityFlags {
            run_id: Some("job-7".into()),
            ..Default::default()
        };
        assert_eq!(
            identity(
                &flagged,
                "TORCHELASTIC_RUN_ID=none GROUP_WORLD_SIZE=2 GROUP_RANK=1"
            )
            .unwrap(),
            Some(("job-7".to_string(), 2, 1, "torchrun worker"))
        );
        // One node: an ordinary single-host run, whatever its run id.
        assert_eq!(
            identity(
                &IdentityFlags::default(),
                "TORCHELASTIC_RUN_ID=none GROUP_WORLD_SIZE=1 GROUP_RANK=0"
            )
            .unwrap(),
            None
        );
    }

    #[test]
    fn polling_is_bounded() {
        assert_eq!(
            poll_interval(Duration::from_secs(60)),
            Duration::from_secs(5)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(3)),
            Duration::from_millis(600)
        );
        assert_eq!(
            poll_interval(Duration::from_secs(0)),
            Duration::from_millis(200)
        );
    }
}
