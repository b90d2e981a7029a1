//! Backoff waits, from one doubling formula ([`doubling`]): the relay's retries of a queued item
//! ([`after_attempts`], exact) and the RyzeAPI link's reconnects ([`Backoff`], with jitter).
//!
//! `backoff` is unmaintained (RUSTSEC-2025-0012); only its jitter (`ExponentialBackoff::next_backoff`, on
//! an interval this module sets) is used, here and nowhere else, so replacing it is a one-file change.

use std::time::Duration;

use backoff::backoff::Backoff as _;

/// `first`, doubled `attempt` times, capped at `max`.
pub fn doubling(first: Duration, max: Duration, attempt: u32) -> Duration {
    // In nanoseconds, so that no attempt count overflows: past `max` is past `max`.
    let factor = 1u128.checked_shl(attempt.min(127)).unwrap_or(u128::MAX);
    let nanos = first.as_nanos().saturating_mul(factor).min(max.as_nanos());
    // `nanos` is at most `max`, which a `Duration` holds.
    Duration::new(
        u64::try_from(nanos / 1_000_000_000).unwrap_or(u64::MAX),
        u32::try_from(nanos % 1_000_000_000).unwrap_or(0),
    )
}

/// The wait before attempt `attempts + 1` of a queued item that failed for a passing reason: `min`
/// doubling per attempt, capped at `max` (`BRIDGE_RETRY_MIN_MS` / `BRIDGE_RETRY_MAX_MS`). No jitter: the
/// items of one integration wait in their chats' queues, not in a herd.
pub fn after_attempts((min, max): (Duration, Duration), attempts: i32) -> Duration {
    // The exponent stops at 16, as it always has (it only matters when `max` is over 65,536 × `min`).
    doubling(min, max, u32::try_from(attempts.clamp(0, 16)).unwrap_or(16))
}

/// Exponential backoff with ±`jitter` randomisation that never gives up.
pub struct Backoff {
    jitter: backoff::ExponentialBackoff,
    initial: Duration,
    max: Duration,
    /// Delays handed out since the start or the last reset.
    attempt: u32,
}

impl Backoff {
    /// Starts at `initial`, doubles up to `max`, randomised by ±`jitter` (0.0–1.0).
    pub fn new(initial: Duration, max: Duration, jitter: f64) -> Self {
        let jitter = backoff::ExponentialBackoff {
            randomization_factor: jitter.clamp(0.0, 1.0),
            // The interval is set before each delay; the crate's own growth is not used.
            multiplier: 1.0,
            // The default gives up after 15 minutes; a reconnect loop must not.
            max_elapsed_time: None,
            ..backoff::ExponentialBackoff::default()
        };
        Self { jitter, initial, max, attempt: 0 }
    }

    /// The RyzeAPI link's policy (contract §3): 0.5 s doubling to 30 s, ±20 % jitter.
    pub fn reconnect(initial: Duration, max: Duration) -> Self {
        Self::new(initial, max, 0.2)
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let interval = doubling(self.initial, self.max, self.attempt);
        self.attempt = self.attempt.saturating_add(1);
        self.jitter.current_interval = interval;
        // With `max_elapsed_time: None` the crate always yields a delay; the interval is the safe answer if not.
        self.jitter.next_backoff().unwrap_or(interval)
    }

    /// Back to the initial delay (after a link has been healthy for a while).
    pub fn reset(&mut self) {
        self.attempt = 0;
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
    fn the_formula_doubles_from_the_first_wait_up_to_the_cap() {
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        let waits: Vec<Duration> = (0..9).map(|n| doubling(ms(500), s(30), n)).collect();
        assert_eq!(waits, [ms(500), s(1), s(2), s(4), s(8), s(16), s(30), s(30), s(30)]);
        assert_eq!(doubling(ms(1), s(3600), 20), ms(1 << 20), "no cap of its own below `max`");
        assert_eq!(doubling(s(1), s(300), u32::MAX), s(300), "no overflow");
        assert_eq!(doubling(s(5), s(2), 0), s(2), "never over `max`");
    }

    #[test]
    fn the_relay_waits_are_pinned() {
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        // The defaults: 2 s doubling to 5 min.
        let waits: Vec<Duration> = (0..10).map(|n| after_attempts((s(2), s(300)), n)).collect();
        assert_eq!(waits, [s(2), s(4), s(8), s(16), s(32), s(64), s(128), s(256), s(300), s(300)]);
        assert_eq!(after_attempts((s(2), s(300)), -3), s(2), "a negative count is the first attempt");
        assert_eq!(after_attempts((ms(1), s(3600)), 40), ms(1 << 16), "the exponent stops at 16");
        assert_eq!(after_attempts((ms(50), ms(400)), i32::MAX), ms(400));
    }

    #[test]
    fn without_jitter_the_reconnect_delays_are_the_formula() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(800), 0.0);
        let delays: Vec<u128> = (0..6).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 800, 800]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn never_gives_up() {
        let mut b = Backoff::new(Duration::from_millis(1), Duration::from_millis(2), 0.0);
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_millis(2));
        }
    }
}
