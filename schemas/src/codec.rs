//! The wire codec: events to bytes and back, in three framings.
//!
//! - Single-object Avro: `C3 01`, the writer schema's 8-byte little-endian
//!   CRC-64-AVRO fingerprint, then the Avro body.
//! - Confluent Avro: `00`, a 4-byte big-endian schema registry id, then the
//!   Avro body.
//! - JSON: plain serde JSON of the event type, for publishers outside this
//!   repo; detected by its first non-whitespace byte `{`.
//!
//! Avro bodies are read with the writer schema found in the [`Codec`]'s
//! registry, then resolved against the reader schema ([`Event::schema`]), so
//! data written with an older or newer compatible schema still decodes.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::sync::{Arc, PoisonError, RwLock};

use apache_avro::Schema;

use crate::avro;
use crate::direct;
use crate::error::CodecError;
use crate::event::Event;

/// Cap on the length prefixes apache-avro accepts while decoding (bytes of a
/// string, items of an array block): a forged prefix fails instead of
/// reserving gigabytes. Large enough for any real event, dead letters
/// included (Kafka's default message limit is 1 MB). An array block below the
/// cap still reserves up to 16 Mi values of 56 bytes, as address space that a
/// short payload never touches.
///
/// apache-avro keeps the first value it is given for the whole process; the
/// codec sets it as soon as a [`Codec`] is built, and before each decode.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

const SINGLE_OBJECT_MAGIC: [u8; 2] = [0xC3, 0x01];
const SINGLE_OBJECT_HEADER_LEN: usize = 10;
const CONFLUENT_MAGIC: u8 = 0x00;
const CONFLUENT_HEADER_LEN: usize = 5;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// How [`Codec::encode`] frames an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    SingleObject,
    /// The id must be registered with [`Codec::register_confluent`]: the
    /// schema behind it is the writer schema.
    Confluent {
        schema_id: u32,
    },
    /// Confluent framing with the id a schema registry gave the event's
    /// current schema (see [`Codec::write_with_schema_id`]).
    Registered,
    Json,
}

/// The framing of some bytes, as read from their header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    SingleObject { fingerprint: u64 },
    Confluent { schema_id: u32 },
    Json,
}

/// A writer schema the codec knows, with its fingerprint computed once.
struct Known {
    schema: Schema,
    fingerprint: u64,
    /// Its named types, for the direct path.
    names: direct::Names,
}

/// Encodes and decodes events; holds the registry of known writer schemas.
///
/// Cheap to clone. Clones share their Confluent ids: an id one clone learns
/// from a schema registry (a consumer's resolver) decodes in every clone (the
/// handlers'). Fingerprints are fixed at build time and copied.
#[derive(Clone)]
pub struct Codec {
    by_fingerprint: HashMap<u64, Arc<Known>>,
    confluent: Arc<ConfluentIds>,
}

/// Registry ids: the writer schema behind each id, and the id to write each
/// record with. Written rarely (an id is learned once), read per event.
#[derive(Default)]
struct ConfluentIds {
    by_schema_id: RwLock<HashMap<u32, Arc<Known>>>,
    for_writing: RwLock<HashMap<String, u32>>,
}

impl Default for Codec {
    /// Knows every current schema and every historic one (MatchCompleted v1)
    /// by fingerprint. Confluent ids are the registry's to assign, so none
    /// are known until [`Codec::register_confluent`].
    fn default() -> Self {
        let mut codec = Self::empty();
        let all = avro::current_schemas()
            .into_iter()
            .chain(avro::historic_schemas());
        for schema in all {
            codec.register_schema(schema.clone());
        }
        codec
    }
}

impl fmt::Debug for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ids: Vec<u32> = read(&self.confluent.by_schema_id).keys().copied().collect();
        ids.sort_unstable();
        f.debug_struct("Codec")
            .field("fingerprints", &self.by_fingerprint.len())
            .field("schema_ids", &ids)
            .finish()
    }
}

impl Codec {
    /// A codec that knows no writer schema: every Avro payload is unknown.
    pub fn empty() -> Self {
        limit_allocations();
        Self {
            by_fingerprint: HashMap::new(),
            confluent: Arc::default(),
        }
    }

    /// Makes single-object payloads written with `schema` decodable.
    /// Returns its fingerprint.
    pub fn register_schema(&mut self, schema: Schema) -> u64 {
        let known = Arc::new(Known::new(schema));
        let fingerprint = known.fingerprint;
        self.by_fingerprint.insert(fingerprint, known);
        fingerprint
    }

    /// Binds a Confluent schema registry id to its schema, for decoding and
    /// for [`Encoding::Confluent`], in this codec and all its clones.
    /// Returns the schema's fingerprint.
    pub fn register_confluent(&self, schema_id: u32, schema: Schema) -> u64 {
        let known = Arc::new(Known::new(schema));
        let fingerprint = known.fingerprint;
        write(&self.confluent.by_schema_id).insert(schema_id, known);
        fingerprint
    }

    /// Like [`Codec::register_confluent`], and makes `schema_id` the id that
    /// [`Encoding::Registered`] writes records of the schema's name with.
    pub fn write_with_schema_id(&self, schema_id: u32, schema: Schema) {
        let name = avro::full_name(&schema);
        self.register_confluent(schema_id, schema);
        write(&self.confluent.for_writing).insert(name, schema_id);
    }

    /// Whether a Confluent-framed payload with this id has a writer schema.
    pub fn knows_schema_id(&self, schema_id: u32) -> bool {
        read(&self.confluent.by_schema_id).contains_key(&schema_id)
    }

    /// The id [`Encoding::Registered`] writes records named `name` with.
    pub fn schema_id_for(&self, name: &str) -> Option<u32> {
        read(&self.confluent.for_writing).get(name).copied()
    }

    /// Reads the framing of `bytes` without decoding the body.
    pub fn describe(bytes: &[u8]) -> Result<Format, CodecError> {
        split(bytes).map(|(format, _body)| format)
    }

    pub fn encode<E: Event>(&self, event: &E, encoding: Encoding) -> Result<Vec<u8>, CodecError> {
        match encoding {
            Encoding::SingleObject => {
                let mut out = single_object_header(E::fingerprint());
                write_avro(event, E::schema(), &mut out)?;
                Ok(out)
            }
            Encoding::Confluent { schema_id } => self.encode_confluent(event, schema_id),
            Encoding::Registered => {
                let schema_id = self
                    .schema_id_for(E::NAME)
                    .ok_or(CodecError::NotRegistered(E::NAME))?;
                self.encode_confluent(event, schema_id)
            }
            Encoding::Json => serde_json::to_vec(event).map_err(|e| CodecError::encode(E::NAME, e)),
        }
    }

    fn encode_confluent<E: Event>(&self, event: &E, schema_id: u32) -> Result<Vec<u8>, CodecError> {
        let writer = self.confluent_writer(schema_id)?;
        expect_name::<E>(&writer.schema)?;
        let mut out = confluent_header(schema_id);
        write_avro(event, &writer.schema, &mut out)?;
        Ok(out)
    }

    /// Decodes any of the three formats into `E`, reading Avro through
    /// `E::schema()`.
    pub fn decode<E: Event>(&self, bytes: &[u8]) -> Result<E, CodecError> {
        self.decode_through(bytes, E::schema(), Some(E::fingerprint()))
    }

    /// Like [`Codec::decode`], but resolves Avro through `reader` instead of
    /// `E::schema()`, e.g. an older schema, as a consumer still on it would.
    /// Fields `reader` lacks come out as `E`'s serde defaults. JSON ignores
    /// `reader`. The writer must still be a record named `E::NAME`.
    pub fn decode_with_reader_schema<E: Event>(
        &self,
        bytes: &[u8],
        reader: &Schema,
    ) -> Result<E, CodecError> {
        self.decode_through(bytes, reader, None)
    }

    fn decode_through<E: Event>(
        &self,
        bytes: &[u8],
        reader: &Schema,
        reader_fingerprint: Option<u64>,
    ) -> Result<E, CodecError> {
        let (format, body) = split(bytes)?;
        match format {
            Format::Json => decode_json(body),
            Format::SingleObject { fingerprint } => {
                let writer = self.fingerprint_writer(fingerprint)?;
                decode_written_with(writer, body, reader, reader_fingerprint)
            }
            Format::Confluent { schema_id } => {
                let writer = self.confluent_writer(schema_id)?;
                decode_written_with(&writer, body, reader, reader_fingerprint)
            }
        }
    }

    fn fingerprint_writer(&self, fingerprint: u64) -> Result<&Known, CodecError> {
        self.by_fingerprint
            .get(&fingerprint)
            .map(Arc::as_ref)
            .ok_or(CodecError::UnknownFingerprint(fingerprint))
    }

    fn confluent_writer(&self, schema_id: u32) -> Result<Arc<Known>, CodecError> {
        read(&self.confluent.by_schema_id)
            .get(&schema_id)
            .cloned()
            .ok_or(CodecError::UnknownSchemaId(schema_id))
    }
}

fn decode_written_with<E: Event>(
    writer: &Known,
    body: &[u8],
    reader: &Schema,
    reader_fingerprint: Option<u64>,
) -> Result<E, CodecError> {
    expect_name::<E>(&writer.schema)?;
    let same_schema = reader_fingerprint == Some(writer.fingerprint);
    if same_schema && E::DECODES_DIRECTLY {
        // Straight into the struct, about six times faster. Input it
        // refuses goes the apache-avro way too, so errors read as before.
        if let Ok(event) = direct::decode(&writer.schema, &writer.names, body) {
            return Ok(event);
        }
    }
    // Resolution costs a pass over the value; skip it when nothing differs.
    let reader = (!same_schema).then_some(reader);
    decode_avro(&writer.schema, body, reader)
}

// A panic while holding one of these locks cannot leave a map half-written
// (single inserts), so a poisoned lock is still sound to use.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

impl Known {
    fn new(schema: Schema) -> Self {
        let fingerprint = avro::fingerprint(&schema);
        let names = direct::names_of(&schema);
        Self {
            schema,
            fingerprint,
            names,
        }
    }
}

fn limit_allocations() {
    apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
}

fn single_object_header(fingerprint: u64) -> Vec<u8> {
    let mut out = SINGLE_OBJECT_MAGIC.to_vec();
    out.extend_from_slice(&fingerprint.to_le_bytes());
    out
}

fn confluent_header(schema_id: u32) -> Vec<u8> {
    let mut out = vec![CONFLUENT_MAGIC];
    out.extend_from_slice(&schema_id.to_be_bytes());
    out
}

/// Splits `bytes` into its format and the body after the header.
fn split(bytes: &[u8]) -> Result<(Format, &[u8]), CodecError> {
    match bytes {
        [] => Err(CodecError::Empty),
        [0xC3] | [0xC3, 0x01, ..] => split_single_object(bytes),
        [CONFLUENT_MAGIC, ..] => split_confluent(bytes),
        _ => split_json(bytes),
    }
}

fn split_single_object(bytes: &[u8]) -> Result<(Format, &[u8]), CodecError> {
    let (header, body) = header::<SINGLE_OBJECT_HEADER_LEN>(bytes)?;
    let [_magic, _version, fingerprint @ ..] = *header;
    let fingerprint = u64::from_le_bytes(fingerprint);
    Ok((Format::SingleObject { fingerprint }, body))
}

fn split_confluent(bytes: &[u8]) -> Result<(Format, &[u8]), CodecError> {
    let (header, body) = header::<CONFLUENT_HEADER_LEN>(bytes)?;
    let [_magic, id @ ..] = *header;
    let schema_id = u32::from_be_bytes(id);
    Ok((Format::Confluent { schema_id }, body))
}

/// JSON publishers may send leading whitespace or a UTF-8 byte order mark.
fn split_json(bytes: &[u8]) -> Result<(Format, &[u8]), CodecError> {
    let text = bytes
        .strip_prefix(UTF8_BOM)
        .unwrap_or(bytes)
        .trim_ascii_start();
    match text.first() {
        None => Err(CodecError::Empty),
        Some(b'{') => Ok((Format::Json, text)),
        Some(&other) => Err(CodecError::UnknownFormat(other)),
    }
}

fn header<const N: usize>(bytes: &[u8]) -> Result<(&[u8; N], &[u8]), CodecError> {
    bytes.split_first_chunk::<N>().ok_or(CodecError::Truncated {
        expected: N,
        got: bytes.len(),
    })
}

fn expect_name<E: Event>(writer: &Schema) -> Result<(), CodecError> {
    let found = avro::full_name(writer);
    if found == E::NAME {
        Ok(())
    } else {
        Err(CodecError::WrongType {
            expected: E::NAME,
            found,
        })
    }
}

fn write_avro<E: Event>(event: &E, writer: &Schema, out: &mut Vec<u8>) -> Result<(), CodecError> {
    let fail = |e: apache_avro::Error| CodecError::encode(E::NAME, e);
    // Resolving picks union branches and enum indexes by the writer schema,
    // which may be an older registered version that drops newer fields.
    let value = apache_avro::to_value(event)
        .and_then(|value| value.resolve(writer))
        .map_err(fail)?;
    out.extend(apache_avro::to_avro_datum(writer, value).map_err(fail)?);
    Ok(())
}

fn decode_avro<E: Event>(
    writer: &Schema,
    body: &[u8],
    reader: Option<&Schema>,
) -> Result<E, CodecError> {
    limit_allocations();
    let mut body = BodyReader::new(body);
    let value = apache_avro::from_avro_datum(writer, &mut body, reader)
        .map_err(|e| CodecError::from_avro(&e))?;
    body.finish()?;
    apache_avro::from_value(&value).map_err(|e| CodecError::from_avro(&e))
}

/// An Avro body that remembers whether the decoder asked for more bytes than
/// there were. apache-avro 0.21 reads a union index cut off by the end of
/// input as null, so a truncated body can otherwise decode "successfully".
struct BodyReader<'a> {
    rest: &'a [u8],
    overran: bool,
}

impl<'a> BodyReader<'a> {
    fn new(body: &'a [u8]) -> Self {
        Self {
            rest: body,
            overran: false,
        }
    }

    /// A datum must use the body exactly: no more, no less.
    fn finish(self) -> Result<(), CodecError> {
        if self.overran {
            return Err(CodecError::InvalidAvro(
                "truncated body: it ends inside a value".into(),
            ));
        }
        match self.rest.len() {
            0 => Ok(()),
            count => Err(CodecError::TrailingBytes { count }),
        }
    }
}

impl io::Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.overran |= self.rest.is_empty() && !buf.is_empty();
        self.rest.read(buf)
    }
}

fn decode_json<E: Event>(body: &[u8]) -> Result<E, CodecError> {
    serde_json::from_slice(body).map_err(|e| CodecError::from_json(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_each_framing() {
        let single = [0xC3, 0x01, 1, 0, 0, 0, 0, 0, 0, 0x80, 0xAA];
        let fingerprint = 0x8000_0000_0000_0001;
        assert_eq!(
            Codec::describe(&single),
            Ok(Format::SingleObject { fingerprint })
        );
        let confluent = [0x00, 0, 0, 1, 2, 0xAA];
        assert_eq!(
            Codec::describe(&confluent),
            Ok(Format::Confluent { schema_id: 258 })
        );
        assert_eq!(Codec::describe(b"\xEF\xBB\xBF \n{}"), Ok(Format::Json));
    }

    #[test]
    fn rejects_what_is_no_known_framing() {
        assert_eq!(Codec::describe(b""), Err(CodecError::Empty));
        assert_eq!(Codec::describe(b" \t\r\n"), Err(CodecError::Empty));
        assert_eq!(
            Codec::describe(b"[1]"),
            Err(CodecError::UnknownFormat(b'['))
        );
        assert_eq!(
            Codec::describe(&[0xC3, 0x02, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(CodecError::UnknownFormat(0xC3))
        );
        let truncated = CodecError::Truncated {
            expected: SINGLE_OBJECT_HEADER_LEN,
            got: 1,
        };
        assert_eq!(Codec::describe(&[0xC3]), Err(truncated));
    }

    #[test]
    fn building_a_codec_caps_avro_allocations() {
        let _codec = Codec::empty();
        assert_eq!(
            apache_avro::util::max_allocation_bytes(usize::MAX),
            MAX_ALLOCATION_BYTES
        );
    }
}
