//! The layer apalis puts around every worker of a [`crate::RedisBackend`]: it sees each
//! attempt's final result and settles the job in Redis (done, retry after backoff, or dead).

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use apalis_core::error::{AbortError, BoxDynError};
use apalis_core::task::Task;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::{DeadLetter, DeadLetterHook, Delivery};
use crate::client::{RedisQueue, Settlement};

/// Settles attempts of one worker's jobs. Built by the backend (`BackendConfig::middleware`).
#[derive(Clone)]
pub struct AckLayer {
    queue: RedisQueue,
    worker: Arc<str>,
    on_dead_letter: Option<DeadLetterHook>,
}

impl std::fmt::Debug for AckLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AckLayer")
            .field("queue", &self.queue.name())
            .field("worker", &self.worker)
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
    pub(crate) fn new(
        queue: RedisQueue,
        worker: Arc<str>,
        on_dead_letter: Option<DeadLetterHook>,
    ) -> Self {
        Self {
            queue,
            worker,
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
        if delivery.is_exhausted() {
            return async move {
                let error = AttemptsExhausted {
                    attempts: delivery.attempt - 1,
                };
                let reason = error.to_string();
                tracing::error!(queue = layer.queue.name(), %id, %reason, "dead-lettered");
                let settlement = Settlement::Dead {
                    error: reason.clone(),
                };
                settle_patiently(&layer.queue, &layer.worker, &id, &settlement).await;
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
                    delay: layer.queue.config().backoff.delay(delivery.attempt),
                    error: err.to_string(),
                },
                Err(err) => Settlement::Dead {
                    error: err.to_string(),
                },
            };
            settle_patiently(&layer.queue, &layer.worker, &id, &settlement).await;
            result
        }
        .boxed()
    }
}

/// Settles a job, retrying through a Redis outage up to the queue's grace. If it still
/// fails, the job stays in the worker's list and runs again once the lease expires: the
/// queue delivers at least once, and the job's own record must make a repeat harmless.
pub(crate) async fn settle_patiently(
    queue: &RedisQueue,
    worker: &str,
    id: &str,
    settlement: &Settlement,
) {
    let started = Instant::now();
    let mut pause = Duration::from_millis(50);
    loop {
        match queue.settle(worker, id, settlement).await {
            Ok(true) => return,
            Ok(false) => {
                tracing::warn!(queue = queue.name(), %id, "job was re-queued while it ran (lease lost); result not recorded in the queue");
                return;
            }
            Err(err) if started.elapsed() < queue.config().redis_grace => {
                tracing::warn!(queue = queue.name(), %id, error = %err, "cannot settle job; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(err) => {
                tracing::error!(queue = queue.name(), %id, error = %err, "giving up settling job; it will run again");
                return;
            }
        }
    }
}
