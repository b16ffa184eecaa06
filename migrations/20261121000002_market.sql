-- Market data: coins, their latest prices and price history. Money is NUMERIC, never float.

CREATE TABLE coins (
    id              TEXT PRIMARY KEY,          -- the provider's id, e.g. 'bitcoin'
    symbol          TEXT NOT NULL,
    name            TEXT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE latest_prices (
    coin_id         TEXT NOT NULL REFERENCES coins (id) ON DELETE CASCADE,
    vs_currency     TEXT NOT NULL,
    price           NUMERIC NOT NULL CHECK (price >= 0),
    market_cap      NUMERIC,
    market_cap_rank INTEGER,
    volume_24h      NUMERIC,
    change_24h_pct  NUMERIC,
    source          TEXT NOT NULL,             -- provenance: 'simulated' or 'coingecko'
    quoted_at       TIMESTAMPTZ NOT NULL,      -- when the provider last updated the quote
    fetched_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (coin_id, vs_currency)
);

CREATE INDEX latest_prices_popular_idx ON latest_prices (vs_currency, market_cap DESC NULLS LAST);

CREATE TABLE price_history (
    coin_id         TEXT NOT NULL REFERENCES coins (id) ON DELETE CASCADE,
    vs_currency     TEXT NOT NULL,
    at              TIMESTAMPTZ NOT NULL,
    price           NUMERIC NOT NULL CHECK (price >= 0),
    source          TEXT NOT NULL,
    PRIMARY KEY (coin_id, vs_currency, at)
);
