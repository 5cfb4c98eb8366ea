//! Every metric scoutstream exports: name, kind, unit, labels and help text, in
//! one table read by the code that emits them, by [`describe_all`], and by the
//! tests that check the dashboards and alert rules in `deploy/` against it.
//!
//! Names follow Prometheus conventions: a `scoutstream_` prefix, base units in the
//! name (`_seconds`), `_total` on counters, and small fixed label sets (no ids).

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

pub const EVENTS_RECEIVED_TOTAL: &str = "scoutstream_events_received_total";
pub const EVENTS_HANDLED_TOTAL: &str = "scoutstream_events_handled_total";
pub const HANDLER_ERRORS_TOTAL: &str = "scoutstream_handler_errors_total";
pub const DEAD_LETTERS_TOTAL: &str = "scoutstream_dead_letters_total";
pub const RETRIES_TOTAL: &str = "scoutstream_retries_total";
pub const BATCH_SIZE: &str = "scoutstream_batch_size";
pub const BATCH_DURATION_SECONDS: &str = "scoutstream_batch_duration_seconds";
pub const EVENT_AGE_SECONDS: &str = "scoutstream_event_age_seconds";
pub const BUS_ERRORS_TOTAL: &str = "scoutstream_bus_errors_total";
pub const REBALANCES_TOTAL: &str = "scoutstream_rebalances_total";
pub const ASSIGNED_PARTITIONS: &str = "scoutstream_assigned_partitions";
pub const CONSUMER_LAG_MESSAGES: &str = "scoutstream_consumer_lag_messages";
pub const CONSUMER_LAG_SECONDS: &str = "scoutstream_consumer_lag_seconds";

/// Label `result`: `hit` or `miss`.
pub const CACHE_REQUESTS_TOTAL: &str = "scoutstream_cache_requests_total";
pub const CACHE_FALLBACK_ACTIVE: &str = "scoutstream_cache_fallback_active";
pub const CACHE_FALLBACK_ACTIVATIONS_TOTAL: &str = "scoutstream_cache_fallback_activations_total";
pub const RATE_LIMIT_WAITS_TOTAL: &str = "scoutstream_rate_limit_waits_total";
/// Label `status`: `queued`, `running`, `succeeded`, `retry_scheduled` or `dead`
/// (one increment per `JobStatusChanged`).
pub const JOBS_TOTAL: &str = "scoutstream_jobs_total";
/// Label `event`: `taken_back` (a dead worker's job), `lost` (a running job
/// whose lease was gone) or `released` (handed back at shutdown).
pub const SCHEMA_REGISTRY_LOOKUPS_TOTAL: &str = "scoutstream_schema_registry_lookups_total";
pub const JOB_LEASES_TOTAL: &str = "scoutstream_job_leases_total";

/// Values of the `operation` label of [`BUS_ERRORS_TOTAL`].
pub mod operation {
    pub const POLL: &str = "poll";
    pub const ACK: &str = "ack";
    pub const CLOSE: &str = "close";
    pub const PUBLISH_DEAD_LETTER: &str = "publish_dead_letter";
    pub const LAG: &str = "lag";
    /// What a runner does with the bus, so its error counters start at zero.
    pub const RUNNER: &[&str] = &[POLL, ACK, CLOSE, PUBLISH_DEAD_LETTER];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Who emits a metric. Only the runtime's metrics exist in every process; the
/// others appear once the consumer groups that own them run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// This crate: the runner, the lag reporter.
    Runtime,
    /// Consumer groups (cache, jobs, rate limiter), through these names.
    Consumers,
    /// The runtime, only in processes with a schema registry configured.
    SchemaRegistry,
}

#[derive(Debug, Clone, Copy)]
pub struct MetricSpec {
    pub name: &'static str,
    pub kind: Kind,
    pub unit: Unit,
    pub labels: &'static [&'static str],
    pub origin: Origin,
    /// Bucket bounds of a histogram; without them the exporter would render a summary.
    pub buckets: &'static [f64],
    pub help: &'static str,
}

const SIZE_BUCKETS: &[f64] = &[1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0];
const DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
// Event age spans milliseconds (caught up) to hours (a backlog being replayed).
const AGE_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

const fn spec(
    name: &'static str,
    kind: Kind,
    unit: Unit,
    labels: &'static [&'static str],
    origin: Origin,
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        name,
        kind,
        unit,
        labels,
        origin,
        buckets: &[],
        help,
    }
}

const fn histogram(
    name: &'static str,
    unit: Unit,
    buckets: &'static [f64],
    help: &'static str,
) -> MetricSpec {
    MetricSpec {
        buckets,
        ..spec(
            name,
            Kind::Histogram,
            unit,
            &["group"],
            Origin::Runtime,
            help,
        )
    }
}

use Kind::{Counter, Gauge};
use Origin::{Consumers, Runtime, SchemaRegistry};

#[rustfmt::skip]
pub const METRICS: &[MetricSpec] = &[
    spec(EVENTS_RECEIVED_TOTAL, Counter, Unit::Count, &["group", "topic"], Runtime,
        "Events a consumer group polled from the bus."),
    spec(EVENTS_HANDLED_TOTAL, Counter, Unit::Count, &["group", "topic"], Runtime,
        "Events a consumer group's handler handled successfully."),
    spec(HANDLER_ERRORS_TOTAL, Counter, Unit::Count, &["group", "kind", "retriable"], Runtime,
        "Handler failures, per attempt, by error kind."),
    spec(DEAD_LETTERS_TOTAL, Counter, Unit::Count, &["group", "topic", "error_kind"], Runtime,
        "Events whose dead letter is durable on the dead-letter topic."),
    spec(RETRIES_TOTAL, Counter, Unit::Count, &["group"], Runtime,
        "Handler retries scheduled after retriable errors."),
    histogram(BATCH_SIZE, Unit::Count, SIZE_BUCKETS, "Events per polled batch."),
    histogram(BATCH_DURATION_SECONDS, Unit::Seconds, DURATION_BUCKETS,
        "Time to handle and ack one batch."),
    histogram(EVENT_AGE_SECONDS, Unit::Seconds, AGE_BUCKETS,
        "End-to-end latency: time from an event's publication to its successful handling."),
    spec(BUS_ERRORS_TOTAL, Counter, Unit::Count, &["group", "operation"], Runtime,
        "Failed bus calls by operation (poll, ack, close, publish_dead_letter, lag)."),
    spec(REBALANCES_TOTAL, Counter, Unit::Count, &["group"], Runtime,
        "Changes of the partitions a member owns, seen between batches."),
    spec(ASSIGNED_PARTITIONS, Gauge, Unit::Count, &["group"], Runtime,
        "Partitions the group's members in this process own."),
    spec(CONSUMER_LAG_MESSAGES, Gauge, Unit::Count, &["group", "topic", "partition"], Runtime,
        "Events published but not yet acknowledged by the group."),
    spec(CONSUMER_LAG_SECONDS, Gauge, Unit::Seconds, &["group", "topic", "partition"], Runtime,
        "Age of the oldest event the group has not acknowledged; 0 when caught up."),
    spec(SCHEMA_REGISTRY_LOOKUPS_TOTAL, Counter, Unit::Count, &["group", "result"], SchemaRegistry,
        "Writer-schema lookups in the schema registry by result (learned, unknown, failed)."),
    spec(CACHE_REQUESTS_TOTAL, Counter, Unit::Count, &["result"], Consumers,
        "Cache reads by result (hit, miss)."),
    spec(CACHE_FALLBACK_ACTIVE, Gauge, Unit::Count, &[], Consumers,
        "1 while the cache serves from in-process memory because Redis is unavailable."),
    spec(CACHE_FALLBACK_ACTIVATIONS_TOTAL, Counter, Unit::Count, &[], Consumers,
        "Times the cache fell back to in-process memory."),
    spec(RATE_LIMIT_WAITS_TOTAL, Counter, Unit::Count, &["service"], Consumers,
        "Calls that waited for an upstream service's rate limit."),
    spec(JOBS_TOTAL, Counter, Unit::Count, &["job_type", "status"], Consumers,
        "Job status transitions by job type and new status."),
    spec(JOB_LEASES_TOTAL, Counter, Unit::Count, &["event"], Consumers,
        "Job leases taken back from dead workers, lost while running, or released at shutdown."),
];

/// The spec of `name`, also for a histogram's `_bucket`, `_sum` and `_count` series.
pub fn spec_of(series: &str) -> Option<&'static MetricSpec> {
    METRICS.iter().find(|spec| spec.name == series).or_else(|| {
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| series.strip_suffix(suffix))?;
        METRICS
            .iter()
            .find(|spec| spec.name == base && spec.kind == Kind::Histogram)
    })
}

/// Registers help texts and units with the installed recorder.
pub fn describe_all() {
    for spec in METRICS {
        match spec.kind {
            Kind::Counter => describe_counter!(spec.name, spec.unit, spec.help),
            Kind::Gauge => describe_gauge!(spec.name, spec.unit, spec.help),
            Kind::Histogram => describe_histogram!(spec.name, spec.unit, spec.help),
        }
    }
}
