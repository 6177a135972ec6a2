//! Exponential backoff with jitter, for reconnects and retries.
//!
//! Delay of attempt n (0-based) = min(max, base · factor^n), minus a random share of up to
//! `jitter` of it, so that many clients that failed together do not retry together.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffConfig {
    /// First delay.
    pub base: Duration,
    /// Largest delay.
    pub max: Duration,
    /// Growth per attempt (2.0 doubles).
    pub factor: f64,
    /// Share of each delay that is randomized away, in [0, 1] (0 = no jitter).
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self { base: Duration::from_millis(500), max: Duration::from_secs(60), factor: 2.0, jitter: 0.5 }
    }
}

/// Stateful backoff: call [`Backoff::next_delay`] after each failure and [`Backoff::reset`]
/// (or [`Backoff::reset_if_healthy`]) after success.
#[derive(Debug)]
pub struct Backoff {
    cfg: BackoffConfig,
    attempt: u32,
    rng: StdRng,
}

impl Backoff {
    /// A backoff seeded from the OS.
    pub fn new(cfg: BackoffConfig) -> Self {
        Self::with_seed(cfg, rand::random())
    }

    /// A backoff with a fixed seed (tests).
    pub fn with_seed(cfg: BackoffConfig, seed: u64) -> Self {
        Self { cfg, attempt: 0, rng: StdRng::seed_from_u64(seed) }
    }

    /// Failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next try; advances the attempt counter.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.cfg.factor.max(1.0).powi(i32::try_from(self.attempt.min(64)).unwrap_or(64));
        let ceiling = self.cfg.base.as_secs_f64() * exp;
        let capped = ceiling.min(self.cfg.max.as_secs_f64());
        let jitter = self.cfg.jitter.clamp(0.0, 1.0);
        let cut: f64 = if jitter > 0.0 { self.rng.random_range(0.0..=jitter) } else { 0.0 };
        self.attempt = self.attempt.saturating_add(1);
        Duration::from_secs_f64(capped * (1.0 - cut))
    }

    /// Back to the first delay.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Resets only when the connection stayed up for at least `min_healthy`: a connection that
    /// drops right after connecting keeps backing off instead of hammering the provider.
    pub fn reset_if_healthy(&mut self, up_for: Duration, min_healthy: Duration) -> bool {
        let healthy = up_for >= min_healthy;
        if healthy {
            self.reset();
        }
        healthy
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(jitter: f64) -> BackoffConfig {
        BackoffConfig { base: Duration::from_millis(100), max: Duration::from_secs(2), factor: 2.0, jitter }
    }

    #[test]
    fn grows_exponentially_to_the_cap_without_jitter() {
        let mut b = Backoff::with_seed(cfg(0.0), 1);
        let ms: Vec<u128> = (0..8).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1600, 2000, 2000, 2000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let mut b = Backoff::with_seed(cfg(0.5), 7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            b.reset();
            let d = b.next_delay();
            assert!(d >= Duration::from_millis(50) && d <= Duration::from_millis(100), "{d:?}");
            seen.insert(d);
        }
        assert!(seen.len() > 50, "jitter should spread delays, got {} distinct", seen.len());
    }

    #[test]
    fn reset_only_after_a_healthy_period() {
        let mut b = Backoff::with_seed(cfg(0.0), 1);
        b.next_delay();
        b.next_delay();
        assert!(!b.reset_if_healthy(Duration::from_secs(1), Duration::from_secs(30)));
        assert_eq!(b.attempt(), 2);
        assert!(b.reset_if_healthy(Duration::from_secs(31), Duration::from_secs(30)));
        assert_eq!(b.attempt(), 0);
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::with_seed(cfg(0.0), 1);
        for _ in 0..10_000 {
            assert!(b.next_delay() <= Duration::from_secs(2));
        }
    }
}
