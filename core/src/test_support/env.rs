//! A deterministic host for tests: a clock that ticks a fixed step per call, a
//! counter (an LCG) as entropy, no waiting.

use crate::service::HostEnv;

/// A deterministic host environment.
pub struct TestEnv {
    /// The clock, in ms; every call to `now_ms` first adds `tick_ms`.
    pub now: i64,
    /// How far the clock moves per call, in ms.
    pub tick_ms: i64,
    /// The entropy counter's state.
    pub seed: u64,
}

impl HostEnv for TestEnv {
    fn now_ms(&mut self) -> i64 {
        self.now += self.tick_ms;
        self.now
    }
    fn entropy(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed
    }
    async fn backoff(&mut self, _ms: u64) {}
}
