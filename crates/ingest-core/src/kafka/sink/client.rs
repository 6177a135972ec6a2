//! The one Kafka producer constructor, for stream and transactional sinks alike: the config's
//! properties in order (later wins), the role's extras, and librdkafka's refusal reported by
//! the config key it came from, never by its value (it may be a password).

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::ThreadedProducer;

use super::SinkError;
use crate::config::{ConfigError, KafkaConfig};
use crate::kafka::SinkContext;

/// Creates the producer of `producer_name` with `cfg`'s properties, then `extra` (the role's:
/// transactional id, spool timeouts), reporting to `ctx`.
pub(super) fn create(
    cfg: &KafkaConfig,
    producer_name: &str,
    extra: &[(&str, String)],
    ctx: SinkContext,
) -> Result<ThreadedProducer<SinkContext>, SinkError> {
    let mut cc = ClientConfig::new();
    for (k, v) in client_properties(cfg, producer_name) {
        cc.set(k, v);
    }
    for (k, v) in extra {
        cc.set(*k, v);
    }
    cc.create_with_context(ctx).map_err(|e| match e {
        // Never print the value: it may be a password.
        KafkaError::ClientConfig(_, desc, key, _) => {
            SinkError::Config(ConfigError::key(config_key_of(&key, cfg), format!("refused by librdkafka: {desc}")))
        }
        other => SinkError::Create(other.to_string()),
    })
}

/// The librdkafka properties of a config, in the order they are applied (later wins).
fn client_properties(cfg: &KafkaConfig, client_id: &str) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = [
        // Same key -> partition mapping as the Java client, so Kafka Streams / Flink jobs that
        // join our topics with Java-produced ones see co-partitioned keys.
        ("partitioner", "murmur2_random".to_string()),
        ("client.id", if cfg.client_id.is_empty() { client_id.to_string() } else { cfg.client_id.clone() }),
        ("acks", cfg.acks.clone()),
        ("enable.idempotence", cfg.enable_idempotence.to_string()),
        ("compression.type", cfg.compression_type.clone()),
        ("linger.ms", cfg.linger_ms.to_string()),
        ("batch.size", cfg.batch_size_bytes.to_string()),
        ("message.timeout.ms", cfg.delivery_timeout_ms.to_string()),
        ("queue.buffering.max.messages", cfg.queue_max_messages.to_string()),
        ("queue.buffering.max.kbytes", cfg.queue_max_kbytes.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    p.extend(cfg.connection_properties());
    p.extend(cfg.properties.iter().map(|(k, v)| (k.clone(), v.clone())));
    p
}

/// The config key a librdkafka property came from, for error messages.
fn config_key_of(property: &str, cfg: &KafkaConfig) -> String {
    if cfg.properties.contains_key(property) {
        return format!("kafka.properties.{property}");
    }
    match property {
        "bootstrap.servers" => "kafka.brokers",
        "security.protocol" => "kafka.security.protocol",
        "sasl.mechanism" => "kafka.security.sasl_mechanism",
        "sasl.username" => "kafka.security.sasl_username",
        "sasl.password" => "kafka.security.sasl_password",
        "ssl.ca.location" => "kafka.security.ssl_ca_location",
        "ssl.certificate.location" => "kafka.security.ssl_certificate_location",
        "ssl.key.location" => "kafka.security.ssl_key_location",
        "ssl.key.password" => "kafka.security.ssl_key_password",
        "client.id" => "kafka.client_id",
        "acks" => "kafka.acks",
        "enable.idempotence" => "kafka.enable_idempotence",
        "compression.type" => "kafka.compression_type",
        "linger.ms" => "kafka.linger_ms",
        "batch.size" => "kafka.batch_size_bytes",
        "message.timeout.ms" => "kafka.delivery_timeout_ms",
        "queue.buffering.max.messages" => "kafka.queue_max_messages",
        "queue.buffering.max.kbytes" => "kafka.queue_max_kbytes",
        _ => "kafka.properties",
    }
    .to_string()
}
