//! Topic administration: create the topics of docs/contracts.md when `kafka.create_topics` is on, and
//! create unique topics for tests.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaConfig;

/// A topic to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicToCreate {
    /// Name.
    pub name: String,
    /// Partitions.
    pub partitions: i32,
    /// Topic configs (`cleanup.policy=compact`, …).
    pub configs: Vec<(String, String)>,
}

impl TopicToCreate {
    /// A topic with default configs.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self { name: name.into(), partitions, configs: Vec::new() }
    }
}

/// Every topic of the config: the data topics, their `.dlq` topics (1 partition), events and
/// the compacted state topic.
pub fn design_topics(cfg: &KafkaConfig) -> Vec<TopicToCreate> {
    let t = &cfg.topics;
    let mut out = Vec::new();
    for spec in [&t.market_ticks, &t.news_articles, &t.social_posts, &t.sec_filings, &t.altdata_records] {
        out.push(TopicToCreate::new(&spec.name, spec.partitions));
        out.push(TopicToCreate::new(spec.dlq_name(), 1));
    }
    out.push(TopicToCreate::new(&t.events.name, t.events.partitions));
    let mut state = TopicToCreate::new(&t.state.name, t.state.partitions);
    state.configs.push(("cleanup.policy".into(), "compact".into()));
    out.push(state);
    out
}

/// Creates the topics that do not exist yet (existing ones are left as they are). Returns the
/// names it created. `connection` is [`KafkaConfig::connection_properties`] (or just
/// `bootstrap.servers`).
pub async fn ensure_topics(
    connection: &[(String, String)],
    replication_factor: i32,
    topics: &[TopicToCreate],
) -> Result<Vec<String>, String> {
    let mut cc = ClientConfig::new();
    for (k, v) in connection {
        cc.set(k, v);
    }
    let admin: AdminClient<DefaultClientContext> =
        cc.create().map_err(|e| format!("cannot create the Kafka admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            t.configs
                .iter()
                .fold(NewTopic::new(&t.name, t.partitions, TopicReplication::Fixed(replication_factor)), |n, (k, v)| {
                    n.set(k, v)
                })
        })
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(30)))
        .request_timeout(Some(Duration::from_secs(30)));
    let results = admin.create_topics(new.iter(), &opts).await.map_err(|e| format!("create topics failed: {e}"))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(format!("cannot create topic {name}: {code}")),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn design_topics_match_the_kafka_script() {
        // scripts/kafka/topics.txt is what `make kafka-up` creates; the defaults must agree.
        let file = include_str!("../../../../scripts/kafka/topics.txt");
        let mut from_script: Vec<(String, i32)> = file
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f[0].to_string(), f[1].parse().unwrap())
            })
            .collect();
        let mut from_config: Vec<(String, i32)> =
            design_topics(&KafkaConfig::default()).into_iter().map(|t| (t.name, t.partitions)).collect();
        from_script.sort();
        from_config.sort();
        assert_eq!(from_script, from_config);
    }
}
