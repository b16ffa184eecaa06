//! The market's job kinds: bulk price fetches asked for by users and the scheduled refresh.
//! Both the API (which accepts them) and the worker (which runs them) use these types.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::jobs::{JobArgs, JobKind, Queue};

/// `bulk_fetch`: the prices of up to 250 coins, asked for through `POST /crypto/bulk`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BulkFetch {
    /// Coin ids, distinct, in the order asked.
    pub coins: Vec<String>,
    /// Quote currency (lower case).
    pub vs_currency: String,
}

impl JobArgs for BulkFetch {
    const KIND: JobKind = JobKind::BulkFetch;
    const QUEUE: Queue = Queue::BulkFetch;
    const MAX_ATTEMPTS: i32 = 5;
    type Output = BulkFetchResult;
}

/// A bulk fetch's outcome: each coin's price, or that coin's own error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct BulkFetchResult {
    /// Quote currency.
    pub vs_currency: String,
    /// Where the prices come from (`simulated` offline, `coingecko`).
    pub source: String,
    /// Coins priced.
    pub found: u32,
    /// Coins the provider does not know.
    pub missing: u32,
    /// One entry per coin, in the order asked.
    pub coins: Vec<CoinQuote>,
}

/// One coin of a bulk fetch: its price, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct CoinQuote {
    /// The coin id as asked.
    pub coin_id: String,
    /// Price in `vs_currency` (a decimal string); absent when `error` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub price: Option<Decimal>,
    /// Change over 24 hours, in percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub change_24h_pct: Option<Decimal>,
    /// Market capitalisation in `vs_currency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_decimal")
    )]
    pub market_cap: Option<Decimal>,
    /// When the provider quoted it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        oai(serialize_with = "crate::wire::optional_timestamp")
    )]
    pub quoted_at: Option<DateTime<Utc>>,
    /// Why this coin has no price (e.g. an unknown coin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `price_refresh`: keeps the prices people care about fresh, once per interval slot across
/// every worker process (its id is derived from the slot).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRefresh {
    /// Quote currency of the top of the market.
    pub vs_currency: String,
    /// How many of the largest coins to include.
    pub top: u32,
    /// The interval slot this refresh is for (seconds since the epoch).
    pub slot: u64,
}

impl JobArgs for PriceRefresh {
    const KIND: JobKind = JobKind::PriceRefresh;
    const QUEUE: Queue = Queue::PriceRefresh;
    const MAX_ATTEMPTS: i32 = 3;
    const DEDUPLICATED: bool = true;
    type Output = PriceRefreshResult;
}

/// A refresh's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceRefreshResult {
    /// Quote currency of the top of the market.
    pub vs_currency: String,
    /// Where the prices come from.
    pub source: String,
    /// Prices stored, every currency together.
    pub refreshed: u32,
    /// Coins asked for that the provider does not know.
    pub missing: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored shape is a contract with rows written by earlier versions: these are the
    /// documents the previous, untyped code wrote.
    #[test]
    fn results_read_what_earlier_versions_stored() {
        let stored = serde_json::json!({
            "vs_currency": "usd", "source": "simulated", "found": 1, "missing": 1,
            "coins": [
                {"coin_id": "bitcoin", "price": "64000.5", "change_24h_pct": "-1.25",
                 "market_cap": null, "quoted_at": "2026-11-28T10:00:00Z"},
                {"coin_id": "nope", "error": "unknown coin \"nope\""},
            ],
        });
        let result: BulkFetchResult = serde_json::from_value(stored).expect("reads");
        assert_eq!(result.coins[0].price, Some(Decimal::new(640_005, 1)));
        assert_eq!(
            result.coins[1].error.as_deref(),
            Some("unknown coin \"nope\"")
        );
        let written = serde_json::to_value(&result).expect("writes");
        assert_eq!(
            written["coins"][0]["price"], "64000.5",
            "decimals stay strings"
        );
        assert!(written["coins"][1].get("price").is_none());
    }

    #[test]
    fn arguments_refuse_unknown_fields() {
        let args = serde_json::json!({"coins": ["bitcoin"], "vs_currency": "usd", "x": 1});
        assert!(serde_json::from_value::<BulkFetch>(args).is_err());
    }
}
