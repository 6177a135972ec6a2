//! The market-data source: one WebSocket connection to the configured provider.

use std::time::Duration;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};

use crate::alpaca::AlpacaSession;
use crate::config::{Channel, MarketConfig, MarketProvider};
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
                    let mut session = FinnhubSession::new(self.cfg.shard(), emit);
                    ingest_core::ws::run(&mut session, &settings, &ctx).await
                }
                MarketProvider::Alpaca => {
                    let with = |c: Channel| if self.cfg.channels.contains(&c) { self.cfg.shard() } else { Vec::new() };
                    let subscribe = crate::alpaca::wire::subscribe(
                        &with(Channel::Trades),
                        &with(Channel::Quotes),
                        &with(Channel::MinuteBars),
                    );
                    let mut session =
                        AlpacaSession::new(self.cfg.api_key.clone(), self.cfg.api_secret.clone(), subscribe, emit);
                    ingest_core::ws::run(&mut session, &settings, &ctx).await
                }
            }
        })
    }
}
