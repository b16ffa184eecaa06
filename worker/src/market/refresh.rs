//! `price_refresh`: keeps the prices people care about (held in portfolios, asked for
//! recently, the top of the market) fresh, once per interval across all
//! worker processes.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::alerts::jobs::AlertEval;
use common::jobs::store as jobs_store;
use common::jobs::store::OutboxJob;
use common::market::jobs::{PriceRefresh, PriceRefreshResult};
use common::market::{Quote, recent, store};
use uuid::Uuid;

use crate::alerts::store as alerts_store;
use crate::jobs::{JobContext, JobError};

/// How far back "asked for recently" reaches.
const RECENT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// Refreshes the top of the market plus every coin held, watched by an active alert or asked
/// for recently; stores latest prices and history, publishes a `prices` event, and queues the
/// evaluation of the alerts on the refreshed coins.
pub async fn run(ctx: JobContext, job: PriceRefresh) -> Result<PriceRefreshResult, JobError> {
    let top = usize::try_from(job.top).unwrap_or(usize::MAX);
    let mut quotes = ctx.prices.provider().top(top, &job.vs_currency).await?;
    let have: BTreeSet<String> = quotes.iter().map(|quote| quote.id.clone()).collect();

    let held = store::held_coins_by_currency(&ctx.db)
        .await
        .map_err(|err| JobError::Retry(format!("reading held coins: {err}")))?;
    let watched = alerts_store::watched_coins_by_currency(&ctx.db)
        .await
        .map_err(|err| JobError::Retry(format!("reading watched coins: {err}")))?;
    let alerted: BTreeMap<String, BTreeSet<String>> =
        watched
            .iter()
            .fold(BTreeMap::new(), |mut by_currency, (currency, coins)| {
                by_currency
                    .entry(currency.clone())
                    .or_default()
                    .extend(coins.iter().cloned());
                by_currency
            });
    let mut wanted = BTreeSet::new();
    let mut other_currencies: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (currency, coins) in held.into_iter().chain(watched) {
        if currency == job.vs_currency {
            wanted.extend(coins);
        } else if ctx.prices.provider().accepts_currency(&currency) {
            other_currencies.entry(currency).or_default().extend(coins);
        }
    }
    match recent::since(&ctx.redis, RECENT_WINDOW).await {
        Ok(ids) => wanted.extend(ids),
        Err(err) => {
            tracing::warn!(error = %err, "recently asked coins unavailable; refreshing the rest")
        }
    }
    let rest: Vec<String> = wanted.difference(&have).cloned().collect();
    let mut missing = Vec::new();
    if !rest.is_empty() {
        let batch = ctx
            .prices
            .provider()
            .markets(&rest, &job.vs_currency)
            .await?;
        quotes.extend(batch.quotes);
        missing = batch.missing;
    }
    super::store_and_publish(&ctx, &job.vs_currency, &quotes).await?;
    let mut refreshed = quotes.len();
    evaluate_alerts(&ctx, &alerted, &job.vs_currency, &quotes, job.slot).await?;
    // Portfolios and alerts in other currencies get their coins refreshed in that currency.
    for (currency, coins) in other_currencies {
        let coins: Vec<String> = coins.into_iter().collect();
        let batch = ctx.prices.provider().markets(&coins, &currency).await?;
        super::store_and_publish(&ctx, &currency, &batch.quotes).await?;
        evaluate_alerts(&ctx, &alerted, &currency, &batch.quotes, job.slot).await?;
        refreshed += batch.quotes.len();
    }
    tracing::info!(
        refreshed,
        missing = missing.len(),
        slot = job.slot,
        "prices refreshed"
    );
    Ok(PriceRefreshResult {
        vs_currency: job.vs_currency,
        source: ctx.prices.provider().kind().as_str().to_owned(),
        refreshed: u32::try_from(refreshed).unwrap_or(u32::MAX),
        missing,
    })
}

/// Queues one `alert_eval` job for the refreshed coins of `vs` that have active alerts. Its
/// id derives from the slot and currency, so a re-run refresh queues nothing twice.
async fn evaluate_alerts(
    ctx: &JobContext,
    alerted: &BTreeMap<String, BTreeSet<String>>,
    vs: &str,
    quotes: &[Quote],
    slot: u64,
) -> Result<(), JobError> {
    let Some(watched) = alerted.get(vs) else {
        return Ok(());
    };
    let coins: Vec<String> = quotes
        .iter()
        .filter(|quote| watched.contains(&quote.id))
        .map(|quote| quote.id.clone())
        .collect();
    if coins.is_empty() {
        return Ok(());
    }
    let job = AlertEval {
        vs_currency: vs.to_owned(),
        coins,
        slot,
    };
    let row = jobs_store::insert_once(&ctx.db, job.job_id(), &job)
        .await
        .map_err(|err| JobError::Retry(format!("queueing alert evaluation: {err}")))?;
    if let Some(row) = row
        && let Err(err) = ctx.queues.dispatch(&ctx.db, &[OutboxJob::from(&row)]).await
    {
        tracing::warn!(error = %err, "alert evaluation left to the outbox relay");
    }
    Ok(())
}

/// The id of the refresh job of one interval slot: the same in every process, so the row's
/// primary key lets exactly one process create it.
fn slot_job_id(interval: Duration, slot: u64) -> Uuid {
    let name = format!("coinpulse:price_refresh:{}:{slot}", interval.as_secs());
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

/// Creates the refresh job of each interval slot, in every worker process; the first to
/// insert a slot's row wins and hands it to the queue, the others find it there.
pub async fn schedule(ctx: JobContext, interval: Duration) {
    let interval_secs = interval.as_secs().max(1);
    loop {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let slot = now.as_secs() / interval_secs * interval_secs;
        let id = slot_job_id(interval, slot);
        let job = PriceRefresh {
            vs_currency: "usd".to_owned(),
            top: 100,
            slot,
        };
        match jobs_store::insert_once(&ctx.db, id, &job).await {
            Ok(Some(row)) => {
                tracing::info!(%id, slot, "price refresh scheduled");
                if let Err(err) = ctx.queues.dispatch(&ctx.db, &[OutboxJob::from(&row)]).await {
                    tracing::warn!(error = %err, "refresh not handed to the queue yet; the relay will");
                }
            }
            Ok(None) => {}
            Err(err) => tracing::warn!(error = %err, "cannot schedule the price refresh"),
        }
        let next = Duration::from_secs(slot + interval_secs);
        let wait = next.saturating_sub(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        );
        tokio::time::sleep(wait.max(Duration::from_millis(10))).await;
    }
}
