//! The market-data source: one WebSocket connection to the configured provider.

use std::time::Duration;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};

use crate::book::QuoteBook;
use crate::config::MarketConfig;
use crate::provider::{MarketProvider, ProtocolSession};
use ingest_core::ws::emit::Emitter;

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
            let mut session = session_for(self.cfg.provider, &self.cfg);
            let mut output = Emitter::new(&ctx, self.cfg.provider.label());
            ingest_core::ws::run(session.as_mut(), &mut output, &settings, &ctx).await
        })
    }
}

/// The protocol session of `provider` for `cfg`, with a quote book of production size.
pub(crate) fn session_for(provider: MarketProvider, cfg: &MarketConfig) -> Box<ProtocolSession> {
    provider.get().session(cfg, QuoteBook::new(MAX_BOOK_SYMBOLS))
}
