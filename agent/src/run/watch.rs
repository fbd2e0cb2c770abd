//! The one wait loop of `measure` and `run`: while a command runs, the
//! [`Stopwatch`] takes the power samples that fall due, and in between the caller's
//! turn does its work and waits (for the command's end, its events, a signal) for
//! no longer than the next sample allows.

use std::ops::ControlFlow;
use std::time::Duration;

use crate::nvml::energy_meter::Stopwatch;
use crate::nvml::gpu::Gpus;

/// What the wait loop runs: a stopwatch over some GPUs, and a turn of work.
pub trait Watcher {
    /// What a turn that ends the loop answers.
    type Done;
    /// The stopwatch, and the GPUs it reads.
    fn clock(&mut self) -> (&mut Stopwatch, &dyn Gpus);
    /// One turn: its work, then a wait of at most `nap` (when the next power
    /// sample is due); `Break` ends the loop.
    fn turn(&mut self, nap: Duration) -> anyhow::Result<ControlFlow<Self::Done>>;
}

/// Runs `w`'s turns until one breaks, and answers what it broke with. Before
/// each turn the stopwatch takes the power sample that is due; the turn may wait
/// until the next one is (`longest` at most).
pub fn watch<W: Watcher + ?Sized>(w: &mut W, longest: Duration) -> anyhow::Result<W::Done> {
    loop {
        let nap = {
            let (clock, gpus) = w.clock();
            clock.tick(gpus, longest)?
        };
        if let ControlFlow::Break(done) = w.turn(nap)? {
            return Ok(done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nvml::gpu::fake::FakeGpus;

    /// Sleeps each turn's nap; halves the draw at the 5th turn, ends at the 10th
    /// (or fails at once).
    struct Turns {
        gpus: FakeGpus,
        clock: Stopwatch,
        turns: u32,
        naps: Vec<Duration>,
        fail: bool,
    }

    impl Watcher for Turns {
        type Done = &'static str;
        fn clock(&mut self) -> (&mut Stopwatch, &dyn Gpus) {
            (&mut self.clock, &self.gpus)
        }
        fn turn(&mut self, nap: Duration) -> anyhow::Result<ControlFlow<&'static str>> {
            if self.fail {
                anyhow::bail!("nvml failed");
            }
            self.naps.push(nap);
            std::thread::sleep(nap);
            self.turns += 1;
            if self.turns == 5 {
                self.gpus.set_power_limit(0, 100_000)?;
            }
            Ok(if self.turns == 10 {
                ControlFlow::Break("done")
            } else {
                ControlFlow::Continue(())
            })
        }
    }

    fn turns(interval: Duration, fail: bool) -> Turns {
        let mut gpus = FakeGpus::new(1);
        gpus.gpus[0].energy_mj = None;
        gpus.gpus[0].power_mw = 200_000;
        let clock = Stopwatch::start(&gpus, &[0], interval).unwrap();
        Turns {
            gpus,
            clock,
            turns: 0,
            naps: Vec::new(),
            fail,
        }
    }

    #[test]
    fn power_is_sampled_between_turns_and_a_turn_never_waits_past_a_sample() {
        let interval = Duration::from_millis(10);
        let mut t = turns(interval, false);
        assert_eq!(watch(&mut t, Duration::from_secs(1)).unwrap(), "done");
        assert_eq!(t.turns, 10);
        assert!(t.naps.iter().all(|n| *n <= interval), "{:?}", t.naps);
        let e = t.clock.read(&t.gpus).unwrap()[0];
        // 200 W, then 100 W: between 100 W and 200 W over the time passed.
        let s = t.clock.elapsed().as_secs_f64();
        assert!(
            e >= 100_000.0 * s * 0.9 && e < 200_000.0 * s,
            "{e} mJ in {s} s"
        );
    }

    #[test]
    fn an_error_of_a_turn_ends_the_loop() {
        let mut t = turns(Duration::from_millis(10), true);
        let err = watch(&mut t, Duration::ZERO).unwrap_err();
        assert_eq!(err.to_string(), "nvml failed");
    }
}
