-- The caller-facing record of every job. Redis carries jobs to workers; this table is the
-- truth about them. A row is written in the same transaction as the request's own writes
-- (an outbox): `enqueued_at IS NULL` marks a job not yet handed to Redis, which the worker's
-- relay pushes, so a Redis outage delays jobs but never loses one.

CREATE TABLE jobs (
    id           UUID PRIMARY KEY,
    user_id      UUID REFERENCES users (id) ON DELETE CASCADE,   -- NULL for system jobs
    kind         TEXT NOT NULL,
    queue        TEXT NOT NULL,
    status       TEXT NOT NULL DEFAULT 'queued'
                 CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'dead')),
    attempts     INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL CHECK (max_attempts >= 1),
    payload      JSONB NOT NULL,
    result       JSONB,
    error        TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    run_after    TIMESTAMPTZ NOT NULL DEFAULT now(),
    enqueued_at  TIMESTAMPTZ,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);

CREATE INDEX jobs_user_created_idx ON jobs (user_id, created_at DESC, id DESC);
CREATE INDEX jobs_outbox_idx ON jobs (run_after) WHERE enqueued_at IS NULL AND status = 'queued';
