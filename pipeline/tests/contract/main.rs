//! Bus contract: written once, run against every backend (in-memory always,
//! Apache Kafka with each consumer group protocol, Redis Streams against the
//! local Redis).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod delivery;
mod handling;
mod lag_and_reset;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::{bus, unique, Backend, Recorder, PARTITIONS};
use pipeline::bus::{Bus, Delivery, Record};
use pipeline::runner::{RunStats, Runner, RunnerConfig};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use delivery::{
    delivers_every_event, keeps_per_key_order, redelivers_what_a_dead_member_did_not_ack,
    survives_a_rebalance_mid_run, two_members_split_the_work,
};
use handling::{
    commits_only_after_success, dead_letters_garbage_without_blocking, retries_then_succeeds,
    whole_batches_keep_order_and_retry_per_partition,
};
use lag_and_reset::{lag_shows_a_backlog_then_falls_to_zero, reset_moves_a_stopped_group};

const WAIT: Duration = Duration::from_secs(60);

struct Topic {
    bus: Arc<dyn Bus>,
    name: String,
    dead_letters: String,
}

async fn topic_with(backend: Backend, records: &[Record]) -> Topic {
    let bus = bus(backend).await;
    let name = unique("contract");
    let dead_letters = format!("{name}.dlq");
    bus.ensure_topic(&name, PARTITIONS).await.unwrap();
    bus.ensure_topic(&dead_letters, 1).await.unwrap();
    if !records.is_empty() {
        bus.publisher()
            .await
            .unwrap()
            .publish_batch(&name, records)
            .await
            .unwrap();
    }
    Topic {
        bus,
        name,
        dead_letters,
    }
}

fn config(topic: &Topic, group: &str) -> RunnerConfig {
    RunnerConfig {
        batch_size: 50,
        batch_wait: Duration::from_millis(100),
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(200),
        dead_letter_topic: topic.dead_letters.clone(),
        ..RunnerConfig::new(group)
    }
}

/// Starts a runner for `group`; cancel the token to drain and stop it.
async fn start(
    topic: &Topic,
    group: &str,
    handler: Arc<Recorder>,
    config: RunnerConfig,
) -> (CancellationToken, JoinHandle<RunStats>) {
    let subscription = topic
        .bus
        .subscribe(group, std::slice::from_ref(&topic.name))
        .await
        .unwrap();
    let dead_letters = topic.bus.publisher().await.unwrap();
    let runner = Runner::new(config, handler, dead_letters);
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { runner.run(subscription, token).await.unwrap() });
    (shutdown, task)
}

async fn stop(running: (CancellationToken, JoinHandle<RunStats>)) -> RunStats {
    running.0.cancel();
    running.1.await.unwrap()
}

fn all(count: usize) -> BTreeSet<usize> {
    (0..count).collect()
}

/// Reads everything a group can get within `quiet` of silence, counted from
/// when the member owns partitions: a slow join must not pass for "nothing left".
async fn drain(topic: &Topic, group: &str, topic_name: &str, quiet: Duration) -> Vec<Delivery> {
    let mut subscription = topic
        .bus
        .subscribe(group, &[topic_name.to_string()])
        .await
        .unwrap();
    let mut out = Vec::new();
    let mut joined = false;
    let mut idle_since = tokio::time::Instant::now();
    let deadline = tokio::time::Instant::now() + WAIT;
    while (!joined || idle_since.elapsed() < quiet) && tokio::time::Instant::now() < deadline {
        let batch = subscription
            .poll(100, Duration::from_millis(200))
            .await
            .unwrap();
        if !batch.is_empty() {
            idle_since = tokio::time::Instant::now();
            subscription.ack(&batch).await.unwrap();
            out.extend(batch);
        }
        if !joined && !subscription.assignment().is_empty() {
            joined = true;
            idle_since = tokio::time::Instant::now();
        }
    }
    assert!(joined, "the drain never joined the group {group}");
    subscription.close().await.unwrap();
    out
}

macro_rules! contract_tests {
    ($module:ident, $backend:expr) => {
        mod $module {
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn delivers_every_event() {
                super::delivers_every_event($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keeps_per_key_order() {
                super::keeps_per_key_order($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn redelivers_what_a_dead_member_did_not_ack() {
                super::redelivers_what_a_dead_member_did_not_ack($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_members_split_the_work() {
                super::two_members_split_the_work($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn survives_a_rebalance_mid_run() {
                super::survives_a_rebalance_mid_run($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn whole_batches_keep_order_and_retry_per_partition() {
                super::whole_batches_keep_order_and_retry_per_partition($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dead_letters_garbage_without_blocking() {
                super::dead_letters_garbage_without_blocking($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn commits_only_after_success() {
                super::commits_only_after_success($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retries_then_succeeds() {
                super::retries_then_succeeds($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lag_shows_a_backlog_then_falls_to_zero() {
                super::lag_shows_a_backlog_then_falls_to_zero($backend).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn reset_moves_a_stopped_group() {
                super::reset_moves_a_stopped_group($backend).await
            }
        }
    };
}

contract_tests!(memory, Backend::Memory);
contract_tests!(redis_streams, Backend::Redis);
contract_tests!(kafka, Backend::Kafka);
contract_tests!(kafka_consumer_protocol, Backend::KafkaConsumerProtocol);
