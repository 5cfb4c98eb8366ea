//! The jobs outbox: `job_status_history` rows not yet published. Each row is
//! written in the transaction of the change it records; the relay
//! ([`super::JobTracker::flush`]) turns unpublished rows, in `seq` order, into
//! `JobStatusChanged` events (and dead letters for dead jobs), then marks them
//! published. One relay at a time (a PostgreSQL advisory lock across
//! processes, a mutex within one), so each job's events leave in its commit
//! order. At least once: a relay that stops before marking publishes again.

use schemas::{topics, DeadLetter, JobStatus, JobStatusChanged, JobType};
use sqlx::FromRow;

use super::model::{parse_job_type, parse_status};
use super::JobError;

/// Rows one relay round publishes at most.
pub(crate) const BATCH: i64 = 1_000;

/// The advisory lock (PostgreSQL) that makes one relay run at a time.
pub(crate) const RELAY_LOCK: i64 = 0x6a6f_6273_6f75_7462; // "jobsoutb"

/// Unpublished history rows with what their events need from the job.
pub(crate) const SELECT_UNPUBLISHED: &str = "SELECT h.seq, h.job_id, j.job_type, h.status, \
     h.attempt, h.at_ms, h.error, h.error_kind, h.next_run_at_ms, j.idempotency_key, \
     j.created_at_ms, CASE WHEN h.status = 'dead' THEN j.request END AS request \
     FROM job_status_history h JOIN jobs j ON j.job_id = h.job_id \
     WHERE NOT h.published ORDER BY h.seq LIMIT $1";

/// One unpublished status change.
#[derive(Debug, Clone, FromRow)]
pub(crate) struct OutboxRow {
    pub seq: i64,
    pub job_id: String,
    pub job_type: String,
    pub status: String,
    pub attempt: i32,
    pub at_ms: i64,
    pub error: Option<String>,
    pub error_kind: Option<String>,
    pub next_run_at_ms: Option<i64>,
    pub idempotency_key: Option<String>,
    pub created_at_ms: i64,
    /// The recorded request, on `dead` rows only.
    pub request: Option<Vec<u8>>,
}

impl OutboxRow {
    fn job_type(&self) -> Result<JobType, JobError> {
        parse_job_type(&self.job_type)
            .ok_or_else(|| JobError::Invalid(format!("unknown job type `{}`", self.job_type)))
    }

    fn parsed_status(&self) -> Result<JobStatus, JobError> {
        parse_status(&self.status)
            .ok_or_else(|| JobError::Invalid(format!("unknown job status `{}`", self.status)))
    }

    /// The row's `JobStatusChanged`.
    pub fn event(&self) -> Result<JobStatusChanged, JobError> {
        Ok(JobStatusChanged {
            job_id: self.job_id.clone(),
            job_type: self.job_type()?,
            status: self.parsed_status()?,
            attempt: self.attempt,
            at_ms: self.at_ms,
            error: self.error.clone(),
            next_run_at_ms: self.next_run_at_ms,
        })
    }

    /// A dead job's dead letter (none for a cancelled one: nothing failed).
    pub fn dead_letter(&self, group: &str) -> Option<DeadLetter> {
        if self.status != "dead" || self.error_kind.as_deref() == Some("cancelled") {
            return None;
        }
        let key = self.idempotency_key.as_deref().unwrap_or(&self.job_id);
        Some(DeadLetter {
            original: self.request.clone().unwrap_or_default(),
            key: Some(key.as_bytes().to_vec()),
            topic: topics::JOBS.to_string(),
            partition: None,
            offset: None,
            stream_id: None,
            consumer_group: group.to_string(),
            error_kind: self.error_kind.clone().unwrap_or_else(|| "job_dead".into()),
            error_message: format!(
                "job {} ({}) dead after {} attempts: {}",
                self.job_id,
                self.job_type,
                self.attempt,
                self.error.as_deref().unwrap_or_default()
            ),
            first_seen_ms: self.created_at_ms,
            attempts: self.attempt,
        })
    }
}

/// The newest row of each job among `rows` (which are in `seq` order).
pub(crate) fn latest_per_job(rows: &[OutboxRow]) -> Vec<&OutboxRow> {
    let mut latest: Vec<&OutboxRow> = Vec::new();
    for row in rows.iter().rev() {
        if !latest.iter().any(|seen| seen.job_id == row.job_id) {
            latest.push(row);
        }
    }
    latest
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn row(seq: i64, job_id: &str, status: &str, kind: Option<&str>) -> OutboxRow {
        OutboxRow {
            seq,
            job_id: job_id.into(),
            job_type: "refresh_player".into(),
            status: status.into(),
            attempt: 2,
            at_ms: 10,
            error: Some("boom".into()),
            error_kind: kind.map(str::to_string),
            next_run_at_ms: None,
            idempotency_key: None,
            created_at_ms: 1,
            request: Some(vec![1, 2]),
        }
    }

    #[test]
    fn dead_rows_make_dead_letters_unless_cancelled() {
        let letter = row(1, "a", "dead", Some("upstream"))
            .dead_letter("jobs")
            .unwrap();
        assert_eq!(letter.error_kind, "upstream");
        assert_eq!(letter.original, [1, 2]);
        assert!(letter.error_message.contains("dead after 2 attempts: boom"));
        assert!(row(2, "a", "dead", Some("cancelled"))
            .dead_letter("jobs")
            .is_none());
        assert!(row(3, "a", "retry_scheduled", Some("upstream"))
            .dead_letter("jobs")
            .is_none());
    }

    #[test]
    fn the_latest_row_of_each_job_wins() {
        let rows = [
            row(1, "a", "queued", None),
            row(2, "b", "queued", None),
            row(3, "a", "running", None),
        ];
        let latest: Vec<i64> = latest_per_job(&rows).iter().map(|r| r.seq).collect();
        assert_eq!(latest, [3, 2]);
    }
}
