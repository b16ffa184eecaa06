//! Registration, login, refresh rotation, logout.

use poem::http::StatusCode;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn register_returns_tokens_that_work() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "Ada@Example.com", "username": "ada", "password": "correct horse"}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    assert_eq!(reply.body["token_type"], "Bearer");
    assert_eq!(reply.body["expires_in"], 900);
    assert_eq!(reply.body["user"]["email"], "Ada@Example.com");
    assert_eq!(reply.body["user"]["role"], "user");
    assert!(reply.body["user"].get("password_hash").is_none());
    let token = reply.body["access_token"].as_str().expect("token");
    let me = app.get("/api/v1/users/me", Some(token)).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(me.body["username"], "ada");

    let stored: String = sqlx::query_scalar("SELECT password_hash FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert!(
        stored.starts_with("$argon2id$"),
        "stored as argon2id: {stored}"
    );
}

#[tokio::test]
async fn emails_and_usernames_are_unique_regardless_of_case() {
    let app = TestApp::spawn().await;
    app.register("ada").await;
    let same_email = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "ADA@example.COM", "username": "other", "password": "password-123"}),
        )
        .await;
    same_email.assert_problem(409, "CONFLICT");
    assert_eq!(same_email.error_fields(), vec!["email"]);
    let same_name = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "other@example.com", "username": "ADA", "password": "password-123"}),
        )
        .await;
    same_name.assert_problem(409, "CONFLICT");
    assert_eq!(same_name.error_fields(), vec!["username"]);
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 1);
}

#[tokio::test]
async fn invalid_registrations_list_every_bad_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "not-an-email", "username": "a", "password": "short"}),
        )
        .await;
    reply.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(reply.error_fields(), vec!["email", "username", "password"]);

    let missing = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "a@example.com"}),
        )
        .await;
    missing.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(missing.body["errors"][0]["message"], "is required");

    let wrong_type = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": 5, "username": "ada", "password": "password-123"}),
        )
        .await;
    wrong_type.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(wrong_type.error_fields(), vec!["email"]);

    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn a_registration_lists_every_bad_field_at_once_in_plain_words() {
    let app = TestApp::spawn().await;
    let reply = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": "not-an-email", "username": "a!", "password": "short"}),
        )
        .await;
    reply.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        reply.body["errors"],
        json!([
            {"field": "email", "message": "must be a valid email address"},
            {"field": "username", "message":
                "must be 3 to 32 letters, digits, '_', '-' or '.', starting with a letter or digit"},
            {"field": "password", "message": "must be 8 to 128 characters long"},
        ])
    );

    // Wrong types, a missing field and an unknown one do not hide each other either.
    let mixed = app
        .post(
            "/api/v1/auth/register",
            None,
            json!({"email": 5, "password": ["correct horse"], "role": "admin"}),
        )
        .await;
    mixed.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        mixed.body["errors"],
        json!([
            {"field": "email", "message": "must be a string"},
            {"field": "username", "message": "is required"},
            {"field": "password", "message": "must be a string"},
            {"field": "role", "message": "is not a known field"},
        ])
    );
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM users")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(count, 0);
}

#[tokio::test]
async fn malformed_json_and_wrong_media_types_are_problems() {
    let app = TestApp::spawn().await;
    let malformed = TestApp::reply(
        app.client
            .post("/api/v1/auth/login")
            .content_type("application/json")
            .body("{\"email\": ")
            .send()
            .await,
    )
    .await;
    malformed.assert_problem(400, "BAD_REQUEST");

    let text = TestApp::reply(
        app.client
            .post("/api/v1/auth/login")
            .content_type("text/plain")
            .body("email=a")
            .send()
            .await,
    )
    .await;
    text.assert_problem(415, "UNSUPPORTED_MEDIA_TYPE");
}

#[tokio::test]
async fn login_accepts_any_email_case_and_records_the_login() {
    let app = TestApp::spawn().await;
    let session = app.register("grace").await;
    let reply = app.login("GRACE@example.com", &session.password).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert!(reply.body["user"]["last_login_at"].is_string());
    assert_ne!(reply.body["refresh_token"], session.refresh.as_str());
}

#[tokio::test]
async fn unknown_email_and_wrong_password_are_indistinguishable() {
    let app = TestApp::spawn().await;
    let session = app.register("alan").await;
    let wrong_password = app.login(&session.email, "not-the-password").await;
    let unknown_email = app.login("nobody@example.com", "not-the-password").await;
    wrong_password.assert_problem(401, "UNAUTHORIZED");
    unknown_email.assert_problem(401, "UNAUTHORIZED");
    assert_eq!(wrong_password.body["detail"], unknown_email.body["detail"]);
    assert_eq!(wrong_password.body["title"], unknown_email.body["title"]);
}

#[tokio::test]
async fn disabled_accounts_cannot_log_in() {
    let app = TestApp::spawn().await;
    let session = app.register("mallory").await;
    sqlx::query("UPDATE users SET is_active = false")
        .execute(&app.pool)
        .await
        .expect("disable");
    app.login(&session.email, &session.password)
        .await
        .assert_problem(403, "FORBIDDEN");
    // Without the password, a disabled account looks like any failed login.
    app.login(&session.email, "wrong-password")
        .await
        .assert_problem(401, "UNAUTHORIZED");
    // Its access token stops working at once and its refresh token is refused.
    app.get("/api/v1/users/me", Some(&session.access))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    app.refresh(&session.refresh)
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() {
    let app = TestApp::spawn().await;
    let session = app.register("eve").await;

    let first = app.refresh(&session.refresh).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    let second_token = first.body["refresh_token"]
        .as_str()
        .expect("rotated")
        .to_owned();
    assert_ne!(second_token, session.refresh);
    let access = first.body["access_token"].as_str().expect("access");
    assert_eq!(
        app.get("/api/v1/users/me", Some(access)).await.status,
        StatusCode::OK
    );

    // The first token again: a replay. Refused, and its successor dies with it.
    let replay = app.refresh(&session.refresh).await;
    replay.assert_problem(401, "UNAUTHORIZED");
    assert!(
        replay.body["detail"]
            .as_str()
            .expect("detail")
            .contains("reuse"),
        "{}",
        replay.body
    );
    let successor = app.refresh(&second_token).await;
    successor.assert_problem(401, "UNAUTHORIZED");
    assert_eq!(
        successor.body["detail"], "the session has ended; log in again",
        "its holder is told the session ended, not accused"
    );
    assert!(refusals(&app, "reuse").await >= 1.0, "reuse is counted");

    // Another login (another family) is unaffected.
    let other = app.login(&session.email, &session.password).await;
    let other_refresh = other.body["refresh_token"].as_str().expect("token");
    assert_eq!(app.refresh(other_refresh).await.status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_and_expired_refresh_tokens_are_refused() {
    let app = TestApp::spawn().await;
    app.refresh("made-up")
        .await
        .assert_problem(401, "UNAUTHORIZED");
    let session = app.register("old").await;
    sqlx::query("UPDATE refresh_tokens SET expires_at = now() - interval '1 second'")
        .execute(&app.pool)
        .await
        .expect("expire");
    app.refresh(&session.refresh)
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn concurrent_refreshes_of_one_token_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let session = app.register("race").await;
    let body = json!({"refresh_token": session.refresh});
    let (a, b) = tokio::join!(
        app.post("/api/v1/auth/refresh", None, body.clone()),
        app.post("/api/v1/auth/refresh", None, body.clone()),
    );
    let mut statuses = [a.status.as_u16(), b.status.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 401]);
}

#[tokio::test]
async fn logout_ends_one_session_and_is_idempotent() {
    let app = TestApp::spawn().await;
    let session = app.register("bob").await;
    let other = app.login(&session.email, &session.password).await;
    let other_refresh = other.body["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();

    let reply = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": session.refresh}),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
    let again = app
        .post(
            "/api/v1/auth/logout",
            None,
            json!({"refresh_token": session.refresh}),
        )
        .await;
    assert_eq!(again.status, StatusCode::NO_CONTENT);
    let ended_before = refusals(&app, "ended").await;
    let after_logout = app.refresh(&session.refresh).await;
    after_logout.assert_problem(401, "UNAUTHORIZED");
    assert_eq!(
        after_logout.body["detail"], "the session has ended; log in again",
        "a logout is not theft"
    );
    assert!(refusals(&app, "ended").await > ended_before);
    assert_eq!(
        app.refresh(&other_refresh).await.status,
        StatusCode::OK,
        "no other session was revoked"
    );
}

/// `auth_refresh_refused_total{reason}` as the app's `/metrics` shows it (tests in this binary
/// share one recorder, so compare before and after, never an absolute value).
async fn refusals(app: &TestApp, reason: &str) -> f64 {
    let series = format!("auth_refresh_refused_total{{reason=\"{reason}\"}} ");
    app.metrics_text()
        .await
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series} is exported"))
}

#[tokio::test]
async fn logout_all_ends_every_session() {
    let app = TestApp::spawn().await;
    let session = app.register("carol").await;
    let other = app.login(&session.email, &session.password).await;
    let other_refresh = other.body["refresh_token"]
        .as_str()
        .expect("token")
        .to_owned();

    app.post("/api/v1/auth/logout-all", None, json!({}))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    let reply = app
        .call(
            poem::http::Method::POST,
            "/api/v1/auth/logout-all",
            Some(&session.access),
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    for token in [&session.refresh, &other_refresh] {
        app.refresh(token).await.assert_problem(401, "UNAUTHORIZED");
    }
}
