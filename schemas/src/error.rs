//! [`CodecError`]: what went wrong turning bytes into events or back.

use apache_avro::error::Details;

/// Longest message kept from an underlying library error. apache-avro puts
/// whole decoded values in its messages; dead letters store this text.
const MAX_MESSAGE_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty payload")]
    Empty,

    /// The framing header is shorter than its format requires.
    #[error("truncated payload: the header needs {expected} bytes, got {got}")]
    Truncated { expected: usize, got: usize },

    #[error("unknown writer schema fingerprint {0:#018x}")]
    UnknownFingerprint(u64),

    #[error("unknown Confluent schema id {0}")]
    UnknownSchemaId(u32),

    /// [`crate::Encoding::Registered`] asked for a record no registry id was
    /// set for (only when encoding).
    #[error("no schema registry id for {0}: register its schema first")]
    NotRegistered(&'static str),

    /// The writer schema is a different record than the type asked for.
    #[error("wrong event type: expected {expected}, the writer schema is {found}")]
    WrongType {
        expected: &'static str,
        found: String,
    },

    #[error("missing required field `{0}`")]
    MissingField(String),

    #[error("invalid Avro body: {0}")]
    InvalidAvro(String),

    /// The body decoded but bytes were left over: corrupt or mislabelled data.
    #[error("{count} bytes left after the Avro body")]
    TrailingBytes { count: usize },

    #[error("invalid JSON: {0}")]
    InvalidJson(String),

    /// Neither single-object Avro (`C3 01`), Confluent (`00`) nor JSON (`{`).
    #[error("unknown format: first byte {0:#04x}")]
    UnknownFormat(u8),

    /// The event does not fit the writer schema (only when encoding).
    #[error("cannot encode {event}: {message}")]
    Encode {
        event: &'static str,
        message: String,
    },
}

impl CodecError {
    /// Short stable name for metrics, logs and `DeadLetter::error_kind`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::Truncated { .. } => "truncated",
            Self::UnknownFingerprint(_) => "unknown_fingerprint",
            Self::UnknownSchemaId(_) => "unknown_schema_id",
            Self::NotRegistered(_) => "not_registered",
            Self::WrongType { .. } => "wrong_type",
            Self::MissingField(_) => "missing_field",
            Self::InvalidAvro(_) => "invalid_avro",
            Self::TrailingBytes { .. } => "trailing_bytes",
            Self::InvalidJson(_) => "invalid_json",
            Self::UnknownFormat(_) => "unknown_format",
            Self::Encode { .. } => "encode",
        }
    }

    /// Whether trying the same bytes again could succeed. Never: decoding is
    /// a pure function of the bytes and the codec's registry. Listed per
    /// variant so a new variant has to take a stand.
    pub fn is_retriable(&self) -> bool {
        match self {
            Self::Empty
            | Self::Truncated { .. }
            | Self::UnknownFingerprint(_)
            | Self::UnknownSchemaId(_)
            | Self::NotRegistered(_)
            | Self::WrongType { .. }
            | Self::MissingField(_)
            | Self::InvalidAvro(_)
            | Self::TrailingBytes { .. }
            | Self::InvalidJson(_)
            | Self::UnknownFormat(_)
            | Self::Encode { .. } => false,
        }
    }

    pub(crate) fn from_avro(error: &apache_avro::Error) -> Self {
        if let Details::GetField(field) = error.details() {
            return Self::MissingField(field.clone());
        }
        let message = error.to_string();
        match missing_field(&message) {
            Some(field) => Self::MissingField(field),
            None => Self::InvalidAvro(clip(message)),
        }
    }

    pub(crate) fn from_json(error: &serde_json::Error) -> Self {
        let message = error.to_string();
        match missing_field(&message) {
            Some(field) => Self::MissingField(field),
            None => Self::InvalidJson(clip(message)),
        }
    }

    pub(crate) fn encode(event: &'static str, error: impl std::fmt::Display) -> Self {
        Self::Encode {
            event,
            message: clip(error.to_string()),
        }
    }
}

/// serde reports a missing field only as text: "missing field `name`".
fn missing_field(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("missing field `")?;
    let (field, _) = rest.split_once('`')?;
    Some(field.to_owned())
}

fn clip(mut message: String) -> String {
    if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE_CHARS) {
        message.truncate(cut);
        message.push('…');
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_missing_field_in_serde_messages() {
        let message = "missing field `match_id` at line 1 column 2";
        assert_eq!(missing_field(message).as_deref(), Some("match_id"));
        assert_eq!(missing_field("invalid type: string"), None);
    }

    #[test]
    fn clips_long_messages_on_a_char_boundary() {
        let clipped = clip("é".repeat(MAX_MESSAGE_CHARS + 10));
        assert_eq!(clipped.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("short".into()), "short");
    }
}
