-- Price alerts, notifications, email delivery and account tokens (issue: alerts,
-- notifications and email). Every side effect of an event is keyed by that event's id, so a
-- re-run job or a second worker writes nothing twice; the keys are constraints, not checks in code.

ALTER TABLE users ADD COLUMN email_verified BOOLEAN NOT NULL DEFAULT false;

CREATE TABLE alerts (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    coin_id           TEXT NOT NULL,
    vs_currency       TEXT NOT NULL,
    condition         TEXT NOT NULL CHECK (condition IN ('above', 'below', 'crossing', 'crossing_up',
                          'crossing_down', 'pct_change_24h_above', 'pct_change_24h_below')),
    target            NUMERIC NOT NULL,
    trigger           TEXT NOT NULL CHECK (trigger IN ('once', 'every_crossing')),
    cooldown_seconds  INTEGER CHECK (cooldown_seconds > 0),
    expires_at        TIMESTAMPTZ,
    note              TEXT CHECK (char_length(note) <= 280),
    active            BOOLEAN NOT NULL DEFAULT true,
    state             TEXT NOT NULL DEFAULT 'armed' CHECK (state IN ('armed', 'triggered', 'expired')),
    -- What the condition looked at (price, or 24 h change in percent) at the last evaluation:
    -- edge conditions fire when the value moved through the target since then.
    last_value        NUMERIC,
    last_evaluated_at TIMESTAMPTZ,
    last_triggered_at TIMESTAMPTZ,
    trigger_count     INTEGER NOT NULL DEFAULT 0 CHECK (trigger_count >= 0),
    version           INTEGER NOT NULL DEFAULT 1,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX alerts_user_idx ON alerts (user_id, created_at DESC, id DESC);
-- Evaluation reads the active alerts of the coins that moved.
CREATE INDEX alerts_watch_idx ON alerts (vs_currency, coin_id, id) WHERE active;

-- One row per firing. (alert_id, sequence) is the firing key: the nth firing of an alert can
-- be written once, whichever worker or re-delivered job gets there.
CREATE TABLE alert_firings (
    id        UUID PRIMARY KEY,   -- the event id: the notification, email and stream event key on it
    alert_id  UUID NOT NULL REFERENCES alerts (id) ON DELETE CASCADE,
    user_id   UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    sequence  INTEGER NOT NULL CHECK (sequence >= 1),
    value     NUMERIC NOT NULL,
    price     NUMERIC NOT NULL,
    fired_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (alert_id, sequence)
);

CREATE TABLE notifications (
    id          UUID PRIMARY KEY,   -- the event's id: a re-run notify job cannot write it twice
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    category    TEXT NOT NULL CHECK (category IN ('price_alerts', 'account', 'jobs')),
    kind        TEXT NOT NULL,
    title       TEXT NOT NULL,
    body        TEXT NOT NULL,
    data        JSONB NOT NULL,
    read_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX notifications_user_idx ON notifications (user_id, created_at DESC, id DESC);
CREATE INDEX notifications_unread_idx ON notifications (user_id) WHERE read_at IS NULL;

-- A user without a row has the defaults (everything on).
CREATE TABLE notification_preferences (
    user_id        UUID PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    in_app_enabled BOOLEAN NOT NULL DEFAULT true,
    email_enabled  BOOLEAN NOT NULL DEFAULT true,
    price_alerts   BOOLEAN NOT NULL DEFAULT true,
    account        BOOLEAN NOT NULL DEFAULT true,
    jobs           BOOLEAN NOT NULL DEFAULT true,
    updated_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Written when the mail server (or the outbox) accepted the message of an event: a retried or
-- re-delivered email job whose record exists sends nothing.
CREATE TABLE email_deliveries (
    event_id    UUID PRIMARY KEY,
    user_id     UUID REFERENCES users (id) ON DELETE SET NULL,
    template    TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    transport   TEXT NOT NULL CHECK (transport IN ('smtp', 'outbox')),
    sent_at     TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Single-use tokens sent by email. Only their SHA-256 is stored: the token itself exists in
-- the message alone.
CREATE TABLE account_tokens (
    token_hash  BYTEA PRIMARY KEY,
    user_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    purpose     TEXT NOT NULL CHECK (purpose IN ('verify_email', 'password_reset')),
    -- The address it was sent to: verifying proves this address, not a later one.
    email       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ NOT NULL,
    used_at     TIMESTAMPTZ,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX account_tokens_user_idx ON account_tokens (user_id, purpose);
CREATE INDEX account_tokens_expiry_idx ON account_tokens (expires_at);
