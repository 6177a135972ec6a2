//! news-producer's library: the pure parts of news normalization, table-tested.
//!
//! - [`canon`]: canonical article URLs and the UUID v5 record id derived from them.
//! - [`text`]: NewsAPI truncation markers, cashtags, configured symbols in text.
//! - [`sentiment`]: the built-in finance lexicon scorer for articles without a provider score.
//! - [`newsapi`], [`alphavantage`]: the pollers (request, classification, pure normalization).
//! - [`config`]: the `news:` section.

pub mod alphavantage;
pub mod canon;
pub mod config;
pub mod newsapi;
pub mod sentiment;
pub mod text;

use std::sync::Arc;
use std::time::Duration;

use ingest_core::config::Config;
use ingest_core::poll::{GroupSettings, PollGroup, PollSettings};
use ingest_core::resilience::BreakerConfig;

/// Name of the polling group (source name in health, key in `ingest.state`).
pub const GROUP: &str = "news";

/// The news sources: every enabled NewsAPI and Alpha Vantage poller in one group, so one dedup
/// window makes a story reported by both providers (or polled twice) one record.
pub fn group(cfg: &Config<config::NewsConfig>, producer: &str) -> PollGroup {
    let n = &cfg.section;
    let mut settings = GroupSettings::new(cfg.core.runtime.transactional_id(producer, GROUP));
    settings.dedup_window = n.dedup_window;
    let mut group = PollGroup::new(GROUP, settings);
    let symbols = Arc::new(n.symbols.clone());
    let quota = |q: u32| (q > 0).then_some(q);
    let breaker =
        BreakerConfig { failure_threshold: n.breaker_failures, open_for: Duration::from_secs(n.breaker_open_secs) };
    if n.newsapi.enabled {
        let a = &n.newsapi;
        let poll = PollSettings {
            rate_per_second: 1.0,
            rate_burst: 1,
            daily_quota: quota(a.daily_quota),
            breaker,
            ..PollSettings::default()
        };
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
    if n.alphavantage.enabled {
        let a = &n.alphavantage;
        // Alpha Vantage allows one request a second.
        let poll = PollSettings {
            rate_per_second: 1.0,
            rate_burst: 1,
            daily_quota: quota(a.daily_quota),
            breaker,
            ..PollSettings::default()
        };
        let every = Duration::from_secs(a.interval_secs);
        for t in &a.tickers {
            let p = alphavantage::AlphaVantage::new(&a.base_url, a.api_key.clone(), t, symbols.clone(), every);
            group.add(p, poll.clone());
        }
    }
    group
}
