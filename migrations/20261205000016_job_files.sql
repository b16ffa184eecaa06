-- Files that belong to a job: what an import job reads (`upload`, stored with the job when it is
-- accepted) and what an export job writes (`download`, served by `GET /jobs/{id}/download`).
-- Redis only carries the job's small arguments; the file stays here, in the job's own rows.
CREATE TABLE job_files (
    job_id      UUID NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('upload', 'download')),
    media_type  TEXT NOT NULL,
    content     BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- After this the content is deleted (housekeeping) and a download answers 410.
    expires_at  TIMESTAMPTZ NOT NULL,
    -- An upload's rows were added to the portfolio, with the import's result (both set in the
    -- transaction that added them): a re-run of the job finds them and adds nothing again.
    applied_at     TIMESTAMPTZ,
    applied_result JSONB,
    PRIMARY KEY (job_id, purpose)
);

CREATE INDEX job_files_expiry_idx ON job_files (expires_at);
