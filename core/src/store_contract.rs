//! The store contract, as one suite every [`Store`] runs.
//!
//! The rules are written on the [`Store`] trait; [`check`] exercises each of
//! them against a live store and returns the ones it broke. The memory store runs
//! it in the core's tests, SQLite and DynamoDB (on moto) in the lambda crate's,
//! and the Worker's KV and Durable Object stores from inside workerd (the wasm
//! crate's `store-contract` feature adds a route that runs it).
//!
//! Built with the core's `store-contract` feature (and in the core's own tests).

use crate::api::{self, Change, Ctx};
use crate::job::JobState;
use crate::policy::shared::{SharedEpochs, WorkloadState};
use crate::service::{Saved, Store, Stored, StoredWorkload, Write};
use crate::spec::JobSpec;
use crate::trial::{RunResult, Trial, TrialStatus, TrialType};
use crate::wire::TrainingResult;

/// A rule a store broke: which check, and what it saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The check's name.
    pub check: &'static str,
    /// What was expected and what the store did.
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.check, self.detail)
    }
}

/// The names of the checks [`check`] runs, in order.
pub const CHECKS: [&str; 10] = [
    "unknown job",
    "create once",
    "replace by version",
    "archive is append-only and idempotent",
    "a conflicted write writes nothing",
    "delete by version",
    "a job created again starts with no trials",
    "documents round-trip",
    "the job list is newest first and leaves deleted jobs out",
    "a workload's document is versioned like a job's and kept apart from jobs",
];

/// A job document with trials in it (a registration, three runs and their
/// reports), made through the optimizer's own calls.
pub fn sample_state(job_id: &str, seed: u64) -> Result<JobState, String> {
    let mut spec = JobSpec::new(job_id, vec![8, 16, 32], 16, 300.0, 1, "A100");
    spec.job_id = Some(job_id.to_string());
    spec.mab_seed = Some(seed as i64);
    let ctx = |now_ms| Ctx {
        now_ms,
        entropy: seed,
    };
    let put = |change: Change, state: &mut JobState| {
        if let Change::Put(s) = change {
            *state = *s;
        }
    };
    let out = api::register_job(&spec, None, ctx(1_000)).map_err(|e| format!("register: {e}"))?;
    let Change::Put(state) = out.change else {
        return Err("register wrote no document".into());
    };
    let mut state = *state;
    for now in [2_000, 3_000, 4_000] {
        let out =
            api::predict(job_id, Some(&state), ctx(now)).map_err(|e| format!("predict: {e}"))?;
        let trial = out.body;
        put(out.change, &mut state);
        let result = TrainingResult {
            job_id: job_id.to_string(),
            batch_size: trial.batch_size,
            trial_number: trial.trial_number,
            time: 10.0,
            energy: 1_000.0,
            metric: 0.1,
            current_epoch: 1,
            energy_uncertainty_j: None,
        };
        let out = api::report(&result, Some(&state), ctx(now + 500))
            .map_err(|e| format!("report: {e}"))?;
        put(out.change, &mut state);
    }
    Ok(state)
}

/// A finished trial numbered `n`, as an archive holds it.
pub fn sample_trial(n: u64) -> Trial {
    Trial {
        trial_number: n,
        batch_size: 16,
        kind: TrialType::Mab,
        start_ms: n as i64 * 1_000,
        status: TrialStatus::Succeeded {
            end_ms: n as i64 * 1_000 + 500,
            result: RunResult {
                time: n as f64,
                energy: 2.0 * n as f64,
                converged: true,
                energy_uncertainty_j: None,
            },
        },
    }
}

/// Runs every check against `store`, on jobs whose ids start with `prefix` (use
/// a fresh prefix per run: the checks create and delete jobs). Returns the
/// violations; empty when the store keeps the contract.
pub async fn check<S: Store>(store: &S, prefix: &str) -> Vec<Violation> {
    let mut out = Vec::new();
    for (i, name) in CHECKS.iter().enumerate() {
        let job = format!("{prefix}-{i}");
        if let Err(detail) = run_one(store, i, &job).await {
            out.push(Violation {
                check: name,
                detail,
            });
        }
    }
    out
}

/// Fails with `what` unless `ok`.
fn want(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(what())
    }
}

async fn archived<S: Store>(store: &S, job: &str) -> Result<Vec<u64>, String> {
    let mut numbers: Vec<u64> = store
        .archived_trials(job)
        .await
        .map_err(|e| format!("archived_trials: {e}"))?
        .iter()
        .map(|t| t.trial_number)
        .collect();
    numbers.sort_unstable();
    Ok(numbers)
}

async fn loaded<S: Store>(store: &S, job: &str) -> Result<Option<Stored>, String> {
    store.load(job).await.map_err(|e| format!("load: {e}"))
}

async fn save<S: Store>(
    store: &S,
    job: &str,
    state: &JobState,
    expected: Option<u64>,
    archive: &[Trial],
) -> Result<Saved, String> {
    store
        .save(job, Write::new(state, expected, archive))
        .await
        .map_err(|e| format!("save: {e}"))
}

/// Fails unless a write or delete answered `answer` (`what` names it).
fn answers(got: Saved, answer: Saved, what: &str) -> Result<(), String> {
    want(got == answer, || format!("{what} answered {got:?}"))
}

async fn delete<S: Store>(store: &S, job: &str, version: u64) -> Result<Saved, String> {
    store
        .delete(job, version)
        .await
        .map_err(|e| format!("delete: {e}"))
}

/// Fails unless the job reads back at `version` holding `state`, as it stood
/// before a refused `what`.
async fn unchanged<S: Store>(
    store: &S,
    job: &str,
    version: u64,
    state: JobState,
    what: &str,
) -> Result<(), String> {
    let got = loaded(store, job).await?;
    want(
        got.map(|s| (s.version, s.state)) == Some((version, state)),
        || format!("a refused {what} changed the document"),
    )
}

async fn version<S: Store>(store: &S, job: &str) -> Result<Option<u64>, String> {
    store
        .version(job)
        .await
        .map_err(|e| format!("version: {e}"))
}

async fn archived_trial<S: Store>(store: &S, job: &str, n: u64) -> Result<Option<Trial>, String> {
    store
        .archived_trial(job, n)
        .await
        .map_err(|e| format!("archived_trial: {e}"))
}

async fn run_one<S: Store>(store: &S, check: usize, job: &str) -> Result<(), String> {
    let a = sample_state(job, 1)?;
    let b = sample_state(job, 2)?;
    match check {
        0 => {
            want(loaded(store, job).await?.is_none(), || {
                "load of an unknown job is not None".into()
            })?;
            let v = version(store, job).await?;
            want(v.is_none(), || {
                format!("version of an unknown job is {v:?}")
            })?;
            want(archived(store, job).await?.is_empty(), || {
                "an unknown job has archived trials".into()
            })?;
            let t = archived_trial(store, job, 1).await?;
            want(t.is_none(), || "an unknown job has archived trial 1".into())?;
            let d = delete(store, job, 1).await?;
            answers(d, Saved::Conflict, "delete of an unknown job")
        }
        1 => {
            let s = save(store, job, &a, None, &[]).await?;
            answers(s, Saved::Ok, "create")?;
            let got = loaded(store, job).await?;
            want(got.as_ref().map(|s| s.version) == Some(1), || {
                format!(
                    "a created job's version is {:?}, not 1",
                    got.as_ref().map(|s| s.version)
                )
            })?;
            want(got.as_ref().map(|s| &s.state) == Some(&a), || {
                "the created document does not read back equal".into()
            })?;
            let v = version(store, job).await?;
            want(v == Some(1), || {
                format!("version() says {v:?}, load says 1")
            })?;
            let s = save(store, job, &b, None, &[]).await?;
            answers(s, Saved::Conflict, "a second create")?;
            unchanged(store, job, 1, a, "create").await
        }
        2 => {
            save(store, job, &a, None, &[]).await?;
            let s = save(store, job, &b, Some(1), &[]).await?;
            answers(s, Saved::Ok, "a replace at the stored version")?;
            let got = loaded(store, job).await?;
            want(got.as_ref().map(|s| s.version) == Some(2), || {
                "a replace did not add one to the version".into()
            })?;
            want(got.map(|s| s.state) == Some(b.clone()), || {
                "the replaced document does not read back".into()
            })?;
            let s = save(store, job, &a, Some(1), &[]).await?;
            answers(s, Saved::Conflict, "a replace at a stale version")?;
            let s = save(store, job, &a, Some(7), &[]).await?;
            answers(s, Saved::Conflict, "a replace at a future version")?;
            unchanged(store, job, 2, b, "replace").await
        }
        3 => {
            save(store, job, &a, None, &[]).await?;
            let s = save(store, job, &a, Some(1), &[sample_trial(1), sample_trial(2)]).await?;
            answers(s, Saved::Ok, "a write with an archive")?;
            let s = save(store, job, &a, Some(2), &[sample_trial(2), sample_trial(3)]).await?;
            answers(s, Saved::Ok, "a write with an archive")?;
            let numbers = archived(store, job).await?;
            want(numbers == [1, 2, 3], || {
                format!("archived trials are {numbers:?}, not [1, 2, 3] once each")
            })?;
            let t = archived_trial(store, job, 3).await?;
            want(t == Some(sample_trial(3)), || {
                format!("archived_trial(3) is {t:?}")
            })?;
            let t = archived_trial(store, job, 4).await?;
            want(t.is_none(), || {
                "archived_trial(4) found a trial never archived".into()
            })?;
            // A store that pages its archive pages it in trial order.
            for (from, limit, page) in [(0, 10, &[1, 2, 3][..]), (2, 1, &[2]), (4, 10, &[])] {
                let got = store
                    .archived_trials_from(job, from, limit)
                    .await
                    .map_err(|e| format!("archived_trials_from: {e}"))?
                    .map(|p| p.iter().map(|t| t.trial_number).collect::<Vec<_>>());
                want(got.as_ref().is_none_or(|got| got == page), || {
                    format!("archived_trials_from({from}, {limit}) is {got:?}, not {page:?}")
                })?;
            }
            Ok(())
        }
        4 => {
            save(store, job, &a, None, &[]).await?;
            let s = save(store, job, &b, Some(5), &[sample_trial(9)]).await?;
            answers(s, Saved::Conflict, "a stale write")?;
            let numbers = archived(store, job).await?;
            want(numbers.is_empty(), || {
                format!("a conflicted write archived {numbers:?}")
            })?;
            let s = save(store, job, &b, None, &[sample_trial(8)]).await?;
            answers(s, Saved::Conflict, "a second create")?;
            let numbers = archived(store, job).await?;
            want(numbers.is_empty(), || {
                format!("a refused create archived {numbers:?}")
            })
        }
        5 => {
            save(store, job, &a, None, &[]).await?;
            save(store, job, &a, Some(1), &[sample_trial(1)]).await?;
            let d = delete(store, job, 1).await?;
            answers(d, Saved::Conflict, "a delete at a stale version")?;
            want(loaded(store, job).await?.is_some(), || {
                "a refused delete removed the document".into()
            })?;
            want(archived(store, job).await? == [1], || {
                "a refused delete removed archived trials".into()
            })?;
            let d = delete(store, job, 2).await?;
            answers(d, Saved::Ok, "a delete at the stored version")?;
            want(loaded(store, job).await?.is_none(), || {
                "a deleted job still loads".into()
            })?;
            let v = version(store, job).await?;
            want(v.is_none(), || format!("a deleted job has version {v:?}"))?;
            want(archived(store, job).await?.is_empty(), || {
                "a deleted job kept archived trials".into()
            })
        }
        6 => {
            save(store, job, &a, None, &[]).await?;
            save(store, job, &a, Some(1), &[sample_trial(1), sample_trial(2)]).await?;
            delete(store, job, 2).await?;
            let s = save(store, job, &b, None, &[]).await?;
            answers(s, Saved::Ok, "creating a deleted job again")?;
            let got = loaded(store, job).await?;
            want(got.map(|s| s.version) == Some(1), || {
                "a job created again does not start at version 1".into()
            })?;
            let numbers = archived(store, job).await?;
            want(numbers.is_empty(), || {
                format!("a job created again sees its old trials {numbers:?}")
            })
        }
        8 => list_check(store, job).await,
        9 => workload_check(store, job).await,
        _ => {
            // The richest document the sample makes, and one with every optional part.
            want(!a.trials().is_empty(), || {
                "the sample document has no trial".into()
            })?;
            save(store, job, &a, None, &[]).await?;
            let got = loaded(store, job).await?;
            want(got.map(|s| s.state) == Some(a), || {
                "a document with trials does not read back equal".into()
            })
        }
    }
}

/// A workload document with runs of two jobs in it (exact binary fractions, so
/// it reads back equal through any JSON).
pub fn sample_workload(name: &str, runs: u32) -> WorkloadState {
    let mut doc = WorkloadState::new(name);
    for (k, job) in ["a", "b"].iter().enumerate() {
        let mut taught = SharedEpochs::default();
        for r in 0..runs {
            // Equal epochs per job: every mean and spread is exact in any JSON.
            taught.push(16, 4.0 + 2.0 * k as f64, r % 2 == 0);
            taught.push(32, 6.0, k == 0);
        }
        doc.absorb(job, 1_000 + k as i64, 2_000 + i64::from(runs), &taught);
    }
    doc
}

async fn load_workload<S: Store>(store: &S, name: &str) -> Result<Option<StoredWorkload>, String> {
    store
        .load_workload(name)
        .await
        .map_err(|e| format!("load_workload: {e}"))
}

async fn save_workload<S: Store>(
    store: &S,
    name: &str,
    doc: &WorkloadState,
    expected: Option<u64>,
) -> Result<Saved, String> {
    store
        .save_workload(name, doc, expected)
        .await
        .map_err(|e| format!("save_workload: {e}"))
}

/// The workload rule: unknown, created once, replaced by version, and apart from
/// a job of the same name (which neither reads it nor takes it away when deleted).
async fn workload_check<S: Store>(store: &S, name: &str) -> Result<(), String> {
    let (one, two) = (sample_workload(name, 1), sample_workload(name, 3));
    let got = load_workload(store, name).await?;
    want(got.is_none(), || {
        format!("an unknown workload loads as {got:?}")
    })?;
    // A job of the same name: its document is not the workload's.
    let job = sample_state(name, 1)?;
    save(store, name, &job, None, &[]).await?;
    want(load_workload(store, name).await?.is_none(), || {
        "a job's document loads as the workload of its name".into()
    })?;
    let s = save_workload(store, name, &one, None).await?;
    answers(s, Saved::Ok, "a workload's create")?;
    let got = load_workload(store, name).await?;
    want(
        got.as_ref().map(|s| (s.version, &s.state)) == Some((1, &one)),
        || format!("a created workload reads back as {got:?}"),
    )?;
    unchanged(store, name, 1, job, "workload write (the job of its name)").await?;
    let s = save_workload(store, name, &two, None).await?;
    answers(s, Saved::Conflict, "a workload's second create")?;
    let s = save_workload(store, name, &two, Some(1)).await?;
    answers(s, Saved::Ok, "a workload's replace at the stored version")?;
    for stale in [1, 7] {
        let s = save_workload(store, name, &one, Some(stale)).await?;
        answers(
            s,
            Saved::Conflict,
            "a workload's replace at another version",
        )?;
    }
    let d = delete(store, name, 1).await?;
    answers(d, Saved::Ok, "deleting the job of the workload's name")?;
    let got = load_workload(store, name).await?;
    want(
        got.as_ref().map(|s| (s.version, &s.state)) == Some((2, &two)),
        || {
            format!(
                "after refused writes and a job's delete the workload is {got:?}, not version 2"
            )
        },
    )
}

/// Three jobs created in the far future (so they are the newest of any store the
/// suite runs on, ahead of what else it holds), listed a page at a time, one
/// deleted, listed again; all three deleted at the end. Assumes the store's job
/// index reads its own writes (true of every store here; a real DynamoDB index or
/// Workers KV listing may lag by a moment).
async fn list_check<S: Store>(store: &S, job: &str) -> Result<(), String> {
    const FUTURE_MS: i64 = 9_000_000_000_000_000;
    let ids = [format!("{job}-a"), format!("{job}-b"), format!("{job}-c")];
    let created = [FUTURE_MS, FUTURE_MS, FUTURE_MS - 1];
    for (id, at) in ids.iter().zip(created) {
        let state = JobState::new(id.clone(), sample_state(id, 1)?.params().clone(), 1, at);
        save(store, id, &state, None, &[]).await?;
    }
    let listed = |after: Option<crate::store::ListCursor>, limit| async move {
        match store.list_jobs(after.as_ref(), limit).await {
            Ok(Some(page)) => Ok(page),
            Ok(None) => Err("the store cannot list jobs".to_string()),
            Err(e) => Err(format!("list_jobs: {e}")),
        }
    };
    let names = |page: &crate::store::Listed| -> Vec<String> {
        page.jobs
            .iter()
            .map(|s| s.state.job_id().to_string())
            .collect()
    };
    // Same creation time: the larger id first; then the older job.
    let first = listed(None, 2).await?;
    want(names(&first) == [ids[1].clone(), ids[0].clone()], || {
        format!(
            "the first page is {:?}, not [{}, {}]",
            names(&first),
            ids[1],
            ids[0]
        )
    })?;
    let Some(next) = first.next.clone() else {
        return Err("a full first page has no cursor to the next".into());
    };
    let second = listed(Some(next), 1).await?;
    want(names(&second) == [ids[2].clone()], || {
        format!(
            "the page after the cursor is {:?}, not [{}]",
            names(&second),
            ids[2]
        )
    })?;
    let deleted = store
        .delete(&ids[1], 1)
        .await
        .map_err(|e| format!("delete: {e}"))?;
    want(deleted == Saved::Ok, || {
        format!("delete answered {deleted:?}")
    })?;
    let after = listed(None, 2).await?;
    want(names(&after) == [ids[0].clone(), ids[2].clone()], || {
        format!("after a delete the list is {:?}", names(&after))
    })?;
    for id in [&ids[0], &ids[2]] {
        store
            .delete(id, 1)
            .await
            .map_err(|e| format!("delete: {e}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::MemoryStore;

    #[test]
    fn the_memory_store_keeps_the_contract() {
        let store = MemoryStore::default();
        let violations = pollster::block_on(check(&store, "mem"));
        assert!(violations.is_empty(), "{violations:?}");
    }

    #[test]
    fn a_store_that_forgets_versions_is_caught() {
        /// Saves whatever the version (the bug the contract exists to catch).
        struct Careless(MemoryStore);
        impl Store for Careless {
            type Error = crate::service::MemoryStoreError;
            async fn load(&self, job_id: &str) -> Result<Option<Stored>, Self::Error> {
                self.0.load(job_id).await
            }
            async fn save(&self, job_id: &str, write: Write<'_>) -> Result<Saved, Self::Error> {
                let current = self.0.load(job_id).await?.map(|s| s.version);
                let careless = Write {
                    expected_version: current,
                    ..write
                };
                self.0.save(job_id, careless).await
            }
            async fn delete(&self, job_id: &str, v: u64) -> Result<Saved, Self::Error> {
                self.0.delete(job_id, v).await
            }
            async fn archived_trials(&self, job_id: &str) -> Result<Vec<Trial>, Self::Error> {
                self.0.archived_trials(job_id).await
            }
            async fn load_workload(
                &self,
                workload: &str,
            ) -> Result<Option<StoredWorkload>, Self::Error> {
                self.0.load_workload(workload).await
            }
            async fn save_workload(
                &self,
                workload: &str,
                state: &WorkloadState,
                _: Option<u64>,
            ) -> Result<Saved, Self::Error> {
                let current = self.0.load_workload(workload).await?.map(|s| s.version);
                self.0.save_workload(workload, state, current).await
            }
        }
        let violations = pollster::block_on(check(&Careless(MemoryStore::default()), "bad"));
        let names: Vec<&str> = violations.iter().map(|v| v.check).collect();
        assert!(names.contains(&"create once"), "{names:?}");
        assert!(names.contains(&"replace by version"), "{names:?}");
        assert!(
            names.iter().any(|n| n.starts_with("a workload")),
            "{names:?}"
        );
    }
}
