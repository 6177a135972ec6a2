//! What a provider's pollers share: a token-bucket rate limit and an optional daily quota.

use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};

use crate::resilience::RateLimiter;

/// Requests per UTC day to one provider.
#[derive(Debug)]
pub(super) struct Quota {
    pub(super) limit: u32,
    pub(super) day: NaiveDate,
    pub(super) used: u32,
}

impl Quota {
    /// Takes one request, or says how long until the next UTC midnight.
    pub(super) fn take(&mut self, now: DateTime<Utc>) -> Result<(), Duration> {
        let today = now.date_naive();
        if today != self.day {
            (self.day, self.used) = (today, 0);
        }
        if self.used < self.limit {
            self.used += 1;
            return Ok(());
        }
        let midnight = today.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)).map(|t| t.and_utc());
        Err(midnight.and_then(|m| (m - now).to_std().ok()).unwrap_or(Duration::from_secs(3600)))
    }
}

/// What a provider's pollers share.
#[derive(Debug)]
pub(super) struct ProviderLimits {
    pub(super) limiter: RateLimiter,
    pub(super) quota: Option<Mutex<Quota>>,
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn daily_quota_resets_at_utc_midnight() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 23, 0, 0).unwrap();
        let mut q = Quota { limit: 2, day: t.date_naive(), used: 0 };
        assert!(q.take(t).is_ok() && q.take(t).is_ok());
        assert_eq!(q.take(t), Err(Duration::from_secs(3600)));
        assert!(q.take(t + chrono::Duration::hours(1)).is_ok(), "a new day");
    }
}
