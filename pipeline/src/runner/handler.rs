//! What a consumer group plugs into the runner: its [`Handler`] and the
//! errors it reports per delivery.

use async_trait::async_trait;

use crate::bus::Delivery;

/// Why one delivery could not be handled.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HandlerError {
    kind: &'static str,
    message: String,
    retriable: bool,
}

impl HandlerError {
    /// Will not succeed on retry (bad input, a bug): dead-letter at once.
    pub fn permanent(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retriable: false,
        }
    }

    /// May succeed later (a store that is briefly away): retry with backoff.
    pub fn retriable(kind: &'static str, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retriable: true,
        }
    }

    pub fn kind(&self) -> &'static str {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn is_retriable(&self) -> bool {
        self.retriable
    }
}

/// Application logic of a consumer group.
#[async_trait]
pub trait Handler: Send + Sync {
    /// Handles deliveries of one partition, in order, and returns one outcome per
    /// delivery. `Ok` promises the delivery's effects are durable.
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>>;

    /// Whether a batch's first attempt may go to one [`Handler::handle`] call
    /// holding every partition's deliveries (partition after partition, each in
    /// order); retries stay per partition. Yes for a handler that writes a
    /// batch in one transaction: one commit instead of one per partition.
    fn takes_whole_batches(&self) -> bool {
        false
    }
}
