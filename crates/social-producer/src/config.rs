//! The `social:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Secret, Section, require_secret, require_symbols, require_url};
use serde::Deserialize;

/// `social.reddit:` — Reddit OAuth2 application-only API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RedditConfig {
    /// Poll Reddit.
    pub(crate) enabled: bool,
    /// API root for listings.
    pub(crate) base_url: String,
    /// Token endpoint root.
    pub(crate) auth_url: String,
    /// OAuth client id (`REDDIT_CLIENT_ID`).
    pub(crate) client_id: Secret,
    /// OAuth client secret (`REDDIT_CLIENT_SECRET`).
    pub(crate) client_secret: Secret,
    /// Subreddits to follow (without `r/`).
    pub(crate) subreddits: Vec<String>,
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
        }
    }
}

/// `social.twitter:` — X (Twitter) API v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct TwitterConfig {
    /// Stream from X.
    pub(crate) enabled: bool,
    /// API root.
    pub(crate) base_url: String,
    /// Consumer key (`TWITTER_API_KEY`), optional with a bearer token.
    pub(crate) api_key: Secret,
    /// Consumer secret (`TWITTER_API_SECRET`), optional with a bearer token.
    pub(crate) api_secret: Secret,
    /// App bearer token (`TWITTER_BEARER_TOKEN`).
    pub(crate) bearer_token: Secret,
}

impl Default for TwitterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://api.x.com".into(),
            api_key: Secret::default(),
            api_secret: Secret::default(),
            bearer_token: Secret::default(),
        }
    }
}

/// `social.stocktwits:` — StockTwits symbol streams (no key).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct StockTwitsConfig {
    /// Poll StockTwits.
    pub(crate) enabled: bool,
    /// API root.
    pub(crate) base_url: String,
    /// Symbols to follow.
    pub(crate) symbols: Vec<String>,
}

impl Default for StockTwitsConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            base_url: "https://api.stocktwits.com".into(),
            symbols: vec!["AAPL".into(), "TSLA".into()],
        }
    }
}

/// `social:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SocialConfig {
    /// Reddit.
    pub(crate) reddit: RedditConfig,
    /// X (Twitter).
    pub(crate) twitter: TwitterConfig,
    /// StockTwits.
    pub(crate) stocktwits: StockTwitsConfig,
}

impl Section for SocialConfig {
    const NAME: &'static str = "social";
    const LIST_KEYS: &'static [&'static str] = &["social.reddit.subreddits", "social.stocktwits.symbols"];

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
            require_secret("social.reddit.client_id", &self.reddit.client_id, "social.reddit.enabled is true")?;
            require_secret("social.reddit.client_secret", &self.reddit.client_secret, "social.reddit.enabled is true")?;
            if self.reddit.subreddits.is_empty() {
                return Err(ConfigError::key("social.reddit.subreddits", "must list at least one subreddit"));
            }
        }
        if self.twitter.enabled {
            require_url("social.twitter.base_url", &self.twitter.base_url, &["https", "http"])?;
            require_secret(
                "social.twitter.bearer_token",
                &self.twitter.bearer_token,
                "social.twitter.enabled is true",
            )?;
        }
        if self.stocktwits.enabled {
            require_url("social.stocktwits.base_url", &self.stocktwits.base_url, &["https", "http"])?;
            require_symbols("social.stocktwits.symbols", &self.stocktwits.symbols, false)?;
        }
        Ok(())
    }
}
