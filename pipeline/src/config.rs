//! Configuration of the runtime: which bus, how the runner batches and retries.
//!
//! Files are TOML; any key can be overridden from the environment with
//! `SCOUTSTREAM__SECTION__KEY=value` (double underscores separate the path,
//! e.g. `SCOUTSTREAM__BUS__BACKEND=kafka`). Any string key `K` can be read from
//! a file instead with `K_file` (for secrets mounted as files). Values are
//! validated at start-up and every error names the field at fault.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::bus::kafka::{GroupProtocol, KafkaBus, KafkaConfig};
use crate::bus::memory::MemoryBus;
use crate::bus::prefixed::PrefixedBus;
use crate::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use crate::bus::{Bus, BusError};
use crate::runner::RunnerConfig;

pub const ENV_PREFIX: &str = "SCOUTSTREAM__";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("config is not valid TOML or has a wrong field: {0}")]
    Parse(String),
    #[error("config field `{field}`: {problem}")]
    Invalid { field: String, problem: String },
}

impl ConfigError {
    pub fn invalid(field: &str, problem: impl Into<String>) -> Self {
        ConfigError::Invalid {
            field: field.to_string(),
            problem: problem.into(),
        }
    }

    pub fn is_retriable(&self) -> bool {
        false
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Backend {
    Memory,
    Kafka,
    RedisStreams,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BusConfig {
    pub backend: Backend,
    /// Partitions of topics the pipeline creates.
    pub partitions: u32,
    /// Put before every topic name on the wire, so deployments can share a broker.
    pub topic_prefix: String,
    pub kafka: KafkaSection,
    pub redis: RedisSection,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            partitions: 4,
            topic_prefix: String::new(),
            kafka: KafkaSection::default(),
            redis: RedisSection::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSection {
    pub brokers: String,
    pub replication_factor: i32,
    /// Classic protocol only: under `consumer` the broker's
    /// `group.consumer.session.timeout.ms` applies.
    pub session_timeout_secs: u64,
    /// `classic` (cooperative-sticky) or `consumer` (KIP-848).
    pub group_protocol: GroupProtocol,
    pub max_prefetch_kbytes: u32,
    pub enable_idempotence: bool,
    /// Extra librdkafka properties (security, tuning), passed through as given.
    #[serde(deserialize_with = "scalar_strings")]
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSection {
    fn default() -> Self {
        let defaults = KafkaConfig::default();
        Self {
            brokers: defaults.brokers,
            replication_factor: defaults.replication_factor,
            session_timeout_secs: defaults.session_timeout.as_secs(),
            group_protocol: defaults.group_protocol,
            max_prefetch_kbytes: defaults.max_prefetch_kbytes,
            enable_idempotence: defaults.enable_idempotence,
            client: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisSection {
    pub url: String,
    pub key_prefix: String,
    pub max_len: usize,
    pub session_timeout_secs: u64,
    pub claim_idle_secs: u64,
    /// From the process-wide `[redis_tls]` section, not from `[bus.redis]`.
    #[serde(skip)]
    pub tls: crate::redis_tls::RedisTls,
}

impl Default for RedisSection {
    fn default() -> Self {
        let defaults = RedisStreamsConfig::default();
        Self {
            url: defaults.url,
            key_prefix: defaults.key_prefix,
            max_len: defaults.max_len,
            session_timeout_secs: defaults.session_timeout.as_secs(),
            claim_idle_secs: defaults.claim_idle.as_secs(),
            tls: defaults.tls,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RunnerSection {
    pub batch_size: usize,
    pub batch_wait_ms: u64,
    pub max_attempts: u32,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub partition_concurrency: usize,
    pub dead_letter_topic: String,
}

impl Default for RunnerSection {
    fn default() -> Self {
        let defaults = RunnerConfig::new("");
        Self {
            batch_size: defaults.batch_size,
            batch_wait_ms: defaults.batch_wait.as_millis() as u64,
            max_attempts: defaults.max_attempts,
            backoff_initial_ms: defaults.backoff_initial.as_millis() as u64,
            backoff_max_ms: defaults.backoff_max.as_millis() as u64,
            partition_concurrency: defaults.partition_concurrency,
            dead_letter_topic: defaults.dead_letter_topic,
        }
    }
}

impl RunnerSection {
    pub fn for_group(&self, group: &str) -> RunnerConfig {
        RunnerConfig {
            group: group.to_string(),
            batch_size: self.batch_size,
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            max_attempts: self.max_attempts,
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            partition_concurrency: self.partition_concurrency,
            dead_letter_topic: self.dead_letter_topic.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("runner.batch_size", self.batch_size as u64)?;
        positive("runner.max_attempts", u64::from(self.max_attempts))?;
        positive(
            "runner.partition_concurrency",
            self.partition_concurrency as u64,
        )?;
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::invalid(
                "runner.backoff_max_ms",
                "must not be below runner.backoff_initial_ms",
            ));
        }
        not_blank("runner.dead_letter_topic", &self.dead_letter_topic)
    }
}

impl BusConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive("bus.partitions", u64::from(self.partitions))?;
        match self.backend {
            Backend::Memory => Ok(()),
            Backend::Kafka => {
                not_blank("bus.kafka.brokers", &self.kafka.brokers)?;
                positive(
                    "bus.kafka.replication_factor",
                    self.kafka.replication_factor.max(0) as u64,
                )?;
                positive(
                    "bus.kafka.session_timeout_secs",
                    self.kafka.session_timeout_secs,
                )
            }
            Backend::RedisStreams => {
                redis_url("bus.redis.url", &self.redis.url)?;
                positive("bus.redis.max_len", self.redis.max_len as u64)?;
                positive(
                    "bus.redis.session_timeout_secs",
                    self.redis.session_timeout_secs,
                )?;
                positive("bus.redis.claim_idle_secs", self.redis.claim_idle_secs)
            }
        }
    }

    /// Connects the configured backend.
    pub async fn connect(&self) -> Result<Arc<dyn Bus>, BusError> {
        let bus = self.connect_backend().await?;
        if self.topic_prefix.is_empty() {
            return Ok(bus);
        }
        Ok(Arc::new(PrefixedBus::new(bus, self.topic_prefix.clone())))
    }

    async fn connect_backend(&self) -> Result<Arc<dyn Bus>, BusError> {
        Ok(match self.backend {
            Backend::Memory => Arc::new(MemoryBus::new(self.partitions)),
            Backend::Kafka => Arc::new(
                kafka_bus(KafkaConfig {
                    brokers: self.kafka.brokers.clone(),
                    replication_factor: self.kafka.replication_factor,
                    session_timeout: Duration::from_secs(self.kafka.session_timeout_secs),
                    group_protocol: self.kafka.group_protocol,
                    max_prefetch_kbytes: self.kafka.max_prefetch_kbytes,
                    enable_idempotence: self.kafka.enable_idempotence,
                    client_overrides: self.kafka.client.clone(),
                })
                .await?,
            ),
            Backend::RedisStreams => Arc::new(
                RedisStreamsBus::connect(RedisStreamsConfig {
                    url: self.redis.url.clone(),
                    key_prefix: self.redis.key_prefix.clone(),
                    default_partitions: self.partitions,
                    max_len: self.redis.max_len,
                    session_timeout: Duration::from_secs(self.redis.session_timeout_secs),
                    claim_idle: Duration::from_secs(self.redis.claim_idle_secs),
                    tls: self.redis.tls.clone(),
                })
                .await?,
            ),
        })
    }
}

/// A Kafka bus whose brokers accepted this client's credentials.
async fn kafka_bus(config: KafkaConfig) -> Result<KafkaBus, BusError> {
    let bus = KafkaBus::new(config)?;
    bus.check_access().await?;
    Ok(bus)
}

/// librdkafka takes every property as text; accept `linger.ms = 5` as well as `"5"`.
fn scalar_strings<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    use serde::de::Error;
    let raw = BTreeMap::<String, toml::Value>::deserialize(deserializer)?;
    raw.into_iter()
        .map(|(key, value)| match value {
            toml::Value::String(text) => Ok((key, text)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Ok((key, value.to_string()))
            }
            _ => Err(D::Error::custom(format!(
                "`{key}` must be a string, number or boolean"
            ))),
        })
        .collect()
}

pub fn positive(field: &str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(ConfigError::invalid(field, "must be greater than 0"));
    }
    Ok(())
}

pub fn not_blank(field: &str, value: &str) -> Result<(), ConfigError> {
    if value.trim().is_empty() {
        return Err(ConfigError::invalid(field, "must not be empty"));
    }
    Ok(())
}

pub fn redis_url(field: &str, value: &str) -> Result<(), ConfigError> {
    redis::parse_redis_url(value).map(|_| ()).ok_or_else(|| {
        let shown = redact_url(value);
        ConfigError::invalid(field, format!("`{shown}` is not a redis:// URL"))
    })
}

/// `url` fit for a message: the password of its user info and its query
/// (sqlx takes `?password=`) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_len = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_len);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _password)) => format!("{user}:***@{host}"),
            None => format!("***@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, _query)) => format!("{path}?***"),
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// Reads a TOML file (or nothing, for all defaults), applies `SCOUTSTREAM__`
/// environment overrides and deserializes the result.
pub fn load<T: DeserializeOwned>(
    path: Option<&std::path::Path>,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<T, ConfigError> {
    let text = match path {
        Some(path) => std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?,
        None => String::new(),
    };
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| ConfigError::Parse(e.to_string()))?;
    for (name, value) in env {
        if let Some(path) = name.strip_prefix(ENV_PREFIX) {
            apply_override(&mut table, path, &value)?;
        }
    }
    read_file_keys(&mut table, "")?;
    // serde_path_to_error names the field at fault, e.g. `runner.batch_size`.
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| ConfigError::Invalid {
        field: e.path().to_string(),
        problem: e.inner().to_string(),
    })
}

/// Sets `a__b__c` in the table. The value is read as a TOML value when it is one
/// (numbers, booleans, arrays), else taken as a string.
/// `KEY_file = "/path"`, at any depth, stands for `KEY = "<the file's
/// content>"` (one trailing newline dropped): secrets mounted as files
/// (Kubernetes, Docker) stay out of config files and the environment.
fn read_file_keys(table: &mut toml::Table, at: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = table.keys().cloned().collect();
    for key in keys {
        let field = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        match table.get_mut(&key) {
            Some(toml::Value::Table(inner)) => {
                read_file_keys(inner, &field)?;
                continue;
            }
            // Arrays of tables, e.g. `[[jobs.api_tokens]]` with `token_file`.
            Some(toml::Value::Array(items)) => {
                for (i, item) in items.iter_mut().enumerate() {
                    if let toml::Value::Table(inner) = item {
                        read_file_keys(inner, &format!("{field}[{i}]"))?;
                    }
                }
                continue;
            }
            _ => {}
        }
        let Some(target) = key.strip_suffix("_file") else {
            continue;
        };
        let Some(toml::Value::String(path)) = table.remove(&key) else {
            return Err(ConfigError::invalid(&field, "must be a file path"));
        };
        if table.contains_key(target) {
            let problem = format!("set either `{target}` or `{key}`, not both");
            return Err(ConfigError::invalid(&field, problem));
        }
        let content = std::fs::read_to_string(&path)
            .map_err(|e| ConfigError::invalid(&field, format!("cannot read {path}: {e}")))?;
        let value = content.strip_suffix('\n').unwrap_or(&content);
        let value = value.strip_suffix('\r').unwrap_or(value);
        table.insert(target.to_owned(), toml::Value::String(value.to_owned()));
    }
    Ok(())
}

fn apply_override(table: &mut toml::Table, path: &str, value: &str) -> Result<(), ConfigError> {
    let keys: Vec<String> = path.split("__").map(str::to_lowercase).collect();
    let Some((last, parents)) = keys.split_last() else {
        return Ok(());
    };
    let mut current = table;
    for key in parents {
        let entry = current
            .entry(key.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        current = entry.as_table_mut().ok_or_else(|| {
            ConfigError::invalid(&keys.join("."), format!("`{key}` is not a section"))
        })?;
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_string()));
    current.insert(last.clone(), parsed);
    Ok(())
}

#[cfg(test)]
mod file_key_tests {
    use std::io::Write;

    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Secrets {
        jobs: Jobs,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Jobs {
        api_token: String,
    }

    fn secret_file(content: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(content.as_bytes()).expect("written");
        file
    }

    fn load_with(env: &[(&str, String)]) -> Result<Secrets, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.clone()));
        load(None, env)
    }

    #[test]
    fn a_file_key_reads_the_secret_without_its_newline() {
        let file = secret_file("s3cret\n");
        let path = file.path().display().to_string();
        let secrets = load_with(&[("SCOUTSTREAM__JOBS__API_TOKEN_FILE", path)]).expect("loads");
        assert_eq!(secrets.jobs.api_token, "s3cret");
    }

    #[test]
    fn a_missing_file_or_both_keys_name_the_file_field() {
        let missing = (
            "SCOUTSTREAM__JOBS__API_TOKEN_FILE",
            "/nonexistent/token".to_string(),
        );
        let err = load_with(std::slice::from_ref(&missing)).expect_err("no such file");
        assert!(err.to_string().contains("`jobs.api_token_file`"), "{err}");
        let file = secret_file("a");
        let both = [
            (
                "SCOUTSTREAM__JOBS__API_TOKEN_FILE",
                file.path().display().to_string(),
            ),
            ("SCOUTSTREAM__JOBS__API_TOKEN", "b".to_string()),
        ];
        let err = load_with(&both).expect_err("ambiguous");
        assert!(err.to_string().contains("not both"), "{err}");
    }
}

#[cfg(test)]
mod redact_tests {
    use super::redact_url;

    #[test]
    fn passwords_and_queries_are_hidden_hosts_stay() {
        assert_eq!(
            redact_url("postgres://app:s3cret@db:5432/x?sslmode=require&password=p"),
            "postgres://app:***@db:5432/x?***"
        );
        assert_eq!(
            redact_url("redis://:s3cret@cache:6379/0"),
            "redis://:***@cache:6379/0"
        );
        assert_eq!(redact_url("rediss://token@cache"), "rediss://***@cache");
        assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default)]
        bus: BusConfig,
        #[serde(default)]
        runner: RunnerSection,
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_embedded_memory_bus() {
        let sample: Sample = load(None, env(&[])).unwrap();
        assert_eq!(sample.bus.backend, Backend::Memory);
        sample.bus.validate().unwrap();
        sample.runner.validate().unwrap();
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = std::env::temp_dir().join(format!("sscfg-{}", uuid::Uuid::new_v4()));
        std::fs::write(&dir, "[bus]\nbackend = \"kafka\"\npartitions = 3\n").unwrap();
        let sample: Sample = load(
            Some(&dir),
            env(&[
                ("SCOUTSTREAM__BUS__PARTITIONS", "12"),
                ("SCOUTSTREAM__BUS__KAFKA__BROKERS", "k1:9092,k2:9092"),
                ("SCOUTSTREAM__BUS__KAFKA__GROUP_PROTOCOL", "consumer"),
                ("OTHER", "x"),
            ]),
        )
        .unwrap();
        std::fs::remove_file(dir).ok();
        assert_eq!(sample.bus.backend, Backend::Kafka);
        assert_eq!(sample.bus.partitions, 12);
        assert_eq!(sample.bus.kafka.brokers, "k1:9092,k2:9092");
        assert_eq!(sample.bus.kafka.group_protocol, GroupProtocol::Consumer);
    }

    #[test]
    fn an_unknown_group_protocol_names_the_field() {
        let error = load::<Sample>(
            None,
            env(&[("SCOUTSTREAM__BUS__KAFKA__GROUP_PROTOCOL", "eager")]),
        )
        .unwrap_err()
        .to_string();
        assert!(error.contains("`bus.kafka.group_protocol`"), "{error}");
        assert!(
            error.contains("classic") && error.contains("consumer"),
            "{error}"
        );
    }

    #[test]
    fn errors_name_the_field() {
        let unknown =
            load::<Sample>(None, env(&[("SCOUTSTREAM__BUS__BAKEND", "kafka")])).unwrap_err();
        assert!(unknown.to_string().contains("bakend"), "{unknown}");
        let wrong_type =
            load::<Sample>(None, env(&[("SCOUTSTREAM__RUNNER__BATCH_SIZE", "many")])).unwrap_err();
        assert!(
            wrong_type.to_string().contains("`runner.batch_size`"),
            "{wrong_type}"
        );
        let zero: Sample = load(None, env(&[("SCOUTSTREAM__RUNNER__BATCH_SIZE", "0")])).unwrap();
        assert!(zero
            .runner
            .validate()
            .unwrap_err()
            .to_string()
            .contains("runner.batch_size"));
        let bad_url: Sample = load(
            None,
            env(&[
                ("SCOUTSTREAM__BUS__BACKEND", "redis-streams"),
                ("SCOUTSTREAM__BUS__REDIS__URL", "http://x"),
            ]),
        )
        .unwrap();
        assert!(bad_url
            .bus
            .validate()
            .unwrap_err()
            .to_string()
            .contains("bus.redis.url"));
    }
}
