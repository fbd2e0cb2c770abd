//! One retry policy for every place that tries again: the service's conflicted
//! writes, a store's unprocessed batch items, the agent's calls to the endpoint.
//!
//! Waits grow exponentially from [`Backoff::first_ms`] to [`Backoff::max_ms`] and
//! are drawn uniformly below that bound ("full jitter"), from entropy the host
//! passes in, so that clients that failed together do not retry together.

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
    pub fn delay_ms(&self, retry: u32, entropy: u64) -> u64 {
        1 + entropy % self.bound_ms(retry)
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
}
