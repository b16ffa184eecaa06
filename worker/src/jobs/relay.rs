//! The outbox relay: hands to Redis the accepted jobs that never got there (Redis was down
//! when they were accepted, or the accepting process died between commit and push).

use std::time::Duration;

use common::jobs::store;

use super::JobContext;

/// Rows younger than this are left to the API process that is handing them over right now.
const GRACE: Duration = Duration::from_secs(1);
/// Rows per round trip.
const BATCH: i64 = 500;

/// Runs forever, every `interval`.
pub async fn run(ctx: JobContext, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        loop {
            let batch = match store::outbox_batch(&ctx.db, GRACE, BATCH).await {
                Ok(batch) => batch,
                Err(err) => {
                    tracing::warn!(error = %err, "outbox relay cannot read the outbox");
                    break;
                }
            };
            if batch.is_empty() {
                break;
            }
            match ctx.queues.dispatch(&ctx.db, &batch).await {
                Ok(jobs) => tracing::info!(jobs, "outbox relay handed jobs to the queue"),
                Err(err) => {
                    tracing::warn!(error = %err, pending = batch.len(), "outbox relay cannot reach the queue");
                    break;
                }
            }
            if (batch.len() as i64) < BATCH {
                break;
            }
        }
    }
}
