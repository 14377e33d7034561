//! The delay between attempts: exponential between two bounds, with jitter.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// How long to wait before each retry.
///
/// The delay before retry `n` (1-based) is `min * 2^(n-1)`, capped at
/// `max`, then jittered down by up to half ("equal jitter"): with
/// `100ms..10s` the first retry waits 50–100 ms, the second 100–200 ms, and
/// from the eighth on 5–10 s. Jitter spreads out consumers that failed
/// together (a database outage), so they do not retry in lockstep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    min: Duration,
    max: Duration,
}

impl Default for Backoff {
    /// `100ms..10s`.
    fn default() -> Self {
        Self {
            min: Duration::from_millis(100),
            max: Duration::from_secs(10),
        }
    }
}

impl Backoff {
    /// Exponential from `min` to `max`. `min > max` is reported by
    /// [`ConsumerBuilder::build`](crate::ConsumerBuilder::build).
    pub const fn exponential(min: Duration, max: Duration) -> Self {
        Self { min, max }
    }

    /// The same delay before every retry (still jittered).
    pub const fn constant(delay: Duration) -> Self {
        Self {
            min: delay,
            max: delay,
        }
    }

    /// The first retry's delay, before jitter.
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The longest delay, before jitter.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The delay before retry `retry` (1-based), jittered.
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let ceiling = self
            .min
            .saturating_mul(1u32 << doublings)
            .min(self.max)
            .max(self.min.min(self.max));
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        let half = nanos / 2;
        Duration::from_nanos(half + jitter(nanos - half))
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if self.min > self.max {
            return Err(format!(
                "backoff {:?}..{:?} is inverted: the first bound must not exceed the second",
                self.min, self.max
            ));
        }
        Ok(())
    }
}

impl std::fmt::Display for Backoff {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{:?}", self.min)
        } else {
            write!(f, "{:?}..{:?}", self.min, self.max)
        }
    }
}

/// A uniform value in `0..=bound`, from a per-thread xorshift generator
/// seeded by the standard library's random hasher keys.
fn jitter(bound: u64) -> u64 {
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let mut hasher = RandomState::new().build_hasher();
            hasher.write_u64(0x9e37_79b9_7f4a_7c15);
            hasher.finish() | 1
        });
    }
    if bound == 0 {
        return 0;
    }
    let random = STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x
    });
    random % (bound + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_from_min_and_stop_at_max_with_jitter_down_to_half() {
        let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10));
        for _ in 0..200 {
            for (retry, ceiling_ms) in [(1, 100), (2, 200), (3, 400), (7, 6400), (8, 10_000)] {
                let delay = backoff.delay(retry);
                let ceiling = Duration::from_millis(ceiling_ms);
                assert!(
                    delay <= ceiling && delay >= ceiling / 2,
                    "retry {retry}: {delay:?} not within {:?}..={ceiling:?}",
                    ceiling / 2
                );
            }
            assert!(backoff.delay(u32::MAX) <= Duration::from_secs(10));
        }
    }

    #[test]
    fn jitter_varies() {
        let backoff = Backoff::constant(Duration::from_secs(1));
        let delays: std::collections::HashSet<Duration> =
            (0..50).map(|_| backoff.delay(1)).collect();
        assert!(delays.len() > 10, "only {} distinct delays", delays.len());
    }

    #[test]
    fn inverted_bounds_are_rejected() {
        assert!(
            Backoff::exponential(Duration::from_secs(2), Duration::from_secs(1))
                .check()
                .is_err()
        );
        assert!(Backoff::constant(Duration::ZERO).check().is_ok());
    }
}
