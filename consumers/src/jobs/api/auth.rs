//! Who may call the API: bearer tokens with scopes, compared in constant
//! time, per-token rate limits, and the deadline of reads.

use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::{ApiError, ApiState};
use crate::jobs::config::{ApiScope, JobsConfig};
use crate::jobs::limiter::Decision;

pub(super) async fn auth(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !state.config.api_wants_token() {
        return next.run(request).await;
    }
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    let needed = if request.method() == Method::GET {
        ApiScope::Read
    } else {
        ApiScope::Enqueue
    };
    match presented.and_then(|p| grant_of(&state.config, p)) {
        Some(grant) if grant.scopes.contains(&needed) => {
            if let Some(wait) = over_limit(&state, grant.limited_as.as_deref()).await {
                return too_many_requests(wait);
            }
            next.run(request).await
        }
        Some(_) => ApiError(
            StatusCode::FORBIDDEN,
            format!("this token may not {}", scope_verb(needed)),
        )
        .into_response(),
        None => {
            let mut response = ApiError(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
            response
        }
    }
}

/// 503 for a read (`GET`) that takes longer than `jobs.api_read_timeout_ms`.
/// The status stream is meant to last, and writes run to the end (see
/// [`JobsConfig::api_read_timeout_ms`]).
pub(super) async fn read_deadline(
    State(state): State<ApiState>,
    request: Request,
    next: Next,
) -> Response {
    let is_stream = request.uri().path().ends_with("/events");
    if request.method() != Method::GET || is_stream {
        return next.run(request).await;
    }
    let limit = state.config.api_read_timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the read took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

/// What the token presented may do, if it is one.
struct Grant {
    scopes: Vec<ApiScope>,
    /// Its service in the rate limiter, when it has a limit.
    limited_as: Option<String>,
}

/// Every configured token is compared, each in constant time (`subtle`), so
/// how long a refusal takes tells nothing about which token came close.
fn grant_of(config: &JobsConfig, presented: &str) -> Option<Grant> {
    let matches = |token: &str| bool::from(presented.as_bytes().ct_eq(token.as_bytes()));
    let mut found = None;
    if config.full_access_token().is_some_and(matches) {
        found = Some(Grant {
            scopes: vec![ApiScope::Read, ApiScope::Enqueue],
            limited_as: None,
        });
    }
    for token in &config.api_tokens {
        if matches(&token.token) {
            found = Some(Grant {
                scopes: token.scopes.clone(),
                limited_as: token.rate_limit.map(|_| token.limiter_service()),
            });
        }
    }
    found
}

/// How long the token must wait, when it is over its rate limit.
async fn over_limit(state: &ApiState, service: Option<&str>) -> Option<Duration> {
    let (Some(limiter), Some(service)) = (&state.limiter, service) else {
        return None;
    };
    match limiter.try_acquire(service).await {
        Decision::Granted { .. } => None,
        Decision::Wait(wait) => Some(wait),
    }
}

fn too_many_requests(wait: Duration) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let mut response = ApiError(
        StatusCode::TOO_MANY_REQUESTS,
        format!("rate limit of this token reached; retry in {seconds}s"),
    )
    .into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(seconds.max(1)),
    );
    response
}

fn scope_verb(scope: ApiScope) -> &'static str {
    match scope {
        ApiScope::Read => "read (scope `read`)",
        ApiScope::Enqueue => "enqueue, cancel or retry jobs (scope `enqueue`)",
    }
}
