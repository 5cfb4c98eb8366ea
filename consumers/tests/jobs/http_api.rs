//! The HTTP API: enqueueing, validation, reports, status streams, cancel and retry.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use consumers::jobs::{api, JobRecord, JobView, JobsConfig};
use consumers::scout::ScoutService;
use pipeline::bus::now_ms;
use producers::loadgen::generate_matches;
use schemas::codec::Codec;
use schemas::{topics, JobRequested, JobType};
use serde_json::{json, Value};

use super::*;
use crate::helpers::*;
use crate::upstream::serve;

// ---------------------------------------------------------------------------
// The HTTP API.

pub(crate) async fn api_base(env: &Env, token: Option<&str>) -> String {
    let config = JobsConfig {
        api_token: token.map(str::to_string),
        ..env.config.clone()
    };
    api_with(env, config).await
}

pub(crate) async fn api_with(env: &Env, config: JobsConfig) -> String {
    let scout = ScoutService::new(env.store.clone(), env.cache.clone());
    let state = api::ApiState::new(env.tracker(), scout, config);
    serve(api::router(state)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_enqueues_validates_and_reports() {
    run(Kind::Postgres, |env| async move {
        let base = api_base(&env, None).await;
        let http = reqwest::Client::new();

        // 400s with a clear message.
        for (body, needle) in [
            (
                json!({"job_type": "nope", "subject_id": 1}),
                "unknown job_type",
            ),
            (
                json!({"job_type": "refresh_player", "subject_id": -5}),
                "subject_id",
            ),
            (json!({"job_type": "refresh_player"}), "subject_id"),
            // PostgreSQL text holds no NUL: a 400, not a retried database error.
            (
                json!({"job_type": "refresh_player", "subject_id": 1, "idempotency_key": "a\u{0}b"}),
                "NUL",
            ),
            (
                json!({"job_type": "refresh_player", "subject_id": 1, "max_attempts": 0}),
                "max_attempts",
            ),
        ] {
            let response = http
                .post(format!("{base}/jobs"))
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 400, "{body}");
            let error: Value = response.json().await.unwrap();
            assert!(error["error"].as_str().unwrap().contains(needle), "{error}");
        }
        let response = http
            .post(format!("{base}/jobs"))
            .header("content-type", "application/json")
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        // A body over the limit is refused before it is read as JSON.
        let padding = "x".repeat(api::MAX_BODY_BYTES);
        let response = http
            .post(format!("{base}/jobs"))
            .json(
                &json!({"job_type": "refresh_player", "subject_id": 1, "idempotency_key": padding}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        let error: Value = response.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("length limit"),
            "{error}"
        );

        // 202, then the job is readable and listed.
        let body =
            json!({"job_type": "refresh_player", "subject_id": 4242, "idempotency_key": "k1"});
        let response = http
            .post(format!("{base}/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let enqueued: Value = response.json().await.unwrap();
        let job_id = enqueued["job_id"].as_str().unwrap().to_string();
        let view: JobView = http
            .get(format!("{base}/jobs/{job_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view.job.status, "queued");
        assert_eq!(view.job.subject_id, 4242);
        let queued: Vec<JobRecord> = http
            .get(format!("{base}/jobs?status=queued"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].job_id, job_id);

        // The same key while queued: the existing job, not a new one.
        let response = http
            .post(format!("{base}/jobs"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let duplicate: Value = response.json().await.unwrap();
        assert_eq!(duplicate["job_id"], job_id.as_str());
        assert_eq!(duplicate["duplicate"], true);

        // One JobRequested on the jobs topic.
        let published = env.read_topic(topics::JOBS).await;
        assert_eq!(published.len(), 1);
        let request: JobRequested = Codec::default().decode(&published[0].payload).unwrap();
        assert_eq!(request.job_id, job_id);
        assert_eq!(request.job_type, JobType::RefreshPlayer);

        // The worker runs it; the API then shows it succeeded.
        let runner = spawn_runner(&env, "jobs", env.handler()).await;
        env.wait_finished(&job_id, Duration::from_secs(20)).await;
        stop(runner).await;
        let view: JobView = http
            .get(format!("{base}/jobs/{job_id}"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(view.statuses(), ["queued", "running", "succeeded"]);

        // 404s and bad queries.
        for path in ["/jobs/nope", "/players/999999/scout", "/teams/999999/scout"] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 404, "{path}");
        }
        for path in ["/jobs?status=bogus", "/jobs", "/players/abc/scout"] {
            let response = http.get(format!("{base}{path}")).send().await.unwrap();
            assert_eq!(response.status(), 400, "{path}");
        }

        // Scout reports of persisted data.
        let matches = generate_matches(2, 3);
        env.store.write_matches(&matches).await.unwrap();
        let account = matches[0].players[0].account_id.unwrap();
        let answer: Value = http
            .get(format!("{base}/players/{account}/scout"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["report"]["account_id"], account);
        assert_eq!(answer["served"], "database");
    })
    .await;
}

/// The `status` events of a finished SSE answer: (id, data).
fn sse_events(body: &str) -> Vec<(i64, Value)> {
    body.split("\n\n")
        .filter(|block| block.contains("event: status"))
        .map(|block| {
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .unwrap()
                    .to_string()
            };
            (
                field("id: ").parse().unwrap(),
                serde_json::from_str(&field("data: ")).unwrap(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_streams_status_changes_cancels_and_retries() {
    run(Kind::Postgres, |env| async move {
        let base = api_base(&env, None).await;
        let http = reqwest::Client::new();
        env.upstream.fail_first.store(1, Ordering::SeqCst);
        let enqueue = |body: Value| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let answer: Value = http
                    .post(format!("{base}/jobs"))
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                answer["job_id"].as_str().unwrap().to_string()
            }
        };

        // The stream is open before the job runs, and follows it to the end.
        let job_id = enqueue(json!({"job_type": "refresh_player", "subject_id": 31})).await;
        let stream = tokio::spawn({
            let url = format!("{base}/jobs/{job_id}/events");
            let http = http.clone();
            async move {
                let response = http.get(url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(
                    response.headers()["content-type"].to_str().unwrap(),
                    "text/event-stream"
                );
                response.text().await.unwrap()
            }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let worker = spawn_runner(&env, "jobs", env.handler()).await;
        let view = env.wait_finished(&job_id, Duration::from_secs(20)).await;
        let body = tokio::time::timeout(Duration::from_secs(10), stream)
            .await
            .expect("the stream ends after the terminal status")
            .unwrap();
        let events = sse_events(&body);
        let statuses: Vec<&str> = events
            .iter()
            .map(|(_, e)| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(statuses, view.statuses());
        assert_eq!(
            statuses,
            [
                "queued",
                "running",
                "retry_scheduled",
                "running",
                "succeeded"
            ]
        );
        assert!(events.windows(2).all(|w| w[0].0 < w[1].0), "ids increase");
        assert!(events[2].1["error"].as_str().unwrap().contains("HTTP 500"));

        // Resumed after an event id: only what came after it.
        let resumed = http
            .get(format!("{base}/jobs/{job_id}/events"))
            .header("Last-Event-ID", events[2].0.to_string())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let resumed: Vec<i64> = sse_events(&resumed).iter().map(|(id, _)| *id).collect();
        assert_eq!(resumed, [events[3].0, events[4].0]);

        // Cancel a job due in an hour; a second cancel conflicts.
        let later = enqueue(json!({
            "job_type": "refresh_player", "subject_id": 32, "run_at_ms": now_ms() + 3_600_000
        }))
        .await;
        let response = http
            .post(format!("{base}/jobs/{later}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let answer: Value = response.json().await.unwrap();
        assert_eq!(
            (answer["status"].as_str(), answer["cancelled"].as_bool()),
            (Some("dead"), Some(true))
        );
        let response = http
            .post(format!("{base}/jobs/{later}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409);
        let cancelled = env.view(&later).await.unwrap();
        assert_eq!(cancelled.statuses(), ["queued", "dead"]);
        assert_eq!(
            cancelled.job.last_error.as_deref(),
            Some("cancelled through the API")
        );

        // Retry the cancelled (dead) job: it runs now, with fresh attempts.
        let hits = env.upstream.hits();
        let response = http
            .post(format!("{base}/jobs/{later}/retry"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
        let retried = env.wait_finished(&later, Duration::from_secs(20)).await;
        assert_eq!(
            retried.statuses(),
            ["queued", "dead", "queued", "running", "succeeded"]
        );
        assert_eq!(retried.job.attempts, 1);
        assert_eq!(env.upstream.hits(), hits + 1);
        let response = http
            .post(format!("{base}/jobs/{later}/retry"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 409, "only a dead job is retried");

        // A running job cancelled: its worker stops it at the next renewal.
        env.upstream.hang_next.store(true, Ordering::SeqCst);
        let hung = enqueue(json!({"job_type": "refresh_player", "subject_id": 33})).await;
        let started = Instant::now();
        while env.view(&hung).await.unwrap().job.status != "running" {
            assert!(started.elapsed() < Duration::from_secs(10));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let response = http
            .post(format!("{base}/jobs/{hung}/cancel"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        // Stopped at the next lease renewal (every 333 ms), not at shutdown.
        let started = Instant::now();
        while !env.upstream.hang_dropped.load(Ordering::SeqCst) {
            assert!(
                started.elapsed() < Duration::from_secs(5),
                "the cancelled attempt still runs"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (_, pool_stats) = stop_both(worker).await;
        assert_eq!(
            pool_stats.lost, 1,
            "the running attempt was stopped, its result dropped"
        );
        assert_eq!(
            env.view(&hung).await.unwrap().statuses(),
            ["queued", "running", "dead"]
        );

        for path in ["/jobs/nope/events", "/jobs/nope/cancel", "/jobs/nope/retry"] {
            let request = if path.ends_with("events") {
                http.get(format!("{base}{path}"))
            } else {
                http.post(format!("{base}{path}"))
            };
            assert_eq!(request.send().await.unwrap().status(), 404, "{path}");
        }
    })
    .await;
}
