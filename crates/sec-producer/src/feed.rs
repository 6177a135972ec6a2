//! The current-filings feed as a poller: `browse-edgar?action=getcurrent&type=<form>&…&output=atom`.
//!
//! - Cursor: the newest acceptance time of the last complete pass. A pass reads pages
//!   (`start`, `count`) newest first until it reaches filings accepted before that time, a
//!   short page, or EDGAR's 503 at the tail of the feed (the end, not an error). The first pass
//!   after a fresh start reads one page only: the producer follows new filings, the
//!   submissions poller backfills.
//! - Fair access (docs/providers.md, SEC EDGAR): the declared User-Agent is set on the HTTP client; 403
//!   "Request Rate Threshold Exceeded" pauses every SEC poller for the block window (and
//!   publishes a `rate_limited` event); 403 "Undeclared Automated Tool" is fatal.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ingest_core::http::HttpResponse;
use ingest_core::record::SecFiling;
use ingest_core::resilience::{ErrorClass, classify_http};
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};

use crate::atom;

/// Provider label (shared by every SEC poller, so they share one rate limit).
pub const PROVIDER: &str = atom::PROVIDER;

/// Where the next poll starts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Newest acceptance time of the last complete pass.
    pub newest: Option<DateTime<Utc>>,
    /// Offset of the next page within the current pass (0: a new pass).
    pub start: u32,
    /// Newest acceptance time seen in the current pass.
    pub pass_newest: Option<DateTime<Utc>>,
}

/// How an SEC 403 is to be read.
pub fn classify_403(body: &[u8], block: Duration) -> ErrorClass {
    let text = String::from_utf8_lossy(body);
    if text.contains("Request Rate Threshold Exceeded") {
        ErrorClass::RateLimited { after: Some(block) }
    } else if text.contains("Undeclared Automated Tool") {
        ErrorClass::Fatal
    } else {
        // Forbidden for this resource only (one CIK's file, one path): that source waits.
        ErrorClass::Denied
    }
}

/// The message for a fatal SEC answer.
pub fn fatal_message(what: &str) -> String {
    format!(
        "the SEC refused our requests as an undeclared automated tool ({what}); set SEC_USER_AGENT to \"Company Name contact@company.com\""
    )
}

/// The feed poller for one form type (empty: every form).
#[derive(Debug, Clone)]
pub struct CurrentFeed {
    name: String,
    base_url: String,
    form: String,
    count: u32,
    interval: Duration,
    block: Duration,
}

impl CurrentFeed {
    /// A poller of `form` filings, `count` entries per page (EDGAR accepts 10, 20, 40, 80, 100).
    pub fn new(base_url: &str, form: &str, count: u32, interval: Duration, block: Duration) -> Self {
        let label = if form.is_empty() { "all" } else { form };
        Self {
            name: format!("sec:current:{label}"),
            base_url: base_url.trim_end_matches('/').to_string(),
            form: form.to_string(),
            count,
            interval,
            block,
        }
    }
}

impl Poller for CurrentFeed {
    type Record = SecFiling;
    type Cursor = Cursor;

    fn name(&self) -> &str {
        &self.name
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn interval(&self) -> Duration {
        self.interval
    }

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        client.get(format!("{}/cgi-bin/browse-edgar", self.base_url)).query(&[
            ("action", "getcurrent"),
            ("type", &self.form),
            ("company", ""),
            ("dateb", ""),
            ("owner", "include"),
            ("start", &cursor.start.to_string()),
            ("count", &self.count.to_string()),
            ("output", "atom"),
        ])
    }

    fn classify(&self, resp: &HttpResponse, cursor: &Cursor) -> Option<ErrorClass> {
        match resp.status {
            // Past the last page EDGAR answers 503: the end of the feed.
            503 if cursor.start > 0 => None,
            403 => Some(classify_403(&resp.body, self.block)),
            s => classify_http(s, resp.header("retry-after"), std::time::SystemTime::now()),
        }
    }

    fn fatal_message(&self, what: &str, _resp: Option<&HttpResponse>) -> String {
        fatal_message(what)
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<SecFiling, Cursor>, String> {
        let end = |pass_newest: Option<DateTime<Utc>>| Cursor {
            newest: pass_newest.max(cursor.newest),
            start: 0,
            pass_newest: None,
        };
        if resp.status == 503 {
            return Ok(Normalized::at(end(cursor.pass_newest)));
        }
        let entries = atom::entries(&resp.body)?;
        let (filings, bad) = atom::filings(&entries, resp.received_at);
        let mut pass_newest = cursor.pass_newest;
        let mut reached_known = false;
        let mut records = Vec::with_capacity(filings.len());
        for f in filings {
            pass_newest = pass_newest.max(Some(f.filed_at));
            if cursor.newest.is_some_and(|n| f.filed_at < n) {
                reached_known = true;
            }
            let raw = serde_json::to_vec(&f).unwrap_or_default();
            records.push((f, raw));
        }
        let rejects =
            bad.into_iter().map(|(e, reason)| Reject { raw: format!("{e:?}").into_bytes(), reason }).collect();
        let short = entries.len() < self.count as usize;
        let first_pass = cursor.newest.is_none();
        let (next, more) = if short || reached_known || first_pass {
            (end(pass_newest), false)
        } else {
            (Cursor { newest: cursor.newest, start: cursor.start + self.count, pass_newest }, true)
        };
        Ok(Normalized { records, rejects, cursor: next, more, cut: None, refused: None })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use chrono::TimeZone;
    use reqwest::header::HeaderMap;

    use super::*;

    fn resp(status: u16, body: &[u8]) -> HttpResponse {
        HttpResponse {
            status,
            headers: HeaderMap::new(),
            body: Bytes::copy_from_slice(body),
            received_at: Utc.with_ymd_and_hms(2025, 12, 12, 23, 0, 0).unwrap(),
        }
    }

    fn feed() -> CurrentFeed {
        CurrentFeed::new("https://sec.example", "8-K", 10, Duration::from_secs(60), Duration::from_secs(600))
    }

    fn page(n: usize, newest_minute: u32) -> Vec<u8> {
        let mut xml = String::from("<feed xmlns=\"http://www.w3.org/2005/Atom\">");
        for i in 0..n {
            let minute = newest_minute - u32::try_from(i).unwrap();
            xml.push_str(&format!(
                "<entry><title>8-K - Co {i} (00000000{i:02}) (Filer)</title><link href=\"https://sec.example/{i}\"/>\
                 <updated>2025-12-12T17:{minute:02}:00-05:00</updated><category term=\"8-K\"/>\
                 <id>urn:tag:sec.gov,2008:accession-number=0000000001-25-{:06}</id></entry>",
                newest_minute * 100 + u32::try_from(i).unwrap()
            ));
        }
        xml.push_str("</feed>");
        xml.into_bytes()
    }

    #[test]
    fn a_pass_pages_until_known_filings_a_short_page_or_the_503_tail() {
        let f = feed();
        let t = |m: u32| Some(Utc.with_ymd_and_hms(2025, 12, 12, 22, m, 0).unwrap());
        // First pass after a fresh start: one page, then the pass ends.
        let n = f.normalize(&resp(200, &page(10, 50)), &Cursor::default()).unwrap();
        assert_eq!((n.records.len(), n.more), (10, false));
        assert_eq!(n.cursor, Cursor { newest: t(50), start: 0, pass_newest: None });
        // Later: a full page of new filings → next page.
        let c = Cursor { newest: t(30), start: 0, pass_newest: None };
        let n = f.normalize(&resp(200, &page(10, 59)), &c).unwrap();
        assert!(n.more);
        assert_eq!(n.cursor, Cursor { newest: t(30), start: 10, pass_newest: t(59) });
        // A page that reaches filings older than the last pass ends it.
        let n2 = f.normalize(&resp(200, &page(10, 35)), &n.cursor).unwrap();
        assert!(!n2.more);
        assert_eq!(n2.cursor, Cursor { newest: t(59), start: 0, pass_newest: None });
        // EDGAR's 503 past the last page is the end of the feed, not a failure.
        let tail = resp(503, b"<html><body>This page is temporarily unavailable.</body></html>");
        assert_eq!(f.classify(&tail, &n.cursor), None);
        let end = f.normalize(&tail, &n.cursor).unwrap();
        assert!(end.records.is_empty() && !end.more);
        assert_eq!(end.cursor, Cursor { newest: t(59), start: 0, pass_newest: None });
        // …but on the first page it is an outage.
        assert!(matches!(f.classify(&tail, &Cursor::default()), Some(ErrorClass::Retryable { .. })));
    }

    #[test]
    fn sec_403_pages_are_told_apart() {
        let f = feed();
        let block = "<html><head><title>SEC.gov | Request Rate Threshold Exceeded</title></head></html>";
        assert_eq!(
            f.classify(&resp(403, block.as_bytes()), &Cursor::default()),
            Some(ErrorClass::RateLimited { after: Some(Duration::from_secs(600)) })
        );
        let undeclared = "<title>SEC.gov | Your Request Originates from an Undeclared Automated Tool</title>";
        assert_eq!(f.classify(&resp(403, undeclared.as_bytes()), &Cursor::default()), Some(ErrorClass::Fatal));
        assert!(f.fatal_message("HTTP 403", None).contains("SEC_USER_AGENT"));
        assert_eq!(f.classify(&resp(403, b"forbidden"), &Cursor::default()), Some(ErrorClass::Denied));
    }

    #[test]
    fn request_parameters() {
        let req = feed().request(&reqwest::Client::new(), &Cursor { newest: None, start: 20, pass_newest: None });
        let url = req.build().unwrap().url().to_string();
        for part in [
            "/cgi-bin/browse-edgar?",
            "action=getcurrent",
            "type=8-K",
            "owner=include",
            "start=20",
            "count=10",
            "output=atom",
        ] {
            assert!(url.contains(part), "{part} in {url}");
        }
    }
}

#[cfg(test)]
mod hostile {
    use super::*;

    /// Hostile input for both SEC pollers: mutated real feed pages (the recorded 8-K feed,
    /// generated pages) and submissions documents, and random bytes, never panic.
    #[test]
    fn hostile_bodies_never_panic() {
        let recorded = std::fs::read(format!("{}/test_data/current_8k_4_13d.atom", env!("CARGO_MANIFEST_DIR")))
            .unwrap_or_default();
        let feed =
            CurrentFeed::new("https://sec.example", "8-K", 10, Duration::from_secs(60), Duration::from_secs(600));
        let entities = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?><feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><title>8-K - A&amp;B &#233; (0000000001) (Filer)</title></entry></feed>".to_vec();
        let seeds = vec![recorded, entities];
        assert_eq!(ingest_core::testkit::hostile_bodies(&feed, &Cursor::default(), &seeds, 1500), 1500);

        let subs = crate::submissions::Submissions::new(
            "https://data.sec.example",
            "https://www.sec.example/Archives",
            "320193",
            vec![],
            true,
            Duration::from_secs(60),
            Duration::from_secs(600),
        );
        let doc = br#"{"cik":"320193","name":"Apple Inc.","filings":{"recent":{"accessionNumber":["0000320193-24-000001","0000320193-24-000002"],"filingDate":["2024-01-02","2024-01-03"],"acceptanceDateTime":["2024-01-02T16:30:00.000Z","2024-01-03T16:30:00.000Z"],"form":["8-K","10-Q"],"primaryDocument":["a.htm","b.htm"],"items":["2.02,9.01",""]},"files":[{"name":"CIK0000320193-submissions-001.json","filingCount":1}]}}"#.to_vec();
        let page = br#"{"accessionNumber":["0000320193-20-000001"],"filingDate":["2020-01-02"],"acceptanceDateTime":["2020-01-02T16:30:00.000Z"],"form":["10-K"],"primaryDocument":["c.htm"],"items":[""]}"#.to_vec();
        let tried = ingest_core::testkit::hostile_bodies(&subs, &Default::default(), &[doc, page], 1500);
        assert_eq!(tried, 1500);
    }
}
