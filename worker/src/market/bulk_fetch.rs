//! `bulk_fetch`: the prices of up to 250 coins, asked for through `POST /crypto/bulk`.

use std::collections::HashMap;

use common::market::jobs::{BulkFetch, BulkFetchResult, CoinQuote};
use common::market::recent;

use crate::jobs::{JobContext, JobError};

/// Fetches the coins in as few upstream calls as the provider allows, stores the quotes and
/// returns, per coin in the order asked, its price or its own error.
pub async fn run(ctx: JobContext, job: BulkFetch) -> Result<BulkFetchResult, JobError> {
    let total = job.coins.len() as u64;
    ctx.progress.report(0, total).await;
    recent::note(&ctx.redis, &job.coins).await;
    let batch = ctx
        .prices
        .provider()
        .markets(&job.coins, &job.vs_currency)
        .await?;
    super::store_and_publish(&ctx, &job.vs_currency, &batch.quotes).await?;
    ctx.progress.report(total, total).await;

    let by_id: HashMap<&str, _> = batch
        .quotes
        .iter()
        .map(|quote| (quote.id.as_str(), quote))
        .collect();
    let coins = job
        .coins
        .iter()
        .map(|id| match by_id.get(id.as_str()) {
            Some(quote) => CoinQuote {
                coin_id: id.clone(),
                price: Some(quote.price),
                change_24h_pct: quote.change_24h_pct,
                market_cap: quote.market_cap,
                quoted_at: Some(quote.last_updated),
                error: None,
            },
            None => CoinQuote {
                coin_id: id.clone(),
                price: None,
                change_24h_pct: None,
                market_cap: None,
                quoted_at: None,
                error: Some(format!("unknown coin {id:?}")),
            },
        })
        .collect();
    Ok(BulkFetchResult {
        vs_currency: job.vs_currency,
        source: ctx.prices.provider().kind().as_str().to_owned(),
        found: u32::try_from(batch.quotes.len()).unwrap_or(u32::MAX),
        missing: u32::try_from(batch.missing.len()).unwrap_or(u32::MAX),
        coins,
    })
}
