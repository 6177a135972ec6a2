//! The `market:` section of `configs/config.yaml`.

use ingest_core::config::{ConfigError, Secret, Section, require_secret, require_symbols, require_url};
use ingest_core::market_hours::MarketSession;
use serde::Deserialize;

use crate::provider::MarketProvider;

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

/// Trading hours of the feed (`market.session`): the staleness watchdog and the gap windows
/// count only time in which the market is open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum SessionChoice {
    /// From the provider, URL and symbols: crypto endpoints and exchange-prefixed crypto
    /// symbols are always open, forex symbols follow the forex week, everything else US equities.
    #[default]
    Auto,
    /// US equities with extended hours (04:00–20:00 New York, NYSE holidays and early closes).
    UsEquities,
    /// US equities, regular session only (09:30–16:00, 13:00 on early closes).
    UsEquitiesRegular,
    /// Crypto: never closed.
    Crypto,
    /// Spot forex: Sunday 17:00 to Friday 17:00 New York.
    Forex,
    /// Never closed (a test feed that runs at all hours).
    Always,
}

/// `market.repair:` filling stream gaps from the provider's REST history (see `crate::repair`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct RepairConfig {
    /// Repair gaps at all (`FINSTREAM__MARKET__REPAIR__ENABLED`).
    pub(crate) enabled: bool,
    /// The provider's REST base URL; empty = the one that goes with `market.ws_url`
    /// (`socket.massive.com` → `https://api.massive.com`, `socket.polygon.io` →
    /// `https://api.polygon.io`, any other host: the socket's own origin).
    pub(crate) rest_url: String,
    /// History requests per second at most (the free tier allows 5 a minute: 0.083).
    pub(crate) requests_per_second: f64,
    /// Trades per history page (Polygon allows 50,000).
    pub(crate) page_size: u32,
    /// A longer gap is not repaired (`gap_unrepaired`, `too_long`).
    pub(crate) max_window_secs: u64,
    /// After the stream is live again, how long to wait for each symbol's first live
    /// millisecond (the window's far edge) before repairing with what arrived.
    pub(crate) settle_secs: u64,
    /// A repair not done this long after its gap ended is given up (`rate_limited` when the
    /// provider kept refusing).
    pub(crate) deadline_secs: u64,
    /// Symbols fetched at once.
    pub(crate) concurrency: usize,
    /// Gaps waiting for repair at most; one more is reported unrepaired at once.
    pub(crate) queue: usize,
    /// Also repair minute bars (when `market.channels` has `minute_bars` and the provider's
    /// history has them: Polygon/Massive stocks).
    pub(crate) bars: bool,
    /// Also repair quotes (when `market.channels` has `quotes` and the provider's history has
    /// them: Polygon/Massive stocks). Off by default: quotes outnumber trades many times over.
    pub(crate) quotes: bool,
}

impl Default for RepairConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rest_url: String::new(),
            requests_per_second: 10.0,
            page_size: 50_000,
            max_window_secs: 3600,
            settle_secs: 3,
            deadline_secs: 600,
            concurrency: 4,
            queue: 64,
            bars: true,
            quotes: false,
        }
    }
}

impl RepairConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !self.rest_url.is_empty() {
            require_url("market.repair.rest_url", &self.rest_url, &["https", "http"])?;
        }
        if !(self.requests_per_second > 0.0 && self.requests_per_second.is_finite()) {
            return Err(ConfigError::key("market.repair.requests_per_second", "must be positive"));
        }
        if !(1..=50_000).contains(&self.page_size) {
            return Err(ConfigError::key("market.repair.page_size", "must be between 1 and 50000"));
        }
        if !(1..=64).contains(&self.concurrency) {
            return Err(ConfigError::key("market.repair.concurrency", "must be between 1 and 64"));
        }
        for (key, v) in [
            ("market.repair.max_window_secs", self.max_window_secs),
            ("market.repair.settle_secs", self.settle_secs),
            ("market.repair.deadline_secs", self.deadline_secs),
            ("market.repair.queue", self.queue as u64),
        ] {
            if v == 0 {
                return Err(ConfigError::key(key, "must be positive"));
            }
        }
        Ok(())
    }
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
    /// Largest accepted WebSocket frame, in bytes; 0 = the provider's default (see
    /// [`crate::provider::Provider::default_max_frame_bytes`]).
    pub(crate) max_frame_bytes: usize,
    /// Trading hours of the feed: `auto`, `us_equities`, `us_equities_regular`, `crypto`,
    /// `forex` or `always`.
    pub(crate) session: SessionChoice,
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
    /// Gap repair from the provider's REST history.
    pub(crate) repair: RepairConfig,
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            provider: MarketProvider::default(),
            ws_url: "wss://socket.massive.com/stocks".into(),
            api_key: Secret::default(),
            api_secret: Secret::default(),
            symbols: vec!["AAPL".into(), "MSFT".into()],
            channels: vec![Channel::Trades, Channel::Quotes, Channel::MinuteBars],
            max_frame_bytes: 0,
            session: SessionChoice::Auto,
            stale_after_secs: 60,
            ping_interval_secs: 25,
            dead_after_secs: 60,
            handshake_timeout_secs: 15,
            reconnect_base_ms: 250,
            reconnect_max_secs: 30,
            healthy_after_secs: 30,
            replica_index: 0,
            replica_count: 1,
            repair: RepairConfig::default(),
        }
    }
}

impl Section for MarketConfig {
    const NAME: &'static str = "market";
    const LIST_KEYS: &'static [&'static str] = &["market.symbols", "market.channels"];

    fn validate(&self) -> Result<(), ConfigError> {
        let provider = self.provider.get();
        require_url("market.ws_url", &self.ws_url, &["wss", "ws"])?;
        let why = format!("market-producer streams from {}", provider.label());
        require_secret("market.api_key", &self.api_key, &why)?;
        require_symbols("market.symbols", &self.symbols, false)?;
        if self.channels.is_empty() {
            return Err(ConfigError::key(
                "market.channels",
                "list at least one of trades, quotes, second_bars, minute_bars",
            ));
        }
        provider.validate(self)?;
        if self.max_frame_bytes != 0 && !(1024..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(ConfigError::key(
                "market.max_frame_bytes",
                "must be 0 (the provider's default) or between 1024 and 67108864",
            ));
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
        self.repair.validate()?;
        if self.dead_after_secs <= self.ping_interval_secs {
            return Err(ConfigError::key("market.dead_after_secs", "must be longer than market.ping_interval_secs"));
        }
        Ok(())
    }
}

impl MarketConfig {
    /// A valid configuration of the provider labelled `provider` at `ws_url` (tests of the
    /// provider folders).
    #[cfg(test)]
    pub(crate) fn sample(provider: &str, ws_url: &str, symbols: &[&str]) -> Self {
        use ingest_core::config::Secret;
        Self {
            provider: MarketProvider::from_label(provider).expect("a known provider"),
            ws_url: ws_url.into(),
            api_key: Secret::new("KEY"),
            api_secret: Secret::new("SECRET"),
            symbols: symbols.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// The symbols this replica streams (all of them with one replica).
    pub(crate) fn shard(&self) -> Vec<String> {
        crate::shard::select(&self.symbols, self.replica_index, self.replica_count)
    }

    /// The name of this replica's gap-repair state: `repair-<provider>`, and `-<index>of<count>`
    /// with more than one replica (each owns its symbols' repairs).
    pub(crate) fn repair_group(&self) -> String {
        let provider = self.provider.label();
        match self.replica_count {
            0 | 1 => format!("repair-{provider}"),
            n => format!("repair-{provider}-{}of{n}", self.replica_index),
        }
    }

    /// The largest accepted frame: the configured one, or the provider's default.
    pub(crate) fn max_frame_bytes(&self) -> usize {
        if self.max_frame_bytes == 0 { self.provider.get().default_max_frame_bytes() } else { self.max_frame_bytes }
    }

    /// The trading hours the feed follows (`market.session`, `auto` resolved).
    pub(crate) fn session(&self) -> MarketSession {
        match self.session {
            SessionChoice::UsEquities => MarketSession::UsEquities,
            SessionChoice::UsEquitiesRegular => MarketSession::UsEquitiesRegular,
            SessionChoice::Forex => MarketSession::Forex,
            SessionChoice::Crypto | SessionChoice::Always => MarketSession::Always,
            SessionChoice::Auto => {
                let path = url::Url::parse(&self.ws_url)
                    .map(|u| u.path().trim_end_matches('/').to_string())
                    .unwrap_or_default();
                self.provider.get().auto_hours(self, &path)
            }
        }
    }

    /// The WebSocket settings of this config.
    pub(crate) fn ws_settings(&self) -> ingest_core::ws::WsSettings {
        use std::time::Duration;
        ingest_core::ws::WsSettings {
            url: self.provider.get().connect_url(self),
            max_frame_bytes: self.max_frame_bytes(),
            session: self.session(),
            clock: ingest_core::clock::Clock::System,
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
}
