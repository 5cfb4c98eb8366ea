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

use serde::Deserialize;

use crate::bus::kafka::{GroupProtocol, KafkaConfig};
use crate::bus::memory::MemoryBus;
use crate::bus::prefixed::PrefixedBus;
use crate::bus::redis_streams::RedisStreamsConfig;
use crate::bus::{Bus, BusError};
use crate::runner::RunnerConfig;

mod load;

pub use load::{load, ENV_PREFIX};

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
    /// Unset: the group's own default (see [`RunnerSection::for_group`]).
    pub batch_size: Option<usize>,
    pub batch_wait_ms: u64,
    /// Unset: a retriable error is retried until it succeeds (the partition
    /// waits). A number: attempts before the delivery is dead-lettered.
    pub max_attempts: Option<u32>,
    pub backoff_initial_ms: u64,
    pub backoff_max_ms: u64,
    pub partition_concurrency: usize,
    pub dead_letter_topic: String,
}

impl Default for RunnerSection {
    fn default() -> Self {
        let defaults = RunnerConfig::new("");
        Self {
            batch_size: None,
            batch_wait_ms: defaults.batch_wait.as_millis() as u64,
            max_attempts: None,
            backoff_initial_ms: defaults.backoff_initial.as_millis() as u64,
            backoff_max_ms: defaults.backoff_max.as_millis() as u64,
            partition_concurrency: defaults.partition_concurrency,
            dead_letter_topic: defaults.dead_letter_topic,
        }
    }
}

impl RunnerSection {
    /// The runner settings of `group`, whose batches hold `default_batch_size`
    /// deliveries unless `batch_size` is set.
    pub fn for_group(&self, group: &str, default_batch_size: usize) -> RunnerConfig {
        RunnerConfig {
            group: group.to_string(),
            batch_size: self.batch_size.unwrap_or(default_batch_size),
            batch_wait: Duration::from_millis(self.batch_wait_ms),
            max_attempts: self
                .max_attempts
                .unwrap_or(crate::runner::UNLIMITED_ATTEMPTS),
            backoff_initial: Duration::from_millis(self.backoff_initial_ms),
            backoff_max: Duration::from_millis(self.backoff_max_ms),
            partition_concurrency: self.partition_concurrency,
            dead_letter_topic: self.dead_letter_topic.clone(),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(batch_size) = self.batch_size {
            positive("runner.batch_size", batch_size as u64)?;
        }
        if let Some(attempts) = self.max_attempts {
            positive("runner.max_attempts", u64::from(attempts))?;
        }
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
            // A section's own mistakes first, then whether this build has the backend.
            Backend::Kafka => {
                not_blank("bus.kafka.brokers", &self.kafka.brokers)?;
                positive(
                    "bus.kafka.replication_factor",
                    self.kafka.replication_factor.max(0) as u64,
                )?;
                positive(
                    "bus.kafka.session_timeout_secs",
                    self.kafka.session_timeout_secs,
                )?;
                built_in(cfg!(feature = "kafka"), KAFKA_NOT_BUILT)
            }
            Backend::RedisStreams => {
                redis_url("bus.redis.url", &self.redis.url)?;
                positive("bus.redis.max_len", self.redis.max_len as u64)?;
                positive(
                    "bus.redis.session_timeout_secs",
                    self.redis.session_timeout_secs,
                )?;
                positive("bus.redis.claim_idle_secs", self.redis.claim_idle_secs)?;
                built_in(cfg!(feature = "redis-streams"), REDIS_STREAMS_NOT_BUILT)
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
            Backend::Kafka => {
                kafka_bus(KafkaConfig {
                    brokers: self.kafka.brokers.clone(),
                    replication_factor: self.kafka.replication_factor,
                    session_timeout: Duration::from_secs(self.kafka.session_timeout_secs),
                    group_protocol: self.kafka.group_protocol,
                    max_prefetch_kbytes: self.kafka.max_prefetch_kbytes,
                    enable_idempotence: self.kafka.enable_idempotence,
                    client_overrides: self.kafka.client.clone(),
                })
                .await?
            }
            Backend::RedisStreams => {
                redis_streams_bus(RedisStreamsConfig {
                    url: self.redis.url.clone(),
                    key_prefix: self.redis.key_prefix.clone(),
                    default_partitions: self.partitions,
                    max_len: self.redis.max_len,
                    session_timeout: Duration::from_secs(self.redis.session_timeout_secs),
                    claim_idle: Duration::from_secs(self.redis.claim_idle_secs),
                    tls: self.redis.tls.clone(),
                })
                .await?
            }
        })
    }
}

/// A Kafka bus whose brokers accepted this client's credentials.
#[cfg(feature = "kafka")]
async fn kafka_bus(config: KafkaConfig) -> Result<Arc<dyn Bus>, BusError> {
    let bus = crate::bus::kafka::KafkaBus::new(config)?;
    bus.check_access().await?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "kafka"))]
async fn kafka_bus(_: KafkaConfig) -> Result<Arc<dyn Bus>, BusError> {
    Err(BusError::Config(KAFKA_NOT_BUILT.into()))
}

/// Why `bus.backend = "kafka"` is refused by a build without the backend.
pub const KAFKA_NOT_BUILT: &str =
    "this build has no Kafka backend: build scoutstream with the cargo feature `kafka` (on by default)";

#[cfg(feature = "redis-streams")]
async fn redis_streams_bus(config: RedisStreamsConfig) -> Result<Arc<dyn Bus>, BusError> {
    let bus = crate::bus::redis_streams::RedisStreamsBus::connect(config).await?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "redis-streams"))]
async fn redis_streams_bus(_: RedisStreamsConfig) -> Result<Arc<dyn Bus>, BusError> {
    Err(BusError::Config(REDIS_STREAMS_NOT_BUILT.into()))
}

/// Why `bus.backend = "redis-streams"` is refused by a build without the backend.
pub const REDIS_STREAMS_NOT_BUILT: &str = "this build has no Redis Streams backend: build scoutstream with the cargo feature `redis-streams` (on by default)";

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

/// `bus.backend` names a backend this build left out.
fn built_in(present: bool, why_not: &str) -> Result<(), ConfigError> {
    if present {
        Ok(())
    } else {
        Err(ConfigError::invalid("bus.backend", why_not))
    }
}

/// A `[redis_tls]`-shaped section (`section` names it in the error): a client
/// certificate without its key, or the reverse, is a mistake to report at start-up.
pub fn redis_tls(section: &str, tls: &crate::redis_tls::RedisTls) -> Result<(), ConfigError> {
    if tls.cert.is_empty() != tls.key.is_empty() {
        let missing = if tls.cert.is_empty() { "cert" } else { "key" };
        return Err(ConfigError::invalid(
            &format!("{section}.{missing}"),
            "a client certificate needs both `cert` and `key`",
        ));
    }
    Ok(())
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
mod tests;
