//! The typed consumer interface. A group names what it reads once, as a
//! [`GroupEvents`] type (its topics and the event each carries), and handles
//! events, not bytes ([`EventHandler`]). Every `EventHandler` is a
//! [`Handler`]: this layer decodes each delivery with the group's codec,
//! fails the undecodable ones permanently (the runner dead-letters them with
//! the reason) and hands the rest, in delivery order, to the group.

use async_trait::async_trait;
use schemas::codec::Codec;
use schemas::GroupEvents;

use super::{Handler, HandlerError};
use crate::bus::Delivery;

/// An event and the delivery it came in (topic, partition, position).
#[derive(Debug)]
pub struct Decoded<'a, E> {
    pub delivery: &'a Delivery,
    pub event: E,
}

/// Application logic of a consumer group, on decoded events.
#[async_trait]
pub trait EventHandler: Send + Sync {
    /// What the group reads; the process subscribes to its `TOPICS`.
    type Events: GroupEvents;

    /// Whether a batch's first attempt may come whole (see
    /// [`Handler::takes_whole_batches`]).
    const WHOLE_BATCHES: bool = false;

    /// The codec deliveries are decoded with (a schema registry resolver adds
    /// writer schemas to it before each slice).
    fn codec(&self) -> &Codec;

    /// One outcome per event, in order. `Ok` promises the event's effects
    /// are durable.
    async fn handle_events(
        &self,
        events: Vec<Decoded<'_, Self::Events>>,
    ) -> Vec<Result<(), HandlerError>>;
}

#[async_trait]
impl<H: EventHandler> Handler for H {
    fn takes_whole_batches(&self) -> bool {
        H::WHOLE_BATCHES
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut outcomes: Vec<Option<Result<(), HandlerError>>> =
            Vec::with_capacity(deliveries.len());
        let mut events = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match H::Events::decode(self.codec(), &delivery.topic, &delivery.payload) {
                Ok(event) => {
                    events.push(Decoded { delivery, event });
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(Err(HandlerError::permanent(
                    err.kind(),
                    err.to_string(),
                )))),
            }
        }
        let mut results = if events.is_empty() {
            Vec::new()
        } else {
            self.handle_events(events).await
        }
        .into_iter();
        outcomes
            .into_iter()
            .map(|outcome| {
                outcome.unwrap_or_else(|| {
                    results.next().unwrap_or_else(|| {
                        Err(HandlerError::permanent(
                            "handler",
                            "the group returned fewer outcomes than events",
                        ))
                    })
                })
            })
            .collect()
    }
}
