//! What happens inside the persist group, one struct per happening; `emit`
//! writes the log line (and, as metrics arrive, the metric) from one place.

use std::time::Duration;

use pipeline::bus::Delivery;
use pipeline::internal_events::InternalEvent;

use super::PersistError;

/// The store is open and its schema is current.
pub struct StoreOpened<'a> {
    pub backend: &'a str,
}

impl InternalEvent for StoreOpened<'_> {
    fn emit(self) {
        tracing::info!(
            backend = self.backend,
            "persist store opened, schema migrated"
        );
    }
}

/// One batch committed in one transaction.
pub struct BatchPersisted<'a> {
    pub backend: &'a str,
    pub matches: usize,
    pub player_rows: usize,
    pub profiles: usize,
    pub accounts_recomputed: usize,
    /// Events left out: their group had applied them before (a redelivery).
    pub already_applied: usize,
    pub elapsed: Duration,
}

impl InternalEvent for BatchPersisted<'_> {
    fn emit(self) {
        tracing::debug!(
            backend = self.backend,
            matches = self.matches,
            player_rows = self.player_rows,
            profiles = self.profiles,
            accounts_recomputed = self.accounts_recomputed,
            already_applied = self.already_applied,
            elapsed_ms = self.elapsed.as_millis() as u64,
            "batch persisted"
        );
    }
}

/// A delivery that can never be persisted (undecodable, wrong topic, invalid);
/// the runner dead-letters it.
pub struct DeliveryRejected<'a> {
    pub delivery: &'a Delivery,
    pub error_kind: &'a str,
    pub error: &'a str,
}

impl InternalEvent for DeliveryRejected<'_> {
    fn emit(self) {
        tracing::warn!(
            topic = %self.delivery.topic,
            partition = self.delivery.partition,
            position = ?self.delivery.position,
            error_kind = self.error_kind,
            error = self.error,
            "delivery rejected by persist"
        );
    }
}

/// Writing a batch failed; retriable failures come back through the runner.
pub struct PersistFailed<'a> {
    pub backend: &'a str,
    pub events: usize,
    pub error: &'a PersistError,
}

impl InternalEvent for PersistFailed<'_> {
    fn emit(self) {
        let retriable = self.error.is_retriable();
        if retriable {
            tracing::warn!(
                backend = self.backend,
                events = self.events,
                error = %self.error,
                retriable,
                "persisting a batch failed"
            );
        } else {
            tracing::error!(
                backend = self.backend,
                events = self.events,
                error = %self.error,
                retriable,
                "persisting a batch failed"
            );
        }
    }
}

/// A batch failed for good; its events are written one by one so only the
/// bad ones are dead-lettered.
pub struct BatchSplit<'a> {
    pub backend: &'a str,
    pub events: usize,
}

impl InternalEvent for BatchSplit<'_> {
    fn emit(self) {
        tracing::warn!(
            backend = self.backend,
            events = self.events,
            "batch rejected by the database; writing its events one by one"
        );
    }
}
