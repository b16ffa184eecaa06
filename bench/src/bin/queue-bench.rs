//! `queue-bench`: no-op jobs through the Redis queue, measured in one process.
//!
//! For each concurrency it measures:
//!
//! - **transport**: a backlog of no-op jobs pushed with [`RedisQueue::push`], drained by one
//!   [`RedisBackend`] worker (claim script, handler, ack script); jobs/s from the first
//!   handler start until the last job is settled in Redis;
//! - **tracked**: the full path of an API job: a `jobs` row per job (`queued`), handed to
//!   Redis with [`QueueSet::dispatch`] (the API's push after commit, which also marks the rows
//!   enqueued), drained by the worker's own stack ([`TrackingLayer`], timeout, catch-panic),
//!   so each row goes `running` then `succeeded`; jobs/s as above; once more against a
//!   Postgres that waits for its WAL on disk (`fsync=on`, `synchronous_commit=on`, as
//!   production runs) when `QUEUE_BENCH_DURABLE_DATABASE_URL` names one;
//! - **pickup latency** on an idle worker: one job at a time, a gap between pushes, from the
//!   start of the push call to the start of the handler (one process, one clock); for the
//!   tracked stack from the start of `QueueSet::dispatch` to the handler (after the row is
//!   `running`).
//!
//! It prints a markdown report on stdout (progress on stderr). `scripts/bench.sh` runs it
//! (`make bench`) beside `redis-benchmark` and passes the trivial-script ceiling in
//! `QUEUE_BENCH_CEILING` (EVAL ops/s) for the ratio column and `QUEUE_BENCH_EVAL_REDIS_US`
//! (Redis's CPU per trivial EVAL then) to express each job's Redis CPU in script calls.
//!
//! Settings (environment): `DATABASE_URL` (a database it may write to; migrations are
//! applied), `REDIS_URL`, `QUEUE_BENCH_JOBS` (20000 per transport run),
//! `QUEUE_BENCH_TRACKED_JOBS` (10000 per tracked run), `QUEUE_BENCH_SAMPLES` (500 per latency
//! run), `QUEUE_BENCH_GAP_MS` (3, between latency pushes), `QUEUE_BENCH_CONCURRENCY`
//! (`1,16,64,256`), `QUEUE_BENCH_CEILING` and `QUEUE_BENCH_EVAL_REDIS_US` (optional),
//! `QUEUE_BENCH_DURABLE_DATABASE_URL` (optional, migrated like `DATABASE_URL`). Keys go under
//! a fresh `bench:<uuid>:` prefix and are deleted at the end; rows are deleted too.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use apalis::layers::catch_panic::{CatchPanicLayer, PanicError};
use apalis::prelude::*;
use common::config::{DatabaseConfig, RedisConfig};
use common::jobs::queues::{QueueDefaults, QueueSet};
use common::jobs::store::OutboxJob;
use common::jobs::{JobArgs, JobKind, Queue};
use common::market::jobs::BulkFetch;
use common::redis::Redis;
use queue::{NewJob, QueueConfig, RedisBackend, RedisQueue};
use serde_json::{Value, json};
use sqlx::PgPool;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;
use worker::jobs::rows::JobRows;
use worker::jobs::tracking::TrackingLayer;

// The worker binary's allocator, so the process costs what the worker's would.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bound on one drain; far above what any run should take.
const DRAIN_LIMIT: Duration = Duration::from_secs(120);
/// The worker's default job timeout (`WORKER_JOB_TIMEOUT`).
const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// Rows inserted per statement when filling the `jobs` table.
const INSERT_CHUNK: usize = 5000;
/// Jobs per `QueueSet::dispatch` call when filling a tracked backlog.
const DISPATCH_CHUNK: usize = 500;

#[derive(Debug)]
struct Settings {
    database_url: String,
    durable_database_url: Option<String>,
    redis_url: String,
    jobs: usize,
    tracked_jobs: usize,
    samples: usize,
    gap: Duration,
    concurrency: Vec<usize>,
    ceiling: Option<f64>,
    /// Redis's CPU per trivial `EVAL` in the ceiling run, µs.
    eval_redis_us: Option<f64>,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={value:?} is not valid")),
        Err(_) => Ok(default),
    }
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let concurrency = std::env::var("QUEUE_BENCH_CONCURRENCY")
            .unwrap_or_else(|_| "1,16,64,256".to_owned())
            .split(',')
            .map(|c| c.trim().parse::<usize>().ok().filter(|&c| c > 0))
            .collect::<Option<Vec<_>>>()
            .context("QUEUE_BENCH_CONCURRENCY must be positive integers, comma-separated")?;
        let optional_number = |name: &str| -> anyhow::Result<Option<f64>> {
            match std::env::var(name) {
                Ok(value) if !value.trim().is_empty() => Ok(Some(
                    value
                        .trim()
                        .parse::<f64>()
                        .with_context(|| format!("{name} is not a number"))?,
                )),
                _ => Ok(None),
            }
        };
        let ceiling = optional_number("QUEUE_BENCH_CEILING")?;
        let eval_redis_us = optional_number("QUEUE_BENCH_EVAL_REDIS_US")?.filter(|us| *us > 0.0);
        Ok(Self {
            database_url: std::env::var("DATABASE_URL").unwrap_or_else(|_| {
                "postgres://coinpulse:coinpulse@127.0.0.1:5432/coinpulse".to_owned()
            }),
            durable_database_url: std::env::var("QUEUE_BENCH_DURABLE_DATABASE_URL")
                .ok()
                .filter(|url| !url.trim().is_empty()),
            redis_url: std::env::var("REDIS_URL")
                .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned()),
            jobs: env_or("QUEUE_BENCH_JOBS", 20_000)?,
            tracked_jobs: env_or("QUEUE_BENCH_TRACKED_JOBS", 10_000)?,
            samples: env_or("QUEUE_BENCH_SAMPLES", 500)?,
            gap: Duration::from_millis(env_or("QUEUE_BENCH_GAP_MS", 3)?),
            concurrency,
            ceiling,
            eval_redis_us,
        })
    }
}

// ---- the handler and what it observes ------------------------------------------------------

/// What the no-op handler records: when the first job started, how many ran, and (for the
/// latency runs) when each job, by its `seq`, started.
#[derive(Debug)]
struct Probe {
    target: usize,
    first_start: OnceLock<Instant>,
    ran: AtomicUsize,
    starts: Option<Mutex<Vec<Option<Instant>>>>,
    all_ran: Notify,
}

impl Probe {
    /// Counts `target` runs; with `by_seq`, also records each job's start by its `seq`.
    fn new(target: usize, by_seq: bool) -> Arc<Self> {
        Arc::new(Self {
            target,
            first_start: OnceLock::new(),
            ran: AtomicUsize::new(0),
            starts: by_seq.then(|| Mutex::new(vec![None; target])),
            all_ran: Notify::new(),
        })
    }
}

/// The no-op job: notes its start and returns.
async fn noop(job: Value, probe: Data<Arc<Probe>>) -> Result<Value, BoxDynError> {
    let now = Instant::now();
    probe.first_start.get_or_init(|| now);
    // Transport pushes carry `{"seq"}`; tracked ones the envelope `{"kind", "args": {"seq"}}`.
    let seq = job
        .get("seq")
        .or_else(|| job.get("args").and_then(|args| args.get("seq")))
        .and_then(Value::as_u64);
    if let (Some(starts), Some(seq)) = (&probe.starts, seq)
        && let Some(slot) = starts.lock().expect("starts lock").get_mut(seq as usize)
    {
        *slot = Some(now);
    }
    if probe.ran.fetch_add(1, Ordering::AcqRel) + 1 == probe.target {
        probe.all_ran.notify_one();
    }
    Ok(Value::Null)
}

/// A worker running on its own task until [`Running::stop`].
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Result<(), WorkerError>>,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Self
    where
        F: Future<Output = Result<(), WorkerError>> + Send + 'static,
    {
        let (stop, stopped) = oneshot::channel();
        Self {
            stop,
            task: tokio::spawn(run(stopped)),
        }
    }

    /// Stops the worker gracefully (in-flight jobs finish, unstarted ones are handed back).
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(err))) => eprintln!("queue-bench: worker stopped with an error: {err}"),
            Ok(Err(err)) => eprintln!("queue-bench: worker task failed: {err}"),
            Err(_) => {
                eprintln!("queue-bench: worker did not stop within 10 s; aborted");
                abort.abort();
            }
        }
    }
}

async fn stop_signal(stopped: oneshot::Receiver<()>) -> Result<(), WorkerError> {
    let _ = stopped.await;
    Ok(())
}

/// A worker as in `queue/tests`: the backend's own ack layer around the handler.
fn transport_worker(queue: &RedisQueue, concurrency: usize, probe: &Arc<Probe>) -> Running {
    let backend = RedisBackend::<Value>::new(queue.clone()).concurrency(concurrency);
    let worker = WorkerBuilder::new(backend.worker_id().to_owned())
        .backend(backend)
        .concurrency(concurrency)
        .data(probe.clone())
        .build(noop);
    Running::spawn(|stopped| worker.run_until(stop_signal(stopped)))
}

/// A worker as `worker::jobs::run` builds it: row tracking, timeout, catch-panic.
fn tracked_worker(
    env: &Env,
    db: &PgPool,
    queues: &QueueSet,
    concurrency: usize,
    probe: &Arc<Probe>,
) -> Running {
    let backend =
        RedisBackend::<Value>::new(queues.get(Queue::BulkFetch).clone()).concurrency(concurrency);
    let worker = WorkerBuilder::new(backend.worker_id().to_owned())
        .backend(backend)
        .data(probe.clone())
        .concurrency(concurrency)
        .layer(TrackingLayer::new(
            JobRows::spawn(db.clone()),
            common::events::Publisher::new(env.redis.clone(), Default::default()),
            Queue::BulkFetch,
            JOB_TIMEOUT,
        ))
        .timeout(JOB_TIMEOUT)
        .layer(CatchPanicLayer::with_panic_handler(
            |_: &Box<dyn Any + Send>| PanicError("the job panicked".to_owned()),
        ))
        .build(noop);
    Running::spawn(|stopped| worker.run_until(stop_signal(stopped)))
}

// ---- measurements ---------------------------------------------------------------------------

/// What the machine did during a run.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    /// CPU seconds of this process (producer and worker).
    process: f64,
    /// CPU seconds of Redis.
    redis: f64,
    /// CPU seconds of every Postgres process (the server's backends for all clients).
    postgres: f64,
    /// Script calls Redis executed (EVAL, EVALSHA; all clients).
    scripts: u64,
    /// Commands Redis executed, counting those run inside scripts (all clients).
    redis_calls: u64,
    /// Busy and total CPU seconds of the machine, all cores.
    machine_busy: f64,
    machine_total: f64,
}

impl Usage {
    async fn sample(env: &Env) -> anyhow::Result<Self> {
        let mut conn = env.info.clone();
        let info: String = redis::cmd("INFO")
            .arg("cpu")
            .arg("commandstats")
            .query_async(&mut conn)
            .await?;
        let mut redis = 0.0;
        let mut redis_calls = 0;
        let mut scripts = 0;
        for line in info.lines() {
            if let Some(value) = line
                .strip_prefix("used_cpu_sys:")
                .or_else(|| line.strip_prefix("used_cpu_user:"))
            {
                redis += value.trim().parse::<f64>().unwrap_or(0.0);
            }
            if line.starts_with("cmdstat_") {
                let calls = line
                    .split([':', ','])
                    .find_map(|field| field.strip_prefix("calls="))
                    .and_then(|calls| calls.parse::<u64>().ok())
                    .unwrap_or(0);
                redis_calls += calls;
                if line.starts_with("cmdstat_eval:") || line.starts_with("cmdstat_evalsha:") {
                    scripts += calls;
                }
            }
        }
        let process = process_cpu("/proc/self/stat").map_or(0.0, |(_, cpu)| cpu);
        let mut postgres = 0.0;
        for entry in std::fs::read_dir("/proc")?.flatten() {
            if let Some((name, cpu)) = process_cpu(entry.path().join("stat"))
                && name == "postgres"
            {
                postgres += cpu;
            }
        }
        let cpu = std::fs::read_to_string("/proc/stat")?;
        let totals: Vec<f64> = cpu
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        let machine_total = totals.iter().take(8).sum::<f64>() / 100.0;
        let idle =
            (totals.get(3).copied().unwrap_or(0.0) + totals.get(4).copied().unwrap_or(0.0)) / 100.0;
        Ok(Self {
            process,
            redis,
            postgres,
            scripts,
            redis_calls,
            machine_busy: machine_total - idle,
            machine_total,
        })
    }

    fn since(self, before: Self) -> Self {
        Self {
            process: self.process - before.process,
            redis: self.redis - before.redis,
            postgres: self.postgres - before.postgres,
            scripts: self.scripts.saturating_sub(before.scripts),
            redis_calls: self.redis_calls.saturating_sub(before.redis_calls),
            machine_busy: self.machine_busy - before.machine_busy,
            machine_total: self.machine_total - before.machine_total,
        }
    }
}

/// A process's command name and CPU seconds (user + system) from its `/proc/PID/stat`.
fn process_cpu(path: impl AsRef<std::path::Path>) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(path).ok()?;
    let (head, rest) = stat.rsplit_once(')')?;
    let name = head.split_once('(')?.1.to_owned();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime: fields 14 and 15 of the line, 12 and 13 after the name; clock ticks
    // are 1/100 s on Linux (USER_HZ).
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    Some((name, (ticks(11)? + ticks(12)?) / 100.0))
}

/// One drain of a backlog.
#[derive(Debug, Clone, Copy)]
struct Drain {
    jobs: usize,
    seconds: f64,
    usage: Usage,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.jobs as f64 / self.seconds
    }
    /// Share of one core.
    fn cores(&self, seconds: f64) -> f64 {
        seconds / self.seconds
    }
}

/// Waits until every job ran and was settled in Redis (nothing ready, nothing held).
async fn wait_drained(queue: &RedisQueue, probe: &Probe) -> anyhow::Result<Instant> {
    tokio::time::timeout(DRAIN_LIMIT, probe.all_ran.notified())
        .await
        .with_context(|| {
            format!(
                "only {} of {} jobs ran within {DRAIN_LIMIT:?}",
                probe.ran.load(Ordering::Acquire),
                probe.target
            )
        })?;
    loop {
        let stats = queue.stats().await?;
        if stats.ready == 0 && stats.in_flight == 0 && stats.scheduled == 0 {
            return Ok(Instant::now());
        }
        if stats.dead > 0 {
            bail!("{} jobs were dead-lettered", stats.dead);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Shared connections and the run's key prefix.
struct Env {
    settings: Settings,
    prefix: String,
    db: PgPool,
    /// A Postgres that waits for its WAL on disk, when one was given.
    durable: Option<PgPool>,
    redis: Redis,
    info: redis::aio::MultiplexedConnection,
    user: Uuid,
    runs: AtomicUsize,
}

impl Env {
    /// A fresh key prefix per run, so every run starts with empty queues.
    fn next_prefix(&self) -> String {
        format!(
            "{}{}:",
            self.prefix,
            self.runs.fetch_add(1, Ordering::Relaxed)
        )
    }

    fn redis_config(&self, key_prefix: String) -> RedisConfig {
        RedisConfig {
            url: self.settings.redis_url.as_str().into(),
            key_prefix,
            timeout: Duration::from_secs(2),
            queue_cluster_nodes: Vec::new(),
        }
    }

    fn transport_queue(&self) -> anyhow::Result<RedisQueue> {
        Ok(RedisQueue::new(
            &self.settings.redis_url,
            QueueConfig::new("noop", self.next_prefix()),
        )?)
    }

    fn queues(&self) -> anyhow::Result<QueueSet> {
        Ok(QueueSet::new(
            &self.redis_config(self.next_prefix()),
            &QueueDefaults::default(),
        )?)
    }
}

fn noop_jobs(count: usize) -> anyhow::Result<Vec<NewJob>> {
    (0..count)
        .map(|seq| {
            Ok(NewJob::new(
                Uuid::now_v7().to_string(),
                &json!({ "seq": seq }),
            )?)
        })
        .collect()
}

/// `count` rows in `jobs`, `queued` and owned by the bench user, as the API writes them;
/// returned as the API hands them to Redis.
async fn insert_rows(env: &Env, db: &PgPool, count: usize) -> anyhow::Result<Vec<OutboxJob>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    for (chunk_no, chunk) in ids.chunks(INSERT_CHUNK).enumerate() {
        sqlx::query(
            "INSERT INTO jobs (id, user_id, kind, queue, max_attempts, payload)
             SELECT id, $2, 'bulk_fetch', 'bulk_fetch', $3, jsonb_build_object('seq', $4 + ord - 1)
             FROM unnest($1::uuid[]) WITH ORDINALITY AS t(id, ord)",
        )
        .bind(chunk)
        .bind(env.user)
        .bind(BulkFetch::MAX_ATTEMPTS)
        .bind((chunk_no * INSERT_CHUNK) as i64)
        .execute(db)
        .await?;
    }
    Ok(ids
        .into_iter()
        .enumerate()
        .map(|(seq, id)| OutboxJob {
            id,
            kind: JobKind::BulkFetch,
            queue: Queue::BulkFetch,
            args: json!({ "seq": seq }),
            max_attempts: BulkFetch::MAX_ATTEMPTS,
        })
        .collect())
}

/// Checks that every row ended `succeeded`, then deletes the rows.
async fn check_and_delete_rows(db: &PgPool, jobs: &[OutboxJob]) -> anyhow::Result<()> {
    let ids: Vec<Uuid> = jobs.iter().map(|job| job.id).collect();
    let (succeeded,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM jobs WHERE id = ANY($1) AND status = 'succeeded' AND attempts = 1
           AND enqueued_at IS NOT NULL",
    )
    .bind(&ids)
    .fetch_one(db)
    .await?;
    if succeeded != ids.len() as i64 {
        bail!("only {succeeded} of {} rows ended succeeded", ids.len());
    }
    sqlx::query("DELETE FROM jobs WHERE id = ANY($1)")
        .bind(&ids)
        .execute(db)
        .await?;
    Ok(())
}

/// Transport: a backlog of `jobs` no-op jobs drained by one worker. Also returns the push rate.
async fn transport_drain(env: &Env, concurrency: usize) -> anyhow::Result<(Drain, f64)> {
    let queue = env.transport_queue()?;
    let jobs = noop_jobs(env.settings.jobs)?;
    let pushing = Instant::now();
    queue.push(&jobs).await?;
    let push_rate = jobs.len() as f64 / pushing.elapsed().as_secs_f64();
    let probe = Probe::new(jobs.len(), false);
    let before = Usage::sample(env).await?;
    let worker = transport_worker(&queue, concurrency, &probe);
    let end = wait_drained(&queue, &probe).await?;
    let usage = Usage::sample(env).await?.since(before);
    worker.stop().await;
    let first = *probe.first_start.get().context("no job started")?;
    Ok((
        Drain {
            jobs: jobs.len(),
            seconds: end.duration_since(first).as_secs_f64(),
            usage,
        },
        push_rate,
    ))
}

/// Tracked: rows in Postgres, pushed as the API does, drained by the worker's stack. Also
/// returns the rate of `QueueSet::dispatch` in chunks.
async fn tracked_drain(env: &Env, db: &PgPool, concurrency: usize) -> anyhow::Result<(Drain, f64)> {
    let queues = env.queues()?;
    let jobs = insert_rows(env, db, env.settings.tracked_jobs).await?;
    let dispatching = Instant::now();
    for chunk in jobs.chunks(DISPATCH_CHUNK) {
        queues.dispatch(db, chunk).await?;
    }
    let dispatch_rate = jobs.len() as f64 / dispatching.elapsed().as_secs_f64();
    let probe = Probe::new(jobs.len(), false);
    let before = Usage::sample(env).await?;
    let worker = tracked_worker(env, db, &queues, concurrency, &probe);
    let end = wait_drained(queues.get(Queue::BulkFetch), &probe).await?;
    let usage = Usage::sample(env).await?.since(before);
    worker.stop().await;
    let first = *probe.first_start.get().context("no job started")?;
    check_and_delete_rows(db, &jobs).await?;
    Ok((
        Drain {
            jobs: jobs.len(),
            seconds: end.duration_since(first).as_secs_f64(),
            usage,
        },
        dispatch_rate,
    ))
}

/// Pickup latencies in ms, sorted.
#[derive(Debug, Clone)]
struct Latency(Vec<f64>);

impl Latency {
    fn from(pushed: &[Instant], probe: &Probe) -> anyhow::Result<Self> {
        let starts = probe.starts.as_ref().context("not a latency probe")?;
        let starts = starts.lock().expect("starts lock");
        let mut ms = pushed
            .iter()
            .zip(starts.iter())
            .map(|(pushed, started)| {
                let started = started.context("a job never started")?;
                Ok(started.duration_since(*pushed).as_secs_f64() * 1000.0)
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        ms.sort_by(f64::total_cmp);
        Ok(Self(ms))
    }

    fn quantile(&self, q: f64) -> f64 {
        let rank = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }
}

/// Lets an idle worker reach its blocking wait, then times one job at a time.
async fn pickup<F, Fut>(
    env: &Env,
    probe: &Arc<Probe>,
    queue: &RedisQueue,
    mut push: F,
) -> anyhow::Result<Latency>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut pushed = Vec::with_capacity(probe.target);
    for seq in 0..probe.target {
        pushed.push(Instant::now());
        push(seq).await?;
        tokio::time::sleep(env.settings.gap).await;
    }
    wait_drained(queue, probe).await?;
    Latency::from(&pushed, probe)
}

async fn transport_latency(env: &Env, concurrency: usize) -> anyhow::Result<Latency> {
    let queue = env.transport_queue()?;
    let jobs = noop_jobs(env.settings.samples)?;
    let probe = Probe::new(jobs.len(), true);
    let worker = transport_worker(&queue, concurrency, &probe);
    let latency = pickup(env, &probe, &queue, |seq| {
        let queue = queue.clone();
        let job = jobs[seq].clone();
        async move {
            queue.push(&[job]).await?;
            Ok(())
        }
    })
    .await;
    worker.stop().await;
    latency
}

async fn tracked_latency(env: &Env, concurrency: usize) -> anyhow::Result<Latency> {
    let queues = env.queues()?;
    let jobs = insert_rows(env, &env.db, env.settings.samples).await?;
    let probe = Probe::new(jobs.len(), true);
    let worker = tracked_worker(env, &env.db, &queues, concurrency, &probe);
    let latency = pickup(env, &probe, queues.get(Queue::BulkFetch), |seq| {
        let queues = queues.clone();
        let job = jobs[seq].clone();
        let db = env.db.clone();
        async move {
            queues.dispatch(&db, std::slice::from_ref(&job)).await?;
            Ok(())
        }
    })
    .await;
    worker.stop().await;
    let latency = latency?;
    check_and_delete_rows(&env.db, &jobs).await?;
    Ok(latency)
}

// ---- report ---------------------------------------------------------------------------------

#[derive(Debug)]
struct Row {
    concurrency: usize,
    transport: Drain,
    tracked: Drain,
    /// The tracked drain against the durable Postgres, when there is one.
    durable: Option<Drain>,
    push_rate: f64,
    dispatch_rate: f64,
}

fn fmt_rate(rate: f64) -> String {
    format!("{rate:.0}")
}

fn report(env: &Env, rows: &[Row], latencies: &[(usize, Latency, Latency)]) {
    let s = &env.settings;
    println!(
        "## Queue (queue-bench: {} no-op jobs per transport run, {} per tracked run, {} pickups per latency run)",
        s.jobs, s.tracked_jobs, s.samples
    );
    println!();
    let ceiling = s.ceiling;
    let ceiling_cell = ceiling.map_or_else(|| "–".to_owned(), fmt_rate);
    let ratio = |rate: Option<f64>| match (rate, ceiling) {
        (Some(rate), Some(c)) => format!("{:.2}", rate / c),
        _ => "–".to_owned(),
    };
    let durable_rate = |row: &Row| row.durable.as_ref().map(Drain::rate);
    println!(
        "| concurrency | transport jobs/s | tracked jobs/s | tracked jobs/s, fsync=on | pickup p50 / p99 ms (transport) | pickup p50 / p99 ms (tracked) | EVAL ceiling ops/s | transport ÷ ceiling | tracked ÷ ceiling | tracked fsync=on ÷ ceiling |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let pickup = latencies.iter().find(|(c, _, _)| *c == row.concurrency);
        let (transport_pickup, tracked_pickup) = pickup.map_or_else(
            || ("–".to_owned(), "–".to_owned()),
            |(_, transport, tracked)| {
                (
                    format!(
                        "{:.2} / {:.2}",
                        transport.quantile(0.5),
                        transport.quantile(0.99)
                    ),
                    format!(
                        "{:.2} / {:.2}",
                        tracked.quantile(0.5),
                        tracked.quantile(0.99)
                    ),
                )
            },
        );
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            row.concurrency,
            fmt_rate(row.transport.rate()),
            fmt_rate(row.tracked.rate()),
            durable_rate(row).map_or_else(|| "–".to_owned(), fmt_rate),
            transport_pickup,
            tracked_pickup,
            ceiling_cell,
            ratio(Some(row.transport.rate())),
            ratio(Some(row.tracked.rate())),
            ratio(durable_rate(row)),
        );
    }
    println!();
    println!(
        "Pickup: one job at a time on an idle worker, {} ms apart; push call (tracked: `QueueSet::dispatch`) to handler start. Max: {}.",
        s.gap.as_millis(),
        latencies
            .iter()
            .map(|(c, t, k)| format!("c={c} {:.2} / {:.2} ms", t.quantile(1.0), k.quantile(1.0)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!();
    println!(
        "Where the time went during each drain: Redis calls per job, CPU per job (µs; Redis's also in trivial `EVAL`s, {}) and in cores (CPU seconds per second; the machine has {} cores). Redis and Postgres include their other clients; *everything else* is the rest of the machine (the kernel's share of no process, other builds):",
        s.eval_redis_us.map_or_else(
            || "not measured".to_owned(),
            |us| format!("{us:.2} µs of Redis CPU each in the ceiling run")
        ),
        cores()
    );
    println!();
    println!(
        "| run | c | jobs/s | Redis scripts/job | Redis cmds/job (in scripts too) | Redis µs/job | Redis CPU/job in EVALs | Postgres µs/job | bench process µs/job | Redis CPU | Postgres CPU | bench process CPU | everything else | machine busy | enqueue jobs/s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        let mut drains = vec![
            ("transport", &row.transport, row.push_rate),
            ("tracked", &row.tracked, row.dispatch_rate),
        ];
        if let Some(durable) = &row.durable {
            drains.push(("tracked, fsync=on", durable, row.dispatch_rate));
        }
        for (name, drain, enqueue) in drains {
            let usage = drain.usage;
            let per_job = |seconds: f64| seconds * 1e6 / drain.jobs as f64;
            let in_evals = s.eval_redis_us.map_or_else(
                || "–".to_owned(),
                |us| format!("{:.2}", per_job(usage.redis) / us),
            );
            println!(
                "| {name} | {} | {} | {:.2} | {:.1} | {:.0} | {in_evals} | {:.0} | {:.0} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} % | {} |",
                row.concurrency,
                fmt_rate(drain.rate()),
                usage.scripts as f64 / drain.jobs as f64,
                usage.redis_calls as f64 / drain.jobs as f64,
                per_job(usage.redis),
                per_job(usage.postgres),
                per_job(usage.process),
                drain.cores(usage.redis),
                drain.cores(usage.postgres),
                drain.cores(usage.process),
                drain.cores(
                    (usage.machine_busy - usage.redis - usage.postgres - usage.process).max(0.0)
                ),
                100.0 * usage.machine_busy / usage.machine_total.max(f64::EPSILON),
                fmt_rate(enqueue),
            );
        }
    }
    println!();
    println!(
        "Enqueue: transport `RedisQueue::push` of the whole backlog (500 jobs per script call); tracked `QueueSet::dispatch` in chunks of {DISPATCH_CHUNK} (push, then `UPDATE ... enqueued_at`; the fsync=on rows reuse the tracked enqueue column)."
    );
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Deletes every key under `prefix`.
async fn delete_keys(env: &Env) -> anyhow::Result<usize> {
    let mut conn = env.info.clone();
    let mut cursor: u64 = 0;
    let mut deleted = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", env.prefix))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            deleted += redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<usize>(&mut conn)
                .await?;
        }
        if next == 0 {
            return Ok(deleted);
        }
        cursor = next;
    }
}

async fn connect(url: &str) -> anyhow::Result<PgPool> {
    common::db::connect_and_migrate(&DatabaseConfig {
        url: url.into(),
        max_connections: 20,
        acquire_timeout: Duration::from_secs(5),
    })
    .await
}

// The worker's runtime: multi-thread, one thread per core.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    // The worker's metrics recorder: the tracking layer records into it per job.
    let _metrics = common::telemetry::install_metrics("worker");
    let db = connect(&settings.database_url).await?;
    let durable = match &settings.durable_database_url {
        Some(url) => Some(connect(url).await?),
        None => None,
    };
    let info = redis::Client::open(settings.redis_url.as_str())?
        .get_multiplexed_async_connection()
        .await
        .context("cannot connect to Redis")?;
    let run = Uuid::now_v7().simple().to_string();
    let user = Uuid::now_v7();
    for db in std::iter::once(&db).chain(&durable) {
        sqlx::query(
            "INSERT INTO users (id, email, username, password_hash) VALUES ($1, $2, $3, 'not a hash')",
        )
        .bind(user)
        .bind(format!("queue-bench-{run}@example.com"))
        .bind(format!("queuebench{run}"))
        .execute(db)
        .await?;
    }
    let prefix = format!("bench:{run}:");
    let redis = Redis::new(&RedisConfig {
        url: settings.redis_url.as_str().into(),
        key_prefix: prefix.clone(),
        timeout: Duration::from_secs(2),
        queue_cluster_nodes: Vec::new(),
    })?;
    let env = Env {
        settings,
        prefix,
        db,
        durable,
        redis,
        info,
        user,
        runs: AtomicUsize::new(0),
    };
    let outcome = measure(&env).await;
    let deleted = delete_keys(&env).await;
    for db in std::iter::once(&env.db).chain(&env.durable) {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(env.user)
            .execute(db)
            .await?;
    }
    let (rows, latencies) = outcome?;
    eprintln!("queue-bench: deleted {} keys", deleted?);
    report(&env, &rows, &latencies);
    Ok(())
}

type Measured = (Vec<Row>, Vec<(usize, Latency, Latency)>);

async fn measure(env: &Env) -> anyhow::Result<Measured> {
    let mut rows = Vec::new();
    let mut latencies = Vec::new();
    for &concurrency in &env.settings.concurrency {
        let (transport, push_rate) = transport_drain(env, concurrency).await?;
        eprintln!(
            "queue-bench: transport c={concurrency}: {:.0} jobs/s",
            transport.rate()
        );
        let (tracked, dispatch_rate) = tracked_drain(env, &env.db, concurrency).await?;
        eprintln!(
            "queue-bench: tracked   c={concurrency}: {:.0} jobs/s",
            tracked.rate()
        );
        let durable = match &env.durable {
            Some(db) => {
                let (durable, _) = tracked_drain(env, db, concurrency).await?;
                eprintln!(
                    "queue-bench: tracked   c={concurrency} fsync=on: {:.0} jobs/s",
                    durable.rate()
                );
                Some(durable)
            }
            None => None,
        };
        rows.push(Row {
            concurrency,
            transport,
            tracked,
            durable,
            push_rate,
            dispatch_rate,
        });
        let transport = transport_latency(env, concurrency).await?;
        let tracked = tracked_latency(env, concurrency).await?;
        eprintln!(
            "queue-bench: pickup c={concurrency}: transport p50 {:.2} ms p99 {:.2} ms, tracked p50 {:.2} ms p99 {:.2} ms",
            transport.quantile(0.5),
            transport.quantile(0.99),
            tracked.quantile(0.5),
            tracked.quantile(0.99)
        );
        latencies.push((concurrency, transport, tracked));
    }
    Ok((rows, latencies))
}
