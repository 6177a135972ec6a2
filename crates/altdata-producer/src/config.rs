//! The `altdata:` section of `configs/config.yaml`.

use std::collections::BTreeMap;

use ingest_core::config::{ConfigError, Section, require_url};
use serde::Deserialize;

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
    /// The `Link: <…>; rel="next"` response header.
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
    /// JSON Pointer of the next cursor in a page (kind `cursor`).
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
    pub env: String,
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
    /// Extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A secret header or query parameter.
    #[serde(default)]
    pub auth: Option<AuthConfig>,
    /// Where the items are: a JSON Pointer to an array or object (json; empty: the document).
    #[serde(default)]
    pub items: String,
    /// The item's id: a JSON Pointer (json) or a column (csv); empty: a hash of the content.
    #[serde(default)]
    pub id: String,
    /// The item's event time: a JSON Pointer or a column; empty: the receive time.
    #[serde(default)]
    pub time: String,
    /// How `time` is written: `rfc3339`, `unix`, `unix_ms`, or a chrono format such as
    /// `%Y-%m-%d` (UTC).
    #[serde(default = "default_time_format")]
    pub time_format: String,
    /// Output fields: name → JSON Pointer or column; empty: the whole item (every column).
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
            if s.kind == SourceKind::Html {
                return Err(ConfigError::key(key("kind"), "html sources are not supported yet (json, csv)"));
            }
            if let Some(a) = &s.auth {
                if a.header.is_none() == a.query.is_none() {
                    return Err(ConfigError::key(key("auth"), "give exactly one of header and query"));
                }
                if std::env::var(&a.env).map(|v| v.is_empty()).unwrap_or(true) {
                    return Err(ConfigError::key(
                        key("auth.env"),
                        format!("environment variable {} is not set", a.env),
                    ));
                }
            }
            for (f, p) in [("items", &s.items), ("id", &s.id), ("time", &s.time)] {
                if s.kind == SourceKind::Json && !p.is_empty() && !p.starts_with('/') {
                    return Err(ConfigError::key(key(f), "must be a JSON Pointer (`/a/0/b`)"));
                }
            }
            if s.pagination.kind == PaginationKind::Cursor && !s.pagination.cursor_path.starts_with('/') {
                return Err(ConfigError::key(key("pagination.cursor_path"), "must be a JSON Pointer"));
            }
            if s.pagination.max_pages == 0 {
                return Err(ConfigError::key(key("pagination.max_pages"), "must be positive"));
            }
        }
        Ok(())
    }
}
