//! The jobs HTTP API, an axum [`Router`] the binary mounts beside `/metrics`.
//!
//! | route | answer |
//! |:--- |:--- |
//! | `POST /jobs` | 202 `{job_id, status}`; 200 `{job_id, duplicate: true}` when an active job holds the idempotency key; 400 `{error}` |
//! | `GET /jobs/{id}` | 200 [`JobView`] (Redis mirror first, database second); 404 |
//! | `GET /jobs?status=queued&limit=100` | 200 `[JobRecord]`, newest update first; 400 |
//! | `GET /jobs/{id}/events` | 200 Server-Sent Events: every status change (`event: status`, `id:` its sequence number, JSON data), in order, from the first (or after `Last-Event-ID`); ends after a terminal status; 404 |
//! | `POST /jobs/{id}/cancel` | 200 `{job_id, status: "dead", cancelled: true}`: an active job is cancelled (a running one is stopped at its worker's next lease renewal); 409 when finished; 404 |
//! | `POST /jobs/{id}/retry` | 202 `{job_id, status: "queued"}`: a dead job runs again with fresh attempts; 409 when not dead or when an active job holds its idempotency key; 404 |
//! | `GET /players/{id}/scout` | 200 `{served, report}`; 404 |
//! | `GET /teams/{id}/scout` | 200 `{served, report}`; 404 |
//! | `GET /openapi.json` | 200 the OpenAPI 3 description of these routes (no token needed) |
//!
//! With a token configured (`jobs.api_token`, which may do everything, or
//! `jobs.api_tokens`, each with scopes `read` for `GET` and `enqueue` for the
//! rest), every route wants `Authorization: Bearer <token>`: 401 without a
//! known token, 403 when its scopes do not cover the route, 429 with
//! `Retry-After` over the token's rate limit. Reads answer 503 past
//! `jobs.api_read_timeout_ms`. Request bodies over [`MAX_BODY_BYTES`] get 413. Errors are
//! `{"error": "..."}`.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use schemas::codec::{Codec, Encoding};
use schemas::{topics, JobRequested};
use serde::{Deserialize, Serialize};
use serde_json::json;

mod auth;

use crate::jobs::config::JobsConfig;
use crate::jobs::handler::validate;
use crate::jobs::limiter::RateLimiter;
use crate::jobs::model::{parse_job_type, parse_status, JobView};
use crate::jobs::tracker::{JobTracker, Recorded};
use crate::jobs::{lease, store, JobError};
use crate::scout::{ScoutService, Served};
use auth::{auth, read_deadline};
use pipeline::bus::now_ms;

/// Largest page of `GET /jobs`.
const MAX_LIST: i64 = 1_000;

/// What the routes share. Cheap to clone.
#[derive(Clone)]
pub struct ApiState {
    tracker: JobTracker,
    scout: ScoutService,
    config: Arc<JobsConfig>,
    codec: Codec,
    encoding: Encoding,
    limiter: Option<RateLimiter>,
}

impl ApiState {
    pub fn new(tracker: JobTracker, scout: ScoutService, config: JobsConfig) -> Self {
        Self {
            tracker,
            scout,
            config: Arc::new(config),
            codec: Codec::default(),
            encoding: Encoding::SingleObject,
            limiter: None,
        }
    }

    /// Enforces the tokens' `rate_limit`s; `limiter` must be built from
    /// [`JobsConfig::with_api_token_limits`].
    pub fn with_rate_limiter(mut self, limiter: RateLimiter) -> Self {
        self.limiter = Some(limiter);
        self
    }

    /// How job requests are written, e.g. Confluent framing with the ids a
    /// schema registry gave ([`Encoding::Registered`]).
    pub fn with_writer(mut self, codec: Codec, encoding: Encoding) -> Self {
        self.codec = codec;
        self.encoding = encoding;
        self
    }
}

/// Largest request body accepted: an enqueue request is a few hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// The API's routes, behind bearer auth when a token is configured.
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/jobs", post(enqueue).get(list))
        .route("/jobs/{id}", get(job))
        .route("/jobs/{id}/events", get(job_events))
        .route("/jobs/{id}/cancel", post(cancel))
        .route("/jobs/{id}/retry", post(retry))
        .route("/players/{id}/scout", get(player_scout))
        .route("/teams/{id}/scout", get(team_scout))
        .layer(middleware::from_fn_with_state(state.clone(), read_deadline))
        .layer(middleware::from_fn_with_state(state.clone(), auth))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
        // The description is public, as API descriptions are.
        .route("/openapi.json", get(openapi))
}

/// The OpenAPI 3 description of these routes (`openapi.json` beside this file).
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI_JSON).into_response()
}

/// An error answer: status and `{"error": message}`.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<JobError> for ApiError {
    fn from(err: JobError) -> Self {
        let status = if err.is_retriable() {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::INTERNAL_SERVER_ERROR
        };
        ApiError(status, err.to_string())
    }
}

/// 413 over the body limit; 400 for anything else wrong with the body.
fn body_rejected(rejection: JsonRejection) -> ApiError {
    match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError(StatusCode::PAYLOAD_TOO_LARGE, rejection.body_text())
        }
        _ => bad_request(rejection.body_text()),
    }
}

fn bad_request(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::BAD_REQUEST, message.into())
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, message.into())
}

/// `POST /jobs` body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnqueueBody {
    /// `scout_report_player`, `scout_report_team`, `refresh_player` or `recompute_hero_pool`.
    pub job_type: String,
    pub subject_id: i64,
    #[serde(default)]
    pub idempotency_key: Option<String>,
    #[serde(default)]
    pub run_at_ms: Option<i64>,
    #[serde(default)]
    pub max_attempts: Option<i32>,
}

#[derive(Debug, Serialize)]
struct Enqueued {
    job_id: String,
    status: &'static str,
    duplicate: bool,
}

/// Records the job (so a duplicate request is caught at once, and not yet
/// claimable) and publishes it; the jobs group announces it and lets workers
/// claim it. A job that could not be published is removed again.
async fn enqueue(
    State(state): State<ApiState>,
    body: Result<Json<EnqueueBody>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(body_rejected)?;
    let request = to_request(body)?;
    let max_attempts = match request.max_attempts {
        Some(n) if n > 0 => n as u32,
        _ => state.config.max_attempts.of(request.job_type),
    };
    let view = match state
        .tracker
        .record_unannounced(&request, max_attempts)
        .await?
    {
        Recorded::Duplicate(existing) => {
            let answer = Enqueued {
                job_id: existing.job_id,
                status: "duplicate",
                duplicate: true,
            };
            return Ok((StatusCode::OK, Json(answer)).into_response());
        }
        Recorded::New(view) | Recorded::Existing(view) => view,
    };
    if let Err(err) = publish(&state, &request).await {
        state.tracker.forget(&view.job.job_id).await?;
        return Err(err.into());
    }
    let answer = Enqueued {
        job_id: view.job.job_id,
        status: "queued",
        duplicate: false,
    };
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

fn to_request(body: EnqueueBody) -> Result<JobRequested, ApiError> {
    let job_type = parse_job_type(&body.job_type).ok_or_else(|| {
        bad_request(format!(
            "unknown job_type `{}`: expected scout_report_player, scout_report_team, \
             refresh_player or recompute_hero_pool",
            body.job_type
        ))
    })?;
    let request = JobRequested {
        job_id: uuid::Uuid::new_v4().to_string(),
        job_type,
        subject_id: body.subject_id,
        idempotency_key: body.idempotency_key,
        run_at_ms: body.run_at_ms,
        requested_at_ms: now_ms(),
        max_attempts: body.max_attempts,
    };
    validate(&request).map_err(|err| bad_request(err.to_string()))?;
    Ok(request)
}

/// Keyed by idempotency key when there is one, so duplicates share a
/// partition and are seen in order; else by job id.
pub fn request_key(request: &JobRequested) -> Vec<u8> {
    request
        .idempotency_key
        .as_deref()
        .unwrap_or(&request.job_id)
        .as_bytes()
        .to_vec()
}

async fn publish(state: &ApiState, request: &JobRequested) -> Result<(), JobError> {
    let payload = state
        .codec
        .encode(request, state.encoding)
        .map_err(|e| JobError::Encode(e.to_string()))?;
    state
        .tracker
        .publisher()
        .publish(topics::JOBS, &request_key(request), &payload)
        .await
        .map_err(JobError::bus("publish job request"))
}

async fn job(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Json<JobView>, ApiError> {
    state
        .tracker
        .view(&id)
        .await?
        .map(Json)
        .ok_or_else(|| not_found(format!("no job `{id}`")))
}

/// How often an events stream looks for new status changes.
const EVENTS_POLL: Duration = Duration::from_millis(200);

/// Where an events stream is.
struct EventsCursor {
    store: crate::persist::Store,
    job_id: String,
    after_seq: i64,
    pending: VecDeque<(i64, String, i32, i64, Option<String>)>,
    first: bool,
    done: bool,
}

async fn job_events(
    State(state): State<ApiState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if store::load(state.tracker.store(), &id).await?.is_none() {
        return Err(not_found(format!("no job `{id}`")));
    }
    let after_seq = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    let cursor = EventsCursor {
        store: state.tracker.store().clone(),
        job_id: id,
        after_seq,
        pending: VecDeque::new(),
        first: true,
        done: false,
    };
    let stream = futures::stream::unfold(cursor, next_status_event);
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The next status change as an SSE event, polling the history table; the
/// stream ends after a terminal status with nothing behind it.
async fn next_status_event(
    mut cursor: EventsCursor,
) -> Option<(Result<SseEvent, Infallible>, EventsCursor)> {
    loop {
        if let Some((seq, status, attempt, at_ms, error)) = cursor.pending.pop_front() {
            cursor.after_seq = seq;
            let terminal = parse_status(&status).is_some_and(super::model::is_terminal);
            cursor.done = terminal && cursor.pending.is_empty();
            let data = json!({
                "job_id": cursor.job_id,
                "status": status,
                "attempt": attempt,
                "at_ms": at_ms,
                "error": error,
            });
            let event = SseEvent::default()
                .event("status")
                .id(seq.to_string())
                .data(data.to_string());
            return Some((Ok(event), cursor));
        }
        if cursor.done {
            return None;
        }
        if !cursor.first {
            tokio::time::sleep(EVENTS_POLL).await;
        }
        cursor.first = false;
        match lease::history_after(&cursor.store, &cursor.job_id, cursor.after_seq).await {
            Ok(rows) => cursor.pending.extend(rows),
            Err(err) => {
                cursor.done = true;
                let event = SseEvent::default().event("error").data(err.to_string());
                return Some((Ok(event), cursor));
            }
        }
    }
}

#[derive(Debug, Serialize)]
struct Changed {
    job_id: String,
    status: String,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    cancelled: bool,
}

async fn cancel(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if let Some(job) = state.tracker.cancel(&id).await? {
        let answer = Changed {
            job_id: job.job_id,
            status: job.status,
            cancelled: true,
        };
        return Ok(Json(answer).into_response());
    }
    match store::load(state.tracker.store(), &id).await? {
        None => Err(not_found(format!("no job `{id}`"))),
        Some(job) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("job `{id}` is {} already", job.status),
        )),
    }
}

async fn retry(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let retried = match state.tracker.retry(&id).await {
        Ok(retried) => retried,
        Err(JobError::Database { source, .. })
            if source
                .as_database_error()
                .is_some_and(|e| e.is_unique_violation()) =>
        {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!("an active job holds the idempotency key of job `{id}`"),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    if let Some(job) = retried {
        let answer = Changed {
            job_id: job.job_id,
            status: job.status,
            cancelled: false,
        };
        return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
    }
    match store::load(state.tracker.store(), &id).await? {
        None => Err(not_found(format!("no job `{id}`"))),
        Some(job) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("job `{id}` is {}, not dead", job.status),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<ApiState>,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query.map_err(|rejection| bad_request(rejection.body_text()))?;
    let name = query
        .status
        .ok_or_else(|| bad_request("query parameter `status` is required"))?;
    let status = parse_status(&name).ok_or_else(|| {
        bad_request(format!(
            "unknown status `{name}`: expected queued, running, retry_scheduled, succeeded or dead"
        ))
    })?;
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIST);
    let jobs = store::list_by_status(state.tracker.store(), status, limit).await?;
    Ok(Json(jobs).into_response())
}

fn served_name(served: Served) -> &'static str {
    match served {
        Served::Cache => "cache",
        Served::Database => "database",
    }
}

async fn player_scout(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let found = state
        .scout
        .player_report(id)
        .await
        .map_err(JobError::from)?;
    let (report, served) = found.ok_or_else(|| not_found(format!("no player {id}")))?;
    Ok(Json(json!({ "served": served_name(served), "report": report })).into_response())
}

async fn team_scout(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let found = state.scout.team_report(id).await.map_err(JobError::from)?;
    let (report, served) = found.ok_or_else(|| not_found(format!("no team {id}")))?;
    Ok(Json(json!({ "served": served_name(served), "report": report })).into_response())
}

fn parse_id(id: &str) -> Result<i64, ApiError> {
    id.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| bad_request(format!("`{id}` is not a positive integer id")))
}
