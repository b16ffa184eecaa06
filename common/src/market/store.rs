//! Postgres storage of coins, latest prices and price history, shared by the api (reads and
//! on-demand fills) and the worker (scheduled refreshes).

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, PgPool};

use super::{PricePoint, Quote};

/// A coin's latest stored price in one currency.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LatestPrice {
    /// Coin id.
    pub coin_id: String,
    /// Ticker.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Currency of the amounts.
    pub vs_currency: String,
    /// Price per unit.
    pub price: Decimal,
    /// Market capitalisation.
    pub market_cap: Option<Decimal>,
    /// Rank by market capitalisation.
    pub market_cap_rank: Option<i32>,
    /// 24-hour volume.
    pub volume_24h: Option<Decimal>,
    /// 24-hour change in percent.
    pub change_24h_pct: Option<Decimal>,
    /// Which provider the price came from.
    pub source: String,
    /// When the provider last updated it.
    pub quoted_at: DateTime<Utc>,
    /// When we fetched it.
    pub fetched_at: DateTime<Utc>,
}

/// Stores quotes: coins upserted, latest prices replaced, one history point each. One
/// transaction, so readers never see a coin's price without the coin.
pub async fn save_quotes(
    db: &PgPool,
    quotes: &[Quote],
    vs: &str,
    source: &str,
) -> Result<(), sqlx::Error> {
    if quotes.is_empty() {
        return Ok(());
    }
    let ids: Vec<&str> = quotes.iter().map(|q| q.id.as_str()).collect();
    let symbols: Vec<&str> = quotes.iter().map(|q| q.symbol.as_str()).collect();
    let names: Vec<&str> = quotes.iter().map(|q| q.name.as_str()).collect();
    let prices: Vec<Decimal> = quotes.iter().map(|q| q.price).collect();
    let caps: Vec<Option<Decimal>> = quotes.iter().map(|q| q.market_cap).collect();
    let ranks: Vec<Option<i32>> = quotes
        .iter()
        .map(|q| q.market_cap_rank.and_then(|r| i32::try_from(r).ok()))
        .collect();
    let volumes: Vec<Option<Decimal>> = quotes.iter().map(|q| q.volume_24h).collect();
    let changes: Vec<Option<Decimal>> = quotes.iter().map(|q| q.change_24h_pct).collect();
    let quoted: Vec<DateTime<Utc>> = quotes.iter().map(|q| q.last_updated).collect();

    let mut tx = db.begin().await?;
    sqlx::query!(
        "INSERT INTO coins (id, symbol, name)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[])
         ON CONFLICT (id) DO UPDATE
           SET symbol = EXCLUDED.symbol, name = EXCLUDED.name, updated_at = now()
           WHERE coins.symbol <> EXCLUDED.symbol OR coins.name <> EXCLUDED.name",
        &ids as &[&str],
        &symbols as &[&str],
        &names as &[&str],
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO latest_prices (coin_id, vs_currency, price, market_cap, market_cap_rank,
                                    volume_24h, change_24h_pct, source, quoted_at, fetched_at)
         SELECT coin_id, $2, price, cap, rank, volume, change, $3, quoted, now()
         FROM UNNEST($1::text[], $4::numeric[], $5::numeric[], $6::int4[], $7::numeric[],
                     $8::numeric[], $9::timestamptz[])
              AS t(coin_id, price, cap, rank, volume, change, quoted)
         ON CONFLICT (coin_id, vs_currency) DO UPDATE
           SET price = EXCLUDED.price, market_cap = EXCLUDED.market_cap,
               market_cap_rank = COALESCE(EXCLUDED.market_cap_rank, latest_prices.market_cap_rank),
               volume_24h = EXCLUDED.volume_24h, change_24h_pct = EXCLUDED.change_24h_pct,
               source = EXCLUDED.source, quoted_at = EXCLUDED.quoted_at,
               fetched_at = EXCLUDED.fetched_at",
        &ids as &[&str],
        vs,
        source,
        &prices,
        &caps as &[Option<Decimal>],
        &ranks as &[Option<i32>],
        &volumes as &[Option<Decimal>],
        &changes as &[Option<Decimal>],
        &quoted,
    )
    .execute(&mut *tx)
    .await?;
    sqlx::query!(
        "INSERT INTO price_history (coin_id, vs_currency, at, price, source)
         SELECT coin_id, $2, at, price, $3
         FROM UNNEST($1::text[], $4::timestamptz[], $5::numeric[]) AS t(coin_id, at, price)
         ON CONFLICT DO NOTHING",
        &ids as &[&str],
        vs,
        source,
        &quoted,
        &prices,
    )
    .execute(&mut *tx)
    .await?;
    tx.commit().await
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

/// The latest stored price of a coin.
pub async fn latest(
    db: impl PgExecutor<'_>,
    coin_id: &str,
    vs: &str,
) -> Result<Option<LatestPrice>, sqlx::Error> {
    sqlx::query_as!(
        LatestPrice,
        "SELECT p.coin_id, c.symbol, c.name, p.vs_currency, p.price, p.market_cap,
                p.market_cap_rank, p.volume_24h, p.change_24h_pct, p.source, p.quoted_at,
                p.fetched_at
         FROM latest_prices p JOIN coins c ON c.id = p.coin_id
         WHERE p.coin_id = $1 AND p.vs_currency = $2",
        coin_id,
        vs,
    )
    .fetch_optional(db)
    .await
}

/// The `limit` stored coins with the largest market capitalisation fetched since `since`.
pub async fn popular(
    db: impl PgExecutor<'_>,
    vs: &str,
    limit: i64,
    since: DateTime<Utc>,
) -> Result<Vec<LatestPrice>, sqlx::Error> {
    sqlx::query_as!(
        LatestPrice,
        "SELECT p.coin_id, c.symbol, c.name, p.vs_currency, p.price, p.market_cap,
                p.market_cap_rank, p.volume_24h, p.change_24h_pct, p.source, p.quoted_at,
                p.fetched_at
         FROM latest_prices p JOIN coins c ON c.id = p.coin_id
         WHERE p.vs_currency = $1 AND p.fetched_at >= $3 AND p.market_cap IS NOT NULL
         ORDER BY p.market_cap DESC, p.coin_id
         LIMIT $2",
        vs,
        limit,
        since,
    )
    .fetch_all(db)
    .await
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
