-- Jobs run from this table by a leased worker pool (consumers/src/jobs/worker.rs):
-- a worker claims due jobs with FOR UPDATE SKIP LOCKED, holds a lease it renews
-- while they run, and a job whose lease expired is taken back (its worker died).

ALTER TABLE jobs ADD COLUMN lease_owner TEXT;                 -- worker id while running
ALTER TABLE jobs ADD COLUMN lease_expires_at_ms BIGINT;       -- unix milliseconds
-- The request as recorded (Avro single-object), for the dead letter of a dead job.
ALTER TABLE jobs ADD COLUMN request BYTEA;
-- False from insert until the job's `queued` status event is published, so no
-- worker announces `running` before it; rows from before this migration are ready.
ALTER TABLE jobs ADD COLUMN ready BOOLEAN NOT NULL DEFAULT TRUE;

-- What the pool polls: due jobs, and running jobs by lease expiry.
CREATE INDEX jobs_due ON jobs (run_at_ms) WHERE status IN ('queued', 'retry_scheduled');
CREATE INDEX jobs_leases ON jobs (lease_expires_at_ms) WHERE status = 'running';
