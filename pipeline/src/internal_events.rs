//! One struct per thing that happens inside the runtime. `emit` writes its log
//! line (and, as metrics arrive, its metric) from one place, so the two cannot
//! drift apart: the pattern of Vector's internal events.

use std::time::Duration;

use crate::bus::Delivery;

pub trait InternalEvent {
    fn emit(self);
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
    }
}

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
