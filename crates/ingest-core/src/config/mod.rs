//! Configuration: one YAML file for all producers, then `.env`, then environment variables.
//!
//! Precedence (last wins): `configs/config.yaml` (or `--config`), the seed's environment
//! variables (`KAFKA_BROKERS`, `MARKET_API_KEY`, … see [`SEED_ENV`]), and generic overrides
//! `FINSTREAM__<SECTION>__<KEY>` (e.g. `FINSTREAM__KAFKA__LINGER_MS=5`). A `.env` file in the
//! working directory is read first and never overrides variables already set. Empty variables
//! count as unset.
//!
//! Every struct is `deny_unknown_fields`; every error names the offending key as a dotted path
//! (`kafka.linger_ms`). Each binary validates the shared sections and its own section; the other
//! producers' sections are left to their binaries.

mod core;
mod secret;
mod topics;

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;

pub use self::core::{CoreConfig, KafkaConfig, KafkaSecurity, LogFormat, RuntimeConfig, TelemetryConfig};
pub use self::secret::Secret;
pub use self::topics::{TopicSpec, Topics};

/// The config file used when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "configs/config.yaml";

/// The seed's environment variables and the config keys they set. These names are a public
/// contract (docs/contracts.md, Operation): they must keep working as written.
pub const SEED_ENV: &[(&str, &str)] = &[
    ("KAFKA_BROKERS", "kafka.brokers"),
    ("SCHEMA_REGISTRY_URL", "kafka.schema_registry_url"),
    ("LOG_LEVEL", "telemetry.log_level"),
    ("MARKET_WS_URL", "market.ws_url"),
    ("MARKET_API_KEY", "market.api_key"),
    ("NEWS_API_KEY", "news.newsapi.api_key"),
    ("ALPHAVANTAGE_API_KEY", "news.alphavantage.api_key"),
    ("TWITTER_API_KEY", "social.twitter.api_key"),
    ("TWITTER_API_SECRET", "social.twitter.api_secret"),
    ("TWITTER_BEARER_TOKEN", "social.twitter.bearer_token"),
    ("REDDIT_CLIENT_ID", "social.reddit.client_id"),
    ("REDDIT_CLIENT_SECRET", "social.reddit.client_secret"),
    // Ours, in the same style.
    ("MARKET_PROVIDER", "market.provider"),
    ("MARKET_API_SECRET", "market.api_secret"),
    ("SEC_USER_AGENT", "sec.user_agent"),
    ("REPLICA_INDEX", "market.replica_index"),
    ("REPLICA_COUNT", "market.replica_count"),
    ("KAFKA_SECURITY_PROTOCOL", "kafka.security.protocol"),
    ("KAFKA_SASL_MECHANISM", "kafka.security.sasl_mechanism"),
    ("KAFKA_SASL_USERNAME", "kafka.security.sasl_username"),
    ("KAFKA_SASL_PASSWORD", "kafka.security.sasl_password"),
    ("KAFKA_SSL_CA_LOCATION", "kafka.security.ssl_ca_location"),
    ("KAFKA_SPOOL_DIR", "kafka.spool.dir"),
    ("KAFKA_SSL_CERTIFICATE_LOCATION", "kafka.security.ssl_certificate_location"),
    ("KAFKA_SSL_KEY_LOCATION", "kafka.security.ssl_key_location"),
    ("KAFKA_SSL_KEY_PASSWORD", "kafka.security.ssl_key_password"),
    ("TLS_EXTRA_CA_FILE", "tls.extra_ca_file"),
];

/// A second YAML file merged over the config file (before the environment): `make run` and
/// compose put the demo sources there (`configs/demo.yaml`), so the shipped config stays a
/// production config. Keys it sets replace the file's; lists are replaced whole.
pub const OVERLAY_ENV: &str = "FINSTREAM_CONFIG_OVERLAY";

/// Prefix of the generic overrides: `FINSTREAM__KAFKA__LINGER_MS` sets `kafka.linger_ms`.
pub const ENV_PREFIX: &str = "FINSTREAM";

/// The environment variable that names a config key, for error messages ("set MARKET_API_KEY").
pub fn env_var_for(key: &str) -> String {
    SEED_ENV.iter().find(|(_, k)| *k == key).map_or_else(
        || format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase()),
        |(var, _)| (*var).to_string(),
    )
}

/// A configuration problem, naming the key it is about and, when an environment variable set
/// it, that variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", match (env_var, key) {
    (Some(v), Some(k)) => format!("environment variable `{v}` (config key `{k}`): {message}"),
    (None, Some(k)) => format!("config key `{k}`: {message}"),
    _ => message.clone(),
})]
pub struct ConfigError {
    /// Dotted path of the offending key, when there is one.
    pub key: Option<String>,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
    /// The environment variable the offending value came from (`None`: the file).
    pub env_var: Option<String>,
}

impl ConfigError {
    /// An error about one key.
    pub fn key(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self { key: Some(key.into()), message: message.into(), env_var: None }
    }

    /// An error not tied to a key (unreadable file, bad `.env`).
    pub fn general(message: impl Into<String>) -> Self {
        Self { key: None, message: message.into(), env_var: None }
    }

    /// Names the environment variable the key's value came from, when `env` has it: a typo
    /// in a variable is then reported as the variable's, not the file's.
    fn blame_env(mut self, env: &HashMap<String, String>) -> Self {
        if let Some(key) = &self.key {
            let var = env_var_for(key);
            let generic = format!("{ENV_PREFIX}__{}", key.replace('.', "__").to_uppercase());
            self.env_var = [var, generic].into_iter().find(|v| env.get(v).is_some_and(|x| !x.is_empty()));
        }
        self
    }

    /// "missing secret" for `key`, saying which variable sets it and why it is needed.
    pub fn missing_secret(key: &str, because: &str) -> Self {
        Self::key(key, format!("missing secret: set {} ({because})", env_var_for(key)))
    }
}

/// Checks that `value` is an absolute URL with one of `schemes` (`["https", "http"]`).
pub fn require_url(key: &str, value: &str, schemes: &[&str]) -> Result<(), ConfigError> {
    let ok = schemes.iter().any(|s| {
        value
            .strip_prefix(s)
            .and_then(|r| r.strip_prefix("://"))
            .is_some_and(|rest| !rest.is_empty() && !rest.starts_with('/') && !rest.contains(char::is_whitespace))
    });
    if ok { Ok(()) } else { Err(ConfigError::key(key, format!("must be a {} URL", schemes.join("/")))) }
}

/// Checks that a secret needed by an enabled provider is set.
pub fn require_secret(key: &str, secret: &Secret, because: &str) -> Result<(), ConfigError> {
    if secret.is_empty() {
        return Err(ConfigError::missing_secret(key, because));
    }
    Ok(())
}

/// Checks a list of symbols/tickers: each non-empty, without whitespace, at most 32 bytes.
pub fn require_symbols(key: &str, symbols: &[String], allow_empty: bool) -> Result<(), ConfigError> {
    if symbols.is_empty() && !allow_empty {
        return Err(ConfigError::key(key, "must list at least one symbol"));
    }
    for s in symbols {
        if s.is_empty() || s.len() > 32 || s.contains(char::is_whitespace) {
            return Err(ConfigError::key(key, format!("`{s}` is not a valid symbol")));
        }
    }
    Ok(())
}

/// A producer's own section of the config file (`market:`, `news:`, …).
pub trait Section: DeserializeOwned + Default + std::fmt::Debug {
    /// Top-level key of the section.
    const NAME: &'static str;

    /// Keys (full dotted paths) whose values are lists, so that `FINSTREAM__…` variables set
    /// them from comma-separated text (`FINSTREAM__MARKET__SYMBOLS=AAPL,MSFT`).
    const LIST_KEYS: &'static [&'static str] = &[];

    /// Checks values that serde cannot (ranges, URLs, secrets of enabled providers). Keys in the
    /// returned errors are full dotted paths.
    fn validate(&self) -> Result<(), ConfigError>;

    /// The providers of a section that has several, each with its credentials (empty: one
    /// provider, whose missing secret `validate` reports). An enabled provider whose credentials
    /// are not set is disabled, not an error: the producer runs the others, logs each disabled
    /// one and exposes it (`producer_provider_enabled 0`); loading fails only when no enabled
    /// provider is left.
    fn providers(&self) -> Vec<ProviderKeys> {
        Vec::new()
    }

    /// Whether provider `name` runs: enabled, with its credentials set (`true` for a section
    /// without a provider list).
    fn runs(&self, name: &str) -> bool {
        let providers = self.providers();
        providers.is_empty() || providers.iter().any(|p| p.name == name && p.runs())
    }
}

/// One provider of a section (see [`Section::providers`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderKeys {
    /// Its `provider` label (`newsapi`).
    pub name: &'static str,
    /// Enabled in the configuration.
    pub enabled: bool,
    /// The first credential it needs that is not set (its config key), if any.
    pub missing: Option<&'static str>,
}

impl ProviderKeys {
    /// `name`, enabled or not, needing the secrets `needs` (config key, value).
    pub fn new(name: &'static str, enabled: bool, needs: &[(&'static str, &Secret)]) -> Self {
        Self { name, enabled, missing: needs.iter().find(|(_, s)| s.is_empty()).map(|(k, _)| *k) }
    }

    /// Enabled and its credentials set.
    pub fn runs(&self) -> bool {
        self.enabled && self.missing.is_none()
    }

    /// Enabled, but a credential is not set: the variable that sets it.
    pub fn disabled_for(&self) -> Option<String> {
        self.missing.filter(|_| self.enabled).map(env_var_for)
    }
}

/// The loaded configuration of one producer: the shared sections and its own.
#[derive(Debug, Clone)]
pub struct Config<S> {
    /// `kafka`, `telemetry`, `runtime`.
    pub core: CoreConfig,
    /// The producer's own section.
    pub section: S,
}

/// The whole file. Producer sections stay untyped here so that each binary checks its own.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    kafka: KafkaConfig,
    #[serde(default)]
    telemetry: TelemetryConfig,
    #[serde(default)]
    runtime: RuntimeConfig,
    #[serde(default)]
    tls: crate::tls::TlsConfig,
    market: Option<config::Value>,
    news: Option<config::Value>,
    social: Option<config::Value>,
    sec: Option<config::Value>,
    altdata: Option<config::Value>,
}

impl FileConfig {
    fn take_section(&mut self, name: &str) -> Option<config::Value> {
        match name {
            "market" => self.market.take(),
            "news" => self.news.take(),
            "social" => self.social.take(),
            "sec" => self.sec.take(),
            "altdata" => self.altdata.take(),
            _ => None,
        }
    }
}

/// Reads `.env` from the working directory into the process environment (existing variables
/// win). A missing file is fine; a malformed one is an error naming the line.
pub fn load_dotenv() -> Result<(), ConfigError> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(e) if e.not_found() => Ok(()),
        Err(e) => Err(ConfigError::general(format!("cannot read .env: {e}"))),
    }
}

/// Loads and validates the config of section `S` from `path` and the process environment.
pub fn load<S: Section>(path: &Path) -> Result<Config<S>, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, &env)
}

/// As [`load`], with the environment given explicitly (tests, `--check-config` of a saved env).
pub fn load_with_env<S: Section>(path: &Path, env: &HashMap<String, String>) -> Result<Config<S>, ConfigError> {
    if !path.is_file() {
        return Err(ConfigError::general(format!("config file {} not found (use --config PATH)", path.display())));
    }
    let mut builder = config::Config::builder().add_source(config::File::from(path).format(config::FileFormat::Yaml));
    if let Some(overlay) = env.get(OVERLAY_ENV).filter(|v| !v.is_empty()) {
        let overlay = Path::new(overlay);
        if !overlay.is_file() {
            return Err(ConfigError::general(format!("{OVERLAY_ENV}: {} not found", overlay.display())));
        }
        builder = builder.add_source(config::File::from(overlay).format(config::FileFormat::Yaml));
    }
    for (var, key) in SEED_ENV {
        if let Some(v) = env.get(*var).filter(|v| !v.is_empty()) {
            builder = builder.set_override(*key, v.as_str()).map_err(|e| ConfigError::key(*key, e.to_string()))?;
        }
    }
    let mut generic: config::Map<String, String> = env
        .iter()
        .filter(|(k, v)| k.starts_with(&format!("{ENV_PREFIX}__")) && !v.is_empty())
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // List keys are split on commas here, always into strings: config-rs would read a single
    // value that looks like a number (`FINSTREAM__SEC__CIKS=320193`) as a number, not a list.
    for key in S::LIST_KEYS {
        let var = format!("{ENV_PREFIX}__{}", key.to_uppercase().replace('.', "__"));
        if let Some(v) = generic.remove(&var) {
            let items: Vec<String> = v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
            builder = builder.set_override(*key, items).map_err(|e| ConfigError::key(*key, e.to_string()))?;
        }
    }
    let environment = config::Environment::with_prefix(ENV_PREFIX)
        .prefix_separator("__")
        .separator("__")
        .try_parsing(true)
        .source(Some(generic));
    builder = builder.add_source(environment);
    let merged = builder.build().map_err(|e| from_config_error(path, e))?;

    let blame = |e: ConfigError| e.blame_env(env);
    let mut file: FileConfig = serde_path_to_error::deserialize(merged)
        .map_err(|e| blame(path_error(None, e.path().to_string(), e.into_inner())))?;
    let section = match file.take_section(S::NAME) {
        Some(value) => serde_path_to_error::deserialize(value)
            .map_err(|e| blame(path_error(Some(S::NAME), e.path().to_string(), e.into_inner())))?,
        None => S::default(),
    };
    let core = CoreConfig { kafka: file.kafka, telemetry: file.telemetry, runtime: file.runtime, tls: file.tls };
    core.validate().map_err(blame)?;
    section.validate().map_err(blame)?;
    let providers = section.providers();
    if !providers.is_empty() && !providers.iter().any(ProviderKeys::runs) {
        // Enabled providers exist (validate checks that), none with its credentials.
        if let Some(key) = providers.iter().filter(|p| p.enabled).find_map(|p| p.missing) {
            return Err(blame(ConfigError::missing_secret(
                key,
                "no enabled provider has its credentials; one without them is disabled",
            )));
        }
    }
    Ok(Config { core, section })
}

fn from_config_error(path: &Path, e: config::ConfigError) -> ConfigError {
    ConfigError::general(format!("cannot load {}: {e}", path.display()))
}

fn path_error(prefix: Option<&str>, path: String, e: config::ConfigError) -> ConfigError {
    // serde_path_to_error gives the path down to the offending key ("." for the root); for an
    // unknown field that path already ends with the field's name.
    let key = match (prefix, path.as_str()) {
        (Some(p), ".") => p.to_string(),
        (Some(p), rest) => format!("{p}.{rest}"),
        (None, rest) => rest.to_string(),
    };
    let message = e.to_string();
    if let Some(field) = unknown_field(&message) {
        let key = if key == "." || key.is_empty() { field.to_string() } else { key };
        return ConfigError::key(key, format!("unknown key ({message})"));
    }
    ConfigError::key(key, message)
}

/// Extracts `x` from serde's "unknown field `x`, expected …".
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.split("unknown field `").nth(1)?;
    rest.split('`').next()
}

#[cfg(test)]
mod tests;
