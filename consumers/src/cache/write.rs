//! [`CacheWrite`]: one write of a batch the cache applies in a single Redis
//! round trip ([`Cache::write_all`](super::Cache::write_all)).

use std::time::Duration;

use super::newer::{NewerWrite, VersionAt};

/// A write that owns its keys and values, so a handler can collect a whole
/// batch of them before sending any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheWrite {
    /// A plain `SET` with a TTL.
    Set {
        key: String,
        value: String,
        ttl: Duration,
    },
    /// Deletes every key.
    Delete { keys: Vec<String> },
    /// A compare-and-set: see [`NewerWrite`].
    SetIfNewer {
        key: String,
        value: String,
        version: i64,
        version_at: VersionAt<'static>,
        ttl: Duration,
        invalidate: Vec<String>,
    },
}

impl CacheWrite {
    /// The compare-and-set this write is, borrowing its parts.
    pub(crate) fn as_newer(&self) -> Option<NewerWrite<'_>> {
        match self {
            CacheWrite::SetIfNewer {
                key,
                value,
                version,
                version_at,
                ttl,
                invalidate,
            } => Some(NewerWrite {
                key,
                value,
                version: *version,
                version_at: *version_at,
                ttl: *ttl,
                invalidate,
            }),
            CacheWrite::Set { .. } | CacheWrite::Delete { .. } => None,
        }
    }

    /// Every key the write may change, written or deleted.
    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> {
        let (first, rest): (Option<&String>, &[String]) = match self {
            CacheWrite::Set { key, .. } => (Some(key), &[]),
            CacheWrite::Delete { keys } => (None, keys),
            CacheWrite::SetIfNewer {
                key, invalidate, ..
            } => (Some(key), invalidate),
        };
        first.into_iter().chain(rest).map(String::as_str)
    }
}
