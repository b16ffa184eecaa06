-- Progress of a running job (`done` of `total` units, e.g. rows or coins), reported by its
-- handler; kept after the job ends. NULL: the job never reported any.
ALTER TABLE jobs
    ADD COLUMN progress_done  BIGINT CHECK (progress_done >= 0),
    ADD COLUMN progress_total BIGINT CHECK (progress_total >= 0),
    ADD CONSTRAINT jobs_progress_within_total CHECK (progress_done <= progress_total);
