//! `[groups] members`: a group run as several members in one process. Each is
//! its own consumer with its own runner, so their batches are in flight at
//! once, and between them they handle every event once.

#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pipeline::bus::memory::MemoryBus;
use pipeline::bus::{Bus, Delivery, Record};
use pipeline::config::RunnerSection;
use pipeline::observe::Readiness;
use pipeline::runner::{Handler, HandlerError};
use scoutstream::app::{run_groups, GroupName, GroupSpec, Watch};
use tokio_util::sync::CancellationToken;

const GROUP: &str = "members";
const TOPIC: &str = "matches";
const PARTITIONS: u32 = 4;
const EVENTS: usize = 40;

/// Takes whole batches (one call per batch, as persist does), holds each a
/// while, and records the most calls it had in flight at once.
#[derive(Default)]
struct Overlap {
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    handled: Mutex<Vec<String>>,
}

#[async_trait]
impl Handler for Overlap {
    fn takes_whole_batches(&self) -> bool {
        true
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(150)).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        let mut handled = self.handled.lock().unwrap();
        handled.extend(
            deliveries.iter().map(|d| {
                String::from_utf8_lossy(d.key.as_deref().unwrap_or_default()).into_owned()
            }),
        );
        deliveries.iter().map(|_| Ok(())).collect()
    }
}

struct Run {
    handler: Arc<Overlap>,
    checks: Vec<String>,
}

/// Runs one group of `members` over [`EVENTS`] events until they are all
/// handled.
async fn run_with(members: usize) -> Run {
    let bus = Arc::new(MemoryBus::new(PARTITIONS));
    bus.ensure_topic(TOPIC, PARTITIONS).await.unwrap();
    let records: Vec<Record> = (0..EVENTS)
        .map(|i| Record::new(format!("m{i}"), format!("match {i}")))
        .collect();
    let publisher = bus.publisher().await.unwrap();
    publisher.publish_batch(TOPIC, &records).await.unwrap();
    let handler = Arc::new(Overlap::default());
    let group = GroupSpec {
        name: GroupName::Persist,
        id: GROUP.into(),
        topics: vec![TOPIC.into()],
        default_batch_size: 5,
        members,
        handler: handler.clone(),
        pool: None,
        resolver: None,
    };
    let readiness = Readiness::new();
    let watch = Watch {
        readiness: Some(readiness.clone()),
        lag_every: None,
    };
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(run_groups(
        bus.clone(),
        RunnerSection::default(),
        vec![group],
        watch,
        shutdown.clone(),
    ));
    let all_handled = async {
        while handler.handled.lock().unwrap().len() < EVENTS {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all_handled)
        .await
        .expect("every event handled");
    let checks: Vec<String> = readiness.report().checks.into_keys().collect();
    shutdown.cancel();
    let stats = running.await.unwrap().unwrap();
    assert_eq!(stats.len(), 1, "one line per group, not per member");
    assert_eq!(
        stats[0].1.handled, EVENTS as u64,
        "the members' counts added up"
    );
    let lag = bus.lag(GROUP, &[TOPIC.into()]).await.unwrap();
    assert_eq!(lag.iter().map(|p| p.messages).sum::<u64>(), 0, "all acked");
    Run { handler, checks }
}

fn handled_once_each(run: &Run) {
    let mut keys = run.handler.handled.lock().unwrap().clone();
    keys.sort();
    let mut expected: Vec<String> = (0..EVENTS).map(|i| format!("m{i}")).collect();
    expected.sort();
    assert_eq!(keys, expected, "every event handled exactly once");
}

#[tokio::test]
async fn two_members_have_batches_in_flight_at_once_and_share_the_events() {
    let run = run_with(2).await;
    handled_once_each(&run);
    assert_eq!(
        run.handler.most_in_flight.load(Ordering::SeqCst),
        2,
        "each member's runner has its own batch in flight"
    );
    assert_eq!(
        run.checks,
        vec![format!("runner:{GROUP}#0"), format!("runner:{GROUP}#1")],
        "each member reports its own readiness"
    );
}

#[tokio::test]
async fn one_member_has_one_batch_in_flight() {
    let run = run_with(1).await;
    handled_once_each(&run);
    assert_eq!(run.handler.most_in_flight.load(Ordering::SeqCst), 1);
    assert_eq!(run.checks, vec![format!("runner:{GROUP}")]);
}
