//! A user-configured source as a poller: fetch (through the SSRF guard), map the items with
//! JSON Pointers (json), column names (csv) or CSS-selector extractions (html), page, and hand `altdata.record/v1` records to the
//! exactly-once group. No code change per source: everything comes from `altdata.sources[]`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use ingest_core::config::Secret;
use ingest_core::http::{HttpConfig, HttpResponse};
use ingest_core::poll::DedupWindow;
use ingest_core::record::AltDataRecord;
use ingest_core::source::{Normalized, Poller, Reject};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{AltSourceConfig, PaginationKind, SourceKind};
use crate::html::Plan;
use crate::ssrf::{GuardedResolver, Refused};
use ingest_core::http::{Origin, RedirectVerdict, judge_redirect};
use ingest_core::proxy::ProxyEnv;

/// Provider label of custom sources.
pub const PROVIDER: &str = "altdata";

/// Where the next request of a poll goes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// Page number (kind `page`), 0 meaning the first.
    pub page: u32,
    /// Next cursor token (kind `cursor`).
    pub token: Option<String>,
    /// Next URL (kind `link`), already checked by the guard.
    pub next_url: Option<String>,
    /// Pages read in this poll.
    pub pages: u32,
}

/// One configured source.
#[derive(Debug, Clone)]
pub struct CustomSource {
    cfg: AltSourceConfig,
    secret: Option<Secret>,
    resolver: GuardedResolver,
    /// The compiled selectors of an html source (an error only if the config was not validated).
    html: Result<Option<Plan>, String>,
    /// The origin of `url`: the only one `auth` and `headers` are sent to.
    origin: Option<Origin>,
    /// Other origins next pages and redirects may lead to (without credentials).
    follow: Vec<Origin>,
    /// The proxy settings (`HTTPS_PROXY`, `NO_PROXY`).
    proxy: ProxyEnv,
}

impl CustomSource {
    /// The poller of `cfg`; `resolver` carries the SSRF policy. The auth secret is read from
    /// the environment variable the config names.
    pub fn new(cfg: AltSourceConfig, resolver: GuardedResolver, proxy: ProxyEnv) -> Self {
        let secret = cfg.auth.as_ref().and_then(crate::config::AuthConfig::secret);
        let html = match cfg.kind {
            SourceKind::Html => {
                let specs =
                    [cfg.id.as_str(), cfg.time.as_str()].into_iter().chain(cfg.fields.values().map(String::as_str));
                let next = Some(cfg.pagination.cursor_path.as_str());
                Plan::new(&cfg.items, specs, next).map(Some)
            }
            _ => Ok(None),
        };
        let origin = url::Url::parse(&cfg.url).ok().as_ref().and_then(Origin::of);
        let follow = cfg.follow_origins.iter().filter_map(|o| Origin::parse(o).ok()).collect();
        Self { cfg, secret, resolver, html, origin, follow, proxy }
    }

    fn check(&self, url: &str) -> Result<url::Url, Refused> {
        let u = url::Url::parse(url).map_err(|e| Refused::ssrf(format!("not a URL ({e})")))?;
        guard_url(&self.resolver, &u)?;
        Ok(u)
    }

    /// A next page or redirect target read from a response to `from`: resolved against it,
    /// within the source's origin or one it lists, never from https to http, and past the SSRF
    /// guard.
    fn next_target(&self, from: &str, next: &str) -> Result<url::Url, Refused> {
        let base = url::Url::parse(from).map_err(|e| Refused::origin(format!("not a URL ({e})")))?;
        let target = base.join(next).map_err(|e| Refused::origin(format!("bad next URL ({e})")))?;
        let own = url::Url::parse(&self.cfg.url).map_err(|e| Refused::origin(format!("not a URL ({e})")))?;
        match judge_redirect(&[own, base], &target, &self.follow) {
            RedirectVerdict::Refuse(r) => return Err(r),
            RedirectVerdict::Follow | RedirectVerdict::HandBack => {}
        }
        guard_url(&self.resolver, &target)?;
        Ok(target)
    }

    /// True when `url` is of the source's own origin: only then do `auth` and `headers` go
    /// with the request.
    fn is_own_origin(&self, url: &str) -> bool {
        let of = url::Url::parse(url).ok().as_ref().and_then(Origin::of);
        of.is_some() && of == self.origin
    }
}

/// The guard for a URL about to be fetched or followed: the policy, and for IP literals (which
/// skip the resolver) the tripwire too.
fn guard_url(resolver: &GuardedResolver, u: &url::Url) -> Result<(), Refused> {
    resolver.policy().check_url(u)?;
    let literal = match u.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let (Some(t), Some(ip)) = (resolver.tripwire(), literal)
        && !t(u.host_str().unwrap_or(""), ip)
    {
        return Err(Refused::ssrf(format!("test tripwire: {ip}")));
    }
    Ok(())
}

/// A JSON value as text for ids and CSV-like fields: strings as they are, the rest as JSON.
fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Parses an event time written as `format` (`rfc3339`, `unix`, `unix_ms`, or a chrono format).
pub fn parse_time(raw: &str, format: &str) -> Result<DateTime<Utc>, String> {
    let raw = raw.trim();
    let bad = || format!("time {raw:?} does not match {format:?}");
    match format {
        "rfc3339" => DateTime::parse_from_rfc3339(raw).map(|t| t.with_timezone(&Utc)).map_err(|_| bad()),
        "unix" => raw
            .parse::<f64>()
            .ok()
            .and_then(|s| DateTime::from_timestamp_millis((s * 1000.0).round() as i64))
            .ok_or_else(bad),
        "unix_ms" => raw.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis).ok_or_else(bad),
        f => NaiveDateTime::parse_from_str(raw, f)
            .map(|t| t.and_utc())
            .or_else(|_| {
                NaiveDate::parse_from_str(raw, f).map(|d| d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
            })
            .map_err(|_| bad()),
    }
}

/// The `rel="next"` target of a `Link` header.
fn link_next(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params
            .split(';')
            .any(|p| p.trim().eq_ignore_ascii_case("rel=\"next\"") || p.trim().eq_ignore_ascii_case("rel=next"))
            .then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_string())
    })
}

impl CustomSource {
    /// One item (a JSON value, or a CSV row as an object of strings) → record.
    fn record(&self, item: &Value, url: &str, received_at: DateTime<Utc>) -> Result<AltDataRecord, String> {
        let c = &self.cfg;
        let get = |path: &str| -> Option<&Value> {
            match c.kind {
                SourceKind::Csv => item.get(path),
                SourceKind::Html => item.get("selected").and_then(|s| s.get(path)),
                SourceKind::Json => item.pointer(path),
            }
        };
        let id = if c.id.is_empty() {
            format!("{:016x}", DedupWindow::hash(&item.to_string()))
        } else {
            let v = get(&c.id).filter(|v| !v.is_null()).ok_or_else(|| format!("item has no id at `{}`", c.id))?;
            let id = as_text(v);
            if id.trim().is_empty() {
                return Err(format!("item has an empty id at `{}`", c.id));
            }
            id
        };
        let observed_at = if c.time.is_empty() {
            received_at
        } else {
            let v = get(&c.time).filter(|v| !v.is_null()).ok_or_else(|| format!("item has no time at `{}`", c.time))?;
            parse_time(&as_text(v), &c.time_format)?
        };
        let data: Map<String, Value> = if c.fields.is_empty() {
            match item {
                Value::Object(m) if c.kind == SourceKind::Html => {
                    Map::from_iter([("text".to_string(), m.get("text").cloned().unwrap_or(Value::Null))])
                }
                Value::Object(m) => m.clone(),
                other => Map::from_iter([("value".to_string(), other.clone())]),
            }
        } else {
            c.fields.iter().map(|(name, path)| (name.clone(), get(path).cloned().unwrap_or(Value::Null))).collect()
        };
        Ok(AltDataRecord {
            source: c.name.clone(),
            id,
            observed_at,
            url: Some(url.to_string()),
            data,
            provider: PROVIDER.into(),
            received_at,
        })
    }

    /// The page's items, and the next cursor or URL at `pagination.cursor_path` if any.
    fn items(&self, body: &[u8]) -> Result<(Vec<Value>, Option<String>), String> {
        match self.cfg.kind {
            SourceKind::Html => {
                let plan = self.html.as_ref().map_err(Clone::clone)?.as_ref().ok_or("no html plan")?;
                let page = plan.scrape(body)?;
                Ok((page.items, page.next))
            }
            SourceKind::Csv => {
                let mut r = csv::ReaderBuilder::new().flexible(false).from_reader(body);
                let headers = r.headers().map_err(|e| format!("CSV header: {e}"))?.clone();
                let mut out = Vec::new();
                for row in r.records() {
                    let row = row.map_err(|e| format!("CSV: {e}"))?;
                    let obj: Map<String, Value> = headers
                        .iter()
                        .zip(row.iter())
                        .map(|(h, v)| (h.to_string(), Value::String(v.to_string())))
                        .collect();
                    out.push(Value::Object(obj));
                }
                Ok((out, None))
            }
            _ => {
                let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
                let at = if self.cfg.items.is_empty() { Some(&doc) } else { doc.pointer(&self.cfg.items) };
                let items = match at {
                    Some(Value::Array(a)) => a.clone(),
                    Some(Value::Null) | None => Vec::new(),
                    Some(other) => vec![other.clone()],
                };
                let path = &self.cfg.pagination.cursor_path;
                let next = (!path.is_empty())
                    .then(|| doc.pointer(path))
                    .flatten()
                    .filter(|v| !v.is_null())
                    .map(as_text)
                    .filter(|t| !t.is_empty());
                Ok((items, next))
            }
        }
    }
}

impl Poller for CustomSource {
    type Record = AltDataRecord;
    type Cursor = Cursor;

    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn provider(&self) -> &str {
        PROVIDER
    }

    fn metric_source(&self) -> &str {
        // The operator's name for the source: bounded by the config, like a job name.
        &self.cfg.name
    }

    fn interval(&self) -> Duration {
        Duration::from_secs(self.cfg.interval_secs)
    }

    fn http_client(&self, cfg: &HttpConfig) -> Option<Result<reqwest::Client, String>> {
        let resolver = self.resolver.clone();
        let max = cfg.max_redirects;
        let (own, follow) = (self.origin.clone(), self.follow.clone());
        let redirects = reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() > max {
                return attempt.error(Refused::origin(format!("more than {max} redirects")));
            }
            // Judged from the request's first URL: a request to the source's origin carries
            // its credentials, so leaving that origin hands the redirect back (to be followed
            // without them) when the source lists the target, and is refused otherwise. A
            // request to a listed origin carries none and may come back to the source's.
            let mut allowed = follow.clone();
            let first_is_own = attempt.previous().first().and_then(Origin::of) == own;
            if !first_is_own {
                allowed.extend(own.clone());
            }
            let verdict = match judge_redirect(attempt.previous(), attempt.url(), &allowed) {
                RedirectVerdict::HandBack if !first_is_own => RedirectVerdict::Follow,
                v => v,
            };
            match verdict {
                RedirectVerdict::Refuse(r) => attempt.error(r),
                RedirectVerdict::HandBack => attempt.stop(),
                RedirectVerdict::Follow => match guard_url(&resolver, attempt.url()) {
                    Ok(()) => attempt.follow(),
                    Err(refused) => attempt.error(refused),
                },
            }
        });
        Some(
            // The proxy of the environment as injected (reqwest's own reading of it is turned
            // off first, so tests can give one); its host is let through the guard (`group`).
            self.proxy
                .reqwest_proxies()
                .into_iter()
                .fold(ingest_core::http::builder().no_proxy(), reqwest::ClientBuilder::proxy)
                .user_agent(cfg.user_agent.clone())
                .timeout(cfg.timeout)
                .connect_timeout(cfg.connect_timeout)
                .gzip(true)
                .redirect(redirects)
                .dns_resolver(Arc::new(self.resolver.clone()))
                .build()
                .map_err(|e| e.to_string()),
        )
    }

    fn request(&self, client: &reqwest::Client, cursor: &Cursor) -> reqwest::RequestBuilder {
        let c = &self.cfg;
        let url = cursor.next_url.clone().unwrap_or_else(|| c.url.clone());
        // Both URLs were checked by the guard before we get here: the configured one in
        // `prepare`, a Link target when it was read in `normalize`. Names are checked again by
        // the client's resolver at connect time, redirects by its redirect policy.
        let mut req = client.get(&url);
        match c.pagination.kind {
            PaginationKind::Page => req = req.query(&[(c.pagination.param.as_str(), cursor.page.max(1).to_string())]),
            PaginationKind::Cursor => {
                if let Some(t) = &cursor.token {
                    req = req.query(&[(c.pagination.param.as_str(), t.as_str())]);
                }
            }
            PaginationKind::None | PaginationKind::Link => {}
        }
        // Credentials (and the configured headers) go to the source's own origin only: a next
        // page or a redirect handed back from another origin is fetched without them.
        if !self.is_own_origin(&url) {
            return req;
        }
        for (k, v) in &c.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let (Some(a), Some(secret)) = (&c.auth, &self.secret) {
            let value = format!("{}{}", a.prefix, secret.expose());
            if let Some(h) = &a.header {
                req = req.header(h.as_str(), value);
            } else if let Some(q) = &a.query {
                req = req.query(&[(q.as_str(), value.as_str())]);
            }
        }
        req
    }

    fn prepare<'a>(
        &'a self,
        _client: &'a reqwest::Client,
        cursor: &'a Cursor,
    ) -> futures::future::BoxFuture<'a, Result<(), (ingest_core::resilience::ErrorClass, String)>> {
        let refused = |r: Refused| (ingest_core::resilience::ErrorClass::Refused, r.to_string());
        Box::pin(async move {
            if let Err(e) = &self.html {
                return Err((ingest_core::resilience::ErrorClass::Refused, format!("configuration: {e}")));
            }
            // The URL this request goes to (the configured one, or a next page already checked
            // against the policy when it was read).
            let url = self.check(cursor.next_url.as_deref().unwrap_or(&self.cfg.url)).map_err(refused)?;
            // Through a proxy, the proxy resolves the name and our resolver never sees the
            // address: check it here, before the proxy is asked to CONNECT. (The proxy may still
            // resolve it differently; the guard can only vouch for what it resolved.)
            let host = url.host_str().unwrap_or_default();
            if self.proxy.for_host(url.scheme() == "https", host).is_some()
                && !matches!(url.host(), Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)))
            {
                self.resolver.resolve_checked(host).await.map_err(refused)?;
            }
            Ok(())
        })
    }

    fn normalize(&self, resp: &HttpResponse, cursor: &Cursor) -> Result<Normalized<AltDataRecord, Cursor>, String> {
        let c = &self.cfg;
        let url = cursor.next_url.clone().unwrap_or_else(|| c.url.clone());
        let pages = cursor.pages + 1;
        if (300..400).contains(&resp.status) {
            // A redirect to another origin the source lists, handed back by the client: fetch
            // its target next, without credentials (the request is built for its origin).
            let location = resp.header("location").ok_or("a redirect without a Location")?;
            let mut out = Normalized::at(Cursor::default());
            match self.next_target(&url, location) {
                Ok(next) if pages < c.pagination.max_pages => {
                    out.cursor = Cursor { next_url: Some(next.to_string()), pages, ..Cursor::default() };
                    out.more = true;
                }
                Ok(_) => {}
                Err(r) => out.refused = Some(r.to_string()),
            }
            return Ok(out);
        }
        let (items, next) = self.items(&resp.body)?;
        let mut out = Normalized::at(Cursor::default());
        for item in &items {
            let raw = serde_json::to_vec(item).unwrap_or_default();
            match self.record(item, &url, resp.received_at) {
                Ok(r) => out.records.push((r, raw)),
                Err(reason) => out.rejects.push(Reject { raw, reason }),
            }
        }
        if pages >= c.pagination.max_pages {
            return Ok(out);
        }
        match c.pagination.kind {
            PaginationKind::None => {}
            PaginationKind::Page if !items.is_empty() => {
                out.cursor = Cursor { page: cursor.page.max(1) + 1, pages, ..Cursor::default() };
                out.more = true;
            }
            PaginationKind::Page => {}
            PaginationKind::Cursor => {
                if let Some(t) = next {
                    out.cursor = Cursor { token: Some(t), pages, ..Cursor::default() };
                    out.more = true;
                }
            }
            PaginationKind::Link => {
                if let Some(next) = resp.header("link").and_then(link_next).or(next) {
                    match self.next_target(&url, &next) {
                        Ok(next) => {
                            out.cursor = Cursor { next_url: Some(next.to_string()), pages, ..Cursor::default() };
                            out.more = true;
                        }
                        // This page's records are kept; the next one is not fetched.
                        Err(r) => out.refused = Some(r.to_string()),
                    }
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;
    use std::sync::Mutex;

    use chrono::TimeZone;
    use ingest_core::http::{FetchError, fetch};

    use super::*;
    use crate::ssrf::{Lookup, Policy, Tripwire};

    #[derive(Debug)]
    struct Table(HashMap<&'static str, IpAddr>);

    impl Lookup for Table {
        fn lookup(&self, host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            let r = self.0.get(host).map(|ip| vec![*ip]).ok_or_else(|| std::io::Error::other("NXDOMAIN"));
            Box::pin(async move { r })
        }
    }

    /// Every SSRF path, one by one: refused with the guard's error, and the tripwire (which
    /// records anything but loopback reaching the connector) stays empty.
    #[tokio::test]
    async fn every_ssrf_path_is_refused() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = [0u8; 2048];
                let n = sock.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_string();
                let resp = if req.starts_with("GET /to-metadata") {
                    "HTTP/1.1 302 Found\r\nlocation: http://169.254.169.254/latest/meta-data/\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                } else if req.starts_with("GET /to-internal") {
                    "HTTP/1.1 302 Found\r\nlocation: http://internal.example/x\r\ncontent-length: 0\r\nconnection: close\r\n\r\n".to_string()
                } else {
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n[]".to_string()
                };
                let _ = sock.write_all(resp.as_bytes()).await;
            }
        });
        let escaped = Arc::new(Mutex::new(Vec::<String>::new()));
        let e = escaped.clone();
        let tripwire: Tripwire = Arc::new(move |h: &str, ip: IpAddr| {
            if !ip.is_loopback() {
                e.lock().unwrap().push(format!("{h} -> {ip}"));
            }
            ip.is_loopback()
        });
        let lookup = Arc::new(Table(HashMap::from([
            ("data.example", "127.0.0.1".parse().unwrap()),
            ("internal.example", "10.0.0.5".parse().unwrap()),
        ])));
        let policy = Arc::new(Policy { allowed_hosts: vec![], allow_private: vec!["data.example".into()] });
        let resolver = GuardedResolver::new(lookup, policy, Some(tripwire));
        let source = |url: String| {
            let cfg: AltSourceConfig =
                serde_json::from_value(serde_json::json!({"name": "t", "kind": "json", "url": url})).unwrap();
            CustomSource::new(cfg, resolver.clone(), ProxyEnv::default())
        };
        let http = HttpConfig::default();
        let ok = source(format!("http://data.example:{port}/ok"));
        let client = ok.http_client(&http).unwrap().unwrap();
        ok.prepare(&client, &Cursor::default()).await.unwrap();
        assert_eq!(fetch(ok.request(&client, &Cursor::default()), 1024).await.unwrap().status, 200);
        for (url, why) in [
            (format!("http://127.0.0.1:{port}/ok"), "loopback literal"),
            ("http://169.254.169.254/latest/meta-data/".to_string(), "metadata literal"),
            (format!("http://[::1]:{port}/ok"), "IPv6 loopback literal"),
        ] {
            let s = source(url);
            let client = s.http_client(&http).unwrap().unwrap();
            let err = s.prepare(&client, &Cursor::default()).await.unwrap_err();
            assert_eq!(err.0, ingest_core::resilience::ErrorClass::Refused, "{why}");
            assert!(err.1.contains("not a public address"), "{why}: {}", err.1);
        }
        let other_origin = "refused to leave the credentials' origin";
        for (url, why, refusal) in [
            (format!("http://internal.example:{port}/x"), "a name resolving to 10.x", "not a public address"),
            // Redirects to another origin are refused before the SSRF guard is even asked.
            (format!("http://data.example:{port}/to-metadata"), "a redirect to the metadata address", other_origin),
            (format!("http://data.example:{port}/to-internal"), "a redirect to a name resolving to 10.x", other_origin),
        ] {
            let s = source(url);
            let client = s.http_client(&http).unwrap().unwrap();
            s.prepare(&client, &Cursor::default()).await.unwrap();
            match fetch(s.request(&client, &Cursor::default()), 1024).await {
                Err(FetchError::Refused(r)) => assert!(r.0.contains(refusal), "{why}: {r}"),
                other => panic!("{why}: {other:?}"),
            }
        }
        // A source that lists those origins gets the redirect handed back (to follow it without
        // credentials): the SSRF guard still refuses the private target.
        let listing = |path: &str| {
            let cfg: AltSourceConfig = serde_json::from_value(serde_json::json!({
                "name": "t", "kind": "json", "url": format!("http://data.example:{port}/{path}"),
                "follow_origins": ["http://169.254.169.254", "http://internal.example"]}))
            .unwrap();
            CustomSource::new(cfg, resolver.clone(), ProxyEnv::default())
        };
        let s = listing("to-metadata");
        let client = s.http_client(&http).unwrap().unwrap();
        let handed_back = fetch(s.request(&client, &Cursor::default()), 1024).await.unwrap();
        assert_eq!(handed_back.status, 302);
        let n = s.normalize(&handed_back, &Cursor::default()).unwrap();
        assert!(!n.more && n.refused.as_deref().is_some_and(|r| r.contains("not a public address")), "{:?}", n.refused);
        let s = listing("to-internal");
        let client = s.http_client(&http).unwrap().unwrap();
        let handed_back = fetch(s.request(&client, &Cursor::default()), 1024).await.unwrap();
        let n = s.normalize(&handed_back, &Cursor::default()).unwrap();
        let next = n.cursor.next_url.clone().expect("a name is checked when it is resolved");
        match fetch(s.request(&client, &n.cursor), 1024).await {
            Err(FetchError::Refused(r)) => assert!(r.0.contains("not a public address"), "{next}: {r}"),
            other => panic!("{next}: {other:?}"),
        }
        assert!(escaped.lock().unwrap().is_empty(), "{:?}", escaped.lock().unwrap());
    }

    #[test]
    fn times_in_the_documented_formats() {
        let t = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        assert_eq!(parse_time("2024-01-02T00:00:00Z", "rfc3339").unwrap(), t);
        assert_eq!(parse_time("1704153600", "unix").unwrap(), t);
        assert_eq!(parse_time("1704153600000", "unix_ms").unwrap(), t);
        assert_eq!(parse_time("2024-01-02", "%Y-%m-%d").unwrap(), t);
        assert_eq!(parse_time("02/01/2024 00:00", "%d/%m/%Y %H:%M").unwrap(), t);
        assert!(parse_time("yesterday", "rfc3339").is_err());
    }

    #[test]
    fn link_headers() {
        assert_eq!(
            link_next(r#"<https://a.example/p2>; rel="next", <https://a.example/p9>; rel="last""#).as_deref(),
            Some("https://a.example/p2")
        );
        assert_eq!(link_next(r#"<https://a.example/p1>; rel="prev""#), None);
    }
}

#[cfg(test)]
mod hostile {
    use std::net::IpAddr;
    use std::sync::Arc;

    use super::*;
    use crate::ssrf::{Lookup, Policy};

    #[derive(Debug)]
    struct NoLookup;

    impl Lookup for NoLookup {
        fn lookup(&self, _host: &str) -> futures::future::BoxFuture<'static, std::io::Result<Vec<IpAddr>>> {
            Box::pin(async { Err(std::io::Error::other("no DNS in this test")) })
        }
    }

    fn source(cfg: serde_json::Value) -> CustomSource {
        let resolver = GuardedResolver::new(Arc::new(NoLookup), Arc::new(Policy::default()), None);
        CustomSource::new(serde_json::from_value(cfg).unwrap(), resolver, ProxyEnv::default())
    }

    /// Hostile input for each kind of custom source (JSON with cursor paging, CSV, HTML with a
    /// next link): mutated real pages and random bytes never panic.
    #[test]
    fn hostile_bodies_never_panic() {
        let json = source(serde_json::json!({"name": "j", "kind": "json", "url": "https://a.example/r",
            "items": "/data/items", "id": "/id", "time": "/observed", "fields": {"rate": "/value"},
            "pagination": {"kind": "cursor", "param": "cursor", "cursor_path": "/next"}}));
        let seed = br#"{"data":{"items":[{"id":"r1","observed":"2024-01-02T12:00:00Z","value":5.33,"label":"Fed funds"},{"id":"r2","observed":"2024-01-02T12:01:00Z","value":[1,{"a":null}]}]},"next":"o2"}"#;
        assert_eq!(ingest_core::testkit::hostile_bodies(&json, &Cursor::default(), &[seed.to_vec()], 1500), 1500);

        let csv = source(serde_json::json!({"name": "c", "kind": "csv", "url": "https://a.example/p.csv",
            "id": "key", "time": "date", "time_format": "%Y-%m-%d"}));
        let seed =
            b"key,symbol,date,close\nAAPL-2024-01-02,AAPL,2024-01-02,185.64\n\"MS,FT\",MSFT,2024-01-02,\"370.87\"\n";
        assert_eq!(ingest_core::testkit::hostile_bodies(&csv, &Cursor::default(), &[seed.to_vec()], 1500), 1500);

        let html = source(serde_json::json!({"name": "h", "kind": "html", "url": "https://a.example/c.html",
            "items": "table#calendar tr.event", "id": "@data-id", "time": "td.when", "time_format": "%Y-%m-%d",
            "fields": {"event": "td.name", "link": "td.name a@href"},
            "pagination": {"kind": "link", "cursor_path": "a[rel=next]@href"}}));
        let seed = br#"<!DOCTYPE html><html><body><table id="calendar"><tr><th>When</th></tr>
            <tr class="event" data-id="cpi"><td class="when">2024-01-11</td><td class="name"><a href="/e/cpi">CPI &amp; core</a></td></tr>
            </table><a rel="next" href="?page=2">Next &raquo;</a><script>var x = "<div>";</script><!-- <b> --></body></html>"#;
        assert_eq!(ingest_core::testkit::hostile_bodies(&html, &Cursor::default(), &[seed.to_vec()], 1500), 1500);
    }
}
