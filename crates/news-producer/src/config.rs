//! The `news:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, ProviderKeys, Secret, Section, require_symbols, require_url};
use serde::Deserialize;

/// `news.newsapi:` — NewsAPI.org v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewsApiConfig {
    /// Poll this provider.
    pub enabled: bool,
    /// API root.
    pub base_url: String,
    /// API key (`NEWS_API_KEY`).
    pub api_key: Secret,
    /// `/v2/everything` queries, one poller each.
    pub queries: Vec<String>,
    /// Poll `/v2/top-headlines` too.
    pub headlines: bool,
    /// `/v2/top-headlines` category (`business`, …).
    pub headlines_category: String,
    /// `/v2/top-headlines` country (2 letters).
    pub headlines_country: String,
    /// Seconds between polls of each poller.
    pub interval_secs: u64,
    /// Requests per UTC day to NewsAPI, all pollers together (0: no quota).
    pub daily_quota: u32,
}

impl Default for NewsApiConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://newsapi.org".into(),
            api_key: Secret::default(),
            queries: vec!["stock market".into(), "earnings".into()],
            headlines: true,
            headlines_category: "business".into(),
            headlines_country: "us".into(),
            interval_secs: 900,
            daily_quota: 100,
        }
    }
}

/// `news.alphavantage:` — Alpha Vantage `NEWS_SENTIMENT`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlphaVantageConfig {
    /// Poll this provider.
    pub enabled: bool,
    /// API root.
    pub base_url: String,
    /// API key (`ALPHAVANTAGE_API_KEY`).
    pub api_key: Secret,
    /// Tickers to ask about, one poller each (Alpha Vantage returns articles that mention all
    /// the tickers of a request, so they are asked one by one).
    pub tickers: Vec<String>,
    /// Topics to ask about, one poller each (`earnings`, `technology`, …).
    pub topics: Vec<String>,
    /// Seconds between polls of each poller.
    pub interval_secs: u64,
    /// Requests per UTC day, all pollers together (the free plan allows 25; 0: no quota).
    pub daily_quota: u32,
}

impl Default for AlphaVantageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://www.alphavantage.co".into(),
            api_key: Secret::default(),
            tickers: vec!["AAPL".into(), "MSFT".into(), "NVDA".into()],
            topics: Vec::new(),
            interval_secs: 3600,
            daily_quota: 25,
        }
    }
}

/// `news:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NewsConfig {
    /// NewsAPI.org.
    pub newsapi: NewsApiConfig,
    /// Alpha Vantage.
    pub alphavantage: AlphaVantageConfig,
    /// Symbols recognized in article text (as whole words or cashtags) for `tickers`.
    pub symbols: Vec<String>,
    /// Article ids remembered to drop repeats across polls and providers.
    pub dedup_window: usize,
    /// Consecutive failed polls of one poller that open its circuit breaker.
    pub breaker_failures: u32,
    /// Seconds an open breaker waits before a trial poll (half-open).
    pub breaker_open_secs: u64,
}

impl Default for NewsConfig {
    fn default() -> Self {
        Self {
            newsapi: NewsApiConfig::default(),
            alphavantage: AlphaVantageConfig::default(),
            symbols: ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA"].map(String::from).to_vec(),
            dedup_window: 10_000,
            breaker_failures: 5,
            breaker_open_secs: 30,
        }
    }
}

impl Section for NewsConfig {
    const NAME: &'static str = "news";
    const LIST_KEYS: &'static [&'static str] =
        &["news.newsapi.queries", "news.alphavantage.tickers", "news.alphavantage.topics", "news.symbols"];

    /// A provider whose key is not set is disabled (the others run); none left is an error.
    fn providers(&self) -> Vec<ProviderKeys> {
        vec![
            ProviderKeys::new(
                crate::newsapi::PROVIDER,
                self.newsapi.enabled,
                &[("news.newsapi.api_key", &self.newsapi.api_key)],
            ),
            ProviderKeys::new(
                crate::alphavantage::PROVIDER,
                self.alphavantage.enabled,
                &[("news.alphavantage.api_key", &self.alphavantage.api_key)],
            ),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.newsapi.enabled && !self.alphavantage.enabled {
            return Err(ConfigError::key("news", "enable at least one of news.newsapi and news.alphavantage"));
        }
        if self.newsapi.enabled {
            require_url("news.newsapi.base_url", &self.newsapi.base_url, &["https", "http"])?;
            if self.newsapi.interval_secs == 0 {
                return Err(ConfigError::key("news.newsapi.interval_secs", "must be positive"));
            }
            if self.newsapi.queries.is_empty() && !self.newsapi.headlines {
                return Err(ConfigError::key("news.newsapi.queries", "give a query or enable headlines"));
            }
            if self.newsapi.headlines && self.newsapi.headlines_category.is_empty() {
                return Err(ConfigError::key("news.newsapi.headlines_category", "must not be empty"));
            }
            if self.newsapi.queries.iter().any(|q| q.trim().is_empty() || q.len() > 500) {
                return Err(ConfigError::key("news.newsapi.queries", "each query must be 1-500 characters"));
            }
        }
        if self.alphavantage.enabled {
            require_url("news.alphavantage.base_url", &self.alphavantage.base_url, &["https", "http"])?;
            require_symbols("news.alphavantage.tickers", &self.alphavantage.tickers, true)?;
            if let Some(t) =
                self.alphavantage.topics.iter().find(|t| !crate::alphavantage::TOPICS.contains(&t.as_str()))
            {
                return Err(ConfigError::key(
                    "news.alphavantage.topics",
                    format!("`{t}` is not an Alpha Vantage topic ({})", crate::alphavantage::TOPICS.join(", ")),
                ));
            }
            if self.alphavantage.tickers.is_empty() && self.alphavantage.topics.is_empty() {
                return Err(ConfigError::key("news.alphavantage.tickers", "give at least one ticker or topic"));
            }
            if self.alphavantage.interval_secs == 0 {
                return Err(ConfigError::key("news.alphavantage.interval_secs", "must be positive"));
            }
        }
        require_symbols("news.symbols", &self.symbols, true)?;
        if self.breaker_failures == 0 || self.breaker_open_secs == 0 {
            return Err(ConfigError::key("news.breaker_failures", "breaker settings must be positive"));
        }
        if self.dedup_window == 0 {
            return Err(ConfigError::key("news.dedup_window", "must be positive"));
        }
        Ok(())
    }
}
