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

/// `market:`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct MarketConfig {
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
}

impl Default for MarketConfig {
    fn default() -> Self {
        Self {
            provider: MarketProvider::Polygon,
            ws_url: "wss://socket.massive.com/stocks".into(),
            api_key: Secret::default(),
            api_secret: Secret::default(),
            symbols: vec!["AAPL".into(), "MSFT".into()],
        }
    }
}

impl Section for MarketConfig {
    const NAME: &'static str = "market";

    fn validate(&self) -> Result<(), ConfigError> {
        require_url("market.ws_url", &self.ws_url, &["wss", "ws"])?;
        let why = format!("market-producer streams from {}", self.provider.label());
        require_secret("market.api_key", &self.api_key, &why)?;
        if self.provider == MarketProvider::Alpaca {
            require_secret("market.api_secret", &self.api_secret, "Alpaca needs a key id and a secret key")?;
        }
        require_symbols("market.symbols", &self.symbols, false)
    }
}
