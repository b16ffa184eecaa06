//! The prices a valuation values holdings at: coins and a currency in, prices out.
//!
//! Held coins get the prices service's latest price (cache, fresh storage, then one batched
//! provider call within `PRICE_PROVIDER_WAIT`, else the stored price marked stale); closed
//! holdings, worth 0 at any price, get whatever is stored, without asking the provider. A
//! provider failure leaves prices missing rather than failing the valuation, which then says
//! so (`partial`).

use std::collections::HashMap;

use common::prices::{LatestPrice, PriceError};

use super::valuation::MarketPrice;
use crate::app::AppState;
use crate::error::ApiError;

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
    let (held, closed): (Vec<&Wanted>, Vec<&Wanted>) = coins.iter().partition(|coin| coin.held);
    let ids = |coins: Vec<&Wanted>| -> Vec<String> {
        coins.iter().map(|coin| coin.coin_id.to_owned()).collect()
    };
    let mut prices = match state.prices.latest_many(&ids(held), vs).await {
        Ok(found) => found.prices,
        Err(PriceError::Database(err)) => return Err(err.into()),
        Err(err) => {
            tracing::warn!(error = %err, "no prices for a valuation");
            HashMap::new()
        }
    };
    match state.prices.stored(&ids(closed), vs).await {
        Ok(stored) => prices.extend(stored),
        Err(PriceError::Database(err)) => return Err(err.into()),
        Err(err) => tracing::warn!(error = %err, "no stored prices for closed holdings"),
    }
    Ok(prices
        .into_values()
        .map(|price: LatestPrice| {
            let market = MarketPrice {
                price: price.price,
                change_24h_pct: price.change_24h_pct,
                updated_at: price.last_updated,
            };
            (price.coin_id, market)
        })
        .collect())
}
