//! The jobs group's [`Handler`]: records each `JobRequested`, waits until it
//! is due, runs it with retries, and dead-letters it once it is dead.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use pipeline::bus::Delivery;
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Handler, HandlerError};
use schemas::codec::Codec;
use schemas::{JobRequested, JobStatus, JobType};
use tokio_util::sync::CancellationToken;

use super::config::JobsConfig;
use super::events::{JobDeduplicated, JobDeferred, JobResumed};
use super::executor::JobExecutor;
use super::model::{is_terminal, job_type_name, JobView};
use super::opendota::now_ms;
use super::tracker::{JobTracker, Recorded};
use super::JobError;

/// A request that is recorded and still has to run.
struct Pending {
    job_type: JobType,
    view: JobView,
}

/// Handles `jobs` deliveries. Jobs of one partition run one after another.
pub struct JobsHandler {
    tracker: JobTracker,
    executor: Arc<dyn JobExecutor>,
    config: JobsConfig,
    codec: Codec,
    shutdown: CancellationToken,
}

impl JobsHandler {
    pub fn new(tracker: JobTracker, executor: Arc<dyn JobExecutor>, config: JobsConfig) -> Self {
        Self {
            tracker,
            executor,
            config,
            codec: Codec::default(),
            shutdown: CancellationToken::new(),
        }
    }

    /// Stops waits (delays, backoff) when `shutdown` fires: the delivery is
    /// then left unacked and the job resumes on redelivery.
    pub fn with_shutdown(mut self, shutdown: CancellationToken) -> Self {
        self.shutdown = shutdown;
        self
    }

    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn tracker(&self) -> &JobTracker {
        &self.tracker
    }

    fn decode(&self, delivery: &Delivery) -> Result<JobRequested, HandlerError> {
        let request: JobRequested = self
            .codec
            .decode(&delivery.payload)
            .map_err(|err| HandlerError::permanent("decode", err.to_string()))?;
        validate(&request).map_err(HandlerError::from)?;
        Ok(request)
    }

    /// Attempts for this request: its own, else its type's.
    fn max_attempts(&self, request: &JobRequested) -> u32 {
        match request.max_attempts {
            Some(n) if n > 0 => n as u32,
            _ => self.config.max_attempts.of(request.job_type),
        }
    }

    /// Decodes and records; `None` when there is nothing to run.
    async fn record(&self, delivery: &Delivery) -> Result<Option<Pending>, HandlerError> {
        let request = self.decode(delivery)?;
        let recorded = self
            .tracker
            .record(&request, self.max_attempts(&request))
            .await?;
        let view = match recorded {
            Recorded::New(view) | Recorded::Existing(view) => view,
            Recorded::Duplicate(existing) => {
                JobDeduplicated {
                    job_id: &request.job_id,
                    existing_job_id: &existing.job_id,
                    idempotency_key: request.idempotency_key.as_deref().unwrap_or_default(),
                }
                .emit();
                return Ok(None);
            }
        };
        Ok(Some(Pending {
            job_type: request.job_type,
            view,
        }))
    }

    /// Runs a recorded job to `succeeded` or `dead`, resuming where a previous
    /// delivery left it.
    async fn drive(&self, delivery: &Delivery, pending: Pending) -> Result<(), HandlerError> {
        let Pending { job_type, mut view } = pending;
        let status = view
            .job
            .status()
            .ok_or_else(|| HandlerError::permanent("invalid", "unknown job status"))?;
        if status == JobStatus::Dead {
            // Redelivered after dying: its dead letter may not have been
            // written (the runner acks only after it is), so fail again.
            let last = view.job.last_error.clone().unwrap_or_default();
            return Err(dead_error(&view, "job_dead", &last));
        }
        if is_terminal(status) {
            return Ok(());
        }
        if status == JobStatus::Running {
            self.interrupted(job_type, &mut view).await?;
            if view.job.status() == Some(JobStatus::Dead) {
                return Err(dead_error(
                    &view,
                    "interrupted",
                    "worker stopped mid-attempt",
                ));
            }
        } else if view.job.attempts > 0 || view.history.len() > 1 {
            JobResumed {
                job_id: &view.job.job_id,
                status: &view.job.status,
                attempts: view.job.attempts,
            }
            .emit();
        }
        if !self.wait_until_due(delivery, &view).await? {
            return Ok(());
        }
        self.run_attempts(job_type, &mut view).await
    }

    /// A `running` job seen again: the worker running it died, so that attempt
    /// counts and the next one follows (or the job is dead if it was the last).
    async fn interrupted(&self, job_type: JobType, view: &mut JobView) -> Result<(), HandlerError> {
        JobResumed {
            job_id: &view.job.job_id,
            status: &view.job.status,
            attempts: view.job.attempts,
        }
        .emit();
        let attempt = view.job.attempts;
        let error = format!("worker stopped during attempt {attempt}");
        let next = if attempt >= view.job.max_attempts {
            JobStatus::Dead
        } else {
            JobStatus::RetryScheduled
        };
        self.tracker
            .transition(view, job_type, next, attempt, now_ms(), Some(&error))
            .await?;
        Ok(())
    }

    /// Attempts until success, a permanent error or the last attempt.
    async fn run_attempts(
        &self,
        job_type: JobType,
        view: &mut JobView,
    ) -> Result<(), HandlerError> {
        loop {
            let attempt = view.job.attempts + 1;
            let now = now_ms();
            self.tracker
                .transition(view, job_type, JobStatus::Running, attempt, now, None)
                .await?;
            let error = match self.executor.execute(job_type, &view.job).await {
                Ok(()) => {
                    self.tracker
                        .transition(view, job_type, JobStatus::Succeeded, attempt, now, None)
                        .await?;
                    return Ok(());
                }
                Err(error) => error,
            };
            let message = error.to_string();
            if !error.is_retriable() || attempt >= view.job.max_attempts {
                self.tracker
                    .transition(
                        view,
                        job_type,
                        JobStatus::Dead,
                        attempt,
                        now,
                        Some(&message),
                    )
                    .await?;
                return Err(dead_error(view, error.kind(), &message));
            }
            let backoff = self.config.backoff(attempt as u32);
            let run_at = now_ms() + backoff.as_millis() as i64;
            self.tracker
                .transition(
                    view,
                    job_type,
                    JobStatus::RetryScheduled,
                    attempt,
                    run_at,
                    Some(&message),
                )
                .await?;
            self.sleep(backoff).await?;
        }
    }

    /// True once the job is due. A job due later than the inline delay is
    /// waited for that long and then re-published (false): its row keeps the
    /// state, the new record is only a wake-up, and the partition's other jobs
    /// get their turn meanwhile.
    async fn wait_until_due(
        &self,
        delivery: &Delivery,
        view: &JobView,
    ) -> Result<bool, HandlerError> {
        let due_in = view.job.run_at_ms - now_ms();
        if due_in <= 0 {
            return Ok(true);
        }
        let due_in = Duration::from_millis(due_in as u64);
        let inline = self.config.max_inline_delay();
        if due_in <= inline {
            self.sleep(due_in).await?;
            return Ok(true);
        }
        self.sleep(inline).await?;
        let key = delivery.key.clone().unwrap_or_default();
        self.tracker
            .publisher()
            .publish(&delivery.topic, &key, &delivery.payload)
            .await
            .map_err(JobError::bus("re-publish delayed job"))?;
        JobDeferred {
            job_id: &view.job.job_id,
            due_in: due_in.saturating_sub(inline),
        }
        .emit();
        Ok(false)
    }

    /// Sleeps unless shutting down; a shutdown leaves the delivery unacked.
    async fn sleep(&self, duration: Duration) -> Result<(), HandlerError> {
        tokio::select! {
            _ = self.shutdown.cancelled() => {
                Err(HandlerError::retriable("shutdown", "stopped while waiting; job resumes on redelivery"))
            }
            _ = tokio::time::sleep(duration) => Ok(()),
        }
    }
}

/// The permanent error that makes the runner dead-letter a dead job. The
/// `DeadLetter`'s `attempts` counts deliveries; the job's attempts are in the
/// message and in the `jobs` row.
fn dead_error(view: &JobView, kind: &'static str, message: &str) -> HandlerError {
    let job = &view.job;
    HandlerError::permanent(
        kind,
        format!(
            "job {} ({}) dead after {} attempts: {message}",
            job.job_id, job.job_type, job.attempts
        ),
    )
}

/// Rejects requests that can never run.
pub fn validate(request: &JobRequested) -> Result<(), JobError> {
    if request.job_id.trim().is_empty() || request.job_id.len() > 128 {
        return Err(JobError::Invalid(
            "job_id must be 1 to 128 characters".into(),
        ));
    }
    if request.subject_id <= 0 {
        return Err(JobError::Invalid(format!(
            "subject_id of a {} job must be positive",
            job_type_name(request.job_type)
        )));
    }
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > 200 {
            return Err(JobError::Invalid(
                "idempotency_key must be 1 to 200 characters".into(),
            ));
        }
    }
    if request
        .max_attempts
        .is_some_and(|n| !(1..=100).contains(&n))
    {
        return Err(JobError::Invalid("max_attempts must be 1 to 100".into()));
    }
    Ok(())
}

#[async_trait]
impl Handler for JobsHandler {
    /// Records the whole slice first, so duplicates within it see each other
    /// as queued, then runs the jobs in order.
    async fn handle(&self, deliveries: &[Delivery]) -> Vec<Result<(), HandlerError>> {
        let mut recorded = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            recorded.push(self.record(delivery).await);
        }
        let mut outcomes = Vec::with_capacity(deliveries.len());
        for (delivery, recorded) in deliveries.iter().zip(recorded) {
            let outcome = match recorded {
                Ok(Some(pending)) => self.drive(delivery, pending).await,
                Ok(None) => Ok(()),
                Err(err) => Err(err),
            };
            outcomes.push(outcome);
        }
        outcomes
    }
}
