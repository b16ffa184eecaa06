-- Job kinds are typed (`common::jobs::JobArgs`) and kept apart from queues: `kind` says which
-- handler runs a job, `queue` which Redis queue carries it (several kinds may share one).
-- `run_after` only ever repeated `created_at` (nothing scheduled jobs ahead through it), so the
-- outbox is ordered by `created_at` instead. Workers older than this migration fail their
-- outbox query (and retry) until they are replaced; no job is lost meanwhile.
DROP INDEX jobs_outbox_idx;
ALTER TABLE jobs DROP COLUMN run_after;
CREATE INDEX jobs_outbox_idx ON jobs (created_at) WHERE enqueued_at IS NULL AND status = 'queued';
