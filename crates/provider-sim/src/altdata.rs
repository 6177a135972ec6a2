//! Sites for the altdata producer's user-configured sources: one per kind, each paging the way
//! real sites do, plus the traps an SSRF guard must stop. Tests fill them with known content;
//! `make run` demo mode adds a rate, an event and a day's closes over time.
//!
//! - `GET /altdata/rates.json`: policy rates, newest first, two per page, as
//!   `{"data":{"items":[{"id","observed","value","label"}]},"next":<cursor|null>}`. Pages by
//!   `?cursor=<next>` (the body's `next`), by `?page=1,2,…` (an empty page past the end), and
//!   announces the next page in a `Link: <…>; rel="next"` header; one endpoint for the three
//!   paging styles of `altdata.sources[].pagination`.
//! - `GET /altdata/prices.csv`: daily closes, `key,symbol,date,close` with a header row.
//! - `GET /altdata/calendar.html?page=N`: an economic calendar as an HTML table
//!   (`tr.event[data-id]` with `td.when`, `td.name a[href]`, `td.actual`, entities in names),
//!   two rows per page, `<a rel="next" href="?page=N+1">` while more follow.
//! - `GET /altdata/redirect?to=<url>`: `302 Found` to any URL (the redirect-to-metadata trap).
//! - `GET /altdata/next?to=<url>[&via=body]`: one item (`{"data":{"items":[{"id":"next-<n>"}]}}`)
//!   whose next page is `<url>`, announced in a `Link: <url>; rel="next"` header or, with
//!   `via=body`, only in the body's `next` (a hostile site pointing a paging source elsewhere).
//! - `GET /altdata/status/{code}`: that status with a short body (a source that keeps failing).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde_json::json;

/// Items per page of the JSON and HTML sites.
pub const PAGE_SIZE: usize = 2;

/// One policy rate observation.
#[derive(Debug, Clone, PartialEq)]
pub struct SimRate {
    /// Unique id.
    pub id: String,
    /// When it was observed.
    pub observed: DateTime<Utc>,
    /// Percent.
    pub value: f64,
    /// Display name.
    pub label: String,
}

/// One daily close.
#[derive(Debug, Clone, PartialEq)]
pub struct SimClose {
    /// Ticker.
    pub symbol: String,
    /// Trading day.
    pub date: NaiveDate,
    /// Close, as written in the file.
    pub close: String,
}

/// One calendar event.
#[derive(Debug, Clone, PartialEq)]
pub struct SimEvent {
    /// Unique id (the row's `data-id`).
    pub id: String,
    /// Release day.
    pub when: NaiveDate,
    /// Name, plain text (escaped when rendered).
    pub name: String,
    /// Actual figure, if released.
    pub actual: Option<String>,
}

#[derive(Debug, Default)]
struct Inner {
    /// Newest first.
    rates: Vec<SimRate>,
    closes: Vec<SimClose>,
    /// Newest first.
    events: Vec<SimEvent>,
}

/// The sites' content. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct AltDataHandle(Arc<Mutex<Inner>>);

impl AltDataHandle {
    /// Empty sites.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        f(&mut self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Publishes a rate (it becomes the first item of the first page).
    pub fn rate(&self, r: SimRate) {
        self.with(|i| i.rates.insert(0, r));
    }

    /// Adds a close, replacing the same symbol and day.
    pub fn close(&self, c: SimClose) {
        self.with(|i| {
            i.closes.retain(|x| !(x.symbol == c.symbol && x.date == c.date));
            i.closes.push(c);
        });
    }

    /// Publishes an event (first row of the first page).
    pub fn event(&self, e: SimEvent) {
        self.with(|i| i.events.insert(0, e));
    }

    /// Demo content for minute `n` at `now`: a rate every call, an event every fifth, and the
    /// day's closes (repeated calls on one day replace them).
    pub fn demo_tick(&self, n: u64, now: DateTime<Utc>) {
        let minute = now.timestamp() / 60;
        self.rate(SimRate {
            id: format!("sofr-{minute}-{n}"),
            observed: now,
            value: 5.30 + f64::from(u32::try_from(n % 7).unwrap_or(0)) / 100.0,
            label: "SOFR".into(),
        });
        if n.is_multiple_of(5) {
            let names = ["CPI & core CPI", "Nonfarm payrolls", "FOMC rate decision", "Retail sales"];
            self.event(SimEvent {
                id: format!("ev-{minute}-{n}"),
                when: now.date_naive(),
                name: names[usize::try_from(n / 5).unwrap_or(0) % names.len()].into(),
                actual: n.is_multiple_of(2).then(|| format!("{:.1}%", 3.0 + (n % 10) as f64 / 10.0)),
            });
        }
        for (i, sym) in ["AAPL", "MSFT", "NVDA"].into_iter().enumerate() {
            let base = [185.64, 370.87, 495.22][i];
            self.close(SimClose {
                symbol: sym.into(),
                date: now.date_naive(),
                // A day's close does not change during the day.
                close: format!("{:.2}", base + f64::from(now.ordinal() % 11) / 4.0),
            });
        }
    }

    /// The routes.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/altdata/rates.json", get(rates))
            .route("/altdata/prices.csv", get(prices))
            .route("/altdata/calendar.html", get(calendar))
            .route(
                "/altdata/redirect",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    match q.get("to").and_then(|to| HeaderValue::from_str(to).ok()) {
                        Some(to) => (StatusCode::FOUND, [(header::LOCATION, to)]).into_response(),
                        None => (StatusCode::BAD_REQUEST, "missing ?to=").into_response(),
                    }
                }),
            )
            .route(
                "/altdata/next",
                get(|Query(q): Query<HashMap<String, String>>| async move {
                    let Some(to) = q.get("to") else {
                        return (StatusCode::BAD_REQUEST, "missing ?to=").into_response();
                    };
                    let body =
                        json!({"data": {"items": [{"id": format!("next-{}", to.len()), "value": 1}]}, "next": to});
                    let mut resp = axum::Json(body).into_response();
                    if q.get("via").map(String::as_str) != Some("body")
                        && let Ok(link) = HeaderValue::from_str(&format!("<{to}>; rel=\"next\""))
                    {
                        resp.headers_mut().insert(header::LINK, link);
                    }
                    resp
                }),
            )
            .route(
                "/altdata/status/{code}",
                get(|Path(code): Path<u16>| async move {
                    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
                    (status, format!("simulated {code}")).into_response()
                }),
            )
            .with_state(self.clone())
    }
}

/// The page a query asks for, 0-based: `?page=N` (1-based) or `?cursor=o<offset>`; an unknown
/// cursor is past the end.
fn page_start(q: &HashMap<String, String>) -> usize {
    if let Some(p) = q.get("page") {
        return p.parse::<usize>().map_or(usize::MAX, |p| p.saturating_sub(1).saturating_mul(PAGE_SIZE));
    }
    match q.get("cursor") {
        Some(c) => c.strip_prefix('o').and_then(|o| o.parse().ok()).unwrap_or(usize::MAX),
        None => 0,
    }
}

fn next_link(path: &str, q: &HashMap<String, String>, start: usize, len: usize) -> Option<String> {
    let next = start.checked_add(PAGE_SIZE).filter(|n| *n < len)?;
    Some(if q.contains_key("page") {
        format!("{path}?page={}", next / PAGE_SIZE + 1)
    } else {
        format!("{path}?cursor=o{next}")
    })
}

async fn rates(State(h): State<AltDataHandle>, Query(q): Query<HashMap<String, String>>) -> Response {
    let rates = h.with(|i| i.rates.clone());
    let start = page_start(&q);
    let page: Vec<serde_json::Value> = rates
        .iter()
        .skip(start)
        .take(PAGE_SIZE)
        .map(|r| {
            json!({"id": r.id, "observed": r.observed.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                   "value": r.value, "label": r.label})
        })
        .collect();
    let next = next_link("/altdata/rates.json", &q, start, rates.len());
    let cursor = next.as_ref().and_then(|_| start.checked_add(PAGE_SIZE)).map(|o| format!("o{o}"));
    let mut headers = HeaderMap::new();
    if let Some(v) = next.and_then(|n| HeaderValue::from_str(&format!("<{n}>; rel=\"next\"")).ok()) {
        headers.insert(header::LINK, v);
    }
    (headers, axum::Json(json!({"data": {"items": page}, "next": cursor}))).into_response()
}

async fn prices(State(h): State<AltDataHandle>) -> Response {
    let mut body = String::from("key,symbol,date,close\n");
    for c in h.with(|i| i.closes.clone()) {
        let _ = writeln!(body, "{}-{},{},{},{}", c.symbol, c.date, c.symbol, c.date, c.close);
    }
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// Minimal HTML escaping for text and attribute values.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

async fn calendar(State(h): State<AltDataHandle>, Query(q): Query<HashMap<String, String>>) -> Response {
    let events = h.with(|i| i.events.clone());
    let start = if q.contains_key("page") { page_start(&q) } else { 0 };
    let mut rows = String::new();
    for e in events.iter().skip(start).take(PAGE_SIZE) {
        let actual = e
            .actual
            .as_deref()
            .map_or_else(String::new, |a| format!("\n      <td class=\"actual\">{}</td>", escape(a)));
        let _ = write!(
            rows,
            "\n    <tr class=\"event\" data-id=\"{id}\">\n      <td class=\"when\">{when}</td>\n      \
             <td class=\"name\"><a href=\"/altdata/events/{id}\">{name}</a></td>{actual}\n    </tr>",
            id = escape(&e.id),
            when = e.when.format("%Y-%m-%d"),
            name = escape(&e.name),
        );
    }
    let page_no = start / PAGE_SIZE + 1;
    let more = start.saturating_add(PAGE_SIZE) < events.len();
    let next = if more {
        format!("\n  <a rel=\"next\" href=\"?page={}\">Next &raquo;</a>", page_no + 1)
    } else {
        String::new()
    };
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Economic calendar</title></head>\n<body>\n  \
         <h1>Economic calendar &mdash; page {page_no}</h1>\n  <table id=\"calendar\">\n    \
         <tr><th>When</th><th>Event</th><th>Actual</th></tr>{rows}\n  </table>{next}\n</body></html>\n"
    );
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
    use super::*;
    use crate::Sim;

    #[tokio::test]
    async fn three_paging_styles_on_one_endpoint_and_the_traps() {
        let h = AltDataHandle::new();
        for i in 0..3 {
            h.rate(SimRate {
                id: format!("r{i}"),
                observed: DateTime::from_timestamp(1_704_153_600 + i, 0).unwrap(),
                value: 5.0,
                label: "x".into(),
            });
        }
        let sim = Sim::start("127.0.0.1:0".parse().unwrap(), h.router()).await.unwrap();
        let c = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let get = |q: &str| c.get(format!("{}/altdata/rates.json{q}", sim.http_url())).send();
        let first = get("").await.unwrap();
        assert_eq!(first.headers()["link"], "</altdata/rates.json?cursor=o2>; rel=\"next\"");
        let body: serde_json::Value = first.json().await.unwrap();
        assert_eq!(body["next"], "o2");
        assert_eq!(body["data"]["items"][0]["id"], "r2", "newest first");
        let second: serde_json::Value = get("?cursor=o2").await.unwrap().json().await.unwrap();
        assert_eq!((second["data"]["items"][0]["id"].clone(), second["next"].clone()), (json!("r0"), json!(null)));
        let p2 = get("?page=2").await.unwrap();
        assert!(p2.headers().get("link").is_none());
        assert_eq!(p2.json::<serde_json::Value>().await.unwrap()["data"]["items"].as_array().unwrap().len(), 1);
        let p3: serde_json::Value = get("?page=3").await.unwrap().json().await.unwrap();
        assert_eq!(p3["data"]["items"], json!([]));
        let r = c.get(format!("{}/altdata/redirect?to=http://169.254.169.254/x", sim.http_url())).send().await.unwrap();
        assert_eq!((r.status().as_u16(), r.headers()["location"].to_str().unwrap()), (302, "http://169.254.169.254/x"));
        let r = c.get(format!("{}/altdata/status/503", sim.http_url())).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 503);
        sim.stop().await.unwrap();
    }
}
