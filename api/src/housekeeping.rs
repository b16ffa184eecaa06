//! Periodic deletion of rows that can never be used again, so tables stay the size of what is
//! live: idempotency keys past their 24 h (a user who never comes back would otherwise keep
//! theirs forever), refresh tokens and email tokens long expired, job files past their expiry,
//! and finished jobs older than `JOB_RETENTION`. Each API process runs it; the deletes
//! skip rows another process is deleting, so running several at once is harmless.

use std::time::Duration;

use sqlx::PgPool;

use crate::auth::sessions;
use crate::platform::idempotency;

/// Rows deleted per statement, so a large backlog never holds many locks or one long
/// transaction.
const BATCH: i64 = 1_000;

/// Rows deleted by one round, per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    /// Expired idempotency keys.
    pub idempotency_keys: u64,
    /// Refresh tokens past their retention.
    pub refresh_tokens: u64,
    /// Email tokens (verification, reset) expired for a day.
    pub account_tokens: u64,
    /// Jobs finished (succeeded, cancelled, dead) longer ago than the retention.
    pub jobs: u64,
    /// Job files (imports' uploads, exports' downloads) past their expiry.
    pub job_files: u64,
}

/// One round: deletes everything expired, and jobs finished more than `job_retention` ago,
/// in batches.
pub async fn purge(db: &PgPool, job_retention: Duration) -> Result<Purged, sqlx::Error> {
    let jobs_before = chrono::Duration::from_std(job_retention)
        .ok()
        .and_then(|retention| chrono::Utc::now().checked_sub_signed(retention))
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    Ok(Purged {
        idempotency_keys: drain(|| idempotency::purge_expired(db, BATCH)).await?,
        refresh_tokens: drain(|| sessions::purge_expired(db, BATCH)).await?,
        account_tokens: drain(|| common::email::tokens::purge_expired(db, BATCH)).await?,
        jobs: drain(|| common::jobs::store::purge_finished(db, jobs_before, BATCH)).await?,
        job_files: drain(|| common::portfolios::store::purge_expired_files(db, BATCH)).await?,
    })
}

async fn drain<F, Fut>(mut batch: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<u64, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let deleted = batch().await?;
        total += deleted;
        if deleted < BATCH.unsigned_abs() {
            return Ok(total);
        }
    }
}

/// Runs [`purge`] every `interval`, the first round shortly after start-up. Failures are
/// logged and retried at the next round.
pub fn spawn(
    db: PgPool,
    interval: Duration,
    job_retention: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match purge(&db, job_retention).await {
                Ok(purged) if purged != Purged::default() => {
                    tracing::info!(
                        idempotency_keys = purged.idempotency_keys,
                        refresh_tokens = purged.refresh_tokens,
                        account_tokens = purged.account_tokens,
                        jobs = purged.jobs,
                        job_files = purged.job_files,
                        "purged expired rows"
                    );
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "purge of expired rows failed"),
            }
        }
    })
}
