//! Job status: the database is the record, Redis a mirror for fast reads,
//! and every transition is published as `JobStatusChanged`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use pipeline::bus::{Publisher, Record};
use pipeline::internal_events::InternalEvent;
use schemas::codec::{Codec, Encoding};
use schemas::{topics, JobRequested};

use super::events::JobTransitioned;
use super::model::{
    job_type_name, parse_job_type, parse_status, status_name, HistoryEntry, JobRecord, JobView,
};
use super::outbox::{self, OutboxRow};
use super::JobError;
use super::{lease, store};
use crate::cache::Cache;
use crate::persist::Store;
use pipeline::bus::now_ms;

/// Marks relayed rows published (one statement), on the relay's executor.
macro_rules! mark_published {
    ($executor:expr, $rows:expr) => {{
        let rows: &[OutboxRow] = $rows;
        if !rows.is_empty() {
            let mut query = sqlx::QueryBuilder::new(
                "UPDATE job_status_history SET published = TRUE WHERE seq IN (",
            );
            let mut seqs = query.separated(", ");
            for row in rows {
                seqs.push_bind(row.seq);
            }
            query.push(")");
            query
                .build()
                .execute($executor)
                .await
                .map_err(JobError::database("mark the outbox published"))?;
        }
    }};
}

/// One outbox relay at a time in this process, whichever tracker runs it
/// (the jobs group's and the API's are distinct).
static RELAY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

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
    /// Woken when a job became claimable, so a pool in this process starts
    /// it without waiting for its next poll.
    recorded: Arc<Notify>,
    /// The consumer group named in the dead letters of dead jobs.
    group: String,
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
            group: "jobs".to_string(),
        }
    }

    /// The consumer group dead letters name (the jobs group's id).
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        self.group = group.into();
        self
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
        let unready: Vec<&str> = recorded
            .iter()
            .filter_map(|recorded| match recorded {
                Recorded::New(view) | Recorded::Existing(view) if !view.job.ready => {
                    Some(view.job.job_id.as_str())
                }
                _ => None,
            })
            .collect();
        if unready.is_empty() {
            return Ok(recorded);
        }
        // Their `queued` rows go out before any worker can add a `running` one.
        self.flush().await?;
        store::mark_ready(&self.store, &unready).await?;
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

    /// Relays the outbox: unpublished status changes, oldest first, become
    /// `JobStatusChanged` events (and dead letters for dead jobs), the Redis
    /// mirror follows, and the rows are marked published. Returns how many
    /// went out. Called after every change; also on the worker pool's poll,
    /// which publishes what a stopped process left.
    pub async fn flush(&self) -> Result<usize, JobError> {
        let _one_relay = RELAY.lock().await;
        let mut total = 0;
        loop {
            let relayed = match &self.store {
                Store::Postgres(pool) => {
                    let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
                    // Losing a `published` mark in a crash only publishes the row
                    // again (at least once), so this commit need not wait for disk.
                    sqlx::query("SET LOCAL synchronous_commit = off")
                        .execute(&mut *tx)
                        .await
                        .map_err(JobError::database("relax the outbox commit"))?;
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(outbox::RELAY_LOCK)
                        .execute(&mut *tx)
                        .await
                        .map_err(JobError::database("lock the outbox"))?;
                    let rows: Vec<OutboxRow> = sqlx::query_as(outbox::SELECT_UNPUBLISHED)
                        .bind(outbox::BATCH)
                        .fetch_all(&mut *tx)
                        .await
                        .map_err(JobError::database("read the outbox"))?;
                    self.relay_rows(&rows).await?;
                    mark_published!(&mut *tx, &rows);
                    tx.commit().await.map_err(JobError::database("commit"))?;
                    rows.len()
                }
                // One process, and the mutex above: one relay.
                Store::Sqlite(pool) => {
                    let rows: Vec<OutboxRow> = sqlx::query_as(outbox::SELECT_UNPUBLISHED)
                        .bind(outbox::BATCH)
                        .fetch_all(pool)
                        .await
                        .map_err(JobError::database("read the outbox"))?;
                    self.relay_rows(&rows).await?;
                    mark_published!(pool, &rows);
                    rows.len()
                }
            };
            total += relayed;
            if relayed < outbox::BATCH as usize {
                return Ok(total);
            }
        }
    }

    /// Publishes the rows' events and dead letters and refreshes the mirror.
    async fn relay_rows(&self, rows: &[OutboxRow]) -> Result<(), JobError> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut events = Vec::with_capacity(rows.len());
        let mut letters = Vec::new();
        for row in rows {
            events.push(Record::new(
                row.job_id.as_bytes(),
                self.encode(&row.event()?)?,
            ));
            if let Some(letter) = row.dead_letter(&self.group) {
                letters.push(Record::new(row.job_id.as_bytes(), self.encode(&letter)?));
            }
        }
        self.publisher
            .publish_batch(topics::JOB_STATUS, &events)
            .await
            .map_err(JobError::bus("publish job status"))?;
        if !letters.is_empty() {
            self.publisher
                .publish_batch(topics::DEAD_LETTERS, &letters)
                .await
                .map_err(JobError::bus("publish dead letters"))?;
        }
        self.refresh_mirror(rows).await?;
        for row in rows {
            JobTransitioned {
                job_id: &row.job_id,
                job_type: parse_job_type(&row.job_type)
                    .map(job_type_name)
                    .unwrap_or("unknown"),
                status: parse_status(&row.status)
                    .map(status_name)
                    .unwrap_or("unknown"),
                attempt: row.attempt,
                error: row.error.as_deref(),
            }
            .emit();
        }
        Ok(())
    }

    /// Jobs now running lose their mirror (reads go to the database, one
    /// Redis call for all); the others get their fresh view.
    async fn refresh_mirror(&self, rows: &[OutboxRow]) -> Result<(), JobError> {
        let latest = outbox::latest_per_job(rows);
        let (running, settled): (Vec<&OutboxRow>, Vec<&OutboxRow>) =
            latest.into_iter().partition(|row| row.status == "running");
        if !running.is_empty() {
            let keys: Vec<String> = running.iter().map(|row| job_key(&row.job_id)).collect();
            self.cache.delete(&keys).await;
        }
        if !settled.is_empty() {
            let ids: Vec<&str> = settled.iter().map(|row| row.job_id.as_str()).collect();
            let views = store::views(&self.store, &ids).await?;
            futures::future::join_all(views.iter().map(|view| self.mirror(view))).await;
        }
        Ok(())
    }

    /// Cancels an active job (see [`lease::cancel`]) and relays the change.
    pub async fn cancel(&self, job_id: &str) -> Result<Option<JobRecord>, JobError> {
        let cancelled =
            lease::cancel(&self.store, job_id, "cancelled through the API", now_ms()).await?;
        if cancelled.is_some() {
            self.flush().await?;
        }
        Ok(cancelled)
    }

    /// Queues a dead job again with fresh attempts and relays the change.
    pub async fn retry(&self, job_id: &str) -> Result<Option<JobRecord>, JobError> {
        let retried = lease::retry_dead(&self.store, job_id, now_ms()).await?;
        if retried.is_some() {
            self.flush().await?;
            self.recorded.notify_one();
        }
        Ok(retried)
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
