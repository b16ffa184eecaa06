//! User administration and role checks.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn users_are_forbidden_from_admin_routes() {
    let app = TestApp::spawn().await;
    let user = app.register("user").await;
    let other = app.register("other").await;
    let id_path = format!("/api/v1/admin/users/{}", other.id);
    for (method, path) in [
        (Method::GET, "/api/v1/admin/users"),
        (Method::GET, id_path.as_str()),
        (Method::PATCH, id_path.as_str()),
        (Method::DELETE, id_path.as_str()),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"role": "admin"}));
        app.call(method.clone(), path, Some(&user.access), body)
            .await
            .assert_problem(403, "FORBIDDEN");
        app.call(method, path, None, None)
            .await
            .assert_problem(401, "UNAUTHORIZED");
    }
    let me = app.get("/api/v1/users/me", Some(&other.access)).await;
    assert_eq!(me.body["role"], "user");
}

#[tokio::test]
async fn a_demoted_admin_loses_access_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.admin("boss").await;
    app.admin("boss2").await;
    sqlx::query("UPDATE users SET role = 'user' WHERE id = $1::uuid")
        .bind(&admin.id)
        .execute(&app.pool)
        .await
        .expect("demote");
    // The token still says admin; the database decides.
    app.get("/api/v1/admin/users", Some(&admin.access))
        .await
        .assert_problem(403, "FORBIDDEN");
}

#[tokio::test]
async fn listing_paginates_searches_and_filters() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    for name in ["alice", "alina", "bob", "carol", "dave"] {
        app.register(name).await;
    }
    sqlx::query("UPDATE users SET is_active = false WHERE username = 'dave'")
        .execute(&app.pool)
        .await
        .expect("disable");

    let page = app
        .get("/api/v1/admin/users?page=1&per_page=2", Some(&admin.access))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(page.body["total"], 6);
    assert_eq!(page.body["total_pages"], 3);
    assert_eq!(page.body["per_page"], 2);
    assert_eq!(page.body["items"].as_array().map(Vec::len), Some(2));
    // Newest first.
    assert_eq!(page.body["items"][0]["username"], "dave");

    let last = app
        .get("/api/v1/admin/users?page=3&per_page=2", Some(&admin.access))
        .await;
    assert_eq!(last.body["items"][1]["username"], "admin");
    let beyond = app
        .get("/api/v1/admin/users?page=9&per_page=2", Some(&admin.access))
        .await;
    assert_eq!(beyond.body["items"], json!([]));
    assert_eq!(beyond.body["total"], 6);

    let search = app
        .get("/api/v1/admin/users?q=ALI", Some(&admin.access))
        .await;
    assert_eq!(search.body["total"], 2);
    let wildcard = app
        .get("/api/v1/admin/users?q=%25", Some(&admin.access))
        .await;
    assert_eq!(wildcard.body["total"], 0, "LIKE wildcards are literal");
    let admins = app
        .get("/api/v1/admin/users?role=admin", Some(&admin.access))
        .await;
    assert_eq!(admins.body["total"], 1);
    let inactive = app
        .get("/api/v1/admin/users?active=false", Some(&admin.access))
        .await;
    assert_eq!(inactive.body["items"][0]["username"], "dave");
}

#[tokio::test]
async fn bad_list_parameters_are_validation_problems() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    for query in [
        "per_page=101",
        "per_page=0",
        "page=0",
        "page=abc",
        "role=root",
        "active=maybe",
    ] {
        let reply = app
            .get(&format!("/api/v1/admin/users?{query}"), Some(&admin.access))
            .await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields().len(), 1, "{query}: {}", reply.body);
    }
}

#[tokio::test]
async fn admins_read_update_and_delete_users() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    let user = app.register("user").await;
    let path = format!("/api/v1/admin/users/{}", user.id);

    let got = app.get(&path, Some(&admin.access)).await;
    assert_eq!(got.body["email"], "user@example.com");

    let promoted = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin.access),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(promoted.status, StatusCode::OK, "{}", promoted.body);
    assert_eq!(promoted.body["role"], "admin");

    let disabled = app
        .call(
            Method::PATCH,
            &path,
            Some(&admin.access),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(disabled.body["is_active"], false);
    // Disabling revoked the user's sessions.
    app.refresh(&user.refresh)
        .await
        .assert_problem(401, "UNAUTHORIZED");

    let deleted = app
        .call(Method::DELETE, &path, Some(&admin.access), None)
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&path, Some(&admin.access))
        .await
        .assert_problem(404, "NOT_FOUND");
    app.call(Method::DELETE, &path, Some(&admin.access), None)
        .await
        .assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn malformed_ids_and_unknown_users_are_problems() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    let bad = app
        .get("/api/v1/admin/users/not-a-uuid", Some(&admin.access))
        .await;
    bad.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(bad.error_fields(), vec!["id"]);
    let unknown = format!("/api/v1/admin/users/{}", uuid::Uuid::now_v7());
    app.get(&unknown, Some(&admin.access))
        .await
        .assert_problem(404, "NOT_FOUND");
    app.call(
        Method::PATCH,
        &unknown,
        Some(&admin.access),
        Some(json!({"role": "user"})),
    )
    .await
    .assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn the_last_active_admin_cannot_be_demoted_disabled_or_deleted() {
    let app = TestApp::spawn().await;
    let admin = app.admin("only").await;
    let path = format!("/api/v1/admin/users/{}", admin.id);
    for body in [json!({"role": "user"}), json!({"is_active": false})] {
        app.call(Method::PATCH, &path, Some(&admin.access), Some(body))
            .await
            .assert_problem(409, "CONFLICT");
    }
    app.call(Method::DELETE, &path, Some(&admin.access), None)
        .await
        .assert_problem(409, "CONFLICT");
    let still: String = sqlx::query_scalar("SELECT role FROM users WHERE id = $1::uuid")
        .bind(&admin.id)
        .fetch_one(&app.pool)
        .await
        .expect("row");
    assert_eq!(still, "admin");

    let second = app.admin("second").await;
    let reply = app
        .call(
            Method::PATCH,
            &path,
            Some(&second.access),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

#[tokio::test]
async fn pausing_a_queue_while_redis_is_down_records_nothing() {
    let app = TestApp::spawn().await;
    let admin = app.admin("ops").await;
    // The same database, but a process whose Redis does not answer.
    let mut config = app.state.config.as_ref().clone();
    config.common.redis.url = "redis://127.0.0.1:1".into();
    config.common.redis.timeout = std::time::Duration::from_millis(200);
    let redis = common::redis::Redis::new(&config.common.redis).expect("redis url");
    let metrics = common::telemetry::install_metrics("api");
    let state = api::AppState::new(config, app.pool.clone(), redis, metrics).expect("state");
    let cut_off = poem::test::TestClient::new(api::build_app(state));

    for action in ["pause", "resume"] {
        let response = cut_off
            .post(format!("/api/v1/admin/queues/email/{action}"))
            .header("authorization", format!("Bearer {}", admin.access))
            .body_json(&json!({}))
            .send()
            .await;
        let reply = TestApp::reply(response).await;
        reply.assert_problem(503, "UNAVAILABLE");
    }
    let recorded: (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM queue_pauses), (SELECT count(*) FROM audit_log)",
    )
    .fetch_one(&app.pool)
    .await
    .expect("counts");
    assert_eq!(recorded, (0, 0), "a refused action changes nothing");
}

#[tokio::test]
async fn an_admin_may_delete_their_own_account_and_the_audit_log_still_names_them() {
    let app = TestApp::spawn().await;
    let leaving = app.admin("leaving").await;
    let staying = app.admin("staying").await;
    let deleted = app
        .call(
            Method::DELETE,
            &format!("/api/v1/admin/users/{}", leaving.id),
            Some(&leaving.access),
            None,
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{}", deleted.body);
    let audit = app.get("/api/v1/admin/audit", Some(&staying.access)).await;
    assert_eq!(audit.status, StatusCode::OK, "{}", audit.body);
    let entry = &audit.body["items"][0];
    assert_eq!(entry["action"], "user_deleted");
    assert_eq!(entry["actor_email"], leaving.email.as_str());
    assert!(entry["actor_id"].is_null(), "the account is gone: {entry}");
}
