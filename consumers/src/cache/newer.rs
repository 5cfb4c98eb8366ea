//! Compare-and-set writes: a value replaces what is cached only when it is
//! newer, so out-of-order and redelivered events never overwrite newer data.

use std::time::Duration;

/// Where a cached value keeps the version [`NewerWrite`] compares against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VersionAt<'a> {
    /// The value is the version itself, e.g. a start time marker.
    Value,
    /// The value is a JSON object with the version in this top-level field.
    Field(&'a str),
}

/// Writes `value` at `key` only when `version` is greater than the version of
/// what is there, and then deletes `invalidate`, as one atomic step on Redis.
/// A cached value without a readable version counts as older.
#[derive(Debug, Clone, Copy)]
pub struct NewerWrite<'a> {
    pub key: &'a str,
    pub value: &'a str,
    pub version: i64,
    pub version_at: VersionAt<'a>,
    pub ttl: Duration,
    /// Keys derived from the old value, dropped when the write happens.
    pub invalidate: &'a [String],
}

impl NewerWrite<'_> {
    /// Whether this write replaces `current`; the in-memory twin of the Lua
    /// script in `redis_store`.
    pub(crate) fn is_newer_than(&self, current: &str) -> bool {
        stored_version(current, self.version_at).is_none_or(|stored| self.version > stored)
    }
}

fn stored_version(current: &str, at: VersionAt<'_>) -> Option<i64> {
    match at {
        VersionAt::Value => current.trim().parse().ok(),
        VersionAt::Field(field) => serde_json::from_str::<serde_json::Value>(current)
            .ok()?
            .get(field)?
            .as_i64(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(version: i64, version_at: VersionAt<'static>) -> NewerWrite<'static> {
        NewerWrite {
            key: "k",
            value: "v",
            version,
            version_at,
            ttl: Duration::from_secs(1),
            invalidate: &[],
        }
    }

    #[test]
    fn markers_compare_as_numbers() {
        let w = write(100, VersionAt::Value);
        assert!(w.is_newer_than("99"));
        assert!(!w.is_newer_than("100"), "equal is a redelivery, not newer");
        assert!(!w.is_newer_than("1000"));
        assert!(w.is_newer_than("garbage"), "unreadable counts as older");
    }

    #[test]
    fn json_values_compare_by_field() {
        let w = write(2_000, VersionAt::Field("observed_at_ms"));
        assert!(w.is_newer_than(r#"{"observed_at_ms": 1999}"#));
        assert!(!w.is_newer_than(r#"{"observed_at_ms": 2000}"#));
        assert!(w.is_newer_than(r#"{"other": 5}"#));
        assert!(w.is_newer_than("[1]"));
    }
}
