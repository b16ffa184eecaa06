//! Market-data jobs: bulk price fetches asked for by users and the scheduled refresh.

pub mod bulk_fetch;
pub mod refresh;

use common::events::Event;
use common::market::{ProviderError, Quote};
use serde_json::json;

use crate::jobs::{Handlers, JobContext, JobError};

/// The market's job kinds and their handlers.
pub fn handlers(handlers: Handlers) -> Handlers {
    handlers.register(bulk_fetch::run).register(refresh::run)
}

impl From<ProviderError> for JobError {
    fn from(err: ProviderError) -> Self {
        if err.is_transient() {
            JobError::Retry(err.to_string())
        } else {
            JobError::Permanent(err.to_string())
        }
    }
}

/// Records `quotes` with the prices service (latest prices, history, cache) and publishes them
/// as a `prices` tick.
async fn store_and_publish(ctx: &JobContext, vs: &str, quotes: &[Quote]) -> Result<(), JobError> {
    ctx.prices
        .record(quotes, vs)
        .await
        .map_err(|err| JobError::Retry(format!("storing quotes: {err}")))?;
    publish_prices(ctx, vs, quotes).await;
    Ok(())
}

/// Publishes a `prices` tick for `quotes`. Best effort: subscribers miss a tick at worst.
async fn publish_prices(ctx: &JobContext, vs: &str, quotes: &[Quote]) {
    if quotes.is_empty() {
        return;
    }
    let ticks: Vec<_> = quotes
        .iter()
        .map(|quote| {
            json!({
                "coin_id": quote.id,
                // Normalised, as every response writes decimals (`8.554`, never `8.5540`).
                "price": quote.price.normalize().to_string(),
                "change_24h_pct": quote.change_24h_pct.map(|pct| pct.normalize().to_string()),
                "quoted_at": quote.last_updated,
            })
        })
        .collect();
    let event = Event::new(
        "prices",
        json!({ "vs_currency": vs, "source": ctx.prices.provider().kind().as_str(), "quotes": ticks }),
    );
    if let Err(err) = ctx.events.prices(&event).await {
        tracing::debug!(error = %err, "prices event not published");
    }
}
