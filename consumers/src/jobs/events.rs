//! What happens inside the jobs group, one struct per happening; `emit`
//! writes the log line and the metric (names in [`pipeline::observe::names`]).

use std::time::Duration;

use metrics::counter;
use pipeline::internal_events::InternalEvent;
use pipeline::observe::names;

use super::JobError;

/// A job changed status (and `JobStatusChanged` was published).
pub struct JobTransitioned<'a> {
    pub job_id: &'a str,
    pub job_type: &'static str,
    pub status: &'static str,
    pub attempt: i32,
    pub error: Option<&'a str>,
}

impl InternalEvent for JobTransitioned<'_> {
    fn emit(self) {
        match self.status {
            "dead" => tracing::warn!(
                job_id = self.job_id,
                job_type = self.job_type,
                attempt = self.attempt,
                error = self.error,
                "job dead"
            ),
            "retry_scheduled" => tracing::info!(
                job_id = self.job_id,
                job_type = self.job_type,
                attempt = self.attempt,
                error = self.error,
                "job retry scheduled"
            ),
            _ => tracing::debug!(
                job_id = self.job_id,
                job_type = self.job_type,
                status = self.status,
                attempt = self.attempt,
                "job status changed"
            ),
        }
        counter!(names::JOBS_TOTAL, "job_type" => self.job_type, "status" => self.status)
            .increment(1);
    }
}

/// A request whose idempotency key an active job holds: acknowledged, not run.
pub struct JobDeduplicated<'a> {
    pub job_id: &'a str,
    pub existing_job_id: &'a str,
    pub idempotency_key: &'a str,
}

impl InternalEvent for JobDeduplicated<'_> {
    fn emit(self) {
        tracing::info!(
            job_id = self.job_id,
            existing_job_id = self.existing_job_id,
            idempotency_key = self.idempotency_key,
            "duplicate job request acknowledged without running"
        );
    }
}

/// A running job's lease was gone (taken back after this worker stalled):
/// its result is dropped and it is stopped if still running.
pub struct JobLeaseLost<'a> {
    pub job_id: &'a str,
    pub owner: &'a str,
}

impl InternalEvent for JobLeaseLost<'_> {
    fn emit(self) {
        tracing::warn!(
            job_id = self.job_id,
            owner = self.owner,
            "job lease lost; result dropped, another worker runs it"
        );
        counter!(names::JOB_LEASES_TOTAL, "event" => "lost").increment(1);
    }
}

/// Jobs whose worker died (their lease ran out) were taken back.
pub struct JobsTakenBack {
    pub count: usize,
}

impl InternalEvent for JobsTakenBack {
    fn emit(self) {
        tracing::warn!(
            count = self.count,
            "took back jobs whose lease expired; their worker stopped mid-attempt"
        );
        counter!(names::JOB_LEASES_TOTAL, "event" => "taken_back").increment(self.count as u64);
    }
}

/// Jobs still running at the end of the shutdown grace were handed back.
pub struct JobsReleased {
    pub count: usize,
}

impl InternalEvent for JobsReleased {
    fn emit(self) {
        if self.count > 0 {
            tracing::info!(count = self.count, "released running jobs at shutdown");
        }
        counter!(names::JOB_LEASES_TOTAL, "event" => "released").increment(self.count as u64);
    }
}

/// A step of the worker pool failed; the pool goes on (and the step is
/// tried again on its next turn).
pub struct JobPoolStepFailed<'a> {
    pub step: &'static str,
    pub error: &'a JobError,
}

impl InternalEvent for JobPoolStepFailed<'_> {
    fn emit(self) {
        tracing::error!(
            step = self.step,
            error = %self.error,
            kind = self.error.kind(),
            "job worker pool step failed"
        );
    }
}

/// A call waited for a service's rate limit.
pub struct RateLimitWaited<'a> {
    pub service: &'a str,
    pub waited: Duration,
}

impl InternalEvent for RateLimitWaited<'_> {
    fn emit(self) {
        tracing::trace!(
            service = self.service,
            waited_ms = self.waited.as_millis() as u64,
            "rate limit wait"
        );
        counter!(names::RATE_LIMIT_WAITS_TOTAL, "service" => self.service.to_string()).increment(1);
    }
}

/// Redis stopped answering the limiter: this process limits itself alone, at
/// a fraction of the limit. Emitted once per outage.
pub struct RateLimiterFallbackActivated<'a> {
    pub error: &'a str,
    pub fraction: f64,
    pub retry_in: Duration,
}

impl InternalEvent for RateLimiterFallbackActivated<'_> {
    fn emit(self) {
        tracing::warn!(
            error = self.error,
            fraction = self.fraction,
            retry_in_ms = self.retry_in.as_millis() as u64,
            "redis unavailable; rate limiter falls back to a per-process limit"
        );
    }
}

/// Redis answers the limiter again: the shared limit applies again.
pub struct RateLimiterFallbackDeactivated;

impl InternalEvent for RateLimiterFallbackDeactivated {
    fn emit(self) {
        tracing::info!("redis available again; rate limiter shared again");
    }
}
