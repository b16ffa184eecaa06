//! Every operation behind the bearer scheme, read from the served OpenAPI document, refuses
//! a disabled account, a deleted account and an ended session with 401 (never 5xx), and a
//! non-admin on an admin operation with 403. A new operation is covered without editing this.

use poem::http::Method;
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp};

/// One documented operation: method and a concrete path.
#[derive(Debug)]
struct Operation {
    method: Method,
    template: String,
    path: String,
    admin: bool,
}

/// The operations of the served document that require `bearerAuth`, with every path parameter
/// filled in: a UUID where the schema says so, else a plausible word.
async fn bearer_operations(app: &TestApp) -> Vec<Operation> {
    let spec = app.get("/openapi.json", None).await.body;
    let mut operations = Vec::new();
    for (template, item) in spec["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            let secured = operation["security"].as_array().is_some_and(|schemes| {
                schemes
                    .iter()
                    .any(|scheme| scheme.get("bearerAuth").is_some())
            });
            if !secured {
                continue;
            }
            let mut path = template.clone();
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                if parameter["in"] != "path" {
                    continue;
                }
                let name = parameter["name"].as_str().expect("parameter name");
                let value = if parameter["schema"]["format"] == "uuid" {
                    uuid::Uuid::now_v7().to_string()
                } else {
                    "bitcoin".to_owned()
                };
                path = path.replace(&format!("{{{name}}}"), &value);
            }
            operations.push(Operation {
                method: Method::from_bytes(method.to_uppercase().as_bytes()).expect("method"),
                admin: template.starts_with("/api/v1/admin/"),
                template: template.clone(),
                path,
            });
        }
    }
    for (method, template) in [
        (Method::POST, "/api/v1/crypto/bulk"),
        (Method::GET, "/api/v1/jobs"),
        (Method::GET, "/api/v1/portfolios/{id}/valuation"),
        (Method::GET, "/api/v1/admin/queues"),
    ] {
        assert!(
            operations
                .iter()
                .any(|op| op.method == method && op.template == template),
            "{method} {template} is a bearer operation: {operations:?}"
        );
    }
    operations
}

/// Sends `operation` as `session`, with an empty JSON object as body where one is expected.
async fn call(app: &TestApp, operation: &Operation, session: &Session) -> crate::helpers::Reply {
    let body =
        matches!(operation.method, Method::POST | Method::PUT | Method::PATCH).then(|| json!({}));
    app.call(
        operation.method.clone(),
        &operation.path,
        Some(&session.access),
        body,
    )
    .await
}

fn expect_status(reply: &crate::helpers::Reply, operation: &Operation, status: u16, who: &str) {
    assert_eq!(
        reply.status.as_u16(),
        status,
        "{who}: {} {} answered {}",
        operation.method,
        operation.template,
        reply.body
    );
}

#[tokio::test]
async fn every_bearer_operation_refuses_accounts_that_may_not_act() {
    let app = TestApp::spawn_with(|config| {
        config.rate_limit.burst = 1000;
        config.rate_limit.auth_burst = 1000;
    })
    .await;
    let operations = bearer_operations(&app).await;
    let admin = app.admin("root").await;
    let disabled = app.register("disabled").await;
    let deleted = app.register("deleted").await;
    let ended = app.register("ended").await;
    let plain = app.register("plain").await;

    // Seen as active first, so a cached copy has to be dropped, not merely never made.
    for session in [&disabled, &deleted, &ended] {
        assert_eq!(
            app.get("/api/v1/users/me", Some(&session.access))
                .await
                .status,
            200
        );
    }
    let disabling = app
        .call(
            Method::PATCH,
            &format!("/api/v1/admin/users/{}", disabled.id),
            Some(&admin.access),
            Some(json!({"is_active": false})),
        )
        .await;
    assert_eq!(disabling.status, 200, "{}", disabling.body);
    let deleting = app
        .call(
            Method::DELETE,
            "/api/v1/users/me",
            Some(&deleted.access),
            Some(json!({"current_password": deleted.password})),
        )
        .await;
    assert_eq!(deleting.status, 204, "{}", deleting.body);
    let ending = app
        .post("/api/v1/auth/logout-all", Some(&ended.access), Value::Null)
        .await;
    assert_eq!(ending.status, 204, "{}", ending.body);

    for operation in &operations {
        for (session, who) in [
            (&disabled, "a disabled account"),
            (&deleted, "a deleted account"),
            (&ended, "a token from before logout-all"),
        ] {
            let reply = call(&app, operation, session).await;
            expect_status(&reply, operation, 401, who);
            reply.assert_problem(401, "UNAUTHORIZED");
        }
        if operation.admin {
            let reply = call(&app, operation, &plain).await;
            expect_status(&reply, operation, 403, "a user on an admin operation");
        }
    }

    // A fresh login after logout-all works again.
    let again = app.login(&ended.email, &ended.password).await;
    let token = again.body["access_token"].as_str().expect("token");
    assert_eq!(app.get("/api/v1/users/me", Some(token)).await.status, 200);
}

/// Two api processes over one database and Redis, with a user cache far longer than the test:
/// a disable through one reaches the other's cache through Redis, not through the TTL.
#[tokio::test]
async fn account_changes_reach_every_api_process() {
    use std::path::Path;
    use std::time::Duration;

    use test_support::{RunningBinary, TestDatabase, free_port, redis_prefix};

    let db = TestDatabase::create().await;
    let prefix = redis_prefix();
    let mut processes = Vec::new();
    for _ in 0..2 {
        let port = free_port();
        let mut env = crate::binary::env(&db, port);
        env.retain(|(key, _)| *key != "REDIS_KEY_PREFIX");
        env.push(("REDIS_KEY_PREFIX", prefix.clone()));
        env.push(("USER_CACHE_TTL", "10m".into()));
        processes.push(
            RunningBinary::start(
                Path::new(env!("CARGO_BIN_EXE_api")),
                &env,
                port,
                "/health/ready",
            )
            .await,
        );
    }
    let (one, two) = (&processes[0].base_url, &processes[1].base_url);
    let client = test_support::http_client();
    let register = |name| crate::binary::register(&client, one, name, None);
    let admin = register("chief").await;
    sqlx::query("UPDATE users SET role = 'admin' WHERE email = 'chief@example.com'")
        .execute(&db.pool().await)
        .await
        .expect("promote");
    let user = register("member").await;
    let token = user["access_token"].as_str().expect("token").to_owned();
    let me_on_two = async || {
        client
            .get(format!("{two}/api/v1/users/me"))
            .bearer_auth(&token)
            .send()
            .await
            .expect("me")
            .status()
            .as_u16()
    };
    // Process two now holds the account in its cache for ten minutes.
    assert_eq!(me_on_two().await, 200);

    let disabled = client
        .patch(format!(
            "{one}/api/v1/admin/users/{}",
            user["user"]["id"].as_str().expect("id")
        ))
        .bearer_auth(admin["access_token"].as_str().expect("token"))
        .json(&json!({"is_active": false}))
        .send()
        .await
        .expect("disable");
    assert_eq!(disabled.status(), 200);
    // Milliseconds in practice; the deadline leaves a loaded machine room and is still far
    // below the cache's ten minutes.
    test_support::wait_until(
        "process two to refuse the disabled account",
        Duration::from_secs(10),
        || async { me_on_two().await == 401 },
    )
    .await;
}
