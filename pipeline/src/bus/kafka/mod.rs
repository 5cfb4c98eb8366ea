//! Kafka backend on rdkafka (bundled librdkafka).
//!
//! Follows rust-rdkafka's `at_least_once` example: auto-commit is on but
//! `enable.auto.offset.store` is off, so only offsets the runner *stored* after
//! the handler's effects were durable are ever committed. Partitions are
//! assigned cooperative-sticky; when some are revoked, the stored offsets are
//! committed synchronously first and deliveries of revoked partitions still in
//! hand are dropped (the new owner gets them again from the committed offset).

#[cfg(feature = "kafka")]
mod access;
#[cfg(feature = "kafka")]
mod admin;
#[cfg(feature = "kafka")]
mod batch;
#[cfg(feature = "kafka")]
mod client;
mod settings;
#[cfg(feature = "kafka")]
mod subscription;

#[cfg(feature = "kafka")]
pub use client::KafkaBus;
pub use settings::{GroupProtocol, KafkaConfig};
