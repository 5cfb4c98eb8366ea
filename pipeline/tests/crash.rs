//! Crash test: a child process consuming N numbered events is killed with
//! SIGKILL several times mid-run and restarted. At the end every event was
//! handled at least once: the set handled equals the set produced.
//!
//! The child is this very test binary, re-run with `--exact crash_child`.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::{numbered_records, parse_number, unique, Backend, PARTITIONS};
use pipeline::bus::kafka::{GroupProtocol, KafkaBus};
use pipeline::bus::{Bus, Delivery};
use pipeline::runner::{Handler, HandlerError, Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;

const EVENTS: usize = 3000;
const KILLS: usize = 4;

/// Appends each handled number to a file and syncs it: the durable effect.
struct FileSink {
    file: Mutex<std::fs::File>,
}

#[async_trait]
impl Handler for FileSink {
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let mut file = self.file.lock().unwrap();
        let mut lines = String::new();
        for delivery in deliveries {
            let (n, _) = parse_number(&delivery.payload).unwrap();
            lines.push_str(&format!("{n}\n"));
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
    let bus = child_bus(&var("CRASH_BACKEND"), &var("CRASH_PREFIX")).await;
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(var("CRASH_OUT"))
        .unwrap();
    let subscription = bus
        .subscribe(&var("CRASH_GROUP"), &[var("CRASH_TOPIC")])
        .await
        .unwrap();
    let config = RunnerConfig {
        batch_size: 25,
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
    runner
        .run(subscription, CancellationToken::new())
        .await
        .unwrap();
}

struct Crash {
    backend: &'static str,
    prefix: String,
    topic: String,
    group: String,
    out: PathBuf,
}

impl Crash {
    fn spawn_child(&self) -> Child {
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "crash_child", "--ignored", "--nocapture"])
            .env("CRASH_BACKEND", self.backend)
            .env("CRASH_PREFIX", &self.prefix)
            .env("CRASH_TOPIC", &self.topic)
            .env("CRASH_GROUP", &self.group)
            .env("CRASH_OUT", &self.out)
            .spawn()
            .unwrap()
    }
}

fn handled(out: &Path) -> Vec<usize> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
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

async fn crash_and_recover(backend: Backend) {
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
        topic,
        group: unique("g"),
        out: out.clone(),
    };

    let mut seen_before_kill = Vec::new();
    for _ in 0..KILLS {
        let before = handled(&out).len();
        let mut child = crash.spawn_child();
        // Let it make some progress, then kill it mid-batch.
        let progressed = wait_for_growth(&out, before + 200, Duration::from_secs(60)).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        seen_before_kill.push(progressed);
    }
    let mut last = crash.spawn_child();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
    while handled(&out).iter().collect::<BTreeSet<_>>().len() < EVENTS
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    last.kill().unwrap();
    last.wait().unwrap();

    let all_handled = handled(&out);
    let distinct: BTreeSet<usize> = all_handled.iter().copied().collect();
    eprintln!("{name}: progress at each kill {seen_before_kill:?}; {} handled, {} distinct, {} redelivered", all_handled.len(), distinct.len(), all_handled.len() - distinct.len());
    assert!(
        seen_before_kill.windows(2).all(|w| w[0] < w[1]),
        "every child made progress before its kill"
    );
    assert_eq!(
        distinct,
        (0..EVENTS).collect::<BTreeSet<_>>(),
        "the set handled equals the set produced"
    );
    assert!(all_handled.len() >= EVENTS);
    std::fs::remove_file(out).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::Kafka).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_consumer_protocol_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::KafkaConsumerProtocol).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_consumer_killed_repeatedly_loses_nothing() {
    crash_and_recover(Backend::Redis).await;
}
