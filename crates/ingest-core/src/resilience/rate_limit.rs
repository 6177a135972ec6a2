//! Token-bucket rate limiting, one bucket per scope the provider meters (a key, an endpoint).
//!
//! The bucket holds up to `burst` tokens and refills at `per_second`. A provider's explicit
//! "wait" (Retry-After, a rate-limit reset header) pauses the bucket until then.
//!
//! [`RateLimiter::acquire`] is fair: a caller that finds the bucket empty reserves the next
//! token (the bucket goes into debt) and sleeps until it is due, so callers are served in arrival
//! order and a busy poller cannot starve another one sharing the limit.

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
    /// Negative while tokens are reserved by waiting callers.
    tokens: f64,
    last: Instant,
    paused_until: Option<Instant>,
    /// Incremented by each pause: reservations made before it are void.
    pauses: u64,
}

impl RateLimiter {
    /// `per_second` sustained, up to `burst` at once. Starts full.
    pub fn new(per_second: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            per_second: per_second.max(f64::MIN_POSITIVE),
            burst,
            state: Mutex::new(State { tokens: burst, last: Instant::now(), paused_until: None, pauses: 0 }),
        }
    }

    /// Refills `s` up to `now`; `Err` while paused.
    fn refill(&self, s: &mut State, now: Instant) -> Result<(), Duration> {
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
        Ok(())
    }

    /// Takes one token if available; otherwise says how long until one is.
    pub fn try_acquire(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        self.refill(&mut s, now)?;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - s.tokens) / self.per_second))
        }
    }

    /// Waits for a token, in arrival order: the token is reserved at once and this waits until
    /// it is due. A pause voids reservations made before it (they are taken again after it).
    pub async fn acquire(&self) {
        loop {
            let (wait, epoch) = {
                let now = Instant::now();
                let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                match self.refill(&mut s, now) {
                    Err(paused) => (Err(paused), s.pauses),
                    Ok(()) => {
                        s.tokens -= 1.0;
                        let due = if s.tokens >= 0.0 { 0.0 } else { -s.tokens / self.per_second };
                        (Ok(Duration::from_secs_f64(due)), s.pauses)
                    }
                }
            };
            match wait {
                Ok(due) if due.is_zero() => return,
                Ok(due) => {
                    tokio::time::sleep(due).await;
                    if self.state.lock().unwrap_or_else(PoisonError::into_inner).pauses == epoch {
                        return;
                    }
                }
                Err(paused) => tokio::time::sleep(paused).await,
            }
        }
    }

    /// The provider asked us to wait `for_`: no token is handed out until then, and the bucket
    /// restarts empty (so we do not burst right at the reset).
    pub fn pause(&self, for_: Duration) {
        let mut s = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let until = Instant::now() + for_;
        s.paused_until = Some(s.paused_until.map_or(until, |u| u.max(until)));
        s.tokens = 0.0;
        s.pauses += 1;
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

    /// A poller that acquires in a tight loop (paging) does not starve one that asks once: the
    /// late caller is served within one refill.
    #[tokio::test(start_paused = true)]
    async fn a_greedy_caller_does_not_starve_another() {
        let l = std::sync::Arc::new(RateLimiter::new(10.0, 1));
        let start = Instant::now();
        let greedy = {
            let l = l.clone();
            tokio::spawn(async move {
                for _ in 0..50 {
                    l.acquire().await;
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(250)).await;
        let asked = start.elapsed();
        l.acquire().await;
        let waited = start.elapsed() - asked;
        assert!(waited <= Duration::from_millis(200), "waited {waited:?} behind a greedy caller");
        greedy.await.unwrap_or_default();
    }

    /// A pause while callers wait voids their reservations: nobody goes before its end.
    #[tokio::test(start_paused = true)]
    async fn a_pause_holds_callers_that_already_reserved() {
        let l = std::sync::Arc::new(RateLimiter::new(10.0, 1));
        l.acquire().await;
        let start = Instant::now();
        let waiter = {
            let l = l.clone();
            tokio::spawn(async move {
                l.acquire().await;
                start.elapsed()
            })
        };
        tokio::task::yield_now().await;
        l.pause(Duration::from_secs(5));
        let at = waiter.await.unwrap_or_default();
        assert!(at >= Duration::from_secs(5), "went at {at:?}");
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
