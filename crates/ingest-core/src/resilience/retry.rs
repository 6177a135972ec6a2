//! Retry classification: is a failure worth retrying, after how long, or is it fatal?

use std::time::{Duration, SystemTime};

/// What to do about a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Transient (5xx, timeout, connection reset): retry with backoff, or after `after` if the
    /// provider said so.
    Retryable {
        /// The provider's Retry-After, if given.
        after: Option<Duration>,
    },
    /// The provider is rate limiting us (429 or an in-band notice): pause, then retry.
    RateLimited {
        /// The provider's Retry-After, if given.
        after: Option<Duration>,
    },
    /// This request will never succeed as is (400, malformed response): count it, dead-letter
    /// what we have, move on.
    Permanent,
    /// This one source is refused (401/403 for one resource: a private subreddit, a site's WAF, a
    /// source's own key). Only that source waits (the group's `refused_retry`, minutes) with an
    /// event and a `/ready` reason naming it; the others keep running.
    Denied,
    /// A configured name does not exist (404 for a subreddit, a symbol, a CIK): that source
    /// retries at most once per `missing_retry` (15 min by default), one warning per try.
    NotFound,
    /// The provider's period quota is used up (X's monthly cap, Alpha Vantage's daily cap):
    /// paused until `until` (or the configured fallback), with an event.
    QuotaExhausted {
        /// When the quota resets, if the provider said.
        until: Option<Duration>,
    },
    /// Retrying cannot help and continuing is pointless: a credential every source of the
    /// provider shares (an API key, an OAuth client) is refused. Stops the producer with a
    /// message naming the setting.
    Fatal,
    /// A guard of ours refused the target (the SSRF guard): the provider never saw the request.
    /// Counted apart; the source tries again next interval (its config may be fixed by then).
    Refused,
}

impl ErrorClass {
    /// True for the two classes that are retried.
    pub fn is_retryable(self) -> bool {
        matches!(self, ErrorClass::Retryable { .. } | ErrorClass::RateLimited { .. })
    }

    /// Every label [`ErrorClass::label`] gives, and `ok`: the `outcome`s of
    /// `producer_api_calls_total` (created at 0 when a poller starts).
    pub const OUTCOMES: [&'static str; 9] = [
        "ok",
        "retryable_error",
        "rate_limited",
        "permanent_error",
        "denied",
        "not_found",
        "quota_exhausted",
        "fatal_error",
        "refused",
    ];

    /// A short label for metrics (`outcome` of `producer_api_calls_total`).
    pub fn label(self) -> &'static str {
        match self {
            ErrorClass::Retryable { .. } => "retryable_error",
            ErrorClass::RateLimited { .. } => "rate_limited",
            ErrorClass::Permanent => "permanent_error",
            ErrorClass::Denied => "denied",
            ErrorClass::NotFound => "not_found",
            ErrorClass::QuotaExhausted { .. } => "quota_exhausted",
            ErrorClass::Fatal => "fatal_error",
            ErrorClass::Refused => "refused",
        }
    }
}

/// Generic HTTP classification; providers override the cases they document differently (SEC's
/// 403 is a rate block, Alpha Vantage errors come with 200). `None` for success (2xx/3xx).
pub fn classify_http(status: u16, retry_after: Option<&str>, now: SystemTime) -> Option<ErrorClass> {
    let after = retry_after.and_then(|v| parse_retry_after(v, now));
    match status {
        200..=399 => None,
        // Per source by default: a poller whose credential every source shares (one API key)
        // overrides `classify` to make its 401 fatal.
        401 | 403 => Some(ErrorClass::Denied),
        404 | 410 => Some(ErrorClass::NotFound),
        429 => Some(ErrorClass::RateLimited { after }),
        408 | 425 | 500..=599 => Some(ErrorClass::Retryable { after }),
        _ => Some(ErrorClass::Permanent),
    }
}

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP-date. Dates in the past give
/// zero; garbage gives `None`. Capped at one day so a bogus header cannot stall a source forever.
pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    const CAP: Duration = Duration::from_secs(86_400);
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(CAP));
    }
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(CAP.as_secs_f64())));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO).min(CAP))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        let now = httpdate::parse_http_date("Tue, 02 Jan 2024 14:30:00 GMT").unwrap();
        let cases = [
            ("120", Some(Duration::from_secs(120))),
            (" 7 ", Some(Duration::from_secs(7))),
            ("1.5", Some(Duration::from_millis(1500))),
            ("Tue, 02 Jan 2024 14:31:30 GMT", Some(Duration::from_secs(90))),
            ("Tue, 02 Jan 2024 14:00:00 GMT", Some(Duration::ZERO)),
            ("999999999", Some(Duration::from_secs(86_400))),
            ("-3", None),
            ("soon", None),
        ];
        for (v, want) in cases {
            assert_eq!(parse_retry_after(v, now), want, "{v}");
        }
    }

    #[test]
    fn http_statuses() {
        let now = SystemTime::UNIX_EPOCH;
        let cases = [
            (200, None),
            (304, None),
            (400, Some(ErrorClass::Permanent)),
            (404, Some(ErrorClass::NotFound)),
            (410, Some(ErrorClass::NotFound)),
            (401, Some(ErrorClass::Denied)),
            (403, Some(ErrorClass::Denied)),
            (429, Some(ErrorClass::RateLimited { after: None })),
            (500, Some(ErrorClass::Retryable { after: None })),
            (503, Some(ErrorClass::Retryable { after: None })),
            (408, Some(ErrorClass::Retryable { after: None })),
        ];
        for (status, want) in cases {
            assert_eq!(classify_http(status, None, now), want, "{status}");
        }
        assert_eq!(
            classify_http(429, Some("30"), now),
            Some(ErrorClass::RateLimited { after: Some(Duration::from_secs(30)) })
        );
        assert!(ErrorClass::RateLimited { after: None }.is_retryable());
        assert!(!ErrorClass::Fatal.is_retryable());
        for c in [
            ErrorClass::Retryable { after: None },
            ErrorClass::RateLimited { after: None },
            ErrorClass::Permanent,
            ErrorClass::Denied,
            ErrorClass::NotFound,
            ErrorClass::QuotaExhausted { until: None },
            ErrorClass::Fatal,
            ErrorClass::Refused,
        ] {
            assert!(ErrorClass::OUTCOMES.contains(&c.label()), "{c:?}");
        }
    }
}
