//! What the policies' tests share: a trial run to its end.

use crate::job::JobState;
use crate::wire::{ReportResponse, TrainingResult, TrialId};

/// Reports epochs 1, 2, ... of trial `t` as the agent does, until the job
/// says stop: each epoch costs `per_epoch` (eta 0.5, so a time of `c / 300` s
/// and an energy of `c` J cost `c`), and the metric reaches the target at
/// epoch `epochs`. Returns the epoch it stopped at and the answer.
pub(crate) fn report_until_stop(
    state: &mut JobState,
    t: &TrialId,
    per_epoch: f64,
    epochs: u32,
) -> (u32, ReportResponse) {
    for epoch in 1..=100 {
        let c = per_epoch * epoch as f64;
        let r = state
            .report(
                &TrainingResult {
                    job_id: t.job_id.clone(),
                    batch_size: t.batch_size,
                    trial_number: t.trial_number,
                    time: c / 300.0,
                    energy: c,
                    metric: if epoch >= epochs { 1.0 } else { 0.0 },
                    current_epoch: epoch,
                    energy_uncertainty_j: None,
                },
                epoch as i64,
            )
            .unwrap();
        if r.stop_train {
            return (epoch, r);
        }
    }
    panic!("trial {} ran past max_epochs 100", t.trial_number)
}
