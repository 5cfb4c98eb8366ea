//! The worker pool's SQL: claim due jobs under a lease, renew it, finish
//! jobs, take back jobs whose lease ran out, release at shutdown. Each call
//! is one transaction that updates the rows and appends their history; it
//! returns the rows as they are after it.

use sqlx::QueryBuilder;

use super::model::JobRecord;
use super::store::{on_pool, JOB_COLUMNS};
use super::JobError;
use crate::persist::Store;

/// How a worker's attempt ended, as it goes into the row.
#[derive(Debug, Clone)]
pub struct Finish {
    pub job_id: String,
    /// The attempt the lease was claimed for: a row that moved on since (its
    /// lease was taken back) is left alone.
    pub attempt: i32,
    /// `succeeded`, `retry_scheduled` or `dead`.
    pub status: &'static str,
    pub run_at_ms: i64,
    pub error: Option<String>,
    /// The error's kind (`upstream`, `not_found`, ...), for the dead letter.
    pub error_kind: Option<&'static str>,
}

/// Row locks on PostgreSQL; SQLite's single writer needs none.
fn skip_locked(store: &Store) -> &'static str {
    match store {
        Store::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        Store::Sqlite(_) => "",
    }
}

/// Claims up to `limit` ready jobs due by `now_ms`, oldest due first: each
/// becomes `running` for its next attempt, leased to `owner` until
/// `now_ms + lease_ms`.
pub async fn claim(
    store: &Store,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
    limit: i64,
) -> Result<Vec<JobRecord>, JobError> {
    let sql = format!(
        "UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_owner = $1, \
         lease_expires_at_ms = $2, updated_at_ms = $3 \
         WHERE job_id IN (SELECT job_id FROM jobs \
             WHERE status IN ('queued', 'retry_scheduled') AND ready AND run_at_ms <= $3 \
             ORDER BY run_at_ms LIMIT $4 {}) \
         RETURNING {JOB_COLUMNS}",
        skip_locked(store)
    );
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let claimed: Vec<JobRecord> = sqlx::query_as(&sql)
            .bind(owner)
            .bind(now_ms + lease_ms)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(JobError::database("claim jobs"))?;
        tx.insert_history(&claimed).await?;
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(claimed)
    })
}

/// Extends `owner`'s leases; returns the ids it still holds (a job whose
/// lease was taken back is not among them).
pub async fn renew(
    store: &Store,
    owner: &str,
    now_ms: i64,
    lease_ms: i64,
) -> Result<Vec<String>, JobError> {
    let sql = "UPDATE jobs SET lease_expires_at_ms = $2 \
               WHERE lease_owner = $1 AND status = 'running' RETURNING job_id";
    on_pool!(store, |pool| sqlx::query_scalar(sql)
        .bind(owner)
        .bind(now_ms + lease_ms)
        .fetch_all(pool)
        .await
        .map_err(JobError::database("renew leases")))
}

/// Records how attempts ended, for jobs `owner` still holds at that
/// attempt. Returns the rows it updated; a job missing from them was taken
/// back meanwhile.
pub async fn finish(
    store: &Store,
    owner: &str,
    finishes: &[Finish],
    now_ms: i64,
) -> Result<Vec<JobRecord>, JobError> {
    match store {
        Store::Postgres(pool) => {
            let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
            let finished = finish_all_at_once(&mut tx, owner, finishes, now_ms).await?;
            tx.insert_history(&finished).await?;
            tx.commit().await.map_err(JobError::database("commit"))?;
            Ok(finished)
        }
        Store::Sqlite(pool) => {
            let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
            let mut finished = Vec::with_capacity(finishes.len());
            for finish in finishes {
                let row: Option<JobRecord> = sqlx::query_as(&finish_one_sql())
                    .bind(&finish.job_id)
                    .bind(owner)
                    .bind(finish.status)
                    .bind(finish.run_at_ms)
                    .bind(finish.error.as_deref())
                    .bind(now_ms)
                    .bind(finish.attempt)
                    .bind(finish.error_kind)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(JobError::database("finish job"))?;
                finished.extend(row);
            }
            tx.insert_history(&finished).await?;
            tx.commit().await.map_err(JobError::database("commit"))?;
            Ok(finished)
        }
    }
}

fn finish_one_sql() -> String {
    format!(
        "UPDATE jobs SET status = $3, run_at_ms = $4, last_error = COALESCE($5, last_error), \
         last_error_kind = COALESCE($8, last_error_kind), \
         lease_owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = $6 \
         WHERE job_id = $1 AND lease_owner = $2 AND status = 'running' AND attempts = $7 \
         RETURNING {JOB_COLUMNS}"
    )
}

/// PostgreSQL: every finish in one statement, from column arrays.
async fn finish_all_at_once(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    owner: &str,
    finishes: &[Finish],
    now_ms: i64,
) -> Result<Vec<JobRecord>, JobError> {
    let returning = JOB_COLUMNS
        .split(", ")
        .map(|column| format!("jobs.{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "UPDATE jobs SET status = f.status, run_at_ms = f.run_at_ms, \
             last_error = COALESCE(f.error, jobs.last_error), \
             last_error_kind = COALESCE(f.error_kind, jobs.last_error_kind), lease_owner = NULL, \
             lease_expires_at_ms = NULL, updated_at_ms = $6 \
         FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::int[], $8::text[]) \
             AS f(job_id, status, run_at_ms, error, attempt, error_kind) \
         WHERE jobs.job_id = f.job_id AND jobs.lease_owner = $7 AND jobs.status = 'running' \
             AND jobs.attempts = f.attempt \
         RETURNING {returning}"
    );
    let ids: Vec<&str> = finishes.iter().map(|f| f.job_id.as_str()).collect();
    let statuses: Vec<&str> = finishes.iter().map(|f| f.status).collect();
    let run_at: Vec<i64> = finishes.iter().map(|f| f.run_at_ms).collect();
    let errors: Vec<Option<&str>> = finishes.iter().map(|f| f.error.as_deref()).collect();
    let attempts: Vec<i32> = finishes.iter().map(|f| f.attempt).collect();
    let kinds: Vec<Option<&str>> = finishes.iter().map(|f| f.error_kind).collect();
    sqlx::query_as(&sql)
        .bind(ids)
        .bind(statuses)
        .bind(run_at)
        .bind(errors)
        .bind(attempts)
        .bind(now_ms)
        .bind(owner)
        .bind(kinds)
        .fetch_all(&mut **tx)
        .await
        .map_err(JobError::database("finish jobs"))
}

/// Takes back up to `limit` running jobs whose lease ran out by `now_ms`:
/// their worker died (or lost the database) mid-attempt. That attempt counts:
/// the job is due again at once, or `dead` if it was the last.
pub async fn take_back_expired(
    store: &Store,
    now_ms: i64,
    limit: i64,
) -> Result<Vec<JobRecord>, JobError> {
    let sql = format!(
        "UPDATE jobs SET \
             status = CASE WHEN attempts >= max_attempts THEN 'dead' ELSE 'retry_scheduled' END, \
             last_error = 'lease expired: worker ' || COALESCE(lease_owner, '?') \
                 || ' stopped during attempt ' || attempts, last_error_kind = 'interrupted', \
             run_at_ms = $1, lease_owner = NULL, lease_expires_at_ms = NULL, updated_at_ms = $1 \
         WHERE job_id IN (SELECT job_id FROM jobs \
             WHERE status = 'running' AND lease_expires_at_ms < $1 LIMIT $2 {}) \
         RETURNING {JOB_COLUMNS}",
        skip_locked(store)
    );
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let taken: Vec<JobRecord> = sqlx::query_as(&sql)
            .bind(now_ms)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await
            .map_err(JobError::database("take back expired leases"))?;
        tx.insert_history(&taken).await?;
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(taken)
    })
}

/// Hands back jobs `owner` stopped at shutdown: due again at once, and the
/// interrupted attempt does not count (the job did not fail).
pub async fn release(
    store: &Store,
    owner: &str,
    job_ids: &[String],
    now_ms: i64,
) -> Result<Vec<JobRecord>, JobError> {
    if job_ids.is_empty() {
        return Ok(Vec::new());
    }
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let mut query = QueryBuilder::new(
            "UPDATE jobs SET status = 'retry_scheduled', attempts = attempts - 1, \
             last_error = 'released by worker ' || lease_owner || ' at shutdown', \
             last_error_kind = 'released', run_at_ms = ",
        );
        query.push_bind(now_ms);
        query.push(", updated_at_ms = ");
        query.push_bind(now_ms);
        query.push(", lease_owner = NULL, lease_expires_at_ms = NULL WHERE status = 'running' AND lease_owner = ");
        query.push_bind(owner);
        query.push(" AND job_id IN (");
        let mut ids = query.separated(", ");
        for id in job_ids {
            ids.push_bind(id);
        }
        query.push(format!(") RETURNING {JOB_COLUMNS}"));
        let released: Vec<JobRecord> = query
            .build_query_as()
            .fetch_all(&mut *tx)
            .await
            .map_err(JobError::database("release jobs"))?;
        tx.insert_history(&released).await?;
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(released)
    })
}

/// Cancels an active job: it becomes `dead` with `reason` (no dead letter:
/// nothing failed). A running one loses its lease, so its worker stops it at
/// its next renewal. `None` when the job is not active (or unknown).
pub async fn cancel(
    store: &Store,
    job_id: &str,
    reason: &str,
    now_ms: i64,
) -> Result<Option<JobRecord>, JobError> {
    let sql = format!(
        "UPDATE jobs SET status = 'dead', last_error = $2, last_error_kind = 'cancelled', \
         lease_owner = NULL, \
         lease_expires_at_ms = NULL, updated_at_ms = $3 \
         WHERE job_id = $1 AND status IN ('queued', 'running', 'retry_scheduled') \
         RETURNING {JOB_COLUMNS}"
    );
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let cancelled: Option<JobRecord> = sqlx::query_as(&sql)
            .bind(job_id)
            .bind(reason)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(JobError::database("cancel job"))?;
        tx.insert_history(cancelled.as_slice()).await?;
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(cancelled)
    })
}

/// Gives a dead job a fresh set of attempts: `queued`, due now. `None` when
/// the job is not dead (or unknown); an error of kind `database` when an
/// active job now holds its idempotency key.
pub async fn retry_dead(
    store: &Store,
    job_id: &str,
    now_ms: i64,
) -> Result<Option<JobRecord>, JobError> {
    let sql = format!(
        "UPDATE jobs SET status = 'queued', attempts = 0, run_at_ms = $2, updated_at_ms = $2, \
         ready = TRUE WHERE job_id = $1 AND status = 'dead' RETURNING {JOB_COLUMNS}"
    );
    on_pool!(store, |pool| {
        let mut tx = pool.begin().await.map_err(JobError::database("begin"))?;
        let retried: Option<JobRecord> = sqlx::query_as(&sql)
            .bind(job_id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(JobError::database("retry job"))?;
        tx.insert_history(retried.as_slice()).await?;
        tx.commit().await.map_err(JobError::database("commit"))?;
        Ok(retried)
    })
}

/// History rows of a job after `after_seq`, oldest first, with their `seq`.
pub async fn history_after(
    store: &Store,
    job_id: &str,
    after_seq: i64,
) -> Result<Vec<(i64, String, i32, i64, Option<String>)>, JobError> {
    let sql = "SELECT seq, status, attempt, at_ms, error FROM job_status_history \
               WHERE job_id = $1 AND seq > $2 ORDER BY seq";
    on_pool!(store, |pool| sqlx::query_as(sql)
        .bind(job_id)
        .bind(after_seq)
        .fetch_all(pool)
        .await
        .map_err(JobError::database("load job history")))
}

/// One history row per updated job, as the row now stands; the error only
/// where the status carries one.
macro_rules! insert_history_on {
    ($tx:expr, $rows:expr) => {{
        let rows: &[JobRecord] = $rows;
        if rows.is_empty() {
            return Ok(());
        }
        let mut query = QueryBuilder::new(
            "INSERT INTO job_status_history \
             (job_id, status, attempt, at_ms, error, error_kind, next_run_at_ms) ",
        );
        query.push_values(rows, |mut row, job| {
            let failed = matches!(job.status.as_str(), "retry_scheduled" | "dead");
            let error = failed.then_some(job.last_error.as_deref()).flatten();
            let kind = failed.then_some(job.last_error_kind.as_deref()).flatten();
            let next_run = (job.status == "retry_scheduled").then_some(job.run_at_ms);
            row.push_bind(&job.job_id)
                .push_bind(&job.status)
                .push_bind(job.attempts)
                .push_bind(job.updated_at_ms)
                .push_bind(error)
                .push_bind(kind)
                .push_bind(next_run);
        });
        query
            .build()
            .execute(&mut **$tx)
            .await
            .map(|_| ())
            .map_err(JobError::database("insert job history"))
    }};
}

trait HistoryTx {
    async fn insert_history(&mut self, rows: &[JobRecord]) -> Result<(), JobError>;
}

impl HistoryTx for sqlx::Transaction<'_, sqlx::Postgres> {
    async fn insert_history(&mut self, rows: &[JobRecord]) -> Result<(), JobError> {
        insert_history_on!(self, rows)
    }
}

impl HistoryTx for sqlx::Transaction<'_, sqlx::Sqlite> {
    async fn insert_history(&mut self, rows: &[JobRecord]) -> Result<(), JobError> {
        insert_history_on!(self, rows)
    }
}
