//! The `jobs` and `job_status_history` tables, on either backend. The SQL is
//! shared: sqlx binds `$n` on SQLite too.

use std::collections::HashSet;

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

pub(crate) use on_pool;

pub(crate) const JOB_COLUMNS: &str = "job_id, job_type, subject_id, idempotency_key, status, \
     attempts, max_attempts, run_at_ms, last_error, created_at_ms, updated_at_ms, lease_owner, \
     lease_expires_at_ms, ready, last_error_kind";

const INSERT_COLUMNS: &str = "job_id, job_type, subject_id, idempotency_key, status, \
     attempts, max_attempts, run_at_ms, last_error, created_at_ms, updated_at_ms, request, ready";

const ACTIVE: &str = "('queued', 'running', 'retry_scheduled')";

/// Rows per multi-row insert: 13 binds each stays under SQLite's and
/// PostgreSQL's bind limits.
const INSERT_CHUNK: usize = 1_000;

/// Inserts queued jobs (not ready: no worker claims them before
/// [`mark_ready`]) with their first history entries, in one transaction,
/// skipping any whose id exists or whose idempotency key an active job
/// holds (also one earlier in `jobs`). Returns the ids inserted.
pub async fn insert_queued(
    store: &Store,
    jobs: &[(JobRecord, Vec<u8>)],
) -> Result<HashSet<String>, JobError> {
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let mut inserted = HashSet::new();
        for chunk in jobs.chunks(INSERT_CHUNK) {
            let mut query =
                sqlx::QueryBuilder::new(format!("INSERT INTO jobs ({INSERT_COLUMNS}) "));
            query.push_values(chunk, |mut row, (job, request)| {
                row.push_bind(&job.job_id)
                    .push_bind(&job.job_type)
                    .push_bind(job.subject_id)
                    .push_bind(&job.idempotency_key)
                    .push_bind(&job.status)
                    .push_bind(job.attempts)
                    .push_bind(job.max_attempts)
                    .push_bind(job.run_at_ms)
                    .push_bind(&job.last_error)
                    .push_bind(job.created_at_ms)
                    .push_bind(job.updated_at_ms)
                    .push_bind(request.as_slice())
                    .push_bind(false);
            });
            query.push(" ON CONFLICT DO NOTHING RETURNING job_id");
            let ids: Vec<String> = query
                .build_query_scalar()
                .fetch_all(&mut *tx)
                .await
                .map_err(JobError::database("insert jobs"))?;
            let new: Vec<&JobRecord> = chunk
                .iter()
                .map(|(job, _)| job)
                .filter(|job| ids.contains(&job.job_id))
                .collect();
            if !new.is_empty() {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO job_status_history (job_id, status, attempt, at_ms, error) ",
                );
                query.push_values(new, |mut row, job| {
                    row.push_bind(&job.job_id)
                        .push_bind(&job.status)
                        .push_bind(job.attempts)
                        .push_bind(job.created_at_ms)
                        .push_bind(None::<String>);
                });
                query
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(JobError::database("insert job history"))?;
            }
            inserted.extend(ids);
        }
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(inserted)
    })
}

/// Lets workers claim these jobs: their `queued` events are out.
pub async fn mark_ready(store: &Store, job_ids: &[&str]) -> Result<(), JobError> {
    if job_ids.is_empty() {
        return Ok(());
    }
    on_pool!(store, |pool| {
        let mut query = sqlx::QueryBuilder::new("UPDATE jobs SET ready = TRUE WHERE job_id IN (");
        let mut ids = query.separated(", ");
        for id in job_ids {
            ids.push_bind(*id);
        }
        query.push(")");
        query
            .build()
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(JobError::database("mark jobs ready"))
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

/// The views of `job_ids` (those that exist), in two queries.
pub async fn views(store: &Store, job_ids: &[&str]) -> Result<Vec<JobView>, JobError> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    on_pool!(store, |pool| {
        let mut query =
            sqlx::QueryBuilder::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id IN ("));
        let mut ids = query.separated(", ");
        for id in job_ids {
            ids.push_bind(*id);
        }
        query.push(")");
        let jobs: Vec<JobRecord> = query
            .build_query_as()
            .fetch_all(pool)
            .await
            .map_err(JobError::database("load jobs"))?;
        let mut query = sqlx::QueryBuilder::new(
            "SELECT job_id, status, attempt, at_ms, error FROM job_status_history WHERE job_id IN (",
        );
        let mut ids = query.separated(", ");
        for id in job_ids {
            ids.push_bind(*id);
        }
        query.push(") ORDER BY job_id, seq");
        let rows: Vec<(String, String, i32, i64, Option<String>)> = query
            .build_query_as()
            .fetch_all(pool)
            .await
            .map_err(JobError::database("load job history"))?;
        let mut histories: std::collections::HashMap<String, Vec<HistoryEntry>> =
            std::collections::HashMap::new();
        for (job_id, status, attempt, at_ms, error) in rows {
            histories.entry(job_id).or_default().push(HistoryEntry {
                status,
                attempt,
                at_ms,
                error,
            });
        }
        Ok(jobs
            .into_iter()
            .map(|job| JobView {
                history: histories.remove(&job.job_id).unwrap_or_default(),
                job,
            })
            .collect())
    })
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
