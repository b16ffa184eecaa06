-- Queue operations for administrators: job search, retries, discards, paused queues, and an
-- audit log of every operator action.

-- Each failed attempt's error, oldest first (the latest 20), so an operator sees a job's
-- history and not only its last failure. `error` stays the latest one.
ALTER TABLE jobs ADD COLUMN errors JSONB NOT NULL DEFAULT '[]';

-- Operators list jobs by status (dead, failed, ...) newest first, optionally by queue.
CREATE INDEX jobs_status_created_idx ON jobs (status, created_at DESC, id DESC);

-- Paused queues: the record. Workers read a flag in Redis (the claim script checks it); the
-- rescuer sets that flag from these rows, so a Redis that lost its data stays paused.
CREATE TABLE queue_pauses (
    queue      TEXT PRIMARY KEY,
    paused_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    paused_by  UUID REFERENCES users (id) ON DELETE SET NULL,
    reason     TEXT
);

-- Who did what to which jobs, queues or accounts, and how many rows it touched. The actor's
-- email is copied so an entry still names its author after the account is deleted.
CREATE TABLE audit_log (
    id           UUID PRIMARY KEY,
    actor_id     UUID REFERENCES users (id) ON DELETE SET NULL,
    actor_email  TEXT NOT NULL,
    action       TEXT NOT NULL,
    target       TEXT NOT NULL,
    affected     BIGINT NOT NULL DEFAULT 0 CHECK (affected >= 0),
    details      JSONB NOT NULL DEFAULT '{}',
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX audit_log_created_idx ON audit_log (created_at DESC, id DESC);
CREATE INDEX audit_log_action_idx ON audit_log (action, created_at DESC);
