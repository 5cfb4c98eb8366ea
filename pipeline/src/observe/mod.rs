//! Observability: metrics, consumer lag and health endpoints.
//!
//! Metrics go through the `metrics` facade from the [`crate::internal_events`]
//! themselves, so every log line and its metric come from one `emit()`.
//! A process installs the Prometheus recorder ([`install_recorder`]), serves it
//! ([`serve`]) and, per consumer group, runs a [`spawn_lag_reporter`].
//!
//! - [`health`]: asks the bus and the stores every few seconds; `/readyz` follows.
//! - [`names`]: every metric, its labels, unit and help text (kept beside the
//!   events that emit them, in [`crate::internal_events`]).
//! - [`readiness`]: the named checks behind `/readyz`.
//! - `deploy/prometheus` and `deploy/grafana` hold the scrape config, alert rules
//!   and dashboards built on these names; `tests/observe_prometheus.rs` runs them
//!   against a real Prometheus.

pub mod health;
pub mod lag;
pub use crate::internal_events::names;
pub mod readiness;
pub mod recorder;
pub mod server;

use serde::Deserialize;

pub use health::{spawn_health_checks, BusHealth, HealthCheck};
pub use lag::spawn_lag_reporter;
pub use metrics_exporter_prometheus::PrometheusHandle;
pub use readiness::{Readiness, ReadinessReport};
pub use recorder::install_recorder;
pub use server::{bind, router, serve};

/// Where the metrics and health endpoints listen.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserveConfig {
    /// `host:port`; 9464 is the port commonly used for Prometheus exporters.
    pub bind: String,
}

impl Default for ObserveConfig {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:9464".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ObserveError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics server failed: {0}")]
    Serve(#[source] std::io::Error),
}

impl ObserveError {
    /// Whether trying again may succeed: a port still held by a previous process
    /// frees up; a malformed or foreign address does not.
    pub fn is_retriable(&self) -> bool {
        match self {
            ObserveError::Bind { source, .. } => source.kind() == std::io::ErrorKind::AddrInUse,
            ObserveError::Serve(_) => true,
        }
    }
}
