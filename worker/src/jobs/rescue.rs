//! The rescuer: Postgres is the record, so a job whose Redis copy was lost still runs.
//!
//! Redis can lose jobs it had accepted: a restart without persistence, a failover to a replica
//! that missed the last writes, an eviction, a mistaken `FLUSHALL`. The outbox relay only
//! pushes rows that never reached Redis, so such jobs would stay `queued` (or `running`)
//! forever. Every `WORKER_RESCUE_INTERVAL`, one worker (a Redis lock makes it one round at a
//! time across all processes) walks the rows that are handed over and unfinished and have not
//! changed for `WORKER_RESCUE_GRACE`, asks the queue which of them it no longer holds
//! (`RedisQueue::missing`: no job data, or not in the structure its state names), and pushes
//! those again. Pushing is idempotent by id, and a job Redis still holds (waiting, delayed,
//! running on a live worker, finished) is never pushed, so nothing runs twice when Redis lost
//! nothing.
//!
//! A `running` row whose job is gone lost its attempt with Redis: the push keeps the row's
//! attempt count, so the next run is the next attempt, and a job that has used its last one is
//! marked `dead` instead.

use std::collections::HashSet;
use std::time::Duration;

use common::jobs::admin;
use common::jobs::store::OutboxJob;
use common::jobs::store::{self, UnfinishedJob};
use common::jobs::{JobStatus, Queue};

use uuid::Uuid;

use super::JobContext;

/// Rows per page of a round.
const PAGE: i64 = 500;

/// Runs forever: a round every `interval`, for rows unchanged for `grace`.
pub async fn run(ctx: JobContext, interval: Duration, grace: Duration) {
    let owner = Uuid::now_v7().to_string();
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match take_turn(&ctx, &owner, interval).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::debug!(error = %err, "rescuer cannot reach Redis; skipping this round");
                continue;
            }
        }
        match round(&ctx, grace).await {
            Ok(_) => metrics::counter!("rescue_rounds_total").increment(1),
            Err(err) => {
                tracing::warn!(error = %err, "rescue round failed; trying again next interval");
            }
        }
    }
}

/// Whether this process holds the round for the coming `interval` (a lock that expires by
/// itself, so a worker that dies mid-round only delays the next one).
async fn take_turn(
    ctx: &JobContext,
    owner: &str,
    interval: Duration,
) -> Result<bool, redis::RedisError> {
    let mut conn = ctx.redis.conn().await?;
    let taken: Option<String> = redis::cmd("SET")
        .arg(ctx.redis.key("rescue:lock"))
        .arg(owner)
        .arg("NX")
        .arg("PX")
        .arg(
            u64::try_from(interval.as_millis())
                .unwrap_or(u64::MAX)
                .max(1),
        )
        .query_async(&mut conn)
        .await?;
    Ok(taken.is_some())
}

/// Why a round stopped early.
#[derive(Debug, thiserror::Error)]
enum RoundError {
    #[error("reading job rows: {0}")]
    Rows(#[from] sqlx::Error),
    #[error("asking the queue: {0}")]
    Queue(#[from] queue::QueueError),
}

/// Makes Redis's pause flags say what `queue_pauses` says: a Redis that lost its data would
/// otherwise let workers run a paused queue, and a flag whose write failed would stay wrong.
/// (A resume that races this round may be undone until the next round, which redoes it.)
async fn sync_pauses(ctx: &JobContext) -> Result<(), RoundError> {
    let paused: HashSet<Queue> = admin::pauses(&ctx.db)
        .await?
        .into_iter()
        .map(|pause| pause.queue)
        .collect();
    for (queue, stats) in ctx.queues.stats().await? {
        let handle = ctx.queues.get(queue);
        match (paused.contains(&queue), stats.paused) {
            (true, false) => {
                tracing::warn!(
                    queue = queue.as_str(),
                    "queue is paused but Redis had lost the flag; pausing it again"
                );
                handle.pause().await?;
            }
            (false, true) => handle.resume().await?,
            _ => {}
        }
    }
    Ok(())
}

/// One walk over the unfinished rows; returns how many jobs were pushed again.
async fn round(ctx: &JobContext, grace: Duration) -> Result<usize, RoundError> {
    sync_pauses(ctx).await?;
    let mut after = Uuid::nil();
    let mut rescued = 0;
    loop {
        let page = store::unfinished_after(&ctx.db, grace, after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.id;
        for queue in Queue::ALL {
            let jobs: Vec<&UnfinishedJob> = page.iter().filter(|job| job.queue == queue).collect();
            if !jobs.is_empty() {
                rescued += rescue(ctx, queue, &jobs).await?;
            }
        }
        if (page.len() as i64) < PAGE {
            break;
        }
    }
    if rescued > 0 {
        tracing::warn!(
            rescued,
            "jobs Redis had lost were pushed again from their Postgres records"
        );
    }
    Ok(rescued)
}

/// Pushes again the jobs of `queue` that Redis no longer holds; returns how many.
async fn rescue(
    ctx: &JobContext,
    queue: Queue,
    jobs: &[&UnfinishedJob],
) -> Result<usize, RoundError> {
    let handle = ctx.queues.get(queue);
    let ids: Vec<String> = jobs.iter().map(|job| job.id.to_string()).collect();
    let missing: HashSet<String> = handle.missing(&ids).await?.into_iter().collect();
    if missing.is_empty() {
        return Ok(0);
    }
    let mut again = Vec::with_capacity(missing.len());
    for job in jobs
        .iter()
        .filter(|job| missing.contains(&job.id.to_string()))
    {
        if job.status == JobStatus::Running && job.attempts >= job.max_attempts {
            let reason = "its last attempt was lost with the queue's data";
            if super::mark_dead(ctx, job.id, job.attempts, reason).await {
                metrics::counter!("jobs_dead_total", "queue" => queue.as_str()).increment(1);
            }
            continue;
        }
        let outbox = OutboxJob {
            id: job.id,
            kind: job.kind,
            queue: job.queue,
            args: job.args.clone(),
            max_attempts: job.max_attempts,
        };
        again.push(
            outbox
                .to_queue_job()?
                .attempts_used(job.attempts.unsigned_abs()),
        );
    }
    let pushed = handle.push(&again).await?;
    metrics::counter!("jobs_rescued_total", "queue" => queue.as_str()).increment(pushed as u64);
    Ok(pushed)
}
