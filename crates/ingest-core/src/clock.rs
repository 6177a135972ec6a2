//! Wall-clock time that tests can control.
//!
//! Timing logic runs on tokio's clock (`tokio::time::Instant`), which tests pause and advance.
//! Logic that also needs the calendar (is the market open now?) reads the wall clock through a
//! [`Clock`]: [`Clock::System`] in production; [`Clock::starting_at`] in tests, a wall clock that
//! starts at a chosen moment (a Saturday, a holiday, the night of a DST switch) and moves with
//! tokio's paused clock.

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// Where "now" comes from.
#[derive(Debug, Clone, Copy, Default)]
pub enum Clock {
    /// `Utc::now()`.
    #[default]
    System,
    /// `utc` at tokio instant `at`, advancing with tokio's clock.
    Anchored {
        /// The wall time at `at`.
        utc: DateTime<Utc>,
        /// The tokio instant it corresponds to.
        at: Instant,
    },
}

impl Clock {
    /// A clock reading `utc` now and following tokio's (pausable) clock from here.
    pub fn starting_at(utc: DateTime<Utc>) -> Self {
        Clock::Anchored { utc, at: Instant::now() }
    }

    /// The current wall time.
    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Anchored { utc, at } => {
                *utc + chrono::Duration::from_std(at.elapsed()).unwrap_or(chrono::Duration::MAX)
            }
        }
    }

    /// The tokio instant at which this clock will read `t` (now, if `t` has passed).
    pub fn instant_at(&self, t: DateTime<Utc>) -> Instant {
        let ahead = (t - self.now()).to_std().unwrap_or_default();
        Instant::now() + ahead
    }
}

/// `2026-12-05T12:00:00Z` as a UTC time (tests).
#[cfg(test)]
pub(crate) fn utc(rfc3339: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(rfc3339).expect("an RFC 3339 time").with_timezone(&Utc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_anchored_clock_moves_with_tokio_time() {
        let start = utc("2026-12-05T12:00:00Z");
        let c = Clock::starting_at(start);
        tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
        assert_eq!(c.now(), start + chrono::Duration::hours(1));
        let later = start + chrono::Duration::hours(3);
        assert_eq!(c.instant_at(later) - Instant::now(), std::time::Duration::from_secs(7200));
    }
}
