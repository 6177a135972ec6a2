//! The sections every producer shares: `kafka`, `telemetry`, `runtime`, `tls`.
//!
//! Defaults are defined once, here, in the `Default` impls; `configs/config.yaml` repeats them
//! with documentation.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;

use serde::Deserialize;

use super::ConfigError;
use super::topics::Topics;

/// `kafka`, `telemetry` and `runtime`.
#[derive(Debug, Clone, Default)]
pub struct CoreConfig {
    /// The Kafka sink.
    pub kafka: KafkaConfig,
    /// Metrics, health and logs.
    pub telemetry: TelemetryConfig,
    /// Process lifecycle.
    pub runtime: RuntimeConfig,
    /// Trust roots of every HTTPS and WSS client.
    pub tls: crate::tls::TlsConfig,
}

impl CoreConfig {
    /// Checks ranges and names serde cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.kafka.validate()?;
        self.telemetry.validate()?;
        self.runtime.validate()?;
        if !self.tls.extra_ca_file.is_empty() {
            crate::tls::build(&self.tls).map_err(|e| ConfigError::key("tls.extra_ca_file", e.reason))?;
        }
        Ok(())
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
    /// Kafka headers on each record: `compact` (`schema`, and `conn_epoch` on records of
    /// WebSocket feeds) or `full` (also `producer`, `provider`, `content-type`, `event_time`,
    /// `received_at`: each constant per topic or already in the record's JSON). Every header
    /// costs the producer and the broker per record (docs/benchmarks.md).
    pub headers: String,
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
    /// Seconds after start within which some broker must have answered, or the producer exits
    /// 1 saying so (a wrong `KAFKA_BROKERS` is then a crash with a reason, not a process that
    /// logs warnings forever). 0 waits forever. Once a broker answered, later outages never
    /// stop the producer: records are held (or spooled) and retried.
    pub startup_timeout_secs: u64,
    /// Topic names and partition counts.
    pub topics: Topics,
    /// TLS and SASL towards the brokers, for every client (producer, state restore, admin).
    pub security: KafkaSecurity,
    /// The outage spool of streaming records (WebSocket feeds, lifecycle events).
    pub spool: SpoolConfig,
}

/// `kafka.spool`: where streamed records go once librdkafka's memory queue
/// (`queue_max_messages`/`queue_max_kbytes`) is full, so a Kafka outage costs disk, not data.
/// Polled sources do not need it: their transactions are retried from the last committed cursor.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct SpoolConfig {
    /// Off: a full queue makes the source wait (a WebSocket feed then stops reading, and the
    /// provider may drop us: a gap).
    pub enabled: bool,
    /// Directory; each producer uses `<dir>/<producer name>` (`KAFKA_SPOOL_DIR`). Keep it on a
    /// persistent volume: a restarted process sends what the previous one left.
    pub dir: String,
    /// Bound on the spool's size on disk.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started; drop-oldest frees one
    /// segment at a time.
    pub segment_bytes: u64,
    /// `always` (fsync every record), `interval` (every `fsync_interval_ms`) or `never` (left to
    /// the OS). A process crash loses nothing in any mode; a machine crash may lose the last
    /// interval.
    pub fsync: String,
    /// Interval of `fsync: interval`.
    pub fsync_interval_ms: u64,
    /// When full: `block` (the source waits, nothing dropped) or `drop_oldest` (the oldest
    /// segment is deleted and its records counted as failed, reason `spool_overflow`).
    pub overflow: String,
    /// How long librdkafka's queue may stay full before records go to the spool; until then the
    /// source waits. A broker that is slow but taking records frees room within milliseconds,
    /// so it slows the feed down instead of sending every record through the disk; a broker
    /// that takes nothing for this long is treated as away.
    pub engage_after_ms: u64,
}

impl Default for SpoolConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            dir: "spool".into(),
            max_bytes: 1 << 30,
            segment_bytes: 64 << 20,
            fsync: "interval".into(),
            fsync_interval_ms: 1000,
            overflow: "block".into(),
            engage_after_ms: 1000,
        }
    }
}

impl SpoolConfig {
    /// The settings of the spool of producer `producer`.
    pub fn settings(&self, producer: &str) -> crate::kafka::SpoolSettings {
        use crate::kafka::{Fsync, Overflow};
        crate::kafka::SpoolSettings {
            dir: std::path::Path::new(&self.dir).join(producer),
            max_bytes: self.max_bytes,
            segment_bytes: self.segment_bytes,
            fsync: match self.fsync.as_str() {
                "always" => Fsync::Always,
                "never" => Fsync::Never,
                _ => Fsync::Interval(std::time::Duration::from_millis(self.fsync_interval_ms)),
            },
            overflow: if self.overflow == "drop_oldest" { Overflow::DropOldest } else { Overflow::Block },
            engage_after: std::time::Duration::from_millis(self.engage_after_ms),
        }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if !self.enabled {
            return Ok(());
        }
        if self.dir.trim().is_empty() {
            return Err(ConfigError::key(
                "kafka.spool.dir",
                "must name a directory (or set kafka.spool.enabled: false)",
            ));
        }
        if self.segment_bytes < 1 << 16 {
            return Err(ConfigError::key("kafka.spool.segment_bytes", "must be at least 65536"));
        }
        if self.max_bytes < 2 * self.segment_bytes {
            return Err(ConfigError::key("kafka.spool.max_bytes", "must be at least twice kafka.spool.segment_bytes"));
        }
        if !["always", "interval", "never"].contains(&self.fsync.as_str()) {
            return Err(ConfigError::key("kafka.spool.fsync", "must be always, interval or never"));
        }
        if self.fsync == "interval" && self.fsync_interval_ms == 0 {
            return Err(ConfigError::key("kafka.spool.fsync_interval_ms", "must be positive"));
        }
        if !["block", "drop_oldest"].contains(&self.overflow.as_str()) {
            return Err(ConfigError::key("kafka.spool.overflow", "must be block or drop_oldest"));
        }
        if self.engage_after_ms > 600_000 {
            return Err(ConfigError::key("kafka.spool.engage_after_ms", "must be at most 600000"));
        }
        Ok(())
    }
}

/// `kafka.security`: how clients authenticate to the brokers and verify them.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSecurity {
    /// `security.protocol`: plaintext, ssl, sasl_plaintext or sasl_ssl
    /// (`KAFKA_SECURITY_PROTOCOL`).
    pub protocol: String,
    /// `sasl.mechanism`: SCRAM-SHA-512 (default), SCRAM-SHA-256 or PLAIN (`KAFKA_SASL_MECHANISM`).
    pub sasl_mechanism: String,
    /// SASL user (`KAFKA_SASL_USERNAME`).
    pub sasl_username: String,
    /// SASL password (`KAFKA_SASL_PASSWORD`). A secret: never logged.
    pub sasl_password: super::Secret,
    /// PEM file of the CA(s) that signed the brokers' certificates (`KAFKA_SSL_CA_LOCATION`);
    /// empty: the system's CAs.
    pub ssl_ca_location: String,
    /// Client certificate (PEM) for mutual TLS (`KAFKA_SSL_CERTIFICATE_LOCATION`).
    pub ssl_certificate_location: String,
    /// Its private key (PEM) (`KAFKA_SSL_KEY_LOCATION`).
    pub ssl_key_location: String,
    /// The key's password, if it is encrypted (`KAFKA_SSL_KEY_PASSWORD`). A secret.
    pub ssl_key_password: super::Secret,
    /// Check that the broker's certificate names the host connected to (`https`
    /// endpoint identification). Turn off only for test certificates without the right names.
    pub ssl_verify_hostname: bool,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: "plaintext".into(),
            sasl_mechanism: "SCRAM-SHA-512".into(),
            sasl_username: String::new(),
            sasl_password: super::Secret::default(),
            ssl_ca_location: String::new(),
            ssl_certificate_location: String::new(),
            ssl_key_location: String::new(),
            ssl_key_password: super::Secret::default(),
            ssl_verify_hostname: true,
        }
    }
}

impl fmt::Debug for KafkaSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaSecurity")
            .field("protocol", &self.protocol)
            .field("sasl_mechanism", &self.sasl_mechanism)
            .field("sasl_username", &self.sasl_username)
            .field("sasl_password", &self.sasl_password)
            .field("ssl_ca_location", &self.ssl_ca_location)
            .field("ssl_certificate_location", &self.ssl_certificate_location)
            .field("ssl_key_location", &self.ssl_key_location)
            .field("ssl_key_password", &self.ssl_key_password)
            .field("ssl_verify_hostname", &self.ssl_verify_hostname)
            .finish()
    }
}

impl KafkaSecurity {
    fn uses_sasl(&self) -> bool {
        self.protocol.starts_with("sasl_")
    }

    fn uses_tls(&self) -> bool {
        self.protocol == "ssl" || self.protocol == "sasl_ssl"
    }

    /// The librdkafka properties of these settings (credentials included: for client configs
    /// only, never for logs).
    pub fn client_properties(&self) -> Vec<(&'static str, String)> {
        let mut p = vec![("security.protocol", self.protocol.clone())];
        if self.uses_sasl() {
            p.push(("sasl.mechanism", self.sasl_mechanism.clone()));
            p.push(("sasl.username", self.sasl_username.clone()));
            p.push(("sasl.password", self.sasl_password.expose().to_string()));
        }
        if self.uses_tls() {
            for (k, v) in [
                ("ssl.ca.location", &self.ssl_ca_location),
                ("ssl.certificate.location", &self.ssl_certificate_location),
                ("ssl.key.location", &self.ssl_key_location),
            ] {
                if !v.is_empty() {
                    p.push((k, v.clone()));
                }
            }
            if !self.ssl_key_password.is_empty() {
                p.push(("ssl.key.password", self.ssl_key_password.expose().to_string()));
            }
            let id = if self.ssl_verify_hostname { "https" } else { "none" };
            p.push(("ssl.endpoint.identification.algorithm", id.to_string()));
        }
        p
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let key = |k: &str| format!("kafka.security.{k}");
        if !["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"].contains(&self.protocol.as_str()) {
            return Err(ConfigError::key(key("protocol"), "must be plaintext, ssl, sasl_plaintext or sasl_ssl"));
        }
        if self.uses_sasl() {
            if !["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"].contains(&self.sasl_mechanism.as_str()) {
                return Err(ConfigError::key(key("sasl_mechanism"), "must be SCRAM-SHA-512, SCRAM-SHA-256 or PLAIN"));
            }
            if self.sasl_username.trim().is_empty() {
                return Err(ConfigError::key(
                    key("sasl_username"),
                    "required with a SASL protocol (set KAFKA_SASL_USERNAME)",
                ));
            }
            if self.sasl_password.is_empty() {
                return Err(ConfigError::key(
                    key("sasl_password"),
                    "required with a SASL protocol (set KAFKA_SASL_PASSWORD)",
                ));
            }
        }
        if self.uses_tls() {
            for (k, v) in [
                ("ssl_ca_location", &self.ssl_ca_location),
                ("ssl_certificate_location", &self.ssl_certificate_location),
                ("ssl_key_location", &self.ssl_key_location),
            ] {
                if !v.is_empty() && std::fs::metadata(v).map(|m| !m.is_file()).unwrap_or(true) {
                    return Err(ConfigError::key(key(k), format!("`{v}` is not a readable file")));
                }
            }
            if self.ssl_certificate_location.is_empty() != self.ssl_key_location.is_empty() {
                return Err(ConfigError::key(
                    key("ssl_key_location"),
                    "give both the client certificate and its key, or neither",
                ));
            }
        }
        Ok(())
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            client_id: String::new(),
            schema_registry_url: String::new(),
            acks: "all".into(),
            enable_idempotence: true,
            // Chosen by measurement (docs/benchmarks.md); the first release's values are the seed
            // profile, configs/kafka-seed.yaml.
            compression_type: "lz4".into(),
            linger_ms: 10,
            batch_size_bytes: 1 << 20,
            delivery_timeout_ms: 300_000,
            queue_max_messages: 32_768,
            queue_max_kbytes: 32 << 10,
            headers: "compact".into(),
            properties: BTreeMap::new(),
            create_topics: false,
            replication_factor: 1,
            healthcheck_interval_secs: 5,
            startup_timeout_secs: 60,
            topics: Topics::default(),
            security: KafkaSecurity::default(),
            spool: SpoolConfig::default(),
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
            .field("headers", &self.headers)
            .field("properties", &props)
            .field("create_topics", &self.create_topics)
            .field("topics", &self.topics)
            .field("security", &self.security)
            .field("spool", &self.spool)
            .finish_non_exhaustive()
    }
}

/// True for librdkafka property names that carry credentials.
pub(crate) fn is_credential_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "keystore", "sasl.oauthbearer.config"].iter().any(|s| k.contains(s))
}

impl KafkaConfig {
    /// The properties every Kafka client of ours needs to reach the brokers: bootstrap servers,
    /// `kafka.security`, and the `security.*`/`ssl.*`/`sasl.*` keys of `kafka.properties` (which
    /// win). Producer tuning is not included.
    pub fn connection_properties(&self) -> Vec<(String, String)> {
        let mut p = vec![("bootstrap.servers".to_string(), self.brokers.clone())];
        p.extend(self.security.client_properties().into_iter().map(|(k, v)| (k.to_string(), v)));
        p.extend(
            self.properties
                .iter()
                .filter(|(k, _)| ["security.", "ssl.", "sasl."].iter().any(|pre| k.starts_with(pre)))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        p
    }

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
        if !["compact", "full"].contains(&self.headers.as_str()) {
            return Err(ConfigError::key("kafka.headers", "must be compact or full"));
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
        self.security.validate()?;
        self.spool.validate()?;
        self.topics.validate()
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
    /// Seconds a polled source that its provider refused (401/403 for that source only: a
    /// private subreddit, a site's firewall) waits before it tries again. The other sources
    /// keep running meanwhile.
    pub refused_source_retry_secs: u64,
    /// Seconds a polled source whose configured name the provider does not know (404: an
    /// unknown subreddit, symbol or CIK) waits before it tries again.
    pub missing_source_retry_secs: u64,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            shutdown_timeout_secs: 10,
            instance_id: "0".into(),
            refused_source_retry_secs: 300,
            missing_source_retry_secs: 900,
        }
    }
}

impl RuntimeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.shutdown_timeout_secs == 0 {
            return Err(ConfigError::key("runtime.shutdown_timeout_secs", "must be positive"));
        }
        if self.refused_source_retry_secs == 0 {
            return Err(ConfigError::key("runtime.refused_source_retry_secs", "must be positive"));
        }
        if self.missing_source_retry_secs == 0 {
            return Err(ConfigError::key("runtime.missing_source_retry_secs", "must be positive"));
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

    /// The settings of polled-source group `group` of `producer`: its transactional id and
    /// these retry waits, the other settings at their defaults.
    pub fn group_settings(&self, producer: &str, group: &str) -> crate::poll::GroupSettings {
        crate::poll::GroupSettings {
            refused_retry: std::time::Duration::from_secs(self.refused_source_retry_secs),
            missing_retry: std::time::Duration::from_secs(self.missing_source_retry_secs),
            ..crate::poll::GroupSettings::new(self.transactional_id(producer, group))
        }
    }
}
