//! The HTTP endpoints a process exposes for Prometheus and its orchestrator:
//!
//! - `GET /metrics`: Prometheus text exposition of every metric of the process;
//! - `GET /healthz`: 200 while the process runs (liveness);
//! - `GET /readyz`: 200 when every [`Readiness`] check is ready, else 503 with a
//!   JSON body naming what is not ready (readiness: take traffic, count as a member).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::{ObserveConfig, ObserveError, Readiness};
use crate::internal_events::{InternalEvent, ObserveServerStarted};

/// The content type of Prometheus' text format, version 0.0.4.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

#[derive(Clone)]
struct Endpoints {
    handle: PrometheusHandle,
    readiness: Readiness,
}

pub fn router(handle: PrometheusHandle, readiness: Readiness) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Endpoints { handle, readiness })
}

/// Listens on `config.bind`.
pub async fn bind(config: &ObserveConfig) -> Result<TcpListener, ObserveError> {
    TcpListener::bind(&config.bind)
        .await
        .map_err(|source| ObserveError::Bind {
            addr: config.bind.clone(),
            source,
        })
}

/// Serves the endpoints on `listener` until `shutdown` fires, then finishes the
/// requests in flight and returns.
pub async fn serve(
    listener: TcpListener,
    handle: PrometheusHandle,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> Result<(), ObserveError> {
    if let Ok(addr) = listener.local_addr() {
        ObserveServerStarted { addr }.emit();
    }
    axum::serve(listener, router(handle, readiness))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
        .map_err(ObserveError::Serve)
}

async fn metrics(State(endpoints): State<Endpoints>) -> Response {
    (
        [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
        endpoints.handle.render(),
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(endpoints): State<Endpoints>) -> Response {
    let report = endpoints.readiness.report();
    let status = if report.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(report)).into_response()
}
