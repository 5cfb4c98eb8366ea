//! The process-wide Prometheus recorder behind the `metrics` facade.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use super::names::{self, METRICS};
use crate::internal_events::{InternalEvent, MetricsRecorderUnavailable};

/// How often histograms are drained when nobody scrapes, so memory stays bounded.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder on the first call and returns its handle on
/// every call, so a process (or a test binary) can ask as often as it likes.
///
/// If another recorder is already installed, the returned handle renders an empty
/// page and the failure is logged: metrics never stop the pipeline.
pub fn install_recorder() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = match builder().and_then(PrometheusBuilder::install_recorder) {
                Ok(handle) => handle,
                Err(err) => {
                    MetricsRecorderUnavailable { error: &err }.emit();
                    PrometheusBuilder::new().build_recorder().handle()
                }
            };
            names::describe_all();
            spawn_upkeep(handle.clone());
            handle
        })
        .clone()
}

/// A builder that renders every histogram of [`METRICS`] with its buckets.
fn builder() -> Result<PrometheusBuilder, BuildError> {
    METRICS
        .iter()
        .filter(|spec| !spec.buckets.is_empty())
        .try_fold(PrometheusBuilder::new(), |builder, spec| {
            builder.set_buckets_for_metric(Matcher::Full(spec.name.to_string()), spec.buckets)
        })
}

/// A plain thread: the recorder may be installed before (or without) a runtime.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("metrics-upkeep".into())
        .spawn(move || loop {
            std::thread::sleep(UPKEEP_EVERY);
            handle.run_upkeep();
        });
    if let Err(err) = spawned {
        tracing::warn!(error = %err, "metrics upkeep thread did not start; histograms drain on scrape only");
    }
}
