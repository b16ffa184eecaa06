-- Finished jobs are deleted JOB_RETENTION after they finished, oldest first, by the api's
-- housekeeping; this index finds them without reading the live ones.
CREATE INDEX jobs_finished_idx ON jobs (finished_at)
    WHERE status IN ('succeeded', 'cancelled', 'dead');
