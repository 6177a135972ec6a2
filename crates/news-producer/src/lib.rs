//! news-producer's library: the pure parts of news normalization, table-tested.
//!
//! - [`canon`]: canonical article URLs and the UUID v5 record id derived from them.
//! - `text` (NewsAPI truncation markers, cashtags, symbols) and `sentiment` (the finance lexicon
//!   scorer) live in ingest-core, shared with the social producer.
//! - [`newsapi`], [`alphavantage`]: the pollers (request, classification, pure normalization).
//! - [`config`]: the `news:` section.

pub mod alphavantage;
pub mod canon;
pub mod config;
pub mod newsapi;
// Shared with the social producer; kept reachable under their old paths.
pub use text_signals::{sentiment, text};

use std::sync::Arc;
use std::time::Duration;

use ingest_core::config::{Config, Section};
use ingest_core::poll::{PollGroup, PollSettings};
use ingest_core::resilience::BreakerConfig;

/// Name of the polling group (source name in health, key in `ingest.state`).
pub const GROUP: &str = "news";

/// The news sources: every enabled NewsAPI and Alpha Vantage poller in one group, so one dedup
/// window makes a story reported by both providers (or polled twice) one record.
pub fn group(cfg: &Config<config::NewsConfig>, producer: &str) -> PollGroup {
    let n = &cfg.section;
    let mut settings = cfg.core.runtime.group_settings(producer, GROUP);
    settings.dedup_window = n.dedup_window;
    let mut group = PollGroup::new(GROUP, settings);
    let symbols = Arc::new(n.symbols.clone());
    let breaker =
        BreakerConfig { failure_threshold: n.breaker_failures, open_for: Duration::from_secs(n.breaker_open_secs) };
    // Both providers: one request a second at most (Alpha Vantage's documented burst limit;
    // NewsAPI's quota is daily), a daily quota when configured (0: none).
    let settings = |daily_quota: u32| PollSettings {
        rate_per_second: 1.0,
        rate_burst: 1,
        daily_quota: (daily_quota > 0).then_some(daily_quota),
        breaker,
        ..PollSettings::default()
    };
    // Enabled with its key set (Section::runs): a provider without its key is disabled.
    if n.runs(newsapi::PROVIDER) {
        let a = &n.newsapi;
        let poll = settings(a.daily_quota);
        let every = Duration::from_secs(a.interval_secs);
        let mut endpoints: Vec<newsapi::Endpoint> =
            a.queries.iter().map(|q| newsapi::Endpoint::Everything { q: q.clone() }).collect();
        if a.headlines {
            endpoints.push(newsapi::Endpoint::Headlines {
                country: a.headlines_country.clone(),
                category: a.headlines_category.clone(),
            });
        }
        for e in endpoints {
            group.add(newsapi::NewsApi::new(&a.base_url, a.api_key.clone(), e, symbols.clone(), every), poll.clone());
        }
    }
    if n.runs(alphavantage::PROVIDER) {
        let a = &n.alphavantage;
        let poll = settings(a.daily_quota);
        let every = Duration::from_secs(a.interval_secs);
        let queries = a
            .tickers
            .iter()
            .map(|t| alphavantage::Query::Ticker(t.clone()))
            .chain(a.topics.iter().map(|t| alphavantage::Query::Topic(t.clone())));
        for q in queries {
            let p = alphavantage::AlphaVantage::new(&a.base_url, a.api_key.clone(), q, symbols.clone(), every);
            group.add(p, poll.clone());
        }
    }
    group
}
