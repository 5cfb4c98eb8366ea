//! Exactly once into the database: the persist group records its positions in
//! the transaction of its rows, so redelivered events are not applied again.
//!
//! - Store level, on PostgreSQL and SQLite: a second write of the same sourced
//!   events applies nothing; positions are per group and per partition.
//! - The crash test: the persist group dies between its database commit and
//!   its bus commit, 100 times on Apache Kafka (a trigger counts how often each
//!   match row is written, and every count must be 1) and 20 times on Redis
//!   Streams, which redelivers out of order and so runs without positions
//!   (every count at least 1, none missing).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use consumers::persist::{Applied, PersistEvent, PersistHandler, Source, Store};
use pipeline::bus::kafka::{GroupProtocol, KafkaBus, KafkaConfig};
use pipeline::bus::prefixed::PrefixedBus;
use pipeline::bus::redis_streams::{RedisStreamsBus, RedisStreamsConfig};
use pipeline::bus::{Bus, Delivery, Position};
use pipeline::runner::{Handler, HandlerError, RunStats, Runner, RunnerConfig};
use producers::loadgen::generate_matches;
use producers::publish::EventPublisher;
use schemas::{topics, Encoding, MatchCompleted};
use sqlx::{Connection, Executor, PgConnection};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const PARTITIONS: u32 = 4;
const LIVES: usize = 100;
const MATCHES: usize = 3_000;
const WAIT: Duration = Duration::from_secs(60);

fn unique(name: &str) -> String {
    format!(
        "{name}_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

fn database_url() -> String {
    std::env::var(consumers::persist::DATABASE_URL_ENV)
        .unwrap_or_else(|_| consumers::persist::DEFAULT_DATABASE_URL.into())
}

/// A PostgreSQL database of its own, migrated, with a trigger that counts the
/// writes of each `matches` row in `match_writes`.
async fn postgres_store() -> Store {
    let admin = database_url();
    let name = unique("sstest_once");
    let mut conn = PgConnection::connect(&admin).await.unwrap();
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
    let Store::Postgres(pool) = &store else {
        unreachable!()
    };
    sqlx::raw_sql(
        "CREATE TABLE match_writes (match_id bigint PRIMARY KEY, writes integer NOT NULL);
         CREATE FUNCTION count_match_write() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
           INSERT INTO match_writes VALUES (NEW.match_id, 1)
           ON CONFLICT (match_id) DO UPDATE SET writes = match_writes.writes + 1;
           RETURN NEW;
         END $$;
         CREATE TRIGGER count_match_write AFTER INSERT OR UPDATE ON matches
         FOR EACH ROW EXECUTE FUNCTION count_match_write();",
    )
    .execute(pool)
    .await
    .unwrap();
    store
}

fn sqlite_store_url(dir: &tempfile::TempDir) -> String {
    format!("sqlite://{}", dir.path().join("once.db").display())
}

fn matches(count: usize, first_id: i64) -> Vec<MatchCompleted> {
    let mut generated = generate_matches(count, 11);
    for (i, m) in generated.iter_mut().enumerate() {
        m.match_id = first_id + i as i64;
    }
    generated
}

fn sourced(
    events: &[MatchCompleted],
    partition: i32,
    first: i64,
) -> (Vec<PersistEvent>, Vec<Source>) {
    let sources = (0..events.len() as i64)
        .map(|i| Source {
            topic: Arc::from(topics::MATCHES),
            partition,
            position: Applied::of(&Position::Offset(first + i)).unwrap(),
        })
        .collect();
    let events = events.iter().cloned().map(PersistEvent::Match).collect();
    (events, sources)
}

async fn a_second_write_of_the_same_positions_applies_nothing(store: Store) {
    let generated = matches(40, 7_000_000_000);
    let (events, sources) = sourced(&generated[..30], 0, 0);
    let first = store.write_sourced("g1", &events, &sources).await.unwrap();
    assert_eq!((first.matches, first.already_applied), (30, 0));

    let again = store.write_sourced("g1", &events, &sources).await.unwrap();
    assert_eq!(
        (again.matches, again.player_rows, again.already_applied),
        (0, 0, 30)
    );

    // Ten old positions and ten new: only the new are written.
    let (events, sources) = sourced(&generated[20..40], 0, 20);
    let mixed = store.write_sourced("g1", &events, &sources).await.unwrap();
    assert_eq!((mixed.matches, mixed.already_applied), (10, 10));

    // Another partition, and another group, have applied nothing yet.
    let (events, sources) = sourced(&generated[..5], 1, 0);
    let other_partition = store.write_sourced("g1", &events, &sources).await.unwrap();
    assert_eq!(other_partition.already_applied, 0);
    let (events, sources) = sourced(&generated[..5], 0, 0);
    let other_group = store.write_sourced("g2", &events, &sources).await.unwrap();
    assert_eq!(other_group.already_applied, 0);
}

#[tokio::test]
async fn postgres_a_second_write_of_the_same_positions_applies_nothing() {
    a_second_write_of_the_same_positions_applies_nothing(postgres_store().await).await;
}

#[tokio::test]
async fn sqlite_a_second_write_of_the_same_positions_applies_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&sqlite_store_url(&dir)).await.unwrap();
    a_second_write_of_the_same_positions_applies_nothing(store).await;
}

/// A partition's old owner and its new one write the same events at once
/// (a rebalance): the position rows make them take turns, and the second
/// applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_of_a_partition_apply_its_events_once() {
    let store = postgres_store().await;
    let generated = matches(200, 9_000_000_000);
    let (events, sources) = sourced(&generated, 3, 1_000);
    let (old_owner, new_owner) = tokio::join!(
        store.write_sourced("g", &events, &sources),
        store.write_sourced("g", &events, &sources)
    );
    let (old_owner, new_owner) = (old_owner.unwrap(), new_owner.unwrap());
    let mut applied = [old_owner.already_applied, new_owner.already_applied];
    applied.sort_unstable();
    assert_eq!(applied, [0, 200]);
    assert_eq!(match_writes(&store).await, (200, 1, 1));
}

/// The persist handler, dying on its second call of each life right after its
/// database commit (the runner never acks that batch), or every fourth life
/// right before it (the batch is neither written nor acked).
struct DiesAfterCommit {
    inner: PersistHandler,
    calls_this_life: AtomicUsize,
    before_commit: std::sync::atomic::AtomicBool,
    died: Notify,
    /// How often each position was handed over, over all lives.
    deliveries: Mutex<HashMap<(i32, String), usize>>,
}

#[async_trait]
impl Handler for DiesAfterCommit {
    fn takes_whole_batches(&self) -> bool {
        self.inner.takes_whole_batches()
    }

    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        {
            let mut seen = self.deliveries.lock().unwrap();
            for d in deliveries {
                *seen
                    .entry((d.partition, format!("{:?}", d.position)))
                    .or_default() += 1;
            }
        }
        let call = self.calls_this_life.fetch_add(1, Ordering::SeqCst) + 1;
        if call == 2 && self.before_commit.load(Ordering::SeqCst) {
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        let results = self.inner.handle(deliveries).await;
        if call == 2 && results.iter().all(Result::is_ok) {
            self.died.notify_one();
            std::future::pending::<()>().await;
        }
        results
    }
}

fn runner_config(group: &str) -> RunnerConfig {
    RunnerConfig {
        batch_size: 10,
        batch_wait: Duration::from_millis(50),
        dead_letter_topic: "dead-letters".into(),
        ..RunnerConfig::new(group)
    }
}

async fn start(
    bus: &Arc<dyn Bus>,
    group: &str,
    handler: Arc<dyn Handler>,
) -> (CancellationToken, JoinHandle<RunStats>) {
    let subscription = bus
        .subscribe(group, &[topics::MATCHES.to_string()])
        .await
        .unwrap();
    let runner = Runner::new(
        runner_config(group),
        handler,
        bus.publisher().await.unwrap(),
    );
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { runner.run(subscription, token).await.unwrap() });
    (shutdown, task)
}

async fn match_writes(store: &Store) -> (i64, i64, i64) {
    let Store::Postgres(pool) = store else {
        unreachable!()
    };
    sqlx::query_as("SELECT count(*), coalesce(min(writes), 0)::int8, coalesce(max(writes), 0)::int8 FROM match_writes")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Kills the persist handler `lives` times right after its database commit.
/// On a bus that redelivers in order every match row must be written exactly
/// once; on one that does not, at least once, and none may be missing.
async fn survives_dying_between_the_database_and_the_bus_commit(bus: Arc<dyn Bus>, lives: usize) {
    let store = postgres_store().await;
    let bus: Arc<dyn Bus> = Arc::new(PrefixedBus::new(bus, format!("{}.", unique("once"))));
    bus.ensure_topic(topics::MATCHES, PARTITIONS).await.unwrap();
    bus.ensure_topic("dead-letters", 1).await.unwrap();
    let publisher = EventPublisher::new(bus.publisher().await.unwrap(), Encoding::SingleObject);
    publisher
        .publish_matches(&matches(MATCHES, 8_000_000_000))
        .await
        .unwrap();

    let group = unique("persist");
    let handler = Arc::new(DiesAfterCommit {
        // Two writers: each batch's partitions are split between two transactions.
        inner: PersistHandler::new(store.clone(), group.clone()).with_writers(2),
        calls_this_life: AtomicUsize::new(0),
        before_commit: std::sync::atomic::AtomicBool::new(false),
        died: Notify::new(),
        deliveries: Mutex::new(HashMap::new()),
    });
    for life in 0..lives {
        handler.calls_this_life.store(0, Ordering::SeqCst);
        handler.before_commit.store(life % 4 == 3, Ordering::SeqCst);
        let (_shutdown, task) = start(&bus, &group, handler.clone()).await;
        tokio::time::timeout(WAIT, handler.died.notified())
            .await
            .unwrap_or_else(|_| panic!("life {life} never reached its second batch"));
        // The process dies: nothing after the commit runs, the member is gone.
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
    let (written_before_the_last_life, _, _) = match_writes(&store).await;

    // A member that lives drains the rest.
    let survivor = PersistHandler::new(store.clone(), group.clone()).with_writers(2);
    let (shutdown, task) = start(&bus, &group, Arc::new(survivor)).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while match_writes(&store).await.0 < MATCHES as i64 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    shutdown.cancel();
    let stats = task.await.unwrap();

    let (rows, fewest, most) = match_writes(&store).await;
    assert_eq!(rows, MATCHES as i64, "every match is in the table");
    assert_eq!(
        (fewest, most),
        (1, 1),
        "each match row was written exactly once"
    );
    assert_eq!(stats.dead_lettered, 0);
    let redelivered: usize = handler
        .deliveries
        .lock()
        .unwrap()
        .values()
        .map(|n| n - 1)
        .sum();
    assert!(
        redelivered >= lives,
        "each death leaves its last batch unacked: {redelivered} redeliveries"
    );
    assert!(
        written_before_the_last_life > lives as i64,
        "the lives made progress"
    );
    eprintln!(
        "{lives} deaths after commit: {redelivered} redeliveries, \
         {written_before_the_last_life} of {MATCHES} matches written before the survivor, \
         each written {fewest} to {most} times"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_survives_dying_between_the_database_and_the_bus_commit() {
    let bus = KafkaBus::new(KafkaConfig {
        brokers: std::env::var("SCOUTSTREAM_KAFKA_BROKERS")
            .unwrap_or_else(|_| "127.0.0.1:9092".into()),
        group_protocol: GroupProtocol::Consumer,
        session_timeout: Duration::from_secs(6),
        ..KafkaConfig::default()
    })
    .unwrap();
    survives_dying_between_the_database_and_the_bus_commit(Arc::new(bus), LIVES).await;
}

/// Redis Streams: a partition's new owner claims what the dead one left
/// pending before it reads anything new, so positions hold there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_survives_dying_between_the_database_and_the_bus_commit() {
    let bus = RedisStreamsBus::connect(RedisStreamsConfig {
        url: std::env::var("SCOUTSTREAM_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379".into()),
        key_prefix: format!("{}:", unique("sstest")),
        default_partitions: PARTITIONS,
        session_timeout: Duration::from_millis(1000),
        claim_idle: Duration::from_millis(1000),
        ..RedisStreamsConfig::default()
    })
    .await
    .unwrap();
    survives_dying_between_the_database_and_the_bus_commit(Arc::new(bus), 20).await;
}
