//! The `latest_prices` table (and the coin and history rows written with each quote). Only
//! the prices service ([`super::Prices`]) uses these queries.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use sqlx::{PgExecutor, PgPool};

use crate::market::Quote;

/// A coin's latest price in one currency, as the API answers it. Amounts are decimal strings.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
#[cfg_attr(feature = "openapi", oai(rename = "Price", example))]
pub struct LatestPrice {
    /// Coin id, e.g. `bitcoin`.
    pub coin_id: String,
    /// Ticker, e.g. `btc`.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Currency of the amounts, e.g. `usd`.
    pub vs_currency: String,
    /// Price per unit.
    #[cfg_attr(feature = "openapi", oai(serialize_with = "crate::wire::decimal"))]
    pub price: Decimal,
    /// Market capitalisation.
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub market_cap: Option<Decimal>,
    /// Rank by market capitalisation (1 = largest).
    pub market_cap_rank: Option<i32>,
    /// Volume traded over 24 hours.
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub volume_24h: Option<Decimal>,
    /// Price change over 24 hours, in percent.
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub change_24h_pct: Option<Decimal>,
    /// When the provider last updated this price.
    #[cfg_attr(feature = "openapi", oai(serialize_with = "crate::wire::timestamp"))]
    pub last_updated: DateTime<Utc>,
    /// When Coinpulse fetched it.
    #[cfg_attr(feature = "openapi", oai(serialize_with = "crate::wire::timestamp"))]
    pub fetched_at: DateTime<Utc>,
    /// Provenance: `simulated` (offline, generated prices) or `coingecko`.
    pub source: String,
    /// `true` when the provider could not be reached and this is an older stored price
    /// (`fetched_at` says how old).
    #[serde(default)]
    pub stale: bool,
}

#[cfg(feature = "openapi")]
impl poem_openapi::types::Example for LatestPrice {
    fn example() -> Self {
        let at = DateTime::<Utc>::from_timestamp(1_795_600_000, 0).unwrap_or_default();
        Self {
            coin_id: "bitcoin".into(),
            symbol: "btc".into(),
            name: "Bitcoin".into(),
            vs_currency: "usd".into(),
            price: Decimal::new(6_712_345_678, 5),
            market_cap: Some(Decimal::new(132_233_100_000_000, 2)),
            market_cap_rank: Some(1),
            volume_24h: Some(Decimal::new(2_500_000_000_000, 2)),
            change_24h_pct: Some(Decimal::new(-12_345, 4)),
            last_updated: at,
            fetched_at: at,
            source: "coingecko".into(),
            stale: false,
        }
    }
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
    // A quote's rank (when the provider gave one) also ranks the coin in catalogue searches.
    crate::market::store::upsert_coins(&mut *tx, &ids, &symbols, &names, &ranks).await?;
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

/// The `limit` stored coins with the largest market capitalisation fetched since `since`.
pub async fn popular(
    db: impl PgExecutor<'_>,
    vs: &str,
    limit: i64,
    since: DateTime<Utc>,
) -> Result<Vec<LatestPrice>, sqlx::Error> {
    sqlx::query_as!(
        LatestPrice,
        r#"SELECT p.coin_id, c.symbol, c.name, p.vs_currency, p.price, p.market_cap,
                p.market_cap_rank, p.volume_24h, p.change_24h_pct, p.quoted_at AS last_updated,
                p.fetched_at, p.source, false AS "stale!"
         FROM latest_prices p JOIN coins c ON c.id = p.coin_id
         WHERE p.vs_currency = $1 AND p.fetched_at >= $3 AND p.market_cap IS NOT NULL
         ORDER BY p.market_cap DESC, p.coin_id
         LIMIT $2"#,
        vs,
        limit,
        since,
    )
    .fetch_all(db)
    .await
}

/// The latest stored prices of `coins`.
pub async fn latest_many(
    db: impl PgExecutor<'_>,
    coins: &[String],
    vs: &str,
) -> Result<Vec<LatestPrice>, sqlx::Error> {
    sqlx::query_as!(
        LatestPrice,
        r#"SELECT p.coin_id, c.symbol, c.name, p.vs_currency, p.price, p.market_cap,
                  p.market_cap_rank, p.volume_24h, p.change_24h_pct, p.quoted_at AS last_updated,
                  p.fetched_at, p.source, false AS "stale!"
           FROM latest_prices p JOIN coins c ON c.id = p.coin_id
           WHERE p.coin_id = ANY($1) AND p.vs_currency = $2"#,
        coins,
        vs,
    )
    .fetch_all(db)
    .await
}
