//! Redis Streams backend.
//!
//! A topic with N partitions is N streams, `{prefix}{topic}:{p}`; a record's key
//! picks its stream, so per-key order holds. Group members find each other in a
//! sorted set of heartbeats and split the partitions round-robin, so one member
//! reads a partition at a time, under a lease (see `client/subscription.rs`). Entries
//! are read with XREADGROUP and stay pending until XACK; a partition's next
//! owner claims what the last one left pending (XAUTOCLAIM) before it reads
//! anything new, so a partition's entries come in order across owners.

#[cfg(feature = "redis-streams")]
mod client;
mod settings;

#[cfg(feature = "redis-streams")]
pub use client::{RedisStreamsBus, RedisStreamsSubscription};
pub use settings::RedisStreamsConfig;
