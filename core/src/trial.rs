//! Trials: one training run at one batch size, from dispatch to result.
//!
//! A trial's status and its result live in one enum, so a Dispatched or Failed
//! trial cannot carry a result and a Succeeded one cannot lack it.

use serde::{Deserialize, Serialize};

/// Why a trial was dispatched (the seed's TrialType).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrialType {
    /// Pruning-stage exploration of a batch size.
    Exploration,
    /// A run submitted while an exploration was still running; it gets the best known batch size.
    Concurrent,
    /// A run chosen by the Thompson sampling bandit.
    #[serde(rename = "MAB")]
    Mab,
}

/// The result of a finished run.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Total training time in seconds.
    pub time: f64,
    /// Total energy in joules.
    pub energy: f64,
    /// Whether the run reached the target metric within the cost bound.
    pub converged: bool,
    /// Half-width of the bound on `energy`, joules, as the run's last report
    /// gave it (absent when it gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
}

/// Where a trial stands, with the data that stage carries.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status")]
pub enum TrialStatus {
    /// Handed to a client; no result yet.
    Dispatched,
    /// Reported: the run stopped with this result.
    Succeeded {
        /// When the result was recorded (Unix ms).
        end_ms: i64,
        /// The run's result.
        #[serde(flatten)]
        result: RunResult,
    },
    /// Ended without a result.
    Failed {
        /// When the trial was ended (Unix ms).
        end_ms: i64,
    },
}

impl TrialStatus {
    /// The status's name as in the seed's enum.
    pub fn name(&self) -> &'static str {
        match self {
            TrialStatus::Dispatched => "Dispatched",
            TrialStatus::Succeeded { .. } => "Succeeded",
            TrialStatus::Failed { .. } => "Failed",
        }
    }
}

/// One trial of a job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Trial {
    /// Per-job trial number, from 1, strictly increasing in dispatch order.
    pub trial_number: u64,
    /// The batch size the run uses.
    pub batch_size: u32,
    /// Why it was dispatched.
    #[serde(rename = "type")]
    pub kind: TrialType,
    /// When it was dispatched (Unix ms).
    pub start_ms: i64,
    /// Status and result.
    #[serde(flatten)]
    pub status: TrialStatus,
}

impl Trial {
    /// The recorded result, if the trial succeeded.
    pub fn result(&self) -> Option<&RunResult> {
        match &self.status {
            TrialStatus::Succeeded { result, .. } => Some(result),
            _ => None,
        }
    }

    /// Whether the trial still waits for a result.
    pub fn is_dispatched(&self) -> bool {
        matches!(self.status, TrialStatus::Dispatched)
    }

    /// When the trial ended, if it did.
    pub fn end_ms(&self) -> Option<i64> {
        match self.status {
            TrialStatus::Dispatched => None,
            TrialStatus::Succeeded { end_ms, .. } | TrialStatus::Failed { end_ms } => Some(end_ms),
        }
    }

    /// The CSV header of [`Trial::csv_row`] (the seed's Trial table).
    pub const CSV_HEADER: &'static str =
        "job_id,trial_number,batch_size,type,status,start_timestamp_ms,end_timestamp_ms,time,energy,converged";

    /// One CSV row of the trials export.
    pub fn csv_row(&self, job_id: &str) -> String {
        let kind = match self.kind {
            TrialType::Exploration => "Exploration",
            TrialType::Concurrent => "Concurrent",
            TrialType::Mab => "MAB",
        };
        let end = self.end_ms().map(|e| e.to_string()).unwrap_or_default();
        let (time, energy, converged) = match self.result() {
            Some(r) => (
                r.time.to_string(),
                r.energy.to_string(),
                r.converged.to_string(),
            ),
            None => Default::default(),
        };
        let job_id = csv_text(job_id);
        format!(
            "{job_id},{},{},{kind},{},{},{end},{time},{energy},{converged}",
            self.trial_number,
            self.batch_size,
            self.status.name(),
            self.start_ms
        )
    }
}

/// A text cell of a CSV export, safe to open in a spreadsheet (OWASP's CSV
/// injection advice): a cell that starts with `=`, `+`, `-`, `@`, a tab or a
/// carriage return gets a leading `'`, so it is never read as a formula; one with
/// a comma, a quote or a line break is quoted. Only text cells (the job id) go
/// through it: the numeric cells are written as numbers (a negative one keeps
/// its `-`), and every other cell is a fixed word.
pub fn csv_text(cell: &str) -> String {
    let mut out = String::with_capacity(cell.len() + 1);
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        out.push('\'');
    }
    out.push_str(cell);
    if out.contains([',', '"', '\n', '\r']) {
        out = format!("\"{}\"", out.replace('"', "\"\""));
    }
    out
}

/// Running totals over a job's finished trials, kept in the job document so the
/// list never reads the trial archive. Documents written before these existed
/// load with zeros (and count only what happened since).
///
/// The totals are counted as each trial finishes (the archive is never read
/// back), so they cover every finished trial since they began, archived or not.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    /// Trials that ended with a result.
    pub finished_trials: u64,
    /// Trials that ended without one (ended early or abandoned).
    pub failed_trials: u64,
    /// Energy of the finished trials, joules.
    pub energy: f64,
    /// Time of the finished trials, seconds.
    pub time: f64,
    /// Zeus cost of the finished trials.
    pub cost: f64,
    /// The last time the document changed for a trial (dispatch or end), Unix ms; 0 if never.
    pub last_activity_ms: i64,
    /// Half-width of the bound on `energy`, joules: the sum of the finished
    /// trials' `energy_uncertainty_j`, kept only while every trial counted in
    /// `energy` gave one. Absent once any counted trial had none: a trial
    /// reported without a bound (an older client, or a host that measured
    /// none), or any trial counted by a document written before bounds were
    /// kept (its totals load without one and stay without one). Never invented.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub energy_uncertainty_j: Option<f64>,
}

/// Adds `x` to `sum`, staying finite.
fn add_finite(sum: f64, x: f64) -> f64 {
    let s = sum + x;
    if s.is_finite() {
        s
    } else {
        f64::MAX
    }
}

impl Totals {
    /// Counts a finished trial with its result and the bound on its energy, if it gave one.
    pub(crate) fn add_result(
        &mut self,
        energy: f64,
        time: f64,
        cost: f64,
        bound: Option<f64>,
        now_ms: i64,
    ) {
        let bound = bound.filter(|u| u.is_finite() && *u >= 0.0);
        // The first trial counted starts the bound; every later one keeps it
        // only if it has one too (a document whose totals counted trials
        // without the bound field stays without one).
        self.energy_uncertainty_j = if self.finished_trials == 0 {
            bound
        } else {
            self.energy_uncertainty_j
                .zip(bound)
                .map(|(sum, u)| add_finite(sum, u))
        };
        self.finished_trials += 1;
        self.energy = add_finite(self.energy, energy);
        self.time = add_finite(self.time, time);
        self.cost = add_finite(self.cost, cost);
        self.touch(now_ms);
    }

    /// Counts a trial that ended without a result.
    pub(crate) fn add_failed(&mut self, now_ms: i64) {
        self.failed_trials += 1;
        self.touch(now_ms);
    }

    /// Records activity at `now_ms`.
    pub(crate) fn touch(&mut self, now_ms: i64) {
        self.last_activity_ms = self.last_activity_ms.max(now_ms);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_flattens_status_and_result() {
        let t = Trial {
            trial_number: 3,
            batch_size: 64,
            kind: TrialType::Mab,
            start_ms: 10,
            status: TrialStatus::Succeeded {
                end_ms: 20,
                result: RunResult {
                    time: 1.5,
                    energy: 2.5,
                    converged: true,
                    energy_uncertainty_j: None,
                },
            },
        };
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["status"], "Succeeded");
        assert_eq!(v["type"], "MAB");
        assert_eq!(v["energy"], 2.5);
        let back: Trial = serde_json::from_value(v).unwrap();
        assert_eq!(back, t);
    }

    #[test]
    fn a_failed_trial_cannot_be_read_with_a_missing_end() {
        let bad = serde_json::json!({"trial_number": 1, "batch_size": 8, "type": "Exploration",
            "start_ms": 0, "status": "Succeeded", "end_ms": 5});
        assert!(
            serde_json::from_value::<Trial>(bad).is_err(),
            "a success without a result must not parse"
        );
    }

    #[test]
    fn csv_row_has_every_column() {
        let t = Trial {
            trial_number: 1,
            batch_size: 8,
            kind: TrialType::Exploration,
            start_ms: 0,
            status: TrialStatus::Dispatched,
        };
        let row = t.csv_row("j");
        assert_eq!(row.split(',').count(), Trial::CSV_HEADER.split(',').count());
        assert_eq!(row, "j,1,8,Exploration,Dispatched,0,,,,");
    }

    #[test]
    fn csv_text_cells_never_start_a_formula() {
        for (cell, want) in [
            ("-cmd", "'-cmd"),
            ("=1+2", "'=1+2"),
            ("+1", "'+1"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("a,b", "\"a,b\""),
            ("=\"x\"", "\"'=\"\"x\"\"\""),
            ("ag:colon-1", "ag:colon-1"),
        ] {
            assert_eq!(csv_text(cell), want, "{cell:?}");
        }
        let t = Trial {
            trial_number: 1,
            batch_size: 8,
            kind: TrialType::Mab,
            start_ms: -5,
            status: TrialStatus::Dispatched,
        };
        // The job id is neutralized; a negative number stays a number.
        assert_eq!(t.csv_row("-j"), "'-j,1,8,MAB,Dispatched,-5,,,,");
    }
}
