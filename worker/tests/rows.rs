//! The worker's batched writer of job rows against real Postgres: many attempts submitted at
//! once share statements but each gets its own answer, and the rules of a single attempt
//! (final rows never restart, a superseded attempt changes nothing) hold inside a batch.

use common::jobs::store::{self, Attempt, Outcome};
use common::market::jobs::BulkFetch;
use futures_util::future::join_all;
use serde_json::{Value, json};
use sqlx::PgPool;
use test_support::TestDatabase;
use uuid::Uuid;
use worker::jobs::rows::JobRows;

async fn queued_job(pool: &PgPool) -> Uuid {
    let args = BulkFetch {
        coins: vec!["bitcoin".to_owned()],
        vs_currency: "usd".to_owned(),
    };
    store::insert(pool, None, &args).await.expect("insert").id
}

#[derive(Debug, PartialEq)]
struct Row {
    status: String,
    attempts: i32,
    result: Option<Value>,
    error: Option<String>,
    finished: bool,
}

async fn row(pool: &PgPool, id: Uuid) -> Row {
    let (status, attempts, result, error, finished) = sqlx::query_as::<
        _,
        (String, i32, Option<Value>, Option<String>, bool),
    >(
        "SELECT status, attempts, result, error, finished_at IS NOT NULL FROM jobs WHERE id = $1",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .expect("row");
    Row {
        status,
        attempts,
        result,
        error,
        finished,
    }
}

fn attempt(id: Uuid, attempt: i32) -> Attempt {
    Attempt { id, attempt }
}

#[tokio::test]
async fn a_burst_of_attempts_each_gets_its_own_answer() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let rows = JobRows::spawn(pool.clone());
    let mut ids = Vec::new();
    for _ in 0..600 {
        ids.push(queued_job(&pool).await);
    }
    let cancelled = ids[0];
    sqlx::query("UPDATE jobs SET status = 'cancelled' WHERE id = $1")
        .bind(cancelled)
        .execute(&pool)
        .await
        .expect("cancel");

    // More than one statement's worth, all at once: they are written in several batches.
    let started = join_all(ids.iter().map(|&id| rows.start(attempt(id, 1)))).await;
    for (id, started) in ids.iter().zip(&started) {
        let started = started.as_ref().expect("start written");
        assert_eq!(started.is_some(), *id != cancelled, "job {id}");
    }
    assert_eq!(row(&pool, cancelled).await.status, "cancelled");

    let outcomes = ids[1..].iter().enumerate().map(|(n, &id)| {
        let outcome = match n % 3 {
            0 => Outcome::Succeeded(json!({ "n": n })),
            1 => Outcome::Failed(format!("failure {n}")),
            _ => Outcome::Dead(format!("gave up {n}")),
        };
        rows.finish(attempt(id, 1), outcome)
    });
    for finished in join_all(outcomes).await {
        finished.expect("finish written");
    }
    for (n, &id) in ids[1..].iter().enumerate() {
        let expected = match n % 3 {
            0 => Row {
                status: "succeeded".into(),
                attempts: 1,
                result: Some(json!({ "n": n })),
                error: None,
                finished: true,
            },
            1 => Row {
                status: "failed".into(),
                attempts: 1,
                result: None,
                error: Some(format!("failure {n}")),
                finished: false,
            },
            _ => Row {
                status: "dead".into(),
                attempts: 1,
                result: None,
                error: Some(format!("gave up {n}")),
                finished: true,
            },
        };
        assert_eq!(row(&pool, id).await, expected, "job {n}");
    }
}

#[tokio::test]
async fn within_a_batch_only_the_latest_attempt_runs_and_stale_ones_change_nothing() {
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let rows = JobRows::spawn(pool.clone());
    let id = queued_job(&pool).await;

    // A duplicate delivery of attempt 1 beside attempt 2, submitted together.
    let (first, second) = tokio::join!(rows.start(attempt(id, 1)), rows.start(attempt(id, 2)));
    assert!(first.expect("written").is_none(), "attempt 1 is superseded");
    assert!(second.expect("written").is_some(), "attempt 2 runs");
    assert_eq!(row(&pool, id).await.attempts, 2);

    // The stale attempt finishing changes nothing; the live one is recorded.
    rows.finish(attempt(id, 1), Outcome::Dead("stale".into()))
        .await
        .expect("written");
    assert_eq!(row(&pool, id).await.status, "running");
    rows.finish(attempt(id, 2), Outcome::Succeeded(json!("done")))
        .await
        .expect("written");
    assert_eq!(row(&pool, id).await.status, "succeeded");

    // A finished job never starts again, whatever attempt the queue brings.
    let again = rows.start(attempt(id, 3)).await.expect("written");
    assert!(again.is_none());
    assert_eq!(row(&pool, id).await.attempts, 2);
}
