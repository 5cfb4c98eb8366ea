-- The jobs group's status tables. Rules live in consumers/src/jobs/mod.rs.
-- A job's current state is its `jobs` row; `job_status_history` keeps every
-- transition in order (`seq`).

CREATE TABLE jobs (
    job_id           TEXT PRIMARY KEY,
    job_type         TEXT NOT NULL,                -- scout_report_player, refresh_player, ...
    subject_id       BIGINT NOT NULL,              -- account id or team id, by job type
    idempotency_key  TEXT,
    status           TEXT NOT NULL CHECK (status IN
                         ('queued', 'running', 'retry_scheduled', 'succeeded', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts     INTEGER NOT NULL CHECK (max_attempts > 0),
    run_at_ms        BIGINT NOT NULL,              -- next run, unix milliseconds
    last_error       TEXT,
    created_at_ms    BIGINT NOT NULL,
    updated_at_ms    BIGINT NOT NULL
);

-- One active job per idempotency key; a finished job frees its key.
CREATE UNIQUE INDEX jobs_active_idempotency_key ON jobs (idempotency_key)
    WHERE idempotency_key IS NOT NULL
      AND status IN ('queued', 'running', 'retry_scheduled');

CREATE INDEX jobs_status ON jobs (status, updated_at_ms DESC);

CREATE TABLE job_status_history (
    seq      BIGSERIAL PRIMARY KEY,
    job_id   TEXT NOT NULL REFERENCES jobs (job_id) ON DELETE CASCADE,
    status   TEXT NOT NULL,
    attempt  INTEGER NOT NULL,
    at_ms    BIGINT NOT NULL,
    error    TEXT
);

CREATE INDEX job_status_history_job ON job_status_history (job_id, seq);
