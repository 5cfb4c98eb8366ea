//! Consumer lag as gauges, read from the bus on a timer. The bus answers for the
//! whole group (no member needs to be running), so any process can report it;
//! dashboards take the `max` over reporters.

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::names::operation;
use crate::bus::Bus;
use crate::internal_events::{BusCallFailed, InternalEvent, LagReported, LagReporterStarted};

/// Shortest period accepted: a zero period would spin (and `interval` rejects it).
const MIN_EVERY: Duration = Duration::from_millis(100);

/// Polls `bus.lag(group, topics)` every `every` and sets
/// `scoutstream_consumer_lag_{messages,seconds}`. A failed read is logged and
/// counted as a bus error, never fatal; the task ends when `shutdown` fires.
pub fn spawn_lag_reporter(
    bus: Arc<dyn Bus>,
    group: String,
    topics: Vec<String>,
    every: Duration,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let every = every.max(MIN_EVERY);
        LagReporterStarted {
            group: &group,
            topics: &topics,
            every,
        }
        .emit();
        let mut ticker = tokio::time::interval(every);
        // A slow lag read (Kafka metadata timeouts) must not cause a burst after it.
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = ticker.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = report_once(bus.as_ref(), &group, &topics) => {}
            }
        }
    })
}

async fn report_once(bus: &dyn Bus, group: &str, topics: &[String]) {
    match bus.lag(group, topics).await {
        Ok(lags) => LagReported { group, lags: &lags }.emit(),
        Err(error) => BusCallFailed {
            group,
            operation: operation::LAG,
            retriable: error.is_retriable(),
            error: &error,
        }
        .emit(),
    }
}
