//! The `validate` group: decodes each event as the type its topic carries.
//! Anything unreadable is a permanent error, so the runner dead-letters it.

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::runner::{Handler, HandlerError};
use schemas::{topics, Codec, MatchCompleted, PlayerProfile};

#[derive(Default)]
pub struct ValidateHandler {
    codec: Codec,
    pub matches: AtomicU64,
    pub players: AtomicU64,
}

impl ValidateHandler {
    fn check(&self, delivery: &Delivery) -> Result<(), HandlerError> {
        let decode_error =
            |e: schemas::CodecError| HandlerError::permanent("decode", e.to_string());
        match delivery.topic.as_str() {
            topics::MATCHES => {
                self.codec
                    .decode::<MatchCompleted>(&delivery.payload)
                    .map_err(decode_error)?;
                self.matches.fetch_add(1, Ordering::Relaxed);
            }
            topics::PLAYERS => {
                self.codec
                    .decode::<PlayerProfile>(&delivery.payload)
                    .map_err(decode_error)?;
                self.players.fetch_add(1, Ordering::Relaxed);
            }
            other => {
                return Err(HandlerError::permanent(
                    "unknown_topic",
                    format!("no event type for topic `{other}`"),
                ))
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Handler for ValidateHandler {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        deliveries.iter().map(|d| self.check(d)).collect()
    }
}
