//! One struct per thing that happens inside the runtime. `emit` writes its log
//! line and its metric (every metric's name, labels and help in [`names`]) from
//! one place, so the two cannot drift apart: the pattern of Vector's internal
//! events.
//!
//! Metrics cost nothing until a recorder is installed
//! ([`crate::observe::install_recorder`]).

use std::net::SocketAddr;
use std::time::Duration;

use metrics::{counter, gauge, histogram};

pub mod names;

use crate::bus::{now_ms, Delivery, PartitionLag};

pub trait InternalEvent {
    fn emit(self);
}

fn retriable_label(retriable: bool) -> &'static str {
    if retriable {
        "true"
    } else {
        "false"
    }
}

/// A runner starts. Its group's counters start at zero, so `rate()` and
/// `increase()` see the first increment.
pub struct RunnerStarted<'a> {
    pub group: &'a str,
}

impl InternalEvent for RunnerStarted<'_> {
    fn emit(self) {
        tracing::info!(group = self.group, "runner started");
        let group = self.group.to_string();
        counter!(names::RETRIES_TOTAL, "group" => group.clone()).increment(0);
        counter!(names::REBALANCES_TOTAL, "group" => group.clone()).increment(0);
        gauge!(names::ASSIGNED_PARTITIONS, "group" => group.clone()).increment(0.0);
        for operation in names::operation::RUNNER {
            counter!(names::BUS_ERRORS_TOTAL, "group" => group.clone(), "operation" => *operation)
                .increment(0);
        }
    }
}

/// A poll returned events of one topic.
pub struct EventsReceived<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub count: usize,
}

impl InternalEvent for EventsReceived<'_> {
    fn emit(self) {
        tracing::trace!(
            group = self.group,
            topic = self.topic,
            count = self.count,
            "events received"
        );
        counter!(names::EVENTS_RECEIVED_TOTAL, "group" => self.group.to_string(), "topic" => self.topic.to_string())
            .increment(self.count as u64);
    }
}

/// The handler succeeded on these deliveries of one topic, just now.
pub struct EventsHandled<'a> {
    pub group: &'a str,
    pub topic: &'a str,
    pub deliveries: &'a [&'a Delivery],
}

impl InternalEvent for EventsHandled<'_> {
    fn emit(self) {
        tracing::trace!(
            group = self.group,
            topic = self.topic,
            count = self.deliveries.len(),
            "events handled"
        );
        let group = self.group.to_string();
        counter!(names::EVENTS_HANDLED_TOTAL, "group" => group.clone(), "topic" => self.topic.to_string())
            .increment(self.deliveries.len() as u64);
        let age = histogram!(names::EVENT_AGE_SECONDS, "group" => group);
        let now = now_ms();
        // Without a publish time there is no latency to report (not a zero one).
        for published in self.deliveries.iter().filter_map(|d| d.timestamp_ms) {
            age.record((now - published).max(0) as f64 / 1000.0);
        }
    }
}

/// One attempt of the handler failed on one delivery.
pub struct HandlerFailed<'a> {
    pub group: &'a str,
    pub delivery: &'a Delivery,
    pub error: &'a dyn std::error::Error,
    /// The error's kind (`HandlerError::kind`), a metric label.
    pub kind: &'static str,
    pub retriable: bool,
}

impl InternalEvent for HandlerFailed<'_> {
    fn emit(self) {
        // Debug only: the retry or dead letter that follows logs at warn.
        tracing::debug!(
            group = self.group,
            topic = %self.delivery.topic,
            partition = self.delivery.partition,
            position = ?self.delivery.position,
            error = %self.error,
            retriable = self.retriable,
            "handler failed"
        );
        counter!(
            names::HANDLER_ERRORS_TOTAL,
            "group" => self.group.to_string(),
            "kind" => self.kind,
            "retriable" => retriable_label(self.retriable)
        )
        .increment(1);
    }
}

/// The partitions a member owns changed (a rebalance, joining or leaving).
pub struct AssignmentChanged<'a> {
    pub group: &'a str,
    /// How many partitions the member owned before.
    pub previous: usize,
    pub assigned: &'a [(String, i32)],
}

impl InternalEvent for AssignmentChanged<'_> {
    fn emit(self) {
        tracing::info!(
            group = self.group,
            previous = self.previous,
            assigned = ?self.assigned,
            "partition assignment changed"
        );
        let group = self.group.to_string();
        counter!(names::REBALANCES_TOTAL, "group" => group.clone()).increment(1);
        // A delta, not a value: several members of a group may share the process.
        let delta = self.assigned.len() as f64 - self.previous as f64;
        gauge!(names::ASSIGNED_PARTITIONS, "group" => group).increment(delta);
    }
}

pub struct BatchHandled<'a> {
    pub group: &'a str,
    pub events: usize,
    pub acked: usize,
    pub elapsed: Duration,
}

impl InternalEvent for BatchHandled<'_> {
    fn emit(self) {
        tracing::debug!(
            group = self.group,
            events = self.events,
            acked = self.acked,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "batch handled"
        );
        let group = self.group.to_string();
        histogram!(names::BATCH_SIZE, "group" => group.clone()).record(self.events as f64);
        histogram!(names::BATCH_DURATION_SECONDS, "group" => group)
            .record(self.elapsed.as_secs_f64());
    }
}

pub struct HandlerRetryScheduled<'a> {
    pub group: &'a str,
    pub delivery: &'a Delivery,
    pub attempt: u32,
    pub backoff: Duration,
    pub error: &'a str,
}

impl InternalEvent for HandlerRetryScheduled<'_> {
    fn emit(self) {
        tracing::warn!(
            group = self.group,
            topic = %self.delivery.topic,
            partition = self.delivery.partition,
            position = ?self.delivery.position,
            attempt = self.attempt,
            backoff_ms = self.backoff.as_millis() as u64,
            error = self.error,
            "retriable handler error; retrying"
        );
        counter!(names::RETRIES_TOTAL, "group" => self.group.to_string()).increment(1);
    }
}

/// The event's dead letter is durable on the dead-letter topic.
pub struct DeadLettered<'a> {
    pub group: &'a str,
    pub delivery: &'a Delivery,
    pub error_kind: &'a str,
    pub error: &'a str,
    pub attempts: u32,
}

impl InternalEvent for DeadLettered<'_> {
    fn emit(self) {
        tracing::warn!(
            group = self.group,
            topic = %self.delivery.topic,
            partition = self.delivery.partition,
            position = ?self.delivery.position,
            error_kind = self.error_kind,
            error = self.error,
            attempts = self.attempts,
            "event dead-lettered"
        );
        counter!(
            names::DEAD_LETTERS_TOTAL,
            "group" => self.group.to_string(),
            "topic" => self.delivery.topic.clone(),
            "error_kind" => self.error_kind.to_string()
        )
        .increment(1);
    }
}

pub struct BusCallFailed<'a> {
    pub group: &'a str,
    pub operation: &'static str,
    pub error: &'a crate::bus::BusError,
    pub retriable: bool,
}

impl InternalEvent for BusCallFailed<'_> {
    fn emit(self) {
        tracing::error!(group = self.group, operation = self.operation, error = %self.error, retriable = self.retriable, "bus call failed");
        counter!(names::BUS_ERRORS_TOTAL, "group" => self.group.to_string(), "operation" => self.operation)
            .increment(1);
    }
}

pub struct ShutdownDrained<'a> {
    pub group: &'a str,
    pub handled: u64,
    pub dead_lettered: u64,
}

impl InternalEvent for ShutdownDrained<'_> {
    fn emit(self) {
        tracing::info!(
            group = self.group,
            handled = self.handled,
            dead_lettered = self.dead_lettered,
            "runner drained and stopped"
        );
    }
}

/// A lag reporter starts; its error counter starts at zero.
pub struct LagReporterStarted<'a> {
    pub group: &'a str,
    pub topics: &'a [String],
    pub every: Duration,
}

impl InternalEvent for LagReporterStarted<'_> {
    fn emit(self) {
        tracing::info!(
            group = self.group,
            topics = ?self.topics,
            every_ms = self.every.as_millis() as u64,
            "lag reporter started"
        );
        counter!(
            names::BUS_ERRORS_TOTAL,
            "group" => self.group.to_string(),
            "operation" => names::operation::LAG
        )
        .increment(0);
    }
}

/// The bus reported the group's lag on every partition of its topics.
pub struct LagReported<'a> {
    pub group: &'a str,
    pub lags: &'a [PartitionLag],
}

impl InternalEvent for LagReported<'_> {
    fn emit(self) {
        tracing::debug!(
            group = self.group,
            partitions = self.lags.len(),
            messages = self.lags.iter().map(|l| l.messages).sum::<u64>(),
            oldest_seconds = self.lags.iter().map(|l| l.seconds).fold(0.0, f64::max),
            "consumer lag"
        );
        for lag in self.lags {
            let labels = [
                ("group", self.group.to_string()),
                ("topic", lag.topic.clone()),
                ("partition", lag.partition.to_string()),
            ];
            gauge!(names::CONSUMER_LAG_MESSAGES, &labels).set(lag.messages as f64);
            gauge!(names::CONSUMER_LAG_SECONDS, &labels).set(lag.seconds);
        }
    }
}

pub struct ObserveServerStarted {
    pub addr: SocketAddr,
}

impl InternalEvent for ObserveServerStarted {
    fn emit(self) {
        tracing::info!(addr = %self.addr, "serving /metrics, /healthz and /readyz");
    }
}

/// Another metrics recorder was installed first: this process exports nothing.
pub struct MetricsRecorderUnavailable<'a> {
    pub error: &'a dyn std::error::Error,
}

impl InternalEvent for MetricsRecorderUnavailable<'_> {
    fn emit(self) {
        tracing::warn!(error = %self.error, "prometheus recorder not installed; /metrics stays empty");
    }
}

/// A slice's unknown Confluent ids were looked up in the schema registry.
pub struct SchemasResolved<'a> {
    pub group: &'a str,
    pub resolved: &'a schemas::registry::Resolved,
}

impl InternalEvent for SchemasResolved<'_> {
    fn emit(self) {
        let group = self.group.to_string();
        for id in &self.resolved.learned {
            tracing::info!(
                group = self.group,
                schema_id = id,
                "writer schema fetched from the schema registry"
            );
        }
        for (id, reason) in &self.resolved.unknown {
            tracing::warn!(group = self.group, schema_id = id, reason = %reason, "schema id unusable: its events go to the dead-letter topic");
        }
        let learned = self.resolved.learned.len() as u64;
        let unknown = self.resolved.unknown.len() as u64;
        if learned > 0 {
            counter!(names::SCHEMA_REGISTRY_LOOKUPS_TOTAL, "group" => group.clone(), "result" => "learned").increment(learned);
        }
        if unknown > 0 {
            counter!(names::SCHEMA_REGISTRY_LOOKUPS_TOTAL, "group" => group, "result" => "unknown")
                .increment(unknown);
        }
    }
}

/// The schema registry could not be asked; the slice waits and asks again.
pub struct SchemaRegistryUnavailable<'a> {
    pub group: &'a str,
    pub error: &'a schemas::registry::RegistryError,
    pub retry_in: Duration,
}

impl InternalEvent for SchemaRegistryUnavailable<'_> {
    fn emit(self) {
        tracing::warn!(
            group = self.group,
            error = %self.error,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "schema registry unavailable; events wait"
        );
        counter!(names::SCHEMA_REGISTRY_LOOKUPS_TOTAL, "group" => self.group.to_string(), "result" => "failed").increment(1);
    }
}

/// A server the process depends on started or stopped answering its health
/// check; `/readyz` follows ([`crate::observe::health`]).
pub struct DependencyHealthChanged<'a> {
    pub dependency: &'a str,
    /// Why it does not answer; `None` once it does.
    pub error: Option<&'a str>,
}

impl InternalEvent for DependencyHealthChanged<'_> {
    fn emit(self) {
        match self.error {
            Some(error) => tracing::warn!(
                dependency = self.dependency,
                error,
                "dependency does not answer: not ready"
            ),
            None => tracing::info!(dependency = self.dependency, "dependency answers"),
        }
    }
}
