//! [`SchemaResolver`]: makes the Confluent ids of a batch decodable before a
//! handler decodes it, and [`register_writers`], what a producer does first.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use apache_avro::Schema;

use super::{topic_schema, value_subject, RegistryClient, RegistryError};
use crate::codec::{Codec, Format};

/// How long an id the registry did not know stays unknown before it is asked
/// again: a burst of such events costs one request, and a schema registered
/// late is still found.
const UNKNOWN_ID_RECHECK: Duration = Duration::from_secs(30);

/// What one [`SchemaResolver::resolve`] call found out.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Ids fetched from the registry and now decodable.
    pub learned: Vec<u32>,
    /// Ids the registry does not know, or whose schema is not Avro this
    /// build can parse: their events fail to decode and become dead letters.
    pub unknown: Vec<(u32, String)>,
}

pub struct SchemaResolver {
    client: Arc<RegistryClient>,
    codec: Codec,
    unknown_since: Mutex<HashMap<u32, Instant>>,
}

impl SchemaResolver {
    /// Ids learned go into `codec`, and so into every clone of it.
    pub fn new(client: Arc<RegistryClient>, codec: Codec) -> Self {
        Self {
            client,
            codec,
            unknown_since: Mutex::default(),
        }
    }

    pub fn codec(&self) -> &Codec {
        &self.codec
    }

    pub fn client(&self) -> &RegistryClient {
        &self.client
    }

    /// Fetches the writer schema of each Confluent id among `payloads` that
    /// the codec does not know yet. Fails only when the registry cannot be
    /// asked: the caller waits and tries again rather than dead-letter good
    /// events during a registry outage.
    pub async fn resolve<'a>(
        &self,
        payloads: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<Resolved, RegistryError> {
        let mut resolved = Resolved::default();
        for id in self.ids_to_fetch(payloads) {
            match self.fetch(id).await? {
                Ok(schema) => {
                    self.codec.register_confluent(id, schema);
                    resolved.learned.push(id);
                }
                Err(reason) => {
                    lock(&self.unknown_since).insert(id, Instant::now());
                    resolved.unknown.push((id, reason));
                }
            }
        }
        Ok(resolved)
    }

    fn ids_to_fetch<'a>(&self, payloads: impl IntoIterator<Item = &'a [u8]>) -> BTreeSet<u32> {
        let unknown_since = lock(&self.unknown_since);
        payloads
            .into_iter()
            .filter_map(|payload| match Codec::describe(payload) {
                Ok(Format::Confluent { schema_id }) => Some(schema_id),
                _ => None,
            })
            .filter(|id| !self.codec.knows_schema_id(*id))
            .filter(|id| {
                unknown_since
                    .get(id)
                    .is_none_or(|since| since.elapsed() >= UNKNOWN_ID_RECHECK)
            })
            .collect()
    }

    /// The parsed schema, or why the id cannot be used.
    async fn fetch(&self, id: u32) -> Result<Result<Schema, String>, RegistryError> {
        let text = match self.client.schema_by_id(id).await {
            Ok(Some(text)) => text,
            Ok(None) => return Ok(Err("the schema registry does not know this id".into())),
            Err(RegistryError::BadResponse { message, .. }) => return Ok(Err(message)),
            Err(other) => return Err(other),
        };
        Ok(Schema::parse_str(&text).map_err(|e| format!("its schema does not parse: {e}")))
    }
}

/// Registers the current value schema of each topic under
/// `{topic_prefix}{topic}-value` and makes `codec` write those records with
/// the ids the registry returned ([`crate::Encoding::Registered`]).
pub async fn register_writers(
    client: &RegistryClient,
    codec: &Codec,
    topic_prefix: &str,
    topics: &[&str],
) -> Result<(), RegistryError> {
    for topic in topics {
        let Some(entry) = topic_schema(topic) else {
            return Err(RegistryError::Config {
                field: "schema_registry",
                problem: format!("no schema is known for topic `{topic}`"),
            });
        };
        let subject = value_subject(&format!("{topic_prefix}{topic}"));
        let id = client.register(&subject, entry.current).await?;
        let schema = Schema::parse_str(entry.current).map_err(|e| RegistryError::Config {
            field: "schema_registry",
            problem: format!("{}: {e}", entry.file),
        })?;
        codec.write_with_schema_id(id, schema);
    }
    Ok(())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
