//! Postgres storage of coins and price history. Latest prices belong to
//! [`crate::prices`], which alone reads and writes `latest_prices` (and writes the history
//! point of each quote it records).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::PgExecutor;

use super::PricePoint;

/// Inserts coins or updates their symbol, name and rank (a `None` rank keeps the known one);
/// rows that would not change are left alone. The slices are parallel, one entry per coin,
/// each id at most once.
pub async fn upsert_coins(
    db: impl PgExecutor<'_>,
    ids: &[&str],
    symbols: &[&str],
    names: &[&str],
    ranks: &[Option<i32>],
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "INSERT INTO coins (id, symbol, name, market_cap_rank)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::int4[])
         ON CONFLICT (id) DO UPDATE
           SET symbol = EXCLUDED.symbol, name = EXCLUDED.name,
               market_cap_rank = COALESCE(EXCLUDED.market_cap_rank, coins.market_cap_rank),
               updated_at = now()
           WHERE (coins.symbol, coins.name, coins.market_cap_rank)
                 IS DISTINCT FROM (EXCLUDED.symbol, EXCLUDED.name,
                                   COALESCE(EXCLUDED.market_cap_rank, coins.market_cap_rank))",
        ids as &[&str],
        symbols as &[&str],
        names as &[&str],
        ranks as &[Option<i32>],
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stores history points for one coin (which must exist).
pub async fn save_history(
    db: impl PgExecutor<'_>,
    coin_id: &str,
    vs: &str,
    points: &[PricePoint],
    source: &str,
) -> Result<(), sqlx::Error> {
    let at: Vec<DateTime<Utc>> = points.iter().map(|p| p.at).collect();
    let prices: Vec<Decimal> = points.iter().map(|p| p.price).collect();
    sqlx::query!(
        "INSERT INTO price_history (coin_id, vs_currency, at, price, source)
         SELECT $1, $2, at, price, $3 FROM UNNEST($4::timestamptz[], $5::numeric[]) AS t(at, price)
         ON CONFLICT DO NOTHING",
        coin_id,
        vs,
        source,
        &at,
        &prices,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Stored prices of a coin in `[from, to]`, oldest first.
pub async fn history(
    db: impl PgExecutor<'_>,
    coin_id: &str,
    vs: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<PricePoint>, sqlx::Error> {
    sqlx::query_as!(
        PricePoint,
        "SELECT at, price FROM price_history
         WHERE coin_id = $1 AND vs_currency = $2 AND at BETWEEN $3 AND $4
         ORDER BY at",
        coin_id,
        vs,
        from,
        to,
    )
    .fetch_all(db)
    .await
}

/// Whether the coin is known.
pub async fn coin_exists(db: impl PgExecutor<'_>, coin_id: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM coins WHERE id = $1) AS "exists!""#,
        coin_id
    )
    .fetch_one(db)
    .await
}

/// The coins held in live portfolios, per quote currency (the portfolios' base currencies):
/// the scheduled refresh keeps their prices fresh so valuations are current.
pub async fn held_coins_by_currency(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT p.base_currency AS "currency!", array_agg(DISTINCT t.coin_id) AS "coins!"
           FROM portfolio_transactions t
           JOIN portfolios p ON p.id = t.portfolio_id
           WHERE p.deleted_at IS NULL
           GROUP BY p.base_currency"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.currency, row.coins))
        .collect())
}
