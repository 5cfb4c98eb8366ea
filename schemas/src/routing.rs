//! What a consumer group reads, declared once: its topics and the event each
//! carries. The runner's typed layer (`pipeline::runner::typed`) decodes every
//! delivery through [`GroupEvents::decode`], so routing by topic and decoding
//! live here, not in each group, and the process subscribes to exactly
//! [`GroupEvents::TOPICS`].

use crate::codec::Codec;
use crate::error::CodecError;
use crate::event::Event;
use crate::events::{JobRequested, MatchCompleted, PlayerProfile};
use crate::topics;

/// The events of a group's topics, decoded.
pub trait GroupEvents: Sized + Send + Sync + 'static {
    /// The topics the group subscribes to.
    const TOPICS: &'static [&'static str];

    /// The event `payload` carries on `topic`.
    fn decode(codec: &Codec, topic: &str, payload: &[u8]) -> Result<Self, DecodeError>;
}

/// Why a delivery is not an event of its group; never retriable: the bytes
/// and the topic stay what they are.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    // The codec's reason first, as operators read it in `dlq list`.
    #[error("{source} (reading {event} from `{topic}`)")]
    Codec {
        event: &'static str,
        topic: String,
        #[source]
        source: CodecError,
    },
    #[error("`{topic}` is not a topic of this group (it reads {expected:?})")]
    Topic {
        topic: String,
        expected: &'static [&'static str],
    },
}

impl DecodeError {
    /// `DeadLetter::error_kind` of the failure.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::Codec { .. } => "decode",
            DecodeError::Topic { .. } => "unknown_topic",
        }
    }

    pub fn is_retriable(&self) -> bool {
        false
    }
}

/// A match or a player's profile: what the cache and persist groups read.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoutEvent {
    Match(MatchCompleted),
    Profile(PlayerProfile),
}

impl GroupEvents for ScoutEvent {
    const TOPICS: &'static [&'static str] = &[topics::MATCHES, topics::PLAYERS];

    fn decode(codec: &Codec, topic: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        match topic {
            topics::MATCHES => decode_as(codec, topic, payload).map(ScoutEvent::Match),
            topics::PLAYERS => decode_as(codec, topic, payload).map(ScoutEvent::Profile),
            _ => Err(not_among::<Self>(topic)),
        }
    }
}

/// The enrich group reads matches.
impl GroupEvents for MatchCompleted {
    const TOPICS: &'static [&'static str] = &[topics::MATCHES];

    fn decode(codec: &Codec, topic: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        only_topic::<Self>(topic)?;
        decode_as(codec, topic, payload)
    }
}

/// The jobs group reads job requests.
impl GroupEvents for JobRequested {
    const TOPICS: &'static [&'static str] = &[topics::JOBS];

    fn decode(codec: &Codec, topic: &str, payload: &[u8]) -> Result<Self, DecodeError> {
        only_topic::<Self>(topic)?;
        decode_as(codec, topic, payload)
    }
}

fn decode_as<E: Event>(codec: &Codec, topic: &str, payload: &[u8]) -> Result<E, DecodeError> {
    codec.decode(payload).map_err(|source| DecodeError::Codec {
        event: E::NAME,
        topic: topic.to_string(),
        source,
    })
}

fn only_topic<G: GroupEvents>(topic: &str) -> Result<(), DecodeError> {
    if G::TOPICS.contains(&topic) {
        Ok(())
    } else {
        Err(not_among::<G>(topic))
    }
}

fn not_among<G: GroupEvents>(topic: &str) -> DecodeError {
    DecodeError::Topic {
        topic: topic.to_string(),
        expected: G::TOPICS,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::codec::Encoding;

    #[test]
    fn a_topic_routes_to_its_event_and_other_topics_are_refused() {
        let codec = Codec::default();
        let profile = PlayerProfile {
            account_id: 7,
            persona_name: Some("seven".into()),
            rank_tier: None,
            leaderboard_rank: None,
            country: None,
            last_seen: None,
            avatar_url: None,
            profile_url: None,
            observed_at_ms: 1,
            source: "json".into(),
        };
        let bytes = codec.encode(&profile, Encoding::Json).unwrap();
        let decoded = ScoutEvent::decode(&codec, topics::PLAYERS, &bytes).unwrap();
        assert_eq!(decoded, ScoutEvent::Profile(profile));

        let wrong = ScoutEvent::decode(&codec, topics::MATCHES, &bytes).unwrap_err();
        assert_eq!(wrong.kind(), "decode");
        assert!(wrong.to_string().contains("MatchCompleted"), "{wrong}");

        let elsewhere = MatchCompleted::decode(&codec, topics::PLAYERS, &bytes).unwrap_err();
        assert_eq!(elsewhere.kind(), "unknown_topic");
        assert!(!elsewhere.is_retriable());
    }
}
