//! One group failing in a `run` process: the others drain and commit what they
//! hold before the process returns the error (they are not aborted mid-batch).

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{
    Bus, BusError, Delivery, PartitionLag, Publisher, Record, ResetPosition, ResetTo, Subscription,
};
use pipeline::config::RunnerSection;
use pipeline::runner::{Handler, HandlerError};
use scoutstream::app::{run_groups, GroupName, GroupSpec, Watch};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const BROKEN_GROUP: &str = "broken";
const SLOW_GROUP: &str = "slow";
const TOPIC: &str = "matches";

/// Takes a while over each batch and counts what it finished.
struct SlowHandler {
    started: Arc<Notify>,
    finished: AtomicU64,
}

#[async_trait]
impl Handler for SlowHandler {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        self.started.notify_one();
        tokio::time::sleep(Duration::from_millis(800)).await;
        self.finished
            .fetch_add(deliveries.len() as u64, Ordering::SeqCst);
        deliveries.iter().map(|_| Ok(())).collect()
    }
}

/// The in-memory bus, except that the member of [`BROKEN_GROUP`] gets a
/// permanent error from its first poll once the slow group is mid-batch.
struct OneGroupBreaks {
    inner: Arc<MemoryBus>,
    slow_started: Arc<Notify>,
}

struct BrokenMember {
    slow_started: Arc<Notify>,
}

#[async_trait]
impl Subscription for BrokenMember {
    async fn poll(&mut self, _max: usize, _wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.slow_started.notified().await;
        Err(BusError::Refused("credentials revoked".into()))
    }

    async fn ack(&mut self, _deliveries: &[Delivery]) -> Result<(), BusError> {
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        Vec::new()
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        Ok(())
    }
}

#[async_trait]
impl Bus for OneGroupBreaks {
    fn name(&self) -> &'static str {
        "one-group-breaks"
    }

    async fn ensure_topic(&self, topic: &str, partitions: u32) -> Result<(), BusError> {
        self.inner.ensure_topic(topic, partitions).await
    }

    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        self.inner.publisher().await
    }

    async fn subscribe(
        &self,
        group: &str,
        topics: &[String],
    ) -> Result<Box<dyn Subscription>, BusError> {
        if group == BROKEN_GROUP {
            return Ok(Box::new(BrokenMember {
                slow_started: self.slow_started.clone(),
            }));
        }
        self.inner.subscribe(group, topics).await
    }

    async fn lag(&self, group: &str, topics: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        self.inner.lag(group, topics).await
    }

    async fn reset_group(
        &self,
        group: &str,
        topics: &[String],
        to: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        self.inner.reset_group(group, topics, to).await
    }
}

fn spec(name: GroupName, id: &str, handler: Arc<dyn Handler>) -> GroupSpec {
    GroupSpec {
        name,
        id: id.into(),
        topics: vec![TOPIC.into()],
        default_batch_size: pipeline::runner::DEFAULT_BATCH_SIZE,
        members: 1,
        handler,
        pool: None,
        resolver: None,
    }
}

#[tokio::test]
async fn a_failing_group_lets_the_others_commit_their_batch_first() {
    let memory = Arc::new(MemoryBus::new(1));
    memory.ensure_topic(TOPIC, 1).await.unwrap();
    let records: Vec<Record> = (0..3)
        .map(|i| Record::new(format!("m{i}"), format!("match {i}")))
        .collect();
    memory
        .publisher()
        .await
        .unwrap()
        .publish_batch(TOPIC, &records)
        .await
        .unwrap();
    let slow_started = Arc::new(Notify::new());
    let bus = Arc::new(OneGroupBreaks {
        inner: memory.clone(),
        slow_started: slow_started.clone(),
    });
    let slow = Arc::new(SlowHandler {
        started: slow_started,
        finished: AtomicU64::new(0),
    });
    let groups = vec![
        spec(GroupName::Cache, SLOW_GROUP, slow.clone()),
        spec(GroupName::Enrich, BROKEN_GROUP, slow.clone()),
    ];

    let run = run_groups(
        bus,
        RunnerSection::default(),
        groups,
        Watch::default(),
        CancellationToken::new(),
    );
    let result = tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("the process stops by itself once a group fails");

    let err = result.expect_err("a failed group makes the run fail");
    let shown = format!("{err:#}");
    assert!(
        shown.contains("group `enrich` stopped") && shown.contains("credentials revoked"),
        "the error names the group and the cause: {shown}"
    );
    assert_eq!(
        slow.finished.load(Ordering::SeqCst),
        3,
        "the healthy group finished the batch it held"
    );
    let lag = memory.lag(SLOW_GROUP, &[TOPIC.into()]).await.unwrap();
    let behind: u64 = lag.iter().map(|p| p.messages).sum();
    assert_eq!(behind, 0, "and committed it before the process returned");
}
