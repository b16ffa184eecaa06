//! The queue's Redis side: connections, scripts, and the operations producers, workers and
//! operators perform.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Script};
use serde::Serialize;
use tokio::sync::OnceCell;

use crate::config::QueueConfig;
use crate::error::QueueError;

/// How many jobs one enqueue script call carries: large enough to amortise round trips,
/// small enough that no single script holds Redis for long.
const ENQUEUE_CHUNK: usize = 500;
/// How many due delayed jobs one promotion moves.
pub(crate) const PROMOTE_CHUNK: usize = 500;
/// How many aged-out done jobs, and as many dead ones, one expiry call drops.
const EXPIRE_CHUNK: usize = 500;

/// A handle on one queue in Redis; cheap to clone. Producers push with it, operators read
/// [`QueueStats`] from it, and each worker's [`crate::RedisBackend`] is built from it.
///
/// It connects lazily: creating one never fails because Redis is down.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

struct Inner {
    config: QueueConfig,
    base: String,
    client: Client,
    conn: OnceCell<Conn>,
    scripts: Scripts,
}

/// One Redis server, or a Redis Cluster.
enum Client {
    Single(redis::Client),
    Cluster(Box<redis::cluster::ClusterClient>),
}

/// A connection to the queue's Redis: commands go to the server, or (cluster) to the node
/// that serves the queue's slot. Every key of one queue shares the hash tag `{name}`, so every
/// script and the blocking move touch one slot, on one node.
#[derive(Clone)]
pub(crate) enum Conn {
    /// Reconnects by itself; shared by a process's operations on the queue.
    Managed(ConnectionManager),
    /// A connection of its own (blocking commands).
    Multiplexed(MultiplexedConnection),
    /// A cluster connection (routes by key, follows slot moves).
    Cluster(redis::cluster_async::ClusterConnection),
}

impl redis::aio::ConnectionLike for Conn {
    fn req_packed_command<'a>(
        &'a mut self,
        cmd: &'a redis::Cmd,
    ) -> redis::RedisFuture<'a, redis::Value> {
        match self {
            Conn::Managed(conn) => conn.req_packed_command(cmd),
            Conn::Multiplexed(conn) => conn.req_packed_command(cmd),
            Conn::Cluster(conn) => conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> redis::RedisFuture<'a, Vec<redis::Value>> {
        match self {
            Conn::Managed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Multiplexed(conn) => conn.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(conn) => conn.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Managed(conn) => conn.get_db(),
            Conn::Multiplexed(conn) => conn.get_db(),
            Conn::Cluster(conn) => conn.get_db(),
        }
    }
}

struct Scripts {
    enqueue: Script,
    claim: Script,
    ack: Script,
    promote: Script,
    expire: Script,
    reap: Script,
    release: Script,
    heartbeat: Script,
    stats: Script,
    locate: Script,
    run_now: Script,
    forget: Script,
}

/// A script of `lua/`, after the prelude every script shares (key names, the clock, batched
/// reads and writes of job fields).
macro_rules! script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("lua/prelude.lua"),
            include_str!(concat!("lua/", $file))
        ))
    };
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: script!("enqueue.lua"),
            claim: script!("claim.lua"),
            ack: script!("ack.lua"),
            promote: script!("promote.lua"),
            expire: script!("expire.lua"),
            reap: script!("reap.lua"),
            release: script!("release.lua"),
            heartbeat: script!("heartbeat.lua"),
            stats: script!("stats.lua"),
            locate: script!("locate.lua"),
            run_now: script!("run_now.lua"),
            forget: script!("forget.lua"),
        }
    }
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("name", &self.inner.config.name)
            .finish_non_exhaustive()
    }
}

/// A job to push: its id (the idempotency key: pushing an id that is already in the queue
/// does nothing), its encoded arguments, and optionally its own attempt limit and start time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewJob {
    /// Unique id; the caller's record of the job (e.g. a database row) uses the same.
    pub id: String,
    /// JSON-encoded arguments.
    pub args: String,
    /// Attempts before the job is dead; the queue's default when `None`.
    pub max_attempts: Option<u32>,
    /// Not before this instant; now when `None`.
    pub run_at: Option<SystemTime>,
    /// Attempts already used: 0 for a new job; a job pushed again after Redis lost it keeps
    /// the count its record holds, so its limit still applies.
    pub attempts_used: u32,
}

impl NewJob {
    /// A job with JSON-encoded `args`, to run now with the queue's attempt limit.
    pub fn new<T: Serialize + ?Sized>(id: impl Into<String>, args: &T) -> Result<Self, QueueError> {
        Ok(Self {
            id: id.into(),
            args: serde_json::to_string(args)?,
            max_attempts: None,
            run_at: None,
            attempts_used: 0,
        })
    }

    /// Counts `attempts` as already used.
    #[must_use]
    pub fn attempts_used(mut self, attempts: u32) -> Self {
        self.attempts_used = attempts;
        self
    }

    /// Sets the attempt limit.
    #[must_use]
    pub fn max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = Some(max_attempts.max(1));
        self
    }

    /// Delays the job until `at`.
    #[must_use]
    pub fn run_at(mut self, at: SystemTime) -> Self {
        self.run_at = Some(at);
        self
    }
}

/// What operators see of a queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    /// Jobs waiting for a worker.
    pub ready: u64,
    /// Jobs waiting for their time: delayed pushes and retries in backoff.
    pub scheduled: u64,
    /// Jobs held by workers (running, or about to).
    pub in_flight: u64,
    /// Dead jobs still indexed.
    pub dead: u64,
    /// Workers with a live lease.
    pub workers: u64,
    /// Whether workers are stopped from starting its jobs ([`RedisQueue::pause`]).
    pub paused: bool,
    /// How long the oldest ready job has been waiting for a worker: the queue's latency.
    pub oldest_ready_age: Duration,
}

/// A job a worker has just started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claimed {
    pub id: String,
    pub args: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    pub max_attempts: u32,
    /// When the job became runnable (pushed, or its delay ended), Redis clock, ms.
    pub ready_at_ms: i64,
    /// When this attempt was claimed, Redis clock, ms.
    pub claimed_at_ms: i64,
}

/// What a claim got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Claims {
    /// Jobs started (none when the queue is empty).
    Started(Vec<Claimed>),
    /// The queue is paused: nothing was started.
    Paused,
}

/// How an attempt ended, as far as the queue is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Settlement {
    Done,
    Retry { delay: Duration, error: String },
    Dead { error: String },
}

impl RedisQueue {
    /// A handle on queue `config.name` on one Redis server; validates the URL, connects on
    /// first use.
    pub fn new(redis_url: &str, config: QueueConfig) -> Result<Self, QueueError> {
        Ok(Self::with_client(
            Client::Single(redis::Client::open(redis_url)?),
            config,
        ))
    }

    /// A handle on queue `config.name` on a Redis Cluster reached through any of `nodes`
    /// (URLs); validates them, connects on first use.
    pub fn cluster(nodes: &[String], config: QueueConfig) -> Result<Self, QueueError> {
        Ok(Self::with_client(
            Client::Cluster(Box::new(redis::cluster::ClusterClient::new(
                nodes.iter().map(String::as_str),
            )?)),
            config,
        ))
    }

    fn with_client(client: Client, config: QueueConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                base: config.base_key(),
                client,
                conn: OnceCell::new(),
                scripts: Scripts::new(),
                config,
            }),
        }
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.inner.config
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.config.name
    }

    pub(crate) async fn conn(&self) -> Result<Conn, QueueError> {
        let timeout = self.inner.config.response_timeout;
        let conn = self
            .inner
            .conn
            .get_or_try_init(|| async {
                Ok::<_, redis::RedisError>(match &self.inner.client {
                    Client::Single(client) => {
                        let config = ConnectionManagerConfig::new()
                            .set_connection_timeout(Some(timeout))
                            .set_response_timeout(Some(timeout))
                            .set_number_of_retries(1);
                        Conn::Managed(
                            ConnectionManager::new_with_config(client.clone(), config).await?,
                        )
                    }
                    Client::Cluster(client) => {
                        let config = redis::cluster::ClusterConfig::new()
                            .set_connection_timeout(timeout)
                            .set_response_timeout(timeout);
                        Conn::Cluster(client.get_async_connection_with_config(config).await?)
                    }
                })
            })
            .await?;
        Ok(conn.clone())
    }

    /// A connection of its own for blocking commands: a response timeout above the longest
    /// block, since a blocking move legitimately waits, and not shared, since it would hold up
    /// every other command.
    pub(crate) async fn blocking_conn(&self) -> Result<Conn, QueueError> {
        let config = &self.inner.config;
        Ok(match &self.inner.client {
            Client::Single(client) => {
                let settings = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(config.response_timeout))
                    .set_response_timeout(None);
                Conn::Multiplexed(
                    client
                        .get_multiplexed_async_connection_with_config(&settings)
                        .await?,
                )
            }
            Client::Cluster(client) => {
                let settings = redis::cluster::ClusterConfig::new()
                    .set_connection_timeout(config.response_timeout)
                    .set_response_timeout(config.block_timeout + config.response_timeout * 2);
                Conn::Cluster(client.get_async_connection_with_config(settings).await?)
            }
        })
    }

    pub(crate) fn ready_key(&self) -> String {
        format!("{}ready", self.inner.base)
    }

    fn paused_key(&self) -> String {
        format!("{}paused", self.inner.base)
    }

    pub(crate) fn processing_key(&self, worker: &str) -> String {
        format!("{}proc:{worker}", self.inner.base)
    }

    /// Pushes jobs; returns how many were new (ids already present are skipped).
    pub async fn push(&self, jobs: &[NewJob]) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let default_max = self.inner.config.default_max_attempts;
        let mut added = 0;
        for chunk in jobs.chunks(ENQUEUE_CHUNK) {
            let mut invocation = self.inner.scripts.enqueue.prepare_invoke();
            invocation.key(&self.inner.base).arg(&self.inner.base);
            for job in chunk {
                invocation
                    .arg(&job.id)
                    .arg(&job.args)
                    .arg(job.max_attempts.unwrap_or(default_max))
                    .arg(job.run_at.map_or(0, unix_ms))
                    .arg(job.attempts_used);
            }
            added += invocation.invoke_async::<usize>(&mut conn).await?;
        }
        Ok(added)
    }

    /// Which of `ids` Redis does not hold (see `lua/locate.lua`): jobs it lost, which their
    /// owner's record should push again. Asks about 500 ids per script call.
    pub async fn missing(&self, ids: &[String]) -> Result<Vec<String>, QueueError> {
        let mut conn = self.conn().await?;
        let mut missing = Vec::new();
        for chunk in ids.chunks(ENQUEUE_CHUNK) {
            let mut invocation = self.inner.scripts.locate.prepare_invoke();
            invocation.key(&self.inner.base).arg(&self.inner.base);
            for id in chunk {
                invocation.arg(id);
            }
            missing.extend(invocation.invoke_async::<Vec<String>>(&mut conn).await?);
        }
        Ok(missing)
    }

    /// Counts for operators.
    pub async fn stats(&self) -> Result<QueueStats, QueueError> {
        let mut conn = self.conn().await?;
        let (ready, scheduled, in_flight, dead, workers, paused, oldest_ready_age_ms): (
            u64,
            u64,
            u64,
            u64,
            u64,
            u8,
            u64,
        ) = self
            .inner
            .scripts
            .stats
            .prepare_invoke()
            .key(&self.inner.base)
            .arg(&self.inner.base)
            .invoke_async(&mut conn)
            .await?;
        Ok(QueueStats {
            ready,
            scheduled,
            in_flight,
            dead,
            workers,
            paused: paused == 1,
            oldest_ready_age: Duration::from_millis(oldest_ready_age_ms),
        })
    }

    /// Stops workers from starting this queue's jobs until [`RedisQueue::resume`]: their next
    /// claim (within a block timeout, 1 s by default) starts nothing. Producers still push.
    pub async fn pause(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::cmd("SET")
            .arg(self.paused_key())
            .arg(1)
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Lets workers start this queue's jobs again.
    pub async fn resume(&self) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        redis::cmd("DEL")
            .arg(self.paused_key())
            .query_async::<()>(&mut conn)
            .await?;
        Ok(())
    }

    /// Makes jobs that wait for their time (delayed, or in backoff after a failure) ready now;
    /// returns how many were waiting. Others (running, finished, unknown) are left alone.
    pub async fn run_now(&self, ids: &[String]) -> Result<usize, QueueError> {
        self.per_chunk(&self.inner.scripts.run_now, ids).await
    }

    /// Deletes finished jobs (done or dead) from Redis, dead index included; returns how many.
    /// Waiting or running jobs are left alone.
    pub async fn forget(&self, ids: &[String]) -> Result<usize, QueueError> {
        self.per_chunk(&self.inner.scripts.forget, ids).await
    }

    async fn per_chunk(&self, script: &Script, ids: &[String]) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let mut total = 0;
        for chunk in ids.chunks(ENQUEUE_CHUNK) {
            let mut invocation = script.prepare_invoke();
            invocation.key(&self.inner.base).arg(&self.inner.base);
            for id in chunk {
                invocation.arg(id);
            }
            total += invocation.invoke_async::<usize>(&mut conn).await?;
        }
        Ok(total)
    }

    /// Takes up to `count` of the oldest ready jobs for `worker`; `given` (already moved into
    /// the worker's list by a blocking move; handed back if the queue is paused) comes first.
    pub(crate) async fn claim(
        &self,
        worker: &str,
        given: Option<&str>,
        count: usize,
    ) -> Result<Claims, QueueError> {
        let mut conn = self.conn().await?;
        let reply: Vec<redis::Value> = self
            .inner
            .scripts
            .claim
            .prepare_invoke()
            .key(&self.inner.base)
            .arg(&self.inner.base)
            .arg(worker)
            .arg(self.inner.config.lease.as_millis() as u64)
            .arg(given.unwrap_or(""))
            .arg(count.max(1))
            .invoke_async(&mut conn)
            .await?;
        parse_claims(&reply)
    }

    /// Settles attempts of `worker`'s jobs in one script call; per job, in order, `false`
    /// when it was no longer the worker's (its lease had expired and the job was handed to
    /// another worker).
    pub(crate) async fn settle(
        &self,
        worker: &str,
        settlements: &[(String, Settlement)],
    ) -> Result<Vec<bool>, QueueError> {
        let config = &self.inner.config;
        let mut invocation = self.inner.scripts.ack.prepare_invoke();
        invocation
            .key(&self.inner.base)
            .arg(&self.inner.base)
            .arg(worker)
            .arg(config.dead_cap);
        for (id, settlement) in settlements {
            let (outcome, delay, error) = match settlement {
                Settlement::Done => ("done", Duration::ZERO, ""),
                Settlement::Retry { delay, error } => ("retry", *delay, error.as_str()),
                Settlement::Dead { error } => ("dead", Duration::ZERO, error.as_str()),
            };
            invocation
                .arg(id)
                .arg(outcome)
                .arg(delay.as_millis() as u64)
                .arg(truncate(error, 2000));
        }
        let mut conn = self.conn().await?;
        let settled: Vec<u8> = invocation.invoke_async(&mut conn).await?;
        Ok(settled.into_iter().map(|one| one == 1).collect())
    }

    /// Renews `worker`'s lease.
    pub(crate) async fn heartbeat(&self, worker: &str) -> Result<(), QueueError> {
        let mut conn = self.conn().await?;
        self.inner
            .scripts
            .heartbeat
            .prepare_invoke()
            .key(&self.inner.base)
            .arg(&self.inner.base)
            .arg(worker)
            .arg(self.inner.config.lease.as_millis() as u64)
            .invoke_async::<i64>(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves every due delayed job to the ready list, a chunk at a time; returns how many.
    pub async fn promote_due(&self) -> Result<usize, QueueError> {
        self.until_short_chunk(&self.inner.scripts.promote, &[], PROMOTE_CHUNK)
            .await
    }

    /// Drops the data of finished jobs past their time (`finished_ttl` for done jobs, `dead_ttl`
    /// for dead ones), a chunk at a time; returns how many jobs.
    pub async fn expire_finished(&self) -> Result<usize, QueueError> {
        let config = &self.inner.config;
        let ttls = [
            config.finished_ttl.as_secs().max(1),
            config.dead_ttl.as_secs().max(1),
        ];
        self.until_short_chunk(&self.inner.scripts.expire, &ttls, EXPIRE_CHUNK)
            .await
    }

    /// Calls `script` (ARGV: base, `args`, `chunk`) until a call handles fewer than `chunk`
    /// jobs; returns how many all calls handled.
    async fn until_short_chunk(
        &self,
        script: &Script,
        args: &[u64],
        chunk: usize,
    ) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let mut total = 0;
        loop {
            let mut invocation = script.prepare_invoke();
            invocation.key(&self.inner.base).arg(&self.inner.base);
            for arg in args {
                invocation.arg(arg);
            }
            let handled: usize = invocation.arg(chunk).invoke_async(&mut conn).await?;
            total += handled;
            if handled < chunk {
                return Ok(total);
            }
        }
    }

    /// Re-queues the jobs of workers whose lease expired; returns how many jobs.
    pub async fn reap_expired(&self) -> Result<usize, QueueError> {
        let mut conn = self.conn().await?;
        let mut total = 0;
        loop {
            let (workers, moved): (usize, usize) = self
                .inner
                .scripts
                .reap
                .prepare_invoke()
                .key(&self.inner.base)
                .arg(&self.inner.base)
                .arg(10)
                .invoke_async(&mut conn)
                .await?;
            total += moved;
            if workers < 10 {
                return Ok(total);
            }
        }
    }

    /// Hands back what a stopping worker holds but never started.
    pub(crate) async fn release(&self, worker: &str) -> Result<usize, QueueError> {
        let linger = self.inner.config.block_timeout + self.inner.config.response_timeout;
        let mut conn = self.conn().await?;
        Ok(self
            .inner
            .scripts
            .release
            .prepare_invoke()
            .key(&self.inner.base)
            .arg(&self.inner.base)
            .arg(worker)
            .arg(linger.as_millis() as u64)
            .invoke_async(&mut conn)
            .await?)
    }
}

/// Reads the claim script's flat reply: five values per job, then the Redis clock; or
/// `{'paused'}`.
fn parse_claims(reply: &[redis::Value]) -> Result<Claims, QueueError> {
    use redis::FromRedisValue;
    let Some((now, jobs)) = reply.split_last() else {
        return Ok(Claims::Started(Vec::new()));
    };
    if jobs.is_empty() && matches!(now, redis::Value::BulkString(word) if word == b"paused") {
        return Ok(Claims::Paused);
    }
    let claimed_at_ms = i64::from_redis_value_ref(now)?;
    jobs.chunks_exact(5)
        .map(|fields| {
            Ok(Claimed {
                id: String::from_redis_value_ref(&fields[0])?,
                args: String::from_redis_value_ref(&fields[1])?,
                attempt: u32::from_redis_value_ref(&fields[2])?,
                max_attempts: u32::from_redis_value_ref(&fields[3])?,
                ready_at_ms: i64::from_redis_value_ref(&fields[4])?,
                claimed_at_ms,
            })
        })
        .collect::<Result<_, QueueError>>()
        .map(Claims::Started)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}
