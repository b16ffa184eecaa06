//! The Redis queues, and the hand-off of accepted jobs to them.

use std::time::Duration;

use queue::{Backoff, QueueConfig, QueueError, QueueStats, RedisQueue};
use sqlx::PgPool;
use uuid::Uuid;

use super::store::{self, OutboxJob};
use super::{Envelope, Queue};
use crate::config::{RedisConfig, parse_duration};

/// How every queue of a process behaves (the worker sets these; producers use the defaults).
#[derive(Debug, Clone, clap::Args)]
pub struct QueueDefaults {
    /// How long a worker keeps its jobs without renewing its lease: a killed worker's jobs
    /// run again about this long after it died.
    #[arg(long = "job-lease", env = "WORKER_LEASE", default_value = "5s", value_parser = parse_duration)]
    pub lease: Duration,

    /// Backoff window after a job's first failure; it doubles per failure (with jitter).
    #[arg(long = "retry-base", env = "WORKER_RETRY_BASE", default_value = "1s", value_parser = parse_duration)]
    pub retry_base: Duration,

    /// The longest backoff between attempts.
    #[arg(long = "retry-max", env = "WORKER_RETRY_MAX", default_value = "5m", value_parser = parse_duration)]
    pub retry_max: Duration,

    /// How long Redis may stay unreachable before a worker gives up and exits non-zero.
    #[arg(long = "redis-grace", env = "WORKER_REDIS_GRACE", default_value = "60s", value_parser = parse_duration)]
    pub redis_grace: Duration,
}

impl Default for QueueDefaults {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(5),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            redis_grace: Duration::from_secs(60),
        }
    }
}

impl OutboxJob {
    /// The job as the queue takes it: its id, an [`Envelope`] and its attempts.
    pub fn to_queue_job(&self) -> Result<queue::NewJob, QueueError> {
        let envelope = Envelope {
            kind: self.kind,
            args: self.args.clone(),
        };
        Ok(queue::NewJob::new(self.id.to_string(), &envelope)?
            .max_attempts(self.max_attempts.unsigned_abs()))
    }
}

/// Why handing jobs to Redis failed. The jobs stay in the outbox and the relay retries.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    /// Redis did not take them.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// They reached Redis but could not be marked enqueued (the relay pushes them again,
    /// which the queue ignores).
    #[error("marking jobs enqueued: {0}")]
    Database(#[from] sqlx::Error),
}

/// One [`RedisQueue`] client per queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct QueueSet {
    queues: Vec<(Queue, RedisQueue)>,
}

impl QueueSet {
    /// Clients for every queue, on `QUEUE_REDIS_CLUSTER_NODES` when set, else on `REDIS_URL`;
    /// they connect lazily.
    pub fn new(redis: &RedisConfig, settings: &QueueDefaults) -> Result<Self, QueueError> {
        let queues = Queue::ALL
            .into_iter()
            .map(|queue| {
                let mut config = QueueConfig::new(queue.as_str(), redis.key_prefix.clone());
                config.lease = settings.lease;
                config.backoff = Backoff {
                    base: settings.retry_base,
                    max: settings.retry_max,
                };
                config.redis_grace = settings.redis_grace;
                config.response_timeout = redis.timeout;
                let client = if redis.queue_cluster_nodes.is_empty() {
                    RedisQueue::new(redis.url.expose(), config)?
                } else {
                    let nodes: Vec<String> = redis
                        .queue_cluster_nodes
                        .iter()
                        .map(|node| node.expose().clone())
                        .collect();
                    RedisQueue::cluster(&nodes, config)?
                };
                Ok((queue, client))
            })
            .collect::<Result<_, QueueError>>()?;
        Ok(Self { queues })
    }

    /// The client of `queue`.
    pub fn get(&self, queue: Queue) -> &RedisQueue {
        self.queues
            .iter()
            .find(|(candidate, _)| *candidate == queue)
            .map(|(_, handle)| handle)
            .expect("QueueSet::new builds every queue")
    }

    /// Hands accepted jobs to Redis, then marks their rows enqueued. Pushing is idempotent
    /// (by job id), so a job pushed twice (here and by the relay) still runs once.
    pub async fn dispatch(&self, db: &PgPool, jobs: &[OutboxJob]) -> Result<usize, DispatchError> {
        for queue in Queue::ALL {
            let batch: Vec<queue::NewJob> = jobs
                .iter()
                .filter(|job| job.queue == queue)
                .map(OutboxJob::to_queue_job)
                .collect::<Result<_, QueueError>>()?;
            if !batch.is_empty() {
                let added = self.get(queue).push(&batch).await?;
                metrics::counter!("jobs_enqueued_total", "queue" => queue.as_str())
                    .increment(added as u64);
            }
        }
        let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
        store::mark_enqueued(db, &ids).await?;
        Ok(jobs.len())
    }

    /// Counts per queue, in [`Queue::ALL`] order.
    pub async fn stats(&self) -> Result<Vec<(Queue, QueueStats)>, QueueError> {
        let mut all = Vec::with_capacity(self.queues.len());
        for (queue, handle) in &self.queues {
            all.push((*queue, handle.stats().await?));
        }
        Ok(all)
    }
}
