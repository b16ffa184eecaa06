//! The worker's job stack (row tracking around apalis's panic and timeout layers) with a
//! handler of the test's own, against real Postgres and Redis.

use std::time::Duration;

use apalis::layers::catch_panic::{CatchPanicLayer, PanicError};
use apalis::prelude::*;
use common::config::RedisConfig;
use common::jobs::queues::{QueueDefaults, QueueSet};
use common::jobs::store;
use common::jobs::store::OutboxJob;
use common::jobs::{JobArgs, Queue};
use common::market::jobs::BulkFetch;
use common::redis::Redis;
use queue::{Delivery, RedisBackend};
use serde_json::{Value, json};
use test_support::{TestDatabase, redis_prefix, redis_url, wait_until};
use worker::jobs::rows::JobRows;
use worker::jobs::tracking::TrackingLayer;

/// Panics on the first attempt, succeeds on the next; a job for the coin `always` always
/// panics. (The handler reads the envelope Redis carries, not the typed arguments.)
async fn flaky(payload: Value, delivery: Data<Delivery>) -> Result<Value, BoxDynError> {
    if delivery.attempt == 1 || payload["args"]["coins"][0] == "always" {
        panic!("boom on attempt {}", delivery.attempt);
    }
    Ok(json!({ "attempt": delivery.attempt }))
}

#[tokio::test]
async fn a_panic_is_a_failed_attempt_not_a_dead_worker() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let redis_config = RedisConfig {
        url: redis_url().as_str().into(),
        key_prefix: redis_prefix(),
        timeout: Duration::from_secs(2),
        queue_cluster_nodes: Vec::new(),
    };
    let settings = QueueDefaults {
        retry_base: Duration::from_millis(50),
        ..QueueDefaults::default()
    };
    let queues = QueueSet::new(&redis_config, &settings).expect("queues");
    let redis = Redis::new(&redis_config).expect("redis");

    let mut outbox = Vec::new();
    for coin in ["sometimes", "always"] {
        let args = BulkFetch {
            coins: vec![coin.to_owned()],
            vs_currency: "usd".to_owned(),
        };
        let row = store::insert(&pool, None, &args).await.expect("insert");
        outbox.push(OutboxJob::from(&row));
    }
    queues.dispatch(&pool, &outbox).await.expect("dispatch");

    let backend = RedisBackend::<Value>::new(queues.get(Queue::BulkFetch).clone());
    let worker = WorkerBuilder::new("bulk_fetch")
        .backend(backend)
        .concurrency(2)
        .layer(TrackingLayer::new(
            JobRows::spawn(pool.clone()),
            common::events::Publisher::new(redis, Default::default()),
            Queue::BulkFetch,
            Duration::from_secs(5),
        ))
        .timeout(Duration::from_secs(5))
        .layer(CatchPanicLayer::with_panic_handler(
            |_: &Box<dyn std::any::Any + Send>| PanicError("boom".into()),
        ))
        .build(flaky);
    let running = tokio::spawn(worker.run());

    let status = |id| {
        let pool = pool.clone();
        async move {
            sqlx::query_as::<_, (String, i32, Option<String>)>(
                "SELECT status, attempts, error FROM jobs WHERE id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .expect("row")
        }
    };
    wait_until("both jobs final", Duration::from_secs(15), || async {
        status(outbox[0].id).await.0 == "succeeded" && status(outbox[1].id).await.0 == "dead"
    })
    .await;
    assert_eq!(status(outbox[0].id).await.1, 2);
    let (_, attempts, error) = status(outbox[1].id).await;
    assert_eq!(attempts, BulkFetch::MAX_ATTEMPTS);
    assert!(error.expect("error").contains("panicked"));
    assert!(!running.is_finished(), "the worker survived every panic");
    running.abort();
}
