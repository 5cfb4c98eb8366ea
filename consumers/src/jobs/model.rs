//! A job as the status tables, the Redis mirror and the API see it.

use schemas::{JobRequested, JobStatus, JobType};
use serde::{Deserialize, Serialize};
use sqlx::FromRow;

/// `jobs.job_type` and the `job_type` metric label.
pub fn job_type_name(job_type: JobType) -> &'static str {
    match job_type {
        JobType::ScoutReportPlayer => "scout_report_player",
        JobType::ScoutReportTeam => "scout_report_team",
        JobType::RefreshPlayer => "refresh_player",
        JobType::RecomputeHeroPool => "recompute_hero_pool",
        JobType::ParseMatch => "parse_match",
    }
}

pub fn parse_job_type(name: &str) -> Option<JobType> {
    [
        JobType::ScoutReportPlayer,
        JobType::ScoutReportTeam,
        JobType::RefreshPlayer,
        JobType::RecomputeHeroPool,
        JobType::ParseMatch,
    ]
    .into_iter()
    .find(|t| job_type_name(*t) == name)
}

/// `jobs.status` and the `status` metric label.
pub fn status_name(status: JobStatus) -> &'static str {
    match status {
        JobStatus::Queued => "queued",
        JobStatus::Running => "running",
        JobStatus::Succeeded => "succeeded",
        JobStatus::RetryScheduled => "retry_scheduled",
        JobStatus::Dead => "dead",
    }
}

pub fn parse_status(name: &str) -> Option<JobStatus> {
    [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::RetryScheduled,
        JobStatus::Dead,
    ]
    .into_iter()
    .find(|s| status_name(*s) == name)
}

/// Succeeded and dead jobs never run again.
pub fn is_terminal(status: JobStatus) -> bool {
    matches!(status, JobStatus::Succeeded | JobStatus::Dead)
}

/// One `jobs` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct JobRecord {
    pub job_id: String,
    pub job_type: String,
    pub subject_id: i64,
    pub idempotency_key: Option<String>,
    pub status: String,
    /// Attempts started so far (a crashed one included).
    pub attempts: i32,
    pub max_attempts: i32,
    pub run_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// The worker running it, while `running`.
    #[serde(default)]
    pub lease_owner: Option<String>,
    /// When that worker's lease runs out unless renewed.
    #[serde(default)]
    pub lease_expires_at_ms: Option<i64>,
    /// False until its `queued` event is out; only ready jobs are claimed.
    #[serde(default)]
    pub ready: bool,
    /// Kind of `last_error`: `upstream`, `not_found`, `interrupted`,
    /// `released`, `cancelled`, ...
    #[serde(default)]
    pub last_error_kind: Option<String>,
}

impl JobRecord {
    /// A new queued job for `request`, with `max_attempts` already resolved.
    pub fn queued(request: &JobRequested, max_attempts: u32, now_ms: i64) -> Self {
        Self {
            job_id: request.job_id.clone(),
            job_type: job_type_name(request.job_type).to_string(),
            subject_id: request.subject_id,
            idempotency_key: request.idempotency_key.clone(),
            status: status_name(JobStatus::Queued).to_string(),
            attempts: 0,
            max_attempts: max_attempts.min(i32::MAX as u32) as i32,
            run_at_ms: request.run_at_ms.unwrap_or(now_ms),
            last_error: None,
            created_at_ms: now_ms,
            updated_at_ms: now_ms,
            lease_owner: None,
            lease_expires_at_ms: None,
            ready: false,
            last_error_kind: None,
        }
    }

    pub fn status(&self) -> Option<JobStatus> {
        parse_status(&self.status)
    }

    pub fn job_type(&self) -> Option<JobType> {
        parse_job_type(&self.job_type)
    }
}

/// One `job_status_history` row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, FromRow)]
pub struct HistoryEntry {
    pub status: String,
    pub attempt: i32,
    pub at_ms: i64,
    pub error: Option<String>,
}

/// A job with its history: the `job:{id}` mirror and `GET /jobs/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobView {
    #[serde(flatten)]
    pub job: JobRecord,
    pub history: Vec<HistoryEntry>,
}

impl JobView {
    /// Statuses in order, e.g. `["queued", "running", "succeeded"]`.
    pub fn statuses(&self) -> Vec<&str> {
        self.history.iter().map(|h| h.status.as_str()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for name in [
            "scout_report_player",
            "scout_report_team",
            "refresh_player",
            "recompute_hero_pool",
            "parse_match",
        ] {
            let job_type = parse_job_type(name).expect(name);
            assert_eq!(job_type_name(job_type), name);
        }
        for name in ["queued", "running", "succeeded", "retry_scheduled", "dead"] {
            let status = parse_status(name).expect(name);
            assert_eq!(status_name(status), name);
        }
        assert_eq!(parse_status("Queued"), None);
    }
}
