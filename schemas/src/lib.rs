//! Scoutstream's event contracts. The Avro schemas in `schemas/avro/` are the
//! source of truth; the Rust types mirror them.
//!
//! - [`avro`]: the `.avsc` files, embedded and parsed once, and fingerprints.
//! - [`events`]: typed events, one struct per `.avsc` file.
//! - [`event`]: the [`Event`] trait tying each type to its schema.
//! - [`codec`]: [`Codec`], encoding and decoding single-object Avro,
//!   Confluent-framed Avro and JSON, with schema resolution.
//! - `direct` (private): Avro decoded straight into the struct, the codec's
//!   fast path for events written with their own schema.
//! - [`error`]: [`CodecError`], one variant per way decoding fails.
//! - [`reference`](mod@reference): Dota 2 reference data (heroes, items, modes, regions).
//! - [`topics`]: topic names and partitioning keys.
//! - [`routing`]: what each consumer group reads ([`GroupEvents`]): its topics
//!   and the event each carries, decoded in one place.
//! - [`registry`]: a Confluent-compatible schema registry client, the
//!   resolver consumers run before decoding, and compatibility checks.
pub mod avro;
pub mod codec;
mod direct;
pub mod error;
pub mod event;
pub mod events;
pub mod reference;
pub mod registry;
pub mod routing;
pub mod topics;

/// The apache-avro this crate is built on, so callers name the same `Schema`.
pub use apache_avro;
pub use codec::{Codec, Encoding, Format, MAX_ALLOCATION_BYTES};
pub use error::CodecError;
pub use event::Event;
pub use events::*;
pub use routing::{DecodeError, GroupEvents, ScoutEvent};
