//! When a coarse energy counter last moved: its updates fall on a lattice (one
//! every update period, at a fixed phase), which the meter learns from the
//! counter reads it takes anyway (each power sample reads the counter). A read
//! that finds the counter moved since the read before says an update fell
//! between the two; one that finds it still says none did. The tracker keeps an
//! interval known to hold one update (the anchor) and an interval known to hold
//! the period, narrows them with each read that can tell, and asks for the next
//! read where it tells most (the middle of the next update's interval, or just
//! after it) until the phase is known within [`SETTLED_S`]. A read that
//! contradicts the lattice (a counter whose updates jitter) starts it afresh;
//! after [`MAX_RESETS`] it gives up, and the meter's bound falls back to a whole
//! update period at each edge.

/// A phase known within this is settled: reads go back to the regular interval.
pub const SETTLED_S: f64 = 0.003;
/// How far a read's time stamp and the counter's answer may be apart, s.
pub const READ_SLACK_S: f64 = 0.0005;
/// A last update known within this fraction of a period is used to interpolate.
const KNOWN_FRACTION: f64 = 0.25;
/// Contradictions after which the lattice is taken not to hold.
pub const MAX_RESETS: u32 = 3;

/// The lattice of a counter's updates, as far as its reads have told.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Phase {
    /// One update lies in `[anchor.0, anchor.1]`, s (`None`: no read has told
    /// yet).
    anchor: Option<(f64, f64)>,
    /// The period lies in `[period.0, period.1]`, s.
    period: (f64, f64),
    /// What the probe found of the period (a reset starts from it again).
    probed: (f64, f64),
    /// The first narrow interval an update was found in, and its index from
    /// the anchor: the long baseline the period is narrowed over.
    reference: Option<(f64, f64, i64)>,
    /// The last read: when it began and ended, and the counter then.
    last: (f64, f64, u64),
    resets: u32,
}

impl Phase {
    /// A tracker for a counter whose period lies in `period` (from the probe),
    /// first read at `t` (s) as `mj`.
    pub fn new(period: (f64, f64), t: f64, mj: u64) -> Phase {
        Phase {
            anchor: None,
            period,
            probed: period,
            reference: None,
            last: (t, t, mj),
            resets: 0,
        }
    }

    /// Whether the lattice has been given up on (see [`MAX_RESETS`]).
    pub fn given_up(&self) -> bool {
        self.resets >= MAX_RESETS
    }

    /// The interval of the `k`-th update from the anchor.
    fn candidate(&self, (a0, a1): (f64, f64), k: i64) -> (f64, f64) {
        let kf = k as f64;
        if k >= 0 {
            (a0 + kf * self.period.0, a1 + kf * self.period.1)
        } else {
            (a0 + kf * self.period.1, a1 + kf * self.period.0)
        }
    }

    /// The updates whose intervals meet `[from, to]`: `(k, lo, hi)`.
    fn meeting(&self, from: f64, to: f64) -> impl DoubleEndedIterator<Item = (i64, f64, f64)> + '_ {
        let (anchor, (k0, k1)) = match self.anchor {
            Some(a) => {
                let p = (self.period.0 + self.period.1) / 2.0;
                let k0 = ((from - a.1) / p).floor() as i64 - 2;
                let k1 = ((to - a.0) / p).ceil() as i64 + 2;
                (a, (k0, k1))
            }
            None => ((0.0, 0.0), (0, -1)),
        };
        (k0..=k1).filter_map(move |k| {
            let (lo, hi) = self.candidate(anchor, k);
            (hi >= from && lo <= to).then_some((k, lo, hi))
        })
    }

    fn reset(&mut self) {
        self.resets += 1;
        self.period = self.probed;
        self.anchor = None;
        self.reference = None;
    }

    /// Update `k`'s interval narrowed to `[x, y]`: the period and anchor follow.
    fn narrow(&mut self, k: i64, x: f64, y: f64) {
        let Some((a0, a1)) = self.anchor else {
            return;
        };
        if y < x {
            self.reset();
            return;
        }
        let mut over = vec![(k, a0, a1)];
        if let Some((r0, r1, r)) = self.reference {
            over.push((k - r, r0, r1));
        }
        for (n, b0, b1) in over.into_iter().filter(|o| o.0 != 0) {
            let nf = n as f64;
            let (p0, p1) = if n > 0 {
                ((x - b1) / nf, (y - b0) / nf)
            } else {
                ((b0 - y) / -nf, (b1 - x) / -nf)
            };
            let (p0, p1) = (self.period.0.max(p0), self.period.1.min(p1));
            if p1 < p0 {
                self.reset();
                return;
            }
            self.period = (p0, p1);
        }
        // The narrowed interval is the best known of the lattice now (the
        // reference keeps the long baseline).
        let (c0, c1) = self.candidate((a0, a1), k);
        if y - x < c1 - c0 {
            self.anchor = Some((x, y));
            if let Some(r) = self.reference.as_mut() {
                r.2 -= k;
            }
        }
        if self.reference.is_none() && y - x <= 2.0 * SETTLED_S {
            self.reference = self.anchor.filter(|a| *a == (x, y)).map(|(x, y)| (x, y, 0));
        }
    }

    /// Takes a read of the counter that began at `t` and ended by `end` (s):
    /// `mj`.
    pub fn read(&mut self, t: f64, end: f64, mj: u64) {
        let end = end.max(t);
        let (t0, end0, mj0) = std::mem::replace(&mut self.last, (t, end, mj));
        if self.given_up() || t <= t0 {
            return;
        }
        let moved = mj != mj0;
        if self.anchor.is_none() {
            // The first move seen within half a period anchors the lattice.
            if moved && end - t0 < self.period.0 / 2.0 {
                self.anchor = Some((t0 - READ_SLACK_S, end + READ_SLACK_S));
            }
            return;
        }
        if moved {
            // An update between the two reads: one candidate meets it, or it
            // cannot tell.
            let (from, to) = (t0 - READ_SLACK_S, end + READ_SLACK_S);
            let two = {
                let mut meeting = self.meeting(from, to);
                (meeting.next(), meeting.next())
            };
            match two {
                (None, _) => self.reset(),
                (Some((k, lo, hi)), None) => self.narrow(k, lo.max(from), hi.min(to)),
                _ => {}
            }
        } else {
            // No update between the two reads: trim the candidate it cuts at
            // an end.
            let (from, to) = (end0 + READ_SLACK_S, t - READ_SLACK_S);
            if to <= from {
                return;
            }
            let cut = self
                .meeting(from, to)
                .find(|&(_, lo, hi)| from <= lo || hi <= to);
            match cut {
                Some((_, lo, hi)) if from <= lo && hi <= to => self.reset(),
                Some((k, lo, hi)) if from <= lo => self.narrow(k, to, hi),
                Some((k, lo, _)) => self.narrow(k, lo, from),
                None => {}
            }
        }
    }

    /// When the counter last moved before the last read, `(earliest, latest)`,
    /// if known within a quarter of a period.
    pub fn last_update(&self) -> Option<(f64, f64)> {
        let (t, end, _) = self.last;
        let anchor = self.anchor.filter(|_| !self.given_up())?;
        let (k, lo, hi) = self
            .meeting(t - 2.0 * self.period.1, end)
            .rev()
            .find(|c| c.1 <= end)?;
        let (lo, hi) = if hi <= t {
            (lo, hi)
        } else {
            // The read met update k's interval: it may not have come.
            (self.candidate(anchor, k - 1).0, end.max(hi.min(end)))
        };
        (hi - lo <= KNOWN_FRACTION * self.period.0).then_some((lo, hi))
    }

    /// When to read next, given the regular time `due` (s): while the next
    /// update's interval is wider than [`SETTLED_S`], in its middle (or just
    /// past it, where the last read fell inside it); else `due`, moved just
    /// past an update's interval where it falls inside one.
    pub fn next_read(&self, due: f64) -> f64 {
        let (_, t0, _) = self.last;
        if self.given_up() {
            return due;
        }
        if self.anchor.is_none() {
            return due.min(t0 + 0.45 * self.period.0);
        }
        let past = |hi: f64| hi + READ_SLACK_S + 1e-4;
        // The first interval not ending at the last read (a read that found
        // the update ends its interval there).
        let ahead = self
            .meeting(t0, t0 + 2.0 * self.period.1)
            .find(|c| c.2 > t0 + 2.0 * READ_SLACK_S);
        if let Some((_, lo, hi)) = ahead {
            if hi - lo > SETTLED_S {
                let at = if t0 >= lo { past(hi) } else { (lo + hi) / 2.0 };
                return at.min(due);
            }
        }
        match self.meeting(due, due).next() {
            Some((_, lo, hi)) if lo < due => past(hi),
            _ => due,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows a counter whose `count(t)` the tracker reads where it asks, for
    /// `reads` reads from `t` on; answers the time of the last read.
    fn follow(p: &mut Phase, count: impl Fn(f64) -> u64, mut t: f64, reads: usize) -> f64 {
        for _ in 0..reads {
            t = p.next_read(t + 0.1);
            p.read(t, t, count(t));
        }
        t
    }

    fn lattice(period: f64, phase: f64) -> impl Fn(f64) -> u64 {
        move |t| ((t - phase) / period).floor() as u64
    }

    fn holds_the_last_update(p: &Phase, period: f64, phase: f64) {
        let (u0, u1) = p.last_update().expect("known");
        let t = p.last.1;
        let last = phase + ((t - phase) / period).floor() * period;
        assert!(
            u0 <= last + 1e-9 && last <= u1 + 1e-9,
            "{u0} {last} {u1} {p:?}"
        );
    }

    #[test]
    fn the_phase_of_a_lattice_counter_is_learned_within_a_few_periods() {
        for phase in [0.0, 0.013, 0.0505, 0.0999] {
            let count = lattice(0.1, phase);
            let mut p = Phase::new((0.0993, 0.1003), 1.0, count(1.0));
            let t = follow(&mut p, &count, 1.0, 15);
            assert!(t < 2.6, "{t}");
            let (lo, hi) = p.anchor.unwrap();
            assert!(hi - lo <= SETTLED_S, "{p:?}");
            holds_the_last_update(&p, 0.1, phase);
            // Long after: still known, the period narrower, about one read a
            // period.
            let t2 = follow(&mut p, &count, t, 600);
            assert!(t2 - t > 0.1 * 600.0 * 0.9, "{}", t2 - t);
            assert!(p.period.1 - p.period.0 < 1e-4, "{p:?}");
            assert!((p.period.0..=p.period.1).contains(&0.1), "{p:?}");
            holds_the_last_update(&p, 0.1, phase);
            assert_eq!(p.resets, 0);
        }
    }

    #[test]
    fn a_counter_whose_phase_jumps_is_learned_again_and_one_off_every_lattice_given_up() {
        // Every 100 ms, then from 5 s on 40 ms later.
        let jumps = |t: f64| {
            if t < 5.0 {
                (t / 0.1).floor() as u64
            } else {
                ((t - 0.04) / 0.1).floor() as u64
            }
        };
        let mut p = Phase::new((0.0993, 0.1003), 1.0, jumps(1.0));
        let t = follow(&mut p, jumps, 1.0, 150);
        assert_eq!(p.resets, 1, "{p:?}");
        holds_the_last_update(&p, 0.1, 0.04);
        assert!(t > 8.0, "{t}");
        // Moves at random times: no lattice.
        let mut seed = 7u64;
        let mut times = vec![0.0];
        while times.last().unwrap() < &100.0 {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
            times.push(
                times.last().unwrap() + 0.05 + (seed >> 40) as f64 / (1u64 << 24) as f64 * 0.1,
            );
        }
        let random = |t: f64| times.partition_point(|&x| x <= t) as u64;
        let mut p = Phase::new((0.0993, 0.1003), 1.0, random(1.0));
        follow(&mut p, random, 1.0, 500);
        assert!(p.given_up(), "{p:?}");
        assert_eq!(p.last_update(), None);
    }
}
