//! The wattwise policy's warm start: what the other jobs of the workload learned
//! about epochs to target ([`crate::policy::shared::SharedEpochs`]) times what this job's own GPU costs
//! per epoch (its power profiles) predicts a batch size's cost before it is run.
//!
//! # How it decides
//!
//! A batch size's expected cost is `cost per epoch x expected epochs`, where the
//! expected epochs (`mean epochs to target + (1 - p) / p x max_epochs`, `p` the
//! fraction of runs that reach the target) come from the others' runs pooled with
//! this job's own, and the cost per epoch from the job's power profile of that
//! batch size (the cheapest power limit's `(eta x power + (1 - eta) x max_power) /
//! throughput`): its unit does not matter, since only ratios are compared.
//!
//! The local search of [`crate::policy::wattwise`] walks from the default as
//! before, but a step is a **probe**: the profile arrives with the first epoch,
//! so at the first report the batch size's cost is predicted and the run is
//! stopped there (one epoch paid, the batch size is still a candidate) when
//! - it is clearly worse than a batch size already predicted or measured (by more
//!   than one of its own epochs), or
//! - the next batch size of the walk may be cheaper by more than
//!   [`PROBE_GAIN_EPOCHS`] epochs' worth: its expected epochs are known, and its
//!   cost per epoch is at best this one's scaled by the batch sizes (a larger
//!   batch) or [`DOWN_OPTIMISM`] of it (a smaller one), or this one's when the
//!   profiles already show the cost per epoch rising that way (by [`RISE_MIN`]).
//!
//! The walk itself steps to a neighbour whose epochs are known only when that
//! optimistic cost may beat the best.
//!
//! Otherwise the run goes on to the target and is measured. Batch sizes that no
//! other job's run ever brought to the target are skipped without a run, and so
//! are those past every batch size the others finished a run of (their searches
//! turned back before them, where costs rose) and those past every batch size
//! the others chose and the default: a batch size the others ran less than
//! [`CHOSEN_SHARE`] as often as their most run one, their walks tried once and
//! their bandits never took again (sentiment140's 16: every batch size needs the
//! same epochs, and the walk went on down to a probe of it and a run 16% over the
//! best; BENCHMARKS.md, issue 27). Once the
//! walk is over, Thompson sampling chooses among the batch sizes predicted within
//! [`crate::policy::wattwise::CANDIDATE_MARGIN`] of the best, each drawn around
//! its prediction with [`DRAW_SPREAD`] of the uncertainty of its mean epochs.
//!
//! # Staying safe when the others' knowledge is wrong
//!
//! Every finished run of this job is checked against the shared epochs of its
//! batch size: a mean that differs by more than [`DISAGREE_Z`] standard errors
//! and [`DISAGREE_MIN`] of the mean, failures where the others almost never
//! failed, or a run stopped past where the others had all reached the target,
//! and the shared knowledge is dropped for good (`distrust`): the job goes on as a
//! cold wattwise job, whose statistics never saw the probes.

use crate::policy::shared::{EpochStats, WarmState};
use crate::policy::wattwise::{
    Knobs, WattwiseState, CANDIDATE_MARGIN, EXPLORE_STOP, PRIOR_NOISE, SEARCH_MARGIN, UNDERUSED_GPU,
};
use crate::rng::JobRng;
use crate::trial::TrialType;

/// Floor of a run's epochs-to-target spread, relative to the mean.
pub const MIN_EPOCH_SD: f64 = 0.05;
/// Weight, in runs, of the pooled spread of every batch size's epochs in the
/// spread of one batch size's.
pub const SPREAD_PRIOR_WEIGHT: f64 = 2.0;
/// An expected cost counts as this many of its standard errors lower when the
/// walk asks whether a batch size is out (few shared runs are not proof).
pub const OPTIMISM_Z: f64 = 2.0;
/// Standard errors between the job's own mean epochs and the shared ones that
/// make the shared knowledge wrong for this job.
pub const DISAGREE_Z: f64 = 3.0;
/// ... provided the difference is at least this fraction of the shared mean.
pub const DISAGREE_MIN: f64 = 0.1;
/// Failures of the job's own runs whose chance under the shared knowledge is
/// below this make it wrong for this job.
pub const DISAGREE_FAIL_P: f64 = 0.01;
/// A probe stops to try the next batch size when that one may save more than
/// this many epochs of the probed one.
pub const PROBE_GAIN_EPOCHS: f64 = 2.0;
/// A cost per epoch this much above the next batch size's is a rising trend
/// (smaller differences are within a profile's noise).
pub const RISE_MIN: f64 = 0.015;
/// Thompson sampling of the warm start draws each candidate around its
/// prediction with this fraction of the prediction's standard error: the
/// others' runs already settled most of the question, and on a workload whose
/// batch sizes cost within a few percent of each other (squad) full draws keep
/// paying for batch sizes 2-3% dearer (BENCHMARKS.md, issue 27).
pub const DRAW_SPREAD: f64 = 0.25;
/// A batch size the other jobs ran less than this fraction as often as the one
/// they ran most was only tried by their searches, never chosen by their bandits
/// (each job runs the batch sizes its walk passes once, and its choice for the
/// rest of its recurrences): past every one they chose, the job skips it.
pub const CHOSEN_SHARE: f64 = 0.1;
/// The lowest cost per epoch a smaller batch size may have, relative to the
/// larger one next to it (a smaller batch is rarely cheaper per epoch).
pub const DOWN_OPTIMISM: f64 = 0.7;

/// What a batch size is expected to cost, in the job's profile units.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Est {
    /// Nothing to predict from (yet).
    Unknown,
    /// Never reaches the target as far as anyone knows.
    Skip,
    /// Expected cost and its relative uncertainty.
    Value { cost: f64, rel: f64 },
}

/// Everything the warm start reads.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The job's knobs.
    pub knobs: Knobs<'a>,
    /// The policy's statistics.
    pub state: &'a WattwiseState,
    /// The warm start.
    pub warm: &'a WarmState,
    /// Cost per epoch per batch size from the job's own profiles (any unit), when profiled.
    pub epoch_costs: &'a [Option<f64>],
}

impl<'a> View<'a> {
    /// The view of a job's statistics when its warm start is in use.
    pub fn of(
        knobs: Knobs<'a>,
        state: &'a WattwiseState,
        epoch_costs: &'a [Option<f64>],
    ) -> Option<View<'a>> {
        // A stored document may hold anything: use only a sane warm start.
        let warm = state
            .warm
            .as_ref()
            .filter(|w| !w.distrust && w.shared.is_sane() && w.own.iter().all(|s| s.is_sane()))?;
        let view = View {
            knobs,
            state,
            warm,
            epoch_costs,
        };
        let n = knobs.batch_sizes.len();
        let usable = state.arms.len() == n
            && epoch_costs.len() == n
            && (0..n).any(|i| matches!(view.expected_epochs(i), Some(Some(_))));
        usable.then_some(view)
    }

    fn own(&self, i: usize) -> EpochStats {
        self.warm.own.get(i).copied().unwrap_or_default()
    }

    /// Expected epochs of a run of batch size `i` and the relative uncertainty of
    /// that expectation: `None` when no one ran it, `Some(None)` when no run reached
    /// the target within the job's `max_epochs`.
    fn expected_epochs(&self, i: usize) -> Option<Option<(f64, f64)>> {
        let shared = self.warm.shared.get(self.knobs.batch_sizes[i])?;
        let s = shared.merge(&self.own(i));
        let max_epochs = self.knobs.max_epochs as f64;
        if s.runs == 0 {
            return None;
        }
        if s.successes == 0 || s.mean > max_epochs {
            return Some(None);
        }
        let p = s.successes as f64 / s.runs as f64;
        let eff = s.mean + (1.0 - p) / p * max_epochs;
        let sd = spread(&s, self.pooled_spread());
        let rel = sd / libm::sqrt(s.successes as f64) / eff.max(f64::MIN_POSITIVE);
        Some(Some((eff, rel)))
    }

    /// The spread of a run's epochs relative to their mean, pooled over the
    /// shared batch sizes (a prior for those with few runs).
    fn pooled_spread(&self) -> f64 {
        let mut ss = PRIOR_NOISE * PRIOR_NOISE * SPREAD_PRIOR_WEIGHT;
        let mut dof = SPREAD_PRIOR_WEIGHT;
        for (_, s) in &self.warm.shared.sizes {
            if s.successes >= 2 && s.mean > 0.0 {
                ss += s.m2 / (s.mean * s.mean);
                dof += (s.successes - 1) as f64;
            }
        }
        libm::sqrt(ss / dof)
    }

    /// Cost of the job's runs per unit of predicted cost, from its batch sizes
    /// that have both a profile and runs that reached the target.
    fn calibration(&self) -> Option<f64> {
        let (mut cost, mut predicted) = (0.0, 0.0);
        for (i, a) in self.state.arms.iter().enumerate() {
            let own = self.own(i);
            if let (Some(q), true) = (self.epoch_costs[i], a.successes > 0 && own.successes > 0) {
                cost += a.success_mean * own.successes as f64;
                predicted += q * own.mean * own.successes as f64;
            }
        }
        if predicted > 0.0 && cost > 0.0 {
            return Some(cost / predicted);
        }
        let w = self.warm;
        (w.probe_units > 0.0 && w.probe_cost > 0.0).then(|| w.probe_cost / w.probe_units)
    }

    fn est(&self, i: usize) -> Est {
        if self.past_the_chosen(i) {
            return Est::Skip;
        }
        match self.expected_epochs(i) {
            Some(None) => Est::Skip,
            Some(Some((eff, rel))) => match self.epoch_costs[i] {
                Some(q) => Est::Value { cost: q * eff, rel },
                None => self.measured(i),
            },
            None if self.was_stopped(i) => Est::Skip,
            None if self.past_the_others(i) => Est::Skip,
            None => self.measured(i),
        }
    }

    /// Whether batch size `i` (not the default, never run by this job) lies past
    /// every batch size the other jobs finished a run of: their searches turned
    /// back before it, where their costs had risen.
    fn past_the_others(&self, i: usize) -> bool {
        i != self.default_index() && self.state.arms[i].runs == 0 && self.past(i, |_, s| s.runs > 0)
    }

    /// Whether batch size `i` (not the default, never run nor probed by this job)
    /// is one the other jobs did not choose ([`CHOSEN_SHARE`]), and lies past
    /// every batch size they chose and the default: their searches tried it and
    /// what lies beyond, and their bandits ran none of them again.
    fn past_the_chosen(&self, i: usize) -> bool {
        let sizes = &self.warm.shared.sizes;
        let most = sizes.iter().map(|(_, s)| s.runs).max().unwrap_or(0) as f64;
        let chosen = |s: &EpochStats| s.runs as f64 >= CHOSEN_SHARE * most;
        let bs = self.knobs.batch_sizes[i];
        let default = self.knobs.default_batch_size;
        i != self.default_index()
            && self.state.arms[i].runs == 0
            && !self.warm.probed.contains(&bs)
            && self.warm.shared.get(bs).is_some_and(|s| !chosen(s))
            && self.past(i, |b, s| b == default || chosen(s))
    }

    /// Whether batch size `i` lies on one side of every other batch size of the
    /// shared knowledge that `counts`.
    fn past(&self, i: usize, counts: impl Fn(u32, &EpochStats) -> bool) -> bool {
        let bs = self.knobs.batch_sizes[i];
        let known = |(b, s): &&(u32, EpochStats)| *b != bs && counts(*b, s);
        let sizes = &self.warm.shared.sizes;
        sizes.iter().filter(known).all(|(b, _)| *b > bs)
            || sizes.iter().filter(known).all(|(b, _)| *b < bs)
    }

    fn was_stopped(&self, i: usize) -> bool {
        self.warm.stopped.contains(&self.knobs.batch_sizes[i])
    }

    /// A batch size without a prediction, from its own runs.
    fn measured(&self, i: usize) -> Est {
        let a = &self.state.arms[i];
        if a.runs == 0 {
            return Est::Unknown;
        }
        match (a.expected_cost(), self.calibration()) {
            (None, _) => Est::Skip,
            (Some(c), Some(k)) => Est::Value {
                cost: c / k,
                rel: PRIOR_NOISE / libm::sqrt(a.successes as f64),
            },
            (Some(_), None) => Est::Unknown,
        }
    }

    fn default_index(&self) -> usize {
        self.knobs
            .batch_sizes
            .binary_search(&self.knobs.default_batch_size)
            .unwrap_or(0)
    }

    /// Whether the walk is past batch size `i`: profiled with a prediction, run,
    /// or (not the default) skipped as never reaching the target.
    fn evaluated(&self, i: usize) -> bool {
        let predicted = self.epoch_costs[i].is_some() && self.expected_epochs(i).is_some();
        predicted
            || self.state.arms[i].runs > 0
            || self.was_stopped(i)
            || (i != self.default_index() && self.est(i) == Est::Skip)
    }

    /// The cheapest expected cost, other than batch size `except`.
    fn best_except(&self, except: Option<usize>) -> Option<(usize, f64)> {
        let mut best: Option<(usize, f64)> = None;
        for i in 0..self.knobs.batch_sizes.len() {
            if Some(i) == except {
                continue;
            }
            if let Est::Value { cost, .. } = self.est(i) {
                if best.is_none_or(|(_, b)| cost < b) {
                    best = Some((i, cost));
                }
            }
        }
        best
    }

    /// Whether batch size `i` is out of the walk: it never reaches the target,
    /// or even its optimistic expected cost is more than `margin` above `best`.
    fn beyond(&self, i: usize, best: Option<f64>, margin: f64) -> bool {
        match self.est(i) {
            Est::Skip => true,
            Est::Value { cost, rel } => {
                best.is_some_and(|b| optimistic(cost, rel) > b * (1.0 + margin))
            }
            Est::Unknown => false,
        }
    }

    /// The lowest expected cost the unevaluated batch size `j` next to the
    /// profiled `edge` may have: its expected epochs times the edge's cost per
    /// epoch, scaled by the batch sizes (a larger batch) or by
    /// [`DOWN_OPTIMISM`] (a smaller one). `None` when either is unknown.
    fn optimistic_neighbour(&self, edge: usize, j: usize) -> Option<f64> {
        let sizes = self.knobs.batch_sizes;
        let (eff, _) = self.expected_epochs(j)??;
        let q = self.epoch_costs[edge]?;
        // The profile of the batch size on the edge's other side shows the trend:
        // a cost per epoch that already rises towards `j` is taken to go on rising.
        let behind = if j > edge {
            edge.checked_sub(1)
        } else {
            Some(edge + 1).filter(|&b| b < sizes.len())
        };
        let rising = behind
            .and_then(|b| self.epoch_costs[b])
            .is_some_and(|qb| q >= qb * (1.0 + RISE_MIN));
        let q_best = if rising {
            q
        } else if j > edge {
            q * sizes[edge] as f64 / sizes[j] as f64
        } else {
            q * DOWN_OPTIMISM
        };
        Some(q_best * eff)
    }

    /// The evaluated block around the default.
    fn block(&self) -> (usize, usize) {
        let n = self.knobs.batch_sizes.len();
        let d = self.default_index();
        let (mut lo, mut hi) = (d, d);
        while lo > 0 && self.evaluated(lo - 1) {
            lo -= 1;
        }
        while hi + 1 < n && self.evaluated(hi + 1) {
            hi += 1;
        }
        (lo, hi)
    }
}

/// An expected cost [`OPTIMISM_Z`] standard errors lower.
fn optimistic(cost: f64, rel: f64) -> f64 {
    cost * (1.0 - OPTIMISM_Z * rel).max(0.0)
}

/// The next run's batch size under the warm start, or `None` when it has nothing
/// to go on (the cold policy decides).
pub fn next(
    view: &View<'_>,
    pending: impl Fn(u32) -> bool,
    rng: &mut JobRng,
) -> Option<(TrialType, u32)> {
    let sizes = view.knobs.batch_sizes;
    let n = sizes.len();
    let best = view.best_except(None);
    let best_cost = best.map(|(_, c)| c);
    let best_bs = best.map_or(view.knobs.default_batch_size, |(i, _)| sizes[i]);
    let step = |i: usize| {
        if pending(sizes[i]) {
            (TrialType::Concurrent, best_bs)
        } else {
            (TrialType::Exploration, sizes[i])
        }
    };
    let d = view.default_index();
    if !view.evaluated(d) {
        return Some(step(d));
    }
    let (lo, hi) = view.block();
    // A neighbour whose epochs are known is worth a step only if it may beat the best.
    let may_beat = |edge: usize, j: usize| match (view.optimistic_neighbour(edge, j), best_cost) {
        (Some(q), Some(b)) => q < b,
        _ => true,
    };
    let down = lo > 0 && !view.beyond(lo, best_cost, SEARCH_MARGIN) && may_beat(lo, lo - 1);
    let up = hi + 1 < n && !view.beyond(hi, best_cost, SEARCH_MARGIN) && may_beat(hi, hi + 1);
    let up_first = view
        .knobs
        .default_utilization
        .is_some_and(|u| u < UNDERUSED_GPU);
    match (down, up) {
        (true, true) if up_first => return Some(step(hi + 1)),
        (true, _) => return Some(step(lo - 1)),
        (false, true) => return Some(step(hi + 1)),
        (false, false) => {}
    }
    let (best_i, best_cost) = best?;
    let mut choice = (best_i, f64::INFINITY);
    let candidates: Vec<(usize, f64, f64)> = (0..n)
        .filter_map(|i| match view.est(i) {
            Est::Value { cost, rel } if cost <= best_cost * (1.0 + CANDIDATE_MARGIN) => {
                Some((i, cost, rel))
            }
            _ => None,
        })
        .collect();
    if candidates.len() > 1 {
        for &(i, cost, rel) in &candidates {
            let draw = rng.normal(cost, DRAW_SPREAD * rel * cost);
            if draw < choice.1 {
                choice = (i, draw);
            }
        }
    }
    Some((TrialType::Mab, sizes[choice.0]))
}

/// Whether a run of `batch_size` reporting its first epoch is a probe to stop
/// now (see the module's documentation). Changes nothing.
pub fn probe_stop(view: &View<'_>, batch_size: u32, epoch: u32) -> bool {
    let sizes = view.knobs.batch_sizes;
    let Ok(i) = sizes.binary_search(&batch_size) else {
        return false;
    };
    if epoch != 1 || view.state.arms[i].runs > 0 || view.warm.probed.contains(&batch_size) {
        return false;
    }
    let (Est::Value { cost, rel }, Some(Some((eff, _)))) = (view.est(i), view.expected_epochs(i))
    else {
        return false;
    };
    let other = view.best_except(Some(i)).map(|(_, c)| c);
    if other.is_some_and(|o| optimistic(cost, rel) > o * (1.0 + 1.0 / eff)) {
        return true;
    }
    let best = other.map_or(cost, |o| o.min(cost));
    let (lo, hi) = view.block();
    if !(lo..=hi).contains(&i) {
        return false;
    }
    let threshold = cost * (1.0 - PROBE_GAIN_EPOCHS / eff);
    let mut neighbours = Vec::with_capacity(2);
    if lo > 0 {
        neighbours.push((lo, lo - 1));
    }
    if hi + 1 < sizes.len() {
        neighbours.push((hi, hi + 1));
    }
    neighbours.into_iter().any(|(edge, j)| {
        !view.evaluated(j)
            && !view.beyond(edge, Some(best), SEARCH_MARGIN)
            && view
                .optimistic_neighbour(edge, j)
                .is_some_and(|q| q < threshold.min(best))
    })
}

/// The cost at which the warm start stops a run of `batch_size`: the best
/// expected cost, predicted and converted to a cost, times what the cold policy
/// allows ([`crate::policy::wattwise::cost_bound`]'s factors); infinite when
/// nothing converts.
pub fn cost_bound(view: &View<'_>, batch_size: u32) -> f64 {
    let (Some((_, best)), Some(k)) = (view.best_except(None), view.calibration()) else {
        return f64::INFINITY;
    };
    let beta = view.knobs.beta_knob.unwrap_or(f64::INFINITY);
    let untried = view
        .knobs
        .batch_sizes
        .binary_search(&batch_size)
        .map_or(true, |i| view.state.arms[i].runs == 0);
    let factor = if untried {
        beta.min(1.0 + EXPLORE_STOP)
    } else {
        beta
    };
    let bound = best * k * factor;
    // A prediction of no cost at all bounds nothing (as a zero-cost run in the
    // cold policy): every run would pass it and the job could never converge.
    if bound > 0.0 && !bound.is_nan() {
        bound
    } else {
        f64::INFINITY
    }
}

/// Records a probe of `batch_size` that cost `cost`, predicted at `units` per
/// epoch (not in the arms' statistics: a cold policy never sees it).
pub fn record_probe(state: &mut WattwiseState, batch_size: u32, cost: f64, units: Option<f64>) {
    if let Some(w) = &mut state.warm {
        if !w.probed.contains(&batch_size) {
            w.probed.push(batch_size);
        }
        if let Some(u) = units.filter(|u| u.is_finite() && *u > 0.0) {
            w.probe_cost += cost;
            w.probe_units += u;
        }
    }
}

/// Records a run of `batch_size` stopped early without reaching the target
/// while the warm start decides ([`View::of`]; not in the arms' statistics).
pub fn record_stopped(state: &mut WattwiseState, batch_size: u32) {
    if let Some(w) = &mut state.warm {
        if !w.stopped.contains(&batch_size) {
            w.stopped.push(batch_size);
        }
    }
}

/// Notes a finished run of the batch size at `i` (`epochs` reported; `censored`:
/// stopped early without reaching the target) and checks it against the shared
/// knowledge, dropping that for good when they disagree.
pub fn note_run(
    state: &mut WattwiseState,
    i: usize,
    epochs: u32,
    reached: bool,
    censored: bool,
    batch_size: u32,
) {
    let n = state.arms.len();
    let Some(w) = &mut state.warm else { return };
    if w.distrust || i >= n {
        return;
    }
    w.own.resize(n, EpochStats::default());
    if !censored {
        w.own[i].push(epochs as f64, reached);
    }
    let Some(shared) = w.shared.get(batch_size).copied() else {
        return;
    };
    w.distrust = disagrees(&shared, &w.own[i], censored.then_some(epochs as f64));
}

/// The spread of one run's epochs to target: the runs' own, weighted with
/// `pooled` (relative to the mean) for [`SPREAD_PRIOR_WEIGHT`] runs, and at
/// least [`MIN_EPOCH_SD`] of the mean.
fn spread(s: &EpochStats, pooled: f64) -> f64 {
    let prior = pooled * s.mean;
    let dof = s.successes.saturating_sub(1) as f64 + SPREAD_PRIOR_WEIGHT;
    let var = (s.m2.max(0.0) + prior * prior * SPREAD_PRIOR_WEIGHT) / dof;
    libm::sqrt(var).max(s.mean * MIN_EPOCH_SD)
}

/// Whether the job's own runs of a batch size (`own`, and a run stopped after
/// `censored_at` epochs without reaching the target) contradict `shared`.
fn disagrees(shared: &EpochStats, own: &EpochStats, censored_at: Option<f64>) -> bool {
    if shared.successes == 0 {
        return false;
    }
    let sd = spread(shared, PRIOR_NOISE).max(0.5);
    if own.successes > 0 {
        let diff = (own.mean - shared.mean).abs();
        let se = sd * libm::sqrt(1.0 / own.successes as f64 + 1.0 / shared.successes as f64);
        if diff > DISAGREE_Z * se && diff > DISAGREE_MIN * shared.mean {
            return true;
        }
    }
    let failures = own.runs.saturating_sub(own.successes);
    if failures > 0 {
        let p_fail =
            (shared.runs.saturating_sub(shared.successes) + 1) as f64 / (shared.runs as f64 + 2.0);
        if libm::pow(p_fail, failures as f64) < DISAGREE_FAIL_P {
            return true;
        }
    }
    censored_at.is_some_and(|k| {
        k > shared.mean + DISAGREE_Z * sd && k > shared.mean * (1.0 + DISAGREE_MIN)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{self, Change};
    use crate::job::JobState;
    use crate::policy::shared::SharedEpochs;
    use crate::policy::test_runs::report_until_stop;
    use crate::policy::Policy;
    use crate::spec::JobSpec;
    use crate::wire::{Phase, PowerMeasurement, PowerProfile};

    /// Per batch size: cost of an epoch, epochs to the target.
    const WORKLOAD: [(u32, f64, u32); 5] = [
        (16, 4.0, 13),
        (32, 2.5, 13),
        (64, 1.5, 14),
        (128, 1.3, 20),
        (256, 1.0, 40),
    ];

    fn job(policy: Policy) -> JobState {
        job_on(policy, &WORKLOAD)
    }

    fn job_on(policy: Policy, workload: &[(u32, f64, u32)]) -> JobState {
        let sizes = workload.iter().map(|w| w.0 as i64).collect();
        let mut spec = JobSpec::new("w", sizes, 256, 300.0, 1, "A40");
        spec.policy = policy;
        spec.mab_seed = Some(1);
        spec.target_metric = 1.0;
        spec.workload = Some("resnet-imagenet".into());
        JobState::new("w-1".into(), spec.validate().unwrap(), 0, 0)
    }

    /// What five runs of every batch size taught, epochs scaled by `factor`.
    fn shared(factor: f64) -> SharedEpochs {
        let mut s = SharedEpochs::default();
        for &(bs, _, epochs) in &WORKLOAD {
            for d in [-1.0, 0.0, 0.0, 0.0, 1.0] {
                s.push(bs, (epochs as f64 + d) * factor, true);
            }
        }
        s
    }

    /// Runs one trial as the agent does: the profile of a batch size's first run
    /// (eta 0.5: an epoch costs `c` at 300 W and 300 / c epochs per second), then a
    /// report per epoch. Returns the batch size and the epochs run.
    fn run(state: &mut JobState) -> (u32, u32) {
        run_on(state, &WORKLOAD)
    }

    /// [`run`] on another workload.
    fn run_on(state: &mut JobState, workload: &[(u32, f64, u32)]) -> (u32, u32) {
        let t = state.predict(0).unwrap();
        let &(bs, c, epochs) = workload.iter().find(|w| w.0 == t.batch_size).unwrap();
        if !state.profiles.iter().any(|p| p.batch_size == bs) {
            let profile = PowerProfile {
                batch_size: bs,
                phase: Phase::Train,
                gpu_model: "A40".into(),
                measurements: vec![PowerMeasurement {
                    power_limit: 300,
                    average_power: 300.0,
                    throughput: 300.0 / c,
                    energy_uncertainty_j: None,
                }],
                uncertain: Vec::new(),
            };
            if let Change::Put(new) = api::post_profile("w-1", &profile, Some(state))
                .unwrap()
                .change
            {
                *state = *new;
            }
        }
        let (epoch, _) = report_until_stop(state, &t, c, epochs);
        (bs, epoch)
    }

    #[test]
    fn a_warm_job_probes_one_epoch_per_batch_size_then_runs_the_predicted_best() {
        let mut s = job(Policy::Wattwise);
        s.share(&shared(1.0));
        let runs: Vec<(u32, u32)> = (0..8).map(|_| run(&mut s)).collect();
        // 256 (40 epochs) is stopped after one: 128 may be cheaper; 128 for 64.
        // 64 costs more per epoch than 128, and 32 is not taken to be cheaper per
        // epoch still (a rising trend), so 64 runs on; 32 is then probed and
        // predicted clearly worse. 16 is never dispatched.
        assert_eq!(
            runs,
            vec![
                (256, 1),
                (128, 1),
                (64, 14),
                (32, 1),
                (64, 14),
                (64, 14),
                (64, 14),
                (64, 14)
            ]
        );
        let w = s.warm_start().unwrap();
        assert_eq!(w.probed, vec![256, 128, 32]);
        assert!(!w.distrust);
        // The probes are not in the policy's arms (a cold policy never sees them).
        let arms = &s.wattwise.as_ref().unwrap().arms;
        assert_eq!(
            arms.iter().map(|a| a.runs).collect::<Vec<_>>(),
            vec![0, 0, 5, 0, 0]
        );
    }

    /// What the others' runs taught when they ran each batch size `runs` times
    /// (epochs as in [`WORKLOAD`], within one of it).
    fn shared_runs(runs: &[(u32, usize)]) -> SharedEpochs {
        let mut s = SharedEpochs::default();
        for &(bs, _, epochs) in &WORKLOAD {
            let n = runs.iter().find(|r| r.0 == bs).map_or(0, |r| r.1);
            for d in [0.0, -1.0, 1.0].into_iter().cycle().take(n) {
                s.push(bs, epochs as f64 + d, true);
            }
        }
        s
    }

    #[test]
    fn batch_sizes_past_every_one_the_others_chose_are_skipped() {
        // The others' walks tried 32 and 16 once each, and their bandits chose
        // 64, 128 and the default: past all of them, 32 and 16 are not probed.
        let chose = [(16, 1), (32, 1), (64, 40), (128, 5), (256, 5)];
        let mut s = job(Policy::Wattwise);
        s.share(&shared_runs(&chose));
        let runs: Vec<(u32, u32)> = (0..6).map(|_| run(&mut s)).collect();
        assert_eq!(
            runs,
            vec![(256, 1), (128, 1), (64, 14), (64, 14), (64, 14), (64, 14)]
        );
        assert_eq!(s.warm_start().unwrap().probed, vec![256, 128]);
        // A batch size they chose now and then (32: 4 of 40) is still probed, and
        // so is one between two they chose (128, between 64 and the default).
        let mut s = job(Policy::Wattwise);
        s.share(&shared_runs(
            &[[(32, 4), (128, 1)].as_slice(), &chose].concat(),
        ));
        let runs: Vec<(u32, u32)> = (0..5).map(|_| run(&mut s)).collect();
        assert!(runs.contains(&(32, 1)), "{runs:?}");
        assert!(runs.contains(&(128, 1)), "{runs:?}");
    }

    #[test]
    fn wrong_shared_epochs_are_dropped_and_the_job_explores_as_a_cold_one() {
        let mut s = job(Policy::Wattwise);
        s.share(&shared(2.0));
        let first: Vec<(u32, u32)> = (0..3).map(|_| run(&mut s)).collect();
        // Doubled epochs rank the batch sizes alike, so the job goes to 64; its
        // first full run needs half the epochs the others needed: dropped.
        assert_eq!(first, vec![(256, 1), (128, 1), (64, 14)]);
        assert!(s.warm_start().unwrap().distrust);
        // From then on it walks from the default as a job without knowledge does,
        // with its own full run of 64 (not the probes) in its statistics: 256
        // costs far more than 64, so the walk is over.
        assert_eq!(run(&mut s), (256, 40));
        assert_eq!(run(&mut s), (64, 14));
        let arms = &s.wattwise.as_ref().unwrap().arms;
        assert_eq!(
            arms.iter().map(|a| a.runs).collect::<Vec<_>>(),
            vec![0, 0, 2, 0, 1]
        );
        // Sharing again changes nothing once the knowledge was found wrong.
        s.share(&shared(1.0));
        assert!(s.warm_start().unwrap().distrust);
    }

    #[test]
    fn a_hostile_stored_warm_start_is_ignored_without_panicking() {
        let mut s = job(Policy::Wattwise);
        s.share(&shared(1.0));
        run(&mut s);
        let good = serde_json::to_value(&s).unwrap();
        let edits: [fn(&mut serde_json::Value); 4] = [
            |w| w["shared"]["sizes"][0][1]["mean"] = serde_json::json!(-1.0),
            |w| w["shared"]["sizes"][1][1]["successes"] = serde_json::json!(u64::MAX),
            |w| w["own"] = serde_json::json!([{"runs": 0, "successes": 9, "mean": 1.0, "m2": 0.0}]),
            |w| {
                w["own"] = serde_json::json!(vec![
                    serde_json::json!({"runs": u64::MAX, "successes": u64::MAX, "mean": 3.0, "m2": 1.0});
                    9
                ])
            },
        ];
        for edit in edits {
            let mut doc = good.clone();
            edit(&mut doc["wattwise"]["warm"]);
            let mut state: JobState = serde_json::from_value(doc).unwrap();
            for _ in 0..6 {
                run(&mut state);
            }
        }
    }

    #[test]
    fn knowledge_of_none_of_the_jobs_batch_sizes_changes_nothing() {
        // The others ran only batch sizes this job does not have.
        let mut elsewhere = SharedEpochs::default();
        elsewhere.push(512, 12.0, true);
        // 32 is within 30% of 64, so the walk goes on to 16, whose first run is
        // stopped at twice the best: a failure the job must keep, or it would
        // dispatch 16 again and again.
        let workload = [
            (16, 4.0, 13),
            (32, 2.0, 13),
            (64, 1.5, 14),
            (128, 1.3, 20),
            (256, 1.0, 40),
        ];
        let mut warm = job_on(Policy::Wattwise, &workload);
        warm.share(&elsewhere);
        let mut cold = job_on(Policy::Wattwise, &workload);
        let a: Vec<(u32, u32)> = (0..8).map(|_| run_on(&mut warm, &workload)).collect();
        let b: Vec<(u32, u32)> = (0..8).map(|_| run_on(&mut cold, &workload)).collect();
        assert_eq!(a, b);
        assert!(b.contains(&(16, 11)), "{b:?}");
        assert_eq!(a.iter().filter(|r| r.0 == 16).count(), 1, "{a:?}");
    }

    #[test]
    fn knowledge_that_predicts_no_cost_bounds_nothing() {
        let mut s = job(Policy::Wattwise);
        s.share(&shared(0.0));
        let runs: Vec<(u32, u32)> = (0..6).map(|_| run(&mut s)).collect();
        let target = |bs: u32| WORKLOAD.iter().find(|w| w.0 == bs).unwrap().2;
        assert!(runs.iter().any(|&(bs, e)| e == target(bs)), "{runs:?}");
        assert!(s.warm_start().unwrap().distrust, "{runs:?}");
    }

    #[test]
    fn zeus_jobs_and_jobs_without_knowledge_are_untouched() {
        let mut zeus = job(Policy::Zeus);
        let before = serde_json::to_value(&zeus).unwrap();
        zeus.share(&shared(1.0));
        assert_eq!(serde_json::to_value(&zeus).unwrap(), before);
        let mut cold = job(Policy::Wattwise);
        let runs: Vec<(u32, u32)> = (0..3).map(|_| run(&mut cold)).collect();
        assert_eq!(runs, vec![(256, 40), (128, 20), (64, 14)]);
        let doc = serde_json::to_value(&cold).unwrap();
        assert!(doc["wattwise"].get("warm").is_none(), "{doc}");
        assert_eq!(doc["params"]["workload"], "resnet-imagenet");
    }

    fn stats(epochs: &[f64], failures: u64) -> EpochStats {
        let mut s = EpochStats::default();
        for &e in epochs {
            s.push(e, true);
        }
        for _ in 0..failures {
            s.push(0.0, false);
        }
        s
    }

    #[test]
    fn own_runs_that_need_twice_the_epochs_disagree_and_close_ones_do_not() {
        let shared = stats(&[19.0, 20.0, 21.0, 20.0, 19.0, 21.0], 0);
        assert!(!disagrees(&shared, &stats(&[21.0], 0), None));
        assert!(disagrees(&shared, &stats(&[40.0], 0), None));
        assert!(disagrees(&shared, &stats(&[10.0], 0), None));
        // Failures where the others never failed.
        assert!(!disagrees(&shared, &stats(&[20.0], 0), None));
        assert!(!disagrees(&shared, &stats(&[], 1), None));
        assert!(disagrees(&shared, &stats(&[], 3), None));
        // Stopped at epoch 35 without reaching the target: the others all had by 21.
        assert!(disagrees(&shared, &stats(&[], 0), Some(35.0)));
        assert!(!disagrees(&shared, &stats(&[], 0), Some(15.0)));
    }
}
