//! Memory while draining a large Kafka backlog: every event is published
//! first, then persist, enrich and cache start as separate `scoutstream run`
//! processes and drain it. Each must stay under 300 MiB (peak RSS, `VmHWM`)
//! however long the backlog: prefetch is bounded by configuration
//! (`bus.kafka.max_prefetch_kbytes`), batches by `runner.batch_size`.
//!
//! The backlog is nine player profiles (over a fixed set of accounts) for each
//! match, so the database stays small while the bus holds millions of events.
//! `SCOUTSTREAM_BACKLOG_EVENTS` sets its size: 100,000 in the test command,
//! `scripts/backlog-memory.sh 5000000` for the large run (release).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{count, deployment_bus, run_ok, Deployment};
use producers::loadgen::generate_matches;
use producers::publish::EventPublisher;
use schemas::{topics, Encoding, MatchCompleted, PlayerProfile};
use testkit::process::peak_rss_kib;

const DEFAULT_EVENTS: usize = 100_000;
const PARTITIONS: u32 = 12;
const CHUNK: usize = 10_000;
/// One event in ten is a match; the rest are profiles of these accounts.
const ACCOUNTS: i64 = 100_000;
/// Profile accounts start here, above those of the generated matches.
const PROFILE_ACCOUNTS: i64 = 1_000_000_000;
const PEAK_LIMIT_MIB: u64 = 300;
const DRAIN_LIMIT: Duration = Duration::from_secs(7_200);
const ROLES: [&str; 3] = ["persist", "enrich", "cache"];

fn profile(n: usize) -> PlayerProfile {
    PlayerProfile {
        account_id: PROFILE_ACCOUNTS + (n as i64 % ACCOUNTS),
        persona_name: Some(format!("player {n}")),
        rank_tier: Some(10 + (n % 70) as i32),
        leaderboard_rank: None,
        country: Some("SE".into()),
        last_seen: Some(1_700_000_000 + n as i64),
        avatar_url: None,
        profile_url: None,
        observed_at_ms: 1_700_000_000_000 + n as i64,
        source: "rank".into(),
    }
}

fn matches_of_chunk(chunk: usize, count: usize) -> Vec<MatchCompleted> {
    let mut matches = generate_matches(count, 7_000 + chunk as u64);
    for (i, m) in matches.iter_mut().enumerate() {
        m.match_id = 8_000_000_000 + (chunk * CHUNK + i) as i64;
    }
    matches
}

/// What the backlog holds.
struct Backlog {
    matches: usize,
    /// Accounts with at least one profile event.
    profile_accounts: usize,
}

/// Publishes `events` in chunks (never the whole backlog in memory).
async fn publish_backlog(deployment: &Deployment, events: usize) -> Backlog {
    let bus = deployment_bus(deployment).await;
    for topic in [topics::MATCHES, topics::PLAYERS, topics::MATCHES_ENRICHED] {
        bus.ensure_topic(topic, PARTITIONS).await.unwrap();
    }
    bus.ensure_topic(topics::DEAD_LETTERS, 1).await.unwrap();
    let publisher = EventPublisher::new(bus.publisher().await.unwrap(), Encoding::SingleObject);
    let mut matches = 0;
    let mut accounts = std::collections::HashSet::new();
    for chunk in 0..events.div_ceil(CHUNK) {
        let size = CHUNK.min(events - chunk * CHUNK);
        let match_count = size / 10;
        let profiles: Vec<PlayerProfile> = (chunk * CHUNK + match_count..chunk * CHUNK + size)
            .map(profile)
            .collect();
        publisher
            .publish_matches(&matches_of_chunk(chunk, match_count))
            .await
            .unwrap();
        publisher.publish_players(&profiles).await.unwrap();
        matches += match_count;
        accounts.extend(profiles.iter().map(|p| p.account_id));
    }
    Backlog {
        matches,
        profile_accounts: accounts.len(),
    }
}

fn start(deployment: &Deployment, role: &str, logs: &Path) -> Child {
    let log = std::fs::File::create(logs.join(format!("{role}.log"))).unwrap();
    let mut command: Command = deployment.command(&["run", "--groups", role]);
    command
        .env("SCOUTSTREAM__BUS__PARTITIONS", PARTITIONS.to_string())
        // The shipped batch size, not the small one the other tests use.
        .env("SCOUTSTREAM__RUNNER__BATCH_SIZE", "500")
        .env(
            "SCOUTSTREAM__OBSERVE__BIND",
            format!("127.0.0.1:{}", common::free_port()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        // A file, not a pipe nobody reads: a full pipe would stall the process.
        .stderr(log);
    command.spawn().unwrap()
}

/// What each role still has to do: its group's lag on its own topics.
async fn lag_of(deployment: &Deployment, role: &str) -> u64 {
    let bus = deployment_bus(deployment).await;
    let group = format!("{}-{role}", deployment.group_prefix);
    let topics: Vec<String> = match role {
        "enrich" => vec![topics::MATCHES.into()],
        _ => vec![topics::MATCHES.into(), topics::PLAYERS.into()],
    };
    bus.lag(&group, &topics)
        .await
        .map_or(u64::MAX, |lag| lag.iter().map(|p| p.messages).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_a_kafka_backlog_keeps_every_process_under_300_mib() {
    let events = std::env::var("SCOUTSTREAM_BACKLOG_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(DEFAULT_EVENTS);
    let deployment = Deployment::new("kafka").await;
    run_ok(&deployment, &["migrate"]);
    let logs = tempfile::tempdir().unwrap();

    let publishing = Instant::now();
    let backlog = publish_backlog(&deployment, events).await;
    let matches = backlog.matches;
    let published_in = publishing.elapsed();
    eprintln!("backlog: {events} events ({matches} matches) published in {published_in:?}");

    let draining = Instant::now();
    let mut children: Vec<(&str, Child)> = ROLES
        .iter()
        .map(|role| (*role, start(&deployment, role, logs.path())))
        .collect();
    let mut peaks: BTreeMap<&str, u64> = BTreeMap::new();
    let mut drained: BTreeMap<&str, Duration> = BTreeMap::new();
    while drained.len() < ROLES.len() {
        assert!(
            draining.elapsed() < DRAIN_LIMIT,
            "not drained in {DRAIN_LIMIT:?}"
        );
        for (role, child) in &mut children {
            assert!(
                child.try_wait().unwrap().is_none(),
                "{role} exited while draining (log in {})",
                logs.path().display()
            );
            if let Some(kib) = peak_rss_kib(child) {
                let peak = peaks.entry(*role).or_default();
                *peak = (*peak).max(kib);
            }
        }
        for role in ROLES {
            if !drained.contains_key(role) && lag_of(&deployment, role).await == 0 {
                drained.insert(role, draining.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for (role, child) in children {
        let (_, stderr) = common::stop(child);
        assert!(!stderr.contains("panicked"), "{role}: {stderr}");
    }

    let pool = deployment.pool().await;
    let stored_matches = count(&pool, "SELECT count(*) FROM matches").await;
    let profiles = count(
        &pool,
        &format!("SELECT count(*) FROM players WHERE account_id >= {PROFILE_ACCOUNTS}"),
    )
    .await;
    pool.close().await;
    deployment.drop_database().await;

    eprintln!("| role | drained after | events/s | peak RSS |");
    eprintln!("|---|---|---|---|");
    for role in ROLES {
        let took = drained[role];
        let handled = if role == "enrich" { matches } else { events };
        eprintln!(
            "| {role} | {:.0} s | {:.0} | {} MiB |",
            took.as_secs_f64(),
            handled as f64 / took.as_secs_f64(),
            peaks.get(role).copied().unwrap_or(0) / 1024
        );
    }
    assert_eq!(stored_matches, matches as i64, "every match persisted");
    assert_eq!(
        profiles, backlog.profile_accounts as i64,
        "every account's profile persisted"
    );
    for role in ROLES {
        let peak_mib = peaks.get(role).copied().unwrap_or(0) / 1024;
        assert!(peak_mib > 0, "{role}'s RSS was never read");
        assert!(
            peak_mib < PEAK_LIMIT_MIB,
            "{role} peaked at {peak_mib} MiB draining {events} events"
        );
    }
}
