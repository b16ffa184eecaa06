//! Middleware behaviour: request ids, limits, rate limiting, errors, health, metrics.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{Reply, TestApp};

#[tokio::test]
async fn request_ids_are_kept_when_valid_and_made_otherwise() {
    let app = TestApp::spawn().await;
    let kept = TestApp::reply(
        app.client
            .get("/health/live")
            .header("x-request-id", "client-chosen-id-42")
            .send()
            .await,
    )
    .await;
    assert_eq!(kept.header("x-request-id"), Some("client-chosen-id-42"));
    let replaced = TestApp::reply(
        app.client
            .get("/nowhere")
            .header("x-request-id", "bad id with spaces")
            .send()
            .await,
    )
    .await;
    let id = replaced.header("x-request-id").expect("id").to_owned();
    assert!(
        uuid::Uuid::parse_str(&id).is_ok(),
        "generated id is a uuid: {id}"
    );
    replaced.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn unknown_routes_and_methods_are_problems() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/nothing-here", None)
        .await
        .assert_problem(404, "NOT_FOUND");
    let refused = app
        .call(Method::DELETE, "/api/v1/auth/login", None, None)
        .await;
    refused.assert_problem(405, "METHOD_NOT_ALLOWED");
    assert_eq!(refused.header("allow"), Some("POST"));
    let trace = app
        .call(
            Method::TRACE,
            "/api/v1/portfolios/0190f0f0-0000-7000-8000-000000000000",
            None,
            None,
        )
        .await;
    trace.assert_problem(405, "METHOD_NOT_ALLOWED");
    assert_eq!(trace.header("allow"), Some("DELETE, GET, PATCH"));
}

/// Found by schemathesis: a login whose email held U+0000 reached Postgres (which cannot store
/// it in text) and answered 500.
#[tokio::test]
async fn nul_characters_in_bodies_are_field_errors_not_server_errors() {
    let app = TestApp::spawn().await;
    let login = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"email": "ada\u{0}@example.com", "password": "whatever-it-is"}),
        )
        .await;
    login.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(login.error_fields(), vec!["email"]);
    let session = app.register("ada").await;
    let portfolio = app
        .post(
            "/api/v1/portfolios",
            Some(&session.access),
            json!({"name": "Main", "cost_basis_method": null}),
        )
        .await;
    portfolio.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        portfolio.error_fields(),
        vec!["cost_basis_method"],
        "an enum field takes a value or nothing, as the document says"
    );
}

/// Asserts `reply` is one validation error on `field` telling `message`, in plain words.
#[track_caller]
fn assert_told(reply: &Reply, field: &str, message: &str) {
    reply.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        reply.body["errors"],
        json!([{"field": field, "message": message}])
    );
    let text = reply.body.to_string();
    for leak in [
        "optional_",
        "string_",
        "integer(",
        "uint32",
        "failed to parse",
        "verification failed",
    ] {
        assert!(!text.contains(leak), "leaks {leak}: {text}");
    }
}

/// poem-openapi's own parse errors name internal types (`optional_JobStatus`, `string_uuid`,
/// `integer(uint32)`); every parameter that cannot be read is told what it must be instead.
#[tokio::test]
async fn bad_parameters_are_told_what_they_must_be_in_plain_words() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    let uuid = "must be a UUID, such as 0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
    let queues =
        "must be one of: bulk_fetch, price_refresh, alert_eval, notify, email, portfolio_files";
    let kinds = "must be one of: bulk_fetch, price_refresh, alert_eval, notify, email, \
                 portfolio_import, portfolio_export";
    let portfolio = "/api/v1/portfolios/0190f0f0-0000-7000-8000-000000000000";
    let gets = [
        (
            "/api/v1/jobs?status=bogus".to_owned(),
            "status",
            "must be one of: queued, running, succeeded, failed, cancelled, dead",
        ),
        ("/api/v1/jobs?kind=x".into(), "kind", kinds),
        (
            "/api/v1/jobs?page=abc".into(),
            "page",
            "must be an integer from 1 to 1000000",
        ),
        (
            "/api/v1/jobs?per_page=101".into(),
            "per_page",
            "must be an integer from 1 to 100",
        ),
        ("/api/v1/jobs/not-a-uuid".into(), "id", uuid),
        (
            "/api/v1/portfolios?order=up".into(),
            "order",
            "must be one of: asc, desc",
        ),
        (format!("{portfolio}/transactions/42"), "tx_id", uuid),
        (
            format!("{portfolio}/transactions?coin_id=BTC"),
            "coin_id",
            "must be a coin id: 1–100 lower-case letters, digits, '-', '_' or '.'",
        ),
        (
            "/api/v1/notifications?unread=maybe".into(),
            "unread",
            "must be true or false",
        ),
        ("/api/v1/alerts/7".into(), "id", uuid),
        (
            "/api/v1/crypto/bitcoin/history?from=yesterday".into(),
            "from",
            "must be a date and time in RFC 3339 format, such as 2026-11-21T09:30:00Z",
        ),
        ("/api/v1/stream/prices".into(), "coins", "is required"),
        (
            "/api/v1/stream/prices?coins=bitcoin&interval=99999".into(),
            "interval",
            "must be an integer from 0 to 3600",
        ),
        (
            format!("/api/v1/ws?ticket={}", "t".repeat(101)),
            "ticket",
            "must be at most 100 characters long",
        ),
        (
            "/api/v1/admin/users?role=root".into(),
            "role",
            "must be one of: user, admin",
        ),
        ("/api/v1/admin/jobs?user_id=me".into(), "user_id", uuid),
    ];
    for (path, field, message) in gets {
        let reply = app.get(&path, Some(&admin.access)).await;
        assert_told(&reply, field, message);
    }
    let pause = app
        .post(
            "/api/v1/admin/queues/nope/pause",
            Some(&admin.access),
            json!({}),
        )
        .await;
    assert_told(&pause, "queue", queues);
    let keyed = app
        .create_portfolio_keyed(&admin, json!({"name": "Main"}), "has spaces")
        .await;
    assert_told(
        &keyed,
        "Idempotency-Key",
        "must be 1–255 visible ASCII characters, e.g. a UUID",
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = TestApp::spawn_with(|config| config.http.max_body_bytes = 1024).await;
    let big = json!({"email": "a@example.com", "password": "x".repeat(4096)});
    let declared = app.post("/api/v1/auth/login", None, big.clone()).await;
    declared.assert_problem(413, "PAYLOAD_TOO_LARGE");

    // Chunked, without Content-Length.
    let bytes = serde_json::to_vec(&big).expect("json");
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>(bytes)]);
    let chunked = TestApp::reply(
        app.client
            .post("/api/v1/auth/login")
            .content_type("application/json")
            .body(poem::Body::from_bytes_stream(stream))
            .send()
            .await,
    )
    .await;
    chunked.assert_problem(413, "PAYLOAD_TOO_LARGE");
}

#[tokio::test]
async fn auth_routes_are_rate_limited_per_client_with_headers() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.auth_per_minute = 2;
        config.rate_limit.auth_burst = 2;
        config.http.trusted_proxy_hops = 1;
    })
    .await;
    let login = |ip: &'static str| {
        app.client
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", ip)
            .body_json(&json!({"email": "x@example.com", "password": "whatever-123"}))
            .send()
    };
    let first = TestApp::reply(login("203.0.113.7").await).await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert!(first.header("x-ratelimit-reset").is_some());
    let second = TestApp::reply(login("203.0.113.7").await).await;
    assert_eq!(second.header("x-ratelimit-remaining"), Some("0"));

    let refused = TestApp::reply(login("203.0.113.7").await).await;
    refused.assert_problem(429, "RATE_LIMITED");
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry_after), "retry after {retry_after}");
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));

    // Another client is not affected, and the general scope is separate.
    let other = TestApp::reply(login("198.51.100.9").await).await;
    assert_eq!(other.status, StatusCode::UNAUTHORIZED);
    assert_eq!(app.get("/health/live", None).await.status, StatusCode::OK);

    let metrics = app.get("/metrics", None).await;
    assert_eq!(metrics.status, StatusCode::OK);
    let text = app.metrics_text().await;
    assert!(
        text.contains("rate_limited_total{scope=\"auth\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn authenticated_callers_are_limited_per_user() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.per_minute = 1;
        config.rate_limit.burst = 2;
    })
    .await;
    let alice = app.register("alice").await;
    let bob = app.register("bob").await;
    for _ in 0..2 {
        assert_eq!(
            app.get("/api/v1/users/me", Some(&alice.access))
                .await
                .status,
            200
        );
    }
    app.get("/api/v1/users/me", Some(&alice.access))
        .await
        .assert_problem(429, "RATE_LIMITED");
    // Same address (the test client has none), different user: its own bucket.
    assert_eq!(
        app.get("/api/v1/users/me", Some(&bob.access)).await.status,
        200
    );
}

#[tokio::test]
async fn responses_carry_security_headers_and_cors() {
    let app =
        TestApp::spawn_with(|config| config.http.cors_origins = "https://app.example".into()).await;
    let problem = app.get("/api/v1/users/me", None).await;
    assert_eq!(problem.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(problem.header("x-frame-options"), Some("DENY"));
    let preflight = TestApp::reply(
        app.client
            .request(Method::OPTIONS, "/api/v1/users/me")
            .header("origin", "https://app.example")
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
            .await,
    )
    .await;
    assert_eq!(preflight.status, StatusCode::OK);
    assert_eq!(
        preflight.header("access-control-allow-origin"),
        Some("https://app.example")
    );

    // A browser client can read the headers callers need.
    let cross_origin = TestApp::reply(
        app.client
            .get("/api/v1/users/me")
            .header("origin", "https://app.example")
            .send()
            .await,
    )
    .await;
    let exposed = cross_origin
        .header("access-control-expose-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for header in [
        "etag",
        "location",
        "idempotent-replayed",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "retry-after",
        "x-request-id",
    ] {
        assert!(exposed.contains(header), "{header} not in {exposed:?}");
    }
}

#[tokio::test]
async fn health_reports_version_and_readiness() {
    let app = TestApp::spawn().await;
    let health = app.get("/health", None).await;
    assert_eq!(health.body["status"], "ok");
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));
    assert!(health.body["uptime_seconds"].is_u64());
    let ready = app.get("/health/ready", None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    assert_eq!(ready.body["postgres"], "ok");
    assert_eq!(ready.body["redis"], "ok");
}

#[tokio::test]
async fn readiness_names_the_dependency_that_is_down() {
    let dead_port = test_support::free_port();
    let app = TestApp::spawn_with(|config| {
        config.common.redis.url = format!("redis://127.0.0.1:{dead_port}").as_str().into();
        config.common.redis.timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let ready = app.get("/health/ready", None).await;
    ready.assert_problem(503, "UNAVAILABLE");
    let detail = ready.body["detail"].as_str().expect("detail");
    assert!(
        detail.contains("redis") && !detail.contains("postgres"),
        "{detail}"
    );
    assert_eq!(app.get("/health/live", None).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_label_routes_by_template() {
    let app = TestApp::spawn().await;
    let admin = app.admin("admin").await;
    let id = uuid::Uuid::now_v7();
    app.get(&format!("/api/v1/admin/users/{id}"), Some(&admin.access))
        .await;
    let text = app.metrics_text().await;
    assert!(
        text.contains(r#"route="/api/v1/admin/users/{id}""#),
        "template label present"
    );
    assert!(
        !text.contains(&id.to_string()),
        "raw ids never become labels"
    );
    assert!(text.contains("http_request_duration_seconds_bucket"));
    assert!(text.contains("http_requests_in_flight"));
    assert!(text.contains(r#"coinpulse_build_info{version="#));
    assert!(text.contains(r#"db_pool_connections{state="idle"}"#));
}

#[tokio::test]
async fn password_changes_count_in_the_auth_scope_per_user() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.auth_per_minute = 1;
        config.rate_limit.auth_burst = 3;
        // Out of the way, so the refusal below is the scope's.
        config.rate_limit.login_failures_per_account = 100;
    })
    .await;
    // Registering takes one auth token each from the client's (unknown) address.
    let alice = app.register("alice").await;
    let change = || {
        app.call(
            Method::PUT,
            "/api/v1/users/me/password",
            Some(&alice.access),
            Some(json!({"current_password": "not-it", "new_password": "a-new-password"})),
        )
    };
    for _ in 0..3 {
        let wrong = change().await;
        assert_eq!(wrong.status, StatusCode::FORBIDDEN);
        assert_eq!(wrong.header("x-ratelimit-limit"), Some("1"), "auth scope");
    }
    let refused = change().await;
    refused.assert_problem(429, "RATE_LIMITED");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("rate_limited_total{scope=\"auth\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn the_redis_backend_limits_a_client_across_api_processes_with_the_same_headers() {
    // Two API processes sharing one Redis (the same key prefix), as replicas do.
    let prefix = test_support::redis_prefix();
    let configure = |config: &mut api::config::ApiConfig| {
        config.rate_limit.backend = api::config::RateLimitBackend::Redis;
        config.rate_limit.auth_per_minute = 2;
        config.rate_limit.auth_burst = 2;
        config.http.trusted_proxy_hops = 1;
        config.common.redis.key_prefix = prefix.clone();
    };
    let first_process = TestApp::spawn_with(configure).await;
    let second_process = TestApp::spawn_with(configure).await;
    async fn login(app: &TestApp, ip: &'static str) -> crate::helpers::Reply {
        let response = app
            .client
            .post("/api/v1/auth/login")
            .header("x-forwarded-for", ip)
            .body_json(&json!({"email": "x@example.com", "password": "whatever-123"}))
            .send()
            .await;
        TestApp::reply(response).await
    }
    let first = login(&first_process, "203.0.113.7").await;
    assert_eq!(first.status, StatusCode::UNAUTHORIZED);
    assert_eq!(first.header("x-ratelimit-limit"), Some("2"));
    assert_eq!(first.header("x-ratelimit-remaining"), Some("1"));
    assert!(first.header("x-ratelimit-reset").is_some());
    let second = login(&second_process, "203.0.113.7").await;
    assert_eq!(second.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        second.header("x-ratelimit-remaining"),
        Some("0"),
        "the other process took from the same bucket"
    );

    let refused = login(&first_process, "203.0.113.7").await;
    refused.assert_problem(429, "RATE_LIMITED");
    let retry_after: u64 = refused
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=30).contains(&retry_after), "retry after {retry_after}");
    assert_eq!(refused.header("x-ratelimit-remaining"), Some("0"));

    let other = login(&second_process, "198.51.100.9").await;
    assert_eq!(
        other.status,
        StatusCode::UNAUTHORIZED,
        "another client is not affected"
    );
}
