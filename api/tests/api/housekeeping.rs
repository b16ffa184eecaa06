//! The periodic purge: expired idempotency keys, long-expired refresh tokens and jobs finished
//! longer ago than the retention go, in batches, and nothing live is touched.

use std::time::Duration;

use api::housekeeping::{self, Purged};
use poem::http::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::TestApp;

#[tokio::test]
async fn expired_rows_of_every_user_are_purged_and_live_ones_kept() {
    let app = TestApp::spawn().await;
    let gone = app.register("gone").await;
    let active = app.register("active").await;
    let gone_id: Uuid = gone.id.parse().expect("id");

    // A key the active user just used, through the API.
    let created = app
        .client
        .post("/api/v1/portfolios")
        .header("authorization", format!("Bearer {}", active.access))
        .header("idempotency-key", "fresh-key")
        .body_json(&json!({"name": "Main"}))
        .send()
        .await;
    created.assert_status(StatusCode::CREATED);

    // 2,500 keys of a user who never came back, 25 h old: more than one purge batch.
    sqlx::query(
        "INSERT INTO idempotency_keys (user_id, scope, key, request_hash, created_at)
         SELECT $1, 'create_portfolio', 'old-' || n, '\\x00', now() - interval '25 hours'
         FROM generate_series(1, 2500) AS n",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("old keys");

    // Refresh tokens: the gone user's expired 8 days ago (past retention) and 1 day ago
    // (still kept, so a replay of it is still recognised as reuse); the active user's live.
    sqlx::query(
        "UPDATE refresh_tokens SET expires_at = now() - interval '8 days' WHERE user_id = $1",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("expire");
    sqlx::query(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $1, '\\x01', now() - interval '1 day')",
    )
    .bind(Uuid::now_v7())
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("recently expired token");

    // Email tokens: one expired two days ago goes, one expired an hour ago and a live one stay.
    sqlx::query(
        "INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at)
         VALUES ('\\x01', $1, 'password_reset', 'gone@example.com', now() - interval '2 days'),
                ('\\x02', $1, 'password_reset', 'gone@example.com', now() - interval '1 hour'),
                ('\\x03', $1, 'verify_email', 'gone@example.com', now() + interval '1 hour')",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("email tokens");

    // Jobs: finished 31 and 40 days ago go (succeeded, cancelled, dead); one finished a day
    // ago, and old ones still queued, running or failed (to be retried) stay.
    sqlx::query(
        "INSERT INTO jobs (id, user_id, kind, queue, status, max_attempts, payload, created_at,
                           finished_at)
         SELECT gen_random_uuid(), $1, 'bulk_fetch', 'bulk_fetch', status, 5, '{}',
                now() - interval '60 days', now() - finished
         FROM (VALUES ('succeeded', interval '31 days'), ('cancelled', interval '31 days'),
                      ('dead', interval '40 days'), ('succeeded', interval '1 day'))
              AS old (status, finished)",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("finished jobs");
    sqlx::query(
        "INSERT INTO jobs (id, user_id, kind, queue, status, max_attempts, payload, created_at)
         SELECT gen_random_uuid(), $1, 'bulk_fetch', 'bulk_fetch', status, 5, '{}',
                now() - interval '60 days'
         FROM unnest(ARRAY['queued', 'running', 'failed']) AS status",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("unfinished jobs");
    // Job files: an upload past its expiry goes, a download still valid stays.
    sqlx::query(
        "INSERT INTO job_files (job_id, purpose, media_type, content, expires_at)
         SELECT jobs.id, purpose, 'text/csv', '\\x00', expires_at
         FROM jobs, (VALUES ('upload', now() - interval '1 minute'),
                            ('download', now() + interval '1 hour')) AS file (purpose, expires_at)
         WHERE jobs.user_id = $1 AND jobs.status = 'queued'",
    )
    .bind(gone_id)
    .execute(&app.pool)
    .await
    .expect("job files");

    let retention = Duration::from_secs(30 * 24 * 60 * 60);
    let purged = housekeeping::purge(&app.pool, retention)
        .await
        .expect("purge");
    assert_eq!(
        purged,
        Purged {
            idempotency_keys: 2500,
            refresh_tokens: 1,
            account_tokens: 1,
            jobs: 3,
            job_files: 1,
        }
    );
    let count = |sql: &'static str| {
        let pool = app.pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&pool)
                .await
                .expect("count")
        }
    };
    assert_eq!(
        count("SELECT count(*) FROM idempotency_keys WHERE key = 'fresh-key'").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM idempotency_keys").await, 1);
    assert_eq!(
        count("SELECT count(*) FROM job_files WHERE purpose = 'download'").await,
        1
    );
    assert_eq!(count("SELECT count(*) FROM job_files").await, 1);
    assert_eq!(
        count("SELECT count(*) FROM refresh_tokens WHERE expires_at > now()").await,
        1,
        "the active user's session is untouched"
    );
    assert_eq!(count("SELECT count(*) FROM refresh_tokens").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM jobs WHERE kind = 'bulk_fetch'").await,
        4,
        "recent and unfinished jobs are kept"
    );

    // The active user's session still works; a second round finds nothing.
    assert_eq!(app.refresh(&active.refresh).await.status, StatusCode::OK);
    let again = housekeeping::purge(&app.pool, retention)
        .await
        .expect("purge");
    assert_eq!(again, Purged::default());
}
