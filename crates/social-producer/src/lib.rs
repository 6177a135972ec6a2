//! social-producer's library: Reddit and StockTwits pollers (request, classification, pure
//! normalization) and the group that runs them exactly once.
//!
//! - [`reddit`]: application-only OAuth2 + `/r/{sub}/new` listings.
//! - [`stocktwits`]: symbol streams.
//! - [`x`]: X (Twitter) v2 recent search (`social.twitter.mode: search`); [`x_stream`]: the
//!   filtered stream (`mode: stream`), a source of its own (nothing to commit: it cannot replay).
//! - [`config`]: the `social:` section; [`group`]: the pollers in one exactly-once group.
//!

pub mod catch_up;
pub mod config;
pub mod reddit;
pub mod stocktwits;
pub mod x;
pub mod x_stream;

use std::sync::Arc;
use std::time::Duration;

use ingest_core::config::{Config, Section};
use ingest_core::http::HttpConfig;
use ingest_core::poll::{PollGroup, PollSettings};

/// Name of the polling group.
pub const GROUP: &str = "social";

/// The X filtered stream source, when configured (`social.twitter.mode: stream`).
pub fn x_stream(cfg: &Config<config::SocialConfig>) -> Option<x_stream::XStream> {
    let (s, t) = (&cfg.section, &cfg.section.twitter);
    (s.runs(x::PROVIDER) && t.mode == "stream").then(|| {
        x_stream::XStream::new(x_stream::StreamSettings {
            base_url: t.base_url.trim_end_matches('/').to_string(),
            bearer: t.bearer_token.clone(),
            rules: t.rules.clone(),
            symbols: Arc::new(s.symbols.clone()),
            user_agent: s.user_agent.clone(),
            read_timeout: Duration::from_secs(t.stream_read_timeout_secs),
            network_step: Duration::from_millis(t.reconnect_network_step_ms),
            network_max: Duration::from_secs(t.reconnect_network_max_secs),
            http_base: Duration::from_secs(t.reconnect_http_base_secs),
            http_max: Duration::from_secs(t.reconnect_http_max_secs),
            rate_limit_base: Duration::from_secs(t.reconnect_rate_limit_base_secs),
            max_line_bytes: 1 << 20,
        })
    })
}

/// The polled social sources (Reddit subreddits, StockTwits symbols, X recent search) in one group.
pub fn group(cfg: &Config<config::SocialConfig>, producer: &str) -> PollGroup {
    let s = &cfg.section;
    let mut settings = cfg.core.runtime.group_settings(producer, GROUP);
    settings.dedup_window = s.dedup_window;
    let mut group = PollGroup::new(GROUP, settings);
    let symbols = Arc::new(s.symbols.clone());
    let http = HttpConfig { user_agent: s.user_agent.clone(), ..HttpConfig::default() };
    // Enabled with its credentials set (Section::runs): a provider without them is disabled.
    if s.runs(reddit::PROVIDER) {
        let r = &s.reddit;
        let tokens = Arc::new(reddit::TokenCache::new(
            &r.auth_url,
            r.client_id.clone(),
            r.client_secret.clone(),
            http.max_body_bytes,
        ));
        let poll = PollSettings {
            http: http.clone(),
            rate_per_second: f64::from(r.requests_per_minute) / 60.0,
            rate_burst: 1,
            ..PollSettings::default()
        };
        for sub in &r.subreddits {
            let every = Duration::from_secs(r.interval_secs);
            let sub = reddit::Subreddit::new(&r.base_url, sub, tokens.clone(), symbols.clone(), every)
                .with_catch_up(r.catch_up_pages);
            group.add(sub, poll.clone());
        }
    }
    if s.runs(x::PROVIDER) && s.twitter.mode == "search" {
        let t = &s.twitter;
        let poll = PollSettings {
            http: http.clone(),
            rate_per_second: f64::from(t.requests_per_15min) / 900.0,
            rate_burst: 1,
            ..PollSettings::default()
        };
        let every = Duration::from_secs(t.interval_secs);
        group.add(x::RecentSearch::new(&t.base_url, t.bearer_token.clone(), &t.rules, symbols.clone(), every), poll);
    }
    if s.runs(stocktwits::PROVIDER) {
        let t = &s.stocktwits;
        let poll = PollSettings {
            http: http.clone(),
            rate_per_second: f64::from(t.requests_per_hour) / 3600.0,
            rate_burst: u32::try_from(t.symbols.len()).unwrap_or(1).max(1),
            ..PollSettings::default()
        };
        for sym in &t.symbols {
            let every = Duration::from_secs(t.interval_secs);
            let stream =
                stocktwits::SymbolStream::new(&t.base_url, sym, symbols.clone(), every).with_catch_up(t.catch_up_pages);
            group.add(stream, poll.clone());
        }
    }
    group
}

#[cfg(test)]
mod hostile {
    use std::sync::Arc;
    use std::time::Duration;

    use ingest_core::config::Secret;
    use ingest_core::testkit::hostile_bodies;

    use crate::{reddit, stocktwits, x};

    fn data(name: &str) -> Vec<u8> {
        std::fs::read(format!("{}/test_data/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap_or_default()
    }

    /// Hostile input for the social pollers and the X filtered stream's lines: mutated real
    /// responses and random bytes never panic.
    #[test]
    fn hostile_bodies_never_panic() {
        let symbols = Arc::new(vec!["AAPL".to_string(), "TSLA".to_string()]);
        let tokens =
            Arc::new(reddit::TokenCache::new("https://auth.example", Secret::new("id"), Secret::new("s"), 1 << 20));
        let sub =
            reddit::Subreddit::new("https://oauth.example", "stocks", tokens, symbols.clone(), Duration::from_secs(60));
        assert_eq!(hostile_bodies(&sub, &Default::default(), &[data("reddit_new.json")], 1500), 1500);

        let st = stocktwits::SymbolStream::new("https://st.example", "F", symbols.clone(), Duration::from_secs(60));
        assert_eq!(hostile_bodies(&st, &Default::default(), &[data("stocktwits_f.json")], 1500), 1500);

        let page = br#"{"data":[{"id":"1620858830937812995","text":"$AAPL beats &amp; rallies","author_id":"2833017360","created_at":"2023-02-01T18:57:14.000Z","public_metrics":{"retweet_count":3,"reply_count":1,"like_count":9,"quote_count":0}},{"id":"1","text":"x","author_id":"2","created_at":"nope"}],"includes":{"users":[{"id":"2833017360","name":"Some One","username":"someone"}]},"meta":{"newest_id":"1620858830937812995","oldest_id":"999","result_count":2,"next_token":"b26v"}}"#.to_vec();
        let errors =
            br#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#.to_vec();
        let search = x::RecentSearch::new(
            "https://api.x.example",
            Secret::new("tok"),
            &["$AAPL lang:en".into()],
            symbols,
            Duration::from_secs(60),
        );
        assert_eq!(hostile_bodies(&search, &Default::default(), &[page, errors], 1500), 1500);

        let now = chrono::Utc::now();
        let line = br#"{"data":{"id":"1620858830937812995","text":"$AAPL beats &amp; rallies","author_id":"2833017360","created_at":"2023-02-01T18:57:14.000Z"},"includes":{"users":[{"id":"2833017360","name":"Some One","username":"someone"}]},"matching_rules":[{"id":"1","tag":"aapl"}]}"#.to_vec();
        let closed =
            br#"{"errors":[{"title":"operational-disconnect","disconnect_type":"UpstreamOperationalDisconnect"}]}"#;
        let seeds = [line, closed.to_vec()];
        let lines = ingest_core::testkit::hostile_inputs("x stream lines", &seeds, 1500, |line| {
            let _ = crate::x_stream::parse_line(crate::x_stream::trim_line(line), &["AAPL".to_string()], now);
        });
        assert_eq!(lines, 1500);
    }
}
