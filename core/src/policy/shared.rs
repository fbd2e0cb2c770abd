//! What jobs of one workload share: how many epochs a run of each batch size
//! needs to reach the target, with its spread (a property of the model, the data
//! and the optimizer, not of the GPU).
//!
//! A job names its workload (the spec's optional `workload` field); the runs of
//! every job of that workload teach [`SharedEpochs`], and a wattwise job reads the
//! others' ([`crate::policy::warm`]). The time and power of an epoch are the job's
//! own, from its own power profiles: they depend on the GPU and are never shared.
//!
//! Everything here is bounded: one [`EpochStats`] (four numbers) per batch size,
//! at most [`MAX_SHARED_SIZES`] batch sizes.

use serde::{Deserialize, Serialize};

/// Batch sizes one [`SharedEpochs`] keeps (the spec's limit on a job's batch sizes).
pub const MAX_SHARED_SIZES: usize = crate::spec::MAX_BATCH_SIZES;

/// Sufficient statistics of the epochs to target of one batch size's runs.
///
/// Only uncensored runs count: a run that reached the target (after `epochs`
/// epochs) or one that ran to its last epoch without reaching it. A run stopped
/// early (cost bound, probe) says only "more than k epochs" and is left out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochStats {
    /// Uncensored runs.
    pub runs: u64,
    /// Those that reached the target.
    pub successes: u64,
    /// Mean epochs to target of the successes.
    pub mean: f64,
    /// Sum of squared deviations of those epochs from their mean.
    pub m2: f64,
}

impl EpochStats {
    /// Adds a run: `epochs` to the target when it `reached`, else a failure.
    pub fn push(&mut self, epochs: f64, reached: bool) {
        self.runs = self.runs.saturating_add(1);
        if reached && epochs.is_finite() && epochs >= 0.0 && self.successes < self.runs {
            self.successes += 1;
            let delta = epochs - self.mean;
            self.mean += delta / self.successes as f64;
            self.m2 += delta * (epochs - self.mean);
        }
    }

    /// Both sets of runs together (Chan's parallel update).
    pub fn merge(&self, other: &EpochStats) -> EpochStats {
        let (a, b) = (self.successes as f64, other.successes as f64);
        let n = a + b;
        let (mean, m2) = if n == 0.0 {
            (0.0, 0.0)
        } else {
            let delta = other.mean - self.mean;
            (
                self.mean + delta * b / n,
                self.m2 + other.m2 + delta * delta * a * b / n,
            )
        };
        EpochStats {
            runs: self.runs.saturating_add(other.runs),
            successes: self.successes.saturating_add(other.successes),
            mean,
            m2,
        }
    }

    /// Fraction of the runs that reached the target, `None` before a run.
    pub fn reach_probability(&self) -> Option<f64> {
        (self.runs > 0).then(|| self.successes as f64 / self.runs as f64)
    }

    /// Standard deviation of one run's epochs to target, `None` under two successes.
    pub fn sd(&self) -> Option<f64> {
        (self.successes >= 2).then(|| libm::sqrt(self.m2.max(0.0) / (self.successes - 1) as f64))
    }

    /// Whether every number is finite and consistent (a stored document may be anything).
    pub fn is_sane(&self) -> bool {
        self.successes <= self.runs
            && self.mean.is_finite()
            && self.mean >= 0.0
            && self.m2.is_finite()
            && self.m2 >= 0.0
    }
}

/// Epochs to target per batch size, as the runs of one or more jobs taught them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SharedEpochs {
    /// `(batch size, statistics)`, ascending by batch size, at most [`MAX_SHARED_SIZES`].
    pub sizes: Vec<(u32, EpochStats)>,
}

impl SharedEpochs {
    /// The statistics of a batch size, if any run of it was counted.
    pub fn get(&self, batch_size: u32) -> Option<&EpochStats> {
        self.sizes
            .binary_search_by_key(&batch_size, |s| s.0)
            .ok()
            .map(|i| &self.sizes[i].1)
    }

    /// Counts a finished run. A batch size beyond [`MAX_SHARED_SIZES`] others is
    /// not kept (the largest ones go first).
    pub fn push(&mut self, batch_size: u32, epochs: f64, reached: bool) {
        let i = match self.sizes.binary_search_by_key(&batch_size, |s| s.0) {
            Ok(i) => i,
            Err(i) => {
                if self.sizes.len() >= MAX_SHARED_SIZES && i >= MAX_SHARED_SIZES {
                    return;
                }
                self.sizes.insert(i, (batch_size, EpochStats::default()));
                self.sizes.truncate(MAX_SHARED_SIZES);
                i
            }
        };
        self.sizes[i].1.push(epochs, reached);
    }

    /// Both together.
    pub fn merge(&self, other: &SharedEpochs) -> SharedEpochs {
        let mut out = self.clone();
        for &(bs, s) in &other.sizes {
            match out.sizes.binary_search_by_key(&bs, |x| x.0) {
                Ok(i) => out.sizes[i].1 = out.sizes[i].1.merge(&s),
                Err(i) => out.sizes.insert(i, (bs, s)),
            }
        }
        out.sizes.truncate(MAX_SHARED_SIZES);
        out
    }

    /// The same runs with every epoch count multiplied by `factor` (what a job
    /// would have learned if the others' runs had needed that many times the epochs).
    pub fn scaled(&self, factor: f64) -> SharedEpochs {
        SharedEpochs {
            sizes: self
                .sizes
                .iter()
                .map(|&(bs, s)| {
                    (
                        bs,
                        EpochStats {
                            mean: s.mean * factor,
                            m2: s.m2 * factor * factor,
                            ..s
                        },
                    )
                })
                .collect(),
        }
    }

    /// Whether the document is usable: sorted, bounded, every statistic sane.
    pub fn is_sane(&self) -> bool {
        self.sizes.len() <= MAX_SHARED_SIZES
            && self.sizes.windows(2).all(|w| w[0].0 < w[1].0)
            && self.sizes.iter().all(|(_, s)| s.is_sane())
    }

    /// Whether any run of any batch size reached the target.
    pub fn any_success(&self) -> bool {
        self.sizes.iter().any(|(_, s)| s.successes > 0)
    }
}

/// Jobs a [`WorkloadState`] keeps apart; when another job teaches, the one
/// that taught least recently is folded into [`WorkloadState::retired`].
pub const MAX_WORKLOAD_JOBS: usize = 8;

/// What one job of a workload taught: its uncensored runs, per batch size.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The job.
    pub job_id: String,
    /// When it was created, Unix ms (a job created again under the same id is
    /// another job).
    pub created_ms: i64,
    /// When it last taught, Unix ms.
    pub updated_ms: i64,
    /// Its runs, at most one entry per batch size of the job.
    pub epochs: SharedEpochs,
}

/// The shared document of one workload on one endpoint: what its jobs learned
/// about epochs to target per batch size. A host stores it beside the job
/// documents (the `Store` trait's workload rule), versioned like them.
///
/// Bounded: at most [`MAX_WORKLOAD_JOBS`] contributions of at most
/// [`MAX_SHARED_SIZES`] batch sizes each, and one folded [`SharedEpochs`] of the
/// jobs that left them. Each contribution is the job's cumulative knowledge, so
/// writing it again is idempotent and a write that was lost is made good by the
/// job's next one.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WorkloadState {
    /// The workload's name (the jobs' `workload`).
    pub workload: String,
    /// The jobs that taught most recently, least recent first.
    pub jobs: Vec<Contribution>,
    /// The runs of jobs that left `jobs`, folded together.
    #[serde(default)]
    pub retired: SharedEpochs,
    /// How many jobs were folded into `retired`.
    #[serde(default)]
    pub retired_jobs: u64,
}

/// Uncensored runs counted in `e`, over every batch size.
pub fn total_runs(e: &SharedEpochs) -> u64 {
    e.sizes
        .iter()
        .fold(0u64, |n, (_, s)| n.saturating_add(s.runs))
}

impl WorkloadState {
    /// An empty document for `workload`.
    pub fn new(workload: &str) -> WorkloadState {
        WorkloadState {
            workload: workload.to_string(),
            ..WorkloadState::default()
        }
    }

    /// What every job but `job_id` taught (the folded jobs included), and the ids
    /// of those jobs still kept apart, most recent first.
    pub fn others(&self, job_id: &str) -> (SharedEpochs, Vec<String>) {
        let mut shared = self.retired.clone();
        let mut from = Vec::new();
        for c in self.jobs.iter().rev().filter(|c| c.job_id != job_id) {
            shared = shared.merge(&c.epochs);
            from.push(c.job_id.clone());
        }
        (shared, from)
    }

    /// Takes `taught`, the cumulative knowledge of job `job_id` created at
    /// `created_ms`, at `now_ms`. Answers whether the document changed: not when
    /// it already holds as many of that job's runs (a repeated or late write), nor
    /// for an older job of that id, nor for knowledge that is not sane.
    pub fn absorb(
        &mut self,
        job_id: &str,
        created_ms: i64,
        now_ms: i64,
        taught: &SharedEpochs,
    ) -> bool {
        if !taught.is_sane() || total_runs(taught) == 0 {
            return false;
        }
        let fresh = Contribution {
            job_id: job_id.to_string(),
            created_ms,
            updated_ms: now_ms,
            epochs: taught.clone(),
        };
        match self.jobs.iter().position(|c| c.job_id == job_id) {
            Some(i) => {
                let old = &self.jobs[i];
                if old.created_ms > created_ms
                    || (old.created_ms == created_ms
                        && total_runs(&old.epochs) >= total_runs(taught))
                {
                    return false;
                }
                let old = self.jobs.remove(i);
                if old.created_ms != created_ms {
                    self.retire(old);
                }
            }
            None => {
                while self.jobs.len() >= MAX_WORKLOAD_JOBS {
                    let oldest = self.jobs.remove(0);
                    self.retire(oldest);
                }
            }
        }
        self.jobs.push(fresh);
        true
    }

    fn retire(&mut self, c: Contribution) {
        self.retired = self.retired.merge(&c.epochs);
        self.retired_jobs = self.retired_jobs.saturating_add(1);
    }

    /// Whether the document is usable: bounded, every part sane.
    pub fn is_sane(&self) -> bool {
        self.jobs.len() <= MAX_WORKLOAD_JOBS
            && self.retired.is_sane()
            && self.jobs.iter().all(|c| c.epochs.is_sane())
    }
}

/// The warm start's part of a wattwise job document.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WarmState {
    /// What the other jobs of the workload taught, restricted to this job's batch sizes.
    pub shared: SharedEpochs,
    /// This job's own uncensored runs, per batch size (in the job's order).
    #[serde(default)]
    pub own: Vec<EpochStats>,
    /// The job's runs disagreed with `shared`: it is ignored from then on.
    #[serde(default)]
    pub distrust: bool,
    /// Batch sizes probed (a first run stopped after its first epoch).
    #[serde(default)]
    pub probed: Vec<u32>,
    /// The cost of those probes.
    #[serde(default)]
    pub probe_cost: f64,
    /// Batch sizes whose run was stopped early under the warm start without
    /// reaching the target (kept out of the arms' statistics, so a job that drops
    /// the shared knowledge does not hold against a batch size a wrong prediction
    /// cut short).
    #[serde(default)]
    pub stopped: Vec<u32>,
    /// Their cost predicted from the profiles, one epoch each (in profile units):
    /// `probe_cost / probe_units` converts predictions to costs before any run
    /// reached the target (an overestimate: a probe's epoch also profiles).
    #[serde(default)]
    pub probe_units: f64,
    /// The jobs of the workload the shared knowledge came from, most recent first
    /// (an endpoint's jobs; empty in the simulator).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<String>,
}

impl WarmState {
    /// A warm start from `shared`, keeping only the job's batch sizes (so its
    /// size is bounded by the job's).
    pub fn new(shared: &SharedEpochs, batch_sizes: &[u32]) -> WarmState {
        WarmState {
            shared: SharedEpochs {
                sizes: shared
                    .sizes
                    .iter()
                    .filter(|(bs, s)| batch_sizes.binary_search(bs).is_ok() && s.is_sane())
                    .copied()
                    .collect(),
            },
            ..WarmState::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_equals_pushing_everything_into_one() {
        let runs = [
            (4.0, true),
            (6.0, true),
            (0.0, false),
            (5.0, true),
            (9.0, true),
        ];
        let (mut a, mut b, mut all) = (
            SharedEpochs::default(),
            SharedEpochs::default(),
            SharedEpochs::default(),
        );
        for (k, &(e, r)) in runs.iter().enumerate() {
            let bs = if k % 2 == 0 { 32 } else { 64 };
            all.push(bs, e, r);
            all.push(16, e, r);
            if k < 2 {
                a.push(bs, e, r);
                a.push(16, e, r);
            } else {
                b.push(bs, e, r);
                b.push(16, e, r);
            }
        }
        let m = a.merge(&b);
        for bs in [16, 32, 64] {
            let (x, y) = (m.get(bs).unwrap(), all.get(bs).unwrap());
            assert_eq!((x.runs, x.successes), (y.runs, y.successes));
            assert!((x.mean - y.mean).abs() < 1e-12 && (x.m2 - y.m2).abs() < 1e-9);
        }
        let s16 = m.get(16).unwrap();
        assert_eq!((s16.runs, s16.successes), (5, 4));
        assert_eq!(s16.mean, 6.0);
        assert_eq!(s16.reach_probability(), Some(0.8));
        assert!(m.is_sane() && m.any_success());
        assert_eq!(m.scaled(2.0).get(16).unwrap().mean, 12.0);
    }

    #[test]
    fn a_workload_keeps_each_jobs_latest_knowledge_bounded_and_apart() {
        let taught = |runs: u32| {
            let mut t = SharedEpochs::default();
            for _ in 0..runs {
                t.push(32, 5.0, true);
            }
            t
        };
        let mut w = WorkloadState::new("wl");
        assert!(w.absorb("a", 1, 10, &taught(2)));
        // The same knowledge again, or older, changes nothing.
        assert!(!w.absorb("a", 1, 11, &taught(2)));
        assert!(!w.absorb("a", 1, 11, &taught(1)));
        assert!(!w.absorb("a", 1, 11, &SharedEpochs::default()));
        assert!(w.absorb("a", 1, 12, &taught(3)));
        assert!(w.absorb("b", 2, 13, &taught(1)));
        let (shared, from) = w.others("b");
        assert_eq!(
            (shared.get(32).unwrap().runs, from),
            (3, vec!["a".to_string()])
        );
        let (shared, from) = w.others("c");
        assert_eq!(shared.get(32).unwrap().runs, 4);
        assert_eq!(from, ["b", "a"]);
        // A job created again under an old id is another job: the old one's runs stay.
        assert!(!w.absorb("a", 0, 14, &taught(9)));
        assert!(w.absorb("a", 5, 14, &taught(1)));
        assert_eq!((w.retired.get(32).unwrap().runs, w.retired_jobs), (3, 1));
        // Bounded: the jobs that taught least recently are folded together.
        for k in 0..2 * MAX_WORKLOAD_JOBS {
            assert!(w.absorb(&format!("j{k}"), 1, 20 + k as i64, &taught(1)));
        }
        assert_eq!(w.jobs.len(), MAX_WORKLOAD_JOBS);
        assert!(w.is_sane());
        let (all, _) = w.others("none");
        assert_eq!(total_runs(&all), 3 + 1 + 1 + 2 * MAX_WORKLOAD_JOBS as u64);
    }

    #[test]
    fn it_stays_bounded() {
        let mut s = SharedEpochs::default();
        for bs in (1..=2 * MAX_SHARED_SIZES as u32).rev() {
            s.push(bs, 3.0, true);
        }
        assert_eq!(s.sizes.len(), MAX_SHARED_SIZES);
        assert!(s.is_sane());
        s.push(u32::MAX, 1.0, true);
        assert!(s.get(u32::MAX).is_none());
    }
}
