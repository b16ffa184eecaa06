-- Portfolios, their transactions, and stored responses of idempotent creates.
-- Money and quantities are NUMERIC (exact), never float.

CREATE TABLE portfolios (
    id                UUID PRIMARY KEY,
    user_id           UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name              TEXT NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    base_currency     TEXT NOT NULL DEFAULT 'usd',
    cost_basis_method TEXT NOT NULL DEFAULT 'average' CHECK (cost_basis_method IN ('average', 'fifo')),
    -- Bumped by every change; the portfolio's ETag, checked against If-Match.
    version           INTEGER NOT NULL DEFAULT 1 CHECK (version >= 1),
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Soft delete: a deleted portfolio and everything under it answer 404, and its name is free.
    deleted_at        TIMESTAMPTZ
);

-- Names are unique per owner regardless of case, among portfolios that are not deleted.
CREATE UNIQUE INDEX portfolios_user_name_key ON portfolios (user_id, lower(name))
    WHERE deleted_at IS NULL;
CREATE INDEX portfolios_user_created_idx ON portfolios (user_id, created_at, id)
    WHERE deleted_at IS NULL;

CREATE TABLE portfolio_transactions (
    id           UUID PRIMARY KEY,
    -- Creation order: breaks ties between transactions executed at the same instant.
    seq          BIGINT GENERATED ALWAYS AS IDENTITY UNIQUE,
    portfolio_id UUID NOT NULL REFERENCES portfolios (id) ON DELETE CASCADE,
    coin_id      TEXT NOT NULL REFERENCES coins (id),
    side         TEXT NOT NULL CHECK (side IN ('buy', 'sell', 'transfer_in', 'transfer_out')),
    quantity     NUMERIC NOT NULL CHECK (quantity > 0),
    price        NUMERIC NOT NULL DEFAULT 0 CHECK (price >= 0),
    fee          NUMERIC NOT NULL DEFAULT 0 CHECK (fee >= 0),
    executed_at  TIMESTAMPTZ NOT NULL,
    note         TEXT CHECK (length(note) <= 1000),
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- The ledger order of one coin in one portfolio: what valuation and the over-sell check read.
CREATE INDEX portfolio_transactions_ledger_idx
    ON portfolio_transactions (portfolio_id, coin_id, executed_at, seq);
CREATE INDEX portfolio_transactions_listing_idx
    ON portfolio_transactions (portfolio_id, executed_at, seq);

-- The first response to a create carrying an Idempotency-Key, replayed to retries for 24 h.
-- `scope` names the operation; `request_hash` covers the path and the body, so the same key
-- with a different request is recognised and refused. A create claims its key by inserting
-- the row first, in its own transaction: a concurrent retry blocks on the primary key until
-- that transaction ends, then replays what it stored. The response columns are NULL only
-- inside that transaction, so no other session ever sees them NULL. Rows older than 24 h are
-- taken over by the next request with the same key (and purged per user on each claim).
CREATE TABLE idempotency_keys (
    user_id         UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    scope           TEXT NOT NULL,
    key             TEXT NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    BYTEA NOT NULL,
    response_status SMALLINT,
    response_body   JSONB,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, scope, key)
);
