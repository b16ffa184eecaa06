//! Notifications (written by the worker; here inserted directly), preferences, and the
//! account email flows (the API queues messages and consumes the tokens they carry).

use common::email::tokens::{self, TokenPurpose};
use poem::http::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::TestApp;

async fn notification(app: &TestApp, user: &str, category: &str, read: bool) -> Uuid {
    let id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, category, kind, title, body, data, read_at)
         VALUES ($1, $2::uuid, $3, 'price_alert', 'title', 'body', '{\"type\": \"x\"}',
                 CASE WHEN $4 THEN now() END)",
    )
    .bind(id)
    .bind(user)
    .bind(category)
    .bind(read)
    .execute(&app.pool)
    .await
    .expect("notification");
    id
}

async fn jobs_of(app: &TestApp, kind: &str) -> Vec<Value> {
    sqlx::query_scalar("SELECT payload FROM jobs WHERE kind = $1 ORDER BY created_at")
        .bind(kind)
        .fetch_all(&app.pool)
        .await
        .expect("jobs")
}

#[tokio::test]
async fn notifications_are_listed_read_and_deleted_by_their_owner_only() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let first = notification(&app, &ann.id, "price_alerts", false).await;
    notification(&app, &ann.id, "jobs", false).await;
    notification(&app, &ann.id, "jobs", true).await;
    let mine = notification(&app, &bob.id, "jobs", false).await;

    let all = app.get("/api/v1/notifications", Some(&ann.access)).await;
    assert_eq!(
        (&all.body["total"], &all.body["unread_count"]),
        (&json!(3), &json!(2)),
        "{}",
        all.body
    );
    let unread_jobs = app
        .get(
            "/api/v1/notifications?unread=true&category=jobs",
            Some(&ann.access),
        )
        .await;
    assert_eq!(
        (
            &unread_jobs.body["total"],
            &unread_jobs.body["unread_count"]
        ),
        (&json!(1), &json!(2))
    );
    app.get("/api/v1/notifications?category=nope", Some(&ann.access))
        .await
        .assert_problem(422, "VALIDATION_ERROR");

    let path = format!("/api/v1/notifications/{first}/read");
    let read = app.post(&path, Some(&ann.access), json!({})).await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.body);
    assert_eq!(read.body["read"], true);
    let again = app.post(&path, Some(&ann.access), json!({})).await;
    assert_eq!(
        again.body["read_at"], read.body["read_at"],
        "the first read time stays"
    );
    app.post(
        &format!("/api/v1/notifications/{mine}/read"),
        Some(&ann.access),
        json!({}),
    )
    .await
    .assert_problem(404, "NOT_FOUND");
    app.call(
        Method::DELETE,
        &format!("/api/v1/notifications/{mine}"),
        Some(&ann.access),
        None,
    )
    .await
    .assert_problem(404, "NOT_FOUND");

    let all_read = app
        .post(
            "/api/v1/notifications/read-all",
            Some(&ann.access),
            json!({}),
        )
        .await;
    assert_eq!(all_read.body["updated"], 1, "{}", all_read.body);
    assert_eq!(
        app.get("/api/v1/notifications", Some(&bob.access))
            .await
            .body["unread_count"],
        1
    );
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/notifications/{first}"),
            Some(&ann.access),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        app.get("/api/v1/notifications", Some(&ann.access))
            .await
            .body["total"],
        2
    );
}

#[tokio::test]
async fn preferences_default_to_everything_and_are_replaced_whole() {
    let app = TestApp::spawn().await;
    let user = app.register("carol").await;
    let defaults = app
        .get("/api/v1/notifications/preferences", Some(&user.access))
        .await;
    assert_eq!(
        defaults.body,
        json!({"in_app_enabled": true, "email_enabled": true, "price_alerts": true,
               "account": true, "jobs": true})
    );
    let wanted = json!({"in_app_enabled": true, "email_enabled": false, "price_alerts": true,
                        "account": false, "jobs": true});
    let saved = app
        .call(
            Method::PUT,
            "/api/v1/notifications/preferences",
            Some(&user.access),
            Some(wanted.clone()),
        )
        .await;
    assert_eq!(saved.body, wanted);
    assert_eq!(
        app.get("/api/v1/notifications/preferences", Some(&user.access))
            .await
            .body,
        wanted
    );
    app.call(
        Method::PUT,
        "/api/v1/notifications/preferences",
        Some(&user.access),
        Some(json!({"in_app_enabled": true})),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn registering_queues_a_welcome_and_verification_works_once_for_the_address_it_was_sent_to() {
    let app = TestApp::spawn().await;
    let user = app.register("dave").await;
    let welcome = jobs_of(&app, "notify").await;
    assert_eq!(welcome.len(), 1);
    assert_eq!(welcome[0]["content"]["type"], "welcome");
    assert_eq!(welcome[0]["user_id"], user.id);
    let me = app.get("/api/v1/users/me", Some(&user.access)).await;
    assert_eq!(me.body["email_verified"], false);

    for _ in 0..2 {
        let asked = app
            .post(
                "/api/v1/auth/verify-email/request",
                Some(&user.access),
                json!({}),
            )
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    }
    let emails = jobs_of(&app, "email").await;
    assert!(
        (1..=2).contains(&emails.len()),
        "one message per minute (two if the minute turned): {emails:?}"
    );
    assert_eq!(emails[0]["message"]["template"], "verify_email");

    let user_id: Uuid = user.id.parse().expect("id");
    let token = tokens::create(&app.pool, user_id, &user.email, TokenPurpose::VerifyEmail)
        .await
        .expect("token");
    let confirmed = app
        .post(
            "/api/v1/auth/verify-email/confirm",
            None,
            json!({"token": token}),
        )
        .await;
    assert_eq!(confirmed.status, StatusCode::OK, "{}", confirmed.body);
    assert_eq!(
        app.get("/api/v1/users/me", Some(&user.access)).await.body["email_verified"],
        true
    );
    app.post(
        "/api/v1/auth/verify-email/confirm",
        None,
        json!({"token": token}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    app.post(
        "/api/v1/auth/verify-email/request",
        Some(&user.access),
        json!({}),
    )
    .await
    .assert_problem(409, "CONFLICT");

    // A token sent to the old address proves nothing about the new one.
    let old = tokens::create(&app.pool, user_id, &user.email, TokenPurpose::VerifyEmail)
        .await
        .expect("token");
    let moved = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&user.access),
            Some(json!({"email": "dave2@example.com"})),
        )
        .await;
    assert_eq!(moved.body["email_verified"], false, "{}", moved.body);
    app.post(
        "/api/v1/auth/verify-email/confirm",
        None,
        json!({"token": old}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
}

#[tokio::test]
async fn a_password_reset_looks_the_same_for_unknown_addresses_and_ends_every_session() {
    let app = TestApp::spawn().await;
    let user = app.register("erin").await;
    for email in ["nobody@example.com", &user.email] {
        let asked = app
            .post(
                "/api/v1/auth/password-reset/request",
                None,
                json!({"email": email}),
            )
            .await;
        assert_eq!(asked.status, StatusCode::ACCEPTED, "{}", asked.body);
    }
    let emails = jobs_of(&app, "email").await;
    assert_eq!(emails.len(), 2, "one job either way: {emails:?}");
    assert_eq!(
        emails[0]["to"],
        json!({"type": "address", "email": "nobody@example.com"})
    );
    app.post(
        "/api/v1/auth/password-reset/request",
        None,
        json!({"email": "not an address"}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");

    let user_id: Uuid = user.id.parse().expect("id");
    let token = tokens::create(&app.pool, user_id, &user.email, TokenPurpose::PasswordReset)
        .await
        .expect("token");
    app.post(
        "/api/v1/auth/password-reset/confirm",
        None,
        json!({"token": token, "new_password": "short"}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    let reset = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "new_password": "a-new-password-123"}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.body);
    assert_eq!(
        app.login(&user.email, "a-new-password-123").await.status,
        StatusCode::OK
    );
    assert_eq!(
        app.login(&user.email, &user.password).await.status,
        StatusCode::UNAUTHORIZED
    );
    app.refresh(&user.refresh)
        .await
        .assert_problem(401, "UNAUTHORIZED");
    app.post(
        "/api/v1/auth/password-reset/confirm",
        None,
        json!({"token": token, "new_password": "another-password-123"}),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    let changed: Vec<Value> = jobs_of(&app, "notify").await;
    assert!(
        changed
            .iter()
            .any(|job| job["content"]["type"] == "password_changed")
    );
}

#[tokio::test]
async fn a_password_reset_forgives_the_failed_logins_that_locked_the_account() {
    let app = TestApp::spawn_with(|config| config.rate_limit.login_failures_per_account = 2).await;
    let user = app.register("fay").await;
    for _ in 0..2 {
        assert_eq!(
            app.login(&user.email, "a wrong password").await.status,
            StatusCode::UNAUTHORIZED
        );
    }
    app.login(&user.email, &user.password)
        .await
        .assert_problem(429, "RATE_LIMITED");

    let user_id: Uuid = user.id.parse().expect("id");
    let token = tokens::create(&app.pool, user_id, &user.email, TokenPurpose::PasswordReset)
        .await
        .expect("token");
    let reset = app
        .post(
            "/api/v1/auth/password-reset/confirm",
            None,
            json!({"token": token, "new_password": "a-new-password-123"}),
        )
        .await;
    assert_eq!(reset.status, StatusCode::NO_CONTENT, "{}", reset.body);
    assert_eq!(
        app.login(&user.email, "a-new-password-123").await.status,
        StatusCode::OK
    );
}
