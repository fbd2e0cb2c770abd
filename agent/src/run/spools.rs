//! The reporter's spools in the state directory: one per agent and trial
//! (`spool-<job>-<trial>.<pid>.jsonl`), and the replay, before a run starts, of
//! what earlier agents left undelivered.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::client::{Endpoint, Reporter};
use crate::log::log;

/// The spool of this agent's trial `trial_number` of `job_id` in `dir`,
/// `spool-<job>-<trial>.<pid>.jsonl`: the agent's pid tells another agent to
/// replay it only once this one is gone.
pub fn spool_path(dir: &Path, job_id: &str, trial_number: u64) -> PathBuf {
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
pub fn replay_leftover_spools(endpoint: &Endpoint, dir: &std::path::Path, patience: Duration) {
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
