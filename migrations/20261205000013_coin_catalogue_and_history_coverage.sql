-- Coin discovery and complete price history.
--
-- `coins` becomes the provider's catalogue (synced on demand, at most daily), searchable by
-- prefix of id, symbol or name in any case; its rank comes from the latest quotes.
ALTER TABLE coins ADD COLUMN market_cap_rank INTEGER CHECK (market_cap_rank > 0);

CREATE INDEX coins_id_prefix_idx ON coins (lower(id) text_pattern_ops);
CREATE INDEX coins_symbol_prefix_idx ON coins (lower(symbol) text_pattern_ops);
CREATE INDEX coins_name_prefix_idx ON coins (lower(name) text_pattern_ops);

-- When each provider's catalogue (coins and quote currencies) was last read.
CREATE TABLE market_catalogues (
    provider        TEXT PRIMARY KEY,
    currencies      TEXT[] NOT NULL,
    synced_at       TIMESTAMPTZ NOT NULL
);

-- Spans of history already asked of the provider at a resolution, so a span the provider has
-- no data for (before a coin was listed) is asked once, not on every query.
CREATE TABLE price_history_coverage (
    coin_id         TEXT NOT NULL REFERENCES coins (id) ON DELETE CASCADE,
    vs_currency     TEXT NOT NULL,
    resolution_secs INTEGER NOT NULL CHECK (resolution_secs > 0),
    from_at         TIMESTAMPTZ NOT NULL,
    to_at           TIMESTAMPTZ NOT NULL CHECK (to_at >= from_at),
    fetched_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE INDEX price_history_coverage_idx
    ON price_history_coverage (coin_id, vs_currency, resolution_secs, from_at);
