//! Resilience building blocks, each small and tested on its own: backoff with jitter, token-
//! bucket rate limiting, circuit breaking and retry classification.

mod backoff;
mod breaker;
mod rate_limit;
mod retry;

pub use self::backoff::{Backoff, BackoffConfig};
pub use self::breaker::{BreakerConfig, BreakerState, CircuitBreaker};
pub use self::rate_limit::RateLimiter;
pub use self::retry::{ErrorClass, classify_http, parse_retry_after};
