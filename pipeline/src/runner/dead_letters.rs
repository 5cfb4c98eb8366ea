//! Deliveries that cannot be handled go to the dead-letter topic with the
//! reason; they are acked only once their dead letter is durable.

use schemas::codec::Encoding;
use schemas::DeadLetter;
use tokio_util::sync::CancellationToken;

use super::{HandlerError, Runner};
use crate::bus::{Delivery, Record};
use crate::internal_events::{BusCallFailed, DeadLettered, InternalEvent};
use crate::observe::names::operation;

impl Runner {
    /// Logs and counts dead letters once they are durable.
    pub(super) fn dead_lettered(
        &self,
        slice: &[Delivery],
        attempts: &[u32],
        dead: &[(usize, HandlerError)],
    ) {
        for (i, err) in dead {
            DeadLettered {
                group: &self.config.group,
                delivery: &slice[*i],
                error_kind: err.kind(),
                error: err.message(),
                attempts: attempts[*i],
            }
            .emit();
        }
    }

    /// Publishes dead letters; true once they are durable. Keeps trying while the
    /// dead-letter topic is unreachable, since acking without it would lose data.
    pub(super) async fn dead_letter(
        &self,
        slice: &[Delivery],
        attempts: &[u32],
        dead: &[(usize, HandlerError)],
        first_seen_ms: i64,
        shutdown: &CancellationToken,
    ) -> bool {
        let mut records = Vec::with_capacity(dead.len());
        for (i, err) in dead {
            let delivery = &slice[*i];
            let letter = dead_letter_for(
                delivery,
                &self.config.group,
                err,
                attempts[*i],
                first_seen_ms,
            );
            match self.codec.encode(&letter, Encoding::SingleObject) {
                Ok(bytes) => {
                    records.push(Record::new(delivery.key.clone().unwrap_or_default(), bytes))
                }
                Err(encode_err) => {
                    tracing::error!(error = %encode_err, "dead letter could not be encoded; leaving the event unacked");
                    return false;
                }
            }
        }
        let mut failures = 0;
        loop {
            match self
                .dead_letters
                .publish_batch(&self.config.dead_letter_topic, &records)
                .await
            {
                Ok(()) => {
                    self.dead_lettered(slice, attempts, dead);
                    return true;
                }
                Err(err) => {
                    failures += 1;
                    BusCallFailed {
                        group: &self.config.group,
                        operation: operation::PUBLISH_DEAD_LETTER,
                        error: &err,
                        retriable: true,
                    }
                    .emit();
                    if shutdown.is_cancelled() {
                        return false;
                    }
                    tokio::select! {
                        _ = shutdown.cancelled() => return false,
                        _ = tokio::time::sleep(self.config.backoff(failures)) => {}
                    }
                }
            }
        }
    }
}

pub fn dead_letter_for(
    delivery: &Delivery,
    group: &str,
    err: &HandlerError,
    attempts: u32,
    first_seen_ms: i64,
) -> DeadLetter {
    DeadLetter {
        original: delivery.payload.to_vec(),
        key: delivery.key.as_deref().map(<[u8]>::to_vec),
        topic: delivery.topic.to_string(),
        partition: Some(delivery.partition),
        offset: delivery.offset(),
        stream_id: delivery.stream_id().map(str::to_string),
        consumer_group: group.to_string(),
        error_kind: err.kind().to_string(),
        error_message: err.message().to_string(),
        first_seen_ms,
        attempts: attempts as i32,
    }
}
