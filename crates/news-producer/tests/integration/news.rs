//! news-producer end to end: the release binary against provider-sim's NewsAPI and Alpha
//! Vantage and the real local Kafka, checked by independent `read_committed` consumers.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::{EventKind, IngestEvent, NewsArticle, SentimentSource};
use ingest_core::testkit::{self, ProducerProcess};
use news_producer::canon;
use provider_sim::Sim;
use provider_sim::news::{Fault, NewsConfig, NewsHandle, SimArticle};
use rdkafka::message::Message;

const BIN: &str = env!("CARGO_BIN_EXE_news-producer");

struct Fixture {
    sim: Sim,
    news: NewsHandle,
    raw: String,
    events: String,
    instance: String,
    extra: Vec<(String, String)>,
}

impl Fixture {
    async fn new() -> Self {
        let stem = testkit::unique_topic("news");
        let (raw, events, state) = (format!("{stem}.raw"), format!("{stem}.events"), format!("{stem}.state"));
        testkit::create_topics(&[
            TopicToCreate::new(&raw, 4),
            TopicToCreate::new(format!("{stem}.dlq"), 1),
            TopicToCreate::new(&events, 1),
            TopicToCreate::new(&state, 1),
        ])
        .await;
        let news = NewsHandle::new(NewsConfig {
            newsapi_key: "na-key".into(),
            alphavantage_key: "av-key".into(),
            alphavantage_daily_limit: None,
        });
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), news.router()).await.unwrap();
        let url = sim.http_url();
        let extra = vec![
            ("FINSTREAM__KAFKA__TOPICS__NEWS_ARTICLES__NAME".into(), raw.clone()),
            ("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME".into(), events.clone()),
            ("FINSTREAM__KAFKA__TOPICS__STATE__NAME".into(), state),
            ("FINSTREAM__NEWS__NEWSAPI__BASE_URL".into(), url.clone()),
            ("FINSTREAM__NEWS__ALPHAVANTAGE__BASE_URL".into(), url),
            ("NEWS_API_KEY".into(), "na-key".into()),
            ("ALPHAVANTAGE_API_KEY".into(), "av-key".into()),
            ("FINSTREAM__NEWS__NEWSAPI__QUERIES".into(), "markets".into()),
            ("FINSTREAM__NEWS__NEWSAPI__HEADLINES".into(), "false".into()),
            ("FINSTREAM__NEWS__NEWSAPI__INTERVAL_SECS".into(), "1".into()),
            ("FINSTREAM__NEWS__ALPHAVANTAGE__TICKERS".into(), "AAPL".into()),
            ("FINSTREAM__NEWS__ALPHAVANTAGE__INTERVAL_SECS".into(), "1".into()),
            ("FINSTREAM__NEWS__NEWSAPI__DAILY_QUOTA".into(), "0".into()),
            ("FINSTREAM__NEWS__ALPHAVANTAGE__DAILY_QUOTA".into(), "0".into()),
        ];
        Self { sim, news, raw, events, instance: testkit::unique_topic("inst"), extra }
    }

    fn set(&mut self, key: &str, value: &str) {
        self.extra.retain(|(k, _)| k != key);
        self.extra.push((key.into(), value.into()));
    }

    fn spawn(&self) -> ProducerProcess {
        let mut env: Vec<(&str, &str)> = self.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        env.push(("FINSTREAM__RUNTIME__INSTANCE_ID", &self.instance));
        ProducerProcess::spawn(Path::new(BIN), &env)
    }

    fn committed(&self) -> Vec<NewsArticle> {
        testkit::consume_committed(&self.raw, Duration::from_secs(60))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect()
    }

    async fn wait_committed(&self, n: usize) -> Vec<NewsArticle> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.committed();
            if got.len() >= n {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "{} of {n} articles committed", got.len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn story(n: u32, on_newsapi: bool, on_alphavantage: bool) -> SimArticle {
    SimArticle {
        url: format!("https://wire.example.com/markets/story-{n}"),
        title: format!("Story {n}: markets rally as $AAPL beats estimates"),
        description: Some(format!("Description {n} about markets.")),
        content: Some(format!("Body {n}. {}", "Stocks and markets moved on the news. ".repeat(10))),
        source: "Wire".into(),
        author: Some("Ann Smith, Bo Li".into()),
        published_at: Utc.with_ymd_and_hms(2026, 1, 5, 14, 0, 0).unwrap() + chrono::Duration::seconds(i64::from(n)),
        tickers: vec!["AAPL".into()],
        sentiment: 0.42,
        category: Some("business".into()),
        on_newsapi,
        on_alphavantage,
    }
}

fn id_of(a: &SimArticle) -> String {
    canon::article_id(&canon::canonical_url(&a.url).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_providers_field_by_field_and_one_record_per_story() {
    let fx = Fixture::new().await;
    let (both, newsapi_only, av_only) = (story(1, true, true), story(2, true, false), story(3, false, true));
    for a in [&both, &newsapi_only, &av_only] {
        fx.news.publish(a.clone());
    }
    let mut p = fx.spawn();
    fx.wait_committed(3).await;
    // Several more polls of both providers: every story stays one record.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = fx.committed();
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids.len(), 3, "one record per story: {ids:?}");
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 3);
    assert!(got.iter().any(|a| a.id == id_of(&both)));

    let na = got.iter().find(|a| a.id == id_of(&newsapi_only)).expect("the NewsAPI story");
    assert_eq!(na.provider, "newsapi");
    assert_eq!(na.title, newsapi_only.title);
    assert_eq!(na.url, newsapi_only.url, "the link as the provider sent it");
    assert_eq!(na.canonical_url, "https://wire.example.com/markets/story-2");
    assert_eq!(na.published_at, newsapi_only.published_at);
    assert_eq!(na.source, "Wire");
    assert_eq!(na.authors, ["Ann Smith", "Bo Li"]);
    assert!(na.content_truncated, "NewsAPI cuts content at 200 characters");
    assert_eq!(na.content.chars().count(), 200, "{:?}", na.content);
    assert_eq!(na.summary.as_deref(), Some("Description 2 about markets."));
    assert_eq!(na.sentiment_source, Some(SentimentSource::Lexicon));
    assert!(na.sentiment.unwrap() > 0.0, "rally + beats");
    assert_eq!(na.tickers, ["AAPL"]);

    let av = got.iter().find(|a| a.id == id_of(&av_only)).expect("the Alpha Vantage story");
    assert_eq!(av.provider, "alphavantage");
    assert_eq!(av.url, format!("{}?utm_source=alphavantage", av_only.url), "the link as the provider sent it");
    assert_eq!(av.canonical_url, "https://wire.example.com/markets/story-3", "tracking parameter removed");
    assert_eq!((av.sentiment, av.sentiment_source), (Some(0.42), Some(SentimentSource::Provider)));
    assert_eq!(av.tickers, ["AAPL"]);
    assert_eq!(av.content, "Description 3 about markets.");
    assert_eq!(av.published_at, av_only.published_at);

    // Both providers were asked as documented.
    let na_req = fx.sim.log.to_path("/v2/everything");
    assert!(!na_req.is_empty());
    assert!(na_req.iter().all(|r| r.headers.iter().any(|(k, v)| k == "x-api-key" && v == "na-key")));
    let av_req = fx.sim.log.to_path("/query");
    assert!(av_req.len() >= 2);
    assert!(av_req.iter().all(|r| r.query.as_deref().unwrap_or("").contains("function=NEWS_SENTIMENT")));
    assert!(av_req.iter().skip(1).any(|r| r.query.as_deref().unwrap_or("").contains("time_from=")), "cursor used");
}

/// A deployment with only NewsAPI's key (the Kubernetes Secret holds the keys a team has): the
/// producer starts, NewsAPI's stories flow, Alpha Vantage is disabled (logged, exposed as
/// `producer_provider_enabled 0`) and never called.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_without_its_key_is_disabled_and_the_others_run() {
    let mut fx = Fixture::new().await;
    fx.set("ALPHAVANTAGE_API_KEY", "");
    fx.news.publish(story(1, true, true));
    fx.news.publish(story(2, true, false));
    let mut p = fx.spawn();
    let got = fx.wait_committed(2).await;
    assert!(got.iter().all(|a| a.provider == "newsapi"), "{got:?}");
    assert_eq!(p.metric("producer_provider_enabled", &[("provider", "newsapi")]).await, 1.0);
    assert_eq!(p.metric("producer_provider_enabled", &[("provider", "alphavantage")]).await, 0.0);
    let ready = reqwest::get(format!("http://{}/ready", p.health)).await.unwrap().status();
    assert_eq!(ready, 200, "ready with the providers it runs: {}", p.log());
    assert!(fx.sim.log.to_path("/query").is_empty(), "the disabled provider is never called");
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let log = p.log();
    assert!(log.contains("alphavantage is disabled: ALPHAVANTAGE_API_KEY is not set"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_poll_then_restart_delivers_every_story_exactly_once() {
    let fx = Fixture::new().await;
    for n in 0..10 {
        fx.news.publish(story(n, true, n % 2 == 0));
    }
    let mut published = 10;
    // Kill at different points of the poll cycle: while a request waits on a slow provider,
    // right after start, and at arbitrary moments while new stories keep arriving.
    for (round, after_ms) in [400u64, 1300, 2100, 900, 1700].iter().enumerate() {
        if round % 2 == 0 {
            fx.news.delay_next("/v2/everything", 1, Duration::from_millis(800));
        }
        let p = fx.spawn();
        for _ in 0..3 {
            fx.news.publish(story(published, true, published % 3 == 0));
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(*after_ms)).await;
        let status = std::process::Command::new("kill").args(["-9", &p.pid().to_string()]).status().unwrap();
        assert!(status.success());
        drop(p);
    }
    let mut p = fx.spawn();
    let want: HashSet<String> = fx.news.articles().iter().map(id_of).collect();
    let got = fx.wait_committed(want.len()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = fx.committed();
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let ids: Vec<String> = again.iter().map(|a| a.id.clone()).collect();
    let unique: HashSet<String> = ids.iter().cloned().collect();
    assert_eq!(unique, want, "no gap");
    assert_eq!(ids.len(), want.len(), "no duplicate among {} records", ids.len());
    assert!(got.len() <= again.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured_and_the_breaker_opens_and_recovers() {
    let mut fx = Fixture::new().await;
    fx.set("FINSTREAM__NEWS__ALPHAVANTAGE__ENABLED", "false");
    fx.set("FINSTREAM__NEWS__BREAKER_FAILURES", "3");
    fx.set("FINSTREAM__NEWS__BREAKER_OPEN_SECS", "2");
    fx.news.publish(story(1, true, false));
    let rate_limited = || Fault {
        status: 429,
        body: r#"{"status":"error","code":"rateLimited","message":"You have made too many requests recently."}"#.into(),
        retry_after: Some("3".into()),
        delay: Duration::ZERO,
    };
    fx.news.fail_next("/v2/everything", 1, rate_limited());
    let mut p = fx.spawn();
    fx.wait_committed(1).await;
    let reqs = fx.sim.log.to_path("/v2/everything");
    assert!(reqs.len() >= 2, "{:#?}", fx.sim.log.all());
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= chrono::Duration::milliseconds(2950), "Retry-After: 3 honoured, next request after {gap}");

    // Five 503s in a row: the third opens the breaker; after 2 s a trial poll finds the
    // provider still failing, later ones succeed and close it.
    let unavailable =
        Fault { status: 503, body: "upstream unavailable".into(), retry_after: None, delay: Duration::ZERO };
    fx.news.fail_next("/v2/everything", 5, unavailable);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let states = loop {
        let evs: Vec<IngestEvent> = testkit::consume_committed(&fx.events, Duration::from_secs(30))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect();
        let states: Vec<String> =
            evs.iter().filter(|e| e.kind == EventKind::BreakerState).filter_map(|e| e.state.clone()).collect();
        if states.iter().any(|s| s == "open") && states.last().is_some_and(|s| s == "closed") {
            break states;
        }
        assert!(std::time::Instant::now() < deadline, "breaker events so far: {states:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(states.first().map(String::as_str), Some("open"), "{states:?}");
    assert!(states.iter().any(|s| s == "half_open"), "{states:?}");
    assert!(p.log().contains("rate limited by the provider"), "{}", p.log());
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_keys_stop_the_producer_with_exit_1_and_a_clear_message() {
    let mut fx = Fixture::new().await;
    fx.set("NEWS_API_KEY", "wrong-newsapi-key");
    fx.set("FINSTREAM__NEWS__ALPHAVANTAGE__ENABLED", "false");
    let mut p = fx.spawn();
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(1), "{}", p.log());
    let log = p.log();
    assert!(log.contains("NEWS_API_KEY") && log.contains("apiKeyInvalid"), "{log}");
    assert!(!log.contains("wrong-newsapi-key"), "the key is never logged");

    fx.set("NEWS_API_KEY", "na-key");
    fx.set("FINSTREAM__NEWS__NEWSAPI__ENABLED", "false");
    fx.set("FINSTREAM__NEWS__ALPHAVANTAGE__ENABLED", "true");
    fx.set("ALPHAVANTAGE_API_KEY", "wrong-av-key");
    let mut p = fx.spawn();
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(1), "{}", p.log());
    let log = p.log();
    assert!(log.contains("ALPHAVANTAGE_API_KEY"), "{log}");
    assert!(!log.contains("wrong-av-key"), "the key is never logged");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_with_the_same_id_fences_the_first() {
    let fx = Fixture::new().await;
    fx.news.publish(story(1, true, false));
    let mut first = fx.spawn();
    fx.wait_committed(1).await;
    let mut second = fx.spawn();
    let ready = format!("http://{}/ready", second.health);
    testkit::wait_for(Duration::from_secs(60), "the second instance to be ready", || {
        let url = ready.clone();
        async move { reqwest::get(&url).await.ok().filter(|r| r.status() == 200).map(drop) }
    })
    .await;
    // New stories: whichever instance polls first, the first one's next transaction is refused.
    fx.news.publish(story(2, true, true));
    fx.news.publish(story(3, false, true));
    assert_eq!(first.wait_exit(Duration::from_secs(60)), Some(1), "the fenced instance exits 1:\n{}", first.log());
    assert!(first.log().contains("transactional"), "{}", first.log());
    let got = fx.wait_committed(3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let again = fx.committed();
    assert_eq!(second.terminate(Duration::from_secs(20)), Some(0), "{}", second.log());
    let ids: HashSet<String> = again.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids.len(), 3);
    assert_eq!(again.len(), 3, "nothing twice: {got:?}");
}

/// A provider storm while stories keep coming: 20 answers of 429 with `Retry-After: 1`, then 6
/// of 503 (exponential backoff; the fifth opens the breaker), then 3 answers that take 2 s
/// each. The producer stays up, never asks faster than Retry-After allows, opens and closes its
/// breaker, delivers every story exactly once, and its memory stays flat (RSS sampled every
/// 250 ms).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_fault_storm_is_ridden_out_without_loss_or_growth() {
    let mut fx = Fixture::new().await;
    fx.set("FINSTREAM__NEWS__ALPHAVANTAGE__ENABLED", "false");
    fx.set("FINSTREAM__NEWS__BREAKER_FAILURES", "5");
    fx.set("FINSTREAM__NEWS__BREAKER_OPEN_SECS", "2");
    let fault = |status: u16, retry_after: Option<&str>, delay: Duration| Fault {
        status,
        body: r#"{"status":"error","code":"unexpectedError","message":"storm"}"#.into(),
        retry_after: retry_after.map(str::to_string),
        delay,
    };
    fx.news.fail_next("/v2/everything", 20, fault(429, Some("1"), Duration::ZERO));
    fx.news.fail_next("/v2/everything", 6, fault(503, None, Duration::ZERO));
    fx.news.delay_next("/v2/everything", 3, Duration::from_secs(2));
    let mut p = fx.spawn();
    let pid = p.pid();
    let rss = || testkit::rss_kib(pid);
    let mut samples = Vec::new();
    let mut published = 0;
    let started = std::time::Instant::now();
    // Stories arrive throughout the storm; wait until the last fault is used and all are in.
    let got = loop {
        if published < 40 && started.elapsed() > Duration::from_millis(500 * published) {
            published += 1;
            fx.news.publish(story(u32::try_from(published).unwrap(), true, false));
        }
        samples.push(rss());
        tokio::time::sleep(Duration::from_millis(250)).await;
        let reqs = fx.sim.log.to_path("/v2/everything").len();
        if published == 40 && reqs > 30 {
            let got = fx.committed();
            if got.len() >= 40 {
                break got;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(150),
            "storm not over after 150 s: {reqs} requests, {} stories",
            fx.committed().len()
        );
    };
    let mut ids: Vec<&str> = got.iter().map(|a| a.id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!((got.len(), ids.len()), (40, 40), "every story exactly once");
    // Retry-After: 1 honoured: the 20 rate-limited answers span at least ~19 s.
    let reqs = fx.sim.log.to_path("/v2/everything");
    let storm = reqs[19].at - reqs[0].at;
    assert!(storm >= chrono::Duration::milliseconds(18_500), "20 rate-limited requests within {storm}");
    let states: Vec<String> = testkit::consume_committed(&fx.events, Duration::from_secs(30))
        .iter()
        .filter_map(|m| serde_json::from_slice::<IngestEvent>(m.payload().unwrap()).ok())
        .filter(|e| e.kind == EventKind::BreakerState)
        .filter_map(|e| e.state)
        .collect();
    assert!(states.iter().any(|s| s == "open") && states.last().is_some_and(|s| s == "closed"), "{states:?}");
    let (first, peak, last) = (samples[4], *samples.iter().max().unwrap(), *samples.last().unwrap());
    println!(
        "chaos: news fault storm (20x429 Retry-After 1, 6x503, 3 slow): {} requests in {:.0} s, 40 of 40 stories once, \
         breaker {states:?}; RSS after 1 s {first} KiB, peak {peak} KiB, at the end {last} KiB",
        reqs.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(peak < 128 * 1024 && last < first + 32 * 1024, "RSS {first} → {last} KiB (peak {peak})");
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_producer_whose_log_reader_went_away_still_stops_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut fx = Fixture::new().await;
    // Unreachable providers: a warning every poll, written after the reader is gone.
    fx.set("FINSTREAM__NEWS__NEWSAPI__BASE_URL", "http://127.0.0.1:9");
    fx.set("FINSTREAM__NEWS__ALPHAVANTAGE__BASE_URL", "http://127.0.0.1:9");
    let mut child = Command::new(BIN)
        .current_dir(testkit::workspace_root())
        .env_remove("FINSTREAM_CONFIG")
        .env("FINSTREAM__TELEMETRY__METRICS_ADDR", "127.0.0.1:0")
        .env("FINSTREAM__TELEMETRY__HEALTH_ADDR", "127.0.0.1:0")
        .env("KAFKA_BROKERS", testkit::kafka_brokers())
        .env("KAFKA_SPOOL_DIR", testkit::unique_dir("spool"))
        .env("FINSTREAM__RUNTIME__INSTANCE_ID", &fx.instance)
        .env("LOG_LEVEL", "debug")
        .envs(fx.extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let started = lines.by_ref().map_while(Result::ok).any(|l| l.contains("starting"));
    assert!(started, "the producer logged its start");
    // The reader goes away (a closed terminal, a log shipper that died): every later write
    // fails with EPIPE.
    drop(lines);
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(child.try_wait().unwrap().is_none(), "still running after its log reader went away");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let deadline = std::time::Instant::now() + Duration::from_secs(11);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("SIGTERM did not stop the producer within its 10 s shutdown timeout");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status.code(), Some(0), "a clean stop: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_kafka_unreachable_sigterm_stops_the_producer_within_its_shutdown_timeout() {
    let mut fx = Fixture::new().await;
    fx.set("KAFKA_BROKERS", "127.0.0.1:1");
    fx.set("FINSTREAM__KAFKA__STARTUP_TIMEOUT_SECS", "0");
    let mut p = fx.spawn();
    // Stuck registering the transactional producer with a broker that never answers.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let started = std::time::Instant::now();
    // terminate() panics past its bound: 10 s (runtime.shutdown_timeout_secs) and a second of
    // process teardown.
    let _ = p.terminate(Duration::from_secs(11));
    eprintln!("stopped {:.1}s after SIGTERM", started.elapsed().as_secs_f64());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_kafka_address_exits_1_after_the_start_up_timeout_with_few_log_lines() {
    let mut fx = Fixture::new().await;
    fx.set("KAFKA_BROKERS", "127.0.0.1:1");
    fx.set("FINSTREAM__KAFKA__STARTUP_TIMEOUT_SECS", "6");
    let mut p = fx.spawn();
    assert_eq!(p.wait_exit(Duration::from_secs(60)), Some(1), "{}", p.log());
    let log = p.log();
    assert!(log.contains("no Kafka broker answered within 6s") && log.contains("KAFKA_BROKERS"), "{log}");
    assert!(!log.contains("brokers are down;"), "no misleading wording: {log}");
    // Every client retries the address several times a second; each distinct error is logged
    // once per 30 s (with a repeat count), so a few dozen lines at most, whatever the timeout.
    let lines = log.lines().count();
    assert!(lines <= 40, "{lines} lines in 6 s:\n{log}");
}

#[test]
fn every_demo_story_carries_its_ticker() {
    // `make run` without keys shows these: a news record without tickers is not a demo of a
    // ticker-aware pipeline.
    let env: std::collections::HashMap<String, String> =
        [("NEWS_API_KEY", "k"), ("ALPHAVANTAGE_API_KEY", "k")].map(|(k, v)| (k.to_string(), v.to_string())).into();
    let shipped = testkit::workspace_root().join("configs/config.yaml");
    let cfg = ingest_core::config::load_with_env::<news_producer::config::NewsConfig>(&shipped, &env).unwrap();
    let symbols = cfg.section.symbols;
    for n in 0..5 {
        let demo = provider_sim::news::demo_article(n, Utc::now());
        let a =
            news_producer::newsapi::article(&provider_sim::news::newsapi_json(&demo), &symbols, Utc::now()).unwrap();
        assert_eq!(a.tickers, demo.tickers, "{}", a.title);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provider_keys_never_follow_a_redirect_to_another_origin() {
    use ingest_core::config::Secret;
    use ingest_core::http::{HttpConfig, client, fetch};
    use ingest_core::source::Poller;
    const SENTINEL: &str = "sentinel-news-key-0b1c";
    testkit::trust_test_ca();
    let trap = provider_sim::trap::RedirectTrap::start().await.unwrap();
    let origin = trap.origin.http_url();
    let c = client(&HttpConfig::default()).unwrap();
    let symbols = std::sync::Arc::new(vec!["AAPL".to_string()]);
    let every = Duration::from_secs(60);
    let na = news_producer::newsapi::NewsApi::new(
        &origin,
        Secret::new(SENTINEL),
        news_producer::newsapi::Endpoint::Everything { q: "markets".into() },
        symbols.clone(),
        every,
    );
    let av = news_producer::alphavantage::AlphaVantage::new(
        &origin,
        Secret::new(SENTINEL),
        news_producer::alphavantage::Query::Ticker("AAPL".into()),
        symbols,
        every,
    );
    testkit::assert_refused_cross_origin("NewsAPI", &fetch(na.request(&c, &Default::default()), 1 << 20).await);
    testkit::assert_refused_cross_origin("Alpha Vantage", &fetch(av.request(&c, &Default::default()), 1 << 20).await);
    trap.assert_only_origin_reached(2, SENTINEL);
}
