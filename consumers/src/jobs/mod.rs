//! The jobs consumer group: background jobs requested as
//! [`schemas::JobRequested`] on `jobs`, run with retries, tracked in the
//! database, mirrored in Redis and announced as [`schemas::JobStatusChanged`]
//! on `jobs.status`.
//!
//! - [`JobsHandler`]: the group's [`pipeline::runner::Handler`]. It only
//!   records: each slice of requests becomes queued rows in one transaction,
//!   then their `queued` events, then the rows become claimable, then the
//!   runner acks. Nothing waits for a job while holding a delivery, so a slow
//!   job never stalls a partition or costs a consumer its group membership.
//! - [`WorkerPool`]: runs jobs from the database under leases (`lease.rs`
//!   holds its SQL): claims due jobs in batches (`FOR UPDATE SKIP LOCKED` on
//!   PostgreSQL; SQLite's single writer needs no row locks), `workers` at a
//!   time per process, renews leases every third of `lease_ms`, finishes
//!   attempts in batches, takes back jobs whose lease ran out, and at
//!   shutdown lets running jobs finish for `shutdown_grace_ms`, then releases
//!   the rest.
//! - [`JobExecutor`] / [`StandardExecutor`]: what a job does, by type:
//!   `ScoutReportPlayer` / `ScoutReportTeam` build the report from the
//!   database and cache it where [`crate::scout::ScoutService`] reads it;
//!   `RefreshPlayer` fetches the profile from an OpenDota-compatible API
//!   ([`OpenDotaClient`], rate limited) and writes it through
//!   [`crate::persist::Store`]; `RecomputeHeroPool` runs
//!   [`recompute_hero_pool`] for one account.
//! - [`JobTracker`]: status in the `jobs` and `job_status_history` tables,
//!   the `job:{id}` JSON mirror (through [`crate::cache::Cache`]), the
//!   status events and the dead letters of dead jobs.
//! - [`RateLimiter`]: GCRA per external service in one Redis Lua script,
//!   shared by all workers; a per-process limiter at
//!   `rate_limit_fallback_fraction` of the limit takes over while Redis is
//!   away (logged once, `scoutstream_rate_limit_waits_total` counts waits).
//!   A job waits for its permit inside its attempt, with its lease renewed.
//! - [`api::router`]: the HTTP API (`POST /jobs`, `GET /jobs/{id}`,
//!   `GET /jobs?status=`, scout reports).
//!
//! # Lifecycle
//!
//! `queued → running → succeeded`, or `running → retry_scheduled → running …`
//! for retriable failures (exponential backoff with jitter, `max_attempts`
//! per job type or per request), ending `dead` after the last attempt or at
//! the first permanent error. Each batch of transitions is one transaction
//! (rows + history rows), then the status events and mirror writes;
//! `scoutstream_jobs_total` counts them.
//!
//! - **Never twice at once**: a job runs only under a lease, and every row
//!   change of a worker names its lease (`lease_owner`, attempt). A worker
//!   whose lease was taken back drops its result and stops the job.
//! - **A dead worker's jobs** (killed, partitioned from the database) run
//!   again once their lease runs out: that attempt counts (`retry_scheduled`
//!   with "lease expired: worker … stopped during attempt n"), or the job is
//!   `dead` if it was the last.
//! - **Retries and delayed jobs** are rows with a later `run_at_ms`; a
//!   delayed job never holds back the jobs behind it.
//! - **Dead jobs** get a `DeadLetter` on `dead-letters` (the recorded
//!   request, the error's kind, "dead after n attempts: …"), written by the
//!   outbox relay with the `dead` status event; cancelled jobs get none.
//! - **Idempotency**: a request whose idempotency key an active job (queued,
//!   running, retry_scheduled) holds is acknowledged without a job; a partial
//!   unique index decides races. A finished job frees its key. A redelivered
//!   request finds its job and changes nothing.
//! - **Status events leave through an outbox**: every history row is written
//!   in the transaction of the change it records, unpublished; the relay
//!   ([`JobTracker::flush`], `outbox.rs`) publishes unpublished rows in `seq`
//!   order (one relay at a time: a PostgreSQL advisory lock, a mutex in the
//!   process), writes dead letters for dead jobs, refreshes the Redis mirror
//!   and marks the rows published. It runs after every change and on every
//!   poll of a worker pool, so a crash or a bus outage between commit and
//!   publish delays events instead of losing them (at least once, in each
//!   job's commit order).
//! - A job becomes claimable only after its `queued` row is relayed
//!   (`ready`), and the API's record stays unclaimable until the request is
//!   on the bus (a failed publish removes it again).

pub mod api;
mod config;
pub mod events;
mod executor;
mod handler;
mod lease;
mod limiter;
mod model;
mod opendota;
mod outbox;
mod store;
mod tracker;
mod worker;

mod error;

pub use api::{request_key, router, ApiState};
pub use config::{ApiScope, ApiToken, JobsConfig, MaxAttempts, RateLimit, OPENDOTA};
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
pub use tracker::{job_key, JobTracker, Recorded};
pub use worker::{PoolStats, WorkerPool};
