//! The topics script of docker-compose's topic-init and the Kubernetes Job
//! (`infrastructure/kafka/create-topics.sh`) against the real TLS + SASL/SCRAM-SHA-512 broker of
//! `scripts/kafka.sh secure-up` (`make test` starts it), configured only by the variables the
//! producers read (`KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`, `KAFKA_SSL_CA_LOCATION`), with
//! Kafka's own kafka-topics (the Maven Central jars of `make kafka-up`).

use std::process::Command;
use std::time::Duration;

use deploy_check::repo;
use ingest_core::testkit;
use rdkafka::ClientConfig;
use rdkafka::admin::AdminClient;
use rdkafka::client::DefaultClientContext;

struct Secure(testkit::SecureBroker);

impl Secure {
    fn get() -> Self {
        Self(testkit::SecureBroker::get())
    }

    fn read(&self, f: &str) -> String {
        self.0.read(f)
    }

    /// Runs the script with the topics file `topics` and `env`; (success, stdout + stderr).
    fn create_topics(&self, topics: &str, env: &[(&str, String)]) -> (bool, String) {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("topics.txt");
        std::fs::write(&file, topics).unwrap();
        let jars = repo().join(".local/kafka/lib");
        assert!(jars.is_dir(), "no Kafka jars: run `scripts/kafka.sh deps` (make deps does)");
        let out = Command::new("bash")
            .arg(repo().join("infrastructure/kafka/create-topics.sh"))
            .env("BOOTSTRAP_SERVERS", format!("localhost:{}", self.0.sasl_port()))
            .env("TOPICS_FILE", &file)
            .env("REPLICATION_FACTOR", "1")
            .env("MIN_INSYNC_REPLICAS", "1")
            .env("TMPDIR", tmp.path())
            // kafka-topics.sh is this command in the Kafka distribution and the image.
            .env(
                "KAFKA_TOPICS_CMD",
                format!("java -Xmx128m -cp {}/* org.apache.kafka.tools.TopicCommand", jars.display()),
            )
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let left: Vec<_> =
            std::fs::read_dir(tmp.path()).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
        assert_eq!(
            left.len(),
            1,
            "the script leaves no temporary file (its client config holds the password): {left:?}"
        );
        (out.status.success(), text)
    }

    fn sasl_env(&self, password: &str) -> Vec<(&'static str, String)> {
        vec![
            ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".into()),
            ("KAFKA_SASL_MECHANISM", "SCRAM-SHA-512".into()),
            ("KAFKA_SASL_USERNAME", self.read("sasl.user")),
            ("KAFKA_SASL_PASSWORD", password.into()),
            ("KAFKA_SSL_CA_LOCATION", self.0.ca("ca.pem").display().to_string()),
        ]
    }

    /// The partition count of `topic`, read over the plaintext admin listener.
    fn partitions(&self, topic: &str) -> Option<usize> {
        let admin: AdminClient<DefaultClientContext> =
            ClientConfig::new().set("bootstrap.servers", format!("127.0.0.1:{}", self.0.admin_port)).create().unwrap();
        let md = admin.inner().fetch_metadata(Some(topic), Duration::from_secs(10)).unwrap();
        md.topics().first().filter(|t| t.error().is_none()).map(|t| t.partitions().len())
    }
}

#[test]
fn topics_script_creates_topics_over_sasl_ssl_with_the_producers_settings() {
    let s = Secure::get();
    let password = s.read("sasl.password");
    let (a, b) = (testkit::unique_topic("sasl-topics"), testkit::unique_topic("sasl-topics-compact"));
    let topics = format!("# name partitions configs\n{a} 3 -\n{b} 1 cleanup.policy=compact\n");
    let (ok, out) = s.create_topics(&topics, &s.sasl_env(&password));
    assert!(ok, "create-topics over SASL_SSL failed:\n{out}");
    assert!(out.contains(&format!("created {a} (3 partitions")), "{out}");
    assert!(out.contains("cleanup.policy=compact"), "{out}");
    assert!(!out.contains(&password), "the SASL password is never printed:\n{out}");
    assert_eq!(s.partitions(&a), Some(3));
    assert_eq!(s.partitions(&b), Some(1));

    // Run again, as the Job does on every apply: the topics are checked, not changed.
    let (ok, out) = s.create_topics(&topics, &s.sasl_env(&password));
    assert!(ok && out.contains("0 created, 2 already present"), "{out}");
}

#[test]
fn topics_script_names_what_is_wrong_with_the_kafka_settings() {
    let s = Secure::get();
    let topic = testkit::unique_topic("sasl-topics-refused");
    let topics = format!("{topic} 1 -\n");

    // A wrong password (with the characters a JAAS string must escape): authentication fails,
    // the message says so, the password is not printed, and no topic is made.
    let wrong = r#"wr"ong\pass"#;
    let mut env = s.sasl_env(wrong);
    env.push(("WAIT_SECS", "2".into()));
    let (ok, out) = s.create_topics(&topics, &env);
    assert!(!ok, "{out}");
    assert!(out.contains("(sasl_ssl) not reachable") && out.contains("Authentication failed"), "{out}");
    assert!(!out.contains("ong\\pass"), "{out}");
    assert_eq!(s.partitions(&topic), None);

    // Settings that cannot work are refused before any connection.
    for (env, says) in [
        (vec![("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_string())], "needs KAFKA_SASL_USERNAME"),
        (vec![("KAFKA_SECURITY_PROTOCOL", "tls".to_string())], "expected plaintext, ssl, sasl_plaintext or sasl_ssl"),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "sasl_ssl".to_string()),
                ("KAFKA_SASL_USERNAME", "u".into()),
                ("KAFKA_SASL_PASSWORD", "p".into()),
                ("KAFKA_SASL_MECHANISM", "GSSAPI".into()),
            ],
            "KAFKA_SASL_MECHANISM=GSSAPI",
        ),
        (
            vec![
                ("KAFKA_SECURITY_PROTOCOL", "ssl".to_string()),
                ("KAFKA_SSL_CA_LOCATION", "/nonexistent/ca.pem".into()),
            ],
            "cannot read /nonexistent/ca.pem",
        ),
    ] {
        let (ok, out) = s.create_topics(&topics, &env);
        assert!(!ok && out.contains(says), "{env:?}: expected \"{says}\":\n{out}");
    }
}
