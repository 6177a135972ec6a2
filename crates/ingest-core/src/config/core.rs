//! The sections every producer shares: `kafka`, `telemetry`, `runtime`.
//!
//! Defaults are defined once, here, in the `Default` impls; `configs/config.yaml` repeats them
//! with documentation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;

/// `kafka`, `telemetry` and `runtime`.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    /// The Kafka sink.
    pub kafka: KafkaConfig,
    /// Metrics, health and logs.
    pub telemetry: TelemetryConfig,
    /// Process lifecycle.
    pub runtime: RuntimeConfig,
}

impl CoreConfig {
    /// Checks ranges and names serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.telemetry.validate()?;
        self.runtime.validate()
    }
}

/// The Kafka producer (librdkafka) and the topics.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated (`KAFKA_BROKERS`).
    pub brokers: String,
    /// `client.id`; empty means the producer's name.
    pub client_id: String,
    /// Schema Registry URL (`SCHEMA_REGISTRY_URL`). Records are JSON with a `schema` header;
    /// the URL is validated and reported but no schema is registered yet.
    pub schema_registry_url: String,
    /// `acks`: `all` (default), `1` or `0`. Anything but `all` weakens delivery guarantees.
    pub acks: String,
    /// `enable.idempotence`: no duplicates or reordering on retries.
    pub enable_idempotence: bool,
    /// `compression.type`: none, gzip, snappy, lz4, zstd.
    pub compression_type: String,
    /// `linger.ms`: how long a batch waits for more records.
    pub linger_ms: u64,
    /// `batch.size`: largest batch per partition, in bytes.
    pub batch_size_bytes: u64,
    /// `message.timeout.ms` (delivery timeout): a record not acknowledged by then fails.
    pub delivery_timeout_ms: u64,
    /// `queue.buffering.max.messages`: records librdkafka holds before sends wait.
    pub queue_max_messages: u64,
    /// `queue.buffering.max.kbytes`.
    pub queue_max_kbytes: u64,
    /// Any other librdkafka property, passed through as is (e.g. `security.protocol`,
    /// `sasl.mechanism`). These win over the fields above. Values of keys that look like
    /// credentials are redacted in logs.
    pub properties: BTreeMap<String, String>,
    /// Create missing topics at start (Admin API) with the partitions below. Off by default:
    /// topics are an operator's decision (`make kafka-up` and the deployment create them).
    pub create_topics: bool,
    /// Replication factor used when `create_topics` creates a topic.
    pub replication_factor: i32,
    /// How often readiness re-checks that the brokers answer and the topics exist.
    pub healthcheck_interval_secs: u64,
    /// Topic names and partition counts.
    pub topics: Topics,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: String::new(),
            schema_registry_url: String::new(),
            acks: "all".into(),
            enable_idempotence: true,
            compression_type: "snappy".into(),
            linger_ms: 10,
            batch_size_bytes: 16_384,
            delivery_timeout_ms: 300_000,
            queue_max_messages: 100_000,
            queue_max_kbytes: 1_048_576,
            properties: BTreeMap::new(),
            create_topics: false,
            replication_factor: 1,
            healthcheck_interval_secs: 5,
            topics: Topics::default(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| (k.as_str(), if is_credential_key(k) { "***" } else { v.as_str() }))
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("acks", &self.acks)
            .field("enable_idempotence", &self.enable_idempotence)
            .field("compression_type", &self.compression_type)
            .field("linger_ms", &self.linger_ms)
            .field("batch_size_bytes", &self.batch_size_bytes)
            .field("delivery_timeout_ms", &self.delivery_timeout_ms)
            .field("properties", &props)
            .field("create_topics", &self.create_topics)
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// True for librdkafka property names that carry credentials.
pub(crate) fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "keystore", "sasl.oauthbearer.config"].iter().any(|s| k.contains(s))
}

impl KafkaConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.brokers.split(',').all(|b| b.trim().is_empty()) {
            return Err(ConfigError::key("kafka.brokers", "must name at least one broker (host:port)"));
        }
        for b in self.brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
            if !b.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok()) {
                return Err(ConfigError::key("kafka.brokers", format!("`{b}` is not host:port")));
            }
        }
        if !["all", "-1", "0", "1"].contains(&self.acks.as_str()) {
            return Err(ConfigError::key("kafka.acks", "must be all, 1 or 0"));
        }
        if !["none", "gzip", "snappy", "lz4", "zstd"].contains(&self.compression_type.as_str()) {
            return Err(ConfigError::key("kafka.compression_type", "must be none, gzip, snappy, lz4 or zstd"));
        }
        if self.linger_ms > 900_000 {
            return Err(ConfigError::key("kafka.linger_ms", "must be at most 900000"));
        }
        if !(1..=1_000_000_000).contains(&self.batch_size_bytes) {
            return Err(ConfigError::key("kafka.batch_size_bytes", "must be between 1 and 1000000000"));
        }
        if self.delivery_timeout_ms == 0 {
            return Err(ConfigError::key("kafka.delivery_timeout_ms", "must be positive"));
        }
        if self.queue_max_messages == 0 {
            return Err(ConfigError::key("kafka.queue_max_messages", "must be positive"));
        }
        if self.replication_factor < 1 {
            return Err(ConfigError::key("kafka.replication_factor", "must be at least 1"));
        }
        if self.healthcheck_interval_secs == 0 {
            return Err(ConfigError::key("kafka.healthcheck_interval_secs", "must be positive"));
        }
        if !self.schema_registry_url.is_empty() {
            super::require_url("kafka.schema_registry_url", &self.schema_registry_url, &["https", "http"])?;
        }
        self.topics.validate()
    }
}

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

/// The design.md topics.
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

    fn validate(&self) -> Result<(), ConfigError> {
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

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (for log shippers).
    Json,
}

/// Metrics, health and logs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Address of the Prometheus endpoint (`GET /metrics`).
    pub metrics_addr: SocketAddr,
    /// Address of the health endpoints (`GET /health`, `GET /ready`). May equal `metrics_addr`.
    pub health_addr: SocketAddr,
    /// Log filter (`LOG_LEVEL`): a level (`info`) or `tracing` directives (`info,ingest_core=debug`).
    pub log_level: String,
    /// `text` or `json`.
    pub log_format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([0, 0, 0, 0], 9090)),
            health_addr: SocketAddr::from(([0, 0, 0, 0], 8081)),
            log_level: "info".into(),
            log_format: LogFormat::Text,
        }
    }
}

impl TelemetryConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        tracing_subscriber::EnvFilter::try_new(&self.log_level)
            .map_err(|e| ConfigError::key("telemetry.log_level", format!("not a level or filter: {e}")))?;
        Ok(())
    }
}

/// Process lifecycle.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// On SIGTERM/SIGINT: time to stop sources and flush Kafka before exiting anyway.
    pub shutdown_timeout_secs: u64,
    /// This instance's identity among running copies of the producer. Polled sources use the
    /// Kafka `transactional.id` `<producer>.<group>.<instance_id>`: a second process with the
    /// same id fences the first (exactly-once), so two instances that should both run need
    /// different ids.
    pub instance_id: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self { shutdown_timeout_secs: 10, instance_id: "0".into() }
    }
}

impl RuntimeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_timeout_secs == 0 {
            return Err(ConfigError::key("runtime.shutdown_timeout_secs", "must be positive"));
        }
        let id = &self.instance_id;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(ConfigError::key("runtime.instance_id", "must be 1-64 characters of A-Z a-z 0-9 . _ -"));
        }
        Ok(())
    }

    /// The Kafka `transactional.id` of polled-source group `group` of `producer`.
    pub fn transactional_id(&self, producer: &str, group: &str) -> String {
        format!("{producer}.{group}.{}", self.instance_id)
    }
}
