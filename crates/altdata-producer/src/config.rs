//! The `altdata:` section of `configs/config.yaml`.

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
}

impl Section for AltDataConfig {
    const NAME: &'static str = "altdata";

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
        }
        Ok(())
    }
}
