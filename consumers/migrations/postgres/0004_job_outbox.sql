-- Status events leave through the history table, a transactional outbox: each
-- history row is written in the transaction of the change it records and marked
-- published once its `JobStatusChanged` (and a dead job's dead letter) is on
-- the bus. A crash in between publishes it later instead of losing it; one
-- relay at a time publishes in `seq` order, which is each job's commit order.

ALTER TABLE job_status_history ADD COLUMN published BOOLEAN NOT NULL DEFAULT FALSE;
UPDATE job_status_history SET published = TRUE;
-- What the event and the dead letter need besides the row: when a retry is due,
-- and the kind of the error (upstream, not_found, interrupted, cancelled, ...).
ALTER TABLE job_status_history ADD COLUMN next_run_at_ms BIGINT;
ALTER TABLE job_status_history ADD COLUMN error_kind TEXT;
ALTER TABLE jobs ADD COLUMN last_error_kind TEXT;

CREATE INDEX job_status_history_unpublished ON job_status_history (seq) WHERE NOT published;
