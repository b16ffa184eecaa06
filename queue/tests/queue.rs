//! The queue against a real Redis, driven by apalis's own `WorkerBuilder`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use apalis::prelude::*;
use queue::{Backoff, DeadLetter, Delivery, NewJob, QueueConfig, RedisBackend, RedisQueue};
use serde::{Deserialize, Serialize};
use test_support::{redis_prefix, wait_until};
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    /// Fail this many attempts, then succeed (`u32::MAX`: always fail).
    fail_first: u32,
    /// How long each attempt takes.
    sleep_ms: u64,
}

impl Job {
    fn quick() -> Self {
        Self {
            fail_first: 0,
            sleep_ms: 0,
        }
    }
}

/// What the handler saw: per job id, the instant and attempt number of every run.
/// Start instant and attempt number of one run.
type Run = (Instant, u32);

#[derive(Debug, Clone, Default)]
struct Runs(Arc<Mutex<HashMap<String, Vec<Run>>>>);

impl Runs {
    fn total(&self) -> usize {
        self.0
            .lock()
            .expect("runs lock")
            .values()
            .map(Vec::len)
            .sum()
    }
    fn of(&self, id: &str) -> Vec<Run> {
        self.0
            .lock()
            .expect("runs lock")
            .get(id)
            .cloned()
            .unwrap_or_default()
    }
    fn jobs(&self) -> usize {
        self.0.lock().expect("runs lock").len()
    }
}

fn config(name: &str) -> QueueConfig {
    let mut config = QueueConfig::new(name, redis_prefix());
    config.lease = Duration::from_millis(600);
    config.maintenance_interval = Duration::from_millis(50);
    config.block_timeout = Duration::from_millis(500);
    config.backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(2),
    };
    config.finished_ttl = Duration::from_secs(120);
    config
}

/// How this suite reaches Redis: one server. `tests/cluster.rs` runs the same tests on a
/// Redis Cluster by including this file beside a `backend` of its own (the suite always calls
/// `crate::backend`, so this one is unused there).
#[allow(dead_code)]
mod backend {
    use queue::{QueueConfig, RedisQueue};
    use test_support::redis_url;

    /// A queue client.
    pub fn connect(config: QueueConfig) -> RedisQueue {
        RedisQueue::new(&redis_url(), config).expect("valid url")
    }

    /// A connection for raw commands on one queue's keys.
    pub async fn conn() -> redis::aio::MultiplexedConnection {
        redis::Client::open(redis_url())
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis")
    }

    /// Every server holding keys.
    pub fn nodes() -> Vec<String> {
        vec![redis_url()]
    }
}

fn queue(config: QueueConfig) -> RedisQueue {
    crate::backend::connect(config)
}

async fn handle(
    job: Job,
    delivery: Data<Delivery>,
    id: TaskId,
    runs: Data<Runs>,
) -> Result<(), BoxDynError> {
    let runs: &Runs = &runs;
    runs.0
        .lock()
        .expect("runs lock")
        .entry(id.to_string())
        .or_default()
        .push((Instant::now(), delivery.attempt));
    if job.sleep_ms > 0 {
        tokio::time::sleep(Duration::from_millis(job.sleep_ms)).await;
    }
    if delivery.attempt <= job.fail_first {
        return Err(format!("planned failure of attempt {}", delivery.attempt).into());
    }
    Ok(())
}

fn spawn_worker(
    backend: RedisBackend<Job>,
    concurrency: usize,
    runs: &Runs,
) -> JoinHandle<Result<(), WorkerError>> {
    let worker = WorkerBuilder::new(backend.worker_id().to_owned())
        .backend(backend)
        .concurrency(concurrency)
        .data(runs.clone())
        .build(handle);
    tokio::spawn(worker.run())
}

async fn push_jobs(
    queue: &RedisQueue,
    count: usize,
    job: &Job,
    run_at: Option<SystemTime>,
) -> Vec<String> {
    let jobs: Vec<NewJob> = (0..count)
        .map(|_| {
            let job = NewJob::new(uuid::Uuid::now_v7().to_string(), job).expect("queue operation");
            match run_at {
                Some(at) => job.run_at(at),
                None => job,
            }
        })
        .collect();
    assert_eq!(queue.push(&jobs).await.expect("queue operation"), count);
    jobs.into_iter().map(|job| job.id).collect()
}

async fn drained(queue: &RedisQueue) -> bool {
    let stats = queue.stats().await.expect("queue operation");
    stats.ready == 0 && stats.scheduled == 0 && stats.in_flight == 0
}

#[tokio::test]
async fn jobs_run_once_and_a_repeated_push_is_ignored() {
    let queue = queue(config("basic"));
    let runs = Runs::default();
    let ids = push_jobs(&queue, 20, &Job::quick(), None).await;
    let again = NewJob::new(ids[0].clone(), &Job::quick()).expect("queue operation");
    assert_eq!(
        queue.push(&[again]).await.expect("queue operation"),
        0,
        "same id is a no-op"
    );
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 4, &runs);
    wait_until("20 jobs", Duration::from_secs(10), || async {
        runs.total() == 20
    })
    .await;
    wait_until("queue drained", Duration::from_secs(5), || drained(&queue)).await;
    assert_eq!(runs.jobs(), 20);
    for id in &ids {
        assert_eq!(
            runs.of(id).iter().map(|run| run.1).collect::<Vec<_>>(),
            vec![1]
        );
    }
    assert!(!worker.is_finished());
    worker.abort();
}

#[tokio::test]
async fn an_idle_worker_starts_a_new_job_without_waiting_for_a_poll() {
    let mut config = config("pickup");
    // An idle worker that only noticed new jobs when its blocking wait timed out would take
    // seconds; one woken by the push takes a round trip.
    config.block_timeout = Duration::from_secs(10);
    let queue = queue(config);
    let runs = Runs::default();
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 1, &runs);
    // Let the worker go idle (blocked on Redis) first.
    push_jobs(&queue, 1, &Job::quick(), None).await;
    wait_until("warm-up job", Duration::from_secs(5), || async {
        runs.total() == 1
    })
    .await;
    let mut latencies = Vec::new();
    for n in 0..30 {
        let pushed = Instant::now();
        let id = push_jobs(&queue, 1, &Job::quick(), None).await.remove(0);
        wait_until("job start", Duration::from_secs(5), || async {
            !runs.of(&id).is_empty()
        })
        .await;
        latencies.push(runs.of(&id)[0].0 - pushed);
        assert_eq!(runs.total(), n + 2);
    }
    latencies.sort();
    let median = latencies[latencies.len() / 2];
    // Far below the 10 s wait whatever the machine's load; the benchmark measures the real
    // figure (docs/BENCHMARKS.md: about half a millisecond).
    assert!(median < Duration::from_secs(2), "median pickup {median:?}");
    worker.abort();
}

#[tokio::test]
async fn failures_are_retried_with_growing_backoff_then_dead() {
    let queue = queue(config("retry"));
    let runs = Runs::default();
    let recovers = NewJob::new(
        "recovers",
        &Job {
            fail_first: 2,
            sleep_ms: 0,
        },
    )
    .expect("queue operation")
    .max_attempts(5);
    let never = NewJob::new(
        "never",
        &Job {
            fail_first: u32::MAX,
            sleep_ms: 0,
        },
    )
    .expect("queue operation")
    .max_attempts(3);
    queue
        .push(&[recovers, never])
        .await
        .expect("queue operation");
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    wait_until("retries", Duration::from_secs(10), || async {
        runs.of("recovers").len() == 3 && runs.of("never").len() == 3
    })
    .await;
    wait_until("settled", Duration::from_secs(5), || async {
        let stats = queue.stats().await.expect("queue operation");
        stats.dead == 1 && stats.scheduled == 0 && stats.in_flight == 0
    })
    .await;
    for id in ["recovers", "never"] {
        let runs = runs.of(id);
        assert_eq!(
            runs.iter().map(|run| run.1).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        // Backoff after failure n is within [base*2^(n-1)/2, base*2^(n-1)] (+ promotion tick).
        let first_gap = runs[1].0 - runs[0].0;
        let second_gap = runs[2].0 - runs[1].0;
        assert!(
            first_gap >= Duration::from_millis(50),
            "{id}: {first_gap:?}"
        );
        assert!(
            second_gap >= Duration::from_millis(100),
            "{id}: {second_gap:?}"
        );
        // Bounded by the backoff cap (2 s) plus however late a loaded machine runs it.
        assert!(second_gap < Duration::from_secs(10), "{id}: {second_gap:?}");
    }
    // Nothing runs again after success or death: nothing is left to run.
    wait_until("the queue to drain", Duration::from_secs(10), || {
        drained(&queue)
    })
    .await;
    assert_eq!(runs.total(), 6);
    worker.abort();
}

#[tokio::test]
async fn a_lost_worker_s_jobs_run_again_elsewhere_and_count_the_attempt() {
    let config = config("lost");
    let lease = config.lease;
    let queue = queue(config);
    let runs = Runs::default();
    let letters: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let slow = NewJob::new(
        "slow",
        &Job {
            fail_first: 0,
            sleep_ms: 60_000,
        },
    )
    .expect("queue operation")
    .max_attempts(3);
    let fatal = NewJob::new(
        "fatal",
        &Job {
            fail_first: 0,
            sleep_ms: 60_000,
        },
    )
    .expect("queue operation")
    .max_attempts(1);
    queue.push(&[slow, fatal]).await.expect("queue operation");

    // The first worker takes both jobs, then "dies" (its task and heartbeat are aborted).
    let doomed = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    wait_until("both started", Duration::from_secs(5), || async {
        runs.total() == 2
    })
    .await;
    doomed.abort();
    let died = Instant::now();

    let hook_letters = letters.clone();
    let survivor_backend =
        RedisBackend::new(queue.clone()).on_dead_letter(Arc::new(move |letter| {
            hook_letters.lock().expect("runs lock").push(letter);
            Box::pin(async {})
        }));
    let survivor = spawn_worker(survivor_backend, 2, &runs);
    wait_until("slow re-run", Duration::from_secs(30), || async {
        runs.of("slow").len() == 2
    })
    .await;
    let recovered_after = died.elapsed();
    assert!(
        recovered_after >= lease / 2,
        "re-run only after the lease: {recovered_after:?}"
    );
    // How soon after the lease is up to the machine's load; the wait above bounds it.
    assert_eq!(runs.of("slow")[1].1, 2, "the lost run counted as attempt 1");

    // `fatal` had one attempt and lost it: dead-lettered, not run again.
    wait_until("dead letter", Duration::from_secs(5), || async {
        !letters.lock().expect("runs lock").is_empty()
    })
    .await;
    let letter = letters.lock().expect("runs lock")[0].clone();
    assert_eq!((letter.id.as_str(), letter.attempts), ("fatal", 1));
    assert_eq!(runs.of("fatal").len(), 1);
    assert_eq!(queue.stats().await.expect("queue operation").dead, 1);
    survivor.abort();
}

#[tokio::test]
async fn a_busy_worker_keeps_its_lease_so_its_jobs_are_never_run_twice() {
    let mut config = config("busy");
    // Renewed every third of it: only a heartbeat starved for two seconds loses it, which even
    // a loaded debug build does not do to a task that only waits on timers.
    config.lease = Duration::from_secs(3);
    let queue = queue(config);
    let runs = Runs::default();
    // Each job lasts three leases; the heartbeat has to keep up while all slots are busy.
    push_jobs(
        &queue,
        8,
        &Job {
            fail_first: 0,
            sleep_ms: 9000,
        },
        None,
    )
    .await;
    let first = spawn_worker(RedisBackend::new(queue.clone()), 4, &runs);
    let second = spawn_worker(RedisBackend::new(queue.clone()), 4, &runs);
    wait_until("all done", Duration::from_secs(60), || async {
        runs.jobs() == 8 && drained(&queue).await
    })
    .await;
    assert_eq!(
        runs.total(),
        8,
        "no job ran twice: {:?}",
        runs.0.lock().expect("runs lock")
    );
    first.abort();
    second.abort();
}

#[tokio::test]
async fn a_worker_claims_only_what_it_has_free_slots_for() {
    let queue = queue(config("slots"));
    let runs = Runs::default();
    // One job that outlasts the test keeps one of the two slots busy throughout.
    let long = push_jobs(
        &queue,
        1,
        &Job {
            fail_first: 0,
            sleep_ms: 600_000,
        },
        None,
    )
    .await
    .remove(0);
    let worker = spawn_worker(RedisBackend::new(queue.clone()).concurrency(2), 2, &runs);
    wait_until("the long job runs", Duration::from_secs(10), || async {
        !runs.of(&long).is_empty()
    })
    .await;
    let quick = push_jobs(
        &queue,
        6,
        &Job {
            fail_first: 0,
            sleep_ms: 50,
        },
        None,
    )
    .await;
    // Claiming a batch into the one free slot would leave jobs waiting behind the long one:
    // the worker never holds more than its two slots, and the six run one after another.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let stats = queue.stats().await.expect("queue operation");
        assert!(
            stats.in_flight <= 2,
            "the worker holds {} jobs",
            stats.in_flight
        );
        if quick.iter().all(|id| !runs.of(id).is_empty()) && stats.in_flight == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "the quick jobs did not all run");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    worker.abort();
}

#[tokio::test]
async fn undecodable_arguments_are_dead_lettered_and_the_worker_goes_on() {
    let queue = queue(config("garbage"));
    let runs = Runs::default();
    let letters: Arc<Mutex<Vec<DeadLetter>>> = Arc::default();
    let bad =
        NewJob::new("bad", &serde_json::json!({"unexpected": true})).expect("queue operation");
    let good = NewJob::new("good", &Job::quick()).expect("queue operation");
    queue.push(&[bad, good]).await.expect("queue operation");
    let hook_letters = letters.clone();
    let backend = RedisBackend::new(queue.clone()).on_dead_letter(Arc::new(move |letter| {
        hook_letters.lock().expect("runs lock").push(letter);
        Box::pin(async {})
    }));
    let worker = spawn_worker(backend, 1, &runs);
    wait_until("good job", Duration::from_secs(5), || async {
        runs.of("good").len() == 1
    })
    .await;
    wait_until("dead letter", Duration::from_secs(5), || async {
        letters.lock().expect("runs lock").len() == 1
    })
    .await;
    assert_eq!(letters.lock().expect("runs lock")[0].id, "bad");
    assert!(!worker.is_finished());
    worker.abort();
}

#[tokio::test]
async fn tasks_pushed_through_apalis_task_sink_run() {
    let queue = queue(config("sink"));
    let runs = Runs::default();
    let mut producer: RedisBackend<Job> = RedisBackend::new(queue.clone());
    producer.push(Job::quick()).await.expect("queue operation");
    producer
        .push_bulk(vec![Job::quick(), Job::quick()])
        .await
        .expect("queue operation");
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    wait_until("3 jobs", Duration::from_secs(5), || async {
        runs.total() == 3
    })
    .await;
    worker.abort();
}

async fn drain_with_two_workers(queue: &RedisQueue, count: usize, runs: &Runs) {
    let workers = [
        spawn_worker(RedisBackend::new(queue.clone()).concurrency(16), 16, runs),
        spawn_worker(RedisBackend::new(queue.clone()).concurrency(16), 16, runs),
    ];
    wait_until("backlog drained", Duration::from_secs(120), || async {
        for worker in &workers {
            assert!(!worker.is_finished(), "a worker died");
        }
        runs.total() == count && drained(queue).await
    })
    .await;
    assert_eq!(runs.jobs(), count, "every job ran exactly once");
    for worker in workers {
        worker.abort();
    }
}

#[tokio::test]
async fn a_backlog_of_50_000_ready_jobs_drains() {
    let queue = queue(config("backlog"));
    let runs = Runs::default();
    push_jobs(&queue, 50_000, &Job::quick(), None).await;
    drain_with_two_workers(&queue, 50_000, &runs).await;
}

#[tokio::test]
async fn fifty_thousand_delayed_jobs_falling_due_at_once_drain() {
    let config = config("delayed");
    let delayed_key = format!("{}queue:{{{}}}:delayed", config.key_prefix, config.name);
    let queue = queue(config);
    let runs = Runs::default();
    // Due an hour ahead, so however slowly the push goes none falls due before it is counted;
    // then every due time is moved to the past at once (all scores to 0), which is the burst the
    // test is about.
    let due = SystemTime::now() + Duration::from_secs(3600);
    push_jobs(&queue, 50_000, &Job::quick(), Some(due)).await;
    assert_eq!(
        queue.stats().await.expect("queue operation").scheduled,
        50_000
    );
    let mut conn = crate::backend::conn().await;
    let moved: u64 = redis::cmd("ZUNIONSTORE")
        .arg(&delayed_key)
        .arg(1)
        .arg(&delayed_key)
        .arg("WEIGHTS")
        .arg(0)
        .query_async(&mut conn)
        .await
        .expect("move the due times");
    assert_eq!(moved, 50_000);
    drain_with_two_workers(&queue, 50_000, &runs).await;
}

/// Deletes every key of `queue`'s Redis prefix on every server, as a restart without
/// persistence would.
async fn lose_everything(prefix: &str) {
    for node in crate::backend::nodes() {
        let mut conn = redis::Client::open(node)
            .expect("valid url")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to Redis");
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await
            .expect("keys");
        // One at a time: on a cluster node, keys of different slots cannot go in one DEL.
        for key in keys {
            let _: () = redis::cmd("DEL")
                .arg(key)
                .query_async(&mut conn)
                .await
                .expect("delete");
        }
    }
}

#[tokio::test]
async fn jobs_redis_lost_are_found_and_run_again_with_the_attempts_they_used() {
    let config = config("lost-data");
    let prefix = config.key_prefix.clone();
    let queue = queue(config);
    let runs = Runs::default();
    let waiting = NewJob::new("waiting", &Job::quick()).expect("queue operation");
    let later = NewJob::new("later", &Job::quick())
        .expect("queue operation")
        .run_at(SystemTime::now() + Duration::from_secs(3600));
    queue
        .push(&[waiting.clone(), later.clone()])
        .await
        .expect("queue operation");
    let asked = ["waiting", "later", "never-pushed"].map(str::to_owned);
    assert_eq!(
        queue.missing(&asked).await.expect("queue operation"),
        vec!["never-pushed".to_owned()],
        "jobs waiting or delayed are present"
    );

    lose_everything(&prefix).await;
    assert_eq!(
        queue.missing(&asked).await.expect("queue operation"),
        asked.to_vec()
    );

    // Pushed again with two of three attempts used: it runs once more, as attempt 3.
    let again = NewJob::new("waiting", &Job::quick())
        .expect("queue operation")
        .max_attempts(3)
        .attempts_used(2);
    assert_eq!(queue.push(&[again]).await.expect("queue operation"), 1);
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 1, &runs);
    wait_until("the job to run again", Duration::from_secs(10), || async {
        !runs.of("waiting").is_empty()
    })
    .await;
    wait_until("the queue to drain", Duration::from_secs(10), || {
        drained(&queue)
    })
    .await;
    assert_eq!(runs.of("waiting")[0].1, 3);
    assert!(
        queue
            .missing(&["waiting".to_owned()])
            .await
            .expect("queue operation")
            .is_empty(),
        "a finished job is present"
    );

    // A job running on a live worker is present too.
    let slow = NewJob::new(
        "slow",
        &Job {
            fail_first: 0,
            sleep_ms: 60_000,
        },
    )
    .expect("queue operation");
    queue.push(&[slow]).await.expect("queue operation");
    wait_until("the slow job to start", Duration::from_secs(10), || async {
        !runs.of("slow").is_empty()
    })
    .await;
    assert!(
        queue
            .missing(&["slow".to_owned()])
            .await
            .expect("queue operation")
            .is_empty(),
        "a running job is present"
    );
    worker.abort();
}

#[tokio::test]
async fn a_paused_queue_starts_nothing_until_resumed() {
    let queue = queue(config("paused"));
    let runs = Runs::default();
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    push_jobs(&queue, 1, &Job::quick(), None).await;
    wait_until("warm-up job", Duration::from_secs(5), || async {
        runs.total() == 1
    })
    .await;
    // The worker is now blocked waiting for the next job: the pause must also catch the job
    // that wait takes.
    queue.pause().await.expect("pause");
    let ids = push_jobs(&queue, 5, &Job::quick(), None).await;
    wait_until(
        "the oldest job to wait well past a claim round",
        Duration::from_secs(10),
        || async {
            let stats = queue.stats().await.expect("stats");
            stats.oldest_ready_age > Duration::from_millis(1500)
        },
    )
    .await;
    let stats = queue.stats().await.expect("stats");
    assert!(stats.paused);
    assert_eq!(stats.ready, 5, "{stats:?}");
    assert_eq!(runs.total(), 1, "nothing started while paused");

    queue.resume().await.expect("resume");
    wait_until(
        "the paused jobs to run",
        Duration::from_secs(10),
        || async { runs.total() == 6 },
    )
    .await;
    for id in &ids {
        assert_eq!(runs.of(id).len(), 1);
    }
    let stats = queue.stats().await.expect("stats");
    assert!(!stats.paused);
    assert_eq!(stats.oldest_ready_age, Duration::ZERO);
    worker.abort();
}

#[tokio::test]
async fn operators_rerun_finished_jobs_run_waiting_ones_now_and_forget_dead_ones() {
    let queue = queue(config("operators"));
    let runs = Runs::default();
    let doomed = Job {
        fail_first: u32::MAX,
        sleep_ms: 0,
    };
    let dead_id = uuid::Uuid::now_v7().to_string();
    let forgotten_id = uuid::Uuid::now_v7().to_string();
    let later_id = uuid::Uuid::now_v7().to_string();
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    queue
        .push(&[
            NewJob::new(dead_id.clone(), &doomed)
                .expect("job")
                .max_attempts(1),
            NewJob::new(forgotten_id.clone(), &doomed)
                .expect("job")
                .max_attempts(1),
            NewJob::new(later_id.clone(), &Job::quick())
                .expect("job")
                .run_at(in_an_hour),
        ])
        .await
        .expect("push");
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    wait_until("two dead jobs", Duration::from_secs(10), || async {
        queue.stats().await.expect("stats").dead == 2
    })
    .await;

    // A finished job pushed again (its record says it must run again) runs with fresh attempts.
    let again = NewJob::new(dead_id.clone(), &Job::quick()).expect("job");
    assert_eq!(queue.push(&[again]).await.expect("push"), 1);
    wait_until(
        "the re-pushed job to succeed",
        Duration::from_secs(10),
        || async { runs.of(&dead_id).len() == 2 },
    )
    .await;
    assert_eq!(runs.of(&dead_id)[1].1, 1, "a fresh first attempt");

    // A waiting job runs now; an id that is not waiting is left alone.
    assert_eq!(
        queue
            .run_now(&[later_id.clone(), forgotten_id.clone()])
            .await
            .expect("run now"),
        1
    );
    wait_until(
        "the delayed job to run",
        Duration::from_secs(10),
        || async { runs.of(&later_id).len() == 1 },
    )
    .await;

    assert_eq!(
        queue
            .forget(std::slice::from_ref(&forgotten_id))
            .await
            .expect("forget"),
        1
    );
    wait_until("drained", Duration::from_secs(5), || drained(&queue)).await;
    assert_eq!(queue.stats().await.expect("stats").dead, 0);
    worker.abort();
}

/// Three jobs that fail at once and one that succeeds, run to the end on `queue`.
async fn three_dead_and_one_done(queue: &RedisQueue) -> JoinHandle<Result<(), WorkerError>> {
    let runs = Runs::default();
    let doomed = Job {
        fail_first: u32::MAX,
        sleep_ms: 0,
    };
    let mut jobs: Vec<NewJob> = (0..3)
        .map(|n| {
            NewJob::new(format!("doomed-{n}"), &doomed)
                .expect("job")
                .max_attempts(1)
        })
        .collect();
    jobs.push(NewJob::new("fine", &Job::quick()).expect("job"));
    queue.push(&jobs).await.expect("push");
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 1, &runs);
    wait_until("every job ran", Duration::from_secs(10), || async {
        runs.total() == 4 && drained(queue).await
    })
    .await;
    worker
}

/// The beginning of every key of the queue `config` names.
fn base_of(config: &QueueConfig) -> String {
    format!("{}queue:{{{}}}:", config.key_prefix, config.name)
}

/// How many entries each of the queue's job-field hashes and finished indexes holds.
async fn job_data(base: &str) -> Vec<(String, u64)> {
    let mut conn = crate::backend::conn().await;
    let mut counts = Vec::new();
    for (key, command) in [
        ("args", "HLEN"),
        ("max", "HLEN"),
        ("attempts", "HLEN"),
        ("state", "HLEN"),
        ("ready_at", "HLEN"),
        ("error", "HLEN"),
        ("finished", "ZCARD"),
        ("dead", "ZCARD"),
    ] {
        let count: u64 = redis::cmd(command)
            .arg(format!("{base}{key}"))
            .query_async(&mut conn)
            .await
            .expect("count");
        counts.push((key.to_owned(), count));
    }
    counts
}

#[tokio::test]
async fn the_dead_index_keeps_its_cap_and_drops_the_data_of_the_jobs_it_lets_go() {
    let mut config = config("dead-cap");
    config.dead_cap = 2;
    let base = base_of(&config);
    let queue = queue(config);
    let worker = three_dead_and_one_done(&queue).await;
    // Three jobs died; the index keeps two, and the third's data went with it. Errors are
    // recorded for the two dead ones only.
    let expected: Vec<(String, u64)> = [
        ("args", 3),
        ("max", 3),
        ("attempts", 3),
        ("state", 3),
        ("ready_at", 3),
        ("error", 2),
        ("finished", 1),
        ("dead", 2),
    ]
    .into_iter()
    .map(|(key, count)| (key.to_owned(), count))
    .collect();
    assert_eq!(job_data(&base).await, expected);
    worker.abort();
}

#[tokio::test]
async fn finished_jobs_leave_nothing_behind_once_past_their_time() {
    let mut config = config("expiry");
    config.finished_ttl = Duration::from_secs(1);
    config.dead_ttl = Duration::from_secs(1);
    let base = base_of(&config);
    let queue = queue(config);
    let worker = three_dead_and_one_done(&queue).await;
    wait_until(
        "finished jobs to age out",
        Duration::from_secs(10),
        || async { job_data(&base).await.iter().all(|(_, count)| *count == 0) },
    )
    .await;
    worker.abort();
}

#[tokio::test]
async fn jobs_pushed_in_the_layout_before_per_field_hashes_still_run() {
    let config = config("legacy");
    let base = base_of(&config);
    let queue = queue(config);
    let runs = Runs::default();
    let args = serde_json::to_string(&Job::quick()).expect("json");
    let mut conn = crate::backend::conn().await;
    // As the previous layout left them: a hash per job, the id in `ready` or `delayed`.
    for (id, state) in [("legacy-ready", "ready"), ("legacy-delayed", "delayed")] {
        let _: () = redis::cmd("HSET")
            .arg(format!("{base}job:{id}"))
            .arg(&[
                ("args", args.as_str()),
                ("max", "3"),
                ("attempts", "1"),
                ("state", state),
                ("ready_at", "0"),
            ])
            .query_async(&mut conn)
            .await
            .expect("legacy job");
    }
    let _: () = redis::cmd("LPUSH")
        .arg(format!("{base}ready"))
        .arg("legacy-ready")
        .query_async(&mut conn)
        .await
        .expect("ready");
    let _: () = redis::cmd("ZADD")
        .arg(format!("{base}delayed"))
        .arg(0)
        .arg("legacy-delayed")
        .query_async(&mut conn)
        .await
        .expect("delayed");
    let ids = ["legacy-ready".to_owned(), "legacy-delayed".to_owned()];
    assert!(
        queue.missing(&ids).await.expect("locate").is_empty(),
        "both are present"
    );
    let worker = spawn_worker(RedisBackend::new(queue.clone()), 2, &runs);
    wait_until(
        "both legacy jobs to run",
        Duration::from_secs(10),
        || async { runs.jobs() == 2 && drained(&queue).await },
    )
    .await;
    for id in &ids {
        assert_eq!(
            runs.of(id).iter().map(|run| run.1).collect::<Vec<_>>(),
            vec![2],
            "{id} ran once, its earlier attempt counted"
        );
        let legacy: u64 = redis::cmd("EXISTS")
            .arg(format!("{base}job:{id}"))
            .query_async(&mut conn)
            .await
            .expect("exists");
        assert_eq!(legacy, 0, "{id}'s old hash is gone");
    }
    worker.abort();
}
