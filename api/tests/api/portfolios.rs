//! Portfolios, transactions and valuation against real Postgres (and Redis for the app's
//! caches): exact decimals, over-sell rules, IDOR, pagination, ETags and idempotent creates.

use std::collections::HashSet;

use futures_util::future::join_all;
use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{Reply, Session, TestApp};

/// Stores a coin, and its USD price when given (what the price refresh would have done).
async fn seed_coin(app: &TestApp, id: &str, price: Option<(&str, Option<&str>)>) {
    sqlx::query("INSERT INTO coins (id, symbol, name) VALUES ($1, $1, $1)")
        .bind(id)
        .execute(&app.pool)
        .await
        .expect("coin");
    if let Some((price, change)) = price {
        sqlx::query(
            "INSERT INTO latest_prices (coin_id, vs_currency, price, change_24h_pct, source,
                                        quoted_at)
             VALUES ($1, 'usd', $2::numeric, $3::numeric, 'simulated',
                     '2026-11-21T09:00:00Z')",
        )
        .bind(id)
        .bind(price)
        .bind(change)
        .execute(&app.pool)
        .await
        .expect("price");
    }
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    sqlx::query_scalar(sql)
        .fetch_one(&app.pool)
        .await
        .expect("count")
}

fn tx(coin: &str, side: &str, quantity: &str, price: &str, fee: &str, day: u32) -> Value {
    json!({
        "coin_id": coin,
        "side": side,
        "quantity": quantity,
        "price": price,
        "fee": fee,
        "executed_at": format!("2025-01-{day:02}T12:00:00Z"),
    })
}

// ---- portfolios ---------------------------------------------------------------------------

#[tokio::test]
async fn a_portfolio_has_defaults_a_location_and_a_version_etag() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let reply = app
        .create_portfolio(&user, json!({"name": "  Long term  "}))
        .await;
    let id = reply.created_id();
    assert_eq!(reply.body["name"], "Long term", "trimmed");
    assert_eq!(reply.body["base_currency"], "usd");
    assert_eq!(reply.body["cost_basis_method"], "average");
    assert_eq!(reply.body["version"], 1);
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/portfolios/{id}").as_str())
    );
    assert_eq!(reply.header("etag"), Some("\"1\""));
    assert_eq!(reply.header("idempotent-replayed"), None);

    let got = app.get_portfolio(&user, &id).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.header("etag"), Some("\"1\""));
    assert_eq!(got.body, reply.body);

    let fifo = app
        .create_portfolio(
            &user,
            json!({"name": "Trading", "base_currency": "USD", "cost_basis_method": "fifo"}),
        )
        .await;
    fifo.created_id();
    assert_eq!(fifo.body["base_currency"], "usd");
    assert_eq!(fifo.body["cost_basis_method"], "fifo");
}

#[tokio::test]
async fn bad_portfolio_input_is_a_422_naming_the_field_and_writes_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let cases = [
        (json!({"name": ""}), "name"),
        (json!({"name": "   "}), "name"),
        (json!({"name": "x".repeat(101)}), "name"),
        (json!({"name": "tab\there"}), "name"),
        (
            json!({"name": "A", "base_currency": "xyz"}),
            "base_currency",
        ),
        (
            json!({"name": "A", "base_currency": "u$d"}),
            "base_currency",
        ),
        (
            json!({"name": "A", "cost_basis_method": "lifo"}),
            "cost_basis_method",
        ),
        (json!({"name": "A", "owner": "someone"}), "owner"),
        (json!({"base_currency": "usd"}), "name"),
        (json!({"name": 5}), "name"),
    ];
    for (body, field) in cases {
        let reply = app.create_portfolio(&user, body.clone()).await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields(), vec![field], "{body}");
    }
    assert_eq!(count(&app, "SELECT count(*) FROM portfolios").await, 0);
    let unauthenticated = app
        .post("/api/v1/portfolios", None, json!({"name": "A"}))
        .await;
    unauthenticated.assert_problem(401, "UNAUTHORIZED");
}

#[tokio::test]
async fn names_are_unique_per_owner_regardless_of_case_until_deleted() {
    let app = TestApp::spawn().await;
    let ada = app.register("ada").await;
    let bob = app.register("bob").await;
    let first = app
        .create_portfolio(&ada, json!({"name": "Main"}))
        .await
        .created_id();
    let clash = app.create_portfolio(&ada, json!({"name": "MAIN"})).await;
    clash.assert_problem(409, "CONFLICT");
    assert_eq!(clash.error_fields(), vec!["name"]);
    // Another owner may use the name.
    app.create_portfolio(&bob, json!({"name": "main"}))
        .await
        .created_id();
    // Renaming onto a taken name is refused too.
    let other = app
        .create_portfolio(&ada, json!({"name": "Other"}))
        .await
        .created_id();
    let rename = app
        .patch_portfolio(&ada, &other, json!({"name": "main"}), None)
        .await;
    rename.assert_problem(409, "CONFLICT");
    // Once deleted, the name is free again.
    let deleted = app.delete_portfolio(&ada, &first, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.create_portfolio(&ada, json!({"name": "Main"}))
        .await
        .created_id();
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let id = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();

    let updated = app
        .patch_portfolio(
            &user,
            &id,
            json!({"name": "Renamed", "cost_basis_method": "fifo"}),
            Some("\"1\""),
        )
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(updated.header("etag"), Some("\"2\""));
    assert_eq!(updated.body["version"], 2);
    assert_eq!(updated.body["name"], "Renamed");
    assert_eq!(updated.body["cost_basis_method"], "fifo");

    // A stale version (and a weak tag, which never matches) is refused; nothing changes.
    for stale in ["\"1\"", "W/\"2\"", "2", "\"1\", \"3\""] {
        let reply = app
            .patch_portfolio(&user, &id, json!({"name": "Lost update"}), Some(stale))
            .await;
        reply.assert_problem(412, "PRECONDITION_FAILED");
        let reply = app.delete_portfolio(&user, &id, Some(stale)).await;
        reply.assert_problem(412, "PRECONDITION_FAILED");
    }
    let current = app.get_portfolio(&user, &id).await;
    assert_eq!(current.body["name"], "Renamed");
    assert_eq!(current.header("etag"), Some("\"2\""));

    // A list naming the current version, or `*`, matches; no If-Match at all is allowed.
    let listed = app
        .patch_portfolio(&user, &id, json!({"name": "Third"}), Some("\"1\", \"2\""))
        .await;
    assert_eq!(listed.header("etag"), Some("\"3\""), "{}", listed.body);
    let star = app
        .patch_portfolio(&user, &id, json!({"name": "Fourth"}), Some("*"))
        .await;
    assert_eq!(star.header("etag"), Some("\"4\""), "{}", star.body);
    let unconditional = app
        .patch_portfolio(&user, &id, json!({"name": "Fifth"}), None)
        .await;
    assert_eq!(unconditional.header("etag"), Some("\"5\""));

    let empty = app.patch_portfolio(&user, &id, json!({}), None).await;
    assert_eq!(
        empty.status,
        StatusCode::OK,
        "an empty merge patch changes nothing"
    );
    assert_eq!(empty.header("etag"), Some("\"5\""), "and bumps no version");
    let stale_empty = app
        .patch_portfolio(&user, &id, json!({"name": null}), Some("\"4\""))
        .await;
    stale_empty.assert_problem(412, "PRECONDITION_FAILED");

    let deleted = app.delete_portfolio(&user, &id, Some("\"5\"")).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    app.get_portfolio(&user, &id)
        .await
        .assert_problem(404, "NOT_FOUND");
    let again = app.delete_portfolio(&user, &id, None).await;
    again.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn concurrent_conditional_updates_let_exactly_one_through() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let id = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let replies = join_all((0..4).map(|n| {
        app.patch_portfolio(
            &user,
            &id,
            json!({"name": format!("Writer {n}")}),
            Some("\"1\""),
        )
    }))
    .await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    let stale = replies
        .iter()
        .filter(|r| r.status == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((ok, stale), (1, 3));
    let current = app.get_portfolio(&user, &id).await;
    assert_eq!(current.body["version"], 2);
}

#[tokio::test]
async fn the_base_currency_is_fixed_once_there_are_transactions() {
    // CoinGecko quotes in any currency; nothing here calls it (the coin is stored already).
    let app = TestApp::spawn_with(|config| {
        config.market.provider = common::market::ProviderKind::Coingecko;
        config.market.coingecko_base_url = "http://127.0.0.1:9".into();
    })
    .await;
    let user = app.register("ada").await;
    seed_coin(&app, "bitcoin", None).await;
    let empty = app
        .create_portfolio(&user, json!({"name": "Empty"}))
        .await
        .created_id();
    let reply = app
        .patch_portfolio(&user, &empty, json!({"base_currency": "EUR"}), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["base_currency"], "eur");

    let used = app
        .create_portfolio(&user, json!({"name": "Used"}))
        .await
        .created_id();
    app.add_transaction(&user, &used, tx("bitcoin", "buy", "1", "10", "0", 1))
        .await
        .created_id();
    let reply = app
        .patch_portfolio(&user, &used, json!({"base_currency": "eur"}), None)
        .await;
    reply.assert_problem(409, "CONFLICT");
    assert_eq!(reply.error_fields(), vec!["base_currency"]);
    let current = app.get_portfolio(&user, &used).await;
    assert_eq!(current.body["base_currency"], "usd");
    assert_eq!(current.body["version"], 1);
}

#[tokio::test]
async fn portfolio_lists_page_and_sort_stably() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let other = app.register("bob").await;
    app.create_portfolio(&other, json!({"name": "Not mine"}))
        .await
        .created_id();
    for name in ["delta", "Alpha", "echo", "charlie", "Bravo"] {
        app.create_portfolio(&user, json!({"name": name}))
            .await
            .created_id();
    }
    let names = |reply: &Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    // Default: newest first.
    let all = app.list_portfolios(&user, "").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(names(&all), ["Bravo", "charlie", "echo", "Alpha", "delta"]);
    assert_eq!(all.body["page"], 1);
    assert_eq!(all.body["per_page"], 20);
    assert_eq!(all.body["total"], 5);
    assert_eq!(all.body["total_pages"], 1);

    let by_name = app.list_portfolios(&user, "?sort=name").await;
    assert_eq!(
        names(&by_name),
        ["Alpha", "Bravo", "charlie", "delta", "echo"]
    );
    let by_name_desc = app.list_portfolios(&user, "?sort=name&order=desc").await;
    assert_eq!(
        names(&by_name_desc),
        ["echo", "delta", "charlie", "Bravo", "Alpha"]
    );
    let oldest = app
        .list_portfolios(&user, "?sort=created_at&order=asc")
        .await;
    assert_eq!(
        names(&oldest),
        ["delta", "Alpha", "echo", "charlie", "Bravo"]
    );

    // Edges: a partial last page, a page past the end, and out-of-range parameters.
    let last = app.list_portfolios(&user, "?page=3&per_page=2").await;
    assert_eq!(names(&last), ["delta"]);
    assert_eq!(last.body["total"], 5);
    assert_eq!(last.body["total_pages"], 3);
    let beyond = app.list_portfolios(&user, "?page=4&per_page=2").await;
    assert_eq!(beyond.status, StatusCode::OK);
    assert_eq!(names(&beyond), Vec::<String>::new());
    assert_eq!(beyond.body["total"], 5);
    let max = app.list_portfolios(&user, "?per_page=100").await;
    assert_eq!(max.status, StatusCode::OK);
    for (query, field) in [
        ("page=0", "page"),
        ("per_page=0", "per_page"),
        ("per_page=101", "per_page"),
        ("page=-1", "page"),
        ("page=abc", "page"),
        ("sort=size", "sort"),
        ("order=up", "order"),
    ] {
        let reply = app.list_portfolios(&user, &format!("?{query}")).await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields(), vec![field], "{query}");
    }

    // Equal sort keys: pages neither overlap nor skip (ties broken by id).
    sqlx::query("UPDATE portfolios SET created_at = '2026-01-01T00:00:00Z'")
        .execute(&app.pool)
        .await
        .expect("same time");
    let mut seen = Vec::new();
    for page in 1..=3 {
        let reply = app
            .list_portfolios(
                &user,
                &format!("?sort=created_at&order=asc&per_page=2&page={page}"),
            )
            .await;
        seen.extend(names(&reply));
    }
    assert_eq!(seen.len(), 5);
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 5);
}

// ---- ownership ----------------------------------------------------------------------------

#[tokio::test]
async fn another_users_portfolio_is_404_on_every_route() {
    let app = TestApp::spawn().await;
    let owner = app.register("owner").await;
    let intruder = app.register("intruder").await;
    let portfolio = app
        .create_portfolio(&owner, json!({"name": "Mine"}))
        .await
        .created_id();
    let tx_id = app
        .add_transaction(&owner, &portfolio, tx("bitcoin", "buy", "1", "10", "0", 1))
        .await
        .created_id();
    let own = app
        .create_portfolio(&intruder, json!({"name": "Theirs"}))
        .await
        .created_id();
    let base = format!("/api/v1/portfolios/{portfolio}");
    let body = tx("bitcoin", "buy", "1", "10", "0", 2);
    let routes: Vec<(Method, String, Option<Value>)> = vec![
        (Method::GET, base.clone(), None),
        (Method::PATCH, base.clone(), Some(json!({"name": "Stolen"}))),
        (Method::DELETE, base.clone(), None),
        (Method::GET, format!("{base}/transactions"), None),
        (
            Method::POST,
            format!("{base}/transactions"),
            Some(body.clone()),
        ),
        (Method::GET, format!("{base}/transactions/{tx_id}"), None),
        (Method::DELETE, format!("{base}/transactions/{tx_id}"), None),
        (Method::GET, format!("{base}/valuation"), None),
        // The owner's transaction through the intruder's own portfolio.
        (
            Method::GET,
            format!("/api/v1/portfolios/{own}/transactions/{tx_id}"),
            None,
        ),
        (
            Method::DELETE,
            format!("/api/v1/portfolios/{own}/transactions/{tx_id}"),
            None,
        ),
    ];
    for (method, path, body) in routes {
        let reply = app
            .send(
                method.clone(),
                &path,
                Some(&intruder.access),
                body.clone(),
                &[],
            )
            .await;
        reply.assert_problem(404, "NOT_FOUND");
        // Even with a key or a precondition.
        let reply = app
            .send(
                method.clone(),
                &path,
                Some(&intruder.access),
                body,
                &[("if-match", "\"1\""), ("idempotency-key", "k")],
            )
            .await;
        reply.assert_problem(404, "NOT_FOUND");
    }
    // Unknown ids are the same 404 to the owner.
    let missing = "00000000-0000-7000-8000-000000000000";
    app.get_portfolio(&owner, missing)
        .await
        .assert_problem(404, "NOT_FOUND");
    app.get_transaction(&owner, &portfolio, missing)
        .await
        .assert_problem(404, "NOT_FOUND");
    let bad = app.get_portfolio(&owner, "not-a-uuid").await;
    bad.assert_problem(422, "VALIDATION_ERROR");

    // Nothing changed for the owner.
    let mine = app.get_portfolio(&owner, &portfolio).await;
    assert_eq!(mine.body["name"], "Mine");
    assert_eq!(mine.body["version"], 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        1
    );
    let listed = app.list_portfolios(&intruder, "").await;
    assert_eq!(listed.body["total"], 1, "only their own portfolio");
}

#[tokio::test]
async fn a_deleted_portfolio_hides_everything_under_it() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let tx_id = app
        .add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "10", "0", 1))
        .await
        .created_id();
    let deleted = app.delete_portfolio(&user, &portfolio, None).await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    for reply in [
        app.get_portfolio(&user, &portfolio).await,
        app.list_transactions(&user, &portfolio, "").await,
        app.get_transaction(&user, &portfolio, &tx_id).await,
        app.valuation(&user, &portfolio).await,
    ] {
        reply.assert_problem(404, "NOT_FOUND");
    }
    app.add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "10", "0", 2))
        .await
        .assert_problem(404, "NOT_FOUND");
    let listed = app.list_portfolios(&user, "").await;
    assert_eq!(listed.body["total"], 0);
    // Soft: the rows are kept.
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        1
    );
}

// ---- transactions -------------------------------------------------------------------------

#[tokio::test]
async fn decimals_round_trip_exactly() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Dust"}))
        .await
        .created_id();
    let reply = app
        .add_transaction(
            &user,
            &portfolio,
            json!({
                "coin_id": "bitcoin",
                "side": "buy",
                "quantity": "0.000000000000000001",
                "price": "123456789012.123456789",
                "fee": "0.10",
                "executed_at": "2025-01-01T00:00:00Z",
            }),
        )
        .await;
    let tx_id = reply.created_id();
    assert_eq!(reply.body["quantity"], "0.000000000000000001");
    assert_eq!(reply.body["price"], "123456789012.123456789");
    assert_eq!(reply.body["fee"], "0.1");
    assert_eq!(reply.body["side"], "buy");
    assert_eq!(reply.body["note"], Value::Null);
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/portfolios/{portfolio}/transactions/{tx_id}").as_str())
    );

    let stored: (String, String) = sqlx::query_as(
        "SELECT quantity::text, price::text FROM portfolio_transactions WHERE id = $1::uuid",
    )
    .bind(&tx_id)
    .fetch_one(&app.pool)
    .await
    .expect("row");
    assert_eq!(
        stored,
        (
            "0.000000000000000001".into(),
            "123456789012.123456789".into()
        ),
        "NUMERIC holds every digit"
    );

    let fetched = app.get_transaction(&user, &portfolio, &tx_id).await;
    assert_eq!(fetched.body["quantity"], "0.000000000000000001");
    assert_eq!(fetched.body["price"], "123456789012.123456789");

    let valuation = app.valuation(&user, &portfolio).await;
    assert_eq!(valuation.status, StatusCode::OK, "{}", valuation.body);
    let holding = &valuation.body["holdings"][0];
    assert_eq!(holding["quantity"], "0.000000000000000001");
    // 1e-18 × 123456789012.123456789 + 0.1 = 0.100000123456789…, to 8 places.
    assert_eq!(holding["cost_basis"], "0.10000012");
    assert_eq!(holding["avg_cost"], "100000123456789012.123456789");
    assert!(holding["price"].is_string(), "{holding}");

    let large = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "ethereum", "side": "transfer_in",
               "quantity": "123456789012.123456789", "executed_at": "2025-01-02T00:00:00Z"}),
        )
        .await;
    large.created_id();
    assert_eq!(large.body["quantity"], "123456789012.123456789");
    assert_eq!(large.body["price"], "0", "a transfer defaults to zero cost");
}

#[tokio::test]
async fn bad_transactions_are_422_naming_the_field_and_write_nothing() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let future = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    let base = json!({"coin_id": "bitcoin", "side": "buy", "quantity": "1", "price": "10"});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = base.clone();
        body.as_object_mut().expect("object").remove(field);
        body
    };
    let cases = [
        (with("coin_id", json!("no-such-coin")), "coin_id"),
        (with("coin_id", json!("BTC!")), "coin_id"),
        (with("side", json!("short")), "side"),
        (with("quantity", json!("0")), "quantity"),
        (with("quantity", json!("-1")), "quantity"),
        (with("quantity", json!(1.5)), "quantity"),
        (with("quantity", json!("1e3")), "quantity"),
        (with("quantity", json!("0.0000000000000000001")), "quantity"),
        (with("quantity", json!("100000000000000000000")), "quantity"),
        (with("price", json!("-0.01")), "price"),
        (with("price", json!(10)), "price"),
        (without("price"), "price"),
        (with("fee", json!("-1")), "fee"),
        (with("executed_at", json!(future)), "executed_at"),
        (
            with("executed_at", json!("2001-01-01T00:00:00Z")),
            "executed_at",
        ),
        (with("executed_at", json!("yesterday")), "executed_at"),
        (with("note", json!("n".repeat(1001))), "note"),
        (with("leverage", json!("10")), "leverage"),
        (without("quantity"), "quantity"),
    ];
    for (body, field) in cases {
        let reply = app.add_transaction(&user, &portfolio, body.clone()).await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields(), vec![field], "{body}");
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        0
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM coins WHERE id = 'no-such-coin'").await,
        0
    );
    // A known coin is accepted without a stored price: the provider knows it.
    app.add_transaction(&user, &portfolio, base)
        .await
        .created_id();
}

#[tokio::test]
async fn a_transaction_lists_every_bad_field_at_once_with_the_allowed_values() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    let reply = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "BTC", "side": "short", "quantity": 1.5,
                   "executed_at": "yesterday", "leverage": "10"}),
        )
        .await;
    reply.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        reply.body["errors"],
        json!([
            {"field": "coin_id", "message":
                "must be a coin id: 1–100 lower-case letters, digits, '-', '_' or '.'"},
            {"field": "side", "message": "must be one of: buy, sell, transfer_in, transfer_out"},
            {"field": "quantity", "message":
                "must be a decimal number of at least 0 written as a string, such as \"12.5\""},
            {"field": "executed_at", "message":
                "must be a date and time in RFC 3339 format, such as 2026-11-21T09:30:00Z"},
            {"field": "leverage", "message": "is not a known field"},
        ])
    );
    // Past the schema, the handler's own rules also report every field they refuse.
    let semantic = app
        .add_transaction(
            &user,
            &portfolio,
            json!({"coin_id": "bitcoin", "side": "sell", "quantity": "0",
                   "executed_at": "2001-01-01T00:00:00Z"}),
        )
        .await;
    semantic.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        semantic.error_fields(),
        vec!["quantity", "price", "executed_at"]
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        0
    );
}

#[tokio::test]
async fn a_sell_may_not_exceed_the_holding_at_that_moment() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    app.add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "100", "0", 10))
        .await
        .created_id();

    // More than held now, or anything before the buy.
    let over = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "1.5", "120", "0", 11),
        )
        .await;
    over.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(over.error_fields(), vec!["quantity"]);
    let message = over.body["errors"][0]["message"].as_str().expect("message");
    assert!(message.contains("holding of 1 bitcoin"), "{message}");
    let early = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "0.1", "120", "0", 9),
        )
        .await;
    early.assert_problem(422, "VALIDATION_ERROR");
    assert!(
        early.body["errors"][0]["message"]
            .as_str()
            .expect("message")
            .contains("holding of 0 bitcoin")
    );
    let transfer = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "transfer_out", "2", "0", "0", 12),
        )
        .await;
    transfer.assert_problem(422, "VALIDATION_ERROR");
    // Another coin's holding does not count.
    let other = app
        .add_transaction(
            &user,
            &portfolio,
            tx("ethereum", "sell", "1", "10", "0", 12),
        )
        .await;
    other.assert_problem(422, "VALIDATION_ERROR");

    // Exactly the holding is fine.
    let sell = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "0.6", "120", "0", 20),
        )
        .await
        .created_id();
    // A sell placed earlier that would leave the later one short is refused, naming it.
    let squeeze = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "0.5", "110", "0", 15),
        )
        .await;
    squeeze.assert_problem(422, "VALIDATION_ERROR");
    let message = squeeze.body["errors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("sell of 0.6 at 2025-01-20T12:00:00Z") && message.contains("0.5"),
        "{message}"
    );
    app.add_transaction(
        &user,
        &portfolio,
        tx("bitcoin", "sell", "0.4", "110", "0", 15),
    )
    .await
    .created_id();
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        3
    );

    // Deleting the buy would make both sells impossible: 409, nothing changes.
    let buy_id: String =
        sqlx::query_scalar("SELECT id::text FROM portfolio_transactions WHERE side = 'buy'")
            .fetch_one(&app.pool)
            .await
            .expect("buy");
    let conflict = app.delete_transaction(&user, &portfolio, &buy_id).await;
    conflict.assert_problem(409, "CONFLICT");
    assert!(
        conflict.body["detail"]
            .as_str()
            .expect("detail")
            .contains("sell of 0.4")
    );
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        3
    );

    // Deleting a sell is always possible; then the buy only once no sell needs it.
    let gone = app.delete_transaction(&user, &portfolio, &sell).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    let still = app.delete_transaction(&user, &portfolio, &buy_id).await;
    still.assert_problem(409, "CONFLICT");
    let again = app.delete_transaction(&user, &portfolio, &sell).await;
    again.assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn concurrent_sells_cannot_both_spend_one_holding() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    app.add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "100", "0", 1))
        .await
        .created_id();
    let replies = join_all((0..5).map(|_| {
        app.add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "0.4", "120", "0", 2),
        )
    }))
    .await;
    let ok = replies
        .iter()
        .filter(|r| r.status == StatusCode::CREATED)
        .count();
    let refused = replies
        .iter()
        .filter(|r| r.status == StatusCode::UNPROCESSABLE_ENTITY)
        .count();
    assert_eq!((ok, refused), (2, 3));
    let sold: String = sqlx::query_scalar(
        "SELECT sum(quantity)::text FROM portfolio_transactions WHERE side = 'sell'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("sum");
    assert_eq!(sold, "0.8");
}

#[tokio::test]
async fn transactions_list_by_execution_time_with_filters() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    // Recorded out of order on purpose.
    for body in [
        tx("ethereum", "buy", "2", "10", "0", 3),
        tx("bitcoin", "buy", "1", "100", "0", 1),
        tx("bitcoin", "sell", "0.5", "120", "0", 4),
        tx("bitcoin", "transfer_in", "0.25", "0", "0", 2),
    ] {
        app.add_transaction(&user, &portfolio, body)
            .await
            .created_id();
    }
    let list = |query: &'static str| {
        let (app, user, portfolio) = (&app, &user, &portfolio);
        async move {
            let reply = app.list_transactions(user, portfolio, query).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            reply
        }
    };
    let days = |reply: &Reply| -> Vec<String> {
        reply.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|t| t["executed_at"].as_str().expect("at")[8..10].to_owned())
            .collect()
    };
    let all = list("").await;
    assert_eq!(days(&all), ["01", "02", "03", "04"]);
    assert_eq!(all.body["total"], 4);
    assert_eq!(days(&list("?order=desc").await), ["04", "03", "02", "01"]);
    let btc = list("?coin_id=bitcoin").await;
    assert_eq!(days(&btc), ["01", "02", "04"]);
    assert_eq!(btc.body["total"], 3);
    let sells = list("?side=sell").await;
    assert_eq!(days(&sells), ["04"]);
    assert_eq!(sells.body["items"][0]["quantity"], "0.5");
    assert_eq!(days(&list("?coin_id=bitcoin&side=buy").await), ["01"]);
    let paged = list("?per_page=3&page=2").await;
    assert_eq!(days(&paged), ["04"]);
    assert_eq!(paged.body["total_pages"], 2);
    for query in ["?per_page=101", "?page=0", "?side=short", "?coin_id=BTC!"] {
        let reply = app.list_transactions(&user, &portfolio, query).await;
        reply.assert_problem(422, "VALIDATION_ERROR");
    }
}

// ---- valuation ----------------------------------------------------------------------------

/// The ledger of the unit tests' hand-computed fixture, through the API: two buys with fees, a
/// partial sell with a fee, a zero-cost transfer in and a transfer out with a fee (bitcoin at
/// 160), ten ethereum at 10 now worth 5, a closed position with a gain of 2, and a coin the
/// price provider does not know.
async fn fixture(app: &TestApp, user: &Session, method: &str) -> String {
    seed_coin(app, "fixture-btc", Some(("160", Some("2.123456")))).await;
    seed_coin(app, "fixture-eth", Some(("5", None))).await;
    seed_coin(app, "fixture-closed", None).await;
    seed_coin(app, "fixture-unpriced", None).await;
    let portfolio = app
        .create_portfolio(
            user,
            json!({"name": format!("Fixture {method}"), "cost_basis_method": method}),
        )
        .await
        .created_id();
    for body in [
        tx("fixture-btc", "buy", "2", "100", "2", 1),
        tx("fixture-btc", "buy", "1", "130", "1", 2),
        tx("fixture-btc", "sell", "1.5", "150", "1.5", 3),
        json!({"coin_id": "fixture-btc", "side": "transfer_in", "quantity": "0.5",
               "executed_at": "2025-01-04T12:00:00Z"}),
        json!({"coin_id": "fixture-btc", "side": "transfer_out", "quantity": "0.25",
               "fee": "0.1", "executed_at": "2025-01-05T12:00:00Z"}),
        tx("fixture-eth", "buy", "10", "10", "0", 1),
        tx("fixture-closed", "buy", "1", "10", "0", 1),
        tx("fixture-closed", "sell", "1", "12", "0", 2),
        tx("fixture-unpriced", "buy", "1", "7", "0", 1),
    ] {
        app.add_transaction(user, &portfolio, body)
            .await
            .created_id();
    }
    portfolio
}

/// The portfolio's valuation, which must be a 200.
async fn valued(app: &TestApp, user: &Session, portfolio: &str) -> Value {
    let reply = app.valuation(user, portfolio).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

fn holding<'a>(valuation: &'a Value, coin: &str) -> &'a Value {
    valuation["holdings"]
        .as_array()
        .expect("holdings")
        .iter()
        .find(|h| h["coin_id"] == coin)
        .unwrap_or_else(|| panic!("{coin} is listed: {valuation}"))
}

#[tokio::test]
async fn valuation_by_average_cost_matches_the_hand_computed_fixture() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = fixture(&app, &user, "average").await;
    let v = valued(&app, &user, &portfolio).await;
    assert_eq!(v["portfolio_id"], portfolio.as_str());
    assert_eq!(v["base_currency"], "usd");
    assert_eq!(v["cost_basis_method"], "average");
    let order: Vec<&str> = v["holdings"]
        .as_array()
        .expect("holdings")
        .iter()
        .map(|h| h["coin_id"].as_str().expect("coin"))
        .collect();
    assert_eq!(
        order,
        [
            "fixture-btc",
            "fixture-eth",
            "fixture-closed",
            "fixture-unpriced"
        ]
    );
    assert_eq!(
        holding(&v, "fixture-btc"),
        &json!({
            "coin_id": "fixture-btc",
            "quantity": "1.75",
            "avg_cost": "83.25",
            "cost_basis": "145.6875",
            "price": "160",
            "value": "280",
            "unrealized_pnl": "134.3125",
            "unrealized_pnl_pct": "92.1922",
            "realized_pnl": "56.9",
            "change_24h_pct": "2.1235",
            "allocation_pct": "84.8485",
            "price_updated_at": "2026-11-21T09:00:00Z",
            "price_missing": false,
        })
    );
    let eth = holding(&v, "fixture-eth");
    assert_eq!(eth["unrealized_pnl"], "-50");
    assert_eq!(eth["unrealized_pnl_pct"], "-50");
    assert_eq!(eth["allocation_pct"], "15.1515");
    assert_eq!(eth["change_24h_pct"], Value::Null);
    let closed = holding(&v, "fixture-closed");
    assert_eq!(closed["quantity"], "0");
    assert_eq!(closed["avg_cost"], Value::Null);
    assert_eq!(closed["realized_pnl"], "2");
    let unpriced = holding(&v, "fixture-unpriced");
    assert_eq!(unpriced["price"], Value::Null);
    assert_eq!(unpriced["value"], Value::Null);
    assert_eq!(unpriced["unrealized_pnl"], Value::Null);
    assert_eq!(unpriced["allocation_pct"], Value::Null);
    assert_eq!(unpriced["price_missing"], true);
    assert_eq!(unpriced["cost_basis"], "7");
    assert_eq!(
        v["totals"],
        json!({
            "total_value": "330",
            "total_cost": "252.6875",
            "unrealized_pnl": "84.3125",
            "unrealized_pnl_pct": "34.317",
            "realized_pnl": "58.9",
            "partial": true,
            "missing_prices": ["fixture-unpriced"],
        })
    );
}

#[tokio::test]
async fn valuation_by_fifo_matches_the_hand_computed_fixture_and_follows_the_method() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = fixture(&app, &user, "fifo").await;
    let v = valued(&app, &user, &portfolio).await;
    let btc = holding(&v, "fixture-btc");
    assert_eq!(btc["cost_basis"], "156.25");
    assert_eq!(btc["avg_cost"], "89.285714285714285714");
    assert_eq!(btc["unrealized_pnl"], "123.75");
    assert_eq!(btc["unrealized_pnl_pct"], "79.2");
    assert_eq!(btc["realized_pnl"], "71.9");
    assert_eq!(v["totals"]["total_cost"], "263.25");
    assert_eq!(v["totals"]["unrealized_pnl"], "73.75");
    assert_eq!(v["totals"]["unrealized_pnl_pct"], "28.7805");
    assert_eq!(v["totals"]["realized_pnl"], "73.9");

    // Switching the method revalues at once.
    let switched = app
        .patch_portfolio(
            &user,
            &portfolio,
            json!({"cost_basis_method": "average"}),
            None,
        )
        .await;
    assert_eq!(switched.status, StatusCode::OK);
    let v = valued(&app, &user, &portfolio).await;
    assert_eq!(holding(&v, "fixture-btc")["cost_basis"], "145.6875");
}

#[tokio::test]
async fn allocation_sums_to_exactly_100_and_missing_prices_are_fetched_once() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Thirds"}))
        .await
        .created_id();
    seed_coin(&app, "third-a", Some(("1", None))).await;
    seed_coin(&app, "third-b", Some(("1", None))).await;
    seed_coin(&app, "third-c", Some(("1", None))).await;
    for (coin, day) in [("third-a", 1), ("third-b", 2), ("third-c", 3)] {
        app.add_transaction(&user, &portfolio, tx(coin, "buy", "1", "1", "0", day))
            .await
            .created_id();
    }
    // bitcoin has no stored price: the provider is asked once and the quote kept.
    app.add_transaction(
        &user,
        &portfolio,
        tx("bitcoin", "buy", "0.001", "50000", "0", 4),
    )
    .await
    .created_id();
    sqlx::query("DELETE FROM latest_prices WHERE coin_id = 'bitcoin'")
        .execute(&app.pool)
        .await
        .expect("forget");
    app.state
        .prices
        .cache()
        .clear()
        .await
        .expect("forget the cached price too");
    let v = valued(&app, &user, &portfolio).await;
    assert_eq!(v["totals"]["partial"], false);
    assert_eq!(holding(&v, "bitcoin")["price_missing"], false);
    assert!(holding(&v, "bitcoin")["price"].is_string());
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM latest_prices WHERE coin_id = 'bitcoin'"
        )
        .await,
        1
    );
    let total: rust_decimal::Decimal = v["holdings"]
        .as_array()
        .expect("holdings")
        .iter()
        .map(|h| {
            h["allocation_pct"]
                .as_str()
                .expect("allocation")
                .parse::<rust_decimal::Decimal>()
                .expect("decimal")
        })
        .sum();
    assert_eq!(total, rust_decimal::Decimal::ONE_HUNDRED);
}

#[tokio::test]
async fn an_unreachable_provider_leaves_prices_missing_not_an_error() {
    let app = TestApp::spawn_with(|config| {
        config.market.provider = common::market::ProviderKind::Coingecko;
        config.market.coingecko_base_url = "http://127.0.0.1:9".into();
        config.market.coingecko_max_attempts = 1;
    })
    .await;
    let user = app.register("ada").await;
    seed_coin(&app, "bitcoin", None).await;
    seed_coin(&app, "ethereum", Some(("2000", None))).await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Main"}))
        .await
        .created_id();
    app.add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "100", "0", 1))
        .await
        .created_id();
    app.add_transaction(
        &user,
        &portfolio,
        tx("ethereum", "buy", "1", "1000", "0", 1),
    )
    .await
    .created_id();
    let v = valued(&app, &user, &portfolio).await;
    assert_eq!(v["totals"]["partial"], true);
    assert_eq!(v["totals"]["missing_prices"], json!(["bitcoin"]));
    assert_eq!(v["totals"]["total_value"], "2000");
    assert_eq!(v["totals"]["total_cost"], "1100");
    assert_eq!(v["totals"]["unrealized_pnl"], "1000");
    assert_eq!(holding(&v, "ethereum")["allocation_pct"], "100");
    assert_eq!(holding(&v, "bitcoin")["price_missing"], true);
    // An unknown coin cannot be added while the provider is unreachable: 503, not a guess.
    app.add_transaction(&user, &portfolio, tx("solana", "buy", "1", "100", "0", 1))
        .await
        .assert_problem(503, "UNAVAILABLE");
}

#[tokio::test]
async fn an_empty_portfolio_values_to_zero() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Empty"}))
        .await
        .created_id();
    let v = valued(&app, &user, &portfolio).await;
    assert_eq!(v["holdings"], json!([]));
    assert_eq!(
        v["totals"],
        json!({
            "total_value": "0",
            "total_cost": "0",
            "unrealized_pnl": "0",
            "unrealized_pnl_pct": null,
            "realized_pnl": "0",
            "partial": false,
            "missing_prices": [],
        })
    );
}

// ---- idempotency --------------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_replays_the_first_response() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let key = "create-main-1";
    let body = json!({"name": "Main", "cost_basis_method": "fifo"});
    let first = app.create_portfolio_keyed(&user, body.clone(), key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    assert_eq!(first.header("idempotent-replayed"), None);
    // The same request again, with its JSON written differently.
    let retry = app
        .create_portfolio_keyed(
            &user,
            json!({"cost_basis_method": "fifo", "name": "Main"}),
            key,
        )
        .await;
    assert_eq!(retry.status, StatusCode::CREATED, "{}", retry.body);
    assert_eq!(retry.body, first.body, "same id, same body");
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("etag"), first.header("etag"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    assert_eq!(count(&app, "SELECT count(*) FROM portfolios").await, 1);

    // Same key, different request: refused, nothing created.
    let mismatch = app
        .create_portfolio_keyed(&user, json!({"name": "Other"}), key)
        .await;
    mismatch.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(mismatch.error_fields(), vec!["Idempotency-Key"]);
    assert_eq!(count(&app, "SELECT count(*) FROM portfolios").await, 1);

    // Keys are per user: another user's same key creates their own portfolio.
    let other = app.register("bob").await;
    let theirs = app.create_portfolio_keyed(&other, body.clone(), key).await;
    assert_eq!(theirs.status, StatusCode::CREATED);
    assert_ne!(theirs.body["id"], first.body["id"]);

    // A failed request is not remembered: fixing it under the same key works.
    let bad_key = "create-bad";
    let failed = app
        .create_portfolio_keyed(&user, json!({"name": "Main"}), bad_key)
        .await;
    failed.assert_problem(409, "CONFLICT");
    let fixed = app
        .create_portfolio_keyed(&user, json!({"name": "Second"}), bad_key)
        .await;
    assert_eq!(fixed.status, StatusCode::CREATED, "{}", fixed.body);

    // After 24 hours a key is forgotten.
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '25 hours'")
        .execute(&app.pool)
        .await
        .expect("age keys");
    let reused = app
        .create_portfolio_keyed(&user, json!({"name": "Third"}), key)
        .await;
    assert_eq!(reused.status, StatusCode::CREATED, "{}", reused.body);
    assert_ne!(reused.body["id"], first.body["id"]);
    assert_eq!(reused.header("idempotent-replayed"), None);

    let invalid = app
        .create_portfolio_keyed(&user, json!({"name": "Fourth"}), "has space")
        .await;
    invalid.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(invalid.error_fields(), vec!["Idempotency-Key"]);
}

#[tokio::test]
async fn a_replay_answers_the_stored_status_and_body() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let key = "stored-1";
    let body = json!({"name": "Main"});
    let first = app.create_portfolio_keyed(&user, body.clone(), key).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    let (status, stored): (Option<i16>, Option<Value>) = sqlx::query_as(
        "SELECT response_status, response_body FROM idempotency_keys WHERE key = 'stored-1'",
    )
    .fetch_one(&app.pool)
    .await
    .expect("stored response");
    assert_eq!(status, Some(201), "the status answered is stored");
    assert_eq!(stored.as_ref(), Some(&first.body), "and so is the body");

    // A replay answers whatever was stored, not what a create answers now.
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = 200,
                response_body = jsonb_set(response_body, '{name}', '\"Stored\"')
         WHERE key = 'stored-1'",
    )
    .execute(&app.pool)
    .await
    .expect("edit the stored response");
    let replay = app.create_portfolio_keyed(&user, body, key).await;
    assert_eq!(replay.status, StatusCode::OK, "{}", replay.body);
    assert_eq!(replay.body["name"], "Stored");
    assert_eq!(replay.body["id"], first.body["id"]);
    assert_eq!(replay.header("location"), first.header("location"));
    assert_eq!(replay.header("idempotent-replayed"), Some("true"));

    // Transactions store theirs the same way.
    let portfolio = first.created_id();
    let tx_key = "stored-tx";
    let recorded = app
        .add_transaction_keyed(
            &user,
            &portfolio,
            tx("bitcoin", "buy", "1", "100", "0", 1),
            tx_key,
        )
        .await;
    assert_eq!(recorded.status, StatusCode::CREATED, "{}", recorded.body);
    let status: Option<i16> =
        sqlx::query_scalar("SELECT response_status FROM idempotency_keys WHERE key = 'stored-tx'")
            .fetch_one(&app.pool)
            .await
            .expect("stored status");
    assert_eq!(status, Some(201));
    let replay = app
        .add_transaction_keyed(
            &user,
            &portfolio,
            tx("bitcoin", "buy", "1", "100", "0", 1),
            tx_key,
        )
        .await;
    assert_eq!(replay.status, StatusCode::CREATED);
    assert_eq!(replay.body, recorded.body);
}

#[tokio::test]
async fn an_idempotency_key_on_transactions_covers_the_portfolio_too() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let a = app
        .create_portfolio(&user, json!({"name": "A"}))
        .await
        .created_id();
    let b = app
        .create_portfolio(&user, json!({"name": "B"}))
        .await
        .created_id();
    let key = "buy-1";
    let body = tx("bitcoin", "buy", "1.50", "100", "0", 1);
    let first = app
        .add_transaction_keyed(&user, &a, body.clone(), key)
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.body);
    // "1.5" is the same amount as "1.50".
    let mut same = body.clone();
    same["quantity"] = json!("1.5");
    let retry = app.add_transaction_keyed(&user, &a, same, key).await;
    assert_eq!(retry.status, StatusCode::CREATED);
    assert_eq!(retry.body, first.body);
    assert_eq!(retry.header("location"), first.header("location"));
    assert_eq!(retry.header("idempotent-replayed"), Some("true"));
    let elsewhere = app
        .add_transaction_keyed(&user, &b, body.clone(), key)
        .await;
    elsewhere.assert_problem(422, "VALIDATION_ERROR");
    let mut different = body;
    different["quantity"] = json!("2");
    let mismatch = app.add_transaction_keyed(&user, &a, different, key).await;
    mismatch.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        1
    );
}

#[tokio::test]
async fn concurrent_retries_with_one_key_create_one_resource() {
    let app = TestApp::spawn().await;
    let user = app.register("ada").await;
    let key = "race";
    let replies =
        join_all((0..6).map(|_| app.create_portfolio_keyed(&user, json!({"name": "Raced"}), key)))
            .await;
    let ids: HashSet<String> = replies.iter().map(Reply::created_id).collect();
    assert_eq!(ids.len(), 1, "every retry got the one portfolio");
    let replayed = replies
        .iter()
        .filter(|r| r.header("idempotent-replayed") == Some("true"))
        .count();
    assert_eq!(replayed, 5);
    assert_eq!(count(&app, "SELECT count(*) FROM portfolios").await, 1);

    let portfolio = ids.into_iter().next().expect("one id");
    let tx_key = "race-tx";
    let replies = join_all((0..6).map(|_| {
        app.add_transaction_keyed(
            &user,
            &portfolio,
            tx("bitcoin", "buy", "1", "100", "0", 1),
            tx_key,
        )
    }))
    .await;
    let ids: HashSet<String> = replies.iter().map(Reply::created_id).collect();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        count(&app, "SELECT count(*) FROM portfolio_transactions").await,
        1
    );
}

// ---- the OpenAPI document -----------------------------------------------------------------

#[tokio::test]
async fn the_openapi_document_describes_portfolios_with_decimal_strings() {
    let app = TestApp::spawn().await;
    let spec = app.get("/openapi.json", None).await.body;
    let paths = &spec["paths"];
    for (path, method) in [
        ("/api/v1/portfolios", "get"),
        ("/api/v1/portfolios", "post"),
        ("/api/v1/portfolios/{id}", "get"),
        ("/api/v1/portfolios/{id}", "patch"),
        ("/api/v1/portfolios/{id}", "delete"),
        ("/api/v1/portfolios/{id}/transactions", "get"),
        ("/api/v1/portfolios/{id}/transactions", "post"),
        ("/api/v1/portfolios/{id}/transactions/{tx_id}", "get"),
        ("/api/v1/portfolios/{id}/transactions/{tx_id}", "delete"),
        ("/api/v1/portfolios/{id}/valuation", "get"),
    ] {
        let operation = &paths[path][method];
        assert!(operation["summary"].is_string(), "{method} {path}");
        assert_eq!(operation["tags"][0], "Portfolios", "{method} {path}");
        assert_eq!(operation["security"][0]["bearerAuth"], json!([]));
        for status in ["400", "401", "404", "429", "500"] {
            if path == "/api/v1/portfolios" && status == "404" {
                continue;
            }
            assert!(
                operation["responses"][status]["content"]["application/problem+json"].is_object(),
                "{method} {path} documents {status}"
            );
        }
    }
    let patch = &paths["/api/v1/portfolios/{id}"]["patch"];
    assert!(patch["responses"]["412"].is_object());
    assert!(patch["responses"]["409"].is_object());
    assert!(paths["/api/v1/portfolios/{id}"]["delete"]["responses"]["412"].is_object());
    assert!(
        paths["/api/v1/portfolios/{id}"]["get"]["responses"]["200"]["headers"]["ETAG"].is_object()
    );
    let params = |path: &str, method: &str| -> Vec<String> {
        paths[path][method]["parameters"]
            .as_array()
            .expect("parameters")
            .iter()
            .map(|p| p["name"].as_str().expect("name").to_owned())
            .collect()
    };
    assert!(params("/api/v1/portfolios", "post").contains(&"Idempotency-Key".to_owned()));
    assert!(
        params("/api/v1/portfolios/{id}/transactions", "post")
            .contains(&"Idempotency-Key".to_owned())
    );
    assert!(params("/api/v1/portfolios/{id}", "patch").contains(&"If-Match".to_owned()));
    for name in ["sort", "order", "page", "per_page"] {
        assert!(params("/api/v1/portfolios", "get").contains(&name.to_owned()));
    }

    let schemas = &spec["components"]["schemas"];
    for name in [
        "Portfolio",
        "CreatePortfolioRequest",
        "UpdatePortfolioRequest",
        "Transaction",
        "CreateTransactionRequest",
        "Holding",
        "ValuationTotals",
        "Valuation",
    ] {
        assert!(
            schemas[name]["example"].is_object(),
            "{name} has an example"
        );
    }
    // Every amount is a string with format decimal, and examples write them as strings.
    for (schema, fields) in [
        ("Transaction", &["quantity", "price", "fee"][..]),
        (
            "CreateTransactionRequest",
            &["quantity", "price", "fee"][..],
        ),
        (
            "Holding",
            &[
                "quantity",
                "avg_cost",
                "cost_basis",
                "price",
                "value",
                "unrealized_pnl",
                "unrealized_pnl_pct",
                "realized_pnl",
                "change_24h_pct",
                "allocation_pct",
            ][..],
        ),
        (
            "ValuationTotals",
            &[
                "total_value",
                "total_cost",
                "unrealized_pnl",
                "realized_pnl",
            ][..],
        ),
    ] {
        for field in fields {
            let property = &schemas[schema]["properties"][*field];
            assert_eq!(property["type"], "string", "{schema}.{field}: {property}");
            assert_eq!(property["format"], "decimal", "{schema}.{field}");
            assert!(
                property["example"].is_string(),
                "{schema}.{field} has an example"
            );
            assert!(
                schemas[schema]["example"][*field].is_string(),
                "{schema}'s example writes {field} as a string"
            );
        }
    }
    let valuation_doc = paths["/api/v1/portfolios/{id}/valuation"]["get"]["description"]
        .as_str()
        .expect("description");
    assert!(valuation_doc.contains("8 decimal places") && valuation_doc.contains("zero cost"));
}

// ---- editing a transaction --------------------------------------------------------------------

async fn patch_transaction(
    app: &TestApp,
    user: &Session,
    portfolio: &str,
    id: &str,
    body: Value,
    if_match: Option<&str>,
) -> Reply {
    let path = format!(
        "{}/transactions/{id}",
        crate::helpers::portfolio_path(portfolio)
    );
    let headers: Vec<(&str, &str)> = if_match
        .map(|tag| vec![("if-match", tag)])
        .unwrap_or_default();
    app.send(
        Method::PATCH,
        &path,
        Some(&user.access),
        Some(body),
        &headers,
    )
    .await
}

#[tokio::test]
async fn an_edit_replays_the_ledger_and_is_refused_when_it_would_oversell() {
    let app = TestApp::spawn().await;
    let user = app.register("editor").await;
    seed_coin(&app, "bitcoin", None).await;
    seed_coin(&app, "ethereum", None).await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Edits"}))
        .await
        .created_id();
    let buy = app
        .add_transaction(&user, &portfolio, tx("bitcoin", "buy", "1", "100", "0", 1))
        .await
        .created_id();
    let sell = app
        .add_transaction(
            &user,
            &portfolio,
            tx("bitcoin", "sell", "0.6", "120", "0", 20),
        )
        .await
        .created_id();

    // The ETag of the transaction guards the edit.
    let current = app.get_transaction(&user, &portfolio, &buy).await;
    let etag = current.header("etag").expect("etag").to_owned();
    let edited = patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"quantity": "2", "note": "fixed"}),
        Some(&etag),
    )
    .await;
    assert_eq!(edited.status, StatusCode::OK, "{}", edited.body);
    assert_eq!(edited.body["quantity"], "2");
    assert_eq!(
        edited.body["price"], "100",
        "absent fields keep their values"
    );
    assert_eq!(edited.body["note"], "fixed");
    let new_etag = edited.header("etag").expect("etag").to_owned();
    assert_ne!(new_etag, etag);
    patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"quantity": "3"}),
        Some(&etag),
    )
    .await
    .assert_problem(412, "PRECONDITION_FAILED");

    // Shrinking the buy below the later sell is refused, naming the sell; nothing changes.
    let short = patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"quantity": "0.5"}),
        None,
    )
    .await;
    short.assert_problem(422, "VALIDATION_ERROR");
    let message = short.body["errors"][0]["message"]
        .as_str()
        .expect("message");
    assert!(
        message.contains("sell of 0.6 at 2025-01-20T12:00:00Z"),
        "{message}"
    );
    // Moving the buy after the sell is refused too.
    patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"executed_at": "2025-01-25T12:00:00Z"}),
        None,
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    // So is moving it to another coin, which would leave bitcoin's sell short.
    let moved = patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"coin_id": "ethereum"}),
        None,
    )
    .await;
    moved.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(moved.error_fields(), vec!["coin_id"]);
    // And a sell edited beyond the holding names itself.
    let oversold = patch_transaction(
        &app,
        &user,
        &portfolio,
        &sell,
        json!({"quantity": "2.5"}),
        None,
    )
    .await;
    oversold.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(oversold.error_fields(), vec!["quantity"]);
    let unchanged = app.get_transaction(&user, &portfolio, &buy).await;
    assert_eq!(unchanged.body["quantity"], "2");
    assert_eq!(unchanged.header("etag"), Some(new_etag.as_str()));

    // Bad fields are 422s naming them; someone else's transaction is a 404.
    let bad = patch_transaction(
        &app,
        &user,
        &portfolio,
        &buy,
        json!({"quantity": "-1", "side": "short", "fee": 3}),
        None,
    )
    .await;
    bad.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(bad.error_fields().len(), 3, "{}", bad.body);
    let stranger = app.register("stranger").await;
    patch_transaction(
        &app,
        &stranger,
        &portfolio,
        &buy,
        json!({"quantity": "1"}),
        None,
    )
    .await
    .assert_problem(404, "NOT_FOUND");
}
