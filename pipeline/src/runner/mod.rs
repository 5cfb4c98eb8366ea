//! Drives a [`Handler`] over a [`Subscription`].
//!
//! One batch is in flight at a time (backpressure: a slow handler slows the
//! polling, so memory stays bounded by `batch_size`). Inside a batch the
//! partitions run concurrently and each partition's deliveries run in order.
//! A delivery is acked only once it is done: handled, or its dead letter is
//! durable on the dead-letter topic. Acks cover the done *prefix* of each
//! partition, since Kafka commits positions, not single records.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};
use schemas::codec::Codec;
use tokio_util::sync::CancellationToken;

use crate::bus::{now_ms, BusError, Delivery, Publisher, Subscription};
mod dead_letters;
mod handler;
mod settings;
mod slices;
pub mod typed;

pub use dead_letters::dead_letter_for;
pub use handler::{Handler, HandlerError};
pub use settings::{jittered_backoff, RunnerConfig, DEFAULT_BATCH_SIZE, UNLIMITED_ATTEMPTS};
use slices::into_partition_slices;
pub use typed::{Decoded, EventHandler};

use crate::internal_events::{
    AssignmentChanged, BatchHandled, BusCallFailed, EventsHandled, EventsReceived, HandlerFailed,
    HandlerRetryScheduled, InternalEvent, RunnerStarted, ShutdownDrained,
};
use crate::observe::names::operation;
use crate::observe::readiness::{runner_check, Readiness};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunStats {
    pub handled: u64,
    pub dead_lettered: u64,
    pub retries: u64,
    pub batches: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    #[error("bus error during {operation}: {source}")]
    Bus {
        operation: &'static str,
        #[source]
        source: BusError,
    },
}

impl RunnerError {
    pub fn is_retriable(&self) -> bool {
        match self {
            RunnerError::Bus { source, .. } => source.is_retriable(),
        }
    }
}

pub struct Runner {
    config: RunnerConfig,
    handler: Arc<dyn Handler>,
    dead_letters: Arc<dyn Publisher>,
    codec: Codec,
    /// With the name of this runner's check in it.
    readiness: Option<(Readiness, String)>,
}

/// What became of one partition's slice of a batch.
struct PartitionOutcome {
    /// Deliveries done from the start of the slice, in order.
    done_prefix: Vec<Delivery>,
    handled: u64,
    dead_lettered: u64,
    retries: u64,
}

impl Runner {
    pub fn new(
        config: RunnerConfig,
        handler: Arc<dyn Handler>,
        dead_letters: Arc<dyn Publisher>,
    ) -> Self {
        Self {
            config,
            handler,
            dead_letters,
            codec: Codec::default(),
            readiness: None,
        }
    }

    /// Reports to `readiness` under [`runner_check`]: ready while polls succeed,
    /// not ready before the first one, after a failed one and once stopped.
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        let check = runner_check(&self.config.group);
        self.with_readiness_as(readiness, check)
    }

    /// [`Runner::with_readiness`] under its own check `check`: one of several
    /// members of a group in one process, each reporting for itself.
    pub fn with_readiness_as(mut self, readiness: Readiness, check: String) -> Self {
        readiness.register(check.clone());
        self.readiness = Some((readiness, check));
        self
    }

    fn set_ready(&self, ready: bool) {
        if let Some((readiness, check)) = &self.readiness {
            readiness.set(check, ready);
        }
    }

    /// Emits [`AssignmentChanged`] when the member's partitions differ from `seen`.
    fn track_assignment(&self, seen: &mut Vec<(String, i32)>, mut now: Vec<(String, i32)>) {
        now.sort();
        if now == *seen {
            return;
        }
        AssignmentChanged {
            group: &self.config.group,
            previous: seen.len(),
            assigned: &now,
        }
        .emit();
        *seen = now;
    }

    /// Runs until `shutdown` fires, then finishes the batch in hand, acks what is
    /// done and leaves the group.
    pub async fn run(
        &self,
        mut subscription: Box<dyn Subscription>,
        shutdown: CancellationToken,
    ) -> Result<RunStats, RunnerError> {
        let mut stats = RunStats::default();
        let mut assigned = Vec::new();
        RunnerStarted {
            group: &self.config.group,
        }
        .emit();
        let result = self
            .run_loop(subscription.as_mut(), &shutdown, &mut stats, &mut assigned)
            .await;
        self.set_ready(false);
        let closed = subscription.close().await;
        self.track_assignment(&mut assigned, Vec::new());
        if let Err(err) = &closed {
            BusCallFailed {
                group: &self.config.group,
                operation: operation::CLOSE,
                error: err,
                retriable: err.is_retriable(),
            }
            .emit();
        }
        ShutdownDrained {
            group: &self.config.group,
            handled: stats.handled,
            dead_lettered: stats.dead_lettered,
        }
        .emit();
        result?;
        closed.map_err(|source| RunnerError::Bus {
            operation: operation::CLOSE,
            source,
        })?;
        Ok(stats)
    }

    async fn run_loop(
        &self,
        subscription: &mut dyn Subscription,
        shutdown: &CancellationToken,
        stats: &mut RunStats,
        assigned: &mut Vec<(String, i32)>,
    ) -> Result<(), RunnerError> {
        let mut poll_failures = 0u32;
        while !shutdown.is_cancelled() {
            let polled = tokio::select! {
                _ = shutdown.cancelled() => break,
                polled = subscription.poll(self.config.batch_size, self.config.batch_wait) => polled,
            };
            // Between batches: the assignment a rebalance during the poll left us.
            self.track_assignment(assigned, subscription.assignment());
            self.set_ready(polled.is_ok());
            let batch = match polled {
                Ok(batch) => {
                    poll_failures = 0;
                    batch
                }
                Err(err) => {
                    poll_failures += 1;
                    self.bus_failed(operation::POLL, err, poll_failures, shutdown)
                        .await?;
                    continue;
                }
            };
            if batch.is_empty() {
                continue;
            }
            self.process_batch(subscription, batch, shutdown, stats)
                .await?;
        }
        Ok(())
    }

    /// Logs a failed bus call; gives up when it cannot succeed on retry.
    async fn bus_failed(
        &self,
        operation: &'static str,
        err: BusError,
        failures: u32,
        shutdown: &CancellationToken,
    ) -> Result<(), RunnerError> {
        let retriable = err.is_retriable();
        BusCallFailed {
            group: &self.config.group,
            operation,
            error: &err,
            retriable,
        }
        .emit();
        if !retriable {
            return Err(RunnerError::Bus {
                operation,
                source: err,
            });
        }
        let backoff = self.config.backoff(failures);
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        Ok(())
    }

    async fn process_batch(
        &self,
        subscription: &mut dyn Subscription,
        batch: Vec<Delivery>,
        shutdown: &CancellationToken,
        stats: &mut RunStats,
    ) -> Result<(), RunnerError> {
        let started = Instant::now();
        let events = batch.len();
        let slices = into_partition_slices(batch);
        self.received(&slices);
        let first_results = self.first_attempt_of_whole_batch(&slices).await;
        let outcomes: Vec<PartitionOutcome> = stream::iter(slices.into_iter().zip(first_results))
            .map(|(slice, first)| self.process_partition(slice, first, shutdown))
            .buffer_unordered(self.config.partition_concurrency.max(1))
            .collect()
            .await;
        let mut done = Vec::new();
        for outcome in outcomes {
            stats.handled += outcome.handled;
            stats.dead_lettered += outcome.dead_lettered;
            stats.retries += outcome.retries;
            if done.is_empty() {
                // Most batches are one partition: take its deliveries, do not copy them.
                done = outcome.done_prefix;
            } else {
                done.extend(outcome.done_prefix);
            }
        }
        stats.batches += 1;
        self.ack(subscription, &done, shutdown).await?;
        BatchHandled {
            group: &self.config.group,
            events,
            acked: done.len(),
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(())
    }

    fn received(&self, slices: &[Vec<Delivery>]) {
        let mut per_topic: BTreeMap<&str, usize> = BTreeMap::new();
        for slice in slices {
            *per_topic.entry(&*slice[0].topic).or_default() += slice.len();
        }
        for (topic, count) in per_topic {
            EventsReceived {
                group: &self.config.group,
                topic,
                count,
            }
            .emit();
        }
    }

    async fn ack(
        &self,
        subscription: &mut dyn Subscription,
        done: &[Delivery],
        shutdown: &CancellationToken,
    ) -> Result<(), RunnerError> {
        let mut failures = 0;
        loop {
            match subscription.ack(done).await {
                Ok(()) => return Ok(()),
                Err(err) => {
                    failures += 1;
                    // Unacked work is redelivered, never lost: after a few tries, move on.
                    if failures >= 3 || shutdown.is_cancelled() {
                        BusCallFailed {
                            group: &self.config.group,
                            operation: operation::ACK,
                            error: &err,
                            retriable: false,
                        }
                        .emit();
                        return Ok(());
                    }
                    self.bus_failed(operation::ACK, err, failures, shutdown)
                        .await?;
                }
            }
        }
    }

    /// With a handler that [takes whole batches](Handler::takes_whole_batches)
    /// and more than one partition in `slices`: the outcomes of one call with
    /// all of them, cut per slice. Otherwise no outcomes: each slice's first
    /// attempt is its own call.
    async fn first_attempt_of_whole_batch(
        &self,
        slices: &[Vec<Delivery>],
    ) -> Vec<Option<Vec<Result<(), HandlerError>>>> {
        if slices.len() < 2 || !self.handler.takes_whole_batches() {
            return vec![None; slices.len()];
        }
        let mut results = self.handler.handle(&slices.concat()).await.into_iter();
        slices
            .iter()
            // A short answer leaves the rest short: process_partition reports it.
            .map(|slice| Some(results.by_ref().take(slice.len()).collect()))
            .collect()
    }

    /// Handles one partition's deliveries, retrying retriable failures with
    /// backoff and dead-lettering the rest. `first_results`, when given, are
    /// the outcomes of the first attempt, already made.
    async fn process_partition(
        &self,
        slice: Vec<Delivery>,
        mut first_results: Option<Vec<Result<(), HandlerError>>>,
        shutdown: &CancellationToken,
    ) -> PartitionOutcome {
        let first_seen_ms = now_ms();
        let mut attempts = vec![0u32; slice.len()];
        let mut done = vec![false; slice.len()];
        let mut outcome = PartitionOutcome {
            done_prefix: Vec::new(),
            handled: 0,
            dead_lettered: 0,
            retries: 0,
        };
        let mut pending: Vec<usize> = (0..slice.len()).collect();
        while !pending.is_empty() {
            let results = if let Some(results) = first_results.take() {
                results
            } else if pending.len() == slice.len() {
                self.handler.handle(&slice).await
            } else {
                let retried: Vec<Delivery> = pending.iter().map(|&i| slice[i].clone()).collect();
                self.handler.handle(&retried).await
            };
            let mut retry = Vec::new();
            let mut dead = Vec::new();
            let mut handled = Vec::new();
            for (n, &i) in pending.iter().enumerate() {
                attempts[i] += 1;
                let result = results.get(n).cloned().unwrap_or_else(|| {
                    Err(HandlerError::permanent(
                        "handler_contract",
                        "handler returned fewer outcomes than deliveries",
                    ))
                });
                if let Err(error) = &result {
                    HandlerFailed {
                        group: &self.config.group,
                        delivery: &slice[i],
                        error,
                        kind: error.kind(),
                        retriable: error.is_retriable(),
                    }
                    .emit();
                }
                match result {
                    Ok(()) => {
                        done[i] = true;
                        outcome.handled += 1;
                        handled.push(&slice[i]);
                    }
                    Err(err) if err.is_retriable() && attempts[i] < self.config.max_attempts => {
                        retry.push((i, err))
                    }
                    Err(err) => dead.push((i, err)),
                }
            }
            self.handled(&handled);
            if !dead.is_empty()
                && self
                    .dead_letter(&slice, &attempts, &dead, first_seen_ms, shutdown)
                    .await
            {
                for (i, _) in &dead {
                    done[*i] = true;
                }
                outcome.dead_lettered += dead.len() as u64;
            }
            if retry.is_empty() || shutdown.is_cancelled() {
                break;
            }
            let attempt = retry.iter().map(|(i, _)| attempts[*i]).max().unwrap_or(1);
            let backoff = self.config.backoff(attempt);
            for (i, err) in &retry {
                HandlerRetryScheduled {
                    group: &self.config.group,
                    delivery: &slice[*i],
                    attempt: attempts[*i],
                    backoff,
                    error: &err.to_string(),
                }
                .emit();
            }
            outcome.retries += retry.len() as u64;
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(backoff) => {}
            }
            pending = retry.into_iter().map(|(i, _)| i).collect();
        }
        let prefix = done.iter().take_while(|d| **d).count();
        let mut slice = slice;
        slice.truncate(prefix);
        outcome.done_prefix = slice;
        outcome
    }

    fn handled(&self, deliveries: &[&Delivery]) {
        // A slice is one partition, hence one topic.
        if let Some(first) = deliveries.first() {
            EventsHandled {
                group: &self.config.group,
                topic: &first.topic,
                deliveries,
            }
            .emit();
        }
    }
}
