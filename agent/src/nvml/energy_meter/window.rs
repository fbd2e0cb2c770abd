//! The averaging window of a GPU's averaged power field, learned from the power
//! samples the meter takes anyway, changing no setting: where NVML answers both
//! the instantaneous and the averaged field, each sample reads both (one call),
//! and the window is the one of [`CANDIDATES_S`] whose moving mean of the
//! instantaneous samples (linear between them) best explains the averaged ones
//! (least squares). While power has not moved enough to tell the windows apart
//! (fewer than [`MIN_TELLING`] samples where they would differ), the window stays
//! assumed.

use std::collections::VecDeque;

/// Windows considered, s: 50 ms to 1.5 s in steps of 50 ms (NVML documents
/// 1 s).
pub const CANDIDATES_S: [f64; 30] = {
    let mut c = [0.0; 30];
    let mut k = 0;
    while k < 30 {
        c[k] = 0.05 * (k + 1) as f64;
        k += 1;
    }
    c
};

/// Samples where the candidates differ that a learned window needs.
pub const MIN_TELLING: u32 = 10;
/// Samples where they differ after which the fit stops (learned once).
pub const MAX_TELLING: u32 = 50;

/// The fit so far.
#[derive(Clone, Debug, Default)]
pub struct WindowFit {
    /// Instantaneous samples `(t s, W)` over the longest candidate and a bit.
    history: VecDeque<(f64, f64)>,
    /// Per candidate, the sum of squared misses, W².
    misses: Vec<f64>,
    /// Samples where the candidates differed enough to tell.
    telling: u32,
}

/// The area under the line through `samples` (oldest first) from each sample
/// to the last, J: the moving means of every window come from it at once.
fn areas_to_end(samples: &VecDeque<(f64, f64)>) -> Vec<f64> {
    let mut areas = vec![0.0; samples.len()];
    for k in (0..samples.len().saturating_sub(1)).rev() {
        let ((t0, w0), (t1, w1)) = (samples[k], samples[k + 1]);
        areas[k] = areas[k + 1] + (w0 + w1) / 2.0 * (t1 - t0);
    }
    areas
}

/// The mean over the last `window` s of the line through `samples`, given
/// [`areas_to_end`].
fn mean_over(samples: &VecDeque<(f64, f64)>, areas: &[f64], window: f64) -> f64 {
    let Some(&(end, _)) = samples.back() else {
        return 0.0;
    };
    let from = end - window;
    // The last sample at or before `from`, and the part of its segment after.
    let k = samples
        .partition_point(|&(t, _)| t <= from)
        .saturating_sub(1);
    let ((t0, w0), (t1, w1)) = (samples[k], samples[(k + 1).min(samples.len() - 1)]);
    let at = |t: f64| {
        if t1 > t0 {
            w0 + (w1 - w0) * (t - t0) / (t1 - t0)
        } else {
            w0
        }
    };
    let part = (at(from.max(t0)) + w1) / 2.0 * (t1 - from.max(t0));
    (areas[(k + 1).min(samples.len() - 1)] + part) / window
}

impl WindowFit {
    /// Takes a sample at `t` (s): the instantaneous and the averaged power, W.
    pub fn sample(&mut self, t: f64, instant_w: f64, average_w: f64) {
        let longest = CANDIDATES_S[CANDIDATES_S.len() - 1];
        if self.telling >= MAX_TELLING {
            return;
        }
        if self.history.back().is_some_and(|&(last, _)| t <= last) {
            return;
        }
        self.history.push_back((t, instant_w));
        while self.history.len() > 2 && self.history[1].0 <= t - longest {
            self.history.pop_front();
        }
        if self
            .history
            .front()
            .is_none_or(|&(first, _)| first > t - longest)
        {
            return;
        }
        // Power that moved by under 2 % (or 1 W) within the longest window
        // cannot tell the windows apart.
        let least = (0.02 * average_w).max(1.0);
        let (lo, hi) = self
            .history
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &(_, w)| {
                (l.min(w), h.max(w))
            });
        if hi - lo < least {
            return;
        }
        let areas = areas_to_end(&self.history);
        let fits: Vec<f64> = CANDIDATES_S
            .iter()
            .map(|&w| mean_over(&self.history, &areas, w))
            .collect();
        let (lo, hi) = fits
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &f| {
                (l.min(f), h.max(f))
            });
        if hi - lo < least {
            return;
        }
        self.telling += 1;
        self.misses.resize(CANDIDATES_S.len(), 0.0);
        for (m, f) in self.misses.iter_mut().zip(&fits) {
            *m += (average_w - f) * (average_w - f);
        }
    }

    /// The window learned, s, once power has moved enough to tell.
    pub fn learned(&self) -> Option<f64> {
        if self.telling < MIN_TELLING {
            return None;
        }
        let best = self
            .misses
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))?
            .0;
        Some(CANDIDATES_S[best])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_is_learned_from_steps_and_not_from_a_steady_load() {
        // Power stepping between 100 and 300 W every 1.37 s, sampled every
        // 100 ms; the averaged field a true moving mean over `window`: learned
        // within one candidate (50 ms), the samples being 100 ms apart.
        let power = |t: f64| {
            if (t / 1.37).floor() as i64 % 2 == 0 {
                100.0
            } else {
                300.0
            }
        };
        let mean = |t: f64, window: f64| {
            let n = 1000;
            (0..n)
                .map(|k| power(t - window + window * (k as f64 + 0.5) / n as f64))
                .sum::<f64>()
                / n as f64
        };
        for window in [0.25, 1.0] {
            let mut fit = WindowFit::default();
            for k in 0..200 {
                let t = 3.0 + 0.1 * k as f64;
                fit.sample(t, power(t), mean(t, window));
            }
            let learned = fit.learned().expect("learned");
            assert!(
                (learned - window).abs() < 0.051,
                "{learned} {:?}",
                fit.misses
            );
        }
        let mut steady = WindowFit::default();
        for k in 0..200 {
            steady.sample(0.1 * k as f64, 250.0, 250.0);
        }
        assert_eq!(steady.learned(), None);
    }
}
