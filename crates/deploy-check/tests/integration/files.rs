//! The deployment files, checked with the real tools that run here (no Docker engine, no
//! cluster): docker-compose config, hadolint, promtool (config, rules, rule unit tests),
//! kubernetes-validate (Kubernetes 1.30 schemas, strict), plus what those tools do not know:
//! probes, resources and non-root security contexts on every workload, copies that must stay
//! identical (config, topics, alert rules), host ports that must not collide.

#![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test, with its location")]

use std::collections::{BTreeMap, BTreeSet};

use deploy_check::{dashboard_exprs, repo, run, tool, yaml_docs, yaml_file};
use serde_json::Value;

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

const PRODUCERS: [&str; 5] =
    ["market-producer", "news-producer", "social-producer", "sec-producer", "altdata-producer"];

#[test]
fn compose_file_is_accepted_and_complete() {
    let compose = |env: &[(&str, &str)]| {
        let out = std::process::Command::new(tool("docker-compose"))
            .args(["-f", "docker-compose.yml", "config"])
            .current_dir(deploy_check::repo())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        )
    };
    // No committed password: without them from .env the file is refused, naming the variable.
    let (ok, out) = compose(&[("KAFKA_UI_PASSWORD", "k-pass")]);
    assert!(!ok && out.contains("GRAFANA_ADMIN_PASSWORD"), "compose starts without a Grafana password:\n{out}");
    let (ok, out) = compose(&[("GRAFANA_ADMIN_PASSWORD", "g-pass")]);
    assert!(!ok && out.contains("KAFKA_UI_PASSWORD"), "compose starts without a Kafka UI password:\n{out}");
    let (ok, out) = compose(&[("GRAFANA_ADMIN_PASSWORD", "g-pass"), ("KAFKA_UI_PASSWORD", "k-pass")]);
    assert!(ok, "docker-compose config:\n{out}");
    assert!(!out.contains("admin/admin") && !out.contains("PASSWORD: admin"), "{out}");
    let resolved = yaml_docs(&out).unwrap().remove(0);
    let services = resolved["services"].as_object().unwrap();
    for s in [
        "kafka-1",
        "kafka-2",
        "kafka-3",
        "topic-init",
        "schema-registry",
        "kafka-ui",
        "prometheus",
        "grafana",
        "provider-sim",
    ]
    .iter()
    .chain(PRODUCERS.iter())
    {
        assert!(services.contains_key(*s), "service {s} missing");
    }
    // Host ports: the documented ones, none used twice.
    let mut seen = BTreeMap::new();
    for (name, svc) in services {
        for p in svc["ports"].as_array().into_iter().flatten() {
            let host =
                p["published"].as_str().map(str::to_string).or_else(|| p["published"].as_u64().map(|n| n.to_string()));
            // Long form ({host_ip, published, …}) or short ("127.0.0.1:3000:3000/tcp").
            let short: Vec<&str> = p.as_str().unwrap_or("").split(':').collect();
            let (ip, host) = match (host, short.as_slice()) {
                (Some(h), _) => (p["host_ip"].as_str().map(str::to_string), h),
                (None, [ip, published, _]) => (Some((*ip).to_string()), (*published).to_string()),
                (None, parts) => (None, parts.first().copied().unwrap_or("").to_string()),
            };
            assert_eq!(ip.as_deref(), Some("127.0.0.1"), "{name} publishes {host} beyond this machine: {p}");
            if let Some(other) = seen.insert(host.clone(), name.clone()) {
                panic!("host port {host} published by both {other} and {name}");
            }
        }
    }
    for (port, svc) in [
        ("8080", "kafka-ui"),
        ("9090", "prometheus"),
        ("3000", "grafana"),
        ("9092", "kafka-1"),
        ("8081", "schema-registry"),
    ] {
        assert_eq!(seen.get(port).map(String::as_str), Some(svc), "port {port}: {seen:?}");
    }
    // KRaft, three voters, RF 3 with min ISR 2.
    for n in 1..=3 {
        let env = &services[&format!("kafka-{n}")]["environment"];
        assert_eq!(str_at(env, "/KAFKA_PROCESS_ROLES"), "broker,controller");
        assert_eq!(str_at(env, "/KAFKA_CONTROLLER_QUORUM_VOTERS"), "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093");
        assert_eq!(str_at(env, "/KAFKA_MIN_INSYNC_REPLICAS"), "2");
        assert_eq!(str_at(env, "/KAFKA_NODE_ID"), n.to_string());
    }
    // The topics job reads the same topics file as `make kafka-up`, with RF 3.
    let init = &services["topic-init"];
    assert!(init["volumes"].to_string().contains("scripts/kafka/topics.txt"), "{init}");
    assert_eq!(str_at(init, "/environment/REPLICATION_FACTOR"), "3");
    assert_eq!(str_at(&services["grafana"], "/environment/GF_SECURITY_ADMIN_PASSWORD"), "g-pass", "from .env");
    for p in PRODUCERS {
        let svc = &services[p];
        assert_eq!(str_at(svc, "/restart"), "unless-stopped", "{p}");
        assert!(svc["healthcheck"]["test"].to_string().contains("/health"), "{p} healthcheck");
        assert_eq!(str_at(svc, "/build/args/PRODUCER"), p, "{p} builds its own image");
        assert_eq!(str_at(svc, "/depends_on/topic-init/condition"), "service_completed_successfully", "{p}");
        assert!(str_at(svc, "/environment/KAFKA_BROKERS").contains("kafka-1:19092"), "{p}");
    }
    // Every producer is scraped by the compose Prometheus.
    let prom = yaml_file("infrastructure/prometheus/prometheus.yml");
    let targets = prom["scrape_configs"][0]["static_configs"].to_string();
    for p in PRODUCERS {
        assert!(targets.contains(&format!("\"service\":\"{p}\"")), "{p} not scraped: {targets}");
    }
}

#[test]
fn dockerfile_passes_hadolint_and_builds_small_non_root_images() {
    let (ok, out) = run(&tool("hadolint"), &["--config", ".hadolint.yaml", "Dockerfile"]);
    assert!(ok, "hadolint:\n{out}");
    // What this reads, `make test-containers` (scripts/containers.sh) shows running: the six
    // images built with podman, non-root, their health checks passing, demo records in Kafka.
    let text = read("Dockerfile");
    let stages: Vec<&str> = text.split("\nFROM ").skip(1).collect();
    let stage = |name: &str| -> &str {
        stages
            .iter()
            .find(|s| s.lines().next().is_some_and(|l| l.ends_with(&format!(" AS {name}"))))
            .unwrap_or_else(|| panic!("a stage named {name}"))
    };
    // One compile for all six images: the build stage does not depend on which image is built,
    // and caches the registry and target directory across builds.
    let build = stage("build");
    assert!(!build.contains("PRODUCER"), "the build stage must not depend on the image: {build}");
    assert!(build.contains("--mount=type=cache") && build.contains("cargo build --release --locked --bins"), "{build}");
    for bin in PRODUCERS.into_iter().chain(["provider-sim"]) {
        assert!(build.contains(&format!("-p {bin}")), "{bin} built in the shared stage");
    }
    let runtime = stage("runtime");
    assert!(runtime.starts_with("debian:") && runtime.contains("-slim"), "slim runtime: {runtime}");
    let user = runtime.lines().rev().find_map(|l| l.strip_prefix("USER ")).expect("USER");
    assert!(!user.starts_with("root") && !user.starts_with('0'), "non-root: {user}");
    for (name, health) in
        [("producer", "http://127.0.0.1:8081/health"), ("provider-sim", "http://127.0.0.1:9400/_sim/health")]
    {
        let s = stage(name);
        assert!(s.starts_with("runtime AS "), "{name} builds on the shared runtime stage");
        assert!(s.contains("HEALTHCHECK") && s.contains(health), "{name} checks the port it serves");
        assert!(s.contains("org.opencontainers.image.title"), "{name}");
        assert!(!s.contains("USER "), "{name} keeps the runtime's non-root user");
    }
    assert!(stages.last().is_some_and(|s| s.starts_with("runtime AS producer")), "producer is the default target");
    for s in [runtime, stage("producer"), stage("provider-sim")] {
        for tool in ["build-essential", "gcc", "cargo ", "rustc", "-dev "] {
            assert!(!s.contains(tool), "no build tools in the runtime images ({tool})");
        }
    }
    // `make docker-build` builds each producer with its own build arg, provider-sim by target.
    let make = read("Makefile");
    assert!(make.contains("--build-arg PRODUCER=$$p-producer"), "Makefile docker-build");
    assert!(make.contains("--target provider-sim"), "Makefile docker-build");
}

#[test]
fn prometheus_config_rules_and_rule_tests_pass_promtool() {
    let promtool = tool("promtool");
    for args in [
        &["check", "config", "infrastructure/prometheus/prometheus.yml"][..],
        &["check", "rules", "infrastructure/prometheus/alerts.yml"],
        &["test", "rules", "infrastructure/prometheus/alerts_test.yml"],
    ] {
        let (ok, out) = run(&promtool, args);
        assert!(ok, "promtool {args:?}:\n{out}");
    }
}

fn manifests() -> Vec<(String, Value)> {
    let dir = repo().join("infrastructure/kubernetes");
    let mut out = Vec::new();
    for sub in ["", "monitoring", "templates"] {
        let mut files: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        files.sort();
        for f in files {
            let name = f.strip_prefix(repo()).unwrap().display().to_string();
            for doc in yaml_docs(&std::fs::read_to_string(&f).unwrap()).unwrap_or_else(|e| panic!("{name}: {e}")) {
                out.push((name.clone(), doc));
            }
        }
    }
    out
}

#[test]
fn kubernetes_manifests_validate_against_the_schemas() {
    let mut args = vec!["--kubernetes-version".to_string(), "1.30.0".into(), "--strict".into()];
    let m = manifests();
    let files: BTreeSet<String> = m.iter().map(|(f, _)| f.clone()).filter(|f| !f.contains("/monitoring/")).collect();
    args.extend(files);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run(&tool("kubernetes-validate"), &argv);
    assert!(ok && !out.contains("ERROR"), "kubernetes-validate:\n{out}");
    // The operator resources have no schema there: check their shape here.
    let monitor = m.iter().find(|(_, d)| d["kind"] == "ServiceMonitor").expect("ServiceMonitor").1.clone();
    assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "metrics");
    let selector = monitor["spec"]["selector"]["matchLabels"].as_object().unwrap().clone();
    for p in PRODUCERS {
        let svc =
            m.iter().find(|(_, d)| d["kind"] == "Service" && d["metadata"]["name"] == p).expect("a Service").1.clone();
        for (k, v) in &selector {
            assert_eq!(&svc["metadata"]["labels"][k], v, "the ServiceMonitor selects the {p} Service");
        }
        assert!(svc["spec"]["ports"].to_string().contains("\"name\":\"metrics\""));
    }
    // The PrometheusRule carries exactly the rules of infrastructure/prometheus/alerts.yml.
    let rule = m.iter().find(|(_, d)| d["kind"] == "PrometheusRule").expect("PrometheusRule").1.clone();
    assert_eq!(rule["spec"]["groups"], yaml_file("infrastructure/prometheus/alerts.yml")["groups"]);
}

#[test]
fn every_workload_has_probes_resources_and_a_locked_down_security_context() {
    let m = manifests();
    let workloads: Vec<&Value> = m
        .iter()
        .map(|(_, d)| d)
        .filter(|d| ["Deployment", "StatefulSet", "Job"].contains(&d["kind"].as_str().unwrap_or("")))
        .collect();
    let names: BTreeSet<&str> = workloads.iter().filter_map(|d| d["metadata"]["name"].as_str()).collect();
    for p in PRODUCERS {
        assert!(names.contains(p), "{p} has no workload: {names:?}");
    }
    assert_eq!(
        m.iter()
            .find(|(_, d)| d["metadata"]["name"] == "market-producer"
                && d["kind"] != "Service"
                && d["kind"] != "PodDisruptionBudget")
            .unwrap()
            .1["kind"],
        "StatefulSet",
        "market shards by replica index"
    );
    for w in workloads {
        let name = w["metadata"]["name"].as_str().unwrap();
        let pod = &w["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}: runAsNonRoot");
        assert!(pod["securityContext"]["runAsUser"].as_u64().unwrap_or(0) > 0, "{name}: runAsUser");
        assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault", "{name}");
        for c in pod["containers"].as_array().unwrap() {
            let sc = &c["securityContext"];
            assert_eq!(sc["readOnlyRootFilesystem"], true, "{name}: read-only root");
            assert_eq!(sc["allowPrivilegeEscalation"], false, "{name}");
            assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]), "{name}");
            for kind in ["requests", "limits"] {
                for r in ["cpu", "memory"] {
                    assert!(!c["resources"][kind][r].is_null(), "{name}: resources.{kind}.{r}");
                }
            }
            if w["kind"] == "Job" {
                continue;
            }
            assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/health", "{name}: liveness");
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/ready", "{name}: readiness");
            let ports = c["ports"].to_string();
            assert!(ports.contains("9090") && ports.contains("8081"), "{name}: {ports}");
            assert_eq!(w["spec"]["template"]["metadata"]["annotations"]["prometheus.io/scrape"], "true", "{name}");
        }
        if w["kind"] != "Job" {
            let pdb = m.iter().find(|(_, d)| d["kind"] == "PodDisruptionBudget" && d["metadata"]["name"] == name);
            assert!(pdb.is_some(), "{name}: PodDisruptionBudget");
        }
    }
}

#[test]
fn copies_in_the_manifests_match_their_sources() {
    let m = manifests();
    let cm = |name: &str| {
        m.iter().find(|(_, d)| d["kind"] == "ConfigMap" && d["metadata"]["name"] == name).unwrap().1.clone()
    };
    assert_eq!(
        cm("finstream-config")["data"]["config.yaml"],
        read("configs/config.yaml"),
        "ConfigMap = configs/config.yaml (run `make sync-configmap`)"
    );
    let topics = cm("finstream-topics");
    assert_eq!(topics["data"]["topics.txt"], read("scripts/kafka/topics.txt"));
    assert_eq!(topics["data"]["create-topics.sh"], read("infrastructure/kafka/create-topics.sh"));
    // The Secret is a template with no values, and `kubectl apply -f infrastructure/kubernetes/`
    // (not recursive) does not apply it.
    let (file, secret) = m.iter().find(|(_, d)| d["kind"] == "Secret").unwrap();
    assert!(file.contains("/templates/"), "{file}");
    for (k, v) in secret["stringData"].as_object().unwrap() {
        assert_eq!(v, "", "{k} must be empty in the template");
    }
}

#[test]
fn dashboards_are_provisioned_valid_json_using_the_provisioned_datasource() {
    let ds = yaml_file("infrastructure/grafana/provisioning/datasources/prometheus.yml");
    let uid = ds["datasources"][0]["uid"].as_str().unwrap().to_string();
    let dir = repo().join("infrastructure/grafana/dashboards");
    let mut uids = BTreeSet::new();
    for family in ["overview", "market", "news", "social", "sec", "altdata"] {
        let path = dir.join(format!("{family}.json"));
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(uids.insert(d["uid"].as_str().unwrap().to_string()), "duplicate uid");
        let panels = d["panels"].as_array().unwrap();
        let ids: BTreeSet<u64> = panels.iter().filter_map(|p| p["id"].as_u64()).collect();
        assert_eq!(ids.len(), panels.len(), "{family}: panel ids unique");
        for p in panels.iter().filter(|p| p["type"] != "row") {
            assert_eq!(p["datasource"]["uid"], uid.as_str(), "{family}/{}", p["title"]);
            assert!(!p["targets"].as_array().unwrap().is_empty(), "{family}/{}", p["title"]);
        }
        assert!(dashboard_exprs(&d).len() >= 5, "{family}");
    }
}

/// The image entrypoint applies demo mode only with FINSTREAM_DEMO_SIM, and only to providers
/// without credentials.
#[test]
fn container_entrypoint_demo_mode() {
    let run_entrypoint = |env: &[(&str, &str)]| -> String {
        let mut cmd = std::process::Command::new("bash");
        cmd.arg("scripts/docker-entrypoint.sh")
            .current_dir(repo())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FINSTREAM_SHARE_DIR", repo().join("scripts"))
            .env("FINSTREAM_PRODUCER_BIN", "env");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let demo = run_entrypoint(&[("FINSTREAM_DEMO_SIM", "provider-sim:9400")]);
    for line in [
        "MARKET_WS_URL=ws://provider-sim:9400/stocks",
        "FINSTREAM__NEWS__NEWSAPI__BASE_URL=http://provider-sim:9400",
        "FINSTREAM__SEC__BASE_URL=http://provider-sim:9400",
        "FINSTREAM__SOCIAL__REDDIT__BASE_URL=http://provider-sim:9400",
        "FINSTREAM__SOCIAL__TWITTER__BASE_URL=http://provider-sim:9400",
    ] {
        assert!(demo.lines().any(|l| l == line), "{line} missing:\n{demo}");
    }
    let real = run_entrypoint(&[
        ("FINSTREAM_DEMO_SIM", "provider-sim:9400"),
        ("MARKET_API_KEY", "k"),
        ("SEC_USER_AGENT", "Acme ops@acme.com"),
    ]);
    assert!(!real.contains("MARKET_WS_URL") && !real.contains("FINSTREAM__SEC__BASE_URL"), "{real}");
    assert!(real.contains("FINSTREAM__NEWS__NEWSAPI__BASE_URL=http://provider-sim:9400"), "news still demo: {real}");
    let production = run_entrypoint(&[]);
    assert!(!production.contains("provider-sim"), "{production}");
}
