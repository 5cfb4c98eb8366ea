//! A rebalance storm on Apache Kafka: three `scoutstream run --groups persist`
//! processes, one of them leaving (SIGTERM or SIGKILL, in turn) or joining every
//! few seconds for a minute while matches flow in. At the end every match and
//! player row is in PostgreSQL once, hero pools equal a recount, and every
//! partition of both topics was consumed to its end by the group.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;
use producers::publish::EventPublisher;
use schemas::{topics, Encoding};

const PARTITIONS: u32 = 12;
const MATCHES: usize = 6_000;
const STORM: Duration = Duration::from_secs(60);
const MEMBERSHIP_CHANGE_EVERY: Duration = Duration::from_secs(4);

struct Member {
    child: Option<Child>,
}

fn start_member(deployment: &Deployment, group_protocol: &str) -> Child {
    deployment
        .command(&["run", "--groups", "persist"])
        .env("SCOUTSTREAM__BUS__KAFKA__GROUP_PROTOCOL", group_protocol)
        .env("SCOUTSTREAM__BUS__PARTITIONS", PARTITIONS.to_string())
        // Three processes on one host: only the first binds the metrics port.
        .env(
            "SCOUTSTREAM__OBSERVE__BIND",
            format!("127.0.0.1:{}", free_port()),
        )
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn leave(mut child: Child, hard: bool) {
    if hard {
        child.kill().unwrap(); // SIGKILL
    } else {
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
    }
    child.wait().unwrap();
}

/// Publishes the matches in small chunks spread over the storm.
async fn publish_over(
    bus: std::sync::Arc<dyn pipeline::bus::Bus>,
    matches: Vec<schemas::MatchCompleted>,
) {
    let publisher = EventPublisher::new(bus.publisher().await.unwrap(), Encoding::SingleObject);
    let chunks = 200;
    let pause = (STORM - Duration::from_secs(10)) / chunks;
    for chunk in matches.chunks(matches.len().div_ceil(chunks as usize)) {
        publisher.publish_matches(chunk).await.unwrap();
        tokio::time::sleep(pause).await;
    }
}

async fn rebalance_storm(group_protocol: &'static str) {
    let deployment = Deployment::new("kafka").await;
    let bus = deployment_bus(&deployment).await;
    for topic in [topics::MATCHES, topics::PLAYERS] {
        bus.ensure_topic(topic, PARTITIONS).await.unwrap();
    }
    let matches = producers::loadgen::generate_matches(MATCHES, 23);
    let players: i64 = matches.iter().map(|m| m.players.len() as i64).sum();
    let producer = tokio::spawn(publish_over(bus.clone(), matches));

    let mut members: Vec<Member> = (0..3)
        .map(|_| Member {
            child: Some(start_member(&deployment, group_protocol)),
        })
        .collect();
    let started = Instant::now();
    let mut changes = 0usize;
    while started.elapsed() < STORM {
        tokio::time::sleep(MEMBERSHIP_CHANGE_EVERY).await;
        let member = &mut members[changes % 3];
        match member.child.take() {
            Some(child) => leave(child, changes.is_multiple_of(2)),
            None => member.child = Some(start_member(&deployment, group_protocol)),
        }
        changes += 1;
    }
    producer.await.unwrap();
    for member in &mut members {
        if member.child.is_none() {
            member.child = Some(start_member(&deployment, group_protocol));
        }
    }

    let pool = deployment.pool().await;
    wait_for_count(&pool, "SELECT count(*) FROM matches", MATCHES as i64).await;
    wait_for_count(&pool, "SELECT count(*) FROM player_matches", players).await;
    wait_for_zero_lag(&deployment, &deployment.group_prefix).await;
    let lag = bus
        .lag(
            &format!("{}-persist", deployment.group_prefix),
            &[topics::MATCHES.to_string(), topics::PLAYERS.to_string()],
        )
        .await
        .unwrap();
    for member in members {
        leave(member.child.unwrap(), false);
    }

    let reapplied = count(
        &pool,
        "SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = 'matches'",
    )
    .await;
    eprintln!(
        "{group_protocol}: {changes} membership changes in {:?}; {reapplied} redelivered match writes absorbed by the upsert",
        STORM
    );
    assert_eq!(
        lag.iter()
            .filter(|l| l.topic.ends_with(topics::MATCHES))
            .count(),
        PARTITIONS as usize,
        "every matches partition has a committed position"
    );
    assert!(
        lag.iter().all(|l| l.messages == 0),
        "no partition left unconsumed: {lag:?}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM matches").await,
        MATCHES as i64
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM player_matches").await,
        players,
        "no player row persisted twice"
    );
    let (games, known) = hero_pool_games_and_known_rows(&pool).await;
    assert_eq!(games, known, "hero pools count each known game once");
    pool.close().await;
    deployment.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_protocol_rebalance_storm_loses_and_duplicates_nothing() {
    rebalance_storm("classic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_protocol_rebalance_storm_loses_and_duplicates_nothing() {
    rebalance_storm("consumer").await;
}
