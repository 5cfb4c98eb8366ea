//! Job status: the database is the record, Redis a mirror for fast reads,
//! and every transition is published as `JobStatusChanged`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use pipeline::bus::{Publisher, Record};
use pipeline::internal_events::InternalEvent;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, DeadLetter, JobRequested, JobStatus, JobStatusChanged, JobType};

use super::events::JobTransitioned;
use super::model::{job_type_name, status_name, HistoryEntry, JobRecord, JobView};
use super::opendota::now_ms;
use super::JobError;
use super::{lease, store};
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

/// A job that ran out of attempts (or hit a permanent error), for its dead letter.
#[derive(Debug, Clone)]
pub struct DeadJob {
    pub job: JobRecord,
    pub kind: &'static str,
    pub message: String,
}

/// The status event of a job row as it stands.
fn status_event(job: &JobRecord, job_type: JobType) -> JobStatusChanged {
    let status = job.status().unwrap_or(JobStatus::Queued);
    let carries_error = matches!(status, JobStatus::RetryScheduled | JobStatus::Dead);
    JobStatusChanged {
        job_id: job.job_id.clone(),
        job_type,
        status,
        attempt: job.attempts,
        at_ms: job.updated_at_ms,
        error: job.last_error.clone().filter(|_| carries_error),
        next_run_at_ms: (status == JobStatus::RetryScheduled).then_some(job.run_at_ms),
    }
}

fn emit_transitioned(job: &JobRecord, job_type: JobType) {
    let status = job.status().unwrap_or(JobStatus::Queued);
    let carries_error = matches!(status, JobStatus::RetryScheduled | JobStatus::Dead);
    JobTransitioned {
        job_id: &job.job_id,
        job_type: job_type_name(job_type),
        status: status_name(status),
        attempt: job.attempts,
        error: job.last_error.as_deref().filter(|_| carries_error),
    }
    .emit();
}

/// Writes and reads job status. Cheap to clone.
#[derive(Clone)]
pub struct JobTracker {
    store: Store,
    cache: Cache,
    publisher: Arc<dyn Publisher>,
    codec: Codec,
    mirror_ttl: Duration,
    /// Woken when a job became claimable, so a pool in this process starts
    /// it without waiting for its next poll.
    recorded: Arc<Notify>,
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
            recorded: Arc::new(Notify::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Notified each time a job becomes claimable through this tracker.
    pub fn recorded(&self) -> Arc<Notify> {
        self.recorded.clone()
    }

    pub fn publisher(&self) -> &Arc<dyn Publisher> {
        &self.publisher
    }

    /// Records `request` as queued unless its id is known or its idempotency
    /// key is held by an active job, announces `queued` and lets workers
    /// claim it. See [`JobTracker::record_batch`].
    pub async fn record(
        &self,
        request: &JobRequested,
        max_attempts: u32,
    ) -> Result<Recorded, JobError> {
        let mut recorded = self.record_batch(&[(request, max_attempts)]).await?;
        Ok(recorded.remove(0))
    }

    /// Records requests in order, in one transaction: each is queued unless
    /// its id is known or its idempotency key is held by an active job (also
    /// one earlier in the batch; the database's unique index decides races).
    /// Then `queued` is announced for every job not announced yet (a
    /// recorder that stopped first, or the API, leaves them so), and workers
    /// may claim them.
    pub async fn record_batch(
        &self,
        requests: &[(&JobRequested, u32)],
    ) -> Result<Vec<Recorded>, JobError> {
        let mut recorded = self.record_unannounced_batch(requests).await?;
        let unready: Vec<(&JobRecord, JobType)> = recorded
            .iter()
            .zip(requests)
            .filter_map(|(recorded, (request, _))| match recorded {
                Recorded::New(view) | Recorded::Existing(view) if !view.job.ready => {
                    Some((&view.job, request.job_type))
                }
                _ => None,
            })
            .collect();
        if unready.is_empty() {
            return Ok(recorded);
        }
        self.announce_queued(&unready).await?;
        let ids: Vec<&str> = unready.iter().map(|(job, _)| job.job_id.as_str()).collect();
        store::mark_ready(&self.store, &ids).await?;
        self.recorded.notify_one();
        for entry in &mut recorded {
            if let Recorded::New(view) | Recorded::Existing(view) = entry {
                view.job.ready = true;
            }
        }
        Ok(recorded)
    }

    /// Records `request` as queued but not claimable: the API's first step,
    /// before it publishes the request; the jobs group then announces it.
    pub async fn record_unannounced(
        &self,
        request: &JobRequested,
        max_attempts: u32,
    ) -> Result<Recorded, JobError> {
        let mut recorded = self
            .record_unannounced_batch(&[(request, max_attempts)])
            .await?;
        Ok(recorded.remove(0))
    }

    async fn record_unannounced_batch(
        &self,
        requests: &[(&JobRequested, u32)],
    ) -> Result<Vec<Recorded>, JobError> {
        let now = now_ms();
        let mut jobs = Vec::with_capacity(requests.len());
        for (request, max_attempts) in requests {
            let encoded = self
                .codec
                .encode(*request, Encoding::SingleObject)
                .map_err(|e| JobError::Encode(e.to_string()))?;
            jobs.push((JobRecord::queued(request, *max_attempts, now), encoded));
        }
        let inserted = store::insert_queued(&self.store, &jobs).await?;
        let mut recorded = Vec::with_capacity(jobs.len());
        for (job, encoded) in jobs {
            if inserted.contains(&job.job_id) {
                recorded.push(Recorded::New(JobView {
                    history: vec![HistoryEntry {
                        status: job.status.clone(),
                        attempt: 0,
                        at_ms: job.created_at_ms,
                        error: None,
                    }],
                    job,
                }));
            } else {
                recorded.push(self.known(job, &encoded).await?);
            }
        }
        Ok(recorded)
    }

    /// A request that was not inserted: its job exists, or an active job
    /// holds its key. Twice at most: the key may be freed in between.
    async fn known(&self, job: JobRecord, encoded: &[u8]) -> Result<Recorded, JobError> {
        for _ in 0..2 {
            if let Some(view) = store::view(&self.store, &job.job_id).await? {
                return Ok(Recorded::Existing(view));
            }
            if let Some(key) = &job.idempotency_key {
                if let Some(existing) = store::active_by_key(&self.store, key).await? {
                    return Ok(Recorded::Duplicate(existing));
                }
            }
            let inserted =
                store::insert_queued(&self.store, &[(job.clone(), encoded.to_vec())]).await?;
            if !inserted.is_empty() {
                let history = store::history(&self.store, &job.job_id).await?;
                return Ok(Recorded::New(JobView { job, history }));
            }
        }
        Err(JobError::Invalid(format!(
            "job {} could not be recorded",
            job.job_id
        )))
    }

    /// Publishes `queued` for newly recorded jobs, in one batch. Not
    /// mirrored: the first mirror write comes from the worker that claims a
    /// job, so mirror writes of one job come from one place, in order.
    async fn announce_queued(&self, jobs: &[(&JobRecord, JobType)]) -> Result<(), JobError> {
        let mut records = Vec::with_capacity(jobs.len());
        for (job, job_type) in jobs {
            let payload = self.encode(&status_event(job, *job_type))?;
            records.push(Record::new(job.job_id.as_bytes(), payload));
        }
        self.publisher
            .publish_batch(topics::JOB_STATUS, &records)
            .await
            .map_err(JobError::bus("publish job status"))?;
        for (job, job_type) in jobs {
            emit_transitioned(job, *job_type);
        }
        Ok(())
    }

    /// After a worker's transaction: publishes the jobs' status events in
    /// one batch and updates their Redis mirror. Jobs that are now running
    /// lose their mirror (reads go to the database, one Redis call for the
    /// batch); others get their fresh view.
    pub async fn announce(&self, jobs: &[JobRecord]) -> Result<(), JobError> {
        if jobs.is_empty() {
            return Ok(());
        }
        let (running, settled): (Vec<&JobRecord>, Vec<&JobRecord>) =
            jobs.iter().partition(|job| job.status == "running");
        if !running.is_empty() {
            let keys: Vec<String> = running.iter().map(|job| job_key(&job.job_id)).collect();
            self.cache.delete(&keys).await;
        }
        if !settled.is_empty() {
            let ids: Vec<&str> = settled.iter().map(|j| j.job_id.as_str()).collect();
            let views = store::views(&self.store, &ids).await?;
            futures::future::join_all(views.iter().map(|view| self.mirror(view))).await;
        }
        let mut announced = Vec::with_capacity(jobs.len());
        let mut records = Vec::with_capacity(jobs.len());
        for job in jobs {
            let Some(job_type) = job.job_type() else {
                continue;
            };
            let payload = self.encode(&status_event(job, job_type))?;
            records.push(Record::new(job.job_id.as_bytes(), payload));
            announced.push((job, job_type));
        }
        self.publisher
            .publish_batch(topics::JOB_STATUS, &records)
            .await
            .map_err(JobError::bus("publish job status"))?;
        for (job, job_type) in announced {
            emit_transitioned(job, job_type);
        }
        Ok(())
    }

    /// Cancels an active job (see [`lease::cancel`]) and announces it.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<JobRecord>, JobError> {
        let cancelled =
            lease::cancel(&self.store, job_id, "cancelled through the API", now_ms()).await?;
        if let Some(job) = &cancelled {
            self.announce(std::slice::from_ref(job)).await?;
        }
        Ok(cancelled)
    }

    /// Queues a dead job again with fresh attempts and announces it.
    pub async fn retry(&self, job_id: &str) -> Result<Option<JobRecord>, JobError> {
        let retried = lease::retry_dead(&self.store, job_id, now_ms()).await?;
        if let Some(job) = &retried {
            self.announce(std::slice::from_ref(job)).await?;
            self.recorded.notify_one();
        }
        Ok(retried)
    }

    /// Dead-letters dead jobs: the recorded request, the kind and message of
    /// the last error, `group` as the consumer group.
    pub async fn dead_letter(&self, group: &str, dead: &[DeadJob]) -> Result<(), JobError> {
        if dead.is_empty() {
            return Ok(());
        }
        let ids: Vec<&str> = dead.iter().map(|d| d.job.job_id.as_str()).collect();
        let mut requests: std::collections::HashMap<String, Option<Vec<u8>>> =
            lease::requests(&self.store, &ids)
                .await?
                .into_iter()
                .collect();
        let mut records = Vec::with_capacity(dead.len());
        for DeadJob { job, kind, message } in dead {
            let letter = DeadLetter {
                original: requests.remove(&job.job_id).flatten().unwrap_or_default(),
                key: Some(
                    job.idempotency_key
                        .as_deref()
                        .unwrap_or(&job.job_id)
                        .as_bytes()
                        .to_vec(),
                ),
                topic: topics::JOBS.to_string(),
                partition: None,
                offset: None,
                stream_id: None,
                consumer_group: group.to_string(),
                error_kind: kind.to_string(),
                error_message: format!(
                    "job {} ({}) dead after {} attempts: {message}",
                    job.job_id, job.job_type, job.attempts
                ),
                first_seen_ms: job.created_at_ms,
                attempts: job.attempts,
            };
            records.push(Record::new(job.job_id.as_bytes(), self.encode(&letter)?));
        }
        self.publisher
            .publish_batch(topics::DEAD_LETTERS, &records)
            .await
            .map_err(JobError::bus("publish dead letters"))
    }

    fn encode<E: schemas::Event>(&self, event: &E) -> Result<Vec<u8>, JobError> {
        self.codec
            .encode(event, Encoding::SingleObject)
            .map_err(|e| JobError::Encode(e.to_string()))
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
