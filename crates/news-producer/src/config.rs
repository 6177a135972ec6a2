//! The `news:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Secret, Section, require_secret, require_symbols, require_url};
use serde::Deserialize;

/// `news.newsapi:` — NewsAPI.org v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NewsApiConfig {
    /// Poll this provider.
    pub(crate) enabled: bool,
    /// API root.
    pub(crate) base_url: String,
    /// API key (`NEWS_API_KEY`).
    pub(crate) api_key: Secret,
    /// `/v2/everything` queries.
    pub(crate) queries: Vec<String>,
    /// Seconds between polls.
    pub(crate) interval_secs: u64,
}

impl Default for NewsApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://newsapi.org".into(),
            api_key: Secret::default(),
            queries: vec!["stock market".into()],
            interval_secs: 300,
        }
    }
}

/// `news.alphavantage:` — Alpha Vantage `NEWS_SENTIMENT`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct AlphaVantageConfig {
    /// Poll this provider.
    pub(crate) enabled: bool,
    /// API root.
    pub(crate) base_url: String,
    /// API key (`ALPHAVANTAGE_API_KEY`).
    pub(crate) api_key: Secret,
    /// Tickers to ask about.
    pub(crate) tickers: Vec<String>,
    /// Seconds between polls.
    pub(crate) interval_secs: u64,
}

impl Default for AlphaVantageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://www.alphavantage.co".into(),
            api_key: Secret::default(),
            tickers: vec!["AAPL".into(), "MSFT".into()],
            interval_secs: 900,
        }
    }
}

/// `news:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct NewsConfig {
    /// NewsAPI.org.
    pub(crate) newsapi: NewsApiConfig,
    /// Alpha Vantage.
    pub(crate) alphavantage: AlphaVantageConfig,
}

impl Section for NewsConfig {
    const NAME: &'static str = "news";
    const LIST_KEYS: &'static [&'static str] = &["news.newsapi.queries", "news.alphavantage.tickers"];

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.newsapi.enabled && !self.alphavantage.enabled {
            return Err(ConfigError::key("news", "enable at least one of news.newsapi and news.alphavantage"));
        }
        if self.newsapi.enabled {
            require_url("news.newsapi.base_url", &self.newsapi.base_url, &["https", "http"])?;
            require_secret("news.newsapi.api_key", &self.newsapi.api_key, "news.newsapi.enabled is true")?;
            if self.newsapi.interval_secs == 0 {
                return Err(ConfigError::key("news.newsapi.interval_secs", "must be positive"));
            }
        }
        if self.alphavantage.enabled {
            require_url("news.alphavantage.base_url", &self.alphavantage.base_url, &["https", "http"])?;
            require_secret(
                "news.alphavantage.api_key",
                &self.alphavantage.api_key,
                "news.alphavantage.enabled is true",
            )?;
            require_symbols("news.alphavantage.tickers", &self.alphavantage.tickers, true)?;
            if self.alphavantage.interval_secs == 0 {
                return Err(ConfigError::key("news.alphavantage.interval_secs", "must be positive"));
            }
        }
        Ok(())
    }
}
