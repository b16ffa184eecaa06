-- The rescuer (worker) walks the jobs Redis should be holding: handed over, not finished.
CREATE INDEX jobs_unfinished_idx ON jobs (id)
    WHERE status IN ('queued', 'running') AND enqueued_at IS NOT NULL;
