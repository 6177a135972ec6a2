//! Token-bucket rate limiting, one bucket per scope the provider meters (a key, an endpoint).
//!
//! The bucket holds up to `burst` tokens and refills at `per_second`. A provider's explicit
//! "wait" (Retry-After, a rate-limit reset header) pauses the bucket until then.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// A shareable token bucket (uses tokio's clock, so tests can pause time).
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
}

impl RateLimiter {
    /// `per_second` sustained, up to `burst` at once. Starts full.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new(State { tokens: burst, last: Instant::now(), paused_until: None }),
        }
    }

    /// Takes one token if available; otherwise says how long until one is.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(until) = s.paused_until {
            if now < until {
                return Err(until - now);
            }
            s.paused_until = None;
            s.last = now;
        }
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * self.per_second).min(self.burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / self.per_second))
        }
    }

    /// Waits for a token.
    pub async fn acquire(&self) {
        while let Err(wait) = self.try_acquire() {
            tokio::time::sleep(wait).await;
        }
    }

    /// The provider asked us to wait `for_`: no token is handed out until then, and the bucket
    /// restarts empty (so we do not burst right at the reset).
    pub fn pause(&self, for_: Duration) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let until = Instant::now() + for_;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        s.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn allows_burst_then_refills_at_rate() {
        let l = RateLimiter::new(10.0, 3);
        for _ in 0..3 {
            assert!(l.try_acquire().is_ok());
        }
        let wait = l.try_acquire().unwrap_err();
        assert_eq!(wait, Duration::from_millis(100));
        tokio::time::advance(Duration::from_millis(100)).await;
        assert!(l.try_acquire().is_ok());
        tokio::time::advance(Duration::from_secs(10)).await;
        for _ in 0..3 {
            assert!(l.try_acquire().is_ok(), "refill is capped at burst");
        }
        assert!(l.try_acquire().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn acquire_paces_callers() {
        let l = RateLimiter::new(5.0, 1);
        let start = Instant::now();
        for _ in 0..6 {
            l.acquire().await;
        }
        // 1 immediately, 5 more at 200 ms each.
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn pause_blocks_until_the_provider_said() {
        let l = RateLimiter::new(100.0, 10);
        l.pause(Duration::from_secs(30));
        assert_eq!(l.try_acquire().unwrap_err(), Duration::from_secs(30));
        tokio::time::advance(Duration::from_secs(30)).await;
        // Restarts empty: the first token needs a refill interval.
        assert!(l.try_acquire().is_err());
        tokio::time::advance(Duration::from_millis(10)).await;
        assert!(l.try_acquire().is_ok());
    }
}
