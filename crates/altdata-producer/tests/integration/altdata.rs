//! Custom sources end to end, in process: the real runtime and broker, provider-sim playing the
//! sites (JSON with three paging styles, CSV, HTML, a failing source, an open redirect), an
//! injected resolver (names map to loopback or to private addresses) and a tripwire that records
//! any address that is not loopback reaching the connector: these tests never send a packet
//! anywhere but loopback, and a broken guard fails them loudly.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use altdata_producer::config::AltDataConfig;
use altdata_producer::ssrf::{Lookup, Tripwire};
use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use futures::future::BoxFuture;
use ingest_core::config::{Config, CoreConfig};
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::AltDataRecord;
use ingest_core::runtime::{self, ProducerSpec};
use ingest_core::source::Source;
use ingest_core::testkit;
use provider_sim::Sim;
use provider_sim::altdata::{AltDataHandle, SimClose, SimEvent, SimRate};
use rdkafka::message::Message;
use serde_json::json;

#[derive(Debug)]
struct Table(HashMap<&'static str, IpAddr>);

impl Lookup for Table {
    fn lookup(&self, host: &str) -> BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
        let r = self.0.get(host).map(|ip| vec![*ip]).ok_or_else(|| std::io::Error::other(format!("NXDOMAIN {host}")));
        Box::pin(async move { r })
    }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 1, d).unwrap()
}

/// Known content: five rates (one without an id, to be dead-lettered) over three pages, two
/// closes, three calendar events over two pages.
fn sites() -> AltDataHandle {
    let h = AltDataHandle::new();
    for (i, (id, value, label)) in
        [("r1", 5.33, "Fed funds"), ("r2", 5.31, "SOFR"), ("", 1.0, "no id"), ("r3", 4.1, "T-bill"), ("r4", 3.9, "2y")]
            .into_iter()
            .enumerate()
    {
        let observed = Utc.with_ymd_and_hms(2024, 1, 2, 12, u32::try_from(i).unwrap(), 0).unwrap();
        h.rate(SimRate { id: id.into(), observed, value, label: label.into() });
    }
    for (sym, close) in [("AAPL", "185.64"), ("MSFT", "370.87")] {
        h.close(SimClose { symbol: sym.into(), date: day(2), close: close.into() });
    }
    for (id, d, name, actual) in [
        ("nfp-2024-01", 5, "Nonfarm payrolls", Some("216K")),
        ("cpi-2024-01", 11, "CPI & core CPI", Some("3.4%")),
        ("fomc-2024-01", 31, "FOMC <rate> decision", None),
    ] {
        h.event(SimEvent { id: id.into(), when: day(d), name: name.into(), actual: actual.map(str::to_string) });
    }
    h
}

struct Run {
    cfg: Config<AltDataConfig>,
    raw: String,
    dlq: String,
    site: String,
    escaped: Arc<Mutex<Vec<String>>>,
    /// The proxy the sources go through (none unless a test sets one).
    proxy: ingest_core::proxy::ProxyEnv,
}

impl Run {
    fn new(port: u16) -> Self {
        let site = format!("http://data.example:{port}/altdata");
        let section: AltDataConfig = serde_json::from_value(json!({
            "allow_private": ["data.example"],
            "sources": [
                {"name": "rates-cursor", "kind": "json", "url": format!("{site}/rates.json"), "interval_secs": 1,
                 "items": "/data/items", "id": "/id", "time": "/observed",
                 "fields": {"rate": "/value", "name": "/label"},
                 "pagination": {"kind": "cursor", "param": "cursor", "cursor_path": "/next"}},
                {"name": "rates-pages", "kind": "json", "url": format!("{site}/rates.json"), "interval_secs": 1,
                 "items": "/data/items", "id": "/id", "pagination": {"kind": "page", "param": "page"}},
                {"name": "rates-linked", "kind": "json", "url": format!("{site}/rates.json"), "interval_secs": 1,
                 "items": "/data/items", "id": "/id", "pagination": {"kind": "link"}},
                {"name": "closes", "kind": "csv", "url": format!("{site}/prices.csv"), "interval_secs": 1,
                 "id": "key", "time": "date", "time_format": "%Y-%m-%d"},
                {"name": "calendar", "kind": "html", "url": format!("{site}/calendar.html"), "interval_secs": 1,
                 "items": "table#calendar tr.event", "id": "@data-id", "time": "td.when", "time_format": "%Y-%m-%d",
                 "fields": {"event": "td.name", "actual": "td.actual", "link": "td.name a@href"},
                 "pagination": {"kind": "link", "cursor_path": "a[rel=next]@href"}},
                {"name": "calendar-text", "kind": "html", "url": format!("{site}/calendar.html"), "interval_secs": 1,
                 "items": "h1"},
                {"name": "failing", "kind": "json", "url": format!("{site}/status/500"), "interval_secs": 1},
                {"name": "loopback", "kind": "json", "url": format!("http://127.0.0.1:{port}/altdata/rates.json"), "interval_secs": 1},
                {"name": "metadata", "kind": "json", "url": "http://169.254.169.254/latest/meta-data/", "interval_secs": 1},
                {"name": "internal", "kind": "json", "url": format!("http://internal.example:{port}/altdata/rates.json"), "interval_secs": 1},
                {"name": "redirect-metadata", "kind": "json", "interval_secs": 1,
                 "url": format!("{site}/redirect?to=http://169.254.169.254/latest/meta-data/")},
                {"name": "redirect-internal", "kind": "json", "interval_secs": 1,
                 "url": format!("{site}/redirect?to=http://internal.example:{port}/altdata/rates.json")}
            ]
        }))
        .unwrap();
        Self::with(section, site)
    }

    fn with(section: AltDataConfig, site: String) -> Self {
        let stem = testkit::unique_topic("alt");
        ingest_core::config::Section::validate(&section).unwrap();
        let mut core = CoreConfig::default();
        // Every test of this binary trusts the test CA (the process installs one TLS config).
        core.tls.extra_ca_file = provider_sim::tls::TestCa::get().unwrap().ca_file().display().to_string();
        core.kafka.spool.dir = ingest_core::testkit::unique_dir("spool").display().to_string();
        core.kafka.brokers = testkit::kafka_brokers();
        core.kafka.topics.altdata_records.name = format!("{stem}.raw");
        core.kafka.topics.events.name = format!("{stem}.events");
        core.kafka.topics.state.name = format!("{stem}.state");
        core.runtime.instance_id = testkit::unique_topic("inst");
        core.telemetry.metrics_addr = "127.0.0.1:0".parse().unwrap();
        core.telemetry.health_addr = "127.0.0.1:0".parse().unwrap();
        Run {
            cfg: Config { core, section },
            raw: format!("{stem}.raw"),
            dlq: format!("{stem}.dlq"),
            site,
            escaped: Arc::new(Mutex::new(Vec::new())),
            proxy: ingest_core::proxy::ProxyEnv::default(),
        }
    }

    async fn topics(&self) {
        let t = &self.cfg.core.kafka.topics;
        testkit::create_topics(&[
            TopicToCreate::new(&self.raw, 2),
            TopicToCreate::new(&self.dlq, 1),
            TopicToCreate::new(&t.events.name, 1),
            TopicToCreate::new(&t.state.name, 1),
        ])
        .await;
    }

    async fn start(&self) -> runtime::Running {
        let lookup = Arc::new(Table(HashMap::from([
            ("data.example", "127.0.0.1".parse().unwrap()),
            ("proxy.example", "127.0.0.1".parse().unwrap()),
            ("cdn.example", "127.0.0.1".parse().unwrap()),
            ("evil.example", "127.0.0.1".parse().unwrap()),
            ("internal.example", "10.0.0.5".parse().unwrap()),
        ])));
        let e = self.escaped.clone();
        let tripwire: Tripwire = Arc::new(move |host: &str, ip: IpAddr| {
            if !ip.is_loopback() {
                e.lock().unwrap().push(format!("{host} -> {ip}"));
            }
            ip.is_loopback()
        });
        let group = altdata_producer::group(&self.cfg, "itest-altdata", lookup, Some(tripwire), &self.proxy);
        let sources: Vec<Box<dyn Source>> = vec![Box::new(group)];
        runtime::start(ProducerSpec { name: "itest-altdata", version: "0", about: "t" }, &self.cfg, sources)
            .await
            .expect("start")
    }

    fn records(&self) -> Vec<AltDataRecord> {
        testkit::consume_committed(&self.raw, Duration::from_secs(30))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect()
    }
}

fn sum(metrics: &str, prefix: &str, filter: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(prefix) && l.contains(filter))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn data(r: &AltDataRecord) -> serde_json::Value {
    serde_json::Value::Object(r.data.clone())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_through_provider_sim_exactly_once_and_ssrf_attempts_refused_and_counted() {
    let handle = sites();
    let sim = Sim::start("127.0.0.1:0".parse().unwrap(), handle.router()).await.unwrap();
    let run = Run::new(sim.addr.port());
    run.topics().await;
    let running = run.start().await;

    const EXPECTED: usize = 4 * 3 + 2 + 3 + 1;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let got = loop {
        let got = run.records();
        if got.len() >= EXPECTED {
            break got;
        }
        assert!(std::time::Instant::now() < deadline, "{} of {EXPECTED} records", got.len());
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    // The failing source fails five times (with backoff) and its breaker opens, while the
    // others keep delivering (their records above).
    let metrics = testkit::wait_for(Duration::from_secs(60), "the failing source's breaker to open", || {
        let m = running.metrics.render();
        async move { (sum(&m, "producer_circuit_breaker_state{", "source=\"failing\"") >= 1.0).then_some(m) }
    })
    .await;
    running.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), running.wait()).await.expect("stops").expect("clean stop");

    let mut keys: Vec<String> = got.iter().map(|r| format!("{}:{}", r.source, r.id)).collect();
    keys.sort();
    let text_ids: Vec<&str> = got.iter().filter(|r| r.source == "calendar-text").map(|r| r.id.as_str()).collect();
    let mut want: Vec<String> = ["rates-cursor", "rates-pages", "rates-linked"]
        .iter()
        .flat_map(|s| ["r1", "r2", "r3", "r4"].map(|r| format!("{s}:{r}")))
        .chain(["closes:AAPL-2024-01-02", "closes:MSFT-2024-01-02"].map(String::from))
        .chain(["calendar:nfp-2024-01", "calendar:cpi-2024-01", "calendar:fomc-2024-01"].map(String::from))
        .chain(text_ids.iter().map(|id| format!("calendar-text:{id}")))
        .collect();
    want.sort();
    assert_eq!(keys, want, "each item once, every page read; the id-less rate dead-lettered");
    assert_eq!(text_ids.len(), 1, "the first page's `h1`, once, by its content hash");

    // JSON, field by field.
    let r1 = got.iter().find(|r| r.source == "rates-cursor" && r.id == "r1").unwrap();
    assert_eq!(r1.observed_at, Utc.with_ymd_and_hms(2024, 1, 2, 12, 0, 0).unwrap());
    assert_eq!(data(r1), json!({"rate": 5.33, "name": "Fed funds"}));
    assert_eq!(r1.url.as_deref(), Some(format!("{}/rates.json", run.site).as_str()));
    assert_eq!(r1.provider, "altdata");
    let r4 = got.iter().find(|r| r.source == "rates-pages" && r.id == "r4").unwrap();
    assert_eq!(data(r4), json!({"id": "r4", "observed": "2024-01-02T12:04:00Z", "value": 3.9, "label": "2y"}));
    let linked = got.iter().find(|r| r.source == "rates-linked" && r.id == "r1").unwrap();
    assert_eq!(
        linked.url.as_deref(),
        Some(format!("{}/rates.json?cursor=o4", run.site).as_str()),
        "the Link target was followed"
    );
    // CSV.
    let aapl = got.iter().find(|r| r.id == "AAPL-2024-01-02").unwrap();
    assert_eq!(aapl.observed_at, DateTime::parse_from_rfc3339("2024-01-02T00:00:00Z").unwrap());
    assert_eq!(
        data(aapl),
        json!({"key": "AAPL-2024-01-02", "symbol": "AAPL", "date": "2024-01-02", "close": "185.64"})
    );
    // HTML: entities decoded, missing cells null, the next link followed from the page.
    let cpi = got.iter().find(|r| r.id == "cpi-2024-01").unwrap();
    assert_eq!(cpi.observed_at, Utc.with_ymd_and_hms(2024, 1, 11, 0, 0, 0).unwrap());
    assert_eq!(data(cpi), json!({"event": "CPI & core CPI", "actual": "3.4%", "link": "/altdata/events/cpi-2024-01"}));
    let fomc = got.iter().find(|r| r.id == "fomc-2024-01").unwrap();
    assert_eq!(
        data(fomc),
        json!({"event": "FOMC <rate> decision", "actual": null, "link": "/altdata/events/fomc-2024-01"})
    );
    let nfp = got.iter().find(|r| r.id == "nfp-2024-01").unwrap();
    assert_eq!(nfp.url.as_deref(), Some(format!("{}/calendar.html?page=2", run.site).as_str()));
    let mut titles: Vec<serde_json::Value> =
        got.iter().filter(|r| r.source == "calendar-text").map(|r| r.data["text"].clone()).collect();
    titles.sort_by_key(ToString::to_string);
    assert_eq!(titles, [json!("Economic calendar — page 1")], "one page: calendar-text does not page");

    // What went over the wire, from the simulator's log.
    let queries: Vec<String> =
        sim.log.to_path("/altdata/rates.json").into_iter().filter_map(|r| r.query).collect::<Vec<_>>();
    for q in ["cursor=o2", "cursor=o4", "page=1", "page=2", "page=3"] {
        assert!(queries.iter().any(|x| x == q), "a request with ?{q}: {queries:?}");
    }
    assert!(
        sim.log.to_path("/altdata/calendar.html").iter().any(|r| r.query.as_deref() == Some("page=2")),
        "the HTML next link was followed"
    );

    // Dead letters: the id-less rate, from each rates source (on every poll that reads it).
    let dlq = testkit::consume_committed(&run.dlq, Duration::from_secs(30));
    let letters: Vec<serde_json::Value> =
        dlq.iter().map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap()).collect();
    assert!(letters.len() >= 3, "{letters:?}");
    for l in &letters {
        assert!(l["error"].as_str().unwrap().contains("empty id at `/id`"), "{l}");
        assert!(l["raw"].as_str().unwrap().contains("no id"), "the item itself is kept: {l}");
    }

    let refused = sum(&metrics, "producer_api_calls_total{", "outcome=\"refused\"");
    assert!(refused >= 5.0, "five refused sources, each counted: {metrics}");
    assert!(sum(&metrics, "producer_api_calls_total{", "outcome=\"retryable_error\"") >= 1.0, "{metrics}");
    assert_eq!(
        sum(&metrics, "producer_circuit_breaker_state{", "source=\"rates-cursor\""),
        0.0,
        "another source's breaker stays closed: {metrics}"
    );
    assert!(run.escaped.lock().unwrap().is_empty(), "non-loopback addresses reached the connector: {:?}", run.escaped);

    // A restart with the same instance resumes from the committed state: more polls, no
    // record twice.
    let polls_before = sim.log.to_path("/altdata/prices.csv").len();
    let running = run.start().await;
    testkit::wait_for(Duration::from_secs(60), "two more polls after the restart", || {
        let n = sim.log.to_path("/altdata/prices.csv").len();
        async move { (n >= polls_before + 2).then_some(()) }
    })
    .await;
    running.shutdown_token().cancel();
    tokio::time::timeout(Duration::from_secs(20), running.wait()).await.expect("stops").expect("clean stop");
    let after = run.records();
    assert_eq!(after.len(), got.len(), "no duplicates after the restart");
    drop(handle);
    sim.stop().await.unwrap();
}

/// The sentinel secret every source of the hostile suite carries.
const SENTINEL: &str = "sentinel-7f3a9c-not-for-other-hosts";

/// Every request a simulated host saw that carries the sentinel, anywhere (path, query, headers).
fn carrying_sentinel(sim: &Sim) -> Vec<String> {
    sim.log.carrying(SENTINEL).into_iter().map(|r| format!("{}?{}", r.path, r.query.unwrap_or_default())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_site_never_gets_a_secret_to_another_origin_over_tls() {
    // Three hosts over TLS (the test CA), on three ports: the source's own site, a CDN it lists
    // in follow_origins, and an attacker's host. Names resolve to loopback (the injected
    // resolver), so each is its own origin and its own request log.
    let ca = provider_sim::tls::TestCa::get().unwrap();
    let tls = || ca.identity().unwrap();
    let any = "127.0.0.1:0".parse().unwrap();
    let own = Sim::start_tls(any, sites().router(), &tls()).await.unwrap();
    let cdn = Sim::start_tls(any, sites().router(), &tls()).await.unwrap();
    let evil = Sim::start_tls(any, sites().router(), &tls()).await.unwrap();
    let at = |sim: &Sim, host: &str| format!("https://{host}:{}/altdata", sim.addr.port());
    let (site, cdn_site, evil_site) = (at(&own, "data.example"), at(&cdn, "cdn.example"), at(&evil, "evil.example"));
    let enc = |u: &str| url::form_urlencoded::byte_serialize(u.as_bytes()).collect::<String>();
    let internal = format!("https://internal.example:{}/altdata/rates.json", own.addr.port());
    let plain_own = format!("http://data.example:{}/altdata/rates.json", own.addr.port());
    // The secret as Kubernetes mounts one: a file.
    let secret_dir = testkit::unique_dir("secret");
    std::fs::create_dir_all(&secret_dir).unwrap();
    let secret_file = secret_dir.join("api-key");
    std::fs::write(&secret_file, format!("{SENTINEL}\n")).unwrap();
    let header_auth = json!({"header": "X-Api-Key", "file": secret_file});
    let query_auth = json!({"query": "apikey", "file": secret_file});
    // name, url, pagination, auth: each a trap; the last two are what must still work.
    let traps = [
        (
            "link-elsewhere",
            format!("{site}/next?to={}", enc(&format!("{evil_site}/rates.json"))),
            json!({"kind": "link"}),
            &header_auth,
        ),
        (
            "body-elsewhere",
            format!("{site}/next?via=body&to={}", enc(&format!("{evil_site}/rates.json"))),
            json!({"kind": "link", "cursor_path": "/next"}),
            &query_auth,
        ),
        (
            "redirect-elsewhere",
            format!("{site}/redirect?to={}", enc(&format!("{evil_site}/rates.json"))),
            json!({"kind": "none"}),
            &header_auth,
        ),
        ("redirect-downgrade", format!("{site}/redirect?to={}", enc(&plain_own)), json!({"kind": "none"}), &query_auth),
        ("link-private", format!("{site}/next?to={}", enc(&internal)), json!({"kind": "link"}), &header_auth),
        (
            "link-to-cdn",
            format!("{site}/next?to={}", enc(&format!("{cdn_site}/rates.json"))),
            json!({"kind": "link"}),
            &query_auth,
        ),
        (
            "redirect-round-trip",
            format!(
                "{site}/redirect?to={}",
                enc(&format!("{cdn_site}/redirect?to={}", enc(&format!("{site}/rates.json"))))
            ),
            json!({"kind": "none"}),
            &header_auth,
        ),
    ];
    let sources: Vec<serde_json::Value> = traps
        .iter()
        .map(|(name, url, pagination, auth)| {
            json!({"name": name, "kind": "json", "url": url, "interval_secs": 1, "items": "/data/items", "id": "/id",
                   "auth": auth, "pagination": pagination,
                   "follow_origins": [format!("https://cdn.example:{}", cdn.addr.port()),
                                      format!("https://internal.example:{}", own.addr.port())]})
        })
        .collect();
    let section: AltDataConfig = serde_json::from_value(json!({
        "allow_private": ["data.example", "cdn.example", "evil.example"],
        "sources": sources,
    }))
    .unwrap();
    let run = Run::with(section, site.clone());
    run.topics().await;
    let running = run.start().await;
    let metrics_url = format!("http://{}/metrics", running.addrs.metrics);
    // Until every trap was sprung at least twice and both legitimate paths delivered.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        let refused = sum(&m, "producer_api_calls_total", "outcome=\"refused\"");
        let got: Vec<String> = run.records().iter().map(|r| r.source.clone()).collect();
        let delivered = ["link-to-cdn", "redirect-round-trip"].iter().all(|s| got.iter().any(|g| g == s));
        if refused >= 10.0 && delivered {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "refused {refused}, delivered from {got:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    running.shutdown_token().cancel();
    running.wait().await.unwrap();

    // The sentinel reached its own origin and nothing else, in any form.
    assert!(!carrying_sentinel(&own).is_empty(), "the own site got the secret (the test is live)");
    assert_eq!(carrying_sentinel(&cdn), Vec::<String>::new(), "the listed CDN is followed without the secret");
    assert_eq!(carrying_sentinel(&evil), Vec::<String>::new(), "the attacker's host never gets the secret");
    assert!(evil.log.all().is_empty(), "nothing was even sent to the attacker's host");
    // The round trip came back to the own site without the secret, and the downgrade never
    // went out in plain text (the TLS listener would have logged nothing for http anyway).
    let back: Vec<_> = own.log.all().into_iter().filter(|r| r.path == "/altdata/rates.json").collect();
    assert!(!back.is_empty(), "the round trip came back to the own site");
    assert!(back.iter().all(|r| !r.headers.iter().any(|(_, v)| v.contains(SENTINEL))), "…without the secret");
    assert!(run.escaped.lock().unwrap().is_empty(), "tripwire: {:?}", run.escaped.lock().unwrap());

    // Every refusal counted and explained in an event naming the source.
    let events: Vec<serde_json::Value> =
        testkit::consume_committed(&run.cfg.core.kafka.topics.events.name, Duration::from_secs(30))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .filter(|e: &serde_json::Value| e["kind"] == "request_refused")
            .collect();
    for (source, why) in [
        ("link-elsewhere", "refused to leave the credentials' origin"),
        ("body-elsewhere", "refused to leave the credentials' origin"),
        ("redirect-elsewhere", "refused to leave the credentials' origin"),
        ("redirect-downgrade", "from https to http is never followed"),
        ("link-private", "refused by the SSRF guard"),
    ] {
        let hit = events.iter().any(|e| {
            let m = e["message"].as_str().unwrap_or("");
            m.contains(&format!("source {source}:")) && m.contains(why)
        });
        assert!(hit, "{source}: no request_refused event saying `{why}` in {events:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_a_proxy_the_guard_checks_a_target_before_the_proxy_is_asked() {
    // A corporate proxy (by name, on a private address: the operator's own) in front of every
    // source. A public site goes through it; a name resolving to a private address is refused
    // before any CONNECT, since the proxy would resolve it where the guard cannot see.
    let ca = provider_sim::tls::TestCa::get().unwrap();
    let site = Sim::start_tls("127.0.0.1:0".parse().unwrap(), sites().router(), &ca.identity().unwrap()).await.unwrap();
    let proxy = provider_sim::proxy::ConnectProxy::start().await.unwrap();
    let port = site.addr.port();
    let section: AltDataConfig = serde_json::from_value(json!({
        "allow_private": ["data.example"],
        "sources": [
            {"name": "via-proxy", "kind": "json", "url": format!("https://data.example:{port}/altdata/rates.json"),
             "interval_secs": 1, "items": "/data/items", "id": "/id"},
            {"name": "private-via-proxy", "kind": "json", "url": format!("https://internal.example:{port}/altdata/rates.json"),
             "interval_secs": 1, "items": "/data/items", "id": "/id"}
        ]
    }))
    .unwrap();
    let mut run = Run::with(section, format!("https://data.example:{port}/altdata"));
    let proxy_url = format!("http://proxy.example:{}", proxy.addr.port());
    run.proxy = ingest_core::proxy::ProxyEnv::from_vars(|k| (k == "HTTPS_PROXY").then(|| proxy_url.clone()));
    run.topics().await;
    let running = run.start().await;
    let metrics_url = format!("http://{}/metrics", running.addrs.metrics);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = reqwest::get(&metrics_url).await.unwrap().text().await.unwrap();
        let refused = sum(&m, "producer_api_calls_total", "outcome=\"refused\"");
        let delivered = run.records().iter().any(|r| r.source == "via-proxy");
        if refused >= 2.0 && delivered {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "refused {refused}, delivered {delivered}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    running.shutdown_token().cancel();
    running.wait().await.unwrap();
    let targets = proxy.targets();
    assert!(
        targets.iter().any(|t| *t == format!("data.example:{port}")),
        "the public site went through the proxy: {targets:?}"
    );
    assert!(
        !targets.iter().any(|t| t.starts_with("internal.example")),
        "no CONNECT for the private target: {targets:?}"
    );
    assert!(run.escaped.lock().unwrap().is_empty(), "tripwire: {:?}", run.escaped.lock().unwrap());
}
