use std::collections::HashMap;
use std::io::Write as _;

use serde::Deserialize;

use super::*;

/// A section shaped like the producers' own: a provider that needs a secret when enabled.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Demo {
    provider: DemoProvider,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct DemoProvider {
    enabled: bool,
    api_key: Secret,
    interval_secs: u64,
}

impl Default for DemoProvider {
    fn default() -> Self {
        Self { enabled: true, api_key: Secret::default(), interval_secs: 60 }
    }
}

impl Section for Demo {
    // The news section's name, so the seed variable NEWS_API_KEY is not involved but generic
    // overrides are: keys are news.provider.*.
    const NAME: &'static str = "news";
    fn validate(&self) -> Result<(), ConfigError> {
        if self.provider.enabled {
            require_secret("news.provider.api_key", &self.provider.api_key, "news.provider.enabled is true")?;
        }
        Ok(())
    }
}

fn file(yaml: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
    f.write_all(yaml.as_bytes()).unwrap();
    f
}

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const VALID: &str = "news:\n  provider:\n    api_key: from-file\n";

#[test]
fn the_shipped_config_file_parses_with_defaults_equal_to_the_code() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/config.yaml");
    // The file repeats the defaults; the Kafka and runtime sections must agree with the code.
    #[derive(Debug, Default, Deserialize)]
    struct Any {}
    impl Section for Any {
        const NAME: &'static str = "none";
        fn validate(&self) -> Result<(), ConfigError> {
            Ok(())
        }
    }
    let cfg = load_with_env::<Any>(&path, &HashMap::new()).unwrap();
    let d = KafkaConfig::default();
    assert_eq!(cfg.core.kafka.topics, d.topics);
    let k = |c: &KafkaConfig| {
        (
            c.linger_ms,
            c.batch_size_bytes,
            c.acks.clone(),
            c.compression_type.clone(),
            c.queue_max_kbytes,
            c.queue_max_messages,
            c.headers.clone(),
            c.spool.engage_after_ms,
        )
    };
    assert_eq!(k(&cfg.core.kafka), k(&d), "the shipped file says what the defaults are");
    // The seed profile overlay restores the first release's producer settings.
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs/kafka-seed.yaml");
    let env = HashMap::from([(OVERLAY_ENV.to_string(), seed.display().to_string())]);
    let seeded = load_with_env::<Any>(&path, &env).unwrap();
    assert_eq!(
        k(&seeded.core.kafka),
        (10, 16_384, "all".into(), "snappy".into(), 1_048_576, 100_000, "full".into(), 1000),
        "seed profile"
    );
    assert_eq!(cfg.core.runtime.shutdown_timeout_secs, RuntimeConfig::default().shutdown_timeout_secs);
    assert_eq!(cfg.core.runtime.instance_id, RuntimeConfig::default().instance_id);
    assert_eq!(cfg.core.telemetry.metrics_addr.port(), 9090);
    assert_eq!(cfg.core.telemetry.health_addr.port(), 8081);
}

#[test]
fn missing_secret_names_the_key_and_the_variable() {
    let f = file("news:\n  provider:\n    enabled: true\n");
    let err = load_with_env::<Demo>(f.path(), &HashMap::new()).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("news.provider.api_key"));
    let msg = err.to_string();
    assert!(msg.contains("missing secret") && msg.contains("FINSTREAM__NEWS__PROVIDER__API_KEY"), "{msg}");
    // Disabled provider: no secret needed.
    let f = file("news:\n  provider:\n    enabled: false\n");
    assert!(load_with_env::<Demo>(f.path(), &HashMap::new()).is_ok());
}

/// A section with two providers, each needing its own key (news and social are shaped so).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Pair {
    one: DemoProvider,
    two: DemoProvider,
}

impl Section for Pair {
    // A section name the file accepts; keys are social.one.*, social.two.*.
    const NAME: &'static str = "social";
    fn validate(&self) -> Result<(), ConfigError> {
        Ok(())
    }
    fn providers(&self) -> Vec<ProviderKeys> {
        vec![
            ProviderKeys::new("one", self.one.enabled, &[("social.one.api_key", &self.one.api_key)]),
            ProviderKeys::new("two", self.two.enabled, &[("social.two.api_key", &self.two.api_key)]),
        ]
    }
}

#[test]
fn a_provider_without_its_key_is_disabled_and_none_left_is_an_error() {
    let f = file("social:\n  one:\n    api_key: k1\n");
    let cfg = load_with_env::<Pair>(f.path(), &HashMap::new()).unwrap();
    assert!(cfg.section.runs("one") && !cfg.section.runs("two"));
    let two = cfg.section.providers().into_iter().find(|p| p.name == "two").unwrap();
    assert_eq!(two.disabled_for().as_deref(), Some("FINSTREAM__SOCIAL__TWO__API_KEY"));
    // The key from the environment counts as set.
    let env = HashMap::from([("FINSTREAM__SOCIAL__TWO__API_KEY".to_string(), "k2".to_string())]);
    let cfg = load_with_env::<Pair>(f.path(), &env).unwrap();
    assert!(cfg.section.runs("one") && cfg.section.runs("two"));
    // A provider disabled in the config is not "disabled for its key".
    let f = file("social:\n  one:\n    api_key: k1\n  two:\n    enabled: false\n");
    let cfg = load_with_env::<Pair>(f.path(), &HashMap::new()).unwrap();
    assert_eq!(cfg.section.providers()[1].disabled_for(), None);
    assert!(!cfg.section.runs("two"));
    // None left with its key: the first missing one is named, with its variable.
    let f = file("social:\n  one:\n    enabled: true\n");
    let err = load_with_env::<Pair>(f.path(), &HashMap::new()).unwrap_err();
    assert_eq!(err.key.as_deref(), Some("social.one.api_key"));
    assert!(err.to_string().contains("FINSTREAM__SOCIAL__ONE__API_KEY"), "{err}");
}

#[test]
fn unknown_keys_are_refused_at_every_level() {
    for (yaml, key) in [
        ("kafka:\n  lingerms: 5\n", "kafka.lingerms"),
        ("telemetry:\n  metric_addr: 0.0.0.0:1\n", "telemetry.metric_addr"),
        ("kafka:\n  topics:\n    market_ticks: { name: x, partitions: 1, rf: 3 }\n", "kafka.topics.market_ticks.rf"),
        ("nonsense: 1\n", "nonsense"),
        ("news:\n  provider:\n    api_key: k\n    apikey: k\n", "news.provider.apikey"),
    ] {
        let f = file(yaml);
        let err = load_with_env::<Demo>(f.path(), &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k")])).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{yaml}: {err}");
        assert!(err.to_string().contains("unknown key"), "{err}");
    }
}

#[test]
fn bad_values_name_the_key() {
    for (yaml, key) in [
        ("kafka:\n  linger_ms: soon\n", "kafka.linger_ms"),
        ("kafka:\n  acks: maybe\n", "kafka.acks"),
        ("kafka:\n  brokers: ''\n", "kafka.brokers"),
        ("kafka:\n  compression_type: brotli\n", "kafka.compression_type"),
        (
            "kafka:\n  topics:\n    news_articles: { name: 'bad name', partitions: 8 }\n",
            "kafka.topics.news_articles.name",
        ),
        ("kafka:\n  topics:\n    sec_filings: { name: sec, partitions: 0 }\n", "kafka.topics.sec_filings.partitions"),
        ("telemetry:\n  log_level: 'info,[bad'\n", "telemetry.log_level"),
        ("telemetry:\n  log_format: xml\n", "telemetry.log_format"),
        ("runtime:\n  shutdown_timeout_secs: 0\n", "runtime.shutdown_timeout_secs"),
        ("runtime:\n  instance_id: 'a b'\n", "runtime.instance_id"),
    ] {
        let f = file(&format!("{VALID}{yaml}"));
        let err = load_with_env::<Demo>(f.path(), &HashMap::new()).unwrap_err();
        assert_eq!(err.key.as_deref(), Some(key), "{yaml}: {err}");
    }
}

#[test]
fn environment_overrides_file_and_seed_names_work() {
    let f = file(&format!("{VALID}kafka:\n  brokers: file:9092\n  linger_ms: 10\ntelemetry:\n  log_level: info\n"));
    let cfg = load_with_env::<Demo>(
        f.path(),
        &env(&[
            ("KAFKA_BROKERS", "a:1,b:2"),
            ("LOG_LEVEL", "debug"),
            ("SCHEMA_REGISTRY_URL", "http://registry:8081"),
            ("FINSTREAM__KAFKA__LINGER_MS", "5"),
            ("FINSTREAM__NEWS__PROVIDER__API_KEY", "from-env"),
            ("FINSTREAM__KAFKA__CREATE_TOPICS", "true"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.core.kafka.brokers, "a:1,b:2");
    assert_eq!(cfg.core.kafka.linger_ms, 5);
    assert!(cfg.core.kafka.create_topics);
    assert_eq!(cfg.core.kafka.schema_registry_url, "http://registry:8081");
    assert_eq!(cfg.core.telemetry.log_level, "debug");
    assert_eq!(cfg.section.provider.api_key.expose(), "from-env");
}

#[test]
fn declared_list_keys_take_comma_separated_values_and_others_stay_text() {
    #[derive(Debug, Default, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Lists {
        symbols: Vec<String>,
    }
    impl Section for Lists {
        const NAME: &'static str = "market";
        const LIST_KEYS: &'static [&'static str] = &["market.symbols"];
        fn validate(&self) -> Result<(), ConfigError> {
            Ok(())
        }
    }
    let f = file("market:\n  symbols: [X]\n");
    let cfg = load_with_env::<Lists>(
        f.path(),
        &env(&[("FINSTREAM__MARKET__SYMBOLS", "AAPL,MSFT"), ("FINSTREAM__KAFKA__BROKERS", "a:1,b:2")]),
    )
    .unwrap();
    assert_eq!(cfg.section.symbols, ["AAPL", "MSFT"]);
    assert_eq!(cfg.core.kafka.brokers, "a:1,b:2");
    // One value that looks like a number is still a list of one string (a CIK, a ticker).
    let cfg = load_with_env::<Lists>(f.path(), &env(&[("FINSTREAM__MARKET__SYMBOLS", "320193")])).unwrap();
    assert_eq!(cfg.section.symbols, ["320193"]);
    let cfg = load_with_env::<Lists>(f.path(), &env(&[("FINSTREAM__MARKET__SYMBOLS", " A , B ,")])).unwrap();
    assert_eq!(cfg.section.symbols, ["A", "B"]);
}

#[test]
fn empty_variables_count_as_unset() {
    let f = file(&format!("{VALID}kafka:\n  brokers: file:9092\n"));
    let cfg =
        load_with_env::<Demo>(f.path(), &env(&[("KAFKA_BROKERS", ""), ("FINSTREAM__NEWS__PROVIDER__API_KEY", "")]))
            .unwrap();
    assert_eq!(cfg.core.kafka.brokers, "file:9092");
    assert_eq!(cfg.section.provider.api_key.expose(), "from-file");
}

#[test]
fn every_seed_variable_maps_to_a_key() {
    let seed = [
        "KAFKA_BROKERS",
        "SCHEMA_REGISTRY_URL",
        "MARKET_WS_URL",
        "MARKET_API_KEY",
        "NEWS_API_KEY",
        "ALPHAVANTAGE_API_KEY",
        "TWITTER_API_KEY",
        "TWITTER_API_SECRET",
        "TWITTER_BEARER_TOKEN",
        "REDDIT_CLIENT_ID",
        "REDDIT_CLIENT_SECRET",
        "LOG_LEVEL",
    ];
    for var in seed {
        assert!(SEED_ENV.iter().any(|(v, _)| *v == var), "{var} is not mapped");
    }
    assert_eq!(env_var_for("market.api_key"), "MARKET_API_KEY");
    assert_eq!(env_var_for("kafka.linger_ms"), "FINSTREAM__KAFKA__LINGER_MS");
}

#[test]
fn secrets_and_credential_properties_are_redacted_in_debug() {
    let f = file(
        "news:\n  provider:\n    api_key: sk-very-secret\nkafka:\n  properties:\n    sasl.password: hunter2\n    sasl.mechanism: SCRAM-SHA-512\n",
    );
    let cfg = load_with_env::<Demo>(f.path(), &HashMap::new()).unwrap();
    let dump = format!("{cfg:?}");
    assert!(!dump.contains("sk-very-secret") && !dump.contains("hunter2"), "{dump}");
    assert!(dump.contains("SCRAM-SHA-512"), "non-secret properties stay visible: {dump}");
}

#[test]
fn missing_file_is_a_clear_error() {
    let err = load_with_env::<Demo>(std::path::Path::new("/nonexistent/config.yaml"), &HashMap::new()).unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[test]
fn kafka_security_from_the_seed_style_variables_checked_and_redacted() {
    let f = file("news:\n  provider:\n    enabled: false\n");
    let ca = file("-----BEGIN CERTIFICATE-----\n");
    let ca_path = ca.path().display().to_string();
    let cfg = load_with_env::<Demo>(
        f.path(),
        &env(&[
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
            ("KAFKA_SASL_USERNAME", "ingest"),
            ("KAFKA_SASL_PASSWORD", "SENTINEL-pw-9c2d"),
            ("KAFKA_SSL_CA_LOCATION", &ca_path),
        ]),
    )
    .unwrap();
    let s = &cfg.core.kafka.security;
    assert_eq!(
        (s.protocol.as_str(), s.sasl_mechanism.as_str(), s.sasl_username.as_str()),
        ("sasl_ssl", "SCRAM-SHA-512", "ingest")
    );
    let props = cfg.core.kafka.connection_properties();
    for (k, v) in [
        ("security.protocol", "sasl_ssl"),
        ("sasl.mechanism", "SCRAM-SHA-512"),
        ("sasl.username", "ingest"),
        ("sasl.password", "SENTINEL-pw-9c2d"),
        ("ssl.ca.location", ca_path.as_str()),
        ("ssl.endpoint.identification.algorithm", "https"),
    ] {
        assert!(props.iter().any(|(pk, pv)| pk == k && pv == v), "{k}={v} missing");
    }
    assert!(!format!("{cfg:?}").contains("SENTINEL-pw-9c2d"));

    let bad = |pairs: &[(&str, &str)]| load_with_env::<Demo>(f.path(), &env(pairs)).unwrap_err();
    let e = bad(&[("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"), ("KAFKA_SASL_USERNAME", "ingest")]);
    assert_eq!(e.key.as_deref(), Some("kafka.security.sasl_password"), "{e}");
    let e = bad(&[("KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"), ("KAFKA_SASL_PASSWORD", "SENTINEL-pw-9c2d")]);
    assert_eq!(e.key.as_deref(), Some("kafka.security.sasl_username"), "{e}");
    assert!(!e.to_string().contains("SENTINEL"), "{e}");
    let e = bad(&[("KAFKA_SECURITY_PROTOCOL", "tls")]);
    assert_eq!(e.key.as_deref(), Some("kafka.security.protocol"));
    let e = bad(&[("KAFKA_SECURITY_PROTOCOL", "ssl"), ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem")]);
    assert_eq!(e.key.as_deref(), Some("kafka.security.ssl_ca_location"));
    let e = bad(&[
        ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl"),
        ("KAFKA_SASL_USERNAME", "u"),
        ("KAFKA_SASL_PASSWORD", "p"),
        ("KAFKA_SASL_MECHANISM", "GSSAPI"),
    ]);
    assert_eq!(e.key.as_deref(), Some("kafka.security.sasl_mechanism"));
    // Plaintext (the default) sends no credentials at all.
    let plain = load_with_env::<Demo>(f.path(), &env(&[("KAFKA_SASL_PASSWORD", "SENTINEL-pw-9c2d")])).unwrap();
    assert!(!plain.core.kafka.connection_properties().iter().any(|(k, _)| k.starts_with("sasl.")));
}

#[test]
fn a_typo_in_an_environment_variable_is_reported_as_the_variable_not_the_file() {
    let f = file("");
    let err = load_with_env::<Demo>(
        f.path(),
        &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k"), ("FINSTREAM__KAFKA__LINGER_MZ", "5")]),
    )
    .unwrap_err();
    assert_eq!(err.key.as_deref(), Some("kafka.linger_mz"), "{err}");
    assert_eq!(err.env_var.as_deref(), Some("FINSTREAM__KAFKA__LINGER_MZ"), "{err}");
    assert!(err.to_string().starts_with("environment variable `FINSTREAM__KAFKA__LINGER_MZ`"), "{err}");
    // A bad value from the environment names the variable too; one from the file does not.
    let err = load_with_env::<Demo>(
        f.path(),
        &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k"), ("FINSTREAM__KAFKA__LINGER_MS", "soon")]),
    )
    .unwrap_err();
    assert_eq!(err.env_var.as_deref(), Some("FINSTREAM__KAFKA__LINGER_MS"), "{err}");
    let f = file("kafka:\n  linger_mz: 5\n");
    let err = load_with_env::<Demo>(f.path(), &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k")])).unwrap_err();
    assert_eq!(err.env_var, None, "the file's own typo: {err}");
}

#[test]
fn an_overlay_file_is_merged_over_the_config_file_and_under_the_environment() {
    let base = file("kafka:\n  linger_ms: 5\n  client_id: base\n");
    let overlay = file("kafka:\n  linger_ms: 7\n");
    let path = overlay.path().display().to_string();
    let cfg =
        load_with_env::<Demo>(base.path(), &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k"), (OVERLAY_ENV, &path)]))
            .unwrap();
    assert_eq!((cfg.core.kafka.linger_ms, cfg.core.kafka.client_id.as_str()), (7, "base"));
    let cfg = load_with_env::<Demo>(
        base.path(),
        &env(&[
            ("FINSTREAM__NEWS__PROVIDER__API_KEY", "k"),
            (OVERLAY_ENV, &path),
            ("FINSTREAM__KAFKA__LINGER_MS", "9"),
        ]),
    )
    .unwrap();
    assert_eq!(cfg.core.kafka.linger_ms, 9, "the environment wins");
    let err = load_with_env::<Demo>(
        base.path(),
        &env(&[("FINSTREAM__NEWS__PROVIDER__API_KEY", "k"), (OVERLAY_ENV, "/nonexistent/demo.yaml")]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("FINSTREAM_CONFIG_OVERLAY"), "{err}");
}
