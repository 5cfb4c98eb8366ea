//! Scoutstream runtime.
//!
//! - [`bus`]: the topic abstraction and its backends: [`bus::kafka`] and
//!   [`bus::redis_streams`] (cargo features `kafka` and `redis-streams`, on by
//!   default; their settings parse in every build) and the embedded [`bus::memory`].
//! - [`runner`]: drives a [`runner::Handler`] over a subscription: batching,
//!   retries with backoff, dead letters, ack-after-durable, graceful shutdown.
//! - [`config`]: bus and runner settings from TOML plus `SCOUTSTREAM__` environment
//!   overrides, validated with errors that name the field.
//! - [`internal_events`]: one struct per thing that happens, writing its log line
//!   and its metric.
//! - [`schema_registry`]: [`schema_registry::ResolveSchemas`], which fetches
//!   unknown writer schemas from the registry before a handler decodes.
//! - [`redis_tls`]: trust and client certificates of `rediss://` connections.
//! - [`observe`]: Prometheus metrics (names, recorder), consumer-lag gauges, and the
//!   `/metrics`, `/healthz` and `/readyz` endpoints.

pub mod bus;
pub mod config;
pub mod internal_events;
pub mod observe;
pub mod redis_tls;
pub mod runner;
pub mod schema_registry;
