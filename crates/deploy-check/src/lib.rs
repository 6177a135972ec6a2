//! Helpers for the deployment checks in `tests/`: where the repository and the tools are, YAML
//! read into `serde_json::Value` (so manifests and compose files are checked like any JSON), and
//! the metric names a PromQL expression or a Grafana dashboard uses.
//!
//! The tools are installed by `make deps` (scripts/deps.sh): docker-compose and prometheus
//! (promtool) from Debian, hadolint and kubernetes-validate from PyPI into `.local/venv`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap_or_else(|_| PathBuf::from("../.."))
}

/// A tool by name: from `.local/venv/bin` (PyPI tools) or the `PATH`. Panics, saying how to
/// install it, when missing: these checks never skip silently.
pub fn tool(name: &str) -> PathBuf {
    let venv = repo().join(".local/venv/bin").join(name);
    if venv.is_file() {
        return venv;
    }
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|c| c.is_file()))
        .unwrap_or_default();
    found.unwrap_or_else(|| panic!("`{name}` not found: run `make deps` (scripts/deps.sh installs it)"))
}

/// Runs `tool` with `args` from the repository root; (success, stdout + stderr).
pub fn run(tool_path: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(tool_path)
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool_path.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

/// Every YAML document of `text` as JSON values (`null` documents skipped).
pub fn yaml_docs(text: &str) -> Result<Vec<Value>, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    Ok(docs.iter().map(to_json).filter(|v| !v.is_null()).collect())
}

/// The YAML file at `path` (relative to the repository) as one JSON value.
pub fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut docs = yaml_docs(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(docs.len(), 1, "{path}: one YAML document expected");
    docs.remove(0)
}

fn to_json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => {
            r.parse::<f64>().ok().and_then(Number::from_f64).map_or(Value::String(r.clone()), Value::Number)
        }
        Yaml::Integer(i) => Value::Number((*i).into()),
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => format!("{other:?}"),
                };
                m.insert(key, to_json(v));
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::Null | Yaml::BadValue => Value::Null,
    }
}

/// PromQL words that are not metric names.
const PROMQL_WORDS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "offset",
    "bool",
    "rate",
    "irate",
    "increase",
    "delta",
    "idelta",
    "deriv",
    "histogram_quantile",
    "abs",
    "absent",
    "ceil",
    "floor",
    "round",
    "clamp_min",
    "clamp_max",
    "hour",
    "minute",
    "day_of_week",
    "time",
    "vector",
    "scalar",
    "label_values",
    "label_replace",
    "sort",
    "sort_desc",
    "resets",
    "changes",
    "avg_over_time",
    "max_over_time",
    "min_over_time",
    "sum_over_time",
    "count_over_time",
    "last_over_time",
    "le",
    "inf",
    "nan",
    "group",
];

/// The metric names `expr` selects: identifiers that are not PromQL words, label names (inside
/// `{…}`, `by (…)`, `on (…)` …), strings, or Grafana variables (`$producer`, `$__rate_interval`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    // Grafana's `label_values(<selector>, <label>)`: the second argument is a label.
    if let Some((selector, _label)) = expr.trim().strip_prefix("label_values(").and_then(|r| r.rsplit_once(',')) {
        return metric_names(selector);
    }
    let mut out = BTreeSet::new();
    let b = expr.as_bytes();
    let (mut i, mut braces, mut parens_after_kw) = (0, 0usize, Vec::<bool>::new());
    let mut last_word = String::new();
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                continue;
            }
            b'{' => braces += 1,
            b'}' => braces = braces.saturating_sub(1),
            b'[' => {
                while i < b.len() && b[i] != b']' {
                    i += 1;
                }
            }
            b'(' => {
                let grouping = ["by", "without", "on", "ignoring", "group_left", "group_right"];
                parens_after_kw.push(grouping.contains(&last_word.as_str()));
            }
            b')' => {
                parens_after_kw.pop();
            }
            b'$' => {
                i += 1;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                    i += 1;
                }
                continue;
            }
            c if c.is_ascii_alphabetic() || c == b'_' || c == b':' => {
                let start = i;
                while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                    i += 1;
                }
                let word = &expr[start..i];
                let in_labels = braces > 0 || parens_after_kw.last().copied().unwrap_or(false);
                let number_suffix = start > 0 && b[start - 1].is_ascii_digit(); // 5m, 1e3
                if !in_labels && !number_suffix && !PROMQL_WORDS.contains(&word.to_ascii_lowercase().as_str()) {
                    out.insert(word.to_string());
                }
                last_word = word.to_ascii_lowercase();
                continue;
            }
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            last_word.clear();
        }
        i += 1;
    }
    out
}

/// Every PromQL expression of a Grafana dashboard (panel targets, nested rows, variables).
pub fn dashboard_exprs(dashboard: &Value) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        ("query", Value::Object(q)) => {
                            if let Some(Value::String(e)) = q.get("query") {
                                out.push(e.clone());
                            }
                        }
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(dashboard, &mut out);
    out
}

/// Sample names in Prometheus text exposition (`name{…} value` or `name value`).
pub fn exposed_names(metrics_text: &str) -> BTreeSet<String> {
    metrics_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next().map(str::to_string))
        .collect()
}

/// `expr` with Grafana's variables replaced by values Prometheus accepts.
pub fn grafana_to_promql(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$__interval", "15s")
        .replace("=~\"$producer\"", "=~\".*\"")
        .replace("label_values(", "count by (producer) (")
        .replace(", producer)", ")")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "a failed unwrap is a failed test")]
    use super::*;

    fn names(e: &str) -> Vec<String> {
        metric_names(e).into_iter().collect()
    }

    #[test]
    fn metric_names_of_expressions() {
        assert_eq!(
            names(
                r#"sum by (producer, topic) (rate(producer_messages_sent_total{producer=~"$producer", topic!="x"}[$__rate_interval]))"#
            ),
            ["producer_messages_sent_total"]
        );
        assert_eq!(
            names(r#"histogram_quantile(0.99, sum by (le) (rate(producer_latency_seconds_bucket[5m])))"#),
            ["producer_latency_seconds_bucket"]
        );
        assert_eq!(
            names(
                "max by (producer) (producer_up) == 1 unless on (producer) (rate(a_total[10m]) > 0) and on () (hour() >= 14)"
            ),
            ["a_total", "producer_up"]
        );
        assert_eq!(names(r#"up{job="finstream-producers"} == 0"#), ["up"]);
        assert_eq!(names(r#"label_values(producer_up{producer=~"market.*"}, producer)"#), ["producer_up"]);
        assert_eq!(names("x_total offset 5m * 1e3"), ["x_total"]);
    }

    #[test]
    fn yaml_to_json() {
        let v = yaml_docs("a: 1\nb: [x, 2.5, true]\nc: {d: null}\n---\n- 3\n").unwrap();
        assert_eq!(v[0], serde_json::json!({"a": 1, "b": ["x", 2.5, true], "c": {"d": null}}));
        assert_eq!(v[1], serde_json::json!([3]));
    }

    #[test]
    fn exposition_names() {
        let text = "# HELP a x\n# TYPE a counter\na_total{x=\"1\"} 3\nb 1\nc_bucket{le=\"+Inf\"} 2\n";
        assert_eq!(exposed_names(text).into_iter().collect::<Vec<_>>(), ["a_total", "b", "c_bucket"]);
    }
}
