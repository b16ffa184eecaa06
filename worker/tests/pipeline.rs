//! The job pipeline end to end: the real `api` and `worker` binaries, real Postgres and
//! Redis, and a fake CoinGecko (a real HTTP server on loopback) whose answers each test scripts.

mod stack;

use std::time::Duration;

use serde_json::{Value, json};
use test_support::{http_client, wait_until};

use self::stack::*;

#[tokio::test]
async fn a_bulk_fetch_of_250_coins_takes_one_upstream_call_and_reports_each_coin() {
    let stack = Stack::start().await;
    let _worker = stack.start_worker(&[]).await;
    let mut ids: Vec<String> = (0..249).map(|i| format!("coin-{i}")).collect();
    ids.push("unknown-coin".into());
    let id = stack.bulk(&ids).await;
    let job = stack
        .wait_for_status(&id, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(job["attempts"], 1);
    assert!(
        job["started_at"].is_string() && job["finished_at"].is_string(),
        "{job}"
    );
    let result = &job["result"];
    assert_eq!(result["found"], 249);
    assert_eq!(result["coins"][0]["coin_id"], "coin-0");
    assert_eq!(result["coins"][0]["price"], "100.5");
    assert!(
        result["coins"][249]["error"]
            .as_str()
            .expect("error")
            .contains("unknown")
    );
    assert_eq!(stack.upstream.calls(), 1, "250 ids in one upstream call");
    // Progress is part of the job, and went to its owner as `job` events.
    assert_eq!(job["progress"], json!({"done": 250, "total": 250}), "{job}");
    let me: Value = http_client()
        .get(format!("{}/api/v1/users/me", stack.api.base_url))
        .bearer_auth(&stack.token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    let history = format!(
        "{}user-events:{}",
        stack.prefix,
        me["id"].as_str().expect("id")
    );
    let mut redis = redis::Client::open(test_support::redis_url())
        .expect("redis url")
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let events: redis::Value = redis::cmd("XRANGE")
        .arg(&history)
        .arg("-")
        .arg("+")
        .query_async(&mut redis)
        .await
        .expect("history");
    let mut texts = Vec::new();
    collect_strings(&events, &mut texts);
    for reported in [r#""done":0,"total":250"#, r#""done":250,"total":250"#] {
        assert!(
            texts.iter().any(|text| text.contains(reported)),
            "a progress event with {reported}: {texts:?}"
        );
    }
    // The quotes were stored: the price endpoint answers from them.
    let price: Value = http_client()
        .get(format!(
            "{}/api/v1/crypto/prices/coin-1",
            stack.api.base_url
        ))
        .send()
        .await
        .expect("price")
        .json()
        .await
        .expect("json");
    assert_eq!(price["price"], "101.5", "{price}");
}

#[tokio::test]
async fn failures_are_retried_until_success_or_dead() {
    let stack = Stack::start().await;
    let worker = stack.start_worker(&[]).await;
    let fail = Step {
        status: 503,
        delay_ms: 0,
    };
    stack.upstream.script([fail, fail]);
    let recovers = stack.bulk(&coins(&["bitcoin"])).await;
    let job = stack
        .wait_for_status(&recovers, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(job["attempts"], 3, "{job}");
    assert!(job["error"].is_null(), "{job}");

    stack.upstream.script([fail; 10]);
    let doomed = stack.bulk(&coins(&["ethereum"])).await;
    let job = stack
        .wait_for_status(&doomed, "dead", Duration::from_secs(20))
        .await;
    assert_eq!(job["attempts"], 5, "bulk_fetch allows 5 attempts: {job}");
    assert!(
        job["error"].as_str().expect("error").contains("503"),
        "{job}"
    );
    assert!(job["finished_at"].is_string());
    let metrics = metrics_of(&worker).await;
    assert!(
        metrics.contains(r#"jobs_dead_total{queue="bulk_fetch"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"jobs_completed_total{queue="bulk_fetch",outcome="failed"} 6"#),
        "{metrics}"
    );
    // Five failed upstream requests in a row (COINGECKO_BREAKER_FAILURES) opened the breaker.
    assert!(
        metrics.contains(r#"upstream_breaker_state{provider="coingecko"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn an_attempt_over_the_timeout_fails_and_is_retried() {
    let stack = Stack::start().await;
    let worker = stack.start_worker(&[("WORKER_JOB_TIMEOUT", "500ms")]).await;
    stack.upstream.script([Step {
        status: 200,
        delay_ms: 3000,
    }]);
    let id = stack.bulk(&coins(&["bitcoin"])).await;
    let job = stack
        .wait_for_status(&id, "succeeded", Duration::from_secs(15))
        .await;
    assert_eq!(job["attempts"], 2, "{job}");
    let metrics = metrics_of(&worker).await;
    assert!(
        metrics.contains(r#"jobs_completed_total{queue="bulk_fetch",outcome="failed"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_cancelled_job_never_runs() {
    let stack = Stack::start().await;
    let id = stack.bulk(&coins(&["bitcoin"])).await;
    let cancelled = http_client()
        .delete(format!("{}/api/v1/jobs/{id}", stack.api.base_url))
        .bearer_auth(&stack.token)
        .send()
        .await
        .expect("cancel");
    assert_eq!(cancelled.status(), 200);
    let worker = stack.start_worker(&[]).await;
    wait_until(
        "the cancelled job to be skipped",
        Duration::from_secs(10),
        || async {
            metrics_of(&worker)
                .await
                .contains(r#"jobs_completed_total{queue="bulk_fetch",outcome="skipped"} 1"#)
        },
    )
    .await;
    assert_eq!(stack.job(&id).await["status"], "cancelled");
    assert_eq!(stack.upstream.calls(), 0);
}

#[tokio::test]
async fn a_worker_killed_mid_job_loses_nothing_and_the_lost_run_counts() {
    let stack = Stack::start().await;
    let doomed = stack.start_worker(&[]).await;
    stack.upstream.script([Step {
        status: 200,
        delay_ms: 30_000,
    }]);
    let id = stack.bulk(&coins(&["bitcoin"])).await;
    wait_until(
        "the first run to call upstream",
        Duration::from_secs(10),
        || async { stack.upstream.calls() == 1 },
    )
    .await;
    let _survivor = stack.start_worker(&[]).await;
    doomed.kill_hard();
    // The re-run comes a lease after the kill; the deadline leaves a loaded machine room.
    let job = stack
        .wait_for_status(&id, "succeeded", Duration::from_secs(30))
        .await;
    assert_eq!(job["attempts"], 2, "the lost run counts: {job}");
    assert_eq!(stack.upstream.calls(), 2);
}

#[tokio::test]
async fn sigterm_lets_the_running_job_finish_then_exits_zero() {
    let stack = Stack::start().await;
    let worker = stack.start_worker(&[]).await;
    stack.upstream.script([Step {
        status: 200,
        delay_ms: 1500,
    }]);
    let id = stack.bulk(&coins(&["bitcoin"])).await;
    wait_until("the job to start", Duration::from_secs(10), || async {
        stack.upstream.calls() == 1
    })
    .await;
    let status = worker.terminate().await;
    assert!(status.success(), "{status:?}");
    let job = stack.job(&id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["attempts"], 1);
}

#[tokio::test]
async fn jobs_accepted_while_redis_is_down_complete_after_it_returns() {
    let mut redis = OwnRedis::start().await;
    let stack = Stack::start_with_redis(redis.url()).await;
    let mut worker = stack.start_worker(&[]).await;
    redis.stop();
    let mut accepted = Vec::new();
    for coin in ["bitcoin", "ethereum", "tether"] {
        accepted.push(stack.bulk(&coins(&[coin])).await);
    }
    for id in &accepted {
        assert_eq!(stack.job(id).await["status"], "queued");
    }
    redis.resume().await;
    for id in &accepted {
        stack
            .wait_for_status(id, "succeeded", Duration::from_secs(20))
            .await;
    }
    assert!(
        worker.exit_status().is_none(),
        "the worker rode out the outage"
    );
}

#[tokio::test]
async fn a_worker_that_loses_redis_for_good_exits_non_zero() {
    let mut redis = OwnRedis::start().await;
    let stack = Stack::start_with_redis(redis.url()).await;
    let mut worker = stack.start_worker(&[("WORKER_REDIS_GRACE", "1s")]).await;
    redis.stop();
    wait_until("the worker to give up", Duration::from_secs(20), || {
        let exited = worker.exit_status().is_some();
        async move { exited }
    })
    .await;
    let status = worker.exit_status().expect("exited");
    assert!(!status.success(), "{status:?}");
}

#[tokio::test]
async fn the_price_refresh_runs_once_per_interval_across_two_workers() {
    let stack = Stack::start().await;
    // A coin held in a portfolio is refreshed too, not only the top of the market.
    let client = http_client();
    let portfolio: Value = client
        .post(format!("{}/api/v1/portfolios", stack.api.base_url))
        .bearer_auth(&stack.token)
        .json(&json!({ "name": "held" }))
        .send()
        .await
        .expect("portfolio")
        .json()
        .await
        .expect("json");
    let added = client
        .post(format!(
            "{}/api/v1/portfolios/{}/transactions",
            stack.api.base_url,
            portfolio["id"].as_str().expect("id")
        ))
        .bearer_auth(&stack.token)
        .json(&json!({ "coin_id": "held-coin", "side": "buy", "quantity": "2", "price": "10" }))
        .send()
        .await
        .expect("transaction");
    assert_eq!(added.status(), 201, "{:?}", added.text().await);
    let settings = [
        ("PRICE_REFRESH_INTERVAL", "1s"),
        ("WORKER_QUEUES", "bulk_fetch,price_refresh"),
    ];
    let first = stack.start_worker(&settings).await;
    let second = stack.start_worker(&settings).await;
    let pool = stack.db.pool().await;
    wait_until("three refreshes", Duration::from_secs(15), || async {
        let done: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM jobs WHERE kind = 'price_refresh' AND status = 'succeeded'",
        )
        .fetch_one(&pool)
        .await
        .expect("count");
        done >= 3
    })
    .await;
    let _ = first.terminate().await;
    let _ = second.terminate().await;
    let (rows, slots, reruns): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT payload->>'slot'), count(*) FILTER (WHERE attempts > 1)
         FROM jobs WHERE kind = 'price_refresh'",
    )
    .fetch_one(&pool)
    .await
    .expect("refresh rows");
    assert_eq!(rows, slots, "one refresh per interval slot");
    assert_eq!(reruns, 0);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM latest_prices")
        .fetch_one(&pool)
        .await
        .expect("prices");
    assert!(stored >= 4, "the refresh stored the top of the market");
    let refreshed_after_purchase: bool = sqlx::query_scalar(
        "SELECT p.fetched_at > t.created_at
         FROM latest_prices p JOIN portfolio_transactions t USING (coin_id)
         WHERE p.coin_id = 'held-coin'",
    )
    .fetch_one(&pool)
    .await
    .expect("held coin price");
    assert!(refreshed_after_purchase, "the held coin was refreshed");
}

#[tokio::test]
async fn the_upstream_budget_holds_across_two_workers() {
    let stack = Stack::start().await;
    // 600 calls a minute = 10 a second, with a burst of 10.
    let settings = [
        ("COINGECKO_CALLS_PER_MINUTE", "600"),
        ("WORKER_CONCURRENCY", "8"),
    ];
    let _first = stack.start_worker(&settings).await;
    let _second = stack.start_worker(&settings).await;
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(stack.bulk(&[format!("coin-{n}")]).await);
    }
    for id in &ids {
        stack
            .wait_for_status(id, "succeeded", Duration::from_secs(30))
            .await;
    }
    let times = stack.upstream.call_times();
    assert_eq!(times.len(), 30);
    let span = *times.last().expect("calls") - times[0];
    // 10 at once, then 20 more at 10 a second: at least ~2 s for both workers together.
    assert!(span >= Duration::from_millis(1800), "30 calls in {span:?}");
}

/// The bulk-fetch job rows of `stack` that have been handed to Redis.
async fn enqueued_rows(stack: &Stack) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM jobs WHERE enqueued_at IS NOT NULL AND queue = 'bulk_fetch'",
    )
    .fetch_one(&stack.db.pool().await)
    .await
    .expect("count enqueued rows")
}

/// A counter's value in a Prometheus text exposition, 0 when absent.
fn counter(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Accepts `count` bulk jobs and waits until every one has been handed to Redis.
async fn accept_handed_over(stack: &Stack, count: i64) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        ids.push(stack.bulk(&coins(&["bitcoin"])).await);
    }
    wait_until(
        "every job handed to Redis",
        Duration::from_secs(30),
        || async { enqueued_rows(stack).await == count },
    )
    .await;
    ids
}

async fn all_succeed(stack: &Stack, ids: &[String]) {
    for id in ids {
        stack
            .wait_for_status(id, "succeeded", Duration::from_secs(60))
            .await;
    }
}

const RESCUE_FAST: [(&str, &str); 2] = [
    ("WORKER_RESCUE_INTERVAL", "200ms"),
    ("WORKER_RESCUE_GRACE", "100ms"),
];

#[tokio::test]
async fn jobs_accepted_before_redis_lost_its_data_still_run_once() {
    let mut redis = OwnRedis::start().await;
    let stack = Stack::start_with_redis(redis.url()).await;
    let ids = accept_handed_over(&stack, 20).await;
    // A restart without persistence: every queued job is gone from Redis.
    redis.stop();
    redis.resume().await;

    let worker = stack.start_worker(&RESCUE_FAST).await;
    all_succeed(&stack, &ids).await;
    assert_eq!(stack.upstream.calls(), 20, "each job ran once");
    let metrics = metrics_of(&worker).await;
    assert_eq!(
        counter(&metrics, r#"jobs_rescued_total{queue="bulk_fetch"}"#),
        20.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn the_rescuer_never_pushes_a_job_that_is_waiting_or_running() {
    let stack = Stack::start().await;
    // A worker that rescues but does not consume bulk_fetch: the jobs wait in Redis. (It
    // runs the refresh instead, on simulated prices, so the upstream sees only bulk fetches.)
    let bystander = stack
        .start_worker(&[
            RESCUE_FAST[0],
            RESCUE_FAST[1],
            ("WORKER_QUEUES", "price_refresh"),
            ("PRICE_PROVIDER", "simulated"),
        ])
        .await;
    let ids = accept_handed_over(&stack, 5).await;
    let rounds = |metrics: &str| counter(metrics, "rescue_rounds_total");
    let seen = rounds(&metrics_of(&bystander).await);
    wait_until(
        "five rescue rounds over waiting jobs",
        Duration::from_secs(30),
        || async { rounds(&metrics_of(&bystander).await) >= seen + 5.0 },
    )
    .await;

    // Now they run, slowly, while the rounds go on over running jobs.
    stack.upstream.script((0..5).map(|_| Step {
        status: 200,
        delay_ms: 1500,
    }));
    let consumer = stack.start_worker(&RESCUE_FAST).await;
    all_succeed(&stack, &ids).await;
    assert_eq!(stack.upstream.calls(), 5, "no job ran twice");
    for worker in [&bystander, &consumer] {
        let metrics = metrics_of(worker).await;
        assert_eq!(
            counter(&metrics, r#"jobs_rescued_total{queue="bulk_fetch"}"#),
            0.0,
            "{metrics}"
        );
    }
}

/// Every string inside a Redis reply.
fn collect_strings(value: &redis::Value, into: &mut Vec<String>) {
    match value {
        redis::Value::BulkString(bytes) => into.push(String::from_utf8_lossy(bytes).into_owned()),
        redis::Value::SimpleString(text) => into.push(text.clone()),
        redis::Value::Array(items) | redis::Value::Set(items) => {
            items.iter().for_each(|item| collect_strings(item, into));
        }
        redis::Value::Map(pairs) => pairs.iter().for_each(|(key, item)| {
            collect_strings(key, into);
            collect_strings(item, into);
        }),
        _ => {}
    }
}
