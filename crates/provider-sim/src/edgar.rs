//! SEC EDGAR (docs/providers.md, SEC EDGAR): the current-filings Atom feed and the submissions JSON API,
//! with the SEC's fair-access behaviour.
//!
//! - `GET /cgi-bin/browse-edgar?action=getcurrent&type=&start=&count=&output=atom`: ISO-8859-1
//!   Atom, newest first, one `<entry>` per party of a filing (Issuer + Reporting, …), titles
//!   `FORM - NAME (CIK) (Role)`, `updated` with the US/Eastern offset, the HTML summary
//!   escaped; `start` past the last entry → HTTP 503 HTML ("temporarily unavailable").
//! - `GET /submissions/CIK##########.json`: columnar `filings.recent` (newest first, at most
//!   `recent_max` rows) and `filings.files[]` naming `CIK##########-submissions-001.json`,
//!   which holds the older rows as top-level arrays.
//! - Fair access: a `User-Agent` without an email → 403 "Undeclared Automated Tool" page; more
//!   than `max_per_second` requests within a second → 403 "Request Rate Threshold Exceeded",
//!   and every request keeps getting it until `block` has passed.
//! - [`EdgarHandle::serve_next`] answers the next feed request with given bytes (hostile XML).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::json;

/// A party of a filing.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParty {
    /// CIK (digits, no padding needed).
    pub cik: u64,
    /// Name.
    pub name: String,
    /// `Filer`, `Issuer`, `Reporting`, `Subject`, `Filed by`.
    pub role: String,
}

/// One filing.
#[derive(Debug, Clone, PartialEq)]
pub struct SimFiling {
    /// `##########-##-######`.
    pub accession: String,
    /// Form type.
    pub form: String,
    /// Acceptance time (shown in the feed with the Eastern offset given here).
    pub accepted: DateTime<FixedOffset>,
    /// Parties; the first is the one the submissions API lists it under.
    pub parties: Vec<SimParty>,
    /// 8-K items (`8.01`).
    pub items: Vec<String>,
    /// Listed in the current-filings feed (older filings are only in the submissions API).
    pub in_feed: bool,
}

/// Limits.
#[derive(Debug, Clone)]
pub struct EdgarConfig {
    /// Requests per second before the block.
    pub max_per_second: u32,
    /// How long the block lasts.
    pub block: Duration,
    /// Rows in `filings.recent`; older ones go to the first `files[]` page.
    pub recent_max: usize,
}

#[derive(Debug)]
struct Inner {
    cfg: EdgarConfig,
    filings: Vec<SimFiling>,
    window: (Instant, u32),
    blocked_until: Option<Instant>,
    blocks: Vec<DateTime<Utc>>,
    canned: VecDeque<Vec<u8>>,
}

/// The EDGAR simulator's state. Cheap to clone.
#[derive(Debug, Clone)]
pub struct EdgarHandle(Arc<Mutex<Inner>>);

fn threshold_page() -> String {
    "<!DOCTYPE html>\n<html><head><title>SEC.gov | Request Rate Threshold Exceeded</title></head><body>\n\
     <h1>Request Rate Threshold Exceeded</h1>\n<p>Your access to SEC.gov will be limited for 10 minutes. \
     Continuing to exceed the request rate will extend the duration of the time-out period.</p>\n\
     <p>Reference ID: 0.8cc47b68.1700000000.1a2b3c</p></body></html>\n"
        .to_string()
}

fn undeclared_page() -> String {
    "<!DOCTYPE html>\n<html><head><title>SEC.gov | Your Request Originates from an Undeclared Automated Tool</title></head>\n\
     <body><h1>Your Request Originates from an Undeclared Automated Tool</h1>\n<p>Please declare your traffic by \
     updating your user agent to include company specific information.</p></body></html>\n"
        .to_string()
}

impl EdgarHandle {
    /// A simulator with no filings.
    pub fn new(cfg: EdgarConfig) -> Self {
        Self(Arc::new(Mutex::new(Inner {
            cfg,
            filings: Vec::new(),
            window: (Instant::now(), 0),
            blocked_until: None,
            blocks: Vec::new(),
            canned: VecDeque::new(),
        })))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds a filing.
    pub fn file(&self, f: SimFiling) {
        self.lock().filings.push(f);
    }

    /// When each rate block started.
    pub fn blocks(&self) -> Vec<DateTime<Utc>> {
        self.lock().blocks.clone()
    }

    /// Answers the next feed request with `body` (200, Atom content type).
    pub fn serve_next(&self, body: Vec<u8>) {
        self.lock().canned.push_back(body);
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/cgi-bin/browse-edgar", get(browse))
            .route("/submissions/{file}", get(submissions))
            .with_state(self.clone())
    }

    /// Fair-access checks; `Err` is the 403 to send.
    fn admit(&self, headers: &HeaderMap) -> Result<(), Box<Response>> {
        let html = |body: String| {
            Box::new((StatusCode::FORBIDDEN, [("content-type", "text/html; charset=utf-8")], body).into_response())
        };
        let ua = headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ua.contains('@') {
            return Err(html(undeclared_page()));
        }
        let mut inner = self.lock();
        let now = Instant::now();
        if inner.blocked_until.is_some_and(|t| now < t) {
            return Err(html(threshold_page()));
        }
        if now.duration_since(inner.window.0) >= Duration::from_secs(1) {
            inner.window = (now, 0);
        }
        inner.window.1 += 1;
        if inner.window.1 > inner.cfg.max_per_second {
            inner.blocked_until = Some(now + inner.cfg.block);
            inner.blocks.push(Utc::now());
            return Err(html(threshold_page()));
        }
        Ok(())
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn latin1(s: &str) -> Vec<u8> {
    s.chars().map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?')).collect()
}

fn entry(f: &SimFiling, p: &SimParty) -> String {
    let acc_plain = f.accession.replace('-', "");
    let mut summary =
        format!(" <b>Filed:</b> {} <b>AccNo:</b> {} <b>Size:</b> 24 KB", f.accepted.format("%Y-%m-%d"), f.accession);
    for it in &f.items {
        summary.push_str(&format!("\n<br>Item {it}: Item text"));
    }
    format!(
        "<entry>\n<title>{form} - {name} ({cik:010}) ({role})</title>\n\
         <link rel=\"alternate\" type=\"text/html\" href=\"https://www.sec.gov/Archives/edgar/data/{cik}/{acc_plain}/{acc}-index.htm\"/>\n\
         <summary type=\"html\">{summary}\n</summary>\n<updated>{updated}</updated>\n\
         <category scheme=\"https://www.sec.gov/\" label=\"form type\" term=\"{form}\"/>\n\
         <id>urn:tag:sec.gov,2008:accession-number={acc}</id>\n</entry>\n",
        form = escape(&f.form),
        name = escape(&p.name),
        cik = p.cik,
        role = p.role,
        acc = f.accession,
        summary = escape(&summary),
        updated = f.accepted.to_rfc3339(),
    )
}

async fn browse(
    State(h): State<EdgarHandle>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = h.admit(&headers) {
        return *r;
    }
    let atom = [("content-type", "application/atom+xml"), ("cache-control", "no-cache")];
    if let Some(body) = h.lock().canned.pop_front() {
        return (StatusCode::OK, atom, body).into_response();
    }
    let form = q.get("type").cloned().unwrap_or_default();
    let start = q.get("start").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let count = q.get("count").and_then(|s| s.parse::<usize>().ok()).unwrap_or(40);
    let count = if [10, 20, 40, 80, 100].contains(&count) { count } else { 40 };
    let mut filings: Vec<SimFiling> =
        h.lock().filings.iter().filter(|f| f.in_feed && (form.is_empty() || f.form == form)).cloned().collect();
    filings.sort_by_key(|f| std::cmp::Reverse(f.accepted));
    let entries: Vec<String> = filings.iter().flat_map(|f| f.parties.iter().map(|p| entry(f, p))).collect();
    if start > 0 && start >= entries.len() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "text/html")],
            "<html><body><h1>This page is temporarily unavailable.</h1></body></html>",
        )
            .into_response();
    }
    let eastern = FixedOffset::west_opt(5 * 3600)
        .unwrap_or(FixedOffset::east_opt(0).unwrap_or(*Utc::now().fixed_offset().offset()));
    let now = Utc::now().with_timezone(&eastern);
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<feed xmlns=\"http://www.w3.org/2005/Atom\">\n\
         <title>Latest Filings - {}</title>\n<link rel=\"alternate\" href=\"/cgi-bin/browse-edgar?action=getcurrent\"/>\n\
         <link rel=\"self\" href=\"/cgi-bin/browse-edgar?action=getcurrent\"/>\n\
         <id>https://www.sec.gov/cgi-bin/browse-edgar?action=getcurrent</id>\n\
         <author><name>Webmaster</name><email>webmaster@sec.gov</email></author>\n<updated>{}</updated>\n",
        now.format("%a, %d %b %Y %H:%M:%S EST"),
        now.to_rfc3339()
    );
    for e in entries.iter().skip(start).take(count) {
        xml.push_str(e);
    }
    xml.push_str("</feed>\n");
    (StatusCode::OK, atom, latin1(&xml)).into_response()
}

fn columns(rows: &[&SimFiling]) -> serde_json::Value {
    json!({
        "accessionNumber": rows.iter().map(|f| f.accession.clone()).collect::<Vec<_>>(),
        "filingDate": rows.iter().map(|f| f.accepted.format("%Y-%m-%d").to_string()).collect::<Vec<_>>(),
        "reportDate": rows.iter().map(|_| "").collect::<Vec<_>>(),
        "acceptanceDateTime": rows.iter().map(|f| f.accepted.with_timezone(&Utc).format("%Y-%m-%dT%H:%M:%S.000Z").to_string()).collect::<Vec<_>>(),
        "act": rows.iter().map(|_| "").collect::<Vec<_>>(),
        "form": rows.iter().map(|f| f.form.clone()).collect::<Vec<_>>(),
        "fileNumber": rows.iter().map(|_| "").collect::<Vec<_>>(),
        "filmNumber": rows.iter().map(|_| "").collect::<Vec<_>>(),
        "items": rows.iter().map(|f| f.items.join(",")).collect::<Vec<_>>(),
        "size": rows.iter().map(|_| 8579).collect::<Vec<_>>(),
        "isXBRL": rows.iter().map(|_| 0).collect::<Vec<_>>(),
        "isInlineXBRL": rows.iter().map(|_| 0).collect::<Vec<_>>(),
        "primaryDocument": rows.iter().map(|_| "doc.htm").collect::<Vec<_>>(),
        "primaryDocDescription": rows.iter().map(|_| "PRIMARY DOCUMENT").collect::<Vec<_>>(),
    })
}

async fn submissions(State(h): State<EdgarHandle>, headers: HeaderMap, Path(file): Path<String>) -> Response {
    if let Err(r) = h.admit(&headers) {
        return *r;
    }
    let not_found = || (StatusCode::NOT_FOUND, "<Error><Code>NoSuchKey</Code></Error>").into_response();
    let Some(rest) = file.strip_prefix("CIK") else { return not_found() };
    let (digits, page) = match rest.strip_suffix(".json") {
        Some(r) => match r.split_once("-submissions-") {
            Some((d, p)) => (d, p.parse::<usize>().ok()),
            None => (r, None),
        },
        None => return not_found(),
    };
    let Ok(cik) = digits.parse::<u64>() else { return not_found() };
    let (mut filings, recent_max) = {
        let inner = h.lock();
        let fs: Vec<SimFiling> =
            inner.filings.iter().filter(|f| f.parties.first().is_some_and(|p| p.cik == cik)).cloned().collect();
        (fs, inner.cfg.recent_max)
    };
    if filings.is_empty() {
        return not_found();
    }
    filings.sort_by_key(|f| std::cmp::Reverse(f.accepted));
    let name = filings[0].parties[0].name.clone();
    let rows: Vec<&SimFiling> = filings.iter().collect();
    let (recent, older) = rows.split_at(rows.len().min(recent_max));
    match page {
        Some(1) => axum::Json(columns(older)).into_response(),
        Some(_) => not_found(),
        None => {
            let files: Vec<serde_json::Value> = if older.is_empty() {
                vec![]
            } else {
                vec![json!({"name": format!("CIK{cik:010}-submissions-001.json"), "filingCount": older.len(),
                            "filingFrom": older.last().map(|f| f.accepted.format("%Y-%m-%d").to_string()),
                            "filingTo": older.first().map(|f| f.accepted.format("%Y-%m-%d").to_string())})]
            };
            axum::Json(json!({
                "cik": cik.to_string(), "entityType": "operating", "sic": "3711", "name": name,
                "tickers": [], "exchanges": [], "fiscalYearEnd": "1231",
                "filings": {"recent": columns(recent), "files": files}
            }))
            .into_response()
        }
    }
}

/// Demo filings (for `make run`): every third one a Form 4 with its issuer and reporting
/// person, the others 8-Ks with items; accepted at `now` (US/Eastern offset).
pub fn demo_filing(n: u64, now: DateTime<Utc>) -> SimFiling {
    const COMPANIES: &[(u64, &str)] = &[
        (320_193, "Apple Inc."),
        (789_019, "MICROSOFT CORP"),
        (1_045_810, "NVIDIA CORP"),
        (1_318_605, "Tesla, Inc."),
        (1_018_724, "AMAZON COM INC"),
    ];
    let (cik, name) = COMPANIES[usize::try_from(n).unwrap_or(0) % COMPANIES.len()];
    // EDGAR acceptance times are whole seconds.
    let now = DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now);
    let eastern = FixedOffset::west_opt(5 * 3600).unwrap_or(*now.fixed_offset().offset());
    let accession = format!("0000950170-{}-{:06}", now.format("%y"), n % 1_000_000);
    let issuer = SimParty { cik, name: name.to_string(), role: "Filer".into() };
    if n % 3 == 2 {
        SimFiling {
            accession,
            form: "4".into(),
            accepted: now.with_timezone(&eastern),
            parties: vec![
                SimParty { cik, name: name.to_string(), role: "Issuer".into() },
                SimParty { cik: 1_900_000 + n, name: format!("Doe Jane {n}"), role: "Reporting".into() },
            ],
            items: vec![],
            in_feed: true,
        }
    } else {
        SimFiling {
            accession,
            form: "8-K".into(),
            accepted: now.with_timezone(&eastern),
            parties: vec![issuer],
            items: vec!["2.02".into(), "9.01".into()],
            in_feed: true,
        }
    }
}
