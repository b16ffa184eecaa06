//! The prices a valuation values holdings at: coins and a currency in, prices out.
//!
//! Stored prices come first (one query); the price provider is asked, in one batch and for a
//! bounded time, only for held coins still missing, and what it answers is stored for next
//! time. A provider failure leaves prices missing rather than failing the valuation, which
//! then says so (`partial`).

use std::collections::HashMap;
use std::time::Duration;

use common::market::store as market_store;
use sqlx::PgExecutor;

use super::valuation::MarketPrice;
use crate::app::AppState;
use crate::error::ApiError;

/// How long a request waits on the price provider before going on without it.
pub const PROVIDER_WAIT: Duration = Duration::from_secs(3);

/// A coin a valuation lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted<'a> {
    /// Its id.
    pub coin_id: &'a str,
    /// Whether any of it is held: only then is a missing price worth asking the provider for
    /// (a closed holding is worth 0 whatever the price).
    pub held: bool,
}

/// The latest prices of `coins` in `vs`, by coin id; coins without one are left out.
pub async fn latest(
    state: &AppState,
    coins: &[Wanted<'_>],
    vs: &str,
) -> Result<HashMap<String, MarketPrice>, ApiError> {
    let ids: Vec<&str> = coins.iter().map(|coin| coin.coin_id).collect();
    let mut prices = stored(&state.db, &ids, vs).await?;
    let missing: Vec<String> = coins
        .iter()
        .filter(|coin| coin.held && !prices.contains_key(coin.coin_id))
        .map(|coin| coin.coin_id.to_owned())
        .collect();
    if missing.is_empty() {
        return Ok(prices);
    }
    let batch = match tokio::time::timeout(PROVIDER_WAIT, state.prices.markets(&missing, vs)).await
    {
        Ok(Ok(batch)) => batch,
        Ok(Err(err)) => {
            tracing::warn!(error = %err, missing = missing.len(), "no prices for a valuation");
            return Ok(prices);
        }
        Err(_) => {
            tracing::warn!(
                missing = missing.len(),
                "price provider timed out in a valuation"
            );
            return Ok(prices);
        }
    };
    if let Err(err) =
        market_store::save_quotes(&state.db, &batch.quotes, vs, state.prices.kind().as_str()).await
    {
        tracing::warn!(error = %err, "could not store fetched prices");
    }
    for quote in batch.quotes {
        prices.insert(
            quote.id,
            MarketPrice {
                price: quote.price,
                change_24h_pct: quote.change_24h_pct,
                updated_at: quote.last_updated,
            },
        );
    }
    Ok(prices)
}

/// The latest stored prices of `coins` in `vs`, by coin id. One query.
async fn stored(
    db: impl PgExecutor<'_>,
    coins: &[&str],
    vs: &str,
) -> Result<HashMap<String, MarketPrice>, sqlx::Error> {
    let rows = sqlx::query!(
        "SELECT coin_id, price, change_24h_pct, quoted_at FROM latest_prices
         WHERE vs_currency = $1 AND coin_id = ANY($2)",
        vs,
        coins as &[&str],
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            (
                row.coin_id,
                MarketPrice {
                    price: row.price,
                    change_24h_pct: row.change_24h_pct,
                    updated_at: row.quoted_at,
                },
            )
        })
        .collect())
}
