//! sec-producer's library: the EDGAR current-filings feed and the submissions API as pollers,
//! with the parsing kept pure and table-tested.
//!
//! - [`atom`]: feed bytes → entries → one filing per accession number (hostile XML refused).
//! - [`feed`]: the current-filings feed poller; [`submissions`]: the submissions API poller.
//! - [`config`]: the `sec:` section; [`group`]: every SEC poller in one exactly-once group.

pub mod atom;
pub mod config;
pub mod feed;
pub mod submissions;

use std::time::Duration;

use ingest_core::config::Config;
use ingest_core::http::HttpConfig;
use ingest_core::poll::{PollGroup, PollSettings};

/// Name of the polling group.
pub const GROUP: &str = "sec";

/// The SEC sources: a feed poller per form type (one for all forms when none is configured)
/// and a submissions poller per CIK, in one group: one dedup window by accession number, one
/// rate limit (`max_requests_per_second`) and the declared User-Agent on every request.
pub fn group(cfg: &Config<config::SecConfig>, producer: &str) -> PollGroup {
    let s = &cfg.section;
    let mut settings = cfg.core.runtime.group_settings(producer, GROUP);
    settings.dedup_window = s.dedup_window;
    let mut group = PollGroup::new(GROUP, settings);
    let poll = PollSettings {
        http: HttpConfig { user_agent: s.user_agent.trim().to_string(), ..HttpConfig::default() },
        rate_per_second: s.max_requests_per_second,
        rate_burst: 1,
        ..PollSettings::default()
    };
    let block = Duration::from_secs(s.block_secs);
    let forms: Vec<String> = if s.form_types.is_empty() { vec![String::new()] } else { s.form_types.clone() };
    for form in &forms {
        let every = Duration::from_secs(s.interval_secs);
        group.add(feed::CurrentFeed::new(&s.base_url, form, s.page_size, every, block), poll.clone());
    }
    for cik in &s.ciks {
        let every = Duration::from_secs(s.submissions_interval_secs);
        let p = submissions::Submissions::new(
            &s.data_url,
            &s.base_url,
            cik,
            s.form_types.clone(),
            s.backfill,
            every,
            block,
        );
        group.add(p, poll.clone());
    }
    group
}
