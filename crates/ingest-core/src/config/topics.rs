//! The topics of docs/contracts.md: names and partition counts, validated.

use serde::Deserialize;

use super::ConfigError;

/// One topic: name and partitions (used by `create_topics` and the readiness check).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// Partition count.
    pub partitions: i32,
}

impl TopicSpec {
    fn new(name: &str, partitions: i32) -> Self {
        Self { name: name.into(), partitions }
    }

    /// The dead-letter topic: the name with a trailing `.raw` replaced by `.dlq`
    /// (`market.ticks.raw` → `market.ticks.dlq`), or `.dlq` appended.
    pub fn dlq_name(&self) -> String {
        let stem = self.name.strip_suffix(".raw").unwrap_or(&self.name);
        format!("{stem}.dlq")
    }
}

/// The topics of docs/contracts.md.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Trades, quotes, bars; keyed by symbol.
    pub market_ticks: TopicSpec,
    /// News articles; keyed by article id.
    pub news_articles: TopicSpec,
    /// Social posts; keyed by post id.
    pub social_posts: TopicSpec,
    /// SEC filings; keyed by accession number.
    pub sec_filings: TopicSpec,
    /// Custom sources; keyed by `<source>:<id>`.
    pub altdata_records: TopicSpec,
    /// Lifecycle events; keyed by producer.
    pub events: TopicSpec,
    /// Cursors and dedup state of polled sources (compacted).
    pub state: TopicSpec,
}

impl Default for Topics {
    fn default() -> Self {
        Self {
            market_ticks: TopicSpec::new("market.ticks.raw", 16),
            news_articles: TopicSpec::new("news.articles.raw", 8),
            social_posts: TopicSpec::new("social.posts.raw", 12),
            sec_filings: TopicSpec::new("sec.filings.raw", 4),
            altdata_records: TopicSpec::new("altdata.records.raw", 4),
            events: TopicSpec::new("ingest.events", 1),
            state: TopicSpec::new("ingest.state", 1),
        }
    }
}

impl Topics {
    /// `(config key, spec)` for every topic, in a fixed order.
    pub fn all(&self) -> [(&'static str, &TopicSpec); 7] {
        [
            ("market_ticks", &self.market_ticks),
            ("news_articles", &self.news_articles),
            ("social_posts", &self.social_posts),
            ("sec_filings", &self.sec_filings),
            ("altdata_records", &self.altdata_records),
            ("events", &self.events),
            ("state", &self.state),
        ]
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        for (key, t) in self.all() {
            let valid_name = !t.name.is_empty()
                && t.name.len() <= 249
                && t.name != "."
                && t.name != ".."
                && t.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            if !valid_name {
                return Err(ConfigError::key(
                    format!("kafka.topics.{key}.name"),
                    "a Kafka topic name is 1-249 characters of [a-zA-Z0-9._-]",
                ));
            }
            if t.partitions < 1 {
                return Err(ConfigError::key(format!("kafka.topics.{key}.partitions"), "must be at least 1"));
            }
        }
        Ok(())
    }
}
