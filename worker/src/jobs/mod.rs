//! Running the job queues: one apalis worker per queue over the Redis backend, dispatching
//! each job to the handler its feature registered for its kind ([`Handlers`]); the outbox
//! relay, the rescuer and the queue-depth sampler, under one shutdown. Features (`market`)
//! own their handlers and schedules; this module knows none of them.

pub mod cancel;
mod metrics;
pub mod progress;
pub mod relay;
pub mod rescue;
pub mod rows;
pub mod tracking;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use apalis::layers::catch_panic::{CatchPanicLayer, PanicError};
use apalis::prelude::*;
use common::events::Publisher;
use common::jobs::queues::QueueSet;
use common::jobs::store as jobs_store;
use common::jobs::{Envelope, JobArgs, JobKind};
use common::prices::Prices;
use common::redis::Redis;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use queue::{DeadLetter, Delivery, RedisBackend};
use sqlx::PgPool;
use tokio::sync::Notify;

use self::cancel::RunningJobs;
use self::rows::JobRows;
use self::tracking::{OwnerNotices, TrackingLayer};
use crate::config::WorkerConfig;
use crate::notifications::finished::{FinishedJob, notify_owner};

/// What job handlers work with. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// Postgres.
    pub db: PgPool,
    /// Redis (caches, budgets, locks).
    pub redis: Redis,
    /// Where events for the API's streams are published.
    pub events: Publisher,
    /// Every job queue (handlers may enqueue follow-up jobs).
    pub queues: QueueSet,
    /// Latest prices: the provider behind them, and where fetched quotes are recorded.
    pub prices: Prices,
    /// Where the job being run reports how far it is (reports nothing outside a job).
    pub progress: progress::Progress,
    /// The job being run (`None` outside a job).
    pub job: Option<CurrentJob>,
}

/// The job a handler is running: for handlers whose effects are keyed by the job (its files,
/// its owner's rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentJob {
    /// The job's id.
    pub id: uuid::Uuid,
    /// Who asked for it (`None` for system jobs).
    pub owner: Option<uuid::Uuid>,
}

/// How a job attempt failed.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// Worth another attempt (upstream down, database busy, ...).
    #[error("{0}")]
    Retry(String),
    /// No attempt can succeed (invalid input, unsupported request): the job is dead at once.
    #[error("{0}")]
    Permanent(String),
}

/// A kind's handler with its types erased: stored arguments in, stored result out.
type ErasedHandler = Arc<
    dyn Fn(JobContext, serde_json::Value) -> BoxFuture<'static, Result<serde_json::Value, JobError>>
        + Send
        + Sync,
>;

/// The handler of each job kind. A kind without one fails permanently (an older worker than
/// the API that accepted the job).
#[derive(Clone, Default)]
pub struct Handlers {
    by_kind: HashMap<JobKind, ErasedHandler>,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.by_kind.keys()).finish()
    }
}

impl Handlers {
    /// Runs jobs of `J`'s kind with `handler`: their arguments are parsed as `J` (arguments
    /// that do not parse fail permanently), an attempt is cut off after [`JobArgs::TIMEOUT`]
    /// when the kind sets one, and the result is stored as `J::Output` serialises it.
    pub fn register<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: JobArgs,
        F: Fn(JobContext, J) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<J::Output, JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let erased: ErasedHandler = Arc::new(move |ctx, args| {
            let handler = handler.clone();
            async move {
                let args: J = serde_json::from_value(args).map_err(|err| {
                    JobError::Permanent(format!("invalid {} arguments: {err}", J::KIND))
                })?;
                let attempt = handler(ctx, args);
                let output = match J::TIMEOUT {
                    Some(limit) => tokio::time::timeout(limit, attempt).await.map_err(|_| {
                        JobError::Retry(format!(
                            "timed out after {}",
                            humantime::format_duration(limit)
                        ))
                    })??,
                    None => attempt.await?,
                };
                serde_json::to_value(output).map_err(|err| {
                    JobError::Permanent(format!("cannot store the {} result: {err}", J::KIND))
                })
            }
            .boxed()
        });
        self.by_kind.insert(J::KIND, erased);
        self
    }

    async fn run(
        &self,
        ctx: JobContext,
        envelope: Envelope,
    ) -> Result<serde_json::Value, JobError> {
        match self.by_kind.get(&envelope.kind) {
            Some(handler) => handler(ctx, envelope.args).await,
            None => Err(JobError::Permanent(format!(
                "this worker version has no handler for {} jobs",
                envelope.kind
            ))),
        }
    }
}

/// What Redis carried, as an [`Envelope`]. Jobs pushed before kinds were separate from queues
/// carry bare arguments (never with both `kind` and `args` fields); their queue named their
/// kind.
fn envelope(payload: serde_json::Value, queue: &str) -> Result<Envelope, JobError> {
    let enveloped = payload
        .as_object()
        .is_some_and(|fields| fields.contains_key("kind") && fields.contains_key("args"));
    if enveloped {
        serde_json::from_value(payload)
            .map_err(|err| JobError::Permanent(format!("invalid job envelope: {err}")))
    } else {
        let kind = queue.parse::<JobKind>().map_err(JobError::Permanent)?;
        Ok(Envelope {
            kind,
            args: payload,
        })
    }
}

/// The handler of every queue: runs the job's kind's handler.
async fn run_job(
    payload: serde_json::Value,
    delivery: Data<Delivery>,
    ctx: Data<JobContext>,
    handlers: Data<Handlers>,
    progress: Data<progress::Progress>,
    current: Data<CurrentJob>,
) -> Result<serde_json::Value, BoxDynError> {
    let ctx = JobContext {
        progress: (*progress).clone(),
        job: Some(*current),
        ..(*ctx).clone()
    };
    let outcome = match envelope(payload, &delivery.queue) {
        Ok(envelope) => handlers.run(ctx, envelope).await,
        Err(err) => Err(err),
    };
    outcome.map_err(|err| match err {
        JobError::Permanent(_) => AbortError::new(err).into(),
        JobError::Retry(_) => err.into(),
    })
}

/// Runs every configured queue until `shutdown` resolves (then lets in-flight jobs finish
/// within the configured bound) or until a queue loses Redis for good (an error, so the
/// process exits non-zero and gets restarted rather than idling).
pub async fn run(
    config: &WorkerConfig,
    ctx: JobContext,
    handlers: Handlers,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let failed = Arc::new(Notify::new());
    register_metrics(config);
    let rows = JobRows::spawn(ctx.db.clone());
    let running = RunningJobs::default();
    let mut monitor = Monitor::new();
    for spec in config.queues.clone() {
        let concurrency = config.concurrency_of(&spec);
        let timeout = config.job_timeout;
        let ctx = ctx.clone();
        let failed = failed.clone();
        let rows = rows.clone();
        let handlers = handlers.clone();
        let running = running.clone();
        monitor = monitor.register(move |_restarts| {
            let queue = spec.queue;
            let dead_ctx = ctx.clone();
            let failed = failed.clone();
            let backend = RedisBackend::<serde_json::Value>::new(ctx.queues.get(queue).clone())
                .concurrency(concurrency)
                .on_dead_letter(Arc::new(move |letter: DeadLetter| {
                    let ctx = dead_ctx.clone();
                    async move { record_dead_letter(&ctx, letter).await }.boxed()
                }))
                .on_failure(Arc::new(move |err| {
                    tracing::error!(queue = queue.as_str(), error = %err, "queue worker gave up");
                    failed.notify_one();
                }));
            WorkerBuilder::new(queue.as_str())
                .backend(backend)
                .data(ctx.clone())
                .data(handlers.clone())
                .concurrency(concurrency)
                .layer(
                    TrackingLayer::new(rows.clone(), ctx.events.clone(), queue, timeout)
                        .notify_owners(OwnerNotices {
                            db: ctx.db.clone(),
                            queues: ctx.queues.clone(),
                        })
                        .cancellable(running.clone())
                        .report_progress(ctx.db.clone()),
                )
                .timeout(timeout)
                .layer(CatchPanicLayer::with_panic_handler(
                    |panic: &Box<dyn std::any::Any + Send>| PanicError(panic_message(panic)),
                ))
                .build(run_job)
        });
        tracing::info!(queue = spec.queue.as_str(), concurrency, "consuming queue");
    }
    let control = monitor.context();
    let background = [
        tokio::spawn(relay::run(ctx.clone(), config.relay_interval)),
        tokio::spawn(rescue::run(
            ctx.clone(),
            config.rescue_interval,
            config.rescue_grace,
        )),
        tokio::spawn(sample_queues(ctx.queues.clone())),
        tokio::spawn(cancel::watch(
            ctx.db.clone(),
            running,
            config.cancel_check_interval,
        )),
    ];
    let mut workers = std::pin::pin!(monitor.run());
    let outcome = tokio::select! {
        result = &mut workers => match result {
            Ok(()) => Err(anyhow::anyhow!("every queue worker stopped on its own")),
            Err(err) => Err(anyhow::anyhow!("queue workers failed: {err}")),
        },
        () = shutdown => {
            tracing::info!(bound = ?config.shutdown_timeout, "stopping: no new jobs, letting in-flight ones finish");
            let _ = control.shutdown();
            match tokio::time::timeout(config.shutdown_timeout, &mut workers).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(err)) => Err(anyhow::anyhow!("queue workers failed while stopping: {err}")),
                Err(_) => {
                    // Their leases expire and other workers run them again.
                    tracing::warn!("in-flight jobs did not finish within WORKER_SHUTDOWN_TIMEOUT; leaving them to other workers");
                    Ok(())
                }
            }
        },
        () = failed.notified() => {
            let _ = control.shutdown();
            let _ = tokio::time::timeout(config.shutdown_timeout, &mut workers).await;
            Err(anyhow::anyhow!("Redis stayed unreachable for more than WORKER_REDIS_GRACE ({})", humantime::format_duration(config.queue.redis_grace)))
        },
    };
    for task in background {
        task.abort();
    }
    outcome
}

/// Exports the job counters of the consumed queues at 0 from the start, so dashboards and alert
/// rules see every series (a `rate()` over a series that appears mid-range misses its first
/// increments).
fn register_metrics(config: &WorkerConfig) {
    for spec in &config.queues {
        let queue = spec.queue.as_str();
        for outcome in ["succeeded", "failed", "dead", "skipped", "cancelled"] {
            ::metrics::counter!("jobs_completed_total", "queue" => queue, "outcome" => outcome)
                .increment(0);
        }
        ::metrics::counter!("jobs_enqueued_total", "queue" => queue).increment(0);
        ::metrics::counter!("jobs_rescued_total", "queue" => queue).increment(0);
    }
    ::metrics::counter!("rescue_rounds_total").increment(0);
}

/// A dead-lettered job's row becomes `dead` too (its last run never got to say so).
async fn record_dead_letter(ctx: &JobContext, letter: DeadLetter) {
    let Ok(id) = letter.id.parse() else { return };
    let attempts = i32::try_from(letter.attempts).unwrap_or(i32::MAX);
    mark_dead(ctx, id, attempts, &letter.reason).await;
}

/// Marks the row of a job that ends without a run of its own `dead`, logs it and tells its
/// owner; `true` when this changed the row (a final row is left as it is).
async fn mark_dead(ctx: &JobContext, id: uuid::Uuid, attempts: i32, reason: &str) -> bool {
    match jobs_store::dead_letter(&ctx.db, id, attempts, reason).await {
        Ok(Some(job)) => {
            tracing::error!(%id, %reason, "job dead without a run");
            if let Some(user_id) = job.user_id {
                let finished = FinishedJob {
                    id,
                    kind: job.kind,
                    user_id,
                    status: common::jobs::JobStatus::Dead,
                    result: None,
                    error: Some(reason),
                };
                notify_owner(&ctx.db, &ctx.queues, finished).await;
            }
            true
        }
        Ok(None) => false,
        Err(err) => {
            tracing::error!(%id, error = %err, "cannot mark the job dead");
            false
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|text| (*text).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

/// Samples the queue gauges operators scale and alert on, from Redis: `queue_depth` (jobs
/// ready and waiting), `queue_oldest_job_age_seconds` (how long the oldest of them has waited),
/// `queue_workers` and `queue_paused`, per queue.
async fn sample_queues(queues: QueueSet) {
    let mut ticks = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticks.tick().await;
        match queues.stats().await {
            Ok(stats) => {
                for (queue, stats) in stats {
                    let name = queue.as_str();
                    ::metrics::gauge!("queue_depth", "queue" => name).set(stats.ready as f64);
                    ::metrics::gauge!("queue_oldest_job_age_seconds", "queue" => name)
                        .set(stats.oldest_ready_age.as_secs_f64());
                    ::metrics::gauge!("queue_paused", "queue" => name)
                        .set(f64::from(u8::from(stats.paused)));
                    ::metrics::gauge!("queue_workers", "queue" => name).set(stats.workers as f64);
                }
            }
            Err(err) => tracing::debug!(error = %err, "queue gauges not sampled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelopes_and_bare_arguments_of_older_versions_are_both_read() {
        let args = json!({"coins": ["bitcoin"], "vs_currency": "usd"});
        let enveloped = envelope(json!({"kind": "bulk_fetch", "args": args}), "price_refresh")
            .expect("an envelope");
        assert_eq!(
            enveloped.kind,
            JobKind::BulkFetch,
            "the envelope's kind wins"
        );
        assert_eq!(enveloped.args, args);
        let bare = envelope(args.clone(), "bulk_fetch").expect("bare arguments");
        assert_eq!((bare.kind, bare.args), (JobKind::BulkFetch, args.clone()));
        assert!(envelope(args, "no_such_queue").is_err());
        assert!(envelope(json!({"kind": "nope", "args": {}}), "bulk_fetch").is_err());
    }
}
