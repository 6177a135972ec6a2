//! social-producer end to end: the binary against provider-sim's Reddit and StockTwits and the
//! real local Kafka, checked by independent `read_committed` consumers.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::{SentimentSource, SocialPost};
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::social::{SimRedditPost, SimTweet, SimTwit, SocialConfig, SocialHandle};
use rdkafka::message::Message;

const BIN: &str = env!("CARGO_BIN_EXE_social-producer");

struct Fixture {
    sim: Sim,
    social: SocialHandle,
    raw: String,
    env: Vec<(String, String)>,
}

impl Fixture {
    async fn new(token_ttl: Duration, window_requests: u32, window: Duration) -> Self {
        let stem = testkit::unique_topic("social");
        let (raw, state) = (format!("{stem}.raw"), format!("{stem}.state"));
        testkit::create_topics(&[
            TopicToCreate::new(&raw, 3),
            TopicToCreate::new(format!("{stem}.dlq"), 1),
            TopicToCreate::new(format!("{stem}.events"), 1),
            TopicToCreate::new(&state, 1),
        ])
        .await;
        let social = SocialHandle::new(SocialConfig {
            token_ttl,
            window_requests,
            window,
            x_page_size: 2,
            ..SocialConfig::new("cid", "csecret", "x-bearer")
        });
        // https:// with a certificate of the test CA, as the real APIs serve (the producer trusts
        // the CA through TLS_EXTRA_CA_FILE).
        let ca = provider_sim::tls::TestCa::get().unwrap();
        let sim =
            Sim::start_tls("127.0.0.1:0".parse().unwrap(), social.router(), &ca.identity().unwrap()).await.unwrap();
        let url = sim.http_url();
        let ca_file = ca.ca_file().display().to_string();
        let env = [
            ("TLS_EXTRA_CA_FILE", ca_file.as_str()),
            ("FINSTREAM__KAFKA__TOPICS__SOCIAL_POSTS__NAME", raw.as_str()),
            ("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME", &format!("{stem}.events")),
            ("FINSTREAM__KAFKA__TOPICS__STATE__NAME", &state),
            ("FINSTREAM__SOCIAL__REDDIT__BASE_URL", &url),
            ("FINSTREAM__SOCIAL__REDDIT__AUTH_URL", &url),
            ("REDDIT_CLIENT_ID", "cid"),
            ("REDDIT_CLIENT_SECRET", "csecret"),
            ("FINSTREAM__SOCIAL__REDDIT__SUBREDDITS", "wallstreetbets"),
            ("FINSTREAM__SOCIAL__REDDIT__INTERVAL_SECS", "1"),
            ("FINSTREAM__SOCIAL__REDDIT__REQUESTS_PER_MINUTE", "600"),
            ("FINSTREAM__SOCIAL__STOCKTWITS__BASE_URL", &url),
            ("FINSTREAM__SOCIAL__STOCKTWITS__SYMBOLS", "F"),
            ("FINSTREAM__SOCIAL__STOCKTWITS__INTERVAL_SECS", "1"),
            ("FINSTREAM__SOCIAL__STOCKTWITS__REQUESTS_PER_HOUR", "36000"),
            ("FINSTREAM__SOCIAL__TWITTER__ENABLED", "false"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .chain([("FINSTREAM__RUNTIME__INSTANCE_ID".to_string(), testkit::unique_topic("inst"))])
        .collect();
        Self { sim, social, raw, env }
    }

    fn env_value(&self, key: &str) -> String {
        self.env.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone()).unwrap_or_default()
    }

    fn spawn(&self) -> ProducerProcess {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ProducerProcess::spawn(Path::new(BIN), &env)
    }

    fn committed(&self) -> Vec<SocialPost> {
        testkit::consume_committed(&self.raw, Duration::from_secs(60))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect()
    }

    fn events(&self) -> Vec<serde_json::Value> {
        testkit::consume_committed(&self.env_value("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME"), Duration::from_secs(60))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect()
    }

    async fn wait_for(&self, id: &str) -> Vec<SocialPost> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.committed();
            if got.iter().any(|p| p.id == id) {
                return got;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{id} never committed; have {:?}",
                got.iter().map(|p| &p.id).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn reddit(id: &str, title: &str, selftext: &str, author: &str, secs: i64) -> SimRedditPost {
    SimRedditPost {
        id: id.into(),
        subreddit: "wallstreetbets".into(),
        title: title.into(),
        selftext: selftext.into(),
        author: author.into(),
        created: Utc.timestamp_opt(1_704_204_000 + secs, 0).unwrap(),
        score: 42,
        num_comments: 7,
    }
}

fn twit(id: u64, body: &str, label: Option<&str>) -> SimTwit {
    SimTwit {
        id,
        symbol: "F".into(),
        body: body.into(),
        user: "todmacx".into(),
        created: Utc.with_ymd_and_hms(2024, 1, 2, 14, 0, 0).unwrap(),
        label: label.map(String::from),
        likes: 2,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reddit_and_stocktwits_field_by_field_with_token_refresh_and_restart_without_duplicates() {
    let fx = Fixture::new(Duration::from_secs(2), 10_000, Duration::from_secs(600)).await;
    fx.social.post(reddit("18wxyz", "$TSLA earnings beat & margins surge", "Holding AAPL too.", "someone", 0));
    fx.social.post(reddit("18wdel", "GME to the moon", "[removed]", "[deleted]", 60));
    fx.social.twit(twit(161_970_151, "Let's begin the fun 🚀 $F", Some("Bullish")));
    fx.social.twit(twit(161_970_974, "Ford recalls trucks & misses estimates", None));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_18wdel").await;
    fx.wait_for("stocktwits:161970974").await;
    // Past the 2 s token lifetime: a new token is fetched and polling goes on.
    tokio::time::sleep(Duration::from_secs(3)).await;
    fx.social.post(reddit("18wnew", "NVDA to follow?", "", "other", 120));
    fx.wait_for("reddit:t3_18wnew").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    assert!(fx.social.tokens_issued() >= 2, "token refreshed: {} issued", fx.social.tokens_issued());

    // Restart with one more of each: everything once.
    fx.social.post(reddit("18wlast", "Last one", "", "someone", 180));
    fx.social.twit(twit(161_971_000, "Another $F note", Some("Bearish")));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_18wlast").await;
    fx.wait_for("stocktwits:161971000").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = fx.committed();
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let ids: Vec<&str> = got.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 7, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 7, "no duplicate: {ids:?}");

    let by = |id: &str| got.iter().find(|p| p.id == id).unwrap();
    let r = by("reddit:t3_18wxyz");
    assert_eq!(r.text, "$TSLA earnings beat & margins surge\n\nHolding AAPL too.", "raw_json=1: no HTML escapes");
    assert_eq!(r.tickers, ["TSLA", "AAPL"]);
    assert_eq!(r.created_at, Utc.timestamp_opt(1_704_204_000, 0).unwrap());
    assert_eq!(r.url, "https://www.reddit.com/r/wallstreetbets/comments/18wxyz/post/");
    assert_eq!((r.engagement.score, r.engagement.comments), (Some(42), Some(7)));
    assert_eq!(r.community.as_deref(), Some("wallstreetbets"));
    assert_eq!(r.sentiment_source, Some(SentimentSource::Lexicon));
    let gone = by("reddit:t3_18wdel");
    assert!(gone.removed);
    assert_eq!((gone.author.as_str(), gone.text.as_str()), ("[deleted]", "GME to the moon"));
    let t = by("stocktwits:161970151");
    assert_eq!(t.text, "Let's begin the fun 🚀 $F", "HTML unescaped once");
    assert_eq!((t.sentiment, t.sentiment_label.as_deref()), (Some(1.0), Some("Bullish")));
    assert_eq!(t.tickers, ["F"]);
    assert_eq!(by("stocktwits:161971000").sentiment, Some(-1.0));

    let log = fx.sim.log.all();
    let listing = log.iter().find(|r| r.path == "/r/wallstreetbets/new").unwrap();
    assert!(listing.query.as_deref().unwrap_or("").contains("raw_json=1"));
    let ua = listing.headers.iter().find(|(k, _)| k == "user-agent").map(|(_, v)| v.as_str()).unwrap_or("");
    assert!(ua.contains("finstream-ingest") && ua.contains("/u/"), "descriptive User-Agent: {ua}");
    assert!(
        log.iter()
            .any(|r| r.path == "/api/2/streams/symbol/F.json" && r.query.as_deref().unwrap_or("").contains("since="))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_reddit_rate_window_holds_the_next_listing_until_the_reset() {
    // Two listings per 3-second window: after the second the headers say 0 remaining.
    let mut fx = Fixture::new(Duration::from_secs(3600), 2, Duration::from_secs(3)).await;
    fx.env.retain(|(k, _)| !k.starts_with("FINSTREAM__SOCIAL__STOCKTWITS"));
    fx.env.push(("FINSTREAM__SOCIAL__STOCKTWITS__ENABLED".into(), "false".into()));
    fx.social.post(reddit("18wxyz", "$TSLA", "", "someone", 0));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_18wxyz").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let listings = loop {
        let l: Vec<_> = fx.sim.log.to_path("/r/wallstreetbets/new");
        if l.len() >= 3 {
            break l;
        }
        assert!(std::time::Instant::now() < deadline, "only {} listings", l.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let gap = listings[2].at - listings[1].at;
    assert!(gap >= chrono::Duration::milliseconds(1500), "held until the window reset: {gap}");
    assert!(p.log().contains("rate window used up"), "{}", p.log());
    assert!(!p.log().contains("whoa there"), "no 429 needed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_recent_search_pages_and_resumes_from_since_id() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    fx.env.retain(|(k, _)| {
        !k.starts_with("FINSTREAM__SOCIAL__STOCKTWITS") && !k.starts_with("FINSTREAM__SOCIAL__TWITTER")
    });
    let url = fx.sim.http_url();
    for (k, v) in [
        ("FINSTREAM__SOCIAL__STOCKTWITS__ENABLED", "false"),
        ("FINSTREAM__SOCIAL__REDDIT__ENABLED", "false"),
        ("FINSTREAM__SOCIAL__TWITTER__MODE", "search"),
        ("FINSTREAM__SOCIAL__TWITTER__BASE_URL", url.as_str()),
        ("FINSTREAM__SOCIAL__TWITTER__RULES", "$AAPL lang:en"),
        ("FINSTREAM__SOCIAL__TWITTER__INTERVAL_SECS", "1"),
        ("FINSTREAM__SOCIAL__TWITTER__REQUESTS_PER_15MIN", "9000"),
        ("TWITTER_BEARER_TOKEN", "x-bearer"),
    ] {
        fx.env.push((k.into(), v.into()));
    }
    let tweet = |id: u64, text: &str| SimTweet {
        id,
        text: text.into(),
        author_id: 2_833_017_360,
        username: "someone".into(),
        created: Utc.with_ymd_and_hms(2023, 2, 1, 18, 57, 14).unwrap(),
    };
    // Five tweets, pages of two: the first pass follows next_token three times.
    for i in 0..5u64 {
        fx.social.tweet(tweet(1_620_858_830_937_812_990 + i, "$AAPL beats & rallies <3"));
    }
    let mut p = fx.spawn();
    fx.wait_for("x:1620858830937812994").await;
    let got = fx.wait_for("x:1620858830937812990").await;
    fx.social.tweet(tweet(1_620_858_830_937_813_000, "$AAPL later"));
    let got2 = fx.wait_for("x:1620858830937813000").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    assert!(got.len() >= 5);
    let ids: Vec<&str> = got2.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids.len(), 6, "{ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 6);
    let t = got2.iter().find(|p| p.id == "x:1620858830937812990").unwrap();
    assert_eq!((t.author.as_str(), t.text.as_str()), ("someone", "$AAPL beats & rallies <3"), "text unescaped once");
    assert_eq!(t.url, "https://x.com/someone/status/1620858830937812990");
    assert_eq!((t.engagement.score, t.engagement.comments, t.engagement.likes), (Some(1), Some(2), Some(3)));
    let reqs = fx.sim.log.to_path("/2/tweets/search/recent");
    assert!(reqs.iter().any(|r| r.query.as_deref().unwrap_or("").contains("next_token=p2")), "paged");
    assert!(
        reqs.iter().any(|r| r.query.as_deref().unwrap_or("").contains("since_id=1620858830937812994")),
        "resumed from the newest id"
    );
    assert!(reqs.iter().all(|r| r.headers.iter().any(|(k, v)| k == "authorization" && v == "Bearer x-bearer")));
}

fn stream_fixture_env(fx: &mut Fixture, read_timeout_secs: &str) {
    fx.env.retain(|(k, _)| !k.starts_with("FINSTREAM__SOCIAL__"));
    let url = fx.sim.http_url();
    for (k, v) in [
        ("FINSTREAM__SOCIAL__STOCKTWITS__ENABLED", "false"),
        ("FINSTREAM__SOCIAL__REDDIT__ENABLED", "false"),
        ("FINSTREAM__SOCIAL__TWITTER__MODE", "stream"),
        ("FINSTREAM__SOCIAL__TWITTER__BASE_URL", url.as_str()),
        ("FINSTREAM__SOCIAL__TWITTER__RULES", "$AAPL lang:en,$TSLA"),
        ("FINSTREAM__SOCIAL__TWITTER__STREAM_READ_TIMEOUT_SECS", read_timeout_secs),
        ("FINSTREAM__SOCIAL__TWITTER__RECONNECT_NETWORK_STEP_MS", "300"),
        ("FINSTREAM__SOCIAL__TWITTER__RECONNECT_HTTP_BASE_SECS", "1"),
        ("FINSTREAM__SOCIAL__TWITTER__RECONNECT_RATE_LIMIT_BASE_SECS", "2"),
        ("TWITTER_BEARER_TOKEN", "x-bearer"),
    ] {
        fx.env.push((k.into(), v.into()));
    }
}

async fn wait_connections(fx: &Fixture, n: u32) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fx.social.stream_connections() < n {
        assert!(std::time::Instant::now() < deadline, "{} of {n} stream connections", fx.social.stream_connections());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn stream_tweet(id: u64, text: &str) -> SimTweet {
    SimTweet {
        id,
        text: text.into(),
        author_id: 2_833_017_360,
        username: "someone".into(),
        created: Utc.with_ymd_and_hms(2023, 2, 1, 18, 57, 14).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_stream_syncs_rules_delivers_tweets_and_reconnects_on_schedule() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    stream_fixture_env(&mut fx, "30");
    let stale = fx.social.add_rule("old rule", "someone-else");
    fx.social.add_rule("$TSLA", "kept");
    let mut p = fx.spawn();
    wait_connections(&fx, 1).await;
    let rules = fx.social.rules();
    let values: Vec<&str> = rules.iter().map(|(_, v, _)| v.as_str()).collect();
    assert_eq!(
        values,
        ["$TSLA", "$AAPL lang:en"],
        "stale rule deleted, the configured one added, the kept one untouched"
    );
    assert!(!rules.iter().any(|(id, _, _)| *id == stale));

    fx.social.stream_line(&stream_tweet(1_620_858_830_937_812_995, "$AAPL beats & rallies").stream_line());
    fx.social.stream_keepalive();
    fx.social.stream_line("this is not JSON");
    fx.wait_for("x:1620858830937812995").await;

    // In-band operational-disconnect: X still counts the old connection for a moment (the
    // simulator answers 429 TooManyConnections within 500 ms); the producer waits 1 s or more
    // and connects on the first try.
    let t = Utc::now();
    let before = fx.sim.log.to_path("/2/tweets/search/stream").len();
    fx.social.stream_operational_disconnect();
    wait_connections(&fx, 2).await;
    let connects = fx.sim.log.to_path("/2/tweets/search/stream");
    let waited = connects.last().unwrap().at - t;
    assert!(waited >= chrono::Duration::milliseconds(990), "reconnected after {waited}");
    assert!(waited < chrono::Duration::milliseconds(2500), "but not on the 60 s 429 schedule: {waited}");
    assert_eq!(connects.len(), before + 1, "one connect, no 429 TooManyConnections");

    // Two HTTP errors at connect: 1 s, then 2 s (exponential), then connected.
    fx.social.stream_fail_connects(503, 2);
    fx.social.stream_drop();
    wait_connections(&fx, 3).await;
    let c = fx.sim.log.to_path("/2/tweets/search/stream");
    let n = c.len();
    assert!(
        c[n - 2].at - c[n - 3].at >= chrono::Duration::milliseconds(950),
        "first HTTP backoff: {}",
        c[n - 2].at - c[n - 3].at
    );
    assert!(
        c[n - 1].at - c[n - 2].at >= chrono::Duration::milliseconds(1950),
        "doubled: {}",
        c[n - 1].at - c[n - 2].at
    );

    // 429 at connect: the rate-limit schedule (2 s here; 60 s by default).
    fx.social.stream_fail_connects(429, 1);
    fx.social.stream_drop();
    wait_connections(&fx, 4).await;
    let c = fx.sim.log.to_path("/2/tweets/search/stream");
    let n = c.len();
    assert!(
        c[n - 1].at - c[n - 2].at >= chrono::Duration::milliseconds(1950),
        "429 backoff: {}",
        c[n - 1].at - c[n - 2].at
    );

    // After reconnecting, a repeated tweet is dropped, a new one delivered.
    fx.social.stream_line(&stream_tweet(1_620_858_830_937_812_995, "$AAPL beats & rallies").stream_line());
    fx.social.stream_line(&stream_tweet(1_620_858_830_937_813_000, "$TSLA later").stream_line());
    let got = fx.wait_for("x:1620858830937813000").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    assert_eq!(got.len(), 2, "{:?}", got.iter().map(|p| &p.id).collect::<Vec<_>>());
    let t = got.iter().find(|p| p.id == "x:1620858830937812995").unwrap();
    assert_eq!((t.author.as_str(), t.text.as_str(), t.provider.as_str()), ("someone", "$AAPL beats & rallies", "x"));
    assert!(c.iter().all(|r| r.query.as_deref().unwrap_or("").contains("expansions=author_id")));
    let events: Vec<ingest_core::record::IngestEvent> =
        testkit::consume_committed(&fx.env_value("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME"), Duration::from_secs(30))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect();
    let gaps = events.iter().filter(|e| e.kind == ingest_core::record::EventKind::Gap && e.provider == "x").count();
    assert_eq!(gaps, 3, "one gap per disconnect");
    let dlq = testkit::consume_committed(&fx.raw.replace(".raw", ".dlq"), Duration::from_secs(30));
    assert_eq!(dlq.len(), 1, "the non-JSON line was dead-lettered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x_stream_without_keep_alives_is_reconnected_after_the_read_timeout() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    stream_fixture_env(&mut fx, "1");
    let mut p = fx.spawn();
    wait_connections(&fx, 1).await;
    let t = std::time::Instant::now();
    wait_connections(&fx, 2).await;
    assert!(t.elapsed() >= Duration::from_millis(800), "not before the read timeout");
    assert!(p.log().contains("keep-alives missing"), "{}", p.log());
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
}

fn twit_of(symbol: &str, id: u64) -> SimTwit {
    SimTwit { symbol: symbol.into(), ..twit(id, &format!("${symbol} note {id}"), None) }
}

async fn ready(p: &ProducerProcess) -> serde_json::Value {
    reqwest::get(format!("http://{}/ready", p.health)).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_and_unknown_sources_wait_alone_while_the_healthy_ones_deliver() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    fx.env
        .retain(|(k, _)| k != "FINSTREAM__SOCIAL__REDDIT__SUBREDDITS" && k != "FINSTREAM__SOCIAL__STOCKTWITS__SYMBOLS");
    fx.env.push(("FINSTREAM__SOCIAL__REDDIT__SUBREDDITS".into(), "wallstreetbets,private_club,never_created".into()));
    fx.env.push(("FINSTREAM__SOCIAL__STOCKTWITS__SYMBOLS".into(), "F,BLOCKED".into()));
    fx.social.subreddit_status("private_club", 403);
    fx.social.subreddit_status("never_created", 404);
    fx.social.block_symbol("BLOCKED");
    fx.social.twit(twit_of("BLOCKED", 5));
    fx.social.post(reddit("18wa", "first", "", "someone", 0));
    fx.social.twit(twit(161_970_151, "first $F", None));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_18wa").await;
    fx.wait_for("stocktwits:161970151").await;
    // The healthy sources keep delivering after the others were refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fx.sim.log.to_path("/r/wallstreetbets/new").len() < 4 {
        assert!(std::time::Instant::now() < deadline, "wallstreetbets not polled on");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fx.social.post(reddit("18wb", "second", "", "someone", 60));
    fx.social.twit(twit(161_970_200, "second $F", None));
    fx.wait_for("reddit:t3_18wb").await;
    fx.wait_for("stocktwits:161970200").await;

    let r = ready(&p).await;
    let reasons = r["reasons"].to_string();
    for (source, why) in [
        ("reddit:private_club", "refused by reddit (HTTP 403)"),
        ("reddit:never_created", "not found at reddit (HTTP 404)"),
        ("stocktwits:BLOCKED", "refused by stocktwits (HTTP 403)"),
    ] {
        assert!(reasons.contains(&format!("{source}: {why}")), "/ready names {source}: {reasons}");
    }
    assert!(reasons.contains("next try in 900s") && reasons.contains("next try in 300s"), "{reasons}");
    for (outcome, n) in [("denied", 2.0), ("not_found", 1.0)] {
        let got = p.metric("producer_api_calls_total", &[("outcome", outcome)]).await;
        assert!(got >= n, "{outcome}: {got}");
    }
    // Each refused source was asked once (its next try is minutes away), the healthy one often.
    assert_eq!(fx.sim.log.to_path("/r/private_club/new").len(), 1);
    assert_eq!(fx.sim.log.to_path("/r/never_created/new").len(), 1);
    assert_eq!(fx.sim.log.to_path("/api/2/streams/symbol/BLOCKED.json").len(), 1);
    let warnings = p.log().lines().filter(|l| l.contains("never_created") && l.contains("WARN")).count();
    assert_eq!(warnings, 1, "one warning per try:\n{}", p.log());
    // Still up: it stops cleanly on SIGTERM (a producer that had exited would not answer 0).
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());

    let events = fx.events();
    let refused: Vec<String> = events
        .iter()
        .filter(|e| e["kind"] == "source_refused")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect();
    for source in ["reddit:private_club", "reddit:never_created", "stocktwits:BLOCKED"] {
        assert_eq!(refused.iter().filter(|m| m.contains(source)).count(), 1, "one event for {source}: {refused:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_every_source_is_refused_the_producer_says_so_and_exits_1() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    fx.env
        .retain(|(k, _)| k != "FINSTREAM__SOCIAL__REDDIT__SUBREDDITS" && k != "FINSTREAM__SOCIAL__STOCKTWITS__SYMBOLS");
    fx.env.push(("FINSTREAM__SOCIAL__REDDIT__SUBREDDITS".into(), "private_club".into()));
    fx.env.push(("FINSTREAM__SOCIAL__STOCKTWITS__SYMBOLS".into(), "BLOCKED".into()));
    fx.social.subreddit_status("private_club", 403);
    fx.social.block_symbol("BLOCKED");
    fx.social.twit(twit_of("BLOCKED", 5));
    let mut p = fx.spawn();
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(1), "{}", p.log());
    let log = p.log();
    assert!(log.contains("no source can run"), "{log}");
    assert!(log.contains("reddit:private_club") && log.contains("stocktwits:BLOCKED"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_shared_credential_stops_the_producer_and_names_the_setting() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    fx.env.retain(|(k, _)| k != "REDDIT_CLIENT_SECRET");
    fx.env.push(("REDDIT_CLIENT_SECRET".into(), "s3cr3t-not-the-right-one".into()));
    fx.social.twit(twit(161_970_151, "first $F", None));
    let mut p = fx.spawn();
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(1), "{}", p.log());
    assert!(p.log().contains("REDDIT_CLIENT_SECRET"), "{}", p.log());
    assert!(p.log().contains("every subreddit"), "says the credential is shared: {}", p.log());
    assert!(!p.log().contains("s3cr3t-not-the-right-one"), "the secret never appears: {}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_than_a_page_between_polls_is_caught_up_across_a_restart_and_a_cut_is_reported() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    // Small pages make "more than a page" a handful of posts.
    fx.social = SocialHandle::new(SocialConfig {
        reddit_page_size: 5,
        stocktwits_page_size: 4,
        ..SocialConfig::new("cid", "csecret", "x-bearer")
    });
    let ca = provider_sim::tls::TestCa::get().unwrap();
    fx.sim = Sim::start_tls("127.0.0.1:0".parse().unwrap(), fx.social.router(), &ca.identity().unwrap()).await.unwrap();
    let url = fx.sim.http_url();
    for (k, v) in &mut fx.env {
        if k.ends_with("BASE_URL") || k.ends_with("AUTH_URL") {
            v.clone_from(&url);
        }
    }
    fx.env.push(("FINSTREAM__SOCIAL__REDDIT__CATCH_UP_PAGES".into(), "10".into()));
    fx.env.push(("FINSTREAM__SOCIAL__STOCKTWITS__CATCH_UP_PAGES".into(), "10".into()));
    fx.social.post(reddit("000", "seed", "", "someone", 0));
    fx.social.twit(twit(1_000, "seed $F", None));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_000").await;
    fx.wait_for("stocktwits:1000").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());

    // Downtime: 13 posts (3 pages of 5) and 10 messages (3 pages of 4) arrive.
    for i in 1..=13 {
        fx.social.post(reddit(&format!("{i:03}"), "down", "", "someone", i * 10));
    }
    for i in 1..=10u64 {
        fx.social.twit(twit(1_000 + i, "down $F", None));
    }
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_001").await;
    let got = fx.wait_for("stocktwits:1001").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let ids: HashSet<&str> = got.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(got.len(), ids.len(), "no duplicate");
    assert_eq!(got.len(), 1 + 13 + 1 + 10, "every post and message once: {ids:?}");
    let listings = fx.sim.log.to_path("/r/wallstreetbets/new");
    assert!(listings.iter().any(|r| r.query.as_deref().unwrap_or("").contains("after=t3_")), "paged with after");
    let streams = fx.sim.log.to_path("/api/2/streams/symbol/F.json");
    assert!(streams.iter().any(|r| r.query.as_deref().unwrap_or("").contains("max=")), "paged with max");

    // A longer downtime than two pages can cover: cut, reported as a gap and counted.
    for i in 14..=30 {
        fx.social.post(reddit(&format!("{i:03}"), "long down", "", "someone", i * 10));
    }
    fx.env.retain(|(k, _)| k != "FINSTREAM__SOCIAL__REDDIT__CATCH_UP_PAGES");
    fx.env.push(("FINSTREAM__SOCIAL__REDDIT__CATCH_UP_PAGES".into(), "2".into()));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_030").await;
    testkit::wait_for(Duration::from_secs(30), "a catch-up cut", || async {
        (p.metric("producer_catchup_cut_total", &[("provider", "reddit")]).await >= 1.0).then_some(())
    })
    .await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let got = fx.committed();
    let reddit_ids: Vec<&str> = got.iter().filter(|p| p.id.starts_with("reddit:")).map(|p| p.id.as_str()).collect();
    assert_eq!(reddit_ids.len(), 14 + 10, "the newest two pages of the 17 new posts: {reddit_ids:?}");
    let events = fx.events();
    let gap = events
        .iter()
        .find(|e| e["kind"] == "gap" && e["message"].as_str().unwrap_or("").contains("catch_up_pages"))
        .unwrap_or_else(|| panic!("a gap event: {events:?}"));
    let at = |k: &str| chrono::DateTime::parse_from_rfc3339(gap[k].as_str().unwrap()).unwrap();
    // Posts 014-020 (14:02:20-14:03:20) were not read: from post 013, the last seen before, to
    // post 021, the oldest read.
    assert_eq!(at("from"), Utc.with_ymd_and_hms(2024, 1, 2, 14, 2, 10).unwrap(), "{gap}");
    assert_eq!(at("to"), Utc.with_ymd_and_hms(2024, 1, 2, 14, 3, 30).unwrap(), "{gap}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    use ingest_core::config::Secret;
    use ingest_core::http::{HttpConfig, client, fetch};
    use ingest_core::source::Poller;
    use social_producer::{reddit, x};
    const SENTINEL: &str = "sentinel-social-secret-9d2e";
    testkit::trust_test_ca();
    let trap = provider_sim::trap::RedirectTrap::start().await.unwrap();
    let origin = trap.origin.http_url();
    let c = client(&HttpConfig::default()).unwrap();
    let symbols = std::sync::Arc::new(vec!["AAPL".to_string()]);
    let every = Duration::from_secs(60);
    // Reddit's token request carries the client secret (HTTP Basic).
    let tokens = reddit::TokenCache::new(&origin, Secret::new("client-id"), Secret::new(SENTINEL), 1 << 20);
    let (class, why) = tokens.ensure(&c).await.unwrap_err();
    assert_eq!(class, ingest_core::resilience::ErrorClass::Refused, "{why}");
    assert!(why.contains("refused to leave the credentials' origin"), "{why}");
    let search = x::RecentSearch::new(&origin, Secret::new(SENTINEL), &["$AAPL".into()], symbols, every);
    testkit::assert_refused_cross_origin(
        "X recent search",
        &fetch(search.request(&c, &Default::default()), 1 << 20).await,
    );
    trap.assert_only_origin_reached(2, SENTINEL);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_calls_go_through_https_proxy() {
    let mut fx = Fixture::new(Duration::from_secs(3600), 10_000, Duration::from_secs(600)).await;
    let proxy = provider_sim::proxy::ConnectProxy::start().await.unwrap();
    fx.env.push(("HTTPS_PROXY".into(), proxy.url()));
    fx.env.push(("NO_PROXY".into(), String::new()));
    fx.social.post(reddit("18wprx", "via the proxy", "", "someone", 0));
    fx.social.twit(twit(161_970_151, "via the proxy $F", None));
    let mut p = fx.spawn();
    fx.wait_for("reddit:t3_18wprx").await;
    fx.wait_for("stocktwits:161970151").await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let port = fx.sim.addr.port();
    let targets = proxy.targets();
    assert!(!targets.is_empty() && targets.iter().all(|t| *t == format!("localhost:{port}")), "{targets:?}");
}
