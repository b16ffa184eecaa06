//! The layer that keeps a job's Postgres row (the caller's record) in step with its runs:
//! `running` when an attempt starts, then `succeeded`, `failed` (another attempt follows) or
//! `dead`. A job whose row is already final (cancelled, succeeded, dead) is not run again.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis::prelude::{AbortError, BoxDynError, Task};
use common::events::{Event, Publisher};
use common::jobs::queues::QueueSet;
use common::jobs::store::{Attempt, Outcome, StartedJob};
use common::jobs::{JobStatus, Queue};
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use queue::Delivery;
use serde_json::{Value, json};
use tower_layer::Layer;
use tower_service::Service;
use tracing::Instrument;
use uuid::Uuid;

use sqlx::PgPool;

use super::cancel::RunningJobs;
use super::metrics::JobMetrics;
use super::progress::Progress;
use super::rows::JobRows;
use crate::notifications::finished::{FinishedJob, notify_owner};

/// Wraps a queue's job handler with the row's status transitions and the job metrics.
#[derive(Debug, Clone)]
pub struct TrackingLayer {
    shared: Arc<Shared>,
}

#[derive(Debug, Clone)]
struct Shared {
    rows: JobRows,
    events: Publisher,
    timeout: Duration,
    metrics: JobMetrics,
    owner_notices: Option<OwnerNotices>,
    running: Option<RunningJobs>,
    /// Where handlers' progress reports are recorded (none: reports go nowhere).
    progress_db: Option<PgPool>,
}

/// Where the notifications of users' finished jobs are queued.
#[derive(Debug, Clone)]
pub struct OwnerNotices {
    /// Postgres, for the `notify` job.
    pub db: PgPool,
    /// The queues, to hand it over at once.
    pub queues: QueueSet,
}

impl TrackingLayer {
    /// Tracks jobs of `queue` through the process's row writer; `timeout` is only used to
    /// word timeout errors.
    pub fn new(rows: JobRows, events: Publisher, queue: Queue, timeout: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                rows,
                events,
                timeout,
                metrics: JobMetrics::new(queue),
                owner_notices: None,
                running: None,
                progress_db: None,
            }),
        }
    }

    /// Lets handlers report their progress (`JobContext::progress`), recorded in `db`.
    pub fn report_progress(mut self, db: PgPool) -> Self {
        Arc::make_mut(&mut self.shared).progress_db = Some(db);
        self
    }

    /// Also tells each user when one of their jobs ends (`succeeded` or `dead`) with a `jobs`
    /// notification.
    pub fn notify_owners(mut self, notices: OwnerNotices) -> Self {
        Arc::make_mut(&mut self.shared).owner_notices = Some(notices);
        self
    }
}

impl TrackingLayer {
    /// Lets operators stop its running jobs: each attempt registers in `running`, and a
    /// cancellation drops the handler's future at its next await (its open transactions roll
    /// back) and ends the attempt without recording an outcome (the row already says
    /// `cancelled`); the queue counts the job done.
    pub fn cancellable(mut self, running: RunningJobs) -> Self {
        Arc::make_mut(&mut self.shared).running = Some(running);
        self
    }
}

impl<S> Layer<S> for TrackingLayer {
    type Service = TrackingService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TrackingService {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`TrackingLayer`].
#[derive(Debug, Clone)]
pub struct TrackingService<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// The job's id is not a UUID: it did not come from the `jobs` table.
#[derive(Debug, thiserror::Error)]
#[error("job id {0:?} is not a jobs row id")]
struct ForeignJob(String);

impl<S> Service<Task<Value>> for TrackingService<S>
where
    S: Service<Task<Value>, Response = Value> + Clone + Send + 'static,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
{
    type Response = Value;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<Value, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut task: Task<Value>) -> Self::Future {
        // The inner service was made ready by `poll_ready`: use that one, keep a fresh clone.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        let id = task.task_id().map(ToString::to_string).unwrap_or_default();
        let delivery = task.data().get::<Delivery>().cloned();
        async move {
            let Some(delivery) = delivery else {
                return Err(AbortError::new(ForeignJob(id)).into());
            };
            let Ok(job_id) = id.parse::<Uuid>() else {
                return Err(AbortError::new(ForeignJob(id)).into());
            };
            let attempt = Attempt {
                id: job_id,
                attempt: i32::try_from(delivery.attempt).unwrap_or(i32::MAX),
            };
            let Some(started) = shared.rows.start(attempt).await? else {
                // Cancelled, already finished, or a stale duplicate: never run.
                tracing::info!(%job_id, attempt = attempt.attempt, "job is final or superseded; not running it");
                shared.metrics.completed("skipped");
                return Ok(Value::Null);
            };
            // The job's own span, continuing the trace it was accepted in: one trace runs
            // request → queue → job → upstream call or email.
            let span = tracing::info_span!(
                "job",
                job_id = %job_id,
                kind = started.kind.as_str(),
                queue = &*delivery.queue,
                attempt = attempt.attempt,
            );
            if let Some(traceparent) = &started.traceparent {
                common::trace_context::continue_trace(&span, traceparent);
            }
            shared.metrics.started(delivery.wait());
            let running_announced = shared.announce(&started, attempt, JobStatus::Running);
            // The handler reports this attempt's progress through the task's data.
            let progress = shared.progress_db.as_ref().map_or_else(Progress::default, |db| {
                Progress::for_job(
                    db.clone(),
                    shared.events.clone(),
                    job_id,
                    started.kind,
                    started.user_id,
                    attempt.attempt,
                )
            });
            task.inject_data(progress);
            task.inject_data(super::CurrentJob {
                id: job_id,
                owner: started.user_id,
            });
            let run = async {
                let began = Instant::now();
                let registered = shared.running.as_ref().map(|running| running.register(job_id));
                let result = match registered {
                    Some((registration, mut stopped)) => {
                        let finished = tokio::select! {
                            result = inner.call(task).instrument(span) => Some(result),
                            Ok(()) = &mut stopped => None,
                        };
                        drop(registration);
                        finished
                    }
                    None => Some(inner.call(task).instrument(span).await),
                };
                shared.metrics.finished(began.elapsed());
                result.map(|result| result.map_err(Into::<BoxDynError>::into))
            };
            // The `running` event is handed to the publisher before the handler can report
            // progress (polled first), and the publisher keeps submission order, so the owner
            // still sees it first; but the handler starts without waiting for Redis to confirm
            // it: one round trip less before the job runs.
            let ((), result) = futures_util::future::join(running_announced, run).await;
            let Some(result) = result else {
                shared.metrics.completed(JobStatus::Cancelled.as_str());
                shared
                    .announce(&started, attempt, JobStatus::Cancelled)
                    .await;
                return Ok(Value::Null);
            };
            let outcome = match &result {
                Ok(value) => Outcome::Succeeded(value.clone()),
                Err(err) => {
                    let dead =
                        err.downcast_ref::<AbortError>().is_some() || delivery.is_last_attempt();
                    let message = shared.describe(err.as_ref());
                    tracing::warn!(%job_id, attempt = attempt.attempt, dead, error = %message, "job attempt failed");
                    if dead {
                        Outcome::Dead(message)
                    } else {
                        Outcome::Failed(message)
                    }
                }
            };
            let status = outcome.status();
            let error = match &outcome {
                Outcome::Failed(message) | Outcome::Dead(message) => Some(message.clone()),
                Outcome::Succeeded(_) => None,
            };
            shared.rows.finish(attempt, outcome).await?;
            if status == JobStatus::Dead {
                shared.metrics.dead();
            }
            shared.metrics.completed(status.as_str());
            shared.announce(&started, attempt, status).await;
            if let (Some(notices), Some(user_id), true) =
                (&shared.owner_notices, started.user_id, status.is_final())
            {
                let finished = FinishedJob {
                    id: job_id,
                    kind: started.kind,
                    user_id,
                    status,
                    result: result.as_ref().ok(),
                    error: error.as_deref(),
                };
                notify_owner(&notices.db, &notices.queues, finished).await;
            }
            result
        }
        .boxed()
    }
}

impl Shared {
    /// A failure in words for the row's `error`, without internals.
    fn describe(&self, err: &(dyn std::error::Error + Send + Sync + 'static)) -> String {
        if err.is::<tower::timeout::error::Elapsed>() {
            return format!(
                "timed out after {}",
                humantime::format_duration(self.timeout)
            );
        }
        if let Some(panic) = err.downcast_ref::<apalis::layers::catch_panic::PanicError>() {
            return format!("the job panicked: {}", panic.0);
        }
        err.to_string()
    }

    /// Tells the job's owner (over their event channel) that its status changed.
    async fn announce(&self, job: &StartedJob, attempt: Attempt, status: JobStatus) {
        let Some(user_id) = job.user_id else { return };
        let event = Event::new(
            "job",
            json!({ "id": attempt.id, "kind": job.kind.as_str(), "status": status.as_str(), "attempts": attempt.attempt }),
        );
        if let Err(err) = self.events.to_user(user_id, &event).await {
            tracing::debug!(error = %err, "job event not published");
        }
    }
}
