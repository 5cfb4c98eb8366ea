//! The jobs consumer group: background jobs requested as
//! [`schemas::JobRequested`] on `jobs`, run with retries, tracked in the
//! database, mirrored in Redis and announced as [`schemas::JobStatusChanged`]
//! on `jobs.status`.
//!
//! - [`JobsHandler`]: the group's [`pipeline::runner::Handler`].
//! - [`JobExecutor`] / [`StandardExecutor`]: what a job does, by type:
//!   `ScoutReportPlayer` / `ScoutReportTeam` build the report from the
//!   database and cache it where [`crate::scout::ScoutService`] reads it;
//!   `RefreshPlayer` fetches the profile from an OpenDota-compatible API
//!   ([`OpenDotaClient`], rate limited) and writes it through
//!   [`crate::persist::Store`]; `RecomputeHeroPool` runs
//!   [`recompute_hero_pool`] for one account.
//! - [`JobTracker`]: status in the `jobs` and `job_status_history` tables,
//!   the `job:{id}` JSON mirror (through [`crate::cache::Cache`]) and the
//!   status events.
//! - [`RateLimiter`]: GCRA per external service in one Redis Lua script,
//!   shared by all workers; a per-process limiter at
//!   `rate_limit_fallback_fraction` of the limit takes over while Redis is
//!   away (logged once, `scoutstream_rate_limit_waits_total` counts waits).
//! - [`api::router`]: the HTTP API (`POST /jobs`, `GET /jobs/{id}`,
//!   `GET /jobs?status=`, scout reports).
//!
//! # Lifecycle
//!
//! `queued → running → succeeded`, or `running → retry_scheduled → running …`
//! for retriable failures (exponential backoff with jitter, `max_attempts`
//! per job type or per request), ending `dead` after the last attempt or at
//! the first permanent error. Each transition is one transaction (row update +
//! history row), then the mirror, then the event; `scoutstream_jobs_total`
//! counts it.
//!
//! - **Retries run inside the handler** (not the runner's retry loop), so the
//!   job's own attempt count, backoff and status history stay exact. Errors of
//!   the bookkeeping itself (database, bus) are retriable `HandlerError`s: the
//!   runner retries the delivery, and the job resumes from its row.
//! - **Dead jobs** make the handler return a permanent `HandlerError` (kind of
//!   the last error), so the runner writes the `DeadLetter` to `dead-letters`
//!   before acking. Its `attempts` counts deliveries; the job's attempts are in
//!   its message and its row.
//! - **Idempotency**: a request whose idempotency key an active job (queued,
//!   running, retry_scheduled) holds is acknowledged without running; a
//!   partial unique index decides races. A finished job frees its key. The
//!   handler records a partition slice before running it, so duplicates in
//!   one batch are caught; the API records at enqueue time.
//! - **Redelivery** (a worker killed mid-job; the runner acks only after the
//!   handler returns): a known job id resumes from its row. A `running` row
//!   means the attempt died with its worker: it counts, `retry_scheduled`
//!   (error "worker stopped during attempt n") is recorded, and the next
//!   attempt runs, or the job is `dead` if that was the last. A succeeded
//!   job is acknowledged; a dead one fails again (kind `job_dead`), since its
//!   dead letter may be what was missing: dead letters are at least once.
//! - **Delayed jobs** (`run_at_ms`): due within `max_inline_delay_ms`, the
//!   handler waits in place. Later ones wait that long and are re-published
//!   to `jobs` (same key and payload; the row keeps the state), so a far
//!   future job holds its partition for at most `max_inline_delay_ms` at a
//!   time. Retry backoff is waited in place.
//! - Not handled: two workers running one job at once after a rebalance that
//!   redelivers a job still running elsewhere (no lease); the second run
//!   continues the attempt count.

pub mod api;
mod config;
pub mod events;
mod executor;
mod handler;
mod lease;
mod limiter;
mod model;
mod opendota;
mod store;
mod tracker;
mod worker;

mod error;

pub use api::{request_key, router, ApiState};
pub use config::{JobsConfig, MaxAttempts, RateLimit, OPENDOTA};
pub use error::JobError;
pub use executor::{JobExecutor, StandardExecutor};
pub use handler::{validate, JobsHandler};
pub use limiter::{Decision, Permit, RateLimiter};
pub use model::{
    is_terminal, job_type_name, parse_job_type, parse_status, status_name, HistoryEntry, JobRecord,
    JobView,
};
pub use opendota::OpenDotaClient;
pub use store::{list_by_status, recompute_hero_pool, view as stored_view};
pub use tracker::{job_key, DeadJob, JobTracker, Recorded};
pub use worker::{PoolStats, WorkerPool};
