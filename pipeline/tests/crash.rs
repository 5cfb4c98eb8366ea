//! Crash test: a child process consuming N numbered events is killed with
//! SIGKILL several times mid-run and restarted, then stopped with SIGTERM.
//! At the end the set handled equals the set produced, and redelivery is
//! measured, not just printed: before each kill the group's committed
//! position must have moved on, and what a new life handles again must be what
//! the dead one had not committed yet (what it handled within the commit
//! interval before the kill, plus a batch per partition). A consumer that
//! never commits fails these checks (`a_consumer_that_never_commits_fails_the_checks`).
//!
//! The child is this very test binary, re-run with `--exact crash_child`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{numbered_records, parse_number, unique, Backend, PARTITIONS};
use pipeline::bus::kafka::{GroupProtocol, KafkaBus};
use pipeline::bus::{now_ms, Bus, BusError, Delivery, Subscription};
use pipeline::runner::{Handler, HandlerError, Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 3000;
const KILLS: usize = 4;
const BATCH: usize = 25;
/// How long a handled event may stay uncommitted: Kafka's auto-commit
/// interval (1 s; Redis Streams acks each batch at once) plus scheduling slack.
const COMMIT_WINDOW_MS: i64 = 2_500;

/// Appends each handled number and the time to a file and syncs it: the durable effect.
struct FileSink {
    file: Mutex<std::fs::File>,
}

#[async_trait]
impl Handler for FileSink {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        // Slow enough that each life handles only part of the events.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let mut file = self.file.lock().unwrap();
        let mut lines = String::new();
        let at = now_ms();
        for delivery in deliveries {
            let (n, _) = parse_number(&delivery.payload).unwrap();
            lines.push_str(&format!("{n} {at}\n"));
        }
        let written = file
            .write_all(lines.as_bytes())
            .and_then(|()| file.sync_data());
        deliveries
            .iter()
            .map(|_| {
                written
                    .as_ref()
                    .map_err(|e| HandlerError::retriable("io", e.to_string()))
                    .map(|_| ())
            })
            .collect()
    }
}

/// The broken consumer the checks must catch: it handles but never acks.
struct NeverAcks(Box<dyn Subscription>);

#[async_trait]
impl Subscription for NeverAcks {
    async fn poll(&mut self, max: usize, wait: Duration) -> Result<Vec<Delivery>, BusError> {
        self.0.poll(max, wait).await
    }

    async fn ack(&mut self, _deliveries: &[Delivery]) -> Result<(), BusError> {
        Ok(())
    }

    fn assignment(&self) -> Vec<(String, i32)> {
        self.0.assignment()
    }

    async fn close(self: Box<Self>) -> Result<(), BusError> {
        self.0.close().await
    }
}

async fn child_bus(backend: &str, prefix: &str) -> Arc<dyn Bus> {
    match backend {
        "kafka" => Arc::new(KafkaBus::new(common::kafka_config(GroupProtocol::Classic)).unwrap()),
        "kafka-consumer" => {
            Arc::new(KafkaBus::new(common::kafka_config(GroupProtocol::Consumer)).unwrap())
        }
        _ => Arc::new(common::redis_bus(prefix).await),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "the child process of the crash tests; started by them"]
async fn crash_child() {
    let var = |name: &str| std::env::var(name).unwrap();
    let shutdown = CancellationToken::new();
    let on_term = shutdown.clone();
    let mut term =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
    tokio::spawn(async move {
        term.recv().await;
        on_term.cancel();
    });
    // From here on SIGTERM stops the run gracefully.
    std::fs::write(format!("{}.ready", var("CRASH_OUT")), "").unwrap();
    let bus = child_bus(&var("CRASH_BACKEND"), &var("CRASH_PREFIX")).await;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(var("CRASH_OUT"))
        .unwrap();
    let mut subscription = bus
        .subscribe(&var("CRASH_GROUP"), &[var("CRASH_TOPIC")])
        .await
        .unwrap();
    if std::env::var("CRASH_NEVER_ACK").is_ok() {
        subscription = Box::new(NeverAcks(subscription));
    }
    let config = RunnerConfig {
        batch_size: BATCH,
        dead_letter_topic: format!("{}.dlq", var("CRASH_TOPIC")),
        ..RunnerConfig::new(var("CRASH_GROUP"))
    };
    let runner = Runner::new(
        config,
        Arc::new(FileSink {
            file: Mutex::new(file),
        }),
        bus.publisher().await.unwrap(),
    );
    let stats = runner.run(subscription, shutdown).await.unwrap();
    println!("crash_child dead-lettered {}", stats.dead_lettered);
}

struct Crash {
    backend: &'static str,
    prefix: String,
    topic: String,
    group: String,
    out: PathBuf,
    never_ack: bool,
}

impl Crash {
    fn spawn_child(&self) -> Child {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["--exact", "crash_child", "--ignored", "--nocapture"])
            .env("CRASH_BACKEND", self.backend)
            .env("CRASH_PREFIX", &self.prefix)
            .env("CRASH_TOPIC", &self.topic)
            .env("CRASH_GROUP", &self.group)
            .env("CRASH_OUT", &self.out)
            .stdout(Stdio::piped());
        if self.never_ack {
            command.env("CRASH_NEVER_ACK", "1");
        }
        command.spawn().unwrap()
    }
}

/// One line of the sink: the event's number and when it was handled.
#[derive(Clone, Copy)]
struct Handled {
    number: usize,
    at_ms: i64,
}

fn handled(out: &Path) -> Vec<Handled> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (number, at) = l.split_once(' ')?;
            Some(Handled {
                number: number.parse().ok()?,
                at_ms: at.parse().ok()?,
            })
        })
        .collect()
}

async fn wait_for_growth(out: &Path, beyond: usize, timeout: Duration) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let now = handled(out).len();
        if now > beyond || tokio::time::Instant::now() > deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The group's lag once it is below `previous` (a commit moved on), or after
/// 10 s without that (a consumer that never commits).
async fn wait_for_commit(bus: &dyn Bus, group: &str, topic: &str, previous: u64) -> u64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let lag: u64 = bus
            .lag(group, &[topic.to_string()])
            .await
            .unwrap()
            .iter()
            .map(|l| l.messages)
            .sum();
        if lag < previous || previous == 0 || tokio::time::Instant::now() > deadline {
            return lag;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One killed life of the child.
struct Life {
    /// Lines of the sink written before it started.
    first_line: usize,
    killed_at_ms: i64,
    /// The group's lag (uncommitted events) just before the kill.
    lag_at_kill: u64,
}

/// What the run shows about redelivery.
#[derive(Debug)]
struct Redelivery {
    /// Per restart: events handled again, and the bound they must stay within.
    per_restart: Vec<(usize, usize)>,
    lag_at_kills: Vec<u64>,
}

/// Checks that commits moved on before every kill and that each restart
/// handled again only what its predecessor had not committed. `final_first_line`
/// is where the last (gracefully stopped) life's lines begin.
fn check_redelivery(
    lines: &[Handled],
    lives: &[Life],
    final_first_line: usize,
) -> Result<Redelivery, String> {
    let lag_at_kills: Vec<u64> = lives.iter().map(|l| l.lag_at_kill).collect();
    let mut previous_lag = EVENTS as u64;
    for (kill, lag) in lag_at_kills.iter().enumerate() {
        // Once everything is committed there is nothing left to move on.
        if *lag >= previous_lag && previous_lag > 0 {
            return Err(format!(
                "the group committed nothing new before kill {kill}: lag {lag} after {previous_lag} (lags {lag_at_kills:?})"
            ));
        }
        previous_lag = *lag;
    }
    // Where each life's lines begin, then the end of the last.
    let mut starts: Vec<usize> = lives.iter().map(|l| l.first_line).collect();
    starts.push(final_first_line);
    starts.push(lines.len());
    let mut per_restart = Vec::new();
    for (index, dead) in lives.iter().enumerate() {
        let (dead_from, next_from, next_to) = (starts[index], starts[index + 1], starts[index + 2]);
        let handled_before: BTreeSet<usize> = lines[..next_from].iter().map(|h| h.number).collect();
        let again: BTreeSet<usize> = lines[next_from..next_to]
            .iter()
            .map(|h| h.number)
            .filter(|n| handled_before.contains(n))
            .collect();
        let uncommitted_window = lines[dead_from..next_from]
            .iter()
            .filter(|h| h.at_ms >= dead.killed_at_ms - COMMIT_WINDOW_MS)
            .count();
        let bound = uncommitted_window + BATCH * PARTITIONS as usize;
        if again.len() > bound {
            return Err(format!(
                "restart {index} handled {} events again, more than the {bound} its predecessor could have left uncommitted",
                again.len()
            ));
        }
        per_restart.push((again.len(), bound));
    }
    Ok(Redelivery {
        per_restart,
        lag_at_kills,
    })
}

/// Runs the kills and the final drain; panics on loss, returns the redelivery check.
async fn crash_and_recover(backend: Backend, never_ack: bool) -> Result<Redelivery, String> {
    let (name, prefix) = match backend {
        Backend::Kafka => ("kafka", String::new()),
        Backend::KafkaConsumerProtocol => ("kafka-consumer", String::new()),
        _ => ("redis", format!("{}:", unique("sscrash"))),
    };
    let bus = match backend {
        Backend::Redis => Arc::new(common::redis_bus(&prefix).await) as Arc<dyn Bus>,
        kafka => common::bus(kafka).await,
    };
    let topic = unique("crash");
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.publisher()
        .await
        .unwrap()
        .publish_batch(&topic, &numbered_records(EVENTS, 97))
        .await
        .unwrap();
    let out = std::env::temp_dir().join(format!("{}.handled", unique("crash")));
    let crash = Crash {
        backend: name,
        prefix,
        topic: topic.clone(),
        group: unique("g"),
        out: out.clone(),
        never_ack,
    };

    let mut lives = Vec::new();
    let mut progress_at_kills = Vec::new();
    let mut previous_lag = EVENTS as u64;
    for _ in 0..KILLS {
        let first_line = handled(&out).len();
        let mut child = crash.spawn_child();
        // Let it make some progress, and its commits with it, then kill it mid-batch.
        let progressed = wait_for_growth(&out, first_line + 200, Duration::from_secs(60)).await;
        let lag_at_kill = wait_for_commit(bus.as_ref(), &crash.group, &topic, previous_lag).await;
        previous_lag = lag_at_kill;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        lives.push(Life {
            first_line,
            killed_at_ms: now_ms(),
            lag_at_kill,
        });
        progress_at_kills.push(progressed);
    }
    let final_first_line = handled(&out).len();
    std::fs::remove_file(format!("{}.ready", out.display())).ok();
    let last = crash.spawn_child();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while handled(&out)
        .iter()
        .map(|h| h.number)
        .collect::<BTreeSet<_>>()
        .len()
        < EVENTS
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let final_output = stop_gracefully(last, &out);

    let lines = handled(&out);
    std::fs::remove_file(out).ok();
    let distinct: BTreeSet<usize> = lines.iter().map(|h| h.number).collect();
    let mut times: BTreeMap<usize, usize> = BTreeMap::new();
    for h in &lines {
        *times.entry(h.number).or_default() += 1;
    }
    eprintln!(
        "{name}: progress at each kill {progress_at_kills:?}; {} handled, {} distinct, {} redelivered, most deliveries of one event {}",
        lines.len(),
        distinct.len(),
        lines.len() - distinct.len(),
        times.values().max().copied().unwrap_or(0)
    );
    assert!(
        progress_at_kills.windows(2).all(|w| w[0] < w[1]) && progress_at_kills[0] > 0,
        "every child made progress before its kill: {progress_at_kills:?}"
    );
    assert_eq!(
        distinct,
        (0..EVENTS).collect::<BTreeSet<_>>(),
        "the set handled equals the set produced"
    );
    assert!(
        final_output.contains("crash_child dead-lettered 0"),
        "the last run dead-lettered nothing: {final_output}"
    );
    let check = check_redelivery(&lines, &lives, final_first_line);
    match &check {
        Ok(r) => eprintln!(
            "{name}: lag at each kill {:?}; handled again per restart, and its bound: {:?}",
            r.lag_at_kills, r.per_restart
        ),
        Err(err) => eprintln!("{name}: {err}"),
    }
    check
}

/// SIGTERM once the child handles it, then the child's own account of its run.
fn stop_gracefully(child: Child, out: &Path) -> String {
    let ready = PathBuf::from(format!("{}.ready", out.display()));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !ready.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    std::fs::remove_file(&ready).ok();
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the last child stopped cleanly ({}): {stdout}",
        output.status
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::Kafka, false).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_protocol_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::KafkaConsumerProtocol, false)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::Redis, false).await.unwrap();
}

/// The checks above can fail: a consumer that handles everything but never
/// commits loses nothing, yet must not pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_commits_fails_the_checks() {
    let err = crash_and_recover(Backend::Kafka, true)
        .await
        .expect_err("a consumer that never commits must fail the redelivery checks");
    assert!(err.contains("committed nothing new"), "{err}");
}
