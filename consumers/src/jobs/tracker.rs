//! Job status: the database is the record, Redis a mirror for fast reads,
//! and every transition is published as `JobStatusChanged`.

use std::sync::Arc;
use std::time::Duration;

use pipeline::bus::Publisher;
use pipeline::internal_events::InternalEvent;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, JobRequested, JobStatus, JobStatusChanged, JobType};

use super::events::JobTransitioned;
use super::model::{job_type_name, status_name, HistoryEntry, JobRecord, JobView};
use super::opendota::now_ms;
use super::store::{self, Transition};
use super::JobError;
use crate::cache::Cache;
use crate::persist::Store;

/// The Redis mirror's key of a job (the cache adds its prefix).
pub fn job_key(job_id: &str) -> String {
    format!("job:{job_id}")
}

/// What recording a request found.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// A new job, now queued.
    New(JobView),
    /// This job id was recorded before (a redelivery, or the API recorded it).
    Existing(JobView),
    /// Another active job holds the idempotency key.
    Duplicate(JobRecord),
}

/// Writes and reads job status. Cheap to clone.
#[derive(Clone)]
pub struct JobTracker {
    store: Store,
    cache: Cache,
    publisher: Arc<dyn Publisher>,
    codec: Codec,
    mirror_ttl: Duration,
}

impl JobTracker {
    pub fn new(
        store: Store,
        cache: Cache,
        publisher: Arc<dyn Publisher>,
        mirror_ttl: Duration,
    ) -> Self {
        Self {
            store,
            cache,
            publisher,
            codec: Codec::default(),
            mirror_ttl,
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn publisher(&self) -> &Arc<dyn Publisher> {
        &self.publisher
    }

    /// Records `request` as queued unless its id is known or its idempotency
    /// key is held by an active job; the database's unique index decides
    /// races between workers.
    pub async fn record(
        &self,
        request: &JobRequested,
        max_attempts: u32,
    ) -> Result<Recorded, JobError> {
        let job = JobRecord::queued(request, max_attempts, now_ms());
        // Twice at most: a key can be freed between the insert and the lookup.
        for _ in 0..2 {
            if store::insert_queued(&self.store, &job).await? {
                let view = JobView {
                    history: vec![HistoryEntry {
                        status: job.status.clone(),
                        attempt: 0,
                        at_ms: job.created_at_ms,
                        error: None,
                    }],
                    job: job.clone(),
                };
                self.announce(&view, request.job_type, JobStatus::Queued, None)
                    .await?;
                return Ok(Recorded::New(view));
            }
            if let Some(view) = store::view(&self.store, &job.job_id).await? {
                return Ok(Recorded::Existing(view));
            }
            if let Some(key) = &job.idempotency_key {
                if let Some(existing) = store::active_by_key(&self.store, key).await? {
                    return Ok(Recorded::Duplicate(existing));
                }
            }
        }
        Err(JobError::Invalid(format!(
            "job {} could not be recorded",
            job.job_id
        )))
    }

    /// Moves the job to `status`: database, then mirror, then event.
    pub async fn transition(
        &self,
        view: &mut JobView,
        job_type: JobType,
        status: JobStatus,
        attempt: i32,
        run_at_ms: i64,
        error: Option<&str>,
    ) -> Result<(), JobError> {
        let at_ms = now_ms();
        store::transition(
            &self.store,
            &Transition {
                job_id: &view.job.job_id,
                status,
                attempt,
                run_at_ms,
                error,
                at_ms,
            },
        )
        .await?;
        let job = &mut view.job;
        job.status = status_name(status).to_string();
        job.attempts = attempt;
        job.run_at_ms = run_at_ms;
        job.updated_at_ms = at_ms;
        if let Some(error) = error {
            job.last_error = Some(error.to_string());
        }
        view.history.push(HistoryEntry {
            status: job.status.clone(),
            attempt,
            at_ms,
            error: error.map(str::to_string),
        });
        self.announce(view, job_type, status, error).await
    }

    /// Mirrors the view to Redis and publishes the status event.
    async fn announce(
        &self,
        view: &JobView,
        job_type: JobType,
        status: JobStatus,
        error: Option<&str>,
    ) -> Result<(), JobError> {
        self.mirror(view).await;
        let job = &view.job;
        let event = JobStatusChanged {
            job_id: job.job_id.clone(),
            job_type,
            status,
            attempt: job.attempts,
            at_ms: job.updated_at_ms,
            error: error.map(str::to_string),
            next_run_at_ms: (status == JobStatus::RetryScheduled).then_some(job.run_at_ms),
        };
        let payload = self
            .codec
            .encode(&event, Encoding::SingleObject)
            .map_err(|e| JobError::Encode(e.to_string()))?;
        self.publisher
            .publish(topics::JOB_STATUS, job.job_id.as_bytes(), &payload)
            .await
            .map_err(JobError::bus("publish job status"))?;
        JobTransitioned {
            job_id: &job.job_id,
            job_type: job_type_name(job_type),
            status: status_name(status),
            attempt: job.attempts,
            error,
        }
        .emit();
        Ok(())
    }

    /// Best effort: the database stays the record when Redis is away.
    async fn mirror(&self, view: &JobView) {
        if let Ok(json) = serde_json::to_string(view) {
            self.cache
                .set(&job_key(&view.job.job_id), &json, self.mirror_ttl)
                .await;
        }
    }

    /// The job with its history: the Redis mirror first, the database second.
    pub async fn view(&self, job_id: &str) -> Result<Option<JobView>, JobError> {
        let mirrored = self
            .cache
            .get(&job_key(job_id))
            .await
            .and_then(|json| serde_json::from_str::<JobView>(&json).ok());
        if let Some(view) = mirrored {
            return Ok(Some(view));
        }
        store::view(&self.store, job_id).await
    }

    /// Drops a job that never reached the bus (the API's publish failed).
    pub async fn forget(&self, job_id: &str) -> Result<(), JobError> {
        store::delete(&self.store, job_id).await?;
        self.cache.delete(&[job_key(job_id)]).await;
        Ok(())
    }
}
