//! Scoutstream runtime.
//!
//! - [`bus`]: the topic abstraction and its backends: [`bus::kafka`],
//!   [`bus::redis_streams`] and the embedded [`bus::memory`].
//! - [`runner`]: drives a [`runner::Handler`] over a subscription: batching,
//!   retries with backoff, dead letters, ack-after-durable, graceful shutdown.
//! - [`internal_events`]: one struct per thing that happens, writing its log line.

pub mod bus;
pub mod internal_events;
pub mod runner;
