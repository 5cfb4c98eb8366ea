//! The `scoutstream` application: composes producers, the bus and the consumer
//! groups into runnable jobs. The binary in `main.rs` only parses arguments.
//!
//! - [`embedded`]: the main job on the embedded default (in-memory bus, no servers).
//! - [`validate`]: a group that decodes every event and dead-letters what cannot be read.

pub mod embedded;
pub mod validate;
