//! The reconnection schedule: exponential backoff with jitter and a limit.
//!
//! Pure arithmetic, no clock and no I/O: [`ReconnectPolicy::delay`] takes the
//! jitter sample as an argument so the schedule is testable, and [`Backoff`]
//! only counts attempts. The client and the worker sleep on what it returns.

use std::time::Duration;

/// How to retry a lost connection.
///
/// Attempt `n` (1-based) waits `initial_backoff * multiplier^(n-1)`, capped
/// at `max_backoff`, then scaled by a random factor in
/// `[1 - jitter, 1 + jitter]` and capped again: no delay exceeds
/// `max_backoff`. After `max_attempts` failed attempts in a row the client
/// gives up ([`crate::ClientError::Disconnected`]); `None` retries forever.
/// A successful connection resets the count.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Growth per attempt; values under 1 are treated as 1.
    pub multiplier: f64,
    /// Fraction of the delay to randomize, 0 to 1 (clamped).
    pub jitter: f64,
    /// Attempts in a row before giving up; `Some(0)` never reconnects.
    pub max_attempts: Option<u32>,
}

impl Default for ReconnectPolicy {
    /// 0.5 s, doubling, capped at 30 s, ±20 %, 10 attempts (about 3 minutes).
    fn default() -> Self {
        ReconnectPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            multiplier: 2.0,
            jitter: 0.2,
            max_attempts: Some(10),
        }
    }
}

impl ReconnectPolicy {
    /// The delay before attempt `attempt` (1-based) without jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let secs = self.initial_backoff.as_secs_f64() * self.multiplier.max(1.0).powi(exponent);
        self.capped(secs)
    }

    /// The delay before attempt `attempt` with jitter sample `unit` in
    /// `[0, 1]` (0.5 is no jitter); `None` once attempts are exhausted.
    pub fn delay(&self, attempt: u32, unit: f64) -> Option<Duration> {
        if attempt == 0 || self.max_attempts.is_some_and(|max| attempt > max) {
            return None;
        }
        let jitter = if self.jitter.is_finite() { self.jitter.clamp(0.0, 1.0) } else { 0.0 };
        let unit = if unit.is_finite() { unit.clamp(0.0, 1.0) } else { 0.5 };
        let base = self.base_delay(attempt).as_secs_f64();
        Some(self.capped(base * (1.0 + jitter * (2.0 * unit - 1.0))))
    }

    /// A fresh schedule following this policy.
    pub fn backoff(&self) -> Backoff {
        Backoff { policy: self.clone(), attempts: 0 }
    }

    fn capped(&self, secs: f64) -> Duration {
        if !secs.is_finite() || secs >= self.max_backoff.as_secs_f64() {
            return self.max_backoff;
        }
        Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(self.max_backoff)
    }
}

/// Attempts made so far under a [`ReconnectPolicy`].
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: ReconnectPolicy,
    attempts: u32,
}

impl Backoff {
    /// The delay before the next attempt, with random jitter; `None` when
    /// the policy allows no more attempts.
    pub fn next_delay(&mut self) -> Option<Duration> {
        self.next_delay_with(rand::random::<f64>())
    }

    /// As [`Backoff::next_delay`] with the jitter sample given.
    pub fn next_delay_with(&mut self, unit: f64) -> Option<Duration> {
        let attempt = self.attempts.saturating_add(1);
        let delay = self.policy.delay(attempt, unit)?;
        self.attempts = attempt;
        Some(delay)
    }

    /// Attempts counted since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Start over (after a successful connection).
    pub fn reset(&mut self) {
        self.attempts = 0;
    }
}

impl Iterator for Backoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.next_delay()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_attempts: Option<u32>) -> ReconnectPolicy {
        ReconnectPolicy {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            multiplier: 2.0,
            jitter: 0.25,
            max_attempts,
        }
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn delays_grow_then_cap() {
        let mut backoff = policy(None).backoff();
        let delays: Vec<Duration> = (0..7).map(|_| backoff.next_delay_with(0.5).unwrap()).collect();
        assert_eq!(delays, [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000), ms(1000)]);
        assert_eq!(backoff.attempts(), 7);
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_under_the_cap() {
        let policy = policy(None);
        assert_eq!(policy.delay(2, 0.0), Some(ms(150)));
        assert_eq!(policy.delay(2, 1.0), Some(ms(250)));
        // At the cap, jitter can only shorten the delay.
        assert_eq!(policy.delay(10, 1.0), Some(ms(1000)));
        assert_eq!(policy.delay(10, 0.0), Some(ms(750)));
        let mut backoff = policy.backoff();
        let mut seen = std::collections::HashSet::new();
        for attempt in 1..=200u32 {
            let delay = backoff.next_delay().unwrap();
            let base = policy.base_delay(attempt).as_secs_f64();
            let secs = delay.as_secs_f64();
            assert!(
                secs >= base * 0.75 - 1e-9 && secs <= (base * 1.25).min(1.0) + 1e-9,
                "attempt {attempt}: {delay:?}"
            );
            seen.insert(delay);
        }
        assert!(seen.len() > 10, "jitter varies the delays: {seen:?}");
    }

    #[test]
    fn attempts_stop_at_the_maximum_and_reset() {
        let mut backoff = policy(Some(3)).backoff();
        assert_eq!(backoff.by_ref().count(), 3);
        assert_eq!(backoff.next_delay(), None);
        assert_eq!(backoff.attempts(), 3);
        backoff.reset();
        assert_eq!(backoff.next_delay_with(0.5), Some(ms(100)));
        assert_eq!(policy(Some(0)).backoff().next_delay(), None);
    }

    #[test]
    fn odd_settings_neither_panic_nor_shrink() {
        let odd = ReconnectPolicy {
            initial_backoff: ms(100),
            max_backoff: Duration::MAX,
            multiplier: 0.5,
            jitter: f64::NAN,
            max_attempts: None,
        };
        assert_eq!(odd.delay(5, 0.9), Some(ms(100)), "multiplier under 1 counts as 1, NaN jitter as none");
        let huge = ReconnectPolicy { multiplier: 1e300, ..odd };
        assert_eq!(huge.delay(u32::MAX, 0.5), Some(Duration::MAX));
        assert_eq!(policy(None).delay(0, 0.5), None);
    }
}
