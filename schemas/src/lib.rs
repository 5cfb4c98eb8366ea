//! Scoutstream's event contracts.
//!
//! - [`events`]: typed events, one struct per `.avsc` file in `schemas/avro/`.
pub mod events;

pub use events::*;
