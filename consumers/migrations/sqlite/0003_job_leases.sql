-- SQLite twin of postgres/0003_job_leases.sql. SQLite has one writer at a time,
-- so a claim needs no row locks: the UPDATE itself is the lock.

ALTER TABLE jobs ADD COLUMN lease_owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_expires_at_ms INTEGER;
ALTER TABLE jobs ADD COLUMN request BLOB;
ALTER TABLE jobs ADD COLUMN ready INTEGER NOT NULL DEFAULT 1;

CREATE INDEX jobs_due ON jobs (run_at_ms) WHERE status IN ('queued', 'retry_scheduled');
CREATE INDEX jobs_leases ON jobs (lease_expires_at_ms) WHERE status = 'running';
