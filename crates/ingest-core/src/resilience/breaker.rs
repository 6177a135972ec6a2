//! Circuit breaker: after `failure_threshold` consecutive failures the circuit opens and calls
//! are refused for `open_for`; then one trial call is let through (half-open): success closes
//! the circuit, failure opens it again. The state is exported as
//! `producer_circuit_breaker_state{provider,source}` (0 closed, 1 open, 2 half-open; breakers
//! sharing the labels show the worst of them: [`crate::telemetry::handles::BreakerGauge`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::telemetry::handles::BreakerGauge;

/// Breaker settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit.
    pub failure_threshold: u32,
    /// How long the circuit stays open before a trial.
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failure_threshold: 5, open_for: Duration::from_secs(30) }
    }
}

/// The state of a breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused.
    Open,
    /// One trial call is in flight.
    HalfOpen,
}

impl BreakerState {
    /// Gauge value: 0 closed, 1 open, 2 half-open.
    pub fn as_gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
        }
    }

    /// `closed`, `open`, `half_open` (for events and logs).
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }
}

/// A circuit breaker for one provider scope. Not shared: each polling loop owns its breaker.
#[derive(Debug)]
pub struct CircuitBreaker {
    cfg: BreakerConfig,
    state: BreakerState,
    failures: u32,
    opened_at: Option<Instant>,
    gauge: Option<BreakerGauge>,
}

impl CircuitBreaker {
    /// A closed breaker; `gauge` (if any) follows its state.
    pub fn new(cfg: BreakerConfig, gauge: Option<BreakerGauge>) -> Self {
        Self { cfg, state: BreakerState::Closed, failures: 0, opened_at: None, gauge }
    }

    /// Current state.
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// May a call go out now? `Err(wait)` while open. An open breaker whose time is up turns
    /// half-open and lets exactly this call through.
    pub fn allow(&mut self) -> Result<Option<BreakerState>, Duration> {
        match self.state {
            BreakerState::Closed => Ok(None),
            BreakerState::HalfOpen => Err(self.cfg.open_for),
            BreakerState::Open => {
                let since = self.opened_at.map_or(Duration::MAX, |t| t.elapsed());
                if since >= self.cfg.open_for {
                    Ok(self.set(BreakerState::HalfOpen))
                } else {
                    Err(self.cfg.open_for - since)
                }
            }
        }
    }

    /// The call succeeded. Returns the new state if it changed.
    pub fn on_success(&mut self) -> Option<BreakerState> {
        self.failures = 0;
        self.set(BreakerState::Closed)
    }

    /// The call failed. Returns the new state if it changed.
    pub fn on_failure(&mut self) -> Option<BreakerState> {
        self.failures = self.failures.saturating_add(1);
        let open = self.state == BreakerState::HalfOpen || self.failures >= self.cfg.failure_threshold;
        if open {
            self.opened_at = Some(Instant::now());
            return self.set(BreakerState::Open);
        }
        None
    }

    fn set(&mut self, to: BreakerState) -> Option<BreakerState> {
        if self.state == to {
            return None;
        }
        self.state = to;
        if let Some(g) = &mut self.gauge {
            g.set(to);
        }
        Some(to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_half_opens_after_timeout_and_closes_on_success() {
        let gauge = prometheus::IntGauge::new("g", "g").unwrap();
        let mut b = CircuitBreaker::new(
            BreakerConfig { failure_threshold: 3, open_for: Duration::from_secs(10) },
            Some(BreakerGauge::standalone(gauge.clone())),
        );
        assert_eq!(b.on_failure(), None);
        assert_eq!(b.on_failure(), None);
        assert_eq!(b.on_failure(), Some(BreakerState::Open));
        assert_eq!(gauge.get(), 1);
        assert_eq!(b.allow(), Err(Duration::from_secs(10)));
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(b.allow(), Err(Duration::from_secs(6)));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.allow(), Ok(Some(BreakerState::HalfOpen)));
        assert_eq!(gauge.get(), 2);
        assert!(b.allow().is_err(), "only one trial while half-open");
        assert_eq!(b.on_success(), Some(BreakerState::Closed));
        assert_eq!(gauge.get(), 0);
        assert_eq!(b.allow(), Ok(None));
    }

    #[tokio::test(start_paused = true)]
    async fn failed_trial_reopens_and_success_resets_the_count() {
        let mut b = CircuitBreaker::new(BreakerConfig { failure_threshold: 2, open_for: Duration::from_secs(1) }, None);
        b.on_failure();
        b.on_success();
        assert_eq!(b.on_failure(), None, "count restarted after success");
        assert_eq!(b.on_failure(), Some(BreakerState::Open));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(b.allow(), Ok(Some(BreakerState::HalfOpen)));
        assert_eq!(b.on_failure(), Some(BreakerState::Open));
        assert!(b.allow().is_err());
    }
}
