//! The one seam over the `backoff` crate: exponential delays with jitter.
//!
//! `backoff` is unmaintained (RUSTSEC-2025-0012); only its runtime-free part (`ExponentialBackoff` and
//! `next_backoff`) is used, here and nowhere else, so replacing it is a one-file change.

use std::time::Duration;

use backoff::backoff::Backoff as _;

/// Exponential backoff with ±`jitter` randomisation that never gives up.
pub struct Backoff {
    inner: backoff::ExponentialBackoff,
    max: Duration,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`, randomised by ±`jitter` (0.0–1.0).
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        let inner = backoff::ExponentialBackoff {
            current_interval: initial,
            initial_interval: initial,
            randomization_factor: jitter.clamp(0.0, 1.0),
            multiplier: 2.0,
            max_interval: max,
            // The default gives up after 15 minutes; a reconnect loop must not.
            max_elapsed_time: None,
            ..backoff::ExponentialBackoff::default()
        };
        Self { inner, max }
    }

    /// The RyzeAPI link's policy (contract §3): 0.5 s doubling to 30 s, ±20 % jitter.
    pub fn reconnect(initial: Duration, max: Duration) -> Self {
        Self::new(initial, max, 0.2)
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        // With `max_elapsed_time: None` the crate always yields a delay; `max` is the safe answer if not.
        self.inner.next_backoff().unwrap_or(self.max)
    }

    /// Back to the initial delay (after a link has been healthy for a while).
    pub fn reset(&mut self) {
        self.inner.reset();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 0.2);
        let delays: Vec<Duration> = (0..12).map(|_| b.next_delay()).collect();
        let within = |d: Duration, nominal: f64| {
            let s = d.as_secs_f64();
            s >= nominal * 0.8 - 1e-9 && s <= nominal * 1.2 + 1e-9
        };
        assert!(within(delays[0], 0.5), "{delays:?}");
        assert!(within(delays[1], 1.0), "{delays:?}");
        assert!(within(delays[2], 2.0), "{delays:?}");
        assert!(delays.iter().all(|d| d.as_secs_f64() <= 36.0), "{delays:?}");
        assert!(within(delays[11], 30.0), "capped: {delays:?}");
        b.reset();
        assert!(within(b.next_delay(), 0.5));
    }

    #[test]
    fn never_gives_up() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 0.0);
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_millis(2));
        }
    }
}
