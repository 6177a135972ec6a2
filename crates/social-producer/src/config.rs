//! The `social:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, ProviderKeys, Secret, Section, require_symbols, require_url};
use serde::Deserialize;

/// `social.reddit:` — Reddit OAuth2 application-only API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedditConfig {
    /// Poll Reddit.
    pub enabled: bool,
    /// API root for listings.
    pub base_url: String,
    /// Token endpoint root.
    pub auth_url: String,
    /// OAuth client id (`REDDIT_CLIENT_ID`).
    pub client_id: Secret,
    /// OAuth client secret (`REDDIT_CLIENT_SECRET`).
    pub client_secret: Secret,
    /// Subreddits to follow (without `r/`), one poller each.
    pub subreddits: Vec<String>,
    /// Seconds between polls of each subreddit.
    pub interval_secs: u64,
    /// Requests per minute to Reddit, all pollers together (free tier: 100).
    pub requests_per_minute: u32,
    /// When more than a page of new posts arrived since the last poll (a busy subreddit, a
    /// restart after downtime), older pages are followed with `after` back to the last post
    /// seen, at most this many pages (100 posts each) per catch-up; a cut is a `gap` event.
    pub catch_up_pages: u32,
}

impl Default for RedditConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://oauth.reddit.com".into(),
            auth_url: "https://www.reddit.com".into(),
            client_id: Secret::default(),
            client_secret: Secret::default(),
            subreddits: vec!["wallstreetbets".into(), "stocks".into()],
            interval_secs: 60,
            requests_per_minute: 60,
            // Reddit's listings go about 1,000 posts deep.
            catch_up_pages: 10,
        }
    }
}

/// `social.twitter:` — X (Twitter) API v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TwitterConfig {
    /// Stream from X.
    pub enabled: bool,
    /// API root.
    pub base_url: String,
    /// Consumer key (`TWITTER_API_KEY`), optional with a bearer token.
    pub api_key: Secret,
    /// Consumer secret (`TWITTER_API_SECRET`), optional with a bearer token.
    pub api_secret: Secret,
    /// App bearer token (`TWITTER_BEARER_TOKEN`).
    pub bearer_token: Secret,
    /// `stream` (the v2 filtered stream; not built yet) or `search` (recent search, polled).
    pub mode: String,
    /// Rules: filtered-stream rules, or recent-search queries joined with OR.
    pub rules: Vec<String>,
    /// Seconds between recent-search polls.
    pub interval_secs: u64,
    /// Recent-search requests per 15 minutes (the app limit is 450).
    pub requests_per_15min: u32,
    /// Stream: no byte for this long (X sends keep-alives every ~20 s) means reconnect.
    pub stream_read_timeout_secs: u64,
    /// Stream reconnects after network trouble: the first at once, then this much more per
    /// attempt, up to `reconnect_network_max_secs`.
    pub reconnect_network_step_ms: u64,
    /// Cap of the network reconnect schedule.
    pub reconnect_network_max_secs: u64,
    /// Stream reconnects after an HTTP error: this first wait, doubling, up to the max.
    pub reconnect_http_base_secs: u64,
    /// Cap of the HTTP reconnect schedule.
    pub reconnect_http_max_secs: u64,
    /// Stream reconnects after HTTP 429: this first wait, doubling.
    pub reconnect_rate_limit_base_secs: u64,
}

impl Default for TwitterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://api.x.com".into(),
            api_key: Secret::default(),
            api_secret: Secret::default(),
            bearer_token: Secret::default(),
            mode: "stream".into(),
            rules: vec!["($AAPL OR $TSLA OR $NVDA) lang:en -is:retweet".into()],
            interval_secs: 60,
            requests_per_15min: 180,
            stream_read_timeout_secs: 21,
            reconnect_network_step_ms: 250,
            reconnect_network_max_secs: 16,
            reconnect_http_base_secs: 5,
            reconnect_http_max_secs: 320,
            reconnect_rate_limit_base_secs: 60,
        }
    }
}

/// `social.stocktwits:` — StockTwits symbol streams (no key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StockTwitsConfig {
    /// Poll StockTwits.
    pub enabled: bool,
    /// API root.
    pub base_url: String,
    /// Symbols to follow, one poller each.
    pub symbols: Vec<String>,
    /// Seconds between polls of each symbol.
    pub interval_secs: u64,
    /// Requests per hour to StockTwits, all pollers together (unauthenticated: 200).
    pub requests_per_hour: u32,
    /// When more than a page of new messages arrived since the last poll, older pages are
    /// followed with `max` back to the last message seen, at most this many pages (30
    /// messages each) per catch-up; a cut is a `gap` event.
    pub catch_up_pages: u32,
}

impl Default for StockTwitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://api.stocktwits.com".into(),
            symbols: vec!["AAPL".into(), "TSLA".into()],
            interval_secs: 120,
            requests_per_hour: 180,
            catch_up_pages: 5,
        }
    }
}

/// `social:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SocialConfig {
    /// Reddit.
    pub reddit: RedditConfig,
    /// X (Twitter).
    pub twitter: TwitterConfig,
    /// StockTwits.
    pub stocktwits: StockTwitsConfig,
    /// Symbols recognized in post text (whole words or cashtags) for `tickers`.
    pub symbols: Vec<String>,
    /// Post ids remembered to drop repeats across polls.
    pub dedup_window: usize,
    /// User-Agent of every request (Reddit requires a unique, descriptive one).
    pub user_agent: String,
}

impl Default for SocialConfig {
    fn default() -> Self {
        Self {
            reddit: RedditConfig::default(),
            twitter: TwitterConfig::default(),
            stocktwits: StockTwitsConfig::default(),
            symbols: ["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "GME", "AMC"].map(String::from).to_vec(),
            dedup_window: 20_000,
            user_agent: concat!("server:finstream-ingest:", env!("CARGO_PKG_VERSION"), " (by /u/finstream-ingest)")
                .into(),
        }
    }
}

impl Section for SocialConfig {
    const NAME: &'static str = "social";
    const LIST_KEYS: &'static [&'static str] =
        &["social.reddit.subreddits", "social.stocktwits.symbols", "social.symbols", "social.twitter.rules"];

    /// A provider whose credentials are not set is disabled (the others run; StockTwits needs
    /// none); none left is an error.
    fn providers(&self) -> Vec<ProviderKeys> {
        vec![
            ProviderKeys::new(
                crate::reddit::PROVIDER,
                self.reddit.enabled,
                &[
                    ("social.reddit.client_id", &self.reddit.client_id),
                    ("social.reddit.client_secret", &self.reddit.client_secret),
                ],
            ),
            ProviderKeys::new(
                crate::x::PROVIDER,
                self.twitter.enabled,
                &[("social.twitter.bearer_token", &self.twitter.bearer_token)],
            ),
            ProviderKeys::new(crate::stocktwits::PROVIDER, self.stocktwits.enabled, &[]),
        ]
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.reddit.enabled && !self.twitter.enabled && !self.stocktwits.enabled {
            return Err(ConfigError::key(
                "social",
                "enable at least one of social.reddit, social.twitter, social.stocktwits",
            ));
        }
        if self.reddit.enabled {
            require_url("social.reddit.base_url", &self.reddit.base_url, &["https", "http"])?;
            require_url("social.reddit.auth_url", &self.reddit.auth_url, &["https", "http"])?;
            if self.reddit.subreddits.is_empty() {
                return Err(ConfigError::key("social.reddit.subreddits", "must list at least one subreddit"));
            }
            if let Some(bad) =
                self.reddit.subreddits.iter().find(|s| {
                    s.is_empty() || s.len() > 21 || !s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                })
            {
                return Err(ConfigError::key("social.reddit.subreddits", format!("`{bad}` is not a subreddit name")));
            }
            if self.reddit.interval_secs == 0 || self.reddit.requests_per_minute == 0 {
                return Err(ConfigError::key("social.reddit.interval_secs", "interval and rate must be positive"));
            }
            if self.reddit.catch_up_pages == 0 {
                return Err(ConfigError::key("social.reddit.catch_up_pages", "must be at least 1"));
            }
        }
        if self.twitter.enabled {
            require_url("social.twitter.base_url", &self.twitter.base_url, &["https", "http"])?;
            if !matches!(self.twitter.mode.as_str(), "stream" | "search") {
                return Err(ConfigError::key("social.twitter.mode", "must be `stream` or `search`"));
            }
            if self.twitter.rules.is_empty() || self.twitter.rules.iter().any(|r| r.trim().is_empty() || r.len() > 512)
            {
                return Err(ConfigError::key("social.twitter.rules", "give 1 or more rules of 1-512 characters"));
            }
            if self.twitter.stream_read_timeout_secs == 0 || self.twitter.reconnect_http_base_secs == 0 {
                return Err(ConfigError::key(
                    "social.twitter.stream_read_timeout_secs",
                    "stream timings must be positive",
                ));
            }
            if self.twitter.interval_secs == 0 || self.twitter.requests_per_15min == 0 {
                return Err(ConfigError::key("social.twitter.interval_secs", "interval and rate must be positive"));
            }
        }
        if self.stocktwits.enabled {
            require_url("social.stocktwits.base_url", &self.stocktwits.base_url, &["https", "http"])?;
            require_symbols("social.stocktwits.symbols", &self.stocktwits.symbols, false)?;
            if self.stocktwits.interval_secs == 0 || self.stocktwits.requests_per_hour == 0 {
                return Err(ConfigError::key("social.stocktwits.interval_secs", "interval and rate must be positive"));
            }
            if self.stocktwits.catch_up_pages == 0 {
                return Err(ConfigError::key("social.stocktwits.catch_up_pages", "must be at least 1"));
            }
        }
        require_symbols("social.symbols", &self.symbols, true)?;
        if self.dedup_window == 0 {
            return Err(ConfigError::key("social.dedup_window", "must be positive"));
        }
        if self.user_agent.trim().is_empty() {
            return Err(ConfigError::key("social.user_agent", "must not be empty (Reddit refuses generic agents)"));
        }
        Ok(())
    }
}
