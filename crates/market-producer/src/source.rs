//! The market-data source: one WebSocket connection to the configured provider.

use std::time::Duration;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};

use crate::alpaca::AlpacaSession;
use crate::book::QuoteBook;
use ingest_core::ws::WsSession;

use crate::config::{Channel, MarketConfig};
use crate::emit::{Emitter, TickOutput};
use crate::finnhub::FinnhubSession;
use crate::polygon::PolygonSession;

/// Bound of the per-symbol quote book (a wildcard subscription cannot grow it without limit).
const MAX_BOOK_SYMBOLS: usize = 100_000;

/// Streams from `cfg.provider`, optionally recording every frame.
#[derive(Debug)]
pub struct MarketSource {
    cfg: MarketConfig,
    record_to: Option<std::path::PathBuf>,
}

impl MarketSource {
    pub fn new(cfg: MarketConfig, record_to: Option<std::path::PathBuf>) -> Self {
        Self { cfg, record_to }
    }
}

impl Source for MarketSource {
    fn name(&self) -> &str {
        self.cfg.provider.label()
    }

    fn stale_after(&self) -> Option<Duration> {
        Some(Duration::from_secs(self.cfg.stale_after_secs))
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move {
            let mut settings = self.cfg.ws_settings();
            settings.record_to = self.record_to.clone();
            let label = self.cfg.provider.label();
            let mut session = session_for(label, &self.cfg)
                .ok_or_else(|| FatalError { source_name: label.into(), message: "unknown provider".into() })?;
            let mut output = Emitter::new(&ctx, label);
            ingest_core::ws::run(session.as_mut(), &mut output, &settings, &ctx).await
        })
    }
}

/// A market session: pure protocol, its ticks handed to a [`TickOutput`].
pub(crate) type MarketSession = dyn WsSession<Output = dyn TickOutput>;

/// The protocol session of `provider` (`polygon`, `alpaca`, `finnhub`).
pub(crate) fn session_for(provider: &str, cfg: &MarketConfig) -> Option<Box<MarketSession>> {
    let book = QuoteBook::new(MAX_BOOK_SYMBOLS);
    Some(match provider {
        "polygon" => Box::new(PolygonSession::new(cfg.api_key.clone(), cfg.polygon_params(), book)),
        "finnhub" => Box::new(FinnhubSession::new(cfg.shard(), book)),
        "alpaca" => {
            let with = |c: Channel| if cfg.channels.contains(&c) { cfg.shard() } else { Vec::new() };
            let channels = [with(Channel::Trades), with(Channel::Quotes), with(Channel::MinuteBars)];
            Box::new(AlpacaSession::new(cfg.api_key.clone(), cfg.api_secret.clone(), channels, book))
        }
        _ => return None,
    })
}
