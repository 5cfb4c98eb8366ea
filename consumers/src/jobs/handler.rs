//! The jobs group's [`Handler`]: records each `JobRequested` as a queued job
//! and acknowledges it. Running is the [`super::WorkerPool`]'s: nobody waits
//! for a job while holding a delivery, so a slow job never stalls a
//! partition or outlives a consumer's poll deadline.

use async_trait::async_trait;
use pipeline::internal_events::InternalEvent;
use pipeline::runner::{Decoded, EventHandler, HandlerError};
use schemas::codec::Codec;
use schemas::JobRequested;

use super::config::JobsConfig;
use super::events::JobDeduplicated;
use super::model::{job_type_name, JobRecord};
use super::tracker::{JobTracker, Recorded};
use super::JobError;

/// Handles `jobs` deliveries: validates and records them.
pub struct JobsHandler {
    tracker: JobTracker,
    config: JobsConfig,
    codec: Codec,
}

impl JobsHandler {
    pub fn new(tracker: JobTracker, config: JobsConfig) -> Self {
        Self {
            tracker,
            config,
            codec: Codec::default(),
        }
    }

    pub fn with_codec(mut self, codec: Codec) -> Self {
        self.codec = codec;
        self
    }

    pub fn tracker(&self) -> &JobTracker {
        &self.tracker
    }

    /// Attempts for this request: its own, else its type's.
    fn max_attempts(&self, request: &JobRequested) -> u32 {
        match request.max_attempts {
            Some(n) if n > 0 => n as u32,
            _ => self.config.max_attempts.of(request.job_type),
        }
    }

    /// Logs a request whose key an active job holds: acknowledged, not run.
    fn deduplicated(request: &JobRequested, existing: &JobRecord) {
        JobDeduplicated {
            job_id: &request.job_id,
            existing_job_id: &existing.job_id,
            idempotency_key: request.idempotency_key.as_deref().unwrap_or_default(),
        }
        .emit();
    }
}

/// Rejects requests that can never run.
pub fn validate(request: &JobRequested) -> Result<(), JobError> {
    // PostgreSQL text cannot hold NUL: refused here, it would fail the
    // insert as a (retried) database error.
    let has_nul = |text: &str| text.contains('\0');
    if request.job_id.trim().is_empty() || request.job_id.len() > 128 || has_nul(&request.job_id) {
        return Err(JobError::Invalid(
            "job_id must be 1 to 128 characters, none of them NUL".into(),
        ));
    }
    if request.subject_id <= 0 {
        return Err(JobError::Invalid(format!(
            "subject_id of a {} job must be positive",
            job_type_name(request.job_type)
        )));
    }
    if let Some(key) = &request.idempotency_key {
        if key.is_empty() || key.len() > 200 || has_nul(key) {
            return Err(JobError::Invalid(
                "idempotency_key must be 1 to 200 characters, none of them NUL".into(),
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
impl EventHandler for JobsHandler {
    type Events = JobRequested;

    fn codec(&self) -> &Codec {
        &self.codec
    }

    /// Records the valid requests of the slice in one batch, in order, so a
    /// duplicate sees the request before it as active. A redelivered request
    /// finds its job and changes nothing. Undecodable or invalid requests
    /// fail alone (the runner dead-letters them); a database or bus error
    /// fails the batch's valid ones, which the runner retries.
    async fn handle_events(
        &self,
        requests: Vec<Decoded<'_, JobRequested>>,
    ) -> Vec<Result<(), HandlerError>> {
        let decoded: Vec<Result<JobRequested, HandlerError>> = requests
            .into_iter()
            .map(|r| {
                validate(&r.event)
                    .map(|()| r.event)
                    .map_err(HandlerError::from)
            })
            .collect();
        let valid: Vec<(&JobRequested, u32)> = decoded
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .map(|request| (request, self.max_attempts(request)))
            .collect();
        let recorded = match self.tracker.record_batch(&valid).await {
            Ok(recorded) => recorded,
            Err(err) => {
                let err = HandlerError::from(err);
                return decoded
                    .into_iter()
                    .map(|r| r.and(Err(err.clone())))
                    .collect();
            }
        };
        for ((request, _), recorded) in valid.iter().zip(&recorded) {
            if let Recorded::Duplicate(existing) = recorded {
                Self::deduplicated(request, existing);
            }
        }
        decoded.into_iter().map(|r| r.map(|_| ())).collect()
    }
}
