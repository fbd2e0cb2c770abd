//! The job list: per-job summaries read from the job document alone, and the
//! opaque cursor that pages through jobs newest first.
//!
//! Jobs are ordered by creation time, newest first, ties by job id (descending),
//! so a page boundary never moves when jobs report: a cursor names the last job
//! of a page by `(created_ms, job_id)` and the next page starts strictly after it.

use serde::{Deserialize, Serialize};

use crate::api::ApiError;
use crate::field_error::FieldError;
use crate::job::{JobState, Stage};
use crate::policy::shared::total_runs;
use crate::power::{self, PowerLimitMeasurement, Selector};
use crate::trial::{Totals, TrialStatus};
use crate::wire::Phase;

/// Jobs per page when the request names no `limit`.
pub const DEFAULT_PAGE: usize = 50;
/// The most jobs one page holds.
pub const MAX_PAGE: usize = 200;

/// One job in the list, computed from its document only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSummary {
    /// The job's id.
    pub job_id: String,
    /// The document's version.
    pub version: u64,
    /// When the job was registered, Unix ms.
    pub created_ms: i64,
    /// The last trial dispatch or end, Unix ms (`created_ms` if none).
    pub last_activity_ms: i64,
    /// The optimizer's stage.
    pub stage: Stage,
    /// `zeus` or `wattwise`.
    pub policy: String,
    /// The GPU model.
    pub gpu_model: String,
    /// GPUs per run.
    pub number_of_gpus: u32,
    /// The default batch size.
    pub default_batch_size: u32,
    /// The batch size of the cheapest run that reached the target (the default before any did).
    pub best_batch_size: u32,
    /// That run's cost, if any run reached the target.
    pub min_cost: Option<f64>,
    /// The power limit (W) the best batch size's training profile picks by Zeus cost; `None` without a profile.
    pub best_power_limit: Option<u32>,
    /// Trials dispatched so far.
    pub trials: u64,
    /// Trials waiting for a result.
    pub open_trials: u64,
    /// Running totals over the finished trials.
    pub totals: Totals,
    /// What the job saved against its default batch size; `None` until a run at
    /// the default batch size that reached the target is in the document.
    pub savings: Option<Savings>,
    /// The workload the job names (absent when it names none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// What the job shares with the other jobs of its workload (absent for a job
    /// that shares nothing: no workload, or Zeus's policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sharing: Option<Sharing>,
}

/// What a job of a workload reused from the workload's other jobs, and taught them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sharing {
    /// The jobs whose runs it started from, most recent first (jobs folded
    /// together in the workload's document are not named).
    pub from: Vec<String>,
    /// The other jobs' runs it started from, over every batch size.
    pub reused_runs: u64,
    /// The batch sizes those runs covered.
    pub reused_batch_sizes: Vec<u32>,
    /// Batch sizes it probed for one epoch instead of running to the target.
    pub probed: Vec<u32>,
    /// Its own runs disagreed with the others': it dropped what they taught and
    /// explores as a job of its own.
    pub dropped: bool,
    /// Its own runs the workload's other jobs learn from.
    pub taught_runs: u64,
}

impl Sharing {
    /// The sharing of a stored document, when the job shares its workload.
    pub fn of(state: &JobState) -> Option<Sharing> {
        state.shared_workload()?;
        let taught_runs = state.taught().map_or(0, total_runs);
        let Some(warm) = state.warm_start() else {
            return Some(Sharing {
                taught_runs,
                ..Sharing::default()
            });
        };
        Some(Sharing {
            from: warm.from.clone(),
            reused_runs: total_runs(&warm.shared),
            reused_batch_sizes: warm.shared.sizes.iter().map(|(bs, _)| *bs).collect(),
            probed: warm.probed.clone(),
            dropped: warm.distrust,
            taught_runs,
        })
    }
}

/// What a job saved against running every finished run at its default batch
/// size: the default's energy, time and cost per run are the means over the job's
/// runs at the default batch size that reached the target (still in the
/// document: the recent trials), times the finished runs, less the job's totals.
/// Positive is saved; negative is spent beyond the default.
///
/// How sure the estimate is: the default's mean cost per run comes from
/// `basis_runs` runs, so it has a standard error (the basis runs' sample
/// standard deviation over √`basis_runs`); times the finished runs, that is the
/// standard error of `default_cost`, and so of `cost` (the job's totals are
/// measured, not estimated). With one basis run it is unknown.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Savings {
    /// The runs at the default batch size that reached the target the estimate rests on.
    pub basis_runs: u64,
    /// The finished runs the estimate covers (`totals.finished_trials`).
    pub runs: u64,
    /// The default's estimated cost over those runs (Zeus cost).
    pub default_cost: f64,
    /// Joules saved.
    pub energy: f64,
    /// Seconds saved.
    pub time: f64,
    /// Zeus cost saved.
    pub cost: f64,
    /// `cost` over `default_cost`: 0.25 is a quarter of the default's cost saved.
    pub cost_fraction: f64,
    /// One standard error of `default_cost` (and so of `cost`), in Zeus cost: the
    /// basis runs' costs' sample standard deviation over √`basis_runs`, times
    /// `runs`. One standard error, not a bound. Absent with one basis run (no
    /// spread to measure), or where it would not be a finite number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_uncertainty: Option<f64>,
    /// `cost_uncertainty` over `default_cost`: one standard error of
    /// `cost_fraction` (|`cost_fraction`| under two of them is within the noise).
    /// Absent when `cost_uncertainty` is, or `default_cost` is not positive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_fraction_uncertainty: Option<f64>,
}

/// One standard error of the mean of `xs`: their sample standard deviation
/// over √n. `None` for fewer than two values or a result that is not finite.
fn standard_error(xs: &[f64]) -> Option<f64> {
    if xs.len() < 2 {
        return None;
    }
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let squares = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>();
    Some((squares / (n - 1.0) / n).sqrt()).filter(|se| se.is_finite())
}

impl Savings {
    /// The estimate for a stored document, if it has a run to rest on.
    pub fn of(state: &JobState) -> Option<Savings> {
        let params = state.params();
        let basis: Vec<_> = state
            .trials()
            .into_iter()
            .filter(|t| t.batch_size == params.default_batch_size)
            .filter_map(|t| t.result())
            .filter(|r| r.converged)
            .collect();
        if basis.is_empty() {
            return None;
        }
        let n = basis.len() as f64;
        let mean =
            |f: fn(&crate::trial::RunResult) -> f64| basis.iter().map(|r| f(r)).sum::<f64>() / n;
        let (energy, time) = (mean(|r| r.energy), mean(|r| r.time));
        let totals = state.totals();
        let runs = totals.finished_trials;
        let per_run_cost = crate::explore::cost_of(params, energy, time);
        let default_cost = per_run_cost * runs as f64;
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        let cost = finite(default_cost - totals.cost);
        let costs: Vec<f64> = basis
            .iter()
            .map(|r| crate::explore::cost_of(params, r.energy, r.time))
            .collect();
        let cost_uncertainty = standard_error(&costs)
            .map(|se| se * runs as f64)
            .filter(|u| u.is_finite());
        let cost_fraction_uncertainty = cost_uncertainty
            .filter(|_| default_cost > 0.0 && default_cost.is_finite())
            .map(|u| u / default_cost)
            .filter(|f| f.is_finite());
        Some(Savings {
            basis_runs: basis.len() as u64,
            runs,
            default_cost: finite(default_cost),
            energy: finite(energy * runs as f64 - totals.energy),
            time: finite(time * runs as f64 - totals.time),
            cost,
            cost_fraction: if default_cost > 0.0 && default_cost.is_finite() {
                cost / default_cost
            } else {
                0.0
            },
            cost_uncertainty,
            cost_fraction_uncertainty,
        })
    }
}

/// The power limit the job's training profile of `batch_size` picks by Zeus cost.
pub fn chosen_power_limit(state: &JobState, batch_size: u32) -> Option<u32> {
    let params = state.params();
    let profile = state
        .profiles()
        .iter()
        .rev()
        .find(|p| p.batch_size == batch_size && p.phase == Phase::Train)?;
    let gpus = params.number_of_gpus;
    let points: Vec<PowerLimitMeasurement> = profile
        .measurements
        .iter()
        .filter_map(|m| PowerLimitMeasurement::from_profile_point(m, batch_size, gpus, 1))
        .collect();
    let selector = Selector::ZeusCost {
        eta: params.eta_knob,
        max_power: None,
    };
    power::select(&selector, &points, gpus).ok()
}

impl JobSummary {
    /// The summary of a stored document.
    pub fn of(state: &JobState, version: u64) -> JobSummary {
        let params = state.params();
        let trials = state.trials();
        let open = trials
            .iter()
            .filter(|t| matches!(t.status, TrialStatus::Dispatched))
            .count() as u64;
        let mut totals = state.totals().clone();
        // A stored document's bound is shown only as a finite, non-negative number.
        totals.energy_uncertainty_j = totals
            .energy_uncertainty_j
            .filter(|u| u.is_finite() && *u >= 0.0);
        let best = state.min_cost_batch_size();
        JobSummary {
            job_id: state.job_id().to_string(),
            version,
            created_ms: state.created_ms(),
            last_activity_ms: totals.last_activity_ms.max(state.created_ms()),
            stage: state.stage(),
            policy: serde_json::to_value(params.policy)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default(),
            gpu_model: params.gpu_model.clone(),
            number_of_gpus: params.number_of_gpus,
            default_batch_size: params.default_batch_size,
            best_batch_size: best,
            min_cost: state.min_cost(),
            best_power_limit: chosen_power_limit(state, best),
            trials: state.next_trial_number().saturating_sub(1),
            open_trials: open,
            totals,
            savings: Savings::of(state),
            workload: params.workload.clone(),
            sharing: Sharing::of(state),
        }
    }
}

/// Reads the `limit` parameter: 1 to [`MAX_PAGE`], [`DEFAULT_PAGE`] when absent.
pub fn page_size(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(FieldError::new(
                "limit",
                format!("must be an integer from 1 to {MAX_PAGE} (got {s:?})"),
            )
            .into()),
        },
    }
}

/// One page of the list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobPage {
    /// The jobs, newest first.
    pub jobs: Vec<JobSummary>,
    /// Pass as `cursor` for the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ListCursor;

    #[test]
    fn cursor_round_trips_and_rejects_junk() {
        let mut c = ListCursor {
            created_ms: 1_700_000_000_123,
            job_id: "cifar-a.b".into(),
            resume: Some("kv-token".into()),
        };
        assert_eq!(ListCursor::decode(&c.encode()).unwrap(), c);
        c.resume = None;
        assert_eq!(ListCursor::decode(&c.encode()).unwrap(), c);
        for junk in ["", "zz", "abc", "2e", "312e", "6869", "312e610a"] {
            let e = ListCursor::decode(junk).unwrap_err();
            assert!(e.to_string().starts_with("cursor:"), "{junk}: {e}");
        }
        assert!(c.precedes(1_700_000_000_122, "zzz"));
        assert!(c.precedes(1_700_000_000_123, "cifar-a"));
        assert!(!c.precedes(1_700_000_000_123, "cifar-a.b"));
        assert!(!c.precedes(1_700_000_000_124, "a"));
    }

    #[test]
    fn page_size_is_bounded() {
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page_size(Some("200")).unwrap(), 200);
        for bad in ["0", "201", "-1", "x", ""] {
            assert!(page_size(Some(bad))
                .unwrap_err()
                .to_string()
                .starts_with("limit:"));
        }
    }

    /// Runs `(energy, time)` pairs to the target, each at the batch size the job dispatches.
    fn run_job(spec: crate::spec::JobSpec, runs: &[(f64, f64)]) -> JobState {
        let mut state = JobState::new("s-1".into(), spec.validate().unwrap(), 1, 5);
        let runs: Vec<_> = runs.iter().map(|&(e, t)| (e, t, None)).collect();
        report_runs(&mut state, &runs);
        state
    }

    /// Reports `(energy, time, bound)` runs that reach the target, each at the batch size the job dispatches.
    fn report_runs(state: &mut JobState, runs: &[(f64, f64, Option<f64>)]) {
        for (i, &(energy, time, bound)) in runs.iter().enumerate() {
            let t = state.predict(10 + i as i64).unwrap();
            let r = crate::wire::TrainingResult {
                job_id: t.job_id.clone(),
                batch_size: t.batch_size,
                trial_number: t.trial_number,
                time,
                energy,
                metric: 1.0,
                current_epoch: 1,
                energy_uncertainty_j: bound,
            };
            state.report(&r, 11 + i as i64).unwrap();
        }
    }

    /// A job of one batch size (every run is at the default): cost = E/2 + 150·T.
    fn one_size_spec() -> crate::spec::JobSpec {
        let mut spec = crate::spec::JobSpec::new("s", vec![8], 8, 300.0, 1, "A100");
        spec.eta_knob = 0.5;
        spec.target_metric = 0.5;
        spec
    }

    #[test]
    fn savings_are_the_default_runs_mean_times_the_runs_less_the_totals() {
        let mut spec = crate::spec::JobSpec::new("s", vec![8, 16], 8, 300.0, 1, "A100");
        spec.eta_knob = 1.0; // cost = energy
        spec.target_metric = 0.5;
        // Nothing finished: no estimate.
        assert_eq!(JobSummary::of(&run_job(spec.clone(), &[]), 1).savings, None);
        // The first run is the default batch size's (100 J, 10 s); the second 60 J, 4 s.
        let state = run_job(spec, &[(100.0, 10.0), (60.0, 4.0)]);
        let s = JobSummary::of(&state, 1).savings.expect("an estimate");
        assert_eq!((s.basis_runs, s.runs), (1, 2));
        assert_eq!(
            (s.energy, s.time, s.cost, s.default_cost),
            (40.0, 6.0, 40.0, 200.0)
        );
        assert!((s.cost_fraction - 0.2).abs() < 1e-12);
        // One basis run: no spread to measure, so no standard error (and none serialized).
        assert_eq!(
            (s.cost_uncertainty, s.cost_fraction_uncertainty),
            (None, None)
        );
        let v = serde_json::to_value(&s).unwrap();
        assert!(
            v.get("cost_uncertainty").is_none() && v.get("cost_fraction_uncertainty").is_none()
        );
    }

    #[test]
    fn savings_carry_the_standard_error_of_the_default_runs_mean() {
        // Costs 0.5·100 + 150·1 = 200 and 0.5·200 + 150·2 = 400: mean 300, sample
        // standard deviation √((100² + 100²) / 1) = 141.42…, standard error
        // 141.42… / √2 = 100 per run; times the 2 runs, 200 of the default's 600.
        let mut state = JobState::new("s-1".into(), one_size_spec().validate().unwrap(), 1, 5);
        report_runs(&mut state, &[(100.0, 1.0, None), (200.0, 2.0, None)]);
        let s = JobSummary::of(&state, 1).savings.expect("an estimate");
        assert_eq!((s.basis_runs, s.runs), (2, 2));
        assert!((s.default_cost - 600.0).abs() < 1e-9, "{}", s.default_cost);
        let u = s
            .cost_uncertainty
            .expect("two basis runs give a standard error");
        assert!((u - 200.0).abs() < 1e-9, "{u}");
        let f = s.cost_fraction_uncertainty.expect("and its fraction");
        assert!((f - 1.0 / 3.0).abs() < 1e-12, "{f}");
        // Identical basis runs: a standard error of zero, not an absent one.
        let mut state = JobState::new("s-1".into(), one_size_spec().validate().unwrap(), 1, 5);
        report_runs(&mut state, &[(100.0, 1.0, None); 3]);
        let s = JobSummary::of(&state, 1).savings.unwrap();
        assert_eq!(
            (s.cost_uncertainty, s.cost_fraction_uncertainty),
            (Some(0.0), Some(0.0))
        );
    }

    #[test]
    fn the_totals_bound_is_the_sum_while_every_counted_trial_has_one() {
        let mut state = JobState::new("s-1".into(), one_size_spec().validate().unwrap(), 1, 5);
        report_runs(
            &mut state,
            &[(100.0, 1.0, Some(2.5)), (200.0, 2.0, Some(4.0))],
        );
        let t = JobSummary::of(&state, 1).totals;
        assert_eq!((t.energy, t.energy_uncertainty_j), (300.0, Some(6.5)));
        // A trial without a bound: the totals' bound is unknown from then on.
        report_runs(&mut state, &[(50.0, 1.0, None), (50.0, 1.0, Some(1.0))]);
        let t = JobSummary::of(&state, 1).totals;
        assert_eq!((t.finished_trials, t.energy_uncertainty_j), (4, None));
        assert!(serde_json::to_value(&t)
            .unwrap()
            .get("energy_uncertainty_j")
            .is_none());
        // A document whose totals were counted before bounds were kept (no field):
        // a bounded trial after it does not invent one for the earlier trials.
        let mut state = JobState::new("s-1".into(), one_size_spec().validate().unwrap(), 1, 5);
        report_runs(&mut state, &[(100.0, 1.0, Some(2.5))]);
        let mut doc = serde_json::to_value(&state).unwrap();
        assert_eq!(doc["totals"]["energy_uncertainty_j"], 2.5);
        doc["totals"]
            .as_object_mut()
            .unwrap()
            .remove("energy_uncertainty_j");
        let mut older: JobState = serde_json::from_value(doc).unwrap();
        report_runs(&mut older, &[(100.0, 1.0, Some(2.5))]);
        assert_eq!(JobSummary::of(&older, 1).totals.energy_uncertainty_j, None);
    }

    #[test]
    fn a_hostile_stored_document_keeps_every_summary_number_finite() {
        let mut state = JobState::new("s-1".into(), one_size_spec().validate().unwrap(), 1, 5);
        report_runs(&mut state, &[(1.0, 1.0, Some(1.0)); 3]);
        let mut doc = serde_json::to_value(&state).unwrap();
        // Stored runs far beyond anything a report passes: their costs, spreads
        // and squares overflow f64.
        for (i, t) in doc["recent_trials"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .enumerate()
        {
            t["energy"] = serde_json::json!(if i == 0 { 1.0 } else { 1.7e308 });
            t["time"] = serde_json::json!(if i == 1 { 0.0 } else { 1.7e308 });
        }
        for k in ["energy", "time", "cost"] {
            doc["totals"][k] = serde_json::json!(1.7e308);
        }
        doc["totals"]["energy_uncertainty_j"] = serde_json::json!(-1.0);
        let hostile: JobState = serde_json::from_value(doc).unwrap();
        let summary = JobSummary::of(&hostile, 1);
        let s = summary.savings.as_ref().expect("an estimate");
        for x in [s.default_cost, s.energy, s.time, s.cost, s.cost_fraction] {
            assert!(x.is_finite(), "{s:?}");
        }
        for x in [s.cost_uncertainty, s.cost_fraction_uncertainty]
            .into_iter()
            .flatten()
        {
            assert!(x.is_finite() && x >= 0.0, "{s:?}");
        }
        assert_eq!(
            summary.totals.energy_uncertainty_j, None,
            "a negative stored bound is not shown"
        );
        // Every number of the summary's JSON is a number (serde_json writes a non-finite one as null).
        let v = serde_json::to_value(&summary).unwrap();
        for k in ["default_cost", "energy", "time", "cost", "cost_fraction"] {
            assert!(v["savings"][k].is_number(), "{k}: {v}");
        }
        // Huge but finite spreads: the standard error itself stays finite or absent.
        assert_eq!(standard_error(&[f64::MAX, -f64::MAX]), None);
        assert_eq!(standard_error(&[1.0]), None);
        assert_eq!(standard_error(&[1.0, 3.0]), Some(1.0));
    }

    #[test]
    fn totals_stay_finite() {
        let mut t = Totals::default();
        t.add_result(f64::MAX, 1.0, f64::MAX, Some(f64::MAX), 5);
        t.add_result(f64::MAX, 1.0, f64::MAX, Some(f64::MAX), 3);
        assert!(t.energy.is_finite() && t.cost.is_finite());
        assert_eq!(t.energy_uncertainty_j, Some(f64::MAX));
        assert_eq!((t.finished_trials, t.last_activity_ms), (2, 5));
    }
}
