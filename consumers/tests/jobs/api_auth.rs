//! The HTTP API's tokens and scopes, per-token rate limits and read deadlines.

use std::time::Duration;

use consumers::jobs::{api, JobsConfig};
use consumers::scout::ScoutService;
use serde_json::{json, Value};

use super::*;
use crate::http_api::{api_base, api_with};
use crate::upstream::serve;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_tokens_are_limited_to_their_scopes() {
    use consumers::jobs::{ApiScope, ApiToken};
    run(Kind::Sqlite, |env| async move {
        let token = |name: &str, scopes: &[ApiScope]| ApiToken {
            name: name.into(),
            token: format!("{name}-s3cret"),
            scopes: scopes.to_vec(),
            rate_limit: None,
        };
        let config = JobsConfig {
            api_tokens: vec![
                token("dashboard", &[ApiScope::Read]),
                token("scheduler", &[ApiScope::Enqueue]),
                token("operator", &[ApiScope::Read, ApiScope::Enqueue]),
            ],
            ..env.config.clone()
        };
        config.validate().unwrap();
        let base = api_with(&env, config).await;
        let http = reqwest::Client::new();
        let body = json!({"job_type": "scout_report_team", "subject_id": 1});
        let status = |response: reqwest::Response| response.status().as_u16();
        let enqueue = |token: &str| {
            let request = http.post(format!("{base}/jobs")).json(&body);
            request.bearer_auth(token).send()
        };
        let list = |token: &str| {
            let request = http.get(format!("{base}/jobs?status=queued"));
            request.bearer_auth(token).send()
        };
        assert_eq!(status(enqueue("dashboard-s3cret").await.unwrap()), 403);
        assert_eq!(status(list("dashboard-s3cret").await.unwrap()), 200);
        assert_eq!(status(enqueue("scheduler-s3cret").await.unwrap()), 202);
        assert_eq!(status(list("scheduler-s3cret").await.unwrap()), 403);
        assert_eq!(status(list("operator-s3cret").await.unwrap()), 200);
        assert_eq!(status(enqueue("nobody").await.unwrap()), 401);
        let refused = enqueue("dashboard-s3cret").await.unwrap();
        let error: Value = refused.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("enqueue"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_over_its_rate_limit_gets_429_with_retry_after() {
    use consumers::jobs::{ApiScope, ApiToken, RateLimiter};
    run(Kind::Sqlite, |env| async move {
        let limited = ApiToken {
            name: "crawler".into(),
            token: "crawler-s3cret".into(),
            scopes: vec![ApiScope::Read],
            rate_limit: Some(consumers::jobs::RateLimit {
                limit: 3,
                period_ms: 60_000,
                burst: 3,
            }),
        };
        let config = JobsConfig {
            api_token: Some("admin-s3cret".into()),
            api_tokens: vec![limited],
            ..env.config.clone()
        };
        let limiter = RateLimiter::new(&config.with_api_token_limits()).unwrap();
        let scout = ScoutService::new(env.store.clone(), env.cache.clone());
        let state = api::ApiState::new(env.tracker(), scout, config).with_rate_limiter(limiter);
        let base = serve(api::router(state)).await;
        let http = reqwest::Client::new();
        let list = |token: &'static str| {
            let request = http.get(format!("{base}/jobs?status=queued"));
            request.bearer_auth(token).send()
        };
        for _ in 0..3 {
            assert_eq!(list("crawler-s3cret").await.unwrap().status(), 200);
        }
        let refused = list("crawler-s3cret").await.unwrap();
        assert_eq!(refused.status(), 429);
        let retry_after: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=20).contains(&retry_after), "{retry_after}");
        // Another token is not slowed by it.
        assert_eq!(list("admin-s3cret").await.unwrap().status(), 200);
    })
    .await;
}

/// A read held up by the database answers 503 at the deadline, and the
/// API answers again once the database does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_past_its_deadline_gets_503() {
    use sqlx::Connection;
    run(Kind::Postgres, |env| async move {
        let config = JobsConfig {
            api_read_timeout_ms: 300,
            ..env.config.clone()
        };
        let base = api_with(&env, config).await;
        let url = with_database(&admin_url(), env.database.as_deref().unwrap());
        let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
        let mut lock = holder.begin().await.unwrap();
        sqlx::query("LOCK TABLE jobs IN ACCESS EXCLUSIVE MODE")
            .execute(&mut *lock)
            .await
            .unwrap();
        let http = reqwest::Client::new();
        let list = || http.get(format!("{base}/jobs?status=queued")).send();
        let started = std::time::Instant::now();
        let held = list().await.unwrap();
        assert_eq!(held.status(), 503);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let error: Value = held.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains("300 ms"),
            "{error}"
        );
        lock.rollback().await.unwrap();
        assert_eq!(list().await.unwrap().status(), 200);
    })
    .await;
}

#[test]
fn api_tokens_must_be_distinct_and_scoped() {
    use consumers::jobs::{ApiScope, ApiToken};
    let token = |name: &str, secret: &str, scopes: Vec<ApiScope>| ApiToken {
        name: name.into(),
        token: secret.into(),
        scopes,
        rate_limit: None,
    };
    let with = |tokens| JobsConfig {
        api_tokens: tokens,
        ..JobsConfig::default()
    };
    let twice = with(vec![
        token("a", "same", vec![ApiScope::Read]),
        token("b", "same", vec![ApiScope::Read]),
    ]);
    assert_eq!(twice.validate().unwrap_err().0, "jobs.api_tokens");
    let unscoped = with(vec![token("a", "x", vec![])]);
    assert!(unscoped.validate().unwrap_err().1.contains("no scopes"));
    let empty = with(vec![token("a", " ", vec![ApiScope::Read])]);
    assert!(empty.validate().unwrap_err().1.contains("empty"));
    assert!(with(vec![token("a", "x", vec![ApiScope::Read])])
        .validate()
        .is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_wants_the_bearer_token_when_configured() {
    run(Kind::Sqlite, |env| async move {
        let base = api_base(&env, Some("s3cret")).await;
        let http = reqwest::Client::new();
        let body = json!({"job_type": "scout_report_team", "subject_id": 1});
        for auth in [None, Some("Bearer wrong"), Some("s3cret")] {
            let mut post = http.post(format!("{base}/jobs")).json(&body);
            if let Some(auth) = auth {
                post = post.header("authorization", auth);
            }
            assert_eq!(post.send().await.unwrap().status(), 401, "{auth:?}");
        }
        let response = http
            .get(format!("{base}/jobs?status=queued"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
        let response = http
            .post(format!("{base}/jobs"))
            .bearer_auth("s3cret")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202);
    })
    .await;
}
