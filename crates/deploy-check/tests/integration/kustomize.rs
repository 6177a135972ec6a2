//! The Kubernetes manifests as a user deploys them: `infrastructure/kustomization.yaml` rendered
//! by kustomize through `make k8s-manifests` (scripts/k8s-manifests.sh) for a registry, tag and
//! namespace of their own. Schema checks say each object is well formed; this says the objects
//! fit together: every image is the one `make docker-push` pushes, every ConfigMap, Secret key,
//! env var, volume, port and file a pod refers to exists, each producer accepts its pod's
//! configuration (`--check-config` with exactly the pod's environment and mounted config), and
//! the production config polls nothing on this machine.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use deploy_check::{repo, run, tool, yaml_docs, yaml_file};
use serde_json::Value;

use crate::common::bin;

const REGISTRY: &str = "registry.example.com/acme";
const TAG: &str = "7.7.7";
const NAMESPACE: &str = "finstream-md";

fn render() -> Vec<Value> {
    let out = Command::new(repo().join("scripts/k8s-manifests.sh"))
        .env("REGISTRY", REGISTRY)
        .env("IMAGE_TAG", TAG)
        .env("NAMESPACE", NAMESPACE)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "k8s-manifests.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    yaml_docs(&text).unwrap()
}

fn name(d: &Value) -> &str {
    d["metadata"]["name"].as_str().unwrap_or("")
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default()
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// The credentials Secret users create from the template: its name and keys.
fn credentials() -> (String, BTreeSet<String>) {
    let t = yaml_file("infrastructure/kubernetes/templates/credentials-secret.yaml");
    (name(&t).to_string(), keys(&t["stringData"]))
}

/// What a user's Secret holds for `key` (a value each producer accepts).
fn credential_value(key: &str) -> String {
    if key == "SEC_USER_AGENT" { "Acme Corp ops@acme.example".into() } else { format!("placeholder-{key}") }
}

fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost" || h.starts_with("127.") || h == "::1" || h == "0.0.0.0"
}

/// Every string in `v` that is a URL, with its path in the document.
fn urls(v: &Value, at: &str, out: &mut Vec<(String, url::Url)>) {
    match v {
        Value::String(s) => {
            if let Ok(u) = url::Url::parse(s)
                && ["http", "https", "ws", "wss"].contains(&u.scheme())
            {
                out.push((at.to_string(), u));
            }
        }
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| urls(x, &format!("{at}/{i}"), out)),
        Value::Object(m) => m.iter().for_each(|(k, x)| urls(x, &format!("{at}/{k}"), out)),
        _ => {}
    }
}

#[test]
fn kustomization_renders_for_a_registry_tag_and_namespace_and_every_reference_resolves() {
    // It deploys what `kubectl apply -f infrastructure/kubernetes/` does: every file there.
    let listed: BTreeSet<String> = list(&yaml_file("infrastructure/kustomization.yaml")["resources"])
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = std::fs::read_dir(repo().join("infrastructure/kubernetes"))
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| format!("kubernetes/{}", e.file_name().to_string_lossy()))
        .filter(|f| f.ends_with(".yaml"))
        .collect();
    assert_eq!(listed, files, "infrastructure/kustomization.yaml lists every manifest of infrastructure/kubernetes/");

    let docs = render();
    let kinds: Vec<String> = docs.iter().map(|d| format!("{}/{}", d["kind"].as_str().unwrap(), name(d))).collect();

    // Namespace: the Namespace object is the one asked for, and everything else is in it.
    let ns: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Namespace").collect();
    assert_eq!(ns.len(), 1, "{kinds:?}");
    assert_eq!(name(ns[0]), NAMESPACE);
    for d in docs.iter().filter(|d| d["kind"] != "Namespace") {
        assert_eq!(d["metadata"]["namespace"], NAMESPACE, "{} {}", d["kind"], name(d));
    }

    let config_maps: BTreeMap<&str, &Value> =
        docs.iter().filter(|d| d["kind"] == "ConfigMap").map(|d| (name(d), &d["data"])).collect();
    let (secret, secret_keys) = credentials();
    let compose = yaml_file("docker-compose.yml");
    let workloads: Vec<&Value> =
        docs.iter().filter(|d| ["Deployment", "StatefulSet", "Job"].contains(&d["kind"].as_str().unwrap())).collect();
    assert_eq!(workloads.len(), 6, "five producers and the topics Job: {kinds:?}");

    for w in &workloads {
        let wname = name(w);
        let template = &w["spec"]["template"];
        let pod = &template["spec"];
        let volumes: BTreeMap<&str, &Value> =
            list(&pod["volumes"]).iter().map(|v| (v["name"].as_str().unwrap(), v)).collect();
        // Volumes: ConfigMaps that exist (and their listed keys); Secrets that users create
        // (the credentials) or that are optional (the Kafka CA).
        for (vname, v) in &volumes {
            if let Some(cm) = v["configMap"]["name"].as_str() {
                let data = config_maps.get(cm).unwrap_or_else(|| panic!("{wname}: volume {vname}: no ConfigMap {cm}"));
                for item in list(&v["configMap"]["items"]) {
                    assert!(data.get(item["key"].as_str().unwrap()).is_some(), "{wname}: {cm} has no key {item}");
                }
            }
            if let Some(s) = v["secret"]["secretName"].as_str() {
                assert!(
                    s == secret || v["secret"]["optional"] == true,
                    "{wname}: volume {vname}: Secret {s} is neither the credentials nor optional"
                );
            }
        }
        // ConfigMap volumes by mount path: a file a container names under one must be a key.
        let mut files: Vec<(String, &str)> = Vec::new();
        for c in list(&pod["containers"]) {
            let image = c["image"].as_str().unwrap();
            if w["kind"] == "Job" {
                assert_eq!(
                    image, compose["services"]["topic-init"]["image"],
                    "{wname}: the Kafka image compose's topic-init runs"
                );
            } else {
                assert_eq!(image, format!("{REGISTRY}/{wname}:{TAG}"), "{wname}: the image make docker-push pushes");
            }
            for m in list(&c["volumeMounts"]) {
                let v = volumes
                    .get(m["name"].as_str().unwrap())
                    .unwrap_or_else(|| panic!("{wname}: mount of no volume {m}"));
                if let Some(cm) = v["configMap"]["name"].as_str() {
                    files.push((format!("{}/", m["mountPath"].as_str().unwrap()), cm));
                }
            }
            let mut named: Vec<String> = Vec::new();
            for e in list(&c["envFrom"]) {
                if let Some(cm) = e["configMapRef"]["name"].as_str() {
                    assert!(config_maps.contains_key(cm), "{wname}: envFrom of no ConfigMap {cm}");
                }
                if let Some(s) = e["secretRef"]["name"].as_str() {
                    assert_eq!(s, secret, "{wname}: envFrom of a Secret users are not told to create");
                }
            }
            for e in list(&c["env"]) {
                let ename = e["name"].as_str().unwrap();
                let from = &e["valueFrom"];
                if let Some(cm) = from["configMapKeyRef"]["name"].as_str() {
                    let key = from["configMapKeyRef"]["key"].as_str().unwrap();
                    assert!(
                        config_maps.get(cm).is_some_and(|d| d.get(key).is_some()),
                        "{wname}: {ename} from {cm}/{key}, which does not exist"
                    );
                }
                if let Some(s) = from["secretKeyRef"]["name"].as_str() {
                    let key = from["secretKeyRef"]["key"].as_str().unwrap();
                    assert!(
                        s == secret && secret_keys.contains(key),
                        "{wname}: {ename} from Secret {s}/{key}, not in the credentials template"
                    );
                }
                if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                    assert!(
                        path.starts_with("metadata.") || path.starts_with("spec.") || path.starts_with("status."),
                        "{wname}: {path}"
                    );
                }
                named.extend(e["value"].as_str().map(str::to_string));
            }
            named.extend(
                list(&c["command"]).iter().chain(list(&c["args"])).filter_map(|a| a.as_str().map(str::to_string)),
            );
            for value in named {
                for (dir, cm) in &files {
                    if let Some(key) = value.strip_prefix(dir.as_str()) {
                        assert!(config_maps[cm].get(key).is_some(), "{wname}: {value} is not a key of ConfigMap {cm}");
                    }
                }
            }
        }
    }

    // Services and PodDisruptionBudgets select a workload's pods, on ports its container names.
    for d in docs.iter().filter(|d| ["Service", "PodDisruptionBudget"].contains(&d["kind"].as_str().unwrap())) {
        let selector =
            if d["kind"] == "Service" { &d["spec"]["selector"] } else { &d["spec"]["selector"]["matchLabels"] };
        let target = workloads
            .iter()
            .find(|w| keys(selector).iter().all(|k| w["spec"]["template"]["metadata"]["labels"][k] == selector[k]))
            .unwrap_or_else(|| panic!("{} {} selects no pods: {selector}", d["kind"], name(d)));
        let ports: BTreeSet<&str> = list(&target["spec"]["template"]["spec"]["containers"])
            .iter()
            .flat_map(|c| list(&c["ports"]))
            .filter_map(|p| p["name"].as_str())
            .collect();
        for p in list(&d["spec"]["ports"]) {
            if let Some(t) = p["targetPort"].as_str() {
                assert!(ports.contains(t), "Service {}: targetPort {t} is no port of {}", name(d), name(target));
            }
        }
    }

    // The production config: no source on this machine, Kafka not on loopback.
    let config_text = config_maps["finstream-config"]["config.yaml"].as_str().unwrap();
    let config = yaml_docs(config_text).unwrap().remove(0);
    let mut found = Vec::new();
    urls(&config, "", &mut found);
    assert!(found.len() >= 8, "the providers' URLs: {found:?}");
    for (at, u) in &found {
        assert!(!is_loopback(u.host_str().unwrap_or("")), "config.yaml{at}: {u} is this machine");
    }
    assert_eq!(config["altdata"]["sources"], serde_json::json!([]), "no example sources in production");
    let brokers = config_maps["finstream-env"]["KAFKA_BROKERS"].as_str().expect("finstream-env sets KAFKA_BROKERS");
    for b in brokers.split(',') {
        assert!(!is_loopback(b.rsplit_once(':').map_or(b, |(h, _)| h)), "KAFKA_BROKERS {brokers}");
    }

    // Each producer with exactly its pod's environment and mounted config file accepts it.
    let tmp = tempfile::tempdir().unwrap();
    for w in workloads.iter().filter(|w| w["kind"] != "Job") {
        let wname = name(w);
        let c = &w["spec"]["template"]["spec"]["containers"][0];
        let mut env: BTreeMap<String, String> = BTreeMap::new();
        for e in list(&c["envFrom"]) {
            if let Some(cm) = e["configMapRef"]["name"].as_str() {
                for (k, v) in config_maps[cm].as_object().unwrap() {
                    env.insert(k.clone(), v.as_str().unwrap().to_string());
                }
            }
            if e["secretRef"]["name"].as_str().is_some() {
                for k in &secret_keys {
                    env.insert(k.clone(), credential_value(k));
                }
            }
        }
        for e in list(&c["env"]) {
            let value = match (e["value"].as_str(), e["valueFrom"]["fieldRef"].is_object()) {
                (Some(v), _) => v.to_string(),
                (None, true) => "0".into(), // the StatefulSet ordinal of the first pod
                (None, false) => continue,
            };
            env.insert(e["name"].as_str().unwrap().to_string(), value);
        }
        let config_path = env.get("FINSTREAM_CONFIG").cloned().unwrap_or_else(|| panic!("{wname}: FINSTREAM_CONFIG"));
        let pod = &w["spec"]["template"]["spec"];
        let (key, cm) = list(&c["volumeMounts"])
            .iter()
            .find_map(|m| {
                let key = config_path.strip_prefix(&format!("{}/", m["mountPath"].as_str()?))?;
                let v = list(&pod["volumes"]).iter().find(|v| v["name"] == m["name"])?;
                Some((key.to_string(), v["configMap"]["name"].as_str()?.to_string()))
            })
            .unwrap_or_else(|| panic!("{wname}: {config_path} is on no ConfigMap volume"));
        let local = tmp.path().join(format!("{wname}-{key}"));
        std::fs::write(&local, config_maps[cm.as_str()][&key].as_str().unwrap()).unwrap();
        env.insert("FINSTREAM_CONFIG".into(), local.display().to_string());
        let out = Command::new(bin(wname))
            .arg("--check-config")
            .current_dir(tmp.path())
            .env_clear()
            .envs(&env)
            .output()
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{wname} refuses its pod's configuration:\n{text}");
        assert!(
            !text.contains("disabled"),
            "{wname}: with every key of the Secret set, no provider is disabled: {text}"
        );
    }

    // And the rendered stream is valid against the Kubernetes schemas, strictly.
    let file = tmp.path().join("rendered.yaml");
    let text: Vec<String> = docs.iter().map(|d| serde_json::to_string(d).unwrap()).collect();
    std::fs::write(&file, text.join("\n---\n")).unwrap();
    let (ok, out) =
        run(&tool("kubernetes-validate"), &["--kubernetes-version", "1.30.0", "--strict", file.to_str().unwrap()]);
    assert!(ok && !out.contains("ERROR"), "kubernetes-validate:\n{out}");
}
