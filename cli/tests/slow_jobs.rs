//! A slow job on the real binary, Apache Kafka or Redis Streams, Redis and
//! PostgreSQL: the jobs group records and acks at once and the worker pool
//! runs the job under a lease, so a 10 s job neither stalls the jobs queued
//! behind it nor costs the consumer its partitions (no redelivery, no second
//! run). The Redis Streams member here times out after 3 s without a poll.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

/// The account whose profile takes this long to fetch.
const SLOW_ACCOUNT: i64 = 1;
const SLOW: Duration = Duration::from_secs(10);

type Calls = Arc<Mutex<HashMap<i64, u32>>>;

async fn profile(State(calls): State<Calls>, Path(id): Path<i64>) -> Json<Value> {
    *calls.lock().unwrap().entry(id).or_default() += 1;
    if id == SLOW_ACCOUNT {
        tokio::time::sleep(SLOW).await;
    }
    Json(json!({
        "profile": {"account_id": id, "personaname": format!("player {id}")},
        "rank_tier": 70
    }))
}

/// An OpenDota stand-in counting calls per account; returns its API root.
async fn start_opendota(calls: Calls) -> String {
    let router = Router::new()
        .route("/api/players/{id}", get(profile))
        .with_state(calls);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/api")
}

fn enqueue(deployment: &Deployment, account: i64) -> String {
    let body = format!(r#"{{"job_type": "refresh_player", "subject_id": {account}}}"#);
    let (status, answer) = http(deployment.observe_port, "POST", "/jobs", Some(&body));
    assert_eq!(status, 202, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["job_id"].as_str().unwrap().to_string()
}

fn job_view(deployment: &Deployment, job_id: &str) -> Value {
    let (_, body) = http_get(deployment.observe_port, &format!("/jobs/{job_id}"));
    serde_json::from_str(&body).unwrap_or_default()
}

async fn wait_status(
    deployment: &Deployment,
    job_id: &str,
    status: &str,
    within: Duration,
) -> Value {
    let started = Instant::now();
    loop {
        let view = job_view(deployment, job_id);
        if view["status"] == status {
            return view;
        }
        assert!(
            started.elapsed() < within,
            "job {job_id} not {status} after {within:?}: {view}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn slow_job_holds_nothing_up(backend: &'static str) {
    let deployment = Deployment::new(backend).await;
    let calls = Calls::default();
    let opendota = start_opendota(calls.clone()).await;
    let mut command = deployment.command(&["run", "--groups", "jobs"]);
    command
        .env("SCOUTSTREAM__JOBS__OPENDOTA_BASE_URL", &opendota)
        .env("SCOUTSTREAM__JOBS__HTTP_TIMEOUT_MS", "30000")
        .env("SCOUTSTREAM__JOBS__REDIS_URL", redis_url())
        .env(
            "SCOUTSTREAM__JOBS__KEY_PREFIX",
            format!("{}:", unique("slow-jobs")),
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let run = command.spawn().unwrap();
    let started = Instant::now();
    while http_get(deployment.observe_port, "/healthz").0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the jobs process did not start"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let slow = enqueue(&deployment, SLOW_ACCOUNT);
    wait_status(&deployment, &slow, "running", Duration::from_secs(30)).await;
    let slow_started = Instant::now();
    let quick: Vec<String> = (2..5)
        .map(|account| enqueue(&deployment, account))
        .collect();
    for job in &quick {
        wait_status(&deployment, job, "succeeded", Duration::from_secs(30)).await;
    }
    assert!(
        slow_started.elapsed() < SLOW,
        "the quick jobs finished {:?} after the slow one started: they waited for it",
        slow_started.elapsed()
    );
    assert_eq!(job_view(&deployment, &slow)["status"], "running");

    let view = wait_status(&deployment, &slow, "succeeded", Duration::from_secs(40)).await;
    assert_eq!(view["attempts"], 1, "{view}");
    let (stdout, _) = stop(run);
    assert!(
        stdout.contains("group jobs: handled 4, dead-lettered 0"),
        "each request delivered once: {stdout}"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls,
        HashMap::from([(1, 1), (2, 1), (3, 1), (4, 1)]),
        "each job ran once"
    );
    deployment.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_slow_job_holds_nothing_up() {
    slow_job_holds_nothing_up("kafka").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_streams_slow_job_holds_nothing_up() {
    slow_job_holds_nothing_up("redis-streams").await;
}
