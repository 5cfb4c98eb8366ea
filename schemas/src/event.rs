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

    /// CRC-64-AVRO fingerprint of [`Event::schema`]. Implementations for the
    /// crate's events return a value computed once.
    fn fingerprint() -> u64 {
        avro::fingerprint(Self::schema())
    }
}

macro_rules! impl_event {
    ($($ty:ident => $embedded:path;)*) => {$(
        impl Event for $ty {
            const NAME: &'static str = concat!("scoutstream.", stringify!($ty));

            fn schema() -> &'static Schema {
                &$embedded.schema
            }

            fn fingerprint() -> u64 {
                $embedded.fingerprint
            }
        }
    )*};
}

impl_event! {
    MatchCompleted => avro::MATCH_COMPLETED;
    PlayerProfile => avro::PLAYER_PROFILE;
    JobRequested => avro::JOB_REQUESTED;
    JobStatusChanged => avro::JOB_STATUS_CHANGED;
    MatchEnriched => avro::MATCH_ENRICHED;
    DeadLetter => avro::DEAD_LETTER;
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
