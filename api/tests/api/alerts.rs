//! Price alerts: validation, ownership, the limit of active alerts, merge patches that re-arm,
//! and conditional writes.

use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Session, TestApp};

fn alert(target: &str) -> Value {
    json!({"coin_id": "bitcoin", "vs_currency": "usd", "condition": "above", "target": target})
}

async fn create(app: &TestApp, user: &Session, body: Value) -> crate::helpers::Reply {
    app.post("/api/v1/alerts", Some(&user.access), body).await
}

async fn count(app: &TestApp) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM alerts")
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

#[tokio::test]
async fn an_alert_is_created_listed_changed_and_deleted_by_its_owner_only() {
    let app = TestApp::spawn().await;
    let ann = app.register("ann").await;
    let bob = app.register("bob").await;
    let created = create(
        &app,
        &ann,
        json!({"coin_id": "bitcoin", "vs_currency": "USD", "condition": "crossing_up",
               "target": "100000.50", "trigger": "every_crossing", "cooldown": 600,
               "note": "  take profit  "}),
    )
    .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().expect("id").to_owned();
    assert_eq!(
        created.header("location"),
        Some(format!("/api/v1/alerts/{id}").as_str())
    );
    assert_eq!(created.header("etag"), Some("\"1\""));
    let body = &created.body;
    assert_eq!(
        (
            &body["vs_currency"],
            &body["target"],
            &body["note"],
            &body["state"]
        ),
        (
            &json!("usd"),
            &json!("100000.5"),
            &json!("take profit"),
            &json!("armed")
        )
    );
    assert_eq!(
        (&body["active"], &body["trigger_count"]),
        (&json!(true), &json!(0))
    );

    create(&app, &ann, alert("5")).await;
    create(
        &app,
        &ann,
        json!({"coin_id": "ethereum", "condition": "below", "target": "1", "active": false}),
    )
    .await;
    let all = app
        .get("/api/v1/alerts?per_page=2", Some(&ann.access))
        .await;
    assert_eq!(
        (all.body["total"].clone(), all.body["total_pages"].clone()),
        (json!(3), json!(2))
    );
    let bitcoin = app
        .get("/api/v1/alerts?coin_id=bitcoin", Some(&ann.access))
        .await;
    assert_eq!(bitcoin.body["total"], 2);
    let inactive = app
        .get("/api/v1/alerts?active=false", Some(&ann.access))
        .await;
    assert_eq!(inactive.body["items"][0]["coin_id"], "ethereum");
    assert_eq!(
        app.get("/api/v1/alerts", Some(&bob.access)).await.body["total"],
        0
    );

    let path = format!("/api/v1/alerts/{id}");
    for method in [Method::GET, Method::PATCH, Method::DELETE] {
        let body = (method == Method::PATCH).then(|| json!({"target": "1"}));
        app.call(method, &path, Some(&bob.access), body)
            .await
            .assert_problem(404, "NOT_FOUND");
    }
    // A note and cooldown cleared with null, the rest unchanged; an empty patch changes nothing.
    let patched = app
        .call(
            Method::PATCH,
            &path,
            Some(&ann.access),
            Some(json!({"note": null, "cooldown": null})),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(
        (&patched.body["note"], &patched.body["cooldown"]),
        (&Value::Null, &Value::Null)
    );
    assert_eq!(patched.body["target"], "100000.5");
    assert_eq!(patched.header("etag"), Some("\"2\""));
    let same = app
        .call(Method::PATCH, &path, Some(&ann.access), Some(json!({})))
        .await;
    assert_eq!(same.header("etag"), Some("\"2\""));
    // A stale If-Match changes nothing.
    app.send(
        Method::DELETE,
        &path,
        Some(&ann.access),
        None,
        &[("if-match", "\"1\"")],
    )
    .await
    .assert_problem(412, "PRECONDITION_FAILED");
    let deleted = app
        .send(
            Method::DELETE,
            &path,
            Some(&ann.access),
            None,
            &[("if-match", "\"2\"")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get(&path, Some(&ann.access))
        .await
        .assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn invalid_alerts_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register("carol").await;
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases = [
        (
            json!({"coin_id": "Bit Coin", "condition": "above", "target": "1"}),
            "coin_id",
        ),
        (
            json!({"coin_id": "bitcoin", "vs_currency": "zzz", "condition": "above", "target": "1"}),
            "vs_currency",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "sideways", "target": "1"}),
            "condition",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "0"}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": 5}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "pct_change_24h_below", "target": "-101"}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "cooldown": 60}),
            "cooldown",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "expires_at": past}),
            "expires_at",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "note": "x".repeat(281)}),
            "note",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "note": "a\r\nBcc: x@example.com"}),
            "note",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "trigger": null}),
            "trigger",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "extra": 1}),
            "extra",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "0.0000000000000000001"}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1000000000000000"}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "pct_change_24h_above", "target": "100000.1"}),
            "target",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1",
                   "trigger": "every_crossing", "cooldown": 0}),
            "cooldown",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1",
                   "trigger": "every_crossing", "cooldown": 2_592_001}),
            "cooldown",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "expires_at": "tomorrow"}),
            "expires_at",
        ),
        (
            json!({"coin_id": "bitcoin", "condition": "above", "target": "1", "active": "yes"}),
            "active",
        ),
    ];
    for (body, field) in cases {
        let reply = create(&app, &user, body.clone()).await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert!(
            reply.error_fields().iter().any(|f| f.contains(field)),
            "{body} should name {field}: {}",
            reply.body
        );
    }
    assert_eq!(count(&app).await, 0);
}

#[tokio::test]
async fn the_limit_of_active_alerts_holds_under_concurrent_creates() {
    let app = TestApp::spawn_with(|config| config.alerts_max_active_per_user = 3).await;
    let user = app.register("dave").await;
    for target in ["1", "2"] {
        assert_eq!(
            create(&app, &user, alert(target)).await.status,
            StatusCode::CREATED
        );
    }
    // Two at once for the last place: exactly one gets it.
    let (one, two) = tokio::join!(
        create(&app, &user, alert("3")),
        create(&app, &user, alert("4"))
    );
    let statuses = [one.status.as_u16(), two.status.as_u16()];
    assert!(
        statuses.contains(&201) && statuses.contains(&422),
        "{statuses:?}"
    );
    assert_eq!(count(&app).await, 3);
    // Inactive alerts do not count; re-activating one does.
    let paused = create(
        &app,
        &user,
        json!({"coin_id": "bitcoin", "condition": "below", "target": "1", "active": false}),
    )
    .await;
    assert_eq!(paused.status, StatusCode::CREATED);
    let path = format!("/api/v1/alerts/{}", paused.body["id"].as_str().expect("id"));
    app.call(
        Method::PATCH,
        &path,
        Some(&user.access),
        Some(json!({"active": true})),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");

    // One place freed, two paused alerts re-activated at once: exactly one gets it.
    let first = app
        .get("/api/v1/alerts?active=true&per_page=1", Some(&user.access))
        .await;
    let freed = format!(
        "/api/v1/alerts/{}",
        first.body["items"][0]["id"].as_str().expect("id")
    );
    let gone = app
        .call(Method::DELETE, &freed, Some(&user.access), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let other = create(
        &app,
        &user,
        json!({"coin_id": "bitcoin", "condition": "below", "target": "2", "active": false}),
    )
    .await;
    let other = format!("/api/v1/alerts/{}", other.body["id"].as_str().expect("id"));
    let on = Some(json!({"active": true}));
    let (one, two) = tokio::join!(
        app.call(Method::PATCH, &path, Some(&user.access), on.clone()),
        app.call(Method::PATCH, &other, Some(&user.access), on.clone())
    );
    let statuses = [one.status.as_u16(), two.status.as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&422),
        "{statuses:?}"
    );
    let active = app
        .get("/api/v1/alerts?active=true", Some(&user.access))
        .await;
    assert_eq!(active.body["total"], 3);
}

#[tokio::test]
async fn changing_what_an_alert_watches_re_arms_it_and_expiry_shows() {
    let app = TestApp::spawn().await;
    let user = app.register("erin").await;
    let created = create(&app, &user, alert("10")).await;
    let id = created.body["id"].as_str().expect("id").to_owned();
    // As if the worker had evaluated and fired it.
    sqlx::query(
        "UPDATE alerts SET state = 'triggered', last_value = 11, trigger_count = 1,
                last_triggered_at = now() WHERE id = $1::uuid",
    )
    .bind(&id)
    .execute(&app.pool)
    .await
    .expect("fire");
    let path = format!("/api/v1/alerts/{id}");
    let patched = app
        .call(
            Method::PATCH,
            &path,
            Some(&user.access),
            Some(json!({"target": "20"})),
        )
        .await;
    assert_eq!(patched.body["state"], "armed", "{}", patched.body);
    assert_eq!(patched.body["trigger_count"], 1, "its history stays");
    let last_value: Option<rust_decimal::Decimal> =
        sqlx::query_scalar("SELECT last_value FROM alerts WHERE id = $1::uuid")
            .bind(&id)
            .fetch_one(&app.pool)
            .await
            .expect("row");
    assert_eq!(last_value, None, "evaluation starts afresh");
    // Past its expiry it shows as expired and inactive before the worker has seen it.
    sqlx::query("UPDATE alerts SET expires_at = now() - interval '1 second' WHERE id = $1::uuid")
        .bind(&id)
        .execute(&app.pool)
        .await
        .expect("expire");
    let expired = app.get(&path, Some(&user.access)).await;
    assert_eq!(
        (&expired.body["state"], &expired.body["active"]),
        (&json!("expired"), &json!(false))
    );
    app.call(
        Method::PATCH,
        &path,
        Some(&user.access),
        Some(json!({"active": true})),
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    let revived = app
        .call(
            Method::PATCH,
            &path,
            Some(&user.access),
            Some(json!({"active": true, "expires_at": null})),
        )
        .await;
    assert_eq!(
        (&revived.body["state"], &revived.body["active"]),
        (&json!("armed"), &json!(true)),
        "{}",
        revived.body
    );
}

#[tokio::test]
async fn invalid_or_stale_changes_are_refused_and_write_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register("fay").await;
    let created = create(&app, &user, alert("10")).await;
    let path = format!(
        "/api/v1/alerts/{}",
        created.body["id"].as_str().expect("id")
    );
    let past = (chrono::Utc::now() - chrono::Duration::minutes(1)).to_rfc3339();
    let cases = [
        (json!({"coin_id": "Bit Coin"}), "coin_id"),
        (json!({"vs_currency": "zzz"}), "vs_currency"),
        (json!({"condition": null}), "condition"),
        (json!({"target": "-1"}), "target"),
        (
            json!({"condition": "pct_change_24h_above", "target": "-100.5"}),
            "target",
        ),
        (json!({"cooldown": 60}), "cooldown"),
        (json!({"expires_at": past}), "expires_at"),
        (json!({"note": "a\u{7}b"}), "note"),
        (json!({"active": null}), "active"),
        (json!({"id": "x"}), "id"),
    ];
    for (body, field) in cases {
        let reply = app
            .call(Method::PATCH, &path, Some(&user.access), Some(body.clone()))
            .await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert!(
            reply.error_fields().iter().any(|f| f.contains(field)),
            "{body} should name {field}: {}",
            reply.body
        );
    }
    let unchanged = app.get(&path, Some(&user.access)).await;
    assert_eq!(
        unchanged.header("etag"),
        Some("\"1\""),
        "nothing was written"
    );
    assert_eq!(unchanged.body["target"], "10");

    // If-Match: a stale version is refused, the current one (or `*`) is accepted.
    app.send(
        Method::PATCH,
        &path,
        Some(&user.access),
        Some(json!({"target": "11"})),
        &[("if-match", "\"7\"")],
    )
    .await
    .assert_problem(412, "PRECONDITION_FAILED");
    let changed = app
        .send(
            Method::PATCH,
            &path,
            Some(&user.access),
            Some(json!({"target": "11"})),
            &[("if-match", "\"1\"")],
        )
        .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.body);
    assert_eq!(changed.header("etag"), Some("\"2\""));
    let any = app
        .send(
            Method::PATCH,
            &path,
            Some(&user.access),
            Some(json!({"active": false})),
            &[("if-match", "*")],
        )
        .await;
    assert_eq!(
        (&any.body["active"], any.header("etag")),
        (&json!(false), Some("\"3\""))
    );
}
