//! The chaos suite: the real binaries on servers of the run's own (Apache
//! Kafka, PostgreSQL, Redis with an append-only file), while faults land on a
//! schedule printed up front:
//! - a persist process SIGKILLed 20 times;
//! - a rebalance storm: three persist members, one leaving or joining every 10 s;
//! - the broker SIGKILLed and restarted 3 times (Kafka, or Redis when the bus
//!   is Redis Streams);
//! - PostgreSQL stopped in immediate mode and restarted 3 times;
//! - Redis paused (`CLIENT PAUSE 30000 ALL`) once and restarted once;
//! - 1% poison events of five kinds ([`workload::Poison`]).
//!
//! It runs once with Kafka as the bus and once with Redis Streams (on the same
//! Redis the cache uses, which then takes every Redis fault as a bus fault).
//! Then [`check`] counts what went wrong; any count off fails the run. The
//! size comes from `SCOUTSTREAM_CHAOS_MATCHES` (100,000 in the test command;
//! `scripts/chaos.sh 1000000` runs the large one in release), the publishing
//! pace from `SCOUTSTREAM_CHAOS_RATE` (matches per second, 800).
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod check;
mod processes;
mod report;
mod servers;
mod workload;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::bus::Bus;
use pipeline::config::{Backend, BusConfig};
use schemas::topics;

use processes::{Env, Fleet, PERSIST_SLOTS};
use report::{LagSample, Timeline};
use servers::{Kafka, Postgres, Redis};

const PARTITIONS: u32 = 12;
const DEFAULT_MATCHES: usize = 100_000;
/// Publishing pace: the faults land while events flow.
const MATCHES_PER_SECOND: f64 = 800.0;
/// Long enough for three broker restarts (about 20 s each) with traffic between.
const SHORTEST_RUN: Duration = Duration::from_secs(120);
const DRAIN_LIMIT: Duration = Duration::from_secs(900);
const REDIS_PAUSE: Duration = Duration::from_secs(30);

/// The bus the run puts the groups on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Kafka,
    RedisStreams,
}

/// One chaos run at a time: two at once would share the two cores and the
/// timings the schedule is written for.
static ONE_RUN_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    KillPersist,
    MembershipChange,
    KillBroker,
    StopPostgres,
    PauseRedis,
    RestartRedis,
}

/// When each fault lands, as offsets from the start of publishing.
fn schedule(over: Duration) -> Vec<(Duration, Fault)> {
    let at = |share: f64| over.mul_f64(share);
    let mut plan: Vec<(Duration, Fault)> = (0..20)
        .map(|i| (at(0.05 + 0.9 * f64::from(i) / 19.0), Fault::KillPersist))
        .collect();
    let mut storm = Duration::from_secs(10);
    while storm < over {
        plan.push((storm, Fault::MembershipChange));
        storm += Duration::from_secs(10);
    }
    plan.extend([0.2, 0.5, 0.8].map(|s| (at(s), Fault::KillBroker)));
    plan.extend([0.3, 0.6, 0.9].map(|s| (at(s), Fault::StopPostgres)));
    plan.push((at(0.4), Fault::PauseRedis));
    plan.push((at(0.7), Fault::RestartRedis));
    plan.sort_by_key(|(at, _)| *at);
    plan
}

/// The plan split by the server each fault hits, each lane in time order,
/// each fault with its place in the whole plan.
fn lanes(plan: Vec<(Duration, Fault)>, engine: Engine) -> Vec<Vec<(usize, (Duration, Fault))>> {
    let lane_of = |fault: Fault| match fault {
        Fault::KillPersist | Fault::MembershipChange => 0,
        Fault::KillBroker if engine == Engine::RedisStreams => 3,
        Fault::KillBroker => 1,
        Fault::StopPostgres => 2,
        Fault::PauseRedis | Fault::RestartRedis => 3,
    };
    let mut lanes: Vec<Vec<(usize, (Duration, Fault))>> = vec![Vec::new(); 4];
    for (n, (at, fault)) in plan.into_iter().enumerate() {
        lanes[lane_of(fault)].push((n, (at, fault)));
    }
    lanes
}

struct Servers {
    /// None when the bus is Redis Streams: Redis is the broker then.
    kafka: Option<Kafka>,
    postgres: Postgres,
    redis: Mutex<Redis>,
}

/// Carries out one fault; returns when it is over (the server is back).
fn inflict(fault: Fault, servers: &Servers, fleet: &Mutex<Fleet>, n: usize) {
    let down = Duration::from_secs(3);
    match fault {
        Fault::KillPersist => {
            fleet.lock().unwrap().kill_one(n);
        }
        Fault::MembershipChange => {
            let leaving = {
                let mut fleet = fleet.lock().unwrap();
                if fleet.live_persist() > 1 && n.is_multiple_of(2) {
                    fleet.leaving(n % PERSIST_SLOTS)
                } else {
                    fleet.fill_persist();
                    None
                }
            };
            if let Some(member) = leaving {
                processes::terminate(member);
            }
        }
        Fault::KillBroker => match &servers.kafka {
            Some(kafka) => {
                kafka.kill();
                std::thread::sleep(down);
                kafka.restart();
            }
            None => servers.redis.lock().unwrap().kill_and_restart(down),
        },
        Fault::StopPostgres => {
            servers.postgres.stop_immediate();
            std::thread::sleep(down);
            servers.postgres.restart();
        }
        Fault::PauseRedis => servers.redis.lock().unwrap().pause(REDIS_PAUSE),
        Fault::RestartRedis => servers.redis.lock().unwrap().restart(),
    }
}

async fn chaos_bus(env: &Env) -> Arc<dyn Bus> {
    let mut config = BusConfig {
        backend: Backend::Kafka,
        partitions: PARTITIONS,
        ..BusConfig::default()
    };
    if env.engine == Engine::RedisStreams {
        config.backend = Backend::RedisStreams;
        config.redis.url = env.redis_url.clone();
        return config.connect().await.unwrap();
    }
    config.kafka.brokers = env.brokers.clone();
    // Publishing waits out three broker restarts rather than give up after
    // 60 s: sending a batch again could duplicate events the checker counts.
    config
        .kafka
        .client
        .insert("message.timeout.ms".into(), "600000".into());
    config.connect().await.unwrap()
}

fn migrate(env: &Env) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_scoutstream"))
        .arg("migrate")
        .env("SCOUTSTREAM__DATABASE__URL", &env.database_url)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Total lag of persist and its per-partition lag on `matches`, once a second.
async fn sample_lag(bus: &Arc<dyn Bus>, started: Instant) -> Option<LagSample> {
    let lag = bus
        .lag(check::PERSIST_GROUP, &[topics::MATCHES.to_string()])
        .await
        .ok()?;
    Some(LagSample {
        at: started.elapsed(),
        per_partition: lag
            .iter()
            .map(|l| (l.partition, (l.messages, l.seconds)))
            .collect(),
    })
}

async fn wait_until_drained(bus: &Arc<dyn Bus>, fleet: &Mutex<Fleet>) -> Duration {
    let started = Instant::now();
    let groups = ["chaos-persist", "chaos-enrich", "chaos-cache"];
    loop {
        let mut behind = 0;
        for group in groups {
            let lag = bus.lag(group, &[topics::MATCHES.to_string()]).await;
            behind += lag.map_or(u64::MAX / 4, |l| l.iter().map(|p| p.messages).sum());
        }
        if behind == 0 {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < DRAIN_LIMIT,
            "the groups did not catch up: {behind} behind"
        );
        fleet.lock().unwrap().restart_exited();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_kafka_loses_duplicates_and_reorders_nothing() {
    let _alone = ONE_RUN_AT_A_TIME.lock().await;
    run(Engine::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_on_redis_streams_loses_duplicates_and_reorders_nothing() {
    let _alone = ONE_RUN_AT_A_TIME.lock().await;
    run(Engine::RedisStreams).await;
}

async fn run(engine: Engine) {
    let matches = std::env::var("SCOUTSTREAM_CHAOS_MATCHES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_MATCHES);
    let rate = std::env::var("SCOUTSTREAM_CHAOS_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(MATCHES_PER_SECOND);
    let over = Duration::from_secs_f64(matches as f64 / rate).max(SHORTEST_RUN);
    let servers = Arc::new(Servers {
        kafka: (engine == Engine::Kafka).then(Kafka::start),
        postgres: Postgres::start(),
        redis: Mutex::new(Redis::start()),
    });
    let logs = std::env::temp_dir().join(format!("scoutstream-chaos-{}", std::process::id()));
    std::fs::create_dir_all(&logs).unwrap();
    let env = Env {
        engine,
        brokers: servers
            .kafka
            .as_ref()
            .map(Kafka::address)
            .unwrap_or_default(),
        database_url: servers.postgres.url(),
        redis_url: servers.redis.lock().unwrap().url(),
        partitions: PARTITIONS,
        logs: logs.clone(),
    };
    let bus = chaos_bus(&env).await;
    let mut config = scoutstream::app::AppConfig::default();
    config.bus.partitions = PARTITIONS;
    scoutstream::app::ensure_topics(bus.as_ref(), &config)
        .await
        .unwrap();
    migrate(&env);
    let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
    sqlx::raw_sql(check::WRITE_COUNTER)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let plan = schedule(over);
    eprintln!(
        "chaos: {matches} matches on {engine:?} over {over:?}, logs in {}",
        logs.display()
    );
    for (at, fault) in &plan {
        eprintln!("chaos: schedule {:>6.1}s {fault:?}", at.as_secs_f64());
    }
    let fleet = Arc::new(Mutex::new(Fleet::start(env.clone())));
    let started = Instant::now();
    let producer = tokio::spawn(workload::publish(
        bus.publisher().await.unwrap(),
        matches,
        over,
    ));

    let timeline = Arc::new(Mutex::new(Timeline::default()));
    // One lane per kind of fault: a broker restart (about 20 s) must not
    // hold back the persist kills scheduled meanwhile.
    let lanes: Vec<_> = lanes(plan, engine)
        .into_iter()
        .map(|lane| {
            let (servers, fleet, timeline) = (servers.clone(), fleet.clone(), timeline.clone());
            tokio::task::spawn_blocking(move || {
                for (n, (at, fault)) in lane {
                    if let Some(wait) = at.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                    let from = started.elapsed();
                    inflict(fault, &servers, &fleet, n);
                    let mut to = started.elapsed();
                    if fault == Fault::PauseRedis {
                        to = from + REDIS_PAUSE; // CLIENT PAUSE returns at once
                    }
                    eprintln!(
                        "chaos: {:>6.1}s-{:>6.1}s {fault:?}",
                        from.as_secs_f64(),
                        to.as_secs_f64()
                    );
                    timeline.lock().unwrap().faults.push((fault, from, to));
                }
            })
        })
        .collect();
    while lanes.iter().any(|l| !l.is_finished()) || !producer.is_finished() {
        {
            let mut fleet = fleet.lock().unwrap();
            fleet.restart_exited();
            fleet.sample_rss();
        }
        if let Some(sample) = sample_lag(&bus, started).await {
            timeline.lock().unwrap().lag.push(sample);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for lane in lanes {
        lane.await.unwrap();
    }
    let published = producer.await.unwrap();
    fleet.lock().unwrap().fill_persist();
    let drained = wait_until_drained(&bus, &fleet).await;
    let fleet = Arc::try_unwrap(fleet).ok().unwrap().into_inner().unwrap();
    let (starts, kills, peaks, exits) = (
        fleet.persist_starts,
        fleet.persist_kills,
        fleet.peak_rss_kib.clone(),
        fleet.exits.clone(),
    );
    let stop_failures = fleet.stop_all();

    let pool = sqlx::PgPool::connect(&env.database_url).await.unwrap();
    let mut findings = check::check(&pool, &bus, &published).await;
    findings.failures.extend(stop_failures);
    let timeline = timeline.lock().unwrap();
    report::print(&report::Summary {
        engine,
        matches,
        published: &published,
        findings: &findings,
        timeline: &timeline,
        drained,
        total: started.elapsed(),
        persist_starts: starts,
        persist_kills: kills,
        exits: &exits,
        peak_rss_kib: &peaks,
    });
    assert!(
        findings.failures.is_empty(),
        "chaos run failed: {:#?}",
        findings.failures
    );
}
