//! Bulk fetch acceptance and the jobs API.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

/// Bulk fetches accepted (registration also queues a welcome notification, a system job).
async fn job_count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs WHERE kind = 'bulk_fetch'")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn a_bulk_fetch_is_accepted_durably_with_a_location() {
    let app = TestApp::spawn().await;
    let user = app.register("trader").await;
    let reply = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": ["bitcoin", "ethereum"], "vs_currency": "USD"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
    let id = reply.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/jobs/{id}").as_str())
    );
    assert_eq!(reply.body["kind"], "bulk_fetch");
    assert_eq!(reply.body["status"], "queued");
    assert_eq!(reply.body["attempts"], 0);
    assert_eq!(
        reply.body["payload"],
        json!({"coins": ["bitcoin", "ethereum"], "vs_currency": "usd"})
    );

    let fetched = app
        .get(&format!("/api/v1/jobs/{id}"), Some(&user.access))
        .await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["id"], id.as_str());

    // Durable before the answer: the row exists (Redis gets it after commit, or via the relay).
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(status, "queued");
}

#[tokio::test]
async fn bulk_requests_are_validated_and_write_nothing_when_invalid() {
    let app = TestApp::spawn().await;
    let user = app.register("trader").await;
    let cases = [
        (json!({"coins": []}), vec!["coins"]),
        (
            json!({"coins": ["bitcoin", "Bad Id", "bitcoin"]}),
            vec!["coins[1]", "coins[2]"],
        ),
        (
            json!({"coins": ["bitcoin"], "vs_currency": "xyz"}),
            vec!["vs_currency"],
        ),
        (json!({"coins": "bitcoin"}), vec!["coins"]),
        (
            json!({"coins": ["bitcoin"], "priority": 1}),
            vec!["priority"],
        ),
    ];
    for (body, fields) in cases {
        let reply = app
            .post("/api/v1/crypto/bulk", Some(&user.access), body.clone())
            .await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields(), fields, "{body}");
    }
    let too_many: Vec<String> = (0..251).map(|i| format!("coin-{i}")).collect();
    app.post(
        "/api/v1/crypto/bulk",
        Some(&user.access),
        json!({"coins": too_many}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    app.post("/api/v1/crypto/bulk", None, json!({"coins": ["bitcoin"]}))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    assert_eq!(job_count(&app).await, 0);

    let most: Vec<String> = (0..250).map(|i| format!("coin-{i}")).collect();
    let reply = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": most}),
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::ACCEPTED,
        "250 distinct ids are allowed"
    );
}

#[tokio::test]
async fn another_users_job_is_not_found_for_every_method() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let other = app.register("other").await;
    let reply = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&owner.access),
            json!({"coins": ["bitcoin"]}),
        )
        .await;
    let path = format!("/api/v1/jobs/{}", reply.body["id"].as_str().expect("id"));
    app.get(&path, Some(&other.access))
        .await
        .assert_problem(404, "NOT_FOUND");
    app.call(Method::DELETE, &path, Some(&other.access), None)
        .await
        .assert_problem(404, "NOT_FOUND");
    let list = app.get("/api/v1/jobs", Some(&other.access)).await;
    assert_eq!(list.body["total"], 0);
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE kind = 'bulk_fetch'")
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(status, "queued", "the other user's cancel changed nothing");
    app.get("/api/v1/jobs/not-a-uuid", Some(&owner.access))
        .await
        .assert_problem(422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn queued_jobs_can_be_cancelled_and_started_ones_cannot() {
    let app = TestApp::spawn().await;
    let user = app.register("trader").await;
    let first = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": ["bitcoin"]}),
        )
        .await;
    let path = format!("/api/v1/jobs/{}", first.body["id"].as_str().expect("id"));
    let cancelled = app
        .call(Method::DELETE, &path, Some(&user.access), None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.body);
    assert_eq!(cancelled.body["status"], "cancelled");
    assert!(cancelled.body["finished_at"].is_string());
    app.call(Method::DELETE, &path, Some(&user.access), None)
        .await
        .assert_problem(409, "CONFLICT");

    let second = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": ["ethereum"]}),
        )
        .await;
    let id = second.body["id"].as_str().expect("id").to_owned();
    sqlx::query("UPDATE jobs SET status = 'running', attempts = 1 WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .expect("start");
    app.call(
        Method::DELETE,
        &format!("/api/v1/jobs/{id}"),
        Some(&user.access),
        None,
    )
    .await
    .assert_problem(409, "CONFLICT");
    let status: String = sqlx::query_scalar("SELECT status FROM jobs WHERE id = $1::uuid")
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(status, "running");
}

#[tokio::test]
async fn the_job_list_pages_and_filters() {
    let app = TestApp::spawn().await;
    let user = app.register("trader").await;
    for coin in ["bitcoin", "ethereum", "solana"] {
        app.post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": [coin]}),
        )
        .await;
    }
    sqlx::query("UPDATE jobs SET status = 'succeeded' WHERE payload->'coins'->>0 = 'bitcoin'")
        .execute(&app.pool)
        .await
        .expect("finish one");
    let page = app.get("/api/v1/jobs?per_page=2", Some(&user.access)).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["total"], 3);
    assert_eq!(page.body["total_pages"], 2);
    assert_eq!(
        page.body["items"][0]["payload"]["coins"][0], "solana",
        "newest first"
    );
    let queued = app
        .get("/api/v1/jobs?status=queued", Some(&user.access))
        .await;
    assert_eq!(queued.body["total"], 2);
    let bulk = app
        .get(
            "/api/v1/jobs?kind=bulk_fetch&status=succeeded",
            Some(&user.access),
        )
        .await;
    assert_eq!(bulk.body["total"], 1);
    app.get("/api/v1/jobs?status=done", Some(&user.access))
        .await
        .assert_problem(422, "VALIDATION_ERROR");
    app.get("/api/v1/jobs?per_page=500", Some(&user.access))
        .await
        .assert_problem(422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn an_accepted_job_reaches_its_queue_and_admins_see_the_counts() {
    let app = TestApp::spawn().await;
    let user = app.register("queued").await;
    let accepted = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            serde_json::json!({ "coins": ["bitcoin"], "vs_currency": "usd" }),
        )
        .await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{}", accepted.body);
    let id: uuid::Uuid = accepted.body["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("uuid");
    // Handed to Redis after commit (no worker runs here, so it stays ready).
    test_support::wait_until(
        "the job to reach Redis",
        std::time::Duration::from_secs(5),
        || async {
            sqlx::query_scalar::<_, bool>("SELECT enqueued_at IS NOT NULL FROM jobs WHERE id = $1")
                .bind(id)
                .fetch_one(&app.pool)
                .await
                .expect("row")
        },
    )
    .await;

    app.get("/api/v1/admin/queues", Some(&user.access))
        .await
        .assert_problem(403, "FORBIDDEN");
    let admin = app.admin("queues-admin").await;
    let counts = app.get("/api/v1/admin/queues", Some(&admin.access)).await;
    assert_eq!(counts.status, StatusCode::OK, "{}", counts.body);
    let queues = counts.body["queues"].as_array().expect("queues");
    let names: Vec<&str> = queues
        .iter()
        .map(|q| q["queue"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        [
            "bulk_fetch",
            "price_refresh",
            "alert_eval",
            "notify",
            "email",
            "portfolio_files"
        ]
    );
    assert_eq!(queues[0]["depth"], 1, "{}", counts.body);
    assert_eq!(queues[0]["in_flight"], 0);
    assert_eq!(queues[0]["dead"], 0);
}

async fn bulk_keyed(
    app: &TestApp,
    user: &crate::helpers::Session,
    body: serde_json::Value,
    key: &str,
) -> crate::helpers::Reply {
    app.send(
        Method::POST,
        "/api/v1/crypto/bulk",
        Some(&user.access),
        Some(body),
        &[("idempotency-key", key)],
    )
    .await
}

#[tokio::test]
async fn a_retried_bulk_fetch_with_its_idempotency_key_returns_the_first_job() {
    let app = TestApp::spawn().await;
    let user = app.register("trader").await;
    let body = json!({"coins": ["bitcoin", "ethereum"], "vs_currency": "usd"});
    let first = bulk_keyed(&app, &user, body.clone(), "fetch-1").await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same request, written differently (case), is the same fetch.
    let retry = bulk_keyed(
        &app,
        &user,
        json!({"coins": ["bitcoin", "ethereum"], "vs_currency": "USD"}),
        "fetch-1",
    )
    .await;
    assert_eq!(retry.status, StatusCode::ACCEPTED, "{}", retry.body);
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(retry.body["id"], first.body["id"]);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(job_count(&app).await, 1, "one job for one key");

    // The key with another request is refused and starts nothing.
    let other = bulk_keyed(&app, &user, json!({"coins": ["solana"]}), "fetch-1").await;
    other.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(other.error_fields(), vec!["Idempotency-Key"]);
    assert_eq!(job_count(&app).await, 1);

    // Without a key every request is its own fetch; a malformed key is refused.
    let fresh = app
        .post("/api/v1/crypto/bulk", Some(&user.access), body.clone())
        .await;
    assert_eq!(fresh.status, StatusCode::ACCEPTED);
    assert_ne!(fresh.body["id"], first.body["id"]);
    let bad = bulk_keyed(&app, &user, body, "has space").await;
    bad.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(job_count(&app).await, 2);
}
