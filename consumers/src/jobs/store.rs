//! The `jobs` and `job_status_history` tables, on either backend. The SQL is
//! shared: sqlx binds `$n` on SQLite too.

use schemas::JobStatus;

use super::model::{status_name, HistoryEntry, JobRecord, JobView};
use super::JobError;
use crate::persist::Store;

/// Runs `$body` with `$pool` bound to the store's pool, whichever backend.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match $store {
            Store::Postgres($pool) => $body,
            Store::Sqlite($pool) => $body,
        }
    };
}

const JOB_COLUMNS: &str = "job_id, job_type, subject_id, idempotency_key, status, attempts, \
     max_attempts, run_at_ms, last_error, created_at_ms, updated_at_ms";

const INSERT_JOB: &str = "INSERT INTO jobs (job_id, job_type, subject_id, idempotency_key, \
     status, attempts, max_attempts, run_at_ms, last_error, created_at_ms, updated_at_ms) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING";

const INSERT_HISTORY: &str =
    "INSERT INTO job_status_history (job_id, status, attempt, at_ms, error) \
     VALUES ($1, $2, $3, $4, $5)";

const UPDATE_JOB: &str = "UPDATE jobs SET status = $2, attempts = $3, run_at_ms = $4, \
     last_error = COALESCE($5, last_error), updated_at_ms = $6 WHERE job_id = $1";

const ACTIVE: &str = "('queued', 'running', 'retry_scheduled')";

/// A status change to record: the new row values and its history entry.
#[derive(Debug, Clone)]
pub struct Transition<'a> {
    pub job_id: &'a str,
    pub status: JobStatus,
    pub attempt: i32,
    pub run_at_ms: i64,
    pub error: Option<&'a str>,
    pub at_ms: i64,
}

/// Inserts a queued job and its first history entry, unless its id exists or
/// its idempotency key belongs to an active job. True when inserted.
pub async fn insert_queued(store: &Store, job: &JobRecord) -> Result<bool, JobError> {
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let inserted = sqlx::query(INSERT_JOB)
            .bind(&job.job_id)
            .bind(&job.job_type)
            .bind(job.subject_id)
            .bind(&job.idempotency_key)
            .bind(&job.status)
            .bind(job.attempts)
            .bind(job.max_attempts)
            .bind(job.run_at_ms)
            .bind(&job.last_error)
            .bind(job.created_at_ms)
            .bind(job.updated_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(JobError::database("insert job"))?
            .rows_affected()
            == 1;
        if inserted {
            sqlx::query(INSERT_HISTORY)
                .bind(&job.job_id)
                .bind(&job.status)
                .bind(job.attempts)
                .bind(job.created_at_ms)
                .bind(None::<String>)
                .execute(&mut *tx)
                .await
                .map_err(JobError::database("insert job history"))?;
        }
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(inserted)
    })
}

/// Updates the row and appends the history entry in one transaction.
pub async fn transition(store: &Store, t: &Transition<'_>) -> Result<(), JobError> {
    let status = status_name(t.status);
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        sqlx::query(UPDATE_JOB)
            .bind(t.job_id)
            .bind(status)
            .bind(t.attempt)
            .bind(t.run_at_ms)
            .bind(t.error)
            .bind(t.at_ms)
            .execute(&mut *tx)
            .await
            .map_err(JobError::database("update job"))?;
        sqlx::query(INSERT_HISTORY)
            .bind(t.job_id)
            .bind(status)
            .bind(t.attempt)
            .bind(t.at_ms)
            .bind(t.error)
            .execute(&mut *tx)
            .await
            .map_err(JobError::database("insert job history"))?;
        tx.commit().await.map_err(JobError::database("commit"))
    })
}

pub async fn load(store: &Store, job_id: &str) -> Result<Option<JobRecord>, JobError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = $1");
    on_pool!(store, |pool| sqlx::query_as::<_, JobRecord>(&sql)
        .bind(job_id)
        .fetch_optional(pool)
        .await
        .map_err(JobError::database("load job")))
}

/// The queued, running or retry-scheduled job holding `key`, if any.
pub async fn active_by_key(store: &Store, key: &str) -> Result<Option<JobRecord>, JobError> {
    let sql =
        format!("SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1 AND status IN {ACTIVE}");
    on_pool!(store, |pool| sqlx::query_as::<_, JobRecord>(&sql)
        .bind(key)
        .fetch_optional(pool)
        .await
        .map_err(JobError::database("load job by key")))
}

/// Status changes of a job, oldest first.
pub async fn history(store: &Store, job_id: &str) -> Result<Vec<HistoryEntry>, JobError> {
    let sql = "SELECT status, attempt, at_ms, error FROM job_status_history \
               WHERE job_id = $1 ORDER BY seq";
    on_pool!(store, |pool| sqlx::query_as::<_, HistoryEntry>(sql)
        .bind(job_id)
        .fetch_all(pool)
        .await
        .map_err(JobError::database("load job history")))
}

pub async fn view(store: &Store, job_id: &str) -> Result<Option<JobView>, JobError> {
    let Some(job) = load(store, job_id).await? else {
        return Ok(None);
    };
    let history = history(store, job_id).await?;
    Ok(Some(JobView { job, history }))
}

/// Jobs in `status`, most recently updated first.
pub async fn list_by_status(
    store: &Store,
    status: JobStatus,
    limit: i64,
) -> Result<Vec<JobRecord>, JobError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status = $1 ORDER BY updated_at_ms DESC LIMIT $2"
    );
    on_pool!(store, |pool| sqlx::query_as::<_, JobRecord>(&sql)
        .bind(status_name(status))
        .bind(limit)
        .fetch_all(pool)
        .await
        .map_err(JobError::database("list jobs")))
}

/// Removes a job that was never published (the API's enqueue failed).
pub async fn delete(store: &Store, job_id: &str) -> Result<(), JobError> {
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        for sql in [
            "DELETE FROM job_status_history WHERE job_id = $1",
            "DELETE FROM jobs WHERE job_id = $1",
        ] {
            sqlx::query(sql)
                .bind(job_id)
                .execute(&mut *tx)
                .await
                .map_err(JobError::database("delete job"))?;
        }
        tx.commit().await.map_err(JobError::database("commit"))
    })
}

/// Recomputes one account's `hero_pool` from `player_matches`, through
/// persist's own recompute (same SQL, same locks).
pub async fn recompute_hero_pool(store: &Store, account_id: i64) -> Result<(), JobError> {
    Ok(store.recompute_hero_pools(&[account_id]).await?)
}
