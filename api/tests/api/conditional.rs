//! Conditional requests: `ETag` + `If-None-Match` → `304` on the resources clients poll, and
//! `If-Match` compared as RFC 9110 says.

use poem::http::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{TestApp, portfolio_path};

/// GETs `path` with `If-None-Match: tag`.
async fn get_if_none_match(
    app: &TestApp,
    path: &str,
    bearer: Option<&str>,
    tag: &str,
) -> crate::helpers::Reply {
    app.send(Method::GET, path, bearer, None, &[("if-none-match", tag)])
        .await
}

/// The first read gives an `ETag`; sending it back answers `304` with the same tag and no
/// body; another tag (or a malformed one) gets the representation.
async fn assert_conditional_read(app: &TestApp, path: &str, bearer: Option<&str>) -> String {
    let first = app.get(path, bearer).await;
    assert_eq!(first.status, StatusCode::OK, "{path}: {}", first.body);
    let etag = first
        .header("etag")
        .unwrap_or_else(|| panic!("{path}: no ETag"))
        .to_owned();
    assert!(
        etag.starts_with('"') && etag.ends_with('"'),
        "{path}: {etag}"
    );

    let unchanged = get_if_none_match(app, path, bearer, &etag).await;
    assert_eq!(
        unchanged.status,
        StatusCode::NOT_MODIFIED,
        "{path}: {}",
        unchanged.body
    );
    assert_eq!(unchanged.header("etag"), Some(etag.as_str()), "{path}");
    assert!(unchanged.body.is_null(), "{path}: a 304 has no body");

    let weak = get_if_none_match(app, path, bearer, &format!("\"other\", W/{etag}")).await;
    assert_eq!(
        weak.status,
        StatusCode::NOT_MODIFIED,
        "{path}: weak comparison, lists"
    );
    let other = get_if_none_match(app, path, bearer, "\"other\"").await;
    assert_eq!(other.status, StatusCode::OK, "{path}");
    assert_eq!(
        other.header("etag"),
        Some(etag.as_str()),
        "{path}: the same content"
    );
    let malformed = get_if_none_match(app, path, bearer, "no-quotes").await;
    assert_eq!(
        malformed.status,
        StatusCode::OK,
        "{path}: a malformed tag is ignored"
    );
    etag
}

#[tokio::test]
async fn polled_resources_answer_304_while_unchanged() {
    let app = TestApp::spawn().await;
    let user = app.register("poller").await;

    assert_conditional_read(&app, "/api/v1/crypto/prices/bitcoin", None).await;

    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let path = portfolio_path(&portfolio);
    let version_tag = assert_conditional_read(&app, &path, Some(&user.access)).await;
    assert_eq!(version_tag, "\"1\"");

    let bought = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "bitcoin", "side": "buy", "quantity": "1", "price": "100",
                   "fee": "0", "executed_at": "2025-01-02T12:00:00Z"}),
        )
        .await;
    assert_eq!(bought.status, StatusCode::CREATED, "{}", bought.body);
    let valuation = format!("{path}/valuation");
    let valuation_tag = assert_conditional_read(&app, &valuation, Some(&user.access)).await;

    // A change makes the held tag stale.
    let second = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "bitcoin", "side": "buy", "quantity": "2", "price": "100",
                   "fee": "0", "executed_at": "2025-01-03T12:00:00Z"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.body);
    let changed = get_if_none_match(&app, &valuation, Some(&user.access), &valuation_tag).await;
    assert_eq!(changed.status, StatusCode::OK, "the holding changed");

    let job = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": ["bitcoin"]}),
        )
        .await;
    assert_eq!(job.status, StatusCode::ACCEPTED, "{}", job.body);
    let job_path = job.header("location").expect("location").to_owned();
    assert_conditional_read(&app, &job_path, Some(&user.access)).await;

    // Someone else's resources stay 404 whatever the tag.
    let stranger = app.register("stranger").await;
    let peek = get_if_none_match(&app, &path, Some(&stranger.access), "*").await;
    peek.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn if_match_explains_the_form_it_expects() {
    let app = TestApp::spawn().await;
    let user = app.register("writer").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let path = portfolio_path(&portfolio);
    let patch = |tag: &'static str| {
        let path = path.clone();
        let access = user.access.clone();
        let app = &app;
        async move {
            app.send(
                Method::PATCH,
                &path,
                Some(&access),
                Some(json!({"name": "Renamed"})),
                &[("if-match", tag)],
            )
            .await
        }
    };
    let unquoted = patch("1").await;
    unquoted.assert_problem(412, "PRECONDITION_FAILED");
    assert!(
        unquoted.body["detail"]
            .as_str()
            .expect("detail")
            .contains("If-Match: \"1\""),
        "{}",
        unquoted.body
    );
    let weak = patch("W/\"1\"").await;
    weak.assert_problem(412, "PRECONDITION_FAILED");
    let listed = patch("\"7\", \"1\"").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.body);
    assert_eq!(listed.header("etag"), Some("\"2\""));
    let stale = patch("\"1\"").await;
    stale.assert_problem(412, "PRECONDITION_FAILED");
    assert!(
        stale.body["detail"]
            .as_str()
            .expect("detail")
            .contains("\"2\""),
        "{}",
        stale.body
    );
    let current = app.get_portfolio(&user, &portfolio).await;
    assert_eq!(
        current.body["name"], "Renamed",
        "only the matching request changed it"
    );
}

/// Every timestamp in `value` ends in `Z` and no decimal string has trailing zeros.
fn assert_uniform_formats(what: &str, value: &serde_json::Value) {
    match value {
        serde_json::Value::String(text) => {
            if text.parse::<chrono::DateTime<chrono::Utc>>().is_ok() {
                assert!(text.ends_with('Z'), "{what}: timestamp {text}");
            } else if text.parse::<rust_decimal::Decimal>().is_ok() && text.contains('.') {
                assert!(!text.ends_with('0'), "{what}: decimal {text}");
            }
        }
        serde_json::Value::Array(items) => {
            items
                .iter()
                .for_each(|item| assert_uniform_formats(what, item));
        }
        serde_json::Value::Object(fields) => {
            fields
                .values()
                .for_each(|item| assert_uniform_formats(what, item));
        }
        _ => {}
    }
}

#[tokio::test]
async fn every_answer_writes_timestamps_with_z_and_decimals_without_trailing_zeros() {
    let app = TestApp::spawn().await;
    let user = app.register("formats").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let added = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "bitcoin", "side": "buy", "quantity": "1.50000",
                   "price": "100.2500", "fee": "0.00", "executed_at": "2025-01-02T13:00:00+01:00"}),
        )
        .await;
    assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    assert_eq!(added.body["quantity"], "1.5");
    assert_eq!(added.body["price"], "100.25");
    assert_eq!(added.body["fee"], "0");
    assert_eq!(added.body["executed_at"], "2025-01-02T12:00:00Z");
    let job = app
        .post(
            "/api/v1/crypto/bulk",
            Some(&user.access),
            json!({"coins": ["bitcoin"]}),
        )
        .await;
    let path = portfolio_path(&portfolio);
    for read in [
        "/api/v1/users/me".to_owned(),
        path.clone(),
        format!("{path}/valuation"),
        format!("{path}/transactions"),
        job.header("location").expect("location").to_owned(),
        "/api/v1/crypto/prices/bitcoin".to_owned(),
        "/api/v1/crypto/popular?limit=3".to_owned(),
        "/api/v1/crypto/bitcoin/history?from=2026-11-01T00:00:00Z&to=2026-11-01T05:00:00Z"
            .to_owned(),
    ] {
        let reply = app.get(&read, Some(&user.access)).await;
        assert_eq!(reply.status, StatusCode::OK, "{read}: {}", reply.body);
        assert_uniform_formats(&read, &reply.body);
    }
}
