//! The `scoutstream` application: composes producers, the bus and the consumer
//! groups into runnable jobs. The binary in `main.rs` only parses arguments.
//!
//! - [`app`]: the configuration (TOML + `SCOUTSTREAM__` overrides) and running
//!   the consumer groups it names on the bus it names.
//! - [`bench`]: the whole pipeline on one backend beside raw baselines.
//! - [`embedded`]: the main job on the embedded default (in-memory bus, no servers).
//! - [`groups`]: builds each enabled group's handler from the configuration.
//! - [`operate`]: operator commands: `replay` a group, `dlq list|inspect|replay`.
//! - [`produce`]: publish real-data files or generated matches.
//! - [`schema_cmd`]: `schemas check|register` against kept versions and the registry.

pub mod app;
pub mod bench;
pub mod embedded;
pub mod groups;
pub mod operate;
pub mod produce;
pub mod schema_cmd;
