-- SQLite twin of postgres/0004_job_outbox.sql.

ALTER TABLE job_status_history ADD COLUMN published INTEGER NOT NULL DEFAULT 0;
UPDATE job_status_history SET published = 1;
ALTER TABLE job_status_history ADD COLUMN next_run_at_ms INTEGER;
ALTER TABLE job_status_history ADD COLUMN error_kind TEXT;
ALTER TABLE jobs ADD COLUMN last_error_kind TEXT;

CREATE INDEX job_status_history_unpublished ON job_status_history (seq) WHERE published = 0;
