-- The jobs group's status tables, SQLite twin of postgres/0002_jobs.sql.
-- Rules live in consumers/src/jobs/mod.rs.

CREATE TABLE jobs (
    job_id           TEXT PRIMARY KEY,
    job_type         TEXT NOT NULL,
    subject_id       INTEGER NOT NULL,
    idempotency_key  TEXT,
    status           TEXT NOT NULL CHECK (status IN
                         ('queued', 'running', 'retry_scheduled', 'succeeded', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at_ms        INTEGER NOT NULL,
    last_error       TEXT,
    created_at_ms    INTEGER NOT NULL,
    updated_at_ms    INTEGER NOT NULL
) STRICT;

-- One active job per idempotency key; a finished job frees its key.
CREATE UNIQUE INDEX jobs_active_idempotency_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL
      AND status IN ('queued', 'running', 'retry_scheduled');

CREATE INDEX jobs_status ON jobs (status, updated_at_ms DESC);

CREATE TABLE job_status_history (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    job_id   TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    status   TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at_ms    INTEGER NOT NULL,
    error    TEXT
) STRICT;

CREATE INDEX job_status_history_job ON job_status_history (job_id, seq);
