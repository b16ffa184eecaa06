-- The latest price of each coin in each currency per day, the day ending at midnight UTC
-- (`day_end`: the price history's latest point in (day_end − 1 day, day_end]). A daily
-- series over a year reads 366 rows per coin instead of probing the full history once per
-- day; kept by a trigger, so every writer of price_history keeps it without knowing.
CREATE TABLE price_daily (
    coin_id      TEXT NOT NULL REFERENCES coins (id) ON DELETE CASCADE,
    vs_currency  TEXT NOT NULL,
    day_end      TIMESTAMPTZ NOT NULL,
    at           TIMESTAMPTZ NOT NULL,
    price        NUMERIC NOT NULL CHECK (price >= 0),
    PRIMARY KEY (coin_id, vs_currency, day_end)
);

CREATE FUNCTION price_daily_day_end(at TIMESTAMPTZ) RETURNS TIMESTAMPTZ
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN date_trunc('day', (at - interval '1 microsecond') AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
           + interval '1 day';

CREATE FUNCTION price_daily_keep() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO price_daily (coin_id, vs_currency, day_end, at, price)
    VALUES (NEW.coin_id, NEW.vs_currency, price_daily_day_end(NEW.at), NEW.at, NEW.price)
    ON CONFLICT (coin_id, vs_currency, day_end) DO UPDATE
        SET at = EXCLUDED.at, price = EXCLUDED.price
        WHERE price_daily.at < EXCLUDED.at;
    RETURN NULL;
END;
$$;

CREATE TRIGGER price_daily_keep AFTER INSERT ON price_history
    FOR EACH ROW EXECUTE FUNCTION price_daily_keep();

INSERT INTO price_daily (coin_id, vs_currency, day_end, at, price)
SELECT DISTINCT ON (coin_id, vs_currency, price_daily_day_end(at))
       coin_id, vs_currency, price_daily_day_end(at), at, price
FROM price_history
ORDER BY coin_id, vs_currency, price_daily_day_end(at), at DESC;
