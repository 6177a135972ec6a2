//! What a market-data provider is to this producer, and the one place that picks it.
//!
//! Each provider lives in its own folder (`polygon/`, `alpaca/`, `finnhub/`): its wire types,
//! its normalizer, its protocol session and an implementation of [`Provider`], which holds
//! everything else the producer needs to know about it: the URL it connects to, the checks
//! its configuration needs beyond the shared ones, its subscription, the hours it follows when
//! `market.session` is `auto`, its largest frame and the REST history that repairs its gaps. [`MarketProvider::get`] is the one
//! exhaustive match from the configured name to that implementation; the config, the source,
//! the replay and the fuzz entry all go through it.
//!
//! A new provider: a folder with its session and `impl Provider`, a variant in
//! [`MarketProvider`] (and in [`MarketProvider::ALL`]), an arm in [`MarketProvider::get`]
//! (ARCHITECTURE.md lists the rest: fixtures, simulator, docs).

use ingest_core::config::ConfigError;
use ingest_core::market_hours::MarketSession as Hours;
use serde::Deserialize;

use ingest_core::ws::gap::Unrepaired;

use crate::book::QuoteBook;
use crate::config::MarketConfig;
use crate::repair::TradeHistory;

/// A market session: pure protocol, its ticks handed to a [`TickOutput`](ingest_core::ws::emit::TickOutput).
pub(crate) use ingest_core::ws::emit::TickSession as ProtocolSession;

/// One market-data provider's knowledge, beyond its protocol session.
pub(crate) trait Provider: Sync {
    /// Name in `market.provider`, metrics, records and recordings.
    fn label(&self) -> &'static str;

    /// The largest frame accepted when `market.max_frame_bytes` is 0: bounded, but above the
    /// largest frame the provider sends (a frame is held in memory once while it is parsed).
    fn default_max_frame_bytes(&self) -> usize;

    /// The checks this provider's configuration needs beyond the shared ones (which have
    /// passed: a URL, a key, symbols, channels).
    fn validate(&self, cfg: &MarketConfig) -> Result<(), ConfigError>;

    /// The trading hours `market.session: auto` means for this configuration; `path` is the
    /// URL's path without a trailing `/`.
    fn auto_hours(&self, cfg: &MarketConfig, path: &str) -> Hours;

    /// The URL connected to (by default `market.ws_url` as written).
    fn connect_url(&self, cfg: &MarketConfig) -> String {
        cfg.ws_url.clone()
    }

    /// A new protocol session for one stream of this configuration (the symbols of this
    /// replica, the channels, the credentials).
    fn session(&self, cfg: &MarketConfig, book: QuoteBook) -> Box<ProtocolSession>;

    /// The REST trade history that repairs this configuration's stream gaps, or why its gaps
    /// cannot be repaired (the outcome and detail of their `gap_unrepaired` events).
    fn history(&self, cfg: &MarketConfig) -> Result<Box<dyn TradeHistory>, (Unrepaired, String)>;
}

/// Which real-time market-data WebSocket to stream from (`market.provider`, `MARKET_PROVIDER`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum MarketProvider {
    /// Polygon.io / Massive stocks and crypto (`wss://socket.massive.com/stocks`).
    #[default]
    Polygon,
    /// Alpaca market data v2 (`wss://stream.data.alpaca.markets/v2/iex`).
    Alpaca,
    /// Finnhub (`wss://ws.finnhub.io`).
    Finnhub,
}

impl MarketProvider {
    /// Every provider, in the order the fuzz entry indexes them (an input's first byte).
    pub(crate) const ALL: [MarketProvider; 3] =
        [MarketProvider::Polygon, MarketProvider::Alpaca, MarketProvider::Finnhub];

    /// The provider's implementation: the one match over providers.
    pub(crate) fn get(self) -> &'static dyn Provider {
        match self {
            MarketProvider::Polygon => &crate::polygon::Polygon,
            MarketProvider::Alpaca => &crate::alpaca::Alpaca,
            MarketProvider::Finnhub => &crate::finnhub::Finnhub,
        }
    }

    /// The provider named `label` (a recording's header).
    pub(crate) fn from_label(label: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.get().label() == label)
    }

    /// Name in metrics and records.
    pub(crate) fn label(self) -> &'static str {
        self.get().label()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `ALL` lists every variant once, and each label is the name `market.provider` takes.
    #[test]
    fn every_provider_is_listed_once_under_its_config_name() {
        use serde::de::IntoDeserializer;
        let mut labels: Vec<&str> = MarketProvider::ALL.iter().map(|p| p.label()).collect();
        for p in MarketProvider::ALL {
            let de: serde::de::value::StrDeserializer<'_, serde::de::value::Error> = p.label().into_deserializer();
            assert_eq!(MarketProvider::deserialize(de), Ok(p), "{}", p.label());
            assert_eq!(MarketProvider::from_label(p.label()), Some(p));
        }
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), MarketProvider::ALL.len());
    }

    #[test]
    fn finnhub_and_alpacas_test_stream_have_no_history_to_repair_from() {
        use ingest_core::ws::gap::Unrepaired;
        let finnhub = crate::config::MarketConfig::sample("finnhub", "wss://ws.finnhub.io", &["AAPL"]);
        let e = MarketProvider::Finnhub.get().history(&finnhub).unwrap_err();
        assert_eq!(e.0, Unrepaired::NoHistory, "{}", e.1);
        let alpaca = |url: &str| crate::config::MarketConfig::sample("alpaca", url, &["AAPL"]);
        let history = |url: &str| MarketProvider::Alpaca.get().history(&alpaca(url));
        assert!(history("wss://stream.data.alpaca.markets/v2/iex").is_ok());
        assert!(history("wss://stream.data.alpaca.markets/v1beta3/crypto/us").is_ok());
        assert_eq!(history("wss://stream.data.alpaca.markets/v2/test").unwrap_err().0, Unrepaired::NoHistory);
        assert_eq!(history("wss://stream.data.alpaca.markets/v1beta1/news").unwrap_err().0, Unrepaired::Unsupported);
        let crypto = crate::config::MarketConfig::sample("polygon", "wss://socket.massive.com/crypto", &["BTC-USD"]);
        let crypto = MarketProvider::Polygon.get().history(&crypto).unwrap();
        assert!(crypto.lateness_ms().is_some(), "the crypto cluster's trades are timed by their exchanges");
        assert!(!crypto.has_quotes() && !crypto.has_bars());
    }
}
