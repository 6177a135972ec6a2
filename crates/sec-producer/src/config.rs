//! The `sec:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Section, require_url};
use serde::Deserialize;

/// `sec:` — SEC EDGAR.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SecConfig {
    /// `User-Agent` the SEC requires: a name and a contact email (`SEC_USER_AGENT`),
    /// e.g. `"Example Corp data-team@example.com"`.
    pub(crate) user_agent: String,
    /// Root of `browse-edgar` and the Archives.
    pub(crate) base_url: String,
    /// Root of the submissions JSON API.
    pub(crate) data_url: String,
    /// Form types to follow in the current-filings feed (empty: all).
    pub(crate) form_types: Vec<String>,
    /// CIKs to backfill and reconcile from the submissions API.
    pub(crate) ciks: Vec<String>,
    /// Seconds between polls of the current-filings feed.
    pub(crate) interval_secs: u64,
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
        Ok(())
    }
}
