//! The market-data source: one WebSocket connection to the configured provider.

use std::time::Duration;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};

use crate::config::{MarketConfig, MarketProvider};
use crate::emit::Emitter;
use crate::finnhub::FinnhubSession;
use crate::polygon::PolygonSession;

/// Bound of the per-symbol quote book (a wildcard subscription cannot grow it without limit).
const MAX_BOOK_SYMBOLS: usize = 100_000;

/// Streams from `cfg.provider`.
#[derive(Debug)]
pub(crate) struct MarketSource {
    cfg: MarketConfig,
}

impl MarketSource {
    pub(crate) fn new(cfg: MarketConfig) -> Self {
        Self { cfg }
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
            let settings = self.cfg.ws_settings();
            let emit = Emitter::new(&ctx, self.cfg.provider.label(), MAX_BOOK_SYMBOLS);
            match self.cfg.provider {
                MarketProvider::Polygon => {
                    let mut session = PolygonSession::new(self.cfg.api_key.clone(), self.cfg.polygon_params(), emit);
                    ingest_core::ws::run(&mut session, &settings, &ctx).await
                }
                MarketProvider::Finnhub => {
                    let mut session = FinnhubSession::new(self.cfg.symbols.clone(), emit);
                    ingest_core::ws::run(&mut session, &settings, &ctx).await
                }
                other => Err(FatalError {
                    source_name: other.label().into(),
                    message: format!("the {} source is not implemented in this version", other.label()),
                }),
            }
        })
    }
}
