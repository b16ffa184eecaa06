//! The worker side: a reliable consumer of one queue, behind apalis's `Backend` trait.

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use apalis_core::backend::finalize::Ephemeral;
use apalis_core::backend::{Backend, BackendConfig};
use apalis_core::task::Task;
use apalis_core::task::builder::TaskBuilder;
use apalis_core::task::task_id::TaskId;
use apalis_core::worker::context::WorkerContext;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;

use crate::client::{Claimed, Claims, Conn, NewJob, RedisQueue, Settlement};
use crate::error::QueueError;
use crate::layer::{AckLayer, Settler};

/// What a job's run knows about its delivery; in every task's data (`Data<Delivery>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The queue it came from.
    pub queue: Arc<str>,
    /// The worker running it.
    pub worker: Arc<str>,
    /// This attempt's number, from 1. Runs lost with their worker count too.
    pub attempt: u32,
    /// Attempts allowed; the job is dead after the last.
    pub max_attempts: u32,
    /// When the job became runnable: pushed, or its delay or backoff ended.
    pub ready_at: SystemTime,
    /// When this attempt was claimed.
    pub claimed_at: SystemTime,
}

impl Delivery {
    /// How long the job waited for a worker (by Redis's clock).
    pub fn wait(&self) -> Duration {
        self.claimed_at
            .duration_since(self.ready_at)
            .unwrap_or_default()
    }

    /// Whether a failure of this attempt leaves the job dead rather than retried.
    pub fn is_last_attempt(&self) -> bool {
        self.attempt >= self.max_attempts
    }

    /// Whether every allowed attempt was already used (runs lost with their worker): the
    /// job is dead-lettered without running.
    pub fn is_exhausted(&self) -> bool {
        self.attempt > self.max_attempts
    }
}

/// A job the queue dead-lettered without running it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// The job's id.
    pub id: String,
    /// Attempts counted, including runs lost with their worker.
    pub attempts: u32,
    /// Why it was not run.
    pub reason: String,
}

/// Called for every job dead-lettered without a run, so the owner of the job's record can
/// mark it too (the run that would have done so never happens).
pub type DeadLetterHook = Arc<dyn Fn(DeadLetter) -> BoxFuture<'static, ()> + Send + Sync>;

/// Called once when a worker gives up because Redis stayed unreachable past its grace.
pub type FailureHook = Arc<dyn Fn(&QueueError) + Send + Sync>;

/// One worker's consumer of a [`RedisQueue`]: claims jobs into its own processing list under
/// a lease it renews in the background, hands them to apalis as `Task<Args>`, and (through
/// [`AckLayer`]) settles each one as done, retried with backoff, or dead.
///
/// Each claim takes as many jobs as the worker has free slots, in one script call, and
/// finished jobs are settled many per call: a busy worker pays a few Redis calls per batch of
/// jobs, and no job waits in a worker behind a busy one. An idle worker blocks on Redis
/// (`BLMOVE`) and so starts a new job as soon as it is pushed.
/// Every backend needs a unique worker id; [`RedisBackend::new`] makes one.
pub struct RedisBackend<Args> {
    queue: RedisQueue,
    worker: Arc<str>,
    concurrency: usize,
    settler: Arc<Settler>,
    buffer: VecDeque<Claimed>,
    fetch: Option<BoxFuture<'static, Result<Vec<Claimed>, QueueError>>>,
    blocking: Arc<tokio::sync::Mutex<Option<Conn>>>,
    background: Vec<JoinHandle<()>>,
    closing: Option<BoxFuture<'static, ()>>,
    push_buffer: Vec<NewJob>,
    push: Option<BoxFuture<'static, Result<usize, QueueError>>>,
    on_dead_letter: Option<DeadLetterHook>,
    on_failure: Option<FailureHook>,
    _args: PhantomData<fn() -> Args>,
}

impl<Args> std::fmt::Debug for RedisBackend<Args> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("queue", &self.queue.name())
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl<Args> RedisBackend<Args> {
    /// A consumer of `queue` with a fresh, unique worker id.
    pub fn new(queue: RedisQueue) -> Self {
        let worker: Arc<str> = format!(
            "{}-{}-{}",
            queue.name(),
            std::process::id(),
            uuid::Uuid::now_v7().simple()
        )
        .into();
        Self {
            settler: Arc::new(Settler::new(queue.clone(), worker.clone())),
            queue,
            worker,
            concurrency: 1,
            buffer: VecDeque::new(),
            fetch: None,
            blocking: Arc::default(),
            background: Vec::new(),
            closing: None,
            push_buffer: Vec::new(),
            push: None,
            on_dead_letter: None,
            on_failure: None,
            _args: PhantomData,
        }
    }

    /// The most jobs the worker runs at once: the concurrency apalis's `WorkerBuilder` is
    /// given (default 1). A claim takes at most the slots that are free, so a larger value
    /// than the worker's would leave claimed jobs waiting for a slot.
    #[must_use]
    pub fn concurrency(mut self, jobs: usize) -> Self {
        self.concurrency = jobs.max(1);
        self
    }

    /// Sets the hook called for jobs dead-lettered without running.
    #[must_use]
    pub fn on_dead_letter(mut self, hook: DeadLetterHook) -> Self {
        self.on_dead_letter = Some(hook);
        self
    }

    /// Sets the hook called when the worker gives up on Redis.
    #[must_use]
    pub fn on_failure(mut self, hook: FailureHook) -> Self {
        self.on_failure = Some(hook);
        self
    }

    /// This worker's id (its lease and processing list are named after it).
    pub fn worker_id(&self) -> &str {
        &self.worker
    }

    /// Starts the lease heartbeat and the maintenance loop (promotion of due jobs, reaping
    /// of dead workers, expiry of finished jobs). They run on their own tasks so that neither
    /// busy jobs nor an idle blocking wait can delay a heartbeat.
    fn start_background(&mut self) {
        let config = self.queue.config().clone();
        let queue = self.queue.clone();
        let worker = self.worker.clone();
        let heartbeat = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(config.lease / 3);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                if let Err(err) = queue.heartbeat(&worker).await {
                    tracing::warn!(queue = queue.name(), error = %err, "lease renewal failed");
                }
            }
        });
        let queue = self.queue.clone();
        let maintenance = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(queue.config().maintenance_interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                match queue.reap_expired().await {
                    Ok(0) => {}
                    Ok(jobs) => {
                        tracing::warn!(queue = queue.name(), jobs, "re-queued jobs of lost workers")
                    }
                    Err(err) => tracing::debug!(queue = queue.name(), error = %err, "reap failed"),
                }
                if let Err(err) = queue.promote_due().await {
                    tracing::debug!(queue = queue.name(), error = %err, "promotion failed");
                }
                if let Err(err) = queue.expire_finished().await {
                    tracing::debug!(queue = queue.name(), error = %err, "expiry failed");
                }
            }
        });
        self.background = vec![heartbeat, maintenance];
    }

    fn stop_background(&mut self) {
        for task in self.background.drain(..) {
            task.abort();
        }
    }
}

impl<Args> Drop for RedisBackend<Args> {
    fn drop(&mut self) {
        self.stop_background();
    }
}

/// How often a worker of a paused queue asks whether it may start jobs again.
const PAUSED_POLL: Duration = Duration::from_millis(250);

/// Claims the next jobs, blocking on Redis while the queue is empty, waiting while it is
/// paused, and riding out Redis outages up to the queue's grace.
async fn next_claims(
    queue: RedisQueue,
    worker: Arc<str>,
    blocking: Arc<tokio::sync::Mutex<Option<Conn>>>,
    settler: Arc<Settler>,
    concurrency: usize,
) -> Result<Vec<Claimed>, QueueError> {
    let config = queue.config().clone();
    let ready = queue.ready_key();
    let processing = queue.processing_key(&worker);
    // An id moved by a blocking move whose claim failed: claimed first once Redis is back,
    // so it never sits forgotten in this worker's list.
    let mut unclaimed: Option<String> = None;
    let mut failing_since: Option<Instant> = None;
    let mut pause = Duration::from_millis(50);
    let mut paused = false;
    loop {
        if settler.held() > 0 {
            // Jobs of this worker that finished together free their slots one poll at a time;
            // a yield lets them all count before the claim is sized.
            tokio::task::yield_now().await;
        }
        // apalis asks for a task only when the worker has a free slot, hence at least 1.
        let free = concurrency.saturating_sub(settler.held()).max(1);
        let attempt = async {
            if let Some(id) = &unclaimed {
                return queue.claim(&worker, Some(id), free).await;
            }
            let claims = queue.claim(&worker, None, free).await?;
            if !matches!(&claims, Claims::Started(jobs) if jobs.is_empty()) {
                return Ok(claims);
            }
            let mut guard = blocking.lock().await;
            if guard.is_none() {
                *guard = Some(queue.blocking_conn().await?);
            }
            let conn = guard.as_mut().expect("connected above");
            let moved: Option<String> = redis::cmd("BLMOVE")
                .arg(&ready)
                .arg(&processing)
                .arg("RIGHT")
                .arg("LEFT")
                .arg(config.block_timeout.as_secs_f64())
                .query_async(conn)
                .await
                .inspect_err(|_| *guard = None)?;
            drop(guard);
            match moved {
                Some(id) => {
                    unclaimed = Some(id.clone());
                    queue.claim(&worker, Some(&id), free).await
                }
                None => Ok(Claims::Started(Vec::new())),
            }
        };
        match attempt.await {
            Ok(claims) => {
                unclaimed = None;
                if failing_since.take().is_some() {
                    tracing::info!(queue = queue.name(), "redis reachable again");
                }
                pause = Duration::from_millis(50);
                match claims {
                    Claims::Started(jobs) => {
                        if std::mem::take(&mut paused) {
                            tracing::info!(queue = queue.name(), "queue resumed");
                        }
                        if !jobs.is_empty() {
                            return Ok(jobs);
                        }
                    }
                    Claims::Paused => {
                        if !std::mem::replace(&mut paused, true) {
                            tracing::info!(
                                queue = queue.name(),
                                "queue paused; starting nothing until it is resumed"
                            );
                        }
                        tokio::time::sleep(PAUSED_POLL).await;
                    }
                }
            }
            Err(err) => {
                let since = *failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > config.redis_grace {
                    return Err(QueueError::Unreachable {
                        seconds: config.redis_grace.as_secs(),
                        last: err.to_string(),
                    });
                }
                tracing::warn!(queue = queue.name(), error = %err, "cannot fetch jobs; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
}

fn system_time(unix_ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or_default())
}

impl<Args: DeserializeOwned> RedisBackend<Args> {
    /// Turns a claim into a task, or dead-letters it when its arguments cannot be decoded
    /// (a task that can never run must not stop the worker or come back).
    fn task_from(&self, claimed: Claimed) -> Option<Task<Args>> {
        match serde_json::from_str::<Args>(&claimed.args) {
            Ok(args) => {
                let delivery = Delivery {
                    queue: self.queue.name().into(),
                    worker: self.worker.clone(),
                    attempt: claimed.attempt,
                    max_attempts: claimed.max_attempts,
                    ready_at: system_time(claimed.ready_at_ms),
                    claimed_at: system_time(claimed.claimed_at_ms),
                };
                Some(
                    TaskBuilder::new(args)
                        .task_id(TaskId::from_string(claimed.id))
                        // apalis counts the attempt itself when the run starts.
                        .attempt(claimed.attempt.saturating_sub(1) as usize)
                        .max_attempts(claimed.max_attempts as usize)
                        .data(delivery)
                        .build(),
                )
            }
            Err(err) => {
                // It never takes a slot.
                self.settler.release(1);
                let settler = self.settler.clone();
                let queue = self.queue.clone();
                let hook = self.on_dead_letter.clone();
                let letter = DeadLetter {
                    id: claimed.id,
                    attempts: claimed.attempt,
                    reason: format!("arguments cannot be decoded: {err}"),
                };
                tracing::error!(queue = queue.name(), id = %letter.id, reason = %letter.reason, "dead-lettered");
                tokio::spawn(async move {
                    let settlement = Settlement::Dead {
                        error: letter.reason.clone(),
                    };
                    settler.settle(letter.id.clone(), settlement).await;
                    if let Some(hook) = hook {
                        hook(letter).await;
                    }
                });
                None
            }
        }
    }
}

impl<Args: DeserializeOwned + Send + 'static> Backend for RedisBackend<Args> {
    type Task = Task<Args>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        if self.background.is_empty() {
            self.start_background();
        }
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        loop {
            while let Some(claimed) = self.buffer.pop_front() {
                if let Some(task) = self.task_from(claimed) {
                    return Poll::Ready(Some(Ok(task)));
                }
            }
            let fetch = self.fetch.get_or_insert_with(|| {
                next_claims(
                    self.queue.clone(),
                    self.worker.clone(),
                    self.blocking.clone(),
                    self.settler.clone(),
                    self.concurrency,
                )
                .boxed()
            });
            match fetch.poll_unpin(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(result) => {
                    self.fetch = None;
                    match result {
                        Ok(claims) => {
                            self.settler.hold(claims.len());
                            self.buffer.extend(claims);
                        }
                        Err(err) => {
                            if let Some(hook) = &self.on_failure {
                                hook(&err);
                            }
                            return Poll::Ready(Some(Err(err)));
                        }
                    }
                }
            }
        }
    }

    fn poll_close(
        &mut self,
        cx: &mut Context<'_>,
        _worker: &WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        let closing = self.closing.get_or_insert_with(|| {
            // A fetch in progress is abandoned; whatever it (or the local buffer) took is
            // handed back, uncounted, by the release below.
            self.fetch = None;
            self.settler.release(self.buffer.len());
            self.buffer.clear();
            let queue = self.queue.clone();
            let worker = self.worker.clone();
            let bound = queue.config().response_timeout * 2;
            async move {
                match tokio::time::timeout(bound, queue.release(&worker)).await {
                    Ok(Ok(0)) => {}
                    Ok(Ok(jobs)) => {
                        tracing::info!(queue = queue.name(), jobs, "handed back unstarted jobs")
                    }
                    Ok(Err(err)) => {
                        tracing::warn!(queue = queue.name(), error = %err, "release failed; the lease will expire")
                    }
                    Err(_) => tracing::warn!(queue = queue.name(), "release timed out; the lease will expire"),
                }
            }
            .boxed()
        });
        match closing.poll_unpin(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.stop_background();
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl<Args> BackendConfig for RedisBackend<Args> {
    type Args = Args;
    type Id = String;
    // Arguments are decoded inside the backend rather than by apalis's durable wrapper, so
    // an undecodable job is dead-lettered instead of failing the whole worker.
    type Kind = Ephemeral;
    type Config = crate::QueueConfig;
    type Layer = AckLayer;

    fn config(&self) -> &Self::Config {
        self.queue.config()
    }

    fn middleware(&mut self, _worker: &mut WorkerContext) -> Self::Layer {
        AckLayer::new(self.settler.clone(), self.on_dead_letter.clone())
    }
}

/// Pushing through the backend (apalis's `TaskSink` methods come from this): tasks are
/// buffered by `start_send` and written in chunks on flush. A task without an id gets a
/// UUIDv7; its `max_attempts` and `run_at` are kept.
impl<Args: Serialize> futures_util::Sink<Task<Args>> for RedisBackend<Args> {
    type Error = QueueError;

    fn poll_ready(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn start_send(self: Pin<&mut Self>, task: Task<Args>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let id = task
            .task_id()
            .map(ToString::to_string)
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
        let mut job = NewJob::new(id, &task.args)?;
        if let Some(max) = task.max_attempts() {
            job = job.max_attempts(u32::try_from(max).unwrap_or(u32::MAX));
        }
        if let Some(at) = task.run_at() {
            job = job.run_at(UNIX_EPOCH + Duration::from_secs(at));
        }
        this.push_buffer.push(job);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = self.get_mut();
        loop {
            if let Some(push) = this.push.as_mut() {
                let result = futures_util::ready!(push.poll_unpin(cx));
                this.push = None;
                result?;
            }
            if this.push_buffer.is_empty() {
                return Poll::Ready(Ok(()));
            }
            let jobs = std::mem::take(&mut this.push_buffer);
            let queue = this.queue.clone();
            this.push = Some(async move { queue.push(&jobs).await }.boxed());
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.poll_flush(cx)
    }
}
