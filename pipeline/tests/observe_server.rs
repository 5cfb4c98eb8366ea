//! The observability endpoints, and the metrics the runner and the lag reporter
//! emit, on the in-memory bus (no servers needed).
#![allow(clippy::unwrap_used)]

mod common;
mod observe_support;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{eventually, numbered_records, unique, Backend, Recorder, PARTITIONS};
use observe_support::{get_text, scrape, serve, value, Sample};
use pipeline::bus::{
    Bus, BusError, PartitionLag, Publisher, Record, ResetPosition, ResetTo, Subscription,
};
use pipeline::internal_events::{EventsReceived, InternalEvent};
use pipeline::observe::readiness::{runner_check, BUS, STORES};
use pipeline::observe::{self, names, ObserveConfig, Readiness};
use pipeline::runner::{Runner, RunnerConfig};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test]
async fn healthz_answers_while_the_process_runs() {
    let served = serve(Readiness::new()).await;
    let (status, body) = get_text(&served.url("/healthz")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    served.stop().await;
}

#[tokio::test]
async fn readyz_is_503_naming_what_is_not_ready_then_200() {
    let readiness = Readiness::with_checks([BUS, STORES]);
    let served = serve(readiness.clone()).await;
    let response = reqwest::get(served.url("/readyz")).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ready"], false);
    assert_eq!(body["not_ready"], serde_json::json!(["bus", "stores"]));

    readiness.set(BUS, true);
    let body: serde_json::Value = reqwest::get(served.url("/readyz"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["not_ready"], serde_json::json!(["stores"]));

    readiness.set(STORES, true);
    let response = reqwest::get(served.url("/readyz")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["ready"], true);
    assert_eq!(
        body["checks"],
        serde_json::json!({"bus": true, "stores": true})
    );
    served.stop().await;
}

#[tokio::test]
async fn metrics_shows_a_counter_once_its_event_is_emitted() {
    let served = serve(Readiness::new()).await;
    let group = unique("metrics-endpoint");
    EventsReceived {
        group: &group,
        topic: "matches",
        count: 3,
    }
    .emit();
    let response = reqwest::get(served.url("/metrics")).await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let samples = observe_support::parse_samples(&text);
    let received = value(
        &samples,
        names::EVENTS_RECEIVED_TOTAL,
        &[("group", &group), ("topic", "matches")],
    );
    assert_eq!(received, Some(3.0), "{text}");
    assert!(text.contains("# HELP scoutstream_events_received_total Events a consumer group"));
    assert!(text.contains("# TYPE scoutstream_events_received_total counter"));
    served.stop().await;
}

#[test]
fn install_recorder_is_idempotent() {
    let first = observe::install_recorder();
    let second = observe::install_recorder();
    let group = unique("idempotent");
    EventsReceived {
        group: &group,
        topic: "t",
        count: 1,
    }
    .emit();
    assert!(first.render().contains(&group));
    assert!(second.render().contains(&group));
}

#[tokio::test]
async fn bind_errors_say_whether_retrying_may_help() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let in_use = ObserveConfig {
        bind: taken.local_addr().unwrap().to_string(),
    };
    let err = observe::bind(&in_use).await.unwrap_err();
    assert!(err.is_retriable(), "{err}");
    let malformed = ObserveConfig {
        bind: "no port here".into(),
    };
    let err = observe::bind(&malformed).await.unwrap_err();
    assert!(!err.is_retriable(), "{err}");
    assert_eq!(ObserveConfig::default().bind, "127.0.0.1:9464");
}

/// A runner on the in-memory bus: every metric it owns, and its readiness check.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_emits_its_metrics_and_reports_readiness() {
    let bus = common::bus(Backend::Memory).await;
    let (topic, dlq, group) = (unique("obs"), unique("obs-dlq"), unique("g"));
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.ensure_topic(&dlq, 1).await.unwrap();
    let mut records = numbered_records(20, 4);
    records.push(Record::new("key-0", b"garbage".to_vec()));
    records.push(Record::new("key-1", Vec::new()));
    bus.publisher()
        .await
        .unwrap()
        .publish_batch(&topic, &records)
        .await
        .unwrap();

    let readiness = Readiness::new();
    let served = serve(readiness.clone()).await;
    let recorder = Arc::new(Recorder::default());
    recorder.flaky.lock().unwrap().insert(7, 1);
    let config = RunnerConfig {
        batch_size: 50,
        batch_wait: Duration::from_millis(50),
        backoff_initial: Duration::from_millis(10),
        dead_letter_topic: dlq.clone(),
        ..RunnerConfig::new(group.clone())
    };
    let runner = Runner::new(config, recorder.clone(), bus.publisher().await.unwrap())
        .with_readiness(readiness.clone());
    assert_eq!(readiness.report().not_ready, vec![runner_check(&group)]);
    let subscription = bus
        .subscribe(&group, std::slice::from_ref(&topic))
        .await
        .unwrap();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let task = tokio::spawn(async move { runner.run(subscription, token).await });

    assert!(eventually(WAIT, || recorder.distinct().len() == 20).await);
    assert!(eventually(WAIT, || readiness.is_ready()).await);
    assert_eq!(get_text(&served.url("/readyz")).await.0, 200);
    let samples = scrape(&served).await;
    let g = [("group", group.as_str())];
    let gt = [("group", group.as_str()), ("topic", topic.as_str())];
    let counter = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    assert_eq!(counter(names::EVENTS_RECEIVED_TOTAL, &gt), Some(22.0));
    assert_eq!(counter(names::EVENTS_HANDLED_TOTAL, &gt), Some(20.0));
    let decode = [
        ("group", group.as_str()),
        ("kind", "decode"),
        ("retriable", "false"),
    ];
    assert_eq!(counter(names::HANDLER_ERRORS_TOTAL, &decode), Some(2.0));
    let flaky = [
        ("group", group.as_str()),
        ("kind", "flaky"),
        ("retriable", "true"),
    ];
    assert_eq!(counter(names::HANDLER_ERRORS_TOTAL, &flaky), Some(1.0));
    assert_eq!(counter(names::RETRIES_TOTAL, &g), Some(1.0));
    let dead = [("group", group.as_str()), ("error_kind", "decode")];
    assert_eq!(counter(names::DEAD_LETTERS_TOTAL, &dead), Some(2.0));
    assert_eq!(
        counter(names::ASSIGNED_PARTITIONS, &g),
        Some(PARTITIONS as f64)
    );
    assert!(counter(names::REBALANCES_TOTAL, &g) >= Some(1.0));
    let poll_errors = [("group", group.as_str()), ("operation", "poll")];
    assert_eq!(counter(names::BUS_ERRORS_TOTAL, &poll_errors), Some(0.0));
    let histogram_count = |name: &str| counter(&format!("{name}_count"), &g);
    assert_eq!(histogram_count(names::EVENT_AGE_SECONDS), Some(20.0));
    assert!(histogram_count(names::BATCH_SIZE) >= Some(1.0));
    assert!(histogram_count(names::BATCH_DURATION_SECONDS) >= Some(1.0));
    assert!(buckets_of(&samples, names::EVENT_AGE_SECONDS, &group) > 5);

    shutdown.cancel();
    task.await.unwrap().unwrap();
    assert_eq!(get_text(&served.url("/readyz")).await.0, 503);
    let samples = scrape(&served).await;
    assert_eq!(value(&samples, names::ASSIGNED_PARTITIONS, &g), Some(0.0));
    served.stop().await;
}

fn buckets_of(samples: &[Sample], name: &str, group: &str) -> usize {
    let bucket = format!("{name}_bucket");
    samples
        .iter()
        .filter(|s| s.name == bucket && s.labels.get("group").map(String::as_str) == Some(group))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_reporter_sets_gauges_per_partition() {
    let bus = common::bus(Backend::Memory).await;
    let (topic, group) = (unique("lagged"), unique("idle-group"));
    bus.ensure_topic(&topic, PARTITIONS).await.unwrap();
    bus.publisher()
        .await
        .unwrap()
        .publish_batch(&topic, &numbered_records(10, 10))
        .await
        .unwrap();
    let served = serve(Readiness::new()).await;
    let shutdown = CancellationToken::new();
    let reporter = observe::spawn_lag_reporter(
        bus,
        group.clone(),
        vec![topic.clone()],
        Duration::from_millis(100),
        shutdown.clone(),
    );
    let mut lag = None;
    for _ in 0..100 {
        let samples = scrape(&served).await;
        let partitions = samples
            .iter()
            .filter(|s| s.name == names::CONSUMER_LAG_MESSAGES)
            .filter(|s| s.labels.get("group") == Some(&group))
            .count();
        lag = value(&samples, names::CONSUMER_LAG_MESSAGES, &[("group", &group)]);
        if partitions == PARTITIONS as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        lag,
        Some(10.0),
        "lag of 10 unconsumed records over the partitions"
    );
    shutdown.cancel();
    reporter.await.unwrap();
    served.stop().await;
}

/// A bus whose lag cannot be read.
struct LagUnavailable;

#[async_trait]
impl Bus for LagUnavailable {
    fn name(&self) -> &'static str {
        "lag-unavailable"
    }
    async fn ensure_topic(&self, _: &str, _: u32) -> Result<(), BusError> {
        Ok(())
    }
    async fn publisher(&self) -> Result<Arc<dyn Publisher>, BusError> {
        Err(BusError::Closed)
    }
    async fn subscribe(&self, _: &str, _: &[String]) -> Result<Box<dyn Subscription>, BusError> {
        Err(BusError::Closed)
    }
    async fn lag(&self, _: &str, _: &[String]) -> Result<Vec<PartitionLag>, BusError> {
        Err(BusError::Config("lag is unavailable".into()))
    }
    async fn reset_group(
        &self,
        _: &str,
        _: &[String],
        _: ResetTo,
    ) -> Result<Vec<ResetPosition>, BusError> {
        Err(BusError::Closed)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_reporter_counts_failed_reads_and_keeps_going() {
    let served = serve(Readiness::new()).await;
    let group = unique("lag-errors");
    let shutdown = CancellationToken::new();
    let reporter = observe::spawn_lag_reporter(
        Arc::new(LagUnavailable),
        group.clone(),
        vec!["t".into()],
        Duration::from_millis(100),
        shutdown.clone(),
    );
    let labels = [("group", group.as_str()), ("operation", "lag")];
    let mut errors = None;
    for _ in 0..100 {
        errors = value(&scrape(&served).await, names::BUS_ERRORS_TOTAL, &labels);
        if errors >= Some(3.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(errors >= Some(3.0), "failed lag reads counted: {errors:?}");
    assert!(!reporter.is_finished(), "a failed read is not fatal");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(5), reporter)
        .await
        .unwrap()
        .unwrap();
    served.stop().await;
}
