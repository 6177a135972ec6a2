//! The `market:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Secret, Section, require_secret, require_symbols, require_url};
use serde::Deserialize;

/// Which real-time market-data WebSocket to stream from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MarketProvider {
    /// Polygon.io / Massive stocks (`wss://socket.massive.com/stocks`).
    #[default]
    Polygon,
    /// Alpaca market data v2 (`wss://stream.data.alpaca.markets/v2/iex`).
    Alpaca,
    /// Finnhub (`wss://ws.finnhub.io`).
    Finnhub,
}

impl MarketProvider {
    /// Label used in metrics and records.
    pub(crate) fn label(self) -> &'static str {
        match self {
            MarketProvider::Polygon => "polygon",
            MarketProvider::Alpaca => "alpaca",
            MarketProvider::Finnhub => "finnhub",
        }
    }
}

/// What to subscribe to per symbol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Channel {
    /// Trades (Polygon `T` / crypto `XT`).
    Trades,
    /// Top-of-book quotes (Polygon `Q` / `XQ`).
    Quotes,
    /// One-second bars (Polygon `A` / `XAS`).
    SecondBars,
    /// One-minute bars (Polygon `AM` / `XA`).
    MinuteBars,
}

/// `market:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MarketConfig {
    /// `polygon`, `alpaca` or `finnhub` (`MARKET_PROVIDER`).
    pub(crate) provider: MarketProvider,
    /// WebSocket URL (`MARKET_WS_URL`).
    pub(crate) ws_url: String,
    /// API key (`MARKET_API_KEY`); Alpaca's key id.
    pub(crate) api_key: Secret,
    /// Alpaca's secret key (`MARKET_API_SECRET`); unused by the others.
    pub(crate) api_secret: Secret,
    /// Symbols to subscribe to.
    pub(crate) symbols: Vec<String>,
    /// Channels per symbol.
    pub(crate) channels: Vec<Channel>,
    /// Largest accepted WebSocket frame, in bytes.
    pub(crate) max_frame_bytes: usize,
    /// Subscribed but no data for this long: not ready, reconnect.
    pub(crate) stale_after_secs: u64,
    /// WebSocket ping interval.
    pub(crate) ping_interval_secs: u64,
    /// No frame at all (pongs included) for this long: the connection is dead.
    pub(crate) dead_after_secs: u64,
    /// Connected but not subscribed within this: reconnect.
    pub(crate) handshake_timeout_secs: u64,
    /// First reconnect delay (jittered, doubling).
    pub(crate) reconnect_base_ms: u64,
    /// Largest reconnect delay.
    pub(crate) reconnect_max_secs: u64,
    /// A connection subscribed this long resets the reconnect backoff.
    pub(crate) healthy_after_secs: u64,
    /// This replica's index, `0..replica_count` (`REPLICA_INDEX`, e.g. a StatefulSet ordinal).
    pub(crate) replica_index: u32,
    /// Replicas sharing `symbols` (`REPLICA_COUNT`); each streams its own deterministic share.
    pub(crate) replica_count: u32,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            provider: MarketProvider::Polygon,
            ws_url: "wss://socket.massive.com/stocks".into(),
            api_key: Secret::default(),
            api_secret: Secret::default(),
            symbols: vec!["AAPL".into(), "MSFT".into()],
            channels: vec![Channel::Trades, Channel::Quotes, Channel::MinuteBars],
            max_frame_bytes: 1024 * 1024,
            stale_after_secs: 60,
            ping_interval_secs: 25,
            dead_after_secs: 60,
            handshake_timeout_secs: 15,
            reconnect_base_ms: 250,
            reconnect_max_secs: 30,
            healthy_after_secs: 30,
            replica_index: 0,
            replica_count: 1,
        }
    }
}

impl Section for MarketConfig {
    const NAME: &'static str = "market";
    const LIST_KEYS: &'static [&'static str] = &["market.symbols", "market.channels"];

    fn validate(&self) -> Result<(), ConfigError> {
        require_url("market.ws_url", &self.ws_url, &["wss", "ws"])?;
        let why = format!("market-producer streams from {}", self.provider.label());
        require_secret("market.api_key", &self.api_key, &why)?;
        if self.provider == MarketProvider::Alpaca {
            require_secret("market.api_secret", &self.api_secret, "Alpaca needs a key id and a secret key")?;
        }
        require_symbols("market.symbols", &self.symbols, false)?;
        if self.provider == MarketProvider::Alpaca && self.channels.contains(&Channel::SecondBars) {
            return Err(ConfigError::key("market.channels", "Alpaca has no second bars (trades, quotes, minute_bars)"));
        }
        if self.channels.is_empty() {
            return Err(ConfigError::key(
                "market.channels",
                "list at least one of trades, quotes, second_bars, minute_bars",
            ));
        }
        if self.provider == MarketProvider::Polygon && self.ws_url.trim_end_matches('/').ends_with("/forex") {
            return Err(ConfigError::key(
                "market.ws_url",
                "the Polygon forex cluster is not supported (stocks and crypto are)",
            ));
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(ConfigError::key("market.max_frame_bytes", "must be between 1024 and 67108864"));
        }
        for (key, v) in [
            ("market.stale_after_secs", self.stale_after_secs),
            ("market.ping_interval_secs", self.ping_interval_secs),
            ("market.dead_after_secs", self.dead_after_secs),
            ("market.handshake_timeout_secs", self.handshake_timeout_secs),
            ("market.reconnect_base_ms", self.reconnect_base_ms),
            ("market.reconnect_max_secs", self.reconnect_max_secs),
        ] {
            if v == 0 {
                return Err(ConfigError::key(key, "must be positive"));
            }
        }
        if self.replica_count == 0 {
            return Err(ConfigError::key("market.replica_count", "must be at least 1 (REPLICA_COUNT)"));
        }
        if self.replica_index >= self.replica_count {
            return Err(ConfigError::key(
                "market.replica_index",
                format!("must be below market.replica_count ({}) (REPLICA_INDEX)", self.replica_count),
            ));
        }
        if self.replica_count > 1 && self.symbols.iter().any(|s| s.contains('*')) {
            return Err(ConfigError::key("market.symbols", "a wildcard cannot be sharded across replicas"));
        }
        if self.shard().is_empty() {
            return Err(ConfigError::key(
                "market.replica_index",
                format!(
                    "replica {} of {} owns none of market.symbols; use fewer replicas",
                    self.replica_index, self.replica_count
                ),
            ));
        }
        if self.dead_after_secs <= self.ping_interval_secs {
            return Err(ConfigError::key("market.dead_after_secs", "must be longer than market.ping_interval_secs"));
        }
        Ok(())
    }
}

impl MarketConfig {
    /// The symbols this replica streams (all of them with one replica).
    pub(crate) fn shard(&self) -> Vec<String> {
        crate::shard::select(&self.symbols, self.replica_index, self.replica_count)
    }

    /// The WebSocket settings of this config.
    pub(crate) fn ws_settings(&self) -> ingest_core::ws::WsSettings {
        use std::time::Duration;
        // Finnhub takes the token in the query; the runner never logs the query.
        let url = match self.provider {
            MarketProvider::Finnhub => {
                let sep = if self.ws_url.contains('?') { '&' } else { '?' };
                format!("{}{sep}token={}", self.ws_url, self.api_key.expose())
            }
            _ => self.ws_url.clone(),
        };
        ingest_core::ws::WsSettings {
            url,
            max_frame_bytes: self.max_frame_bytes,
            ping_interval: Duration::from_secs(self.ping_interval_secs),
            dead_after: Duration::from_secs(self.dead_after_secs),
            stale_after: Duration::from_secs(self.stale_after_secs),
            connect_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(self.handshake_timeout_secs),
            backoff: ingest_core::resilience::BackoffConfig {
                base: Duration::from_millis(self.reconnect_base_ms),
                max: Duration::from_secs(self.reconnect_max_secs),
                factor: 2.0,
                jitter: 0.5,
            },
            healthy_after: Duration::from_secs(self.healthy_after_secs),
            record_to: None,
        }
    }

    /// Polygon's subscription parameters: `T.AAPL,Q.AAPL,…` (crypto: `XT.BTC-USD,…`).
    pub(crate) fn polygon_params(&self) -> String {
        let crypto = self.ws_url.trim_end_matches('/').ends_with("/crypto");
        let mut out = String::new();
        for s in &self.shard() {
            for c in &self.channels {
                let prefix = match (c, crypto) {
                    (Channel::Trades, false) => "T",
                    (Channel::Quotes, false) => "Q",
                    (Channel::SecondBars, false) => "A",
                    (Channel::MinuteBars, false) => "AM",
                    (Channel::Trades, true) => "XT",
                    (Channel::Quotes, true) => "XQ",
                    (Channel::SecondBars, true) => "XAS",
                    (Channel::MinuteBars, true) => "XA",
                };
                if !out.is_empty() {
                    out.push(',');
                }
                out.push_str(prefix);
                out.push('.');
                out.push_str(s);
            }
        }
        out
    }
}
