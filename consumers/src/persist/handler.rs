//! The persist group's [`EventHandler`]: writes a batch of decoded events
//! (every partition's on the first attempt, one partition's on a retry) in
//! one transaction, or one per writer's share of its partitions.

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Decoded, EventHandler, HandlerError};
use schemas::codec::Codec;

use super::events::{BatchSplit, DeliveryRejected};
use super::{validate, Applied, PersistEvent, Source, Store};

/// Persists `matches` and `players` deliveries, each exactly once per group
/// (see [`Store::write_sourced`]). The positions it keeps rely on what every
/// bus guarantees: a partition's unacked records come back before any later
/// record of it (the bus contract test `redelivers_what_a_dead_member_did_not_ack`).
pub struct PersistHandler {
    store: Store,
    /// The consumer group whose positions the writes move.
    group: String,
    /// Transactions run at once on PostgreSQL, each over its own partitions.
    writers: usize,
    codec: Codec,
}

impl PersistHandler {
    pub fn new(store: Store, group: impl Into<String>) -> Self {
        Self {
            store,
            group: group.into(),
            writers: 1,
            codec: Codec::default(),
        }
    }

    /// Splits a batch by partition into up to `writers` transactions run at
    /// once, on PostgreSQL (SQLite takes one writer at a time). Each partition's
    /// events stay in one transaction, in order, so positions work unchanged;
    /// rows two transactions share (hero pools, teams) are locked in key
    /// order by both, so they wait for each other rather than deadlock.
    pub fn with_writers(mut self, writers: usize) -> Self {
        self.writers = writers.max(1);
        self
    }

    /// Writes `events` in one transaction, through the positions.
    async fn write(
        &self,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Result<super::WriteSummary, super::PersistError> {
        self.store.write_sourced(&self.group, events, sources).await
    }

    /// A codec that knows more writer schemas, e.g. Confluent registrations.
    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Where the event was read, once it is known to be storable: checked so
    /// one bad event cannot fail the transaction of a whole batch.
    fn accept(&self, decoded: &Decoded<'_, PersistEvent>) -> Result<Source, HandlerError> {
        let delivery = decoded.delivery;
        let position = Applied::of(&delivery.position)
            .map_err(|err| HandlerError::permanent("position", err.to_string()))?;
        validate(&decoded.event)?;
        Ok(Source {
            topic: Arc::clone(&delivery.topic),
            partition: delivery.partition,
            position,
        })
    }

    /// Writes the events one transaction each, after their batch failed for
    /// good, so only the events at fault fail. Past a failed event, its
    /// partition's position stays put until the runner has dead-lettered it:
    /// the events after it are written without moving it, so a crash before
    /// the dead letter is durable brings the failed event back.
    async fn write_one_by_one(
        &self,
        events: &[PersistEvent],
        sources: &[Source],
    ) -> Vec<Result<(), HandlerError>> {
        BatchSplit {
            backend: self.store.backend(),
            events: events.len(),
        }
        .emit();
        let mut stalled: HashSet<(Arc<str>, i32)> = HashSet::new();
        let mut outcomes = Vec::with_capacity(events.len());
        for (event, source) in events.iter().zip(sources) {
            let partition = (Arc::clone(&source.topic), source.partition);
            let event = std::slice::from_ref(event);
            let outcome = if stalled.contains(&partition) {
                self.store.write(event).await
            } else {
                self.write(event, std::slice::from_ref(source)).await
            };
            if outcome.is_err() {
                stalled.insert(partition);
            }
            outcomes.push(outcome.map(|_| ()).map_err(HandlerError::from));
        }
        outcomes
    }
}

#[async_trait]
impl EventHandler for PersistHandler {
    type Events = PersistEvent;

    /// One transaction per batch, or per writer's share of it: rows merged in
    /// Rust first, one commit, one statement per table.
    const WHOLE_BATCHES: bool = true;

    fn codec(&self) -> &Codec {
        &self.codec
    }

    async fn handle_events(
        &self,
        events: Vec<Decoded<'_, PersistEvent>>,
    ) -> Vec<Result<(), HandlerError>> {
        let writers = match self.store {
            Store::Postgres(_) => self.writers,
            Store::Sqlite(_) => 1,
        };
        let deliveries: Vec<&Delivery> = events.iter().map(|e| e.delivery).collect();
        let shares = shares_by_partition(&deliveries, writers);
        if shares.len() <= 1 {
            return self.handle_together(events).await;
        }
        let mut slots: Vec<Option<Decoded<'_, PersistEvent>>> =
            events.into_iter().map(Some).collect();
        let batches: Vec<Vec<Decoded<'_, PersistEvent>>> = shares
            .iter()
            .map(|share| share.iter().filter_map(|i| slots[*i].take()).collect())
            .collect();
        let results =
            futures::future::join_all(batches.into_iter().map(|batch| self.handle_together(batch)))
                .await;
        let mut outcomes: Vec<Option<Result<(), HandlerError>>> = vec![None; deliveries.len()];
        for (share, results) in shares.iter().zip(results) {
            for (i, result) in share.iter().zip(results) {
                outcomes[*i] = Some(result);
            }
        }
        outcomes
            .into_iter()
            .map(|outcome| outcome.expect("every delivery is in one share"))
            .collect()
    }
}

/// Indexes of `deliveries` in up to `writers` shares, whole partitions each,
/// dealt in turn by first appearance so the shares are about even.
fn shares_by_partition<D: Borrow<Delivery>>(deliveries: &[D], writers: usize) -> Vec<Vec<usize>> {
    let mut share_of: HashMap<(&str, i32), usize> = HashMap::new();
    let mut shares: Vec<Vec<usize>> = Vec::new();
    for (i, delivery) in deliveries.iter().enumerate() {
        let delivery: &Delivery = delivery.borrow();
        let next = share_of.len() % writers.max(1);
        let share = *share_of
            .entry((&*delivery.topic, delivery.partition))
            .or_insert(next);
        if share == shares.len() {
            shares.push(Vec::new());
        }
        shares[share].push(i);
    }
    shares
}

impl PersistHandler {
    /// Writes the storable events in one transaction; the rest fail alone.
    async fn handle_together(
        &self,
        decoded: Vec<Decoded<'_, PersistEvent>>,
    ) -> Vec<Result<(), HandlerError>> {
        let mut outcomes: Vec<Result<(), HandlerError>> = Vec::with_capacity(decoded.len());
        let mut events = Vec::with_capacity(decoded.len());
        let mut sources = Vec::with_capacity(decoded.len());
        // Indexes into `outcomes` of the deliveries whose event is in `events`.
        let mut written = Vec::with_capacity(decoded.len());
        for (i, one) in decoded.into_iter().enumerate() {
            match self.accept(&one) {
                Ok(source) => {
                    events.push(one.event);
                    sources.push(source);
                    written.push(i);
                    outcomes.push(Ok(()));
                }
                Err(err) => {
                    DeliveryRejected {
                        delivery: one.delivery,
                        error_kind: err.kind(),
                        error: err.message(),
                    }
                    .emit();
                    outcomes.push(Err(err));
                }
            }
        }
        if events.is_empty() {
            return outcomes;
        }
        let results = match self.write(&events, &sources).await {
            Ok(_) => return outcomes,
            Err(err) if err.is_retriable() || events.len() == 1 => {
                vec![Err(HandlerError::from(err)); events.len()]
            }
            Err(_) => self.write_one_by_one(&events, &sources).await,
        };
        for (i, result) in written.into_iter().zip(results) {
            outcomes[i] = result;
        }
        outcomes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pipeline::bus::Position;

    fn at(topic: &str, partition: i32) -> Delivery {
        Delivery {
            topic: topic.into(),
            partition,
            position: Position::Offset(0),
            key: None,
            payload: Vec::new().into(),
            timestamp_ms: None,
        }
    }

    #[test]
    fn shares_keep_partitions_whole_and_deal_them_in_turn() {
        let batch = [
            at("matches", 3),
            at("matches", 5),
            at("players", 3),
            at("matches", 3),
            at("matches", 7),
            at("players", 3),
        ];
        assert_eq!(
            shares_by_partition(&batch, 2),
            vec![vec![0, 2, 3, 5], vec![1, 4]]
        );
        assert_eq!(shares_by_partition(&batch, 1), vec![vec![0, 1, 2, 3, 4, 5]]);
        assert_eq!(shares_by_partition(&batch[..1], 4), vec![vec![0]]);
        assert!(shares_by_partition::<Delivery>(&[], 2).is_empty());
    }
}
