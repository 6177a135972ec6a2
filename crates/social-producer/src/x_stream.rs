//! The X v2 filtered stream (docs/providers.md, X) as a source: rules synced from config, then one
//! long-lived chunked response of NDJSON lines, reconnected on the documented schedule.
//!
//! - Rules: `GET /2/tweets/search/stream/rules`; configured values that are missing are added
//!   (`{"add":[{"value","tag"}]}`), rules that are not configured are deleted
//!   (`{"delete":{"ids":[…]}}`). Invalid rules are reported by X in `errors`; they are logged.
//! - Stream: `GET /2/tweets/search/stream?tweet.fields=…&expansions=author_id&user.fields=username`.
//!   X sends a bare `\r\n` keep-alive about every 20 s; nothing for `read_timeout` (21 s by
//!   default) means the connection is dead: reconnect. A line with only `errors`
//!   (`operational-disconnect`) is X closing the stream: reconnect.
//! - Reconnect schedule (docs.x.com "handling disconnections"): network trouble (a dropped
//!   connection, a read timeout, an operational disconnect) reconnects at once the first time,
//!   then waits 250 ms more per attempt up to 16 s; HTTP errors wait 5 s doubling up to 320 s;
//!   429 waits 60 s doubling. A connection that answered 200 resets the counters. 401/403 are
//!   fatal. Every disconnect → reconnect window is a `gap` event (a stream cannot replay).
//! - Tweets go through the producer's idempotent sink (not a transaction: there is no cursor to
//!   commit); a bounded window of recent ids drops repeats after a reconnect. Lines that are
//!   not JSON, not tweets, or longer than `max_line_bytes` are dead-lettered and counted.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use ingest_core::config::Secret;
use ingest_core::kafka::Route;
use ingest_core::market_hours::MarketSession;
use ingest_core::poll::DedupWindow;
use ingest_core::record::SocialPost;
use ingest_core::source::{FatalError, Source, SourceCtx};
use ingest_core::telemetry::events::{InternalEvent, QuotaExhausted, StreamConnected, StreamDisconnected, StreamGap};
use ingest_core::telemetry::handles::{self, StreamCounters};
use ingest_core::ws::gap::GapTracker;
use serde_json::{Value, json};

use crate::x::{self, PROVIDER};

/// Tag our rules carry.
pub const RULE_TAG: &str = "finstream";

/// Settings of the stream source.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// API root.
    pub base_url: String,
    /// App bearer token.
    pub bearer: Secret,
    /// Rule values to keep on the stream.
    pub rules: Vec<String>,
    /// Symbols recognized in text.
    pub symbols: Arc<Vec<String>>,
    /// User-Agent.
    pub user_agent: String,
    /// No byte (keep-alives included) for this long: reconnect.
    pub read_timeout: Duration,
    /// Network reconnects: added per attempt (the first is immediate), and the cap.
    pub network_step: Duration,
    /// Cap of the network schedule.
    pub network_max: Duration,
    /// HTTP-error reconnects: first wait (doubling), and the cap.
    pub http_base: Duration,
    /// Cap of the HTTP schedule.
    pub http_max: Duration,
    /// 429 reconnects: first wait (doubling).
    pub rate_limit_base: Duration,
    /// Longest line accepted.
    pub max_line_bytes: usize,
}

/// Why a connection ended, which picks the reconnect schedule.
#[derive(Debug)]
enum Ended {
    Network(String),
    /// X ended the stream in-band (operational disconnect) or nothing arrived for the read
    /// timeout: X allows one connection and still counts this one for a moment, so the next
    /// connect waits at least [`MIN_WAIT_AFTER_CLOSE`] instead of meeting 429 TooManyConnections
    /// and its 60 s schedule.
    Closed(String),
    Http(u16, String),
    RateLimited(String),
    /// The app's monthly usage cap is used up (429 `UsageCapExceeded`): no reconnect schedule
    /// helps before the next period; wait [`USAGE_CAP_WAIT`] between tries, with an event each.
    UsageCap(String),
}

/// How long the stream waits between connects while X reports the monthly usage cap.
const USAGE_CAP_WAIT: Duration = Duration::from_secs(3600);

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Network(m) | Ended::Closed(m) | Ended::Http(_, m) | Ended::RateLimited(m) | Ended::UsageCap(m) => {
                f.write_str(m)
            }
        }
    }
}

/// The least wait before reconnecting after X closed the stream or it timed out (see
/// [`Ended::Closed`]); up to 250 ms of jitter is added.
const MIN_WAIT_AFTER_CLOSE: Duration = Duration::from_secs(1);

fn rand_jitter_ms() -> u64 {
    rand::random::<u64>() % 250
}

/// The reconnect schedule state.
#[derive(Debug, Default)]
struct Schedule {
    network: u32,
    http: u32,
    rate: u32,
}

impl Schedule {
    fn reset(&mut self) {
        *self = Self::default();
    }

    fn next(&mut self, why: &Ended, s: &StreamSettings) -> Duration {
        match why {
            Ended::Network(_) => {
                let d = s.network_step.saturating_mul(self.network).min(s.network_max);
                self.network += 1;
                d
            }
            Ended::Closed(_) => {
                let d = s.network_step.saturating_mul(self.network).min(s.network_max);
                self.network += 1;
                d.max(MIN_WAIT_AFTER_CLOSE + Duration::from_millis(rand_jitter_ms()))
            }
            Ended::Http(..) => {
                let d = s.http_base.saturating_mul(1 << self.http.min(16)).min(s.http_max);
                self.http += 1;
                d
            }
            Ended::UsageCap(_) => USAGE_CAP_WAIT,
            Ended::RateLimited(_) => {
                let d = s.rate_limit_base.saturating_mul(1 << self.rate.min(16)).min(Duration::from_secs(3600));
                self.rate += 1;
                d
            }
        }
    }
}

/// The filtered-stream source.
#[derive(Debug)]
pub struct XStream {
    settings: StreamSettings,
}

impl XStream {
    /// A stream source.
    pub fn new(settings: StreamSettings) -> Self {
        Self { settings }
    }
}

fn client(s: &StreamSettings) -> Result<reqwest::Client, reqwest::Error> {
    // No overall timeout: the response lasts as long as the stream; reads are timed one by one.
    // The bearer token stays with X's origin: a redirect elsewhere is refused.
    ingest_core::http::builder()
        .user_agent(s.user_agent.clone())
        .connect_timeout(Duration::from_secs(10))
        .redirect(ingest_core::http::same_origin_redirects(5))
        .build()
}

async fn sleep_or_stop(d: Duration, ctx: &SourceCtx) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => true,
        () = ctx.shutdown.cancelled() => false,
    }
}

/// Brings the stream's rules in line with the configured ones.
async fn sync_rules(client: &reqwest::Client, s: &StreamSettings) -> Result<(), Ended> {
    let url = format!("{}/2/tweets/search/stream/rules", s.base_url);
    let send = |req: reqwest::RequestBuilder| async move {
        let resp = req
            .bearer_auth(s.bearer.expose())
            .send()
            .await
            .map_err(|e| Ended::Network(format!("rules: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        match status {
            200 | 201 => Ok(body),
            429 => Err(Ended::RateLimited("rules: HTTP 429".into())),
            code => Err(Ended::Http(code, format!("rules: HTTP {code}"))),
        }
    };
    let current = send(client.get(&url)).await?;
    let existing: Vec<(String, String)> = current
        .get("data")
        .and_then(Value::as_array)
        .map(|rules| {
            rules
                .iter()
                .filter_map(|r| Some((r.get("id")?.as_str()?.to_string(), r.get("value")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let stale: Vec<&str> = existing.iter().filter(|(_, v)| !s.rules.contains(v)).map(|(id, _)| id.as_str()).collect();
    let missing: Vec<&String> = s.rules.iter().filter(|r| !existing.iter().any(|(_, v)| v == *r)).collect();
    if !stale.is_empty() {
        send(client.post(&url).json(&json!({"delete": {"ids": stale}}))).await?;
        tracing::info!(provider = PROVIDER, deleted = stale.len(), "removed stream rules that are not configured");
    }
    if !missing.is_empty() {
        let add: Vec<Value> = missing.iter().map(|v| json!({"value": v, "tag": RULE_TAG})).collect();
        let resp = send(client.post(&url).json(&json!({"add": add}))).await?;
        if let Some(errors) = resp.get("errors") {
            tracing::warn!(provider = PROVIDER, %errors, "X refused some stream rules");
        }
        tracing::info!(provider = PROVIDER, added = missing.len(), "added stream rules");
    }
    Ok(())
}

impl Source for XStream {
    fn name(&self) -> &str {
        "x:stream"
    }

    fn stale_after(&self) -> Option<Duration> {
        // Keep-alives count as life, not as data; a quiet filter is not an outage.
        None
    }

    fn run(self: Box<Self>, ctx: SourceCtx) -> BoxFuture<'static, Result<(), FatalError>> {
        Box::pin(async move { self.run_stream(ctx).await })
    }
}

impl XStream {
    async fn run_stream(self, ctx: SourceCtx) -> Result<(), FatalError> {
        let s = &self.settings;
        let fatal = |message: String| FatalError { source_name: "x:stream".into(), message };
        let client = client(s).map_err(|e| fatal(format!("cannot build the HTTP client: {e}")))?;
        let route = ctx.sink.route::<SocialPost>(PROVIDER);
        let counters = StreamCounters::new(&ctx.metrics, PROVIDER);
        let mut seen = DedupWindow::new(10_000);
        let mut schedule = Schedule::default();
        let mut rules_synced = false;
        // After a crash of the previous process, the first gap starts where its unacknowledged
        // data did.
        // Gaps as the WebSocket feeds count them: from the last line (keep-alives included) of
        // the old connection to the new one, never overlapping; the counter is their sum.
        let mut gap = GapTracker::new(MarketSession::Always, ctx.restart_gap());
        let mut wait = Duration::ZERO;
        loop {
            if !sleep_or_stop(wait, &ctx).await {
                return Ok(());
            }
            if !rules_synced {
                match sync_rules(&client, s).await {
                    Ok(()) => rules_synced = true,
                    Err(Ended::Http(401 | 403, m)) => return Err(fatal(self.refused(&m))),
                    Err(e) => {
                        wait = schedule.next(&e, s);
                        tracing::warn!(provider = PROVIDER, reason = %e, retry_in_secs = wait.as_secs_f64(), "cannot sync stream rules");
                        continue;
                    }
                }
            }
            let ended =
                self.connect_and_read(&client, &ctx, &route, &mut seen, &mut schedule, &mut gap, &counters).await;
            let ended = match ended {
                None => return Ok(()),
                Some(Ended::Http(code @ (401 | 403), m)) => {
                    ctx.health.set_connected(false, m.clone());
                    return Err(fatal(self.refused(&format!("HTTP {code}"))));
                }
                Some(e) => e,
            };
            ctx.health.set_connected(false, ended.to_string());
            gap.disconnected(Utc::now());
            wait = schedule.next(&ended, s);
            if let Ended::UsageCap(m) = &ended {
                let counter = &handles::quota_exhausted(&ctx.metrics, PROVIDER);
                QuotaExhausted { counter, provider: PROVIDER, source: self.name(), detail: m, wait }.emit(&ctx);
            }
            let (error, retry_in) = (ended.to_string(), wait);
            StreamDisconnected { counters: &counters, epoch: None, error, retry_in, untrusted_certificate: false }
                .emit(&ctx);
        }
    }

    fn refused(&self, what: &str) -> String {
        format!("X refused the bearer token ({what}); check TWITTER_BEARER_TOKEN and the app's stream access")
    }

    /// One connection: `None` at shutdown, otherwise why it ended.
    #[allow(clippy::too_many_arguments, reason = "the loop's state, threaded through one call per connection")]
    async fn connect_and_read(
        &self,
        client: &reqwest::Client,
        ctx: &SourceCtx,
        route: &Route,
        seen: &mut DedupWindow,
        schedule: &mut Schedule,
        gap: &mut GapTracker,
        counters: &StreamCounters,
    ) -> Option<Ended> {
        let s = &self.settings;
        let req = client
            .get(format!("{}/2/tweets/search/stream", s.base_url))
            .query(&[
                ("tweet.fields", "created_at,author_id,public_metrics"),
                ("expansions", "author_id"),
                ("user.fields", "username"),
            ])
            .bearer_auth(s.bearer.expose());
        let mut resp = tokio::select! {
            r = req.send() => match r {
                Ok(r) => r,
                Err(e) => return Some(Ended::Network(format!("connect: {}", e.without_url()))),
            },
            () = ctx.shutdown.cancelled() => return None,
        };
        match resp.status().as_u16() {
            200 => {}
            429 => {
                // A small JSON problem document tells the usage cap from too many connections.
                let mut body = Vec::new();
                while body.len() < 64 * 1024 {
                    match resp.chunk().await {
                        Ok(Some(c)) => body.extend_from_slice(&c),
                        _ => break,
                    }
                }
                return Some(if crate::x::is_usage_cap(&body) {
                    Ended::UsageCap("HTTP 429 at connect: the app's monthly usage cap is used up".into())
                } else {
                    Ended::RateLimited("HTTP 429 at connect".into())
                });
            }
            code => return Some(Ended::Http(code, format!("HTTP {code} at connect"))),
        }
        schedule.reset();
        let now = Utc::now();
        ctx.health.set_connected(true, "streaming");
        ctx.health.mark_data();
        let url = format!("{}/2/tweets/search/stream", s.base_url);
        StreamConnected { provider: PROVIDER, url: &url, epoch: None }.emit(ctx);
        if let Some(gap) = gap.resumed(now) {
            let plain_disconnect = "disconnect to reconnect; the filtered stream cannot replay";
            StreamGap { counters, epoch: None, gap, plain_disconnect }.emit(ctx);
        }
        let mut buf: Vec<u8> = Vec::new();
        loop {
            let chunk = tokio::select! {
                r = tokio::time::timeout(s.read_timeout, resp.chunk()) => r,
                () = ctx.shutdown.cancelled() => return None,
            };
            let bytes = match chunk {
                Err(_) => {
                    return Some(Ended::Closed(format!(
                        "nothing received for {:?} (keep-alives missing)",
                        s.read_timeout
                    )));
                }
                Ok(Err(e)) => return Some(Ended::Network(format!("read: {}", e.without_url()))),
                Ok(Ok(None)) => return Some(Ended::Network("the stream ended".into())),
                Ok(Ok(Some(b))) => b,
            };
            gap.frame(Utc::now());
            buf.extend_from_slice(&bytes);
            while let Some(pos) = buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let line = trim_line(&line);
                if line.is_empty() {
                    continue; // keep-alive
                }
                if let Some(end) = self.on_line(line, ctx, route, seen).await {
                    return Some(end);
                }
            }
            if buf.len() > s.max_line_bytes {
                let reason = format!("line longer than {} bytes without a newline", s.max_line_bytes);
                let prefix = &buf[..buf.len().min(4096)];
                let letter = ctx
                    .sink
                    .wait_for_space(route, &ctx.shutdown, || ctx.sink.dead_letter(route, prefix, &reason, Utc::now()));
                // Counted by the sink whatever happens (enqueued: invalid; shutdown: shutdown).
                let _ = letter.await;
                return Some(Ended::Network(reason));
            }
        }
    }

    /// Handles one line; `Some` if X closed the stream in-band.
    async fn on_line(&self, line: &[u8], ctx: &SourceCtx, route: &Route, seen: &mut DedupWindow) -> Option<Ended> {
        let received_at = Utc::now();
        match parse_line(line, &self.settings.symbols, received_at) {
            Line::Post(p) => {
                if !seen.insert(&p.id) {
                    handles::duplicates_skipped(&ctx.metrics, PROVIDER).inc();
                    return None;
                }
                ctx.health.mark_data();
                if let Err(e) = ctx.sink.send(route, &*p, line, &ctx.shutdown).await {
                    tracing::error!(error = %e, "tweet not accepted by the Kafka client");
                }
            }
            Line::Closed { title, errors } => {
                tracing::warn!(provider = PROVIDER, %errors, "X closed the stream in-band");
                return Some(Ended::Closed(format!("in-band {title}")));
            }
            Line::Invalid(reason) => dead_letter(ctx, route, line, reason, received_at).await,
        }
        None
    }
}

/// What one line of the filtered stream says.
#[derive(Debug)]
pub enum Line {
    /// A tweet, normalized.
    Post(Box<SocialPost>),
    /// X closed the stream in-band with an `errors` object (title of the first error).
    Closed { title: String, errors: Value },
    /// Not a usable line: dead-lettered with this reason.
    Invalid(String),
}

/// Parses one (trimmed, non-empty) line of the filtered stream.
pub fn parse_line(line: &[u8], symbols: &[String], received_at: DateTime<Utc>) -> Line {
    let v: Value = match serde_json::from_slice(line) {
        Ok(v) => v,
        Err(e) => return Line::Invalid(format!("stream line is not JSON: {e}")),
    };
    let Some(data) = v.get("data") else {
        if let Some(errors) = v.get("errors") {
            let title = errors.pointer("/0/title").and_then(Value::as_str).unwrap_or("error").to_string();
            return Line::Closed { title, errors: errors.clone() };
        }
        return Line::Invalid("stream line has neither `data` nor `errors`".into());
    };
    let users: Vec<(String, String)> = v
        .pointer("/includes/users")
        .and_then(Value::as_array)
        .map(|us| {
            us.iter()
                .filter_map(|u| Some((u.get("id")?.as_str()?.to_string(), u.get("username")?.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default();
    match x::post(data, &users, symbols, received_at) {
        Ok(p) => Line::Post(Box::new(p)),
        Err(reason) => Line::Invalid(reason),
    }
}

/// Dead-letters a stream line, waiting for queue space (counted by the sink either way).
async fn dead_letter(ctx: &SourceCtx, route: &Route, line: &[u8], reason: String, received_at: DateTime<Utc>) {
    let letter =
        ctx.sink.wait_for_space(route, &ctx.shutdown, || ctx.sink.dead_letter(route, line, &reason, received_at));
    if let Err(e) = letter.await {
        tracing::debug!(error = %e, "dead letter not enqueued (counted by the sink)");
    }
}

/// A stream line without its CR/LF and surrounding blanks (empty: a keep-alive).
pub fn trim_line(line: &[u8]) -> &[u8] {
    let mut l = line;
    while let [rest @ .., b'\n' | b'\r' | b' ' | b'\t'] = l {
        l = rest;
    }
    while let [b' ' | b'\t', rest @ ..] = l {
        l = rest;
    }
    l
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> StreamSettings {
        StreamSettings {
            base_url: "http://x".into(),
            bearer: Secret::new("t"),
            rules: vec![],
            symbols: Arc::new(vec![]),
            user_agent: "ua".into(),
            read_timeout: Duration::from_secs(21),
            network_step: Duration::from_millis(250),
            network_max: Duration::from_secs(16),
            http_base: Duration::from_secs(5),
            http_max: Duration::from_secs(320),
            rate_limit_base: Duration::from_secs(60),
            max_line_bytes: 1 << 20,
        }
    }

    #[test]
    fn the_documented_reconnect_schedule() {
        let s = settings();
        let mut sch = Schedule::default();
        let net = |sch: &mut Schedule| sch.next(&Ended::Network(String::new()), &s).as_millis();
        assert_eq!([net(&mut sch), net(&mut sch), net(&mut sch)], [0, 250, 500], "immediately once, then linear");
        for _ in 0..100 {
            net(&mut sch);
        }
        assert_eq!(net(&mut sch), 16_000, "capped at 16 s");
        sch.reset();
        let http = |sch: &mut Schedule| sch.next(&Ended::Http(503, String::new()), &s).as_secs();
        assert_eq!([http(&mut sch), http(&mut sch), http(&mut sch)], [5, 10, 20]);
        for _ in 0..10 {
            http(&mut sch);
        }
        assert_eq!(http(&mut sch), 320, "capped at 320 s");
        let rate = |sch: &mut Schedule| sch.next(&Ended::RateLimited(String::new()), &s).as_secs();
        assert_eq!([rate(&mut sch), rate(&mut sch)], [60, 120]);
        // The monthly usage cap is not a rate limit: an hour between tries, not a doubling 60 s.
        let cap = Ended::UsageCap(String::new());
        assert_eq!([sch.next(&cap, &s), sch.next(&cap, &s)], [USAGE_CAP_WAIT, USAGE_CAP_WAIT]);
    }

    #[test]
    fn lines_are_trimmed_of_crlf() {
        assert_eq!(trim_line(b"{\"a\":1}\r\n"), b"{\"a\":1}");
        assert_eq!(trim_line(b"\r\n"), b"");
    }
}
