//! One group of the Alibaba trace: which group a request means, its overlapping
//! submissions simulated, and their totals.

use serde::{Deserialize, Serialize};

use super::error::SimError;
use super::simulator::{first_of, simulate_one_alibaba_group, HistoryEntry, SimConfig};
use super::trace::{first_group_of, group_jobs, parse_groups, GroupJob};
use super::workload::{JobTrace, Workload};

/// The submissions of one group of a group trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// The group's name.
    pub name: String,
    /// Its submissions, by start time.
    pub jobs: Vec<GroupJob>,
}

impl Group {
    /// The group of the trace `text` (the file `file`, as the user knows it)
    /// named `name`, or without a name the first group of `job`'s dataset.
    pub fn choose(
        file: &str,
        text: &str,
        name: Option<&str>,
        job: &JobTrace,
    ) -> Result<Group, SimError> {
        let rows = parse_groups(text)?;
        let dataset = &job.workload.dataset;
        let name = match name {
            Some(n) => n.to_string(),
            None => first_group_of(&rows, dataset)
                .ok_or_else(|| SimError::NoGroupOfDataset {
                    file: file.into(),
                    dataset: dataset.clone(),
                })?
                .to_string(),
        };
        let jobs = group_jobs(&rows, &name);
        if jobs.is_empty() {
            return Err(SimError::UnknownGroup {
                file: file.into(),
                group: name,
            });
        }
        Ok(Group { name, jobs })
    }

    /// Simulates the group's submissions of `job` (Zeus's policy).
    pub fn simulate(&self, job: &JobTrace, cfg: &SimConfig) -> Result<GroupReport, SimError> {
        let history = simulate_one_alibaba_group(job, &self.jobs, cfg)?;
        Ok(GroupReport {
            workload: job.workload.clone(),
            gpu: job.gpu.clone(),
            group: self.name.clone(),
            config: *cfg,
            submissions: self.jobs.len(),
            energy: history.iter().map(|h| h.energy).sum(),
            time: history.iter().map(|h| h.time).sum(),
            history,
        })
    }
}

/// The knobs of a group simulation from the lists a host was given: a group
/// runs once, at the first eta and the first seed, with `beta` as it is (the
/// knobs checked as a plain run's are).
pub fn group_config(etas: &[f64], seeds: &[u64], beta: f64) -> Result<SimConfig, SimError> {
    let cfg = SimConfig {
        eta_knob: first_of("eta", etas)?,
        beta_knob: beta,
        seed: first_of("seed", seeds)?,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// A group's simulation: every run and the totals.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GroupReport {
    /// The workload.
    pub workload: Workload,
    /// The GPU of the power trace.
    pub gpu: String,
    /// The group.
    pub group: String,
    /// The knobs.
    pub config: SimConfig,
    /// How many submissions the group has.
    pub submissions: usize,
    /// Every run, in order (`recurrence` is the submission, from 0).
    pub history: Vec<HistoryEntry>,
    /// Energy of every run (J).
    pub energy: f64,
    /// Time of every run (s).
    pub time: f64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::Catalog;

    const GROUPS: &str = "group,start_time,end_time,dataset,runtime_ratio\n\
        a,0,1000,cifar100,1.0\n\
        g,0,1000,synthetic,1.0\n\
        g,500,1500,synthetic,2.0\n";

    fn job() -> JobTrace {
        Catalog::synthetic()
            .job(&Default::default())
            .unwrap()
            .clone()
    }

    #[test]
    fn the_first_group_of_the_dataset_or_the_named_one() {
        let job = job();
        let g = Group::choose("g.csv", GROUPS, None, &job).unwrap();
        assert_eq!((g.name.as_str(), g.jobs.len()), ("g", 2));
        let a = Group::choose("g.csv", GROUPS, Some("a"), &job).unwrap();
        assert_eq!(a.jobs.len(), 1);
        let e = Group::choose("g.csv", GROUPS, Some("nope"), &job).unwrap_err();
        assert_eq!(e.to_string(), "g.csv has no group \"nope\"");
        let none = "group,start_time,end_time,dataset,runtime_ratio\na,0,1,cifar100,1\n";
        let e = Group::choose("g.csv", none, None, &job).unwrap_err();
        assert_eq!(e.to_string(), "g.csv has no group of dataset synthetic");
    }

    #[test]
    fn the_report_totals_its_runs() {
        let job = job();
        let g = Group::choose("g.csv", GROUPS, None, &job).unwrap();
        let cfg = SimConfig {
            eta_knob: 0.5,
            beta_knob: 2.0,
            seed: 1,
        };
        let r = g.simulate(&job, &cfg).unwrap();
        assert_eq!(r.submissions, 2);
        let energy: f64 = r.history.iter().map(|h| h.energy).sum();
        assert_eq!(r.energy, energy);
        assert!(r.energy > 0.0 && r.time > 0.0);
    }

    #[test]
    fn a_group_runs_at_the_first_eta_and_seed() {
        let cfg = group_config(&[0.25, 0.75], &[7, 8], f64::INFINITY).unwrap();
        assert_eq!((cfg.eta_knob, cfg.seed), (0.25, 7));
        assert!(cfg.beta_knob.is_infinite());
        let e = group_config(&[], &[1], 2.0).unwrap_err().to_string();
        assert_eq!(e, "eta: give at least one");
        let e = group_config(&[0.5], &[], 2.0).unwrap_err().to_string();
        assert_eq!(e, "seed: give at least one");
    }
}
