//! The `sec:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Section, require_url};
use serde::Deserialize;

/// `sec:` — SEC EDGAR.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecConfig {
    /// `User-Agent` the SEC requires: a name and a contact email (`SEC_USER_AGENT`),
    /// e.g. `"Example Corp data-team@example.com"`.
    pub user_agent: String,
    /// Root of `browse-edgar` and the Archives.
    pub base_url: String,
    /// Root of the submissions JSON API.
    pub data_url: String,
    /// Form types to follow in the current-filings feed (empty: all).
    pub form_types: Vec<String>,
    /// CIKs to backfill and reconcile from the submissions API.
    pub ciks: Vec<String>,
    /// Seconds between polls of the current-filings feed.
    pub interval_secs: u64,
    /// Seconds between polls of each CIK's submissions.
    pub submissions_interval_secs: u64,
    /// Entries per feed page (EDGAR accepts 10, 20, 40, 80, 100).
    pub page_size: u32,
    /// Read each CIK's older submission pages (`files[]`) once.
    pub backfill: bool,
    /// Requests per second to the SEC, all pollers together (fair access: at most 10).
    pub max_requests_per_second: f64,
    /// Seconds to stop after "Request Rate Threshold Exceeded" (the SEC blocks for 10 minutes).
    pub block_secs: u64,
    /// Accession numbers remembered to drop repeats (feed pages overlap; the feed and the
    /// submissions API report the same filings).
    pub dedup_window: usize,
}

impl Default for SecConfig {
    fn default() -> Self {
        Self {
            user_agent: String::new(),
            base_url: "https://www.sec.gov".into(),
            data_url: "https://data.sec.gov".into(),
            form_types: vec!["8-K".into(), "10-K".into(), "10-Q".into(), "4".into()],
            ciks: Vec::new(),
            interval_secs: 60,
            submissions_interval_secs: 3600,
            page_size: 100,
            backfill: false,
            max_requests_per_second: 5.0,
            block_secs: 600,
            dedup_window: 20_000,
        }
    }
}

impl Section for SecConfig {
    const NAME: &'static str = "sec";
    const LIST_KEYS: &'static [&'static str] = &["sec.form_types", "sec.ciks"];

    fn validate(&self) -> Result<(), ConfigError> {
        let ua = self.user_agent.trim();
        if ua.is_empty() || !ua.contains('@') {
            return Err(ConfigError::key(
                "sec.user_agent",
                "the SEC requires a User-Agent with a contact email, e.g. \"Example Corp data@example.com\" (set SEC_USER_AGENT)",
            ));
        }
        require_url("sec.base_url", &self.base_url, &["https", "http"])?;
        require_url("sec.data_url", &self.data_url, &["https", "http"])?;
        for c in &self.ciks {
            if c.is_empty() || c.len() > 10 || !c.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::key("sec.ciks", format!("`{c}` is not a CIK (up to 10 digits)")));
            }
        }
        if self.interval_secs == 0 {
            return Err(ConfigError::key("sec.interval_secs", "must be positive"));
        }
        if self.submissions_interval_secs == 0 {
            return Err(ConfigError::key("sec.submissions_interval_secs", "must be positive"));
        }
        if ![10, 20, 40, 80, 100].contains(&self.page_size) {
            return Err(ConfigError::key("sec.page_size", "must be one of 10, 20, 40, 80, 100"));
        }
        if !(self.max_requests_per_second > 0.0 && self.max_requests_per_second <= 10.0) {
            return Err(ConfigError::key(
                "sec.max_requests_per_second",
                "must be in (0, 10]: the SEC allows at most 10 requests a second",
            ));
        }
        if self.block_secs == 0 || self.dedup_window == 0 {
            return Err(ConfigError::key("sec.block_secs", "block_secs and dedup_window must be positive"));
        }
        Ok(())
    }
}
