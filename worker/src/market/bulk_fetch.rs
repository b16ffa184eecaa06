//! `bulk_fetch`: the prices of up to 250 coins, asked for through `POST /crypto/bulk`.

use std::collections::HashMap;

use common::market::recent;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::jobs::{JobContext, JobError};

/// The job's input, as the API stores it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BulkFetch {
    /// Coin ids (distinct, validated by the API).
    pub coins: Vec<String>,
    /// Quote currency.
    pub vs_currency: String,
}

/// Fetches the coins in as few upstream calls as the provider allows, stores the quotes and
/// returns, per coin in the order asked, its price or its own error.
pub async fn run(ctx: &JobContext, payload: Value) -> Result<Value, JobError> {
    let job: BulkFetch = serde_json::from_value(payload)
        .map_err(|err| JobError::Permanent(format!("invalid bulk_fetch payload: {err}")))?;
    recent::note(&ctx.redis, &job.coins).await;
    let batch = ctx.prices.markets(&job.coins, &job.vs_currency).await?;
    let source = ctx.prices.kind().as_str();
    super::store_and_publish(ctx, &job.vs_currency, &batch.quotes).await?;

    let by_id: HashMap<&str, _> = batch
        .quotes
        .iter()
        .map(|quote| (quote.id.as_str(), quote))
        .collect();
    let coins: Vec<Value> = job
        .coins
        .iter()
        .map(|id| match by_id.get(id.as_str()) {
            Some(quote) => json!({
                "coin_id": id,
                "price": quote.price.to_string(),
                "change_24h_pct": quote.change_24h_pct.map(|pct| pct.to_string()),
                "market_cap": quote.market_cap.map(|cap| cap.to_string()),
                "quoted_at": quote.last_updated,
            }),
            None => json!({ "coin_id": id, "error": format!("unknown coin {id:?}") }),
        })
        .collect();
    Ok(json!({
        "vs_currency": job.vs_currency,
        "source": source,
        "found": batch.quotes.len(),
        "missing": batch.missing.len(),
        "coins": coins,
    }))
}
