//! Schema registry support: Confluent-framed Avro whose writer schemas live in
//! a registry that speaks the Confluent Schema Registry REST API (Confluent's
//! own, or Apicurio Registry at `/apis/ccompat/v7`).
//!
//! - [`client`]: [`RegistryClient`], the REST calls, with timeouts, retries
//!   and a cache so a known id or subject costs no round trip.
//! - [`resolver`]: [`SchemaResolver`], what a consumer runs before decoding:
//!   fetches the writer schema of every id it has not seen into the [`Codec`].
//! - [`compat`]: backward-compatibility checks of the schemas this build
//!   carries, against the versions kept in `schemas/avro/v1/` or registered.
//!
//! Subjects follow Confluent's default TopicNameStrategy: the value schema of
//! wire topic `t` is subject `t-value`, so a standard Confluent serializer and
//! this pipeline agree on where a topic's schema lives.
//!
//! [`Codec`]: crate::Codec

pub mod client;
pub mod compat;
pub mod resolver;

use serde::Deserialize;

use crate::avro;
use crate::topics;

pub use client::{Compatibility, RegistryClient, RegistryError, SubjectVersion};
pub use resolver::{register_writers, Resolved, SchemaResolver};

/// The `[schema_registry]` section of the configuration. An empty `url`
/// means no registry: single-object Avro, ids known only to the build.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Base of the Confluent-compatible API, e.g. `http://registry:8081` or
    /// Apicurio's `http://registry:8080/apis/ccompat/v7`.
    pub url: String,
    /// Limit on each HTTP request, connection included.
    pub timeout_ms: u64,
    /// Tries per call on network errors and 5xx answers, the first included.
    pub max_attempts: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            timeout_ms: 5_000,
            max_attempts: 4,
        }
    }
}

impl RegistryConfig {
    pub fn is_enabled(&self) -> bool {
        !self.url.is_empty()
    }

    /// Names the field at fault, as the other sections do.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.is_enabled()
            && !(self.url.starts_with("http://") || self.url.starts_with("https://"))
        {
            return Err((
                "schema_registry.url",
                format!("`{}` is not an http:// or https:// URL", self.url),
            ));
        }
        if self.timeout_ms == 0 {
            return Err(("schema_registry.timeout_ms", "must be positive".into()));
        }
        if self.max_attempts == 0 {
            return Err(("schema_registry.max_attempts", "must be at least 1".into()));
        }
        Ok(())
    }
}

/// The value schema of one topic: the `.avsc` this build writes with and the
/// earlier versions whose data may still be on the topic.
#[derive(Debug, Clone, Copy)]
pub struct TopicSchema {
    pub topic: &'static str,
    /// File under `schemas/avro/`.
    pub file: &'static str,
    pub current: &'static str,
    /// `(file under schemas/avro/, text)`, oldest first.
    pub earlier: &'static [(&'static str, &'static str)],
}

/// Every topic's value schema. Each `.avsc` under `schemas/avro/` appears
/// once (a test checks the files against this list).
pub const TOPIC_SCHEMAS: [TopicSchema; 6] = [
    TopicSchema {
        topic: topics::MATCHES,
        file: "MatchCompleted.avsc",
        current: avro::MATCH_COMPLETED_AVSC,
        earlier: &[("v1/MatchCompleted.avsc", avro::MATCH_COMPLETED_V1_AVSC)],
    },
    TopicSchema {
        topic: topics::PLAYERS,
        file: "PlayerProfile.avsc",
        current: avro::PLAYER_PROFILE_AVSC,
        earlier: &[],
    },
    TopicSchema {
        topic: topics::JOBS,
        file: "JobRequested.avsc",
        current: avro::JOB_REQUESTED_AVSC,
        earlier: &[("v1/JobRequested.avsc", avro::JOB_REQUESTED_V1_AVSC)],
    },
    TopicSchema {
        topic: topics::JOB_STATUS,
        file: "JobStatusChanged.avsc",
        current: avro::JOB_STATUS_CHANGED_AVSC,
        earlier: &[("v1/JobStatusChanged.avsc", avro::JOB_STATUS_CHANGED_V1_AVSC)],
    },
    TopicSchema {
        topic: topics::MATCHES_ENRICHED,
        file: "MatchEnriched.avsc",
        current: avro::MATCH_ENRICHED_AVSC,
        earlier: &[],
    },
    TopicSchema {
        topic: topics::DEAD_LETTERS,
        file: "DeadLetter.avsc",
        current: avro::DEAD_LETTER_AVSC,
        earlier: &[],
    },
];

/// The schema entry of `topic` (a name without the deployment's prefix).
pub fn topic_schema(topic: &str) -> Option<&'static TopicSchema> {
    TOPIC_SCHEMAS.iter().find(|entry| entry.topic == topic)
}

/// The subject of a wire topic's values (TopicNameStrategy).
pub fn value_subject(wire_topic: &str) -> String {
    format!("{wire_topic}-value")
}
