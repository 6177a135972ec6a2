//! The market-data source: one WebSocket connection to the configured provider.

use std::time::Duration;

use futures::future::BoxFuture;
use ingest_core::source::{FatalError, Source, SourceCtx};

use crate::book::QuoteBook;
use crate::config::{Channel, MarketConfig};
use crate::provider::{MarketProvider, ProtocolSession};
use crate::repair::{self, Follow, Kinds, Repairer, Repairing};
use crate::repair_state::StoreNames;
use ingest_core::config::RuntimeConfig;
use ingest_core::ws::emit::Emitter;

/// Bound of the per-symbol quote book (a wildcard subscription cannot grow it without limit).
const MAX_BOOK_SYMBOLS: usize = 100_000;

/// Streams from `cfg.provider`, optionally recording every frame.
#[derive(Debug)]
pub struct MarketSource {
    cfg: MarketConfig,
    record_to: Option<std::path::PathBuf>,
    repair: StoreNames,
}

impl MarketSource {
    /// Streams `cfg`; `runtime` names the gap repair's durable state and its Kafka
    /// `transactional.id` (`runtime.instance_id`).
    pub fn new(cfg: MarketConfig, record_to: Option<std::path::PathBuf>, runtime: &RuntimeConfig) -> Self {
        let group = cfg.repair_group();
        let producer = env!("CARGO_PKG_NAME");
        let repair = StoreNames {
            key: format!("{producer}/{group}"),
            transactional_id: runtime.transactional_id(producer, &group),
        };
        Self { cfg, record_to, repair }
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
            let provider = self.cfg.provider.get();
            let emitter = Emitter::new(&ctx, provider.label());
            // Gap repair on its own task, fed through a bounded queue the stream never waits on.
            let (mut output, task) = if self.cfg.repair.enabled {
                let history = provider.history(&self.cfg);
                let symbols = self.cfg.shard().into_iter().filter(|s| !s.contains('*')).collect();
                let channels = &self.cfg.channels;
                let kinds = Kinds {
                    trades: channels.contains(&Channel::Trades),
                    quotes: channels.contains(&Channel::Quotes),
                    bars: channels.contains(&Channel::MinuteBars),
                };
                let repairer = Repairer::new(history, self.cfg.repair.clone(), symbols, provider.label(), kinds);
                let follow = repairer.follow();
                let (tx, rx) = tokio::sync::mpsc::channel(self.cfg.repair.queue);
                let task = tokio::spawn(repair::run(rx, ctx.clone(), repairer, self.repair.clone()));
                (Repairing::new(emitter, Some(tx), follow, &ctx, provider.label()), Some(task))
            } else {
                (Repairing::new(emitter, None, Follow::default(), &ctx, provider.label()), None)
            };
            let result = ingest_core::ws::run(session.as_mut(), &mut output, &settings, &ctx).await;
            // Closes the queue: the task finishes the repair in progress (or stops at shutdown).
            drop(output);
            if let Some(task) = task {
                let _ = task.await;
            }
            result
        })
    }
}

/// The protocol session of `provider` for `cfg`, with a quote book of production size.
pub(crate) fn session_for(provider: MarketProvider, cfg: &MarketConfig) -> Box<ProtocolSession> {
    provider.get().session(cfg, QuoteBook::new(MAX_BOOK_SYMBOLS))
}
