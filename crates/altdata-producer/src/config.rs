//! The `altdata:` section of `configs/config.yaml`.

use std::collections::BTreeMap;

use ingest_core::config::{ConfigError, Section, require_url};
use serde::Deserialize;

use crate::html::{Extract, Plan};

/// How a custom source is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    /// A JSON API.
    Json,
    /// An HTML page, scraped with CSS selectors.
    Html,
    /// A CSV file.
    Csv,
}

/// How a source pages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaginationKind {
    /// One request per poll.
    #[default]
    None,
    /// `?<param>=1, 2, …` until a page has no items or `max_pages`.
    Page,
    /// `?<param>=<token>` with the token read from `cursor_path` of the previous page.
    Cursor,
    /// The `Link: <…>; rel="next"` response header, or else the URL at `cursor_path`.
    Link,
}

/// `altdata.sources[].pagination`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pagination {
    /// none, page, cursor or link.
    pub kind: PaginationKind,
    /// Query parameter carrying the page number or cursor.
    pub param: String,
    /// Where a page holds the next cursor (kind `cursor`) or next URL (kind `link`): a JSON
    /// Pointer (json) or an HTML extraction such as `a[rel=next]@href` (html).
    pub cursor_path: String,
    /// Most pages read per poll.
    pub max_pages: u32,
}

impl Default for Pagination {
    fn default() -> Self {
        Self { kind: PaginationKind::None, param: "page".into(), cursor_path: String::new(), max_pages: 10 }
    }
}

/// `altdata.sources[].auth`: a secret sent in a header or query parameter. The value is read
/// from the environment variable `env` at start (never from the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Header to send it in (`Authorization`, `X-Api-Key`).
    #[serde(default)]
    pub header: Option<String>,
    /// Query parameter to send it in (`apikey`).
    #[serde(default)]
    pub query: Option<String>,
    /// Text before the secret (`Bearer `).
    #[serde(default)]
    pub prefix: String,
    /// Environment variable holding the secret.
    #[serde(default)]
    pub env: Option<String>,
    /// File holding the secret (a mounted Kubernetes or Docker secret; a trailing newline is
    /// not part of it).
    #[serde(default)]
    pub file: Option<String>,
}

impl AuthConfig {
    /// The secret, from the variable or the file the config names (`None` if unset or
    /// unreadable; validation says which).
    pub fn secret(&self) -> Option<ingest_core::config::Secret> {
        let raw = match (&self.env, &self.file) {
            (Some(var), None) => std::env::var(var).ok(),
            (None, Some(path)) => {
                std::fs::read_to_string(path).ok().map(|s| s.trim_end_matches(['\r', '\n']).to_string())
            }
            _ => None,
        };
        raw.filter(|s| !s.is_empty()).map(ingest_core::config::Secret::new)
    }
}

/// One entry of `altdata.sources`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AltSourceConfig {
    /// Unique name; the first half of the Kafka key `<source>:<id>`.
    pub name: String,
    /// json, html or csv.
    pub kind: SourceKind,
    /// What to fetch.
    pub url: String,
    /// Seconds between polls.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// Extra request headers. Sent only to the origin of `url`, like `auth`.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A secret header or query parameter, sent only to the origin (scheme, host, port) of
    /// `url`.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Other origins (`https://cdn.example.com`, `https://host:8443`) that a next-page URL or a
    /// redirect may lead to: followed without `auth` and `headers`. Anything else is refused and
    /// counted (`outcome="refused"`, a `request_refused` event); https to http never.
    #[serde(default)]
    pub follow_origins: Vec<String>,
    /// Where the items are: a JSON Pointer to an array or object (json; empty: the document),
    /// or a CSS selector matching each item element (html; empty: the document).
    #[serde(default)]
    pub items: String,
    /// The item's id: a JSON Pointer (json), a column (csv) or an extraction (html:
    /// `selector`, `selector@attribute`, `@attribute`); empty: a hash of the content.
    #[serde(default)]
    pub id: String,
    /// The item's event time: a JSON Pointer, a column or an extraction; empty: the receive time.
    #[serde(default)]
    pub time: String,
    /// How `time` is written: `rfc3339`, `unix`, `unix_ms`, or a chrono format such as
    /// `%Y-%m-%d` (UTC).
    #[serde(default = "default_time_format")]
    pub time_format: String,
    /// Output fields: name → JSON Pointer, column or extraction; empty: the whole item (every
    /// column; for html, the item's text as `text`).
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Paging.
    #[serde(default)]
    pub pagination: Pagination,
}

fn default_time_format() -> String {
    "rfc3339".into()
}

fn default_interval() -> u64 {
    300
}

/// `altdata:`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AltDataConfig {
    /// The custom sources.
    pub sources: Vec<AltSourceConfig>,
    /// Hosts sources may fetch from (exact, or `.example.com` for subdomains); empty: any
    /// public host.
    pub allowed_hosts: Vec<String>,
    /// Hosts or addresses allowed although not public (loopback, private networks). Empty:
    /// only public addresses (the SSRF guard).
    pub allow_private: Vec<String>,
}

impl Section for AltDataConfig {
    const NAME: &'static str = "altdata";
    const LIST_KEYS: &'static [&'static str] = &["altdata.allowed_hosts", "altdata.allow_private"];

    fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let key = |f: &str| format!("altdata.sources[{i}].{f}");
            if s.name.is_empty() || !s.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) {
                return Err(ConfigError::key(key("name"), "must be non-empty [A-Za-z0-9._-]"));
            }
            if !seen.insert(s.name.as_str()) {
                return Err(ConfigError::key(key("name"), format!("duplicate source name `{}`", s.name)));
            }
            require_url(&key("url"), &s.url, &["https", "http"])?;
            if s.interval_secs == 0 {
                return Err(ConfigError::key(key("interval_secs"), "must be positive"));
            }
            if let Some(a) = &s.auth {
                if a.header.is_none() == a.query.is_none() {
                    return Err(ConfigError::key(key("auth"), "give exactly one of header and query"));
                }
                match (&a.env, &a.file) {
                    (Some(var), None) if a.secret().is_none() => {
                        return Err(ConfigError::key(
                            key("auth.env"),
                            format!("environment variable {var} is not set"),
                        ));
                    }
                    (None, Some(path)) if a.secret().is_none() => {
                        return Err(ConfigError::key(key("auth.file"), format!("cannot read a secret from {path}")));
                    }
                    (Some(_), None) | (None, Some(_)) => {}
                    _ => return Err(ConfigError::key(key("auth"), "give exactly one of env and file")),
                }
            }
            let mut paths = vec![("items".to_string(), &s.items), ("id".into(), &s.id), ("time".into(), &s.time)];
            paths.extend(s.fields.iter().map(|(name, p)| (format!("fields.{name}"), p)));
            paths.push(("pagination.cursor_path".into(), &s.pagination.cursor_path));
            for (f, p) in paths {
                match s.kind {
                    SourceKind::Json if !p.is_empty() && !p.starts_with('/') => {
                        return Err(ConfigError::key(key(&f), "must be a JSON Pointer (`/a/0/b`)"));
                    }
                    SourceKind::Html if !p.is_empty() => {
                        let checked =
                            if f == "items" { Plan::new(p, [], None).map(drop) } else { Extract::parse(p).map(drop) };
                        checked.map_err(|e| ConfigError::key(key(&f), e))?;
                    }
                    _ => {}
                }
            }
            if s.pagination.kind == PaginationKind::Cursor && s.pagination.cursor_path.is_empty() {
                return Err(ConfigError::key(key("pagination.cursor_path"), "kind `cursor` needs the cursor's place"));
            }
            if s.kind == SourceKind::Csv && !s.pagination.cursor_path.is_empty() {
                return Err(ConfigError::key(key("pagination.cursor_path"), "csv pages carry no cursor"));
            }
            for (j, o) in s.follow_origins.iter().enumerate() {
                ingest_core::http::Origin::parse(o)
                    .map_err(|e| ConfigError::key(key(&format!("follow_origins[{j}]")), e))?;
            }
            if s.pagination.max_pages == 0 {
                return Err(ConfigError::key(key("pagination.max_pages"), "must be positive"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
    use super::*;

    fn check(source: serde_json::Value) -> Result<(), String> {
        let mut s = serde_json::json!({"name": "s", "url": "https://data.example/x"});
        s.as_object_mut().unwrap().extend(source.as_object().unwrap().clone());
        let cfg: AltDataConfig = serde_json::from_value(serde_json::json!({"sources": [s]})).unwrap();
        cfg.validate().map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_checks_its_own_paths_and_names_the_key() {
        use serde_json::json;
        assert!(
            check(json!({"kind": "html", "items": "tr.event", "id": "@data-id", "time": "td.when",
            "fields": {"a": "td a@href"}, "pagination": {"kind": "link", "cursor_path": "a[rel=next]@href"}}))
            .is_ok()
        );
        let err = check(json!({"kind": "html", "items": "tr..event"})).unwrap_err();
        assert!(err.contains("altdata.sources[0].items") && err.contains("not a CSS selector"), "{err}");
        let err = check(json!({"kind": "html", "fields": {"price": "td.price@"}})).unwrap_err();
        assert!(err.contains("altdata.sources[0].fields.price"), "{err}");
        let err = check(json!({"kind": "json", "fields": {"price": "price"}})).unwrap_err();
        assert!(err.contains("fields.price") && err.contains("JSON Pointer"), "{err}");
        let err = check(json!({"kind": "json", "pagination": {"kind": "cursor"}})).unwrap_err();
        assert!(err.contains("pagination.cursor_path"), "{err}");
        let err = check(json!({"kind": "csv", "pagination": {"kind": "link", "cursor_path": "/next"}})).unwrap_err();
        assert!(err.contains("csv pages carry no cursor"), "{err}");
        assert!(check(json!({"kind": "csv", "id": "symbol", "fields": {"px": "close"}})).is_ok());
        assert!(check(json!({"kind": "json", "follow_origins": ["https://cdn.example.com"]})).is_ok());
        let err = check(json!({"kind": "json", "follow_origins": ["ftp://cdn.example.com"]})).unwrap_err();
        assert!(err.contains("altdata.sources[0].follow_origins[0]"), "{err}");
    }
}
