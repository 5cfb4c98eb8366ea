//! The dashboard panels on metrics only some processes emit (cache, jobs, rate
//! limiter, schema registry) end in `or on() vector(0)`, so an empty panel
//! would pass `pipeline/tests/observe_prometheus.rs`. Here the real binary runs
//! the cache, persist and jobs groups with a schema registry, under real cache
//! and jobs traffic (a Redis that dies mid-run, jobs that succeed, retry, die and
//! wait for the rate limit), and a real Prometheus scraping it must return data
//! for every such panel with the fallback taken off.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

const FALLBACK: &str = " or on() vector(0)";
/// The account whose profile OpenDota (the stand-in) fails to serve.
const FAILING_ACCOUNT: i64 = 2;

async fn profile(Path(id): Path<i64>) -> Result<Json<Value>, StatusCode> {
    if id == FAILING_ACCOUNT {
        return Err(StatusCode::INTERNAL_SERVER_ERROR);
    }
    Ok(Json(json!({
        "profile": {"account_id": id, "personaname": format!("player {id}")},
        "rank_tier": 70
    })))
}

async fn start_opendota() -> String {
    let router = Router::new().route("/api/players/{id}", get(profile));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{address}/api")
}

/// Every panel expression that falls back to 0, with the fallback taken off.
fn fallback_panels() -> Vec<(String, String)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let dashboard: Value =
            serde_json::from_str(&std::fs::read_to_string(entry.unwrap().path()).unwrap()).unwrap();
        collect(&dashboard["panels"], &mut out);
    }
    assert!(out.len() >= 10, "found only {} fallback panels", out.len());
    out
}

fn collect(panels: &Value, out: &mut Vec<(String, String)>) {
    for panel in panels.as_array().into_iter().flatten() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            if let Some(bare) = expr.strip_suffix(FALLBACK) {
                let bare = bare
                    .replace("$__rate_interval", "30s")
                    .replace("$__range", "1h")
                    .replace("$group", ".*");
                out.push((panel["title"].as_str().unwrap().to_string(), bare));
            }
        }
        collect(&panel["panels"], out);
    }
}

struct Prometheus {
    _child: tokio::process::Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    async fn start(target: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n\
                 scrape_configs:\n  - job_name: scoutstream\n    static_configs:\n      - targets: [{target:?}]\n"
            ),
        )
        .unwrap();
        let port = free_port();
        let child = tokio::process::Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("prometheus is installed (scripts/services.sh)");
        Self {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        }
    }

    /// Whether an instant query returns at least one finite sample.
    async fn has_data(&self, expr: &str) -> bool {
        let Ok(response) = reqwest::Client::new()
            .get(format!("{}/api/v1/query", self.base))
            .query(&[("query", expr)])
            .send()
            .await
        else {
            return false;
        };
        let answer: Value = response.json().await.unwrap_or_default();
        answer["data"]["result"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|series| series["value"][1].as_str()?.parse::<f64>().ok())
            .any(f64::is_finite)
    }
}

/// Enqueues a profile refresh; returns the job's id.
fn enqueue(port: u16, account: i64) -> String {
    let body = format!(r#"{{"job_type": "refresh_player", "subject_id": {account}}}"#);
    let (status, answer) = http(port, "POST", "/jobs", Some(&body));
    assert_eq!(status, 202, "{answer}");
    let answer: Value = serde_json::from_str(&answer).unwrap();
    answer["job_id"].as_str().unwrap().to_string()
}

/// Cache traffic while Prometheus is asked: reads of a job's mirror (hits) and
/// of a job no one enqueued (misses).
fn read_jobs(port: u16, known: &str) {
    http_get(port, &format!("/jobs/{known}"));
    http_get(port, "/jobs/00000000-0000-4000-8000-000000000000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fallback_panel_has_real_series_under_cache_and_jobs_traffic() {
    let opendota = start_opendota().await;
    let redis = PrivateRedis::start_on(free_port());
    let mut deployment = Deployment::new("kafka").await;
    deployment.cache_redis_url = redis.url();
    deployment.schema_registry = Some(schema_registry_url());
    deployment.produce(&fixture_paths(), 300, 3);
    let run = deployment
        .command(&["run", "--groups", "cache,persist,jobs"])
        .env("SCOUTSTREAM__JOBS__OPENDOTA_BASE_URL", &opendota)
        .env("SCOUTSTREAM__JOBS__REDIS_URL", redis.url())
        .env("SCOUTSTREAM__JOBS__BACKOFF_INITIAL_MS", "100")
        .env("SCOUTSTREAM__JOBS__BACKOFF_MAX_MS", "200")
        .env("SCOUTSTREAM__JOBS__MAX_ATTEMPTS__REFRESH_PLAYER", "2")
        .env("SCOUTSTREAM__JOBS__RATE_LIMITS__OPENDOTA__LIMIT", "2")
        .env(
            "SCOUTSTREAM__JOBS__RATE_LIMITS__OPENDOTA__PERIOD_MS",
            "1000",
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let prometheus = Prometheus::start(&format!("127.0.0.1:{}", deployment.observe_port)).await;
    let pool = deployment.pool().await;
    wait_for_count(&pool, "SELECT count(*) FROM matches", 302).await;

    // An event framed with a schema id the registry does not know: a lookup.
    let mut unknown_id = vec![0u8];
    unknown_id.extend(999_999_u32.to_be_bytes());
    unknown_id.extend([2, 4, 6]);
    let bus = deployment_bus(&deployment).await;
    bus.publisher()
        .await
        .unwrap()
        .publish_batch(
            "matches",
            &[pipeline::bus::Record::new("unknown-id", unknown_id)],
        )
        .await
        .unwrap();

    // Jobs that succeed, fail until they are dead, and queue for the limiter.
    for account in [1, FAILING_ACCOUNT, 3, 4, 5, 6] {
        enqueue(deployment.observe_port, account);
    }
    wait_for_count(
        &pool,
        "SELECT count(*) FROM jobs WHERE status IN ('succeeded', 'dead')",
        6,
    )
    .await;
    // The cache's Redis dies: the cache falls back (and says so in its gauges).
    redis.kill();
    let after_kill = enqueue(deployment.observe_port, 7);

    let panels = fallback_panels();
    let mut without = panels.clone();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !without.is_empty() && tokio::time::Instant::now() < deadline {
        read_jobs(deployment.observe_port, &after_kill);
        let mut still = Vec::new();
        for (title, expr) in without {
            if !prometheus.has_data(&expr).await {
                still.push((title, expr));
            }
        }
        without = still;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert!(
        without.is_empty(),
        "panels with no series even under traffic: {without:#?}"
    );
    eprintln!("{} fallback panels show real series", panels.len());
    drop(prometheus);
    stop(run);
    pool.close().await;
    deployment.drop_database().await;
}
