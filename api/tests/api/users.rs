//! The caller's own account.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn profile_can_be_read_and_changed() {
    let app = TestApp::spawn().await;
    let session = app.register("ada").await;
    let reply = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&session.access),
            Some(json!({"username": "ada_l", "email": "lovelace@example.com"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["username"], "ada_l");
    assert_eq!(reply.body["email"], "lovelace@example.com");
    let me = app.get("/api/v1/users/me", Some(&session.access)).await;
    assert_eq!(me.body["username"], "ada_l");
    assert_eq!(
        app.login("lovelace@example.com", &session.password)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn profile_changes_are_validated_and_conflicts_reported() {
    let app = TestApp::spawn().await;
    let session = app.register("ada").await;
    app.register("taken").await;
    let invalid = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&session.access),
            Some(json!({"email": "nope", "username": "x"})),
        )
        .await;
    invalid.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(invalid.error_fields(), vec!["email", "username"]);
    let conflict = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&session.access),
            Some(json!({"username": "TAKEN"})),
        )
        .await;
    conflict.assert_problem(409, "CONFLICT");
    let unknown_field = app
        .call(
            Method::PATCH,
            "/api/v1/users/me",
            Some(&session.access),
            Some(json!({"role": "admin"})),
        )
        .await;
    unknown_field.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(unknown_field.error_fields(), vec!["role"]);
    let me = app.get("/api/v1/users/me", Some(&session.access)).await;
    assert_eq!(me.body["username"], "ada");
    assert_eq!(me.body["role"], "user");
}

#[tokio::test]
async fn password_change_needs_the_current_password_and_revokes_sessions() {
    let app = TestApp::spawn().await;
    let session = app.register("ada").await;
    let wrong = app
        .call(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&session.access),
            Some(json!({"current_password": "guess-guess", "new_password": "brand-new-password"})),
        )
        .await;
    wrong.assert_problem(403, "FORBIDDEN");
    let weak = app
        .call(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&session.access),
            Some(json!({"current_password": session.password, "new_password": "short"})),
        )
        .await;
    assert_eq!(weak.error_fields(), vec!["new_password"]);

    let changed = app
        .call(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&session.access),
            Some(
                json!({"current_password": session.password, "new_password": "brand-new-password"}),
            ),
        )
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    app.refresh(&session.refresh)
        .await
        .assert_problem(401, "UNAUTHORIZED");
    app.get("/api/v1/users/me", Some(&session.access))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    app.login(&session.email, &session.password)
        .await
        .assert_problem(401, "UNAUTHORIZED");
    assert_eq!(
        app.login(&session.email, "brand-new-password").await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_the_account_removes_it_and_its_sessions() {
    let app = TestApp::spawn().await;
    let session = app.register("leaving").await;
    for (body, status) in [
        (None, 415),
        (Some(json!({})), 422),
        (Some(json!({"current_password": "not-the-password"})), 403),
    ] {
        let refused = app
            .call(
                Method::DELETE,
                "/api/v1/users/me",
                Some(&session.access),
                body,
            )
            .await;
        assert_eq!(refused.status.as_u16(), status, "{}", refused.body);
    }
    assert_eq!(
        app.get("/api/v1/users/me", Some(&session.access))
            .await
            .status,
        StatusCode::OK,
        "a refused delete deletes nothing"
    );
    let reply = app
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&session.access),
            Some(json!({"current_password": session.password})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    app.get("/api/v1/users/me", Some(&session.access))
        .await
        .assert_problem(401, "UNAUTHORIZED");
    let tokens: i64 = sqlx::query_scalar("SELECT count(*) FROM refresh_tokens")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(tokens, 0);
    app.login(&session.email, &session.password)
        .await
        .assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn the_last_admin_cannot_delete_their_account() {
    let app = TestApp::spawn().await;
    let admin = app.admin("root").await;
    app.call(
        Method::DELETE,
        "/api/v1/users/me",
        Some(&admin.access),
        Some(json!({"current_password": admin.password})),
    )
    .await
    .assert_problem(409, "CONFLICT");
    let second = app.admin("root2").await;
    let reply = app
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&second.access),
            Some(json!({"current_password": second.password})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn changes_made_elsewhere_show_within_the_cache_ttl() {
    let app = TestApp::spawn_with(|config| {
        config.auth.user_cache_ttl = std::time::Duration::from_millis(200);
    })
    .await;
    let session = app.register("cached").await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&session.access))
            .await
            .status,
        200
    );
    // Another API process (simulated by writing to the database directly) disables the user.
    sqlx::query("UPDATE users SET is_active = false")
        .execute(&app.pool)
        .await
        .expect("disable");
    test_support::wait_until(
        "the disabled account to be refused",
        std::time::Duration::from_secs(5),
        || async {
            app.get("/api/v1/users/me", Some(&session.access))
                .await
                .status
                == StatusCode::UNAUTHORIZED
        },
    )
    .await;
}

#[tokio::test]
async fn without_the_cache_changes_show_at_once() {
    let app =
        TestApp::spawn_with(|config| config.auth.user_cache_ttl = std::time::Duration::ZERO).await;
    let session = app.register("uncached").await;
    assert_eq!(
        app.get("/api/v1/users/me", Some(&session.access))
            .await
            .status,
        200
    );
    sqlx::query("UPDATE users SET is_active = false")
        .execute(&app.pool)
        .await
        .expect("disable");
    app.get("/api/v1/users/me", Some(&session.access))
        .await
        .assert_problem(401, "UNAUTHORIZED");
}
