//! One retry policy for every place that tries again: the service's conflicted
//! writes, a store's unprocessed batch items, the agent's calls to the endpoint.
//!
//! Waits grow exponentially from [`Backoff::first_ms`] to [`Backoff::max_ms`] and
//! are drawn uniformly below that bound ("full jitter"), from entropy the host
//! passes in, so that clients that failed together do not retry together.
//!
//! [`retry`] (blocking hosts) and [`retry_async`] (the service, the stores) are
//! the only loops that try again: the host lends them a way to wait, and its
//! randomness through the [`Delay`] each wait is given, and decides in that same
//! closure whether an error is worth another try (its kind, its patience, a
//! signal). The core itself has no clock and no randomness.

use std::future::Future;

/// Exponential back-off with full jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The bound of the first retry's wait, milliseconds (at least 1).
    pub first_ms: u64,
    /// The largest bound, milliseconds.
    pub max_ms: u64,
}

impl Backoff {
    /// The service's retries of a write that lost a version race: waits of at most
    /// 2, 4, ... 64 ms.
    pub const CONFLICT: Backoff = Backoff {
        first_ms: 2,
        max_ms: 64,
    };
    /// A store retrying the items a batch write left unprocessed (DynamoDB).
    pub const STORE: Backoff = Backoff {
        first_ms: 20,
        max_ms: 640,
    };
    /// A client retrying an endpoint that is unreachable or answers 5xx.
    pub const CLIENT: Backoff = Backoff {
        first_ms: 100,
        max_ms: 5_000,
    };

    /// The bound of retry number `retry`'s wait (1 is the first retry):
    /// `first_ms * 2^(retry - 1)`, capped at `max_ms`, and at least 1.
    pub fn bound_ms(&self, retry: u32) -> u64 {
        let doublings = retry.saturating_sub(1).min(63);
        self.first_ms
            .max(1)
            .checked_shl(doublings)
            .filter(|b| b >> doublings == self.first_ms.max(1))
            .unwrap_or(u64::MAX)
            .min(self.max_ms.max(1))
    }

    /// The wait before retry number `retry`, milliseconds: uniform in
    /// `1..=bound_ms(retry)`, drawn from `entropy`.
    fn delay_ms(&self, retry: u32, entropy: u64) -> u64 {
        1 + entropy % self.bound_ms(retry)
    }
}

/// The wait the driver asks for before one retry: which retry it is, and its
/// length once the host lends the randomness.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Delay {
    backoff: Backoff,
    retry: u32,
}

impl Delay {
    /// Which retry this wait comes before (1 is the first).
    pub fn retry(&self) -> u32 {
        self.retry
    }

    /// The wait, milliseconds: uniform in `1..=bound_ms(retry)`, drawn from
    /// `entropy` (64 fresh random bits from the host).
    pub fn ms(&self, entropy: u64) -> u64 {
        self.backoff.delay_ms(self.retry, entropy)
    }
}

/// Calls `attempt` until it succeeds or `pause` gives up: after each error,
/// `pause(&error, delay)` either waits `delay` (drawing it with the host's
/// randomness) and returns `true` to try again, or returns `false`, and the
/// error is the answer.
pub fn retry<T, E>(
    backoff: Backoff,
    mut attempt: impl FnMut() -> Result<T, E>,
    mut pause: impl FnMut(&E, Delay) -> bool,
) -> Result<T, E> {
    let mut retry = 0u32;
    loop {
        match attempt() {
            Err(e) => {
                retry = retry.saturating_add(1);
                if !pause(&e, Delay { backoff, retry }) {
                    return Err(e);
                }
            }
            done => return done,
        }
    }
}

/// What an async host lends [`retry_async`]: its randomness and its timer.
pub trait Timer {
    /// 64 fresh random bits.
    fn jitter(&mut self) -> u64;
    /// Waits `ms` milliseconds (a host without a timer may return at once).
    fn sleep_ms(&mut self, ms: u64) -> impl Future<Output = ()>;
}

/// [`retry`] for async hosts: awaits `attempt` until it succeeds or
/// `again(&error, retry)` says the error is the answer; before retry number
/// `retry` it waits a jittered [`Delay`] on `timer`.
pub async fn retry_async<T, E, Fut>(
    backoff: Backoff,
    timer: &mut impl Timer,
    mut attempt: impl FnMut() -> Fut,
    mut again: impl FnMut(&E, u32) -> bool,
) -> Result<T, E>
where
    Fut: Future<Output = Result<T, E>>,
{
    let mut retry = 0u32;
    loop {
        match attempt().await {
            Err(e) => {
                retry = retry.saturating_add(1);
                if !again(&e, retry) {
                    return Err(e);
                }
                let ms = Delay { backoff, retry }.ms(timer.jitter());
                timer.sleep_ms(ms).await;
            }
            done => return done,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_double_up_to_the_cap() {
        let b = Backoff::CONFLICT;
        let bounds: Vec<u64> = (1..=8).map(|r| b.bound_ms(r)).collect();
        assert_eq!(bounds, [2, 4, 8, 16, 32, 64, 64, 64]);
        assert_eq!(Backoff::CLIENT.bound_ms(1), 100);
        assert_eq!(Backoff::CLIENT.bound_ms(7), 5_000);
        // No overflow however many retries.
        assert_eq!(Backoff::CLIENT.bound_ms(u32::MAX), 5_000);
        let huge = Backoff {
            first_ms: u64::MAX / 2,
            max_ms: u64::MAX,
        };
        assert_eq!(huge.bound_ms(3), u64::MAX);
    }

    #[test]
    fn delays_are_jittered_within_the_bound() {
        let b = Backoff::STORE;
        for retry in 1..10 {
            for entropy in [0, 1, 19, 20, 12345, u64::MAX] {
                let d = b.delay_ms(retry, entropy);
                assert!(
                    (1..=b.bound_ms(retry)).contains(&d),
                    "{retry} {entropy} {d}"
                );
            }
        }
        assert_ne!(b.delay_ms(3, 5), b.delay_ms(3, 6));
        // A degenerate policy still waits at least 1 ms and never divides by zero.
        let zero = Backoff {
            first_ms: 0,
            max_ms: 0,
        };
        assert_eq!(zero.delay_ms(5, 99), 1);
    }

    #[test]
    fn retry_tries_until_success_with_growing_jittered_waits() {
        let mut calls = 0;
        let mut waits = Vec::new();
        let out: Result<u32, &str> = retry(
            Backoff::CONFLICT,
            || {
                calls += 1;
                if calls < 5 {
                    Err("busy")
                } else {
                    Ok(calls)
                }
            },
            |e, delay| {
                assert_eq!(*e, "busy");
                waits.push((delay.retry(), delay.ms(u64::MAX)));
                true
            },
        );
        assert_eq!(out, Ok(5));
        // The bound doubles each retry; entropy u64::MAX draws near its top.
        assert_eq!(waits, [(1, 2), (2, 4), (3, 8), (4, 16)]);
    }

    #[test]
    fn retry_answers_the_error_pause_gives_up_on() {
        let mut calls = 0;
        let out: Result<(), u32> = retry(
            Backoff::CLIENT,
            || {
                calls += 1;
                Err(calls)
            },
            |e, delay| {
                assert_eq!(*e, delay.retry());
                delay.retry() < 3
            },
        );
        assert_eq!(out, Err(3));
        assert_eq!(calls, 3);
        // A first success never pauses.
        let first: Result<u8, ()> = retry(Backoff::CLIENT, || Ok(7), |_, _| unreachable!());
        assert_eq!(first, Ok(7));
    }

    /// A timer that records its waits.
    struct Recorded(Vec<u64>);

    impl Timer for Recorded {
        fn jitter(&mut self) -> u64 {
            // One below a multiple of every bound: each wait is its bound.
            999_999
        }
        async fn sleep_ms(&mut self, ms: u64) {
            self.0.push(ms);
        }
    }

    #[test]
    fn retry_async_waits_on_the_hosts_timer() {
        let left = std::cell::Cell::new(3);
        let mut timer = Recorded(Vec::new());
        let out: Result<&str, &str> = pollster::block_on(retry_async(
            Backoff::STORE,
            &mut timer,
            || async {
                if left.get() == 0 {
                    return Ok("stored");
                }
                left.set(left.get() - 1);
                Err("unprocessed")
            },
            |e, retry| {
                assert_eq!((*e, retry), ("unprocessed", 3 - left.get()));
                true
            },
        ));
        assert_eq!(out, Ok("stored"));
        assert_eq!(timer.0, [20, 40, 80]);
        // `again` refusing answers the error without a wait.
        let mut timer = Recorded(Vec::new());
        let refused: Result<(), &str> = pollster::block_on(retry_async(
            Backoff::STORE,
            &mut timer,
            || async { Err("bad item") },
            |_, _| false,
        ));
        assert_eq!(refused, Err("bad item"));
        assert!(timer.0.is_empty());
    }
}
