//! The layer apalis puts around every worker of a [`crate::RedisBackend`]: it sees each
//! attempt's final result and settles the job in Redis (done, retry after backoff, or dead),
//! many jobs per script call.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::Task;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use group_commit::{BatchError, Batcher, Limits};
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::{DeadLetter, DeadLetterHook, Delivery};
use crate::client::{RedisQueue, Settlement};
use crate::error::QueueError;

/// How one worker settles its jobs: attempts that finish while a settle call is in flight go
/// together in the next call (up to 256 per call, two calls at a time), so an idle worker
/// settles a job at once and a busy one pays one Redis script call for many jobs.
const SETTLE_LIMITS: Limits = Limits {
    max_batch: 256,
    in_flight: 2,
};

/// What one worker's backend and its ack layer share: the jobs it holds and the writer of its
/// settlements.
pub(crate) struct Settler {
    queue: RedisQueue,
    worker: Arc<str>,
    /// Jobs claimed and not yet finished (waiting in the backend's buffer or running): the
    /// backend claims only what the worker has free slots for.
    held: AtomicUsize,
    /// Started on first use, on the runtime the worker runs on.
    batcher: OnceLock<Batcher<(String, Settlement), bool, QueueError>>,
}

impl Settler {
    pub(crate) fn new(queue: RedisQueue, worker: Arc<str>) -> Self {
        Self {
            queue,
            worker,
            held: AtomicUsize::new(0),
            batcher: OnceLock::new(),
        }
    }

    /// Jobs the worker holds.
    pub(crate) fn held(&self) -> usize {
        self.held.load(Ordering::Acquire)
    }

    /// Counts `jobs` more claimed.
    pub(crate) fn hold(&self, jobs: usize) {
        self.held.fetch_add(jobs, Ordering::AcqRel);
    }

    /// Counts `jobs` finished (or handed back).
    pub(crate) fn release(&self, jobs: usize) {
        let _ = self
            .held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                Some(held.saturating_sub(jobs))
            });
    }

    /// Settles a job, with others finishing at the same time, retrying through a Redis
    /// outage up to the queue's grace. If it still fails, the job stays in the worker's list
    /// and runs again once the lease expires: the queue delivers at least once, and the job's
    /// own record must make a repeat harmless.
    pub(crate) async fn settle(&self, id: String, settlement: Settlement) {
        let batcher = self.batcher.get_or_init(|| {
            let queue = self.queue.clone();
            let worker = self.worker.clone();
            Batcher::spawn(SETTLE_LIMITS, move |batch: Vec<(String, Settlement)>| {
                let queue = queue.clone();
                let worker = worker.clone();
                async move { settle_patiently(&queue, &worker, &batch).await }
            })
        });
        match batcher.submit((id.clone(), settlement)).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!(queue = self.queue.name(), %id, "job was re-queued while it ran (lease lost); result not recorded in the queue");
            }
            Err(BatchError::Failed(err)) => {
                tracing::error!(queue = self.queue.name(), %id, error = %err, "giving up settling job; it will run again");
            }
            Err(BatchError::Stopped) => {
                tracing::error!(queue = self.queue.name(), %id, "settling stopped with the runtime; the job will run again");
            }
        }
    }
}

/// One settle call for a batch, retried through a Redis outage up to the queue's grace.
async fn settle_patiently(
    queue: &RedisQueue,
    worker: &str,
    batch: &[(String, Settlement)],
) -> Result<Vec<bool>, QueueError> {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match queue.settle(worker, batch).await {
            Ok(settled) => return Ok(settled),
            Err(err) if started.elapsed() < queue.config().redis_grace => {
                tracing::warn!(queue = queue.name(), jobs = batch.len(), error = %err, "cannot settle jobs; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Counts a held job as finished when dropped: after its settlement, or when its run is
/// dropped unfinished.
struct Slot(Arc<Settler>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.release(1);
    }
}

/// Settles attempts of one worker's jobs. Built by the backend (`BackendConfig::middleware`).
#[derive(Clone)]
pub struct AckLayer {
    settler: Arc<Settler>,
    on_dead_letter: Option<DeadLetterHook>,
}

impl std::fmt::Debug for AckLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLayer")
            .field("queue", &self.settler.queue.name())
            .field("worker", &self.settler.worker)
            .finish_non_exhaustive()
    }
}

impl<S> std::fmt::Debug for AckService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl AckLayer {
    pub(crate) fn new(settler: Arc<Settler>, on_dead_letter: Option<DeadLetterHook>) -> Self {
        Self {
            settler,
            on_dead_letter,
        }
    }
}

impl<S> Layer<S> for AckLayer {
    type Service = AckService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AckService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service of [`AckLayer`].
#[derive(Clone)]
pub struct AckService<S> {
    inner: S,
    layer: AckLayer,
}

/// Returned, without running the job, for a job whose attempts were all used up by runs
/// lost with their worker.
#[derive(Debug, thiserror::Error)]
#[error("all {attempts} attempts used (the last run was lost with its worker)")]
pub struct AttemptsExhausted {
    /// Attempts counted.
    pub attempts: u32,
}

impl<S, Args> Service<Task<Args>> for AckService<S>
where
    S: Service<Task<Args>>,
    S::Error: Into<BoxDynError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    Args: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxDynError;
    type Future = BoxFuture<'static, Result<S::Response, BoxDynError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, task: Task<Args>) -> Self::Future {
        let id = task.task_id().map(ToString::to_string);
        let delivery = task.data().get::<Delivery>().cloned();
        let (Some(id), Some(delivery)) = (id, delivery) else {
            // Not one of ours (no delivery data): nothing to settle.
            return self.inner.call(task).map(|r| r.map_err(Into::into)).boxed();
        };
        let layer = self.layer.clone();
        let slot = Slot(layer.settler.clone());
        if delivery.is_exhausted() {
            return async move {
                let error = AttemptsExhausted {
                    attempts: delivery.attempt - 1,
                };
                let reason = error.to_string();
                tracing::error!(queue = layer.settler.queue.name(), %id, %reason, "dead-lettered");
                let settlement = Settlement::Dead {
                    error: reason.clone(),
                };
                layer.settler.settle(id.clone(), settlement).await;
                drop(slot);
                if let Some(hook) = &layer.on_dead_letter {
                    hook(DeadLetter {
                        id,
                        attempts: error.attempts,
                        reason,
                    })
                    .await;
                }
                Err(Box::new(AbortError::new(error)) as BoxDynError)
            }
            .boxed();
        }
        let run = self.inner.call(task);
        async move {
            let result = run.await.map_err(Into::into);
            let settlement = match &result {
                Ok(_) => Settlement::Done,
                Err(err) if err.downcast_ref::<AbortError>().is_some() => Settlement::Dead {
                    error: err.to_string(),
                },
                Err(err) if !delivery.is_last_attempt() => Settlement::Retry {
                    delay: layer.settler.queue.config().backoff.delay(delivery.attempt),
                    error: err.to_string(),
                },
                Err(err) => Settlement::Dead {
                    error: err.to_string(),
                },
            };
            layer.settler.settle(id, settlement).await;
            drop(slot);
            result
        }
        .boxed()
    }
}
