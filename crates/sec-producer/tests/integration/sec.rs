//! sec-producer end to end: the binary against provider-sim's EDGAR (feed, submissions, fair
//! access) and the real local Kafka, checked by independent `read_committed` consumers.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use chrono::DateTime;
use ingest_core::kafka::admin::TopicToCreate;
use ingest_core::record::{DeadLetter, EventKind, IngestEvent, SecFiling};
use ingest_core::testkit::{self, ProducerProcess};
use provider_sim::Sim;
use provider_sim::edgar::{EdgarConfig, EdgarHandle, SimFiling, SimParty};
use rdkafka::message::Message;

const BIN: &str = env!("CARGO_BIN_EXE_sec-producer");
const UA: &str = "FinStream tests ci@example.com";

struct Fixture {
    sim: Sim,
    edgar: EdgarHandle,
    raw: String,
    dlq: String,
    events: String,
    env: Vec<(String, String)>,
}

impl Fixture {
    async fn new(max_per_second: u32) -> Self {
        let stem = testkit::unique_topic("sec");
        let (raw, dlq, events, state) =
            (format!("{stem}.raw"), format!("{stem}.dlq"), format!("{stem}.events"), format!("{stem}.state"));
        testkit::create_topics(&[
            TopicToCreate::new(&raw, 2),
            TopicToCreate::new(&dlq, 1),
            TopicToCreate::new(&events, 1),
            TopicToCreate::new(&state, 1),
        ])
        .await;
        let edgar = EdgarHandle::new(EdgarConfig { max_per_second, block: Duration::from_secs(3), recent_max: 2 });
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), edgar.router()).await.unwrap();
        let url = sim.http_url();
        let env = [
            ("FINSTREAM__KAFKA__TOPICS__SEC_FILINGS__NAME", raw.as_str()),
            ("FINSTREAM__KAFKA__TOPICS__EVENTS__NAME", &events),
            ("FINSTREAM__KAFKA__TOPICS__STATE__NAME", &state),
            ("FINSTREAM__SEC__BASE_URL", &url),
            ("FINSTREAM__SEC__DATA_URL", &url),
            ("SEC_USER_AGENT", UA),
            ("FINSTREAM__SEC__FORM_TYPES", "8-K,4,10-K"),
            ("FINSTREAM__SEC__CIKS", "1083743"),
            ("FINSTREAM__SEC__BACKFILL", "true"),
            ("FINSTREAM__SEC__INTERVAL_SECS", "1"),
            ("FINSTREAM__SEC__SUBMISSIONS_INTERVAL_SECS", "1"),
            ("FINSTREAM__SEC__PAGE_SIZE", "10"),
            ("FINSTREAM__SEC__MAX_REQUESTS_PER_SECOND", "10"),
            ("FINSTREAM__SEC__BLOCK_SECS", "3"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .chain([("FINSTREAM__RUNTIME__INSTANCE_ID".to_string(), testkit::unique_topic("inst"))])
        .collect();
        Self { sim, edgar, raw, dlq, events, env }
    }

    fn spawn(&self) -> ProducerProcess {
        let env: Vec<(&str, &str)> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        ProducerProcess::spawn(Path::new(BIN), &env)
    }

    fn committed(&self) -> Vec<SecFiling> {
        testkit::consume_committed(&self.raw, Duration::from_secs(60))
            .iter()
            .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
            .collect()
    }

    async fn wait_committed(&self, n: usize) -> Vec<SecFiling> {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.committed();
            if got.len() >= n {
                return got;
            }
            assert!(std::time::Instant::now() < deadline, "{} of {n} filings committed", got.len());
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

fn party(cik: u64, name: &str, role: &str) -> SimParty {
    SimParty { cik, name: name.into(), role: role.into() }
}

fn filing(acc: &str, form: &str, accepted: &str, parties: Vec<SimParty>, items: &[&str], in_feed: bool) -> SimFiling {
    SimFiling {
        accession: acc.into(),
        form: form.into(),
        accepted: DateTime::parse_from_rfc3339(accepted).unwrap(),
        parties,
        items: items.iter().map(|i| (*i).to_string()).collect(),
        in_feed,
    }
}

fn flux() -> SimParty {
    party(1_083_743, "Flux Power Holdings, Inc.", "Filer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_and_submissions_give_one_record_per_accession_field_by_field() {
    let fx = Fixture::new(100).await;
    let eight_k =
        filing("0001493152-25-027595", "8-K", "2025-12-12T17:31:08-05:00", vec![flux()], &["8.01", "9.01"], true);
    let form4 = filing(
        "0002063236-25-000004",
        "4",
        "2025-12-12T17:30:55-05:00",
        vec![party(2_063_236, "Perez Daniel Antonio", "Reporting"), party(1_673_743, "Hinge Health, Inc.", "Issuer")],
        &[],
        true,
    );
    let ten_k = filing("0001493152-25-000100", "10-K", "2025-03-01T16:05:00-05:00", vec![flux()], &[], false);
    let old_8k = filing("0001493152-24-000007", "8-K", "2024-02-01T08:00:00-05:00", vec![flux()], &["2.02"], false);
    for f in [&eight_k, &form4, &ten_k, &old_8k] {
        fx.edgar.file(f.clone());
    }
    let mut p = fx.spawn();
    fx.wait_committed(4).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let got = fx.committed();
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let accs: Vec<&str> = got.iter().map(|f| f.accession_number.as_str()).collect();
    assert_eq!(accs.len(), 4, "one record per accession number: {accs:?}");
    assert_eq!(accs.iter().collect::<HashSet<_>>().len(), 4);

    let by = |acc: &str| got.iter().find(|f| f.accession_number == acc).unwrap();
    let k = by("0001493152-25-027595");
    assert_eq!(
        (k.cik.as_str(), k.company_name.as_str(), k.form_type.as_str()),
        ("0001083743", "Flux Power Holdings, Inc.", "8-K")
    );
    assert_eq!(k.filed_at, DateTime::parse_from_rfc3339("2025-12-12T22:31:08Z").unwrap());
    assert_eq!(k.items, ["8.01", "9.01"]);
    assert!(k.url.ends_with("/data/1083743/000149315225027595/0001493152-25-027595-index.htm"), "{}", k.url);
    assert_eq!(k.provider, "sec-edgar");

    let four = by("0002063236-25-000004");
    assert_eq!((four.cik.as_str(), four.company_name.as_str()), ("0001673743", "Hinge Health, Inc."));
    let roles: Vec<(&str, &str)> = four.parties.iter().map(|p| (p.cik.as_str(), p.role.as_str())).collect();
    assert_eq!(roles, [("0002063236", "reporting"), ("0001673743", "issuer")]);

    // Only in the submissions API: the recent page and, by backfill, the older page.
    let tk = by("0001493152-25-000100");
    assert_eq!((tk.form_type.as_str(), tk.company_name.as_str()), ("10-K", "Flux Power Holdings, Inc."));
    let old = by("0001493152-24-000007");
    assert_eq!(old.items, ["2.02"]);
    assert_eq!(old.filed_at, DateTime::parse_from_rfc3339("2024-02-01T13:00:00Z").unwrap());
    assert_eq!(old.parties.len(), 1);

    let log = fx.sim.log.all();
    assert!(log.iter().any(|r| r.path == "/submissions/CIK0001083743-submissions-001.json"), "backfill page read");
    assert!(log.iter().all(|r| r.headers.iter().any(|(k, v)| k == "user-agent" && v == UA)), "declared User-Agent");
    let feed: Vec<_> = log.iter().filter(|r| r.path == "/cgi-bin/browse-edgar").collect();
    assert!(feed.iter().all(|r| r.query.as_deref().unwrap_or("").contains("action=getcurrent")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_rate_threshold_stops_every_sec_poller_for_the_block_window() {
    // Four pollers at up to 10 requests/s together; the simulated SEC blocks above 3/s.
    let fx = Fixture::new(3).await;
    fx.edgar.file(filing("0001493152-25-027595", "8-K", "2025-12-12T17:31:08-05:00", vec![flux()], &["8.01"], true));
    let mut p = fx.spawn();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while fx.edgar.blocks().is_empty() {
        assert!(std::time::Instant::now() < deadline, "the simulated SEC never blocked");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Recorded after the block window and the first polls after it.
    fx.wait_committed(1).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    let block = fx.edgar.blocks()[0];
    let during = fx
        .sim
        .log
        .all()
        .iter()
        .filter(|r| {
            r.at > block + chrono::Duration::milliseconds(500) && r.at < block + chrono::Duration::milliseconds(2900)
        })
        .count();
    assert_eq!(during, 0, "no request while blocked (block at {block})");
    let events: Vec<IngestEvent> = testkit::consume_committed(&fx.events, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    assert!(
        events.iter().any(|e| e.kind == EventKind::RateLimited && e.provider == "sec-edgar"),
        "a rate_limited alert: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_xml_is_dead_lettered_and_polling_goes_on() {
    let fx = Fixture::new(100).await;
    let bomb = br#"<?xml version="1.0"?>
<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">]>
<feed xmlns="http://www.w3.org/2005/Atom"><entry><title>&lol2;</title></entry></feed>"#;
    fx.edgar.serve_next(bomb.to_vec());
    fx.edgar.file(filing("0001493152-25-027595", "8-K", "2025-12-12T17:31:08-05:00", vec![flux()], &["8.01"], true));
    let mut p = fx.spawn();
    fx.wait_committed(1).await;
    let dead: Vec<DeadLetter> = testkit::consume_committed(&fx.dlq, Duration::from_secs(30))
        .iter()
        .map(|m| serde_json::from_slice(m.payload().unwrap()).unwrap())
        .collect();
    assert_eq!(p.terminate(Duration::from_secs(20)), Some(0), "{}", p.log());
    assert_eq!(dead.len(), 1, "{dead:#?}");
    assert!(dead[0].error.contains("DOCTYPE"), "{}", dead[0].error);
    assert!(dead[0].raw.contains("<!ENTITY lol"), "the raw document is kept");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_declared_user_agent_never_follows_a_redirect_to_another_origin() {
    use ingest_core::http::{HttpConfig, client, fetch};
    use ingest_core::source::Poller;
    // The SEC asks for a contact in the User-Agent: it is the requester's identity, sent to the
    // SEC only.
    const SENTINEL: &str = "Sentinel Corp sentinel-sec@example.com";
    testkit::trust_test_ca();
    let trap = provider_sim::trap::RedirectTrap::start().await.unwrap();
    let origin = trap.origin.http_url();
    let c = client(&HttpConfig { user_agent: SENTINEL.into(), ..HttpConfig::default() }).unwrap();
    let (every, block) = (Duration::from_secs(60), Duration::from_secs(600));
    let feed = sec_producer::feed::CurrentFeed::new(&origin, "8-K", 40, every, block);
    let subs = sec_producer::submissions::Submissions::new(&origin, &origin, "320193", vec![], false, every, block);
    testkit::assert_refused_cross_origin("EDGAR feed", &fetch(feed.request(&c, &Default::default()), 1 << 20).await);
    testkit::assert_refused_cross_origin("submissions", &fetch(subs.request(&c, &Default::default()), 1 << 20).await);
    trap.assert_only_origin_reached(2, SENTINEL);
}
