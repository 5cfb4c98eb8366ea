//! The [`Event`] trait: ties each Rust event type to its Avro schema.

use apache_avro::Schema;
use serde::{de::DeserializeOwned, Serialize};

use crate::avro;
use crate::events::{
    DeadLetter, JobRequested, JobStatusChanged, MatchCompleted, MatchEnriched, PlayerProfile,
};

/// A top-level event with an Avro schema.
///
/// `schema()` is the reader schema when decoding and the writer schema when
/// encoding. A consumer pinned to an older schema can implement this trait
/// for its own type, pointing `schema()` at that older version.
pub trait Event: Serialize + DeserializeOwned {
    /// Full Avro name of the record, e.g. `scoutstream.MatchCompleted`.
    const NAME: &'static str;

    fn schema() -> &'static Schema;

    /// Whether Avro written with [`Event::schema`] may be decoded straight
    /// into the type, skipping apache-avro's `Value` tree (what the direct
    /// path reads: records, primitives, strings, arrays, unions).
    const DECODES_DIRECTLY: bool = false;

    /// CRC-64-AVRO fingerprint of [`Event::schema`]. Implementations for the
    /// crate's events return a value computed once.
    fn fingerprint() -> u64 {
        avro::fingerprint(Self::schema())
    }
}

macro_rules! impl_event {
    ($($ty:ident => $embedded:path, $direct:literal;)*) => {$(
        impl Event for $ty {
            const NAME: &'static str = concat!("scoutstream.", stringify!($ty));
            const DECODES_DIRECTLY: bool = $direct;

            fn schema() -> &'static Schema {
                &$embedded.schema
            }

            fn fingerprint() -> u64 {
                $embedded.fingerprint
            }
        }
    )*};
}

// Jobs' enums and dead letters' bytes are not read directly: those events
// are few, and apache-avro decodes them.
impl_event! {
    MatchCompleted => avro::MATCH_COMPLETED, true;
    PlayerProfile => avro::PLAYER_PROFILE, true;
    JobRequested => avro::JOB_REQUESTED, false;
    JobStatusChanged => avro::JOB_STATUS_CHANGED, false;
    MatchEnriched => avro::MATCH_ENRICHED, true;
    DeadLetter => avro::DEAD_LETTER, false;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_consistent<E: Event>() {
        assert_eq!(avro::full_name(E::schema()), E::NAME);
        assert_eq!(E::fingerprint(), avro::fingerprint(E::schema()));
    }

    #[test]
    fn names_and_fingerprints_match_the_schemas() {
        assert_consistent::<MatchCompleted>();
        assert_consistent::<PlayerProfile>();
        assert_consistent::<JobRequested>();
        assert_consistent::<JobStatusChanged>();
        assert_consistent::<MatchEnriched>();
        assert_consistent::<DeadLetter>();
    }
}
