//! Market data endpoints with the simulated provider.

use poem::http::{Method, StatusCode};
use rust_decimal::Decimal;

use crate::helpers::TestApp;

#[tokio::test]
async fn a_price_is_a_decimal_string_with_provenance_and_is_cached() {
    let app = TestApp::spawn().await;
    let first = app.get("/api/v1/crypto/prices/bitcoin", None).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    assert_eq!(first.body["coin_id"], "bitcoin");
    assert_eq!(first.body["symbol"], "btc");
    assert_eq!(first.body["vs_currency"], "usd");
    assert_eq!(first.body["source"], "simulated");
    let price: Decimal = first.body["price"]
        .as_str()
        .expect("price is a string")
        .parse()
        .expect("decimal");
    assert!(price > Decimal::ZERO);
    assert!(first.body["market_cap"].is_string());

    let second = app.get("/api/v1/crypto/prices/bitcoin", None).await;
    assert_eq!(second.body["price"], first.body["price"]);

    let admin = app.admin("admin").await;
    let stats = app
        .get("/api/v1/admin/cache/stats", Some(&admin.access))
        .await;
    assert_eq!(stats.status, StatusCode::OK, "{}", stats.body);
    assert_eq!(stats.body["hits"], 1);
    assert_eq!(stats.body["misses"], 1);
    assert_eq!(stats.body["keys"], 1);
    assert_eq!(stats.body["hit_ratio"], 0.5);

    let stored: i64 =
        sqlx::query_scalar("SELECT count(*) FROM latest_prices WHERE coin_id = 'bitcoin'")
            .fetch_one(&app.pool)
            .await
            .expect("count");
    assert_eq!(stored, 1, "the fetched price was stored");
}

#[tokio::test]
async fn bad_and_unknown_coins_are_problems() {
    let app = TestApp::spawn().await;
    app.get("/api/v1/crypto/prices/no-such-coin", None)
        .await
        .assert_problem(404, "NOT_FOUND");
    let bad = app.get("/api/v1/crypto/prices/BTC!", None).await;
    bad.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(bad.error_fields(), vec!["coin_id"]);
    let currency = app
        .get("/api/v1/crypto/prices/bitcoin?vs_currency=xyz", None)
        .await;
    currency.assert_problem(422, "VALIDATION_ERROR");
    assert_eq!(currency.error_fields(), vec!["vs_currency"]);
    let coins: i64 = sqlx::query_scalar("SELECT count(*) FROM coins")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(coins, 0, "failed lookups store nothing");
}

#[tokio::test]
async fn popular_lists_the_largest_coins_first() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/v1/crypto/popular?limit=5", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let items = reply.body.as_array().expect("array");
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["coin_id"], "bitcoin");
    let caps: Vec<Decimal> = items
        .iter()
        .map(|item| {
            item["market_cap"]
                .as_str()
                .expect("cap")
                .parse()
                .expect("decimal")
        })
        .collect();
    assert!(caps.windows(2).all(|w| w[0] >= w[1]), "{caps:?}");
    for limit in ["0", "101", "x"] {
        app.get(&format!("/api/v1/crypto/popular?limit={limit}"), None)
            .await
            .assert_problem(422, "VALIDATION_ERROR");
    }
}

#[tokio::test]
async fn history_covers_the_range_and_validates_it() {
    let app = TestApp::spawn().await;
    let reply = app
        .get(
            "/api/v1/crypto/ethereum/history?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let points = reply.body["points"].as_array().expect("points");
    assert_eq!(points.len(), 25, "hourly, both ends included");
    assert_eq!(reply.body["resolution"], "hour");
    assert_eq!(reply.body["unavailable"], serde_json::json!([]));
    let first: chrono::DateTime<chrono::Utc> =
        points[0]["at"].as_str().expect("at").parse().expect("time");
    assert_eq!(first.to_rfc3339(), "2026-11-01T00:00:00+00:00");
    assert!(points[0]["price"].is_string());

    let again = app
        .get(
            "/api/v1/crypto/ethereum/history?from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(
        again.body["points"], reply.body["points"],
        "stored history is served"
    );

    let reversed = app
        .get(
            "/api/v1/crypto/ethereum/history?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
            None,
        )
        .await;
    reversed.assert_problem(422, "VALIDATION_ERROR");
    app.get(
        "/api/v1/crypto/ethereum/history?from=2024-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        None,
    )
    .await
    .assert_problem(422, "VALIDATION_ERROR");
    app.get("/api/v1/crypto/ethereum/history?from=yesterday", None)
        .await
        .assert_problem(422, "VALIDATION_ERROR");
    app.get("/api/v1/crypto/no-such-coin/history", None)
        .await
        .assert_problem(404, "NOT_FOUND");
}

#[tokio::test]
async fn only_admins_see_and_clear_the_cache() {
    let app = TestApp::spawn().await;
    let user = app.register("user").await;
    app.get("/api/v1/admin/cache/stats", Some(&user.access))
        .await
        .assert_problem(403, "FORBIDDEN");
    app.call(
        Method::DELETE,
        "/api/v1/admin/cache",
        Some(&user.access),
        None,
    )
    .await
    .assert_problem(403, "FORBIDDEN");

    let admin = app.admin("admin").await;
    for coin in ["bitcoin", "ethereum", "solana"] {
        assert_eq!(
            app.get(&format!("/api/v1/crypto/prices/{coin}"), None)
                .await
                .status,
            200
        );
    }
    let cleared = app
        .call(
            Method::DELETE,
            "/api/v1/admin/cache",
            Some(&admin.access),
            None,
        )
        .await;
    assert_eq!(cleared.status, StatusCode::OK, "{}", cleared.body);
    assert_eq!(cleared.body["deleted"], 3);
    let stats = app
        .get("/api/v1/admin/cache/stats", Some(&admin.access))
        .await;
    assert_eq!(stats.body["keys"], 0);
    assert_eq!(stats.body["hits"], 0);
}

#[tokio::test]
async fn prices_are_served_while_redis_is_down() {
    let dead_port = test_support::free_port();
    let app = TestApp::spawn_with(|config| {
        config.common.redis.url = format!("redis://127.0.0.1:{dead_port}").as_str().into();
        config.common.redis.timeout = std::time::Duration::from_millis(200);
    })
    .await;
    let reply = app.get("/api/v1/crypto/prices/bitcoin", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
}

fn hours_between(points: &[serde_json::Value]) -> Vec<i64> {
    let instants: Vec<chrono::DateTime<chrono::Utc>> = points
        .iter()
        .map(|point| point["at"].as_str().expect("at").parse().expect("time"))
        .collect();
    instants
        .windows(2)
        .map(|pair| (pair[1] - pair[0]).num_seconds())
        .collect()
}

#[tokio::test]
async fn history_has_no_holes_whatever_was_asked_before() {
    let app = TestApp::spawn().await;
    // An older day first: it must not make the default range look complete.
    let day_of = |days_ago: i64| {
        (chrono::Utc::now() - chrono::Duration::days(days_ago)).format("%Y-%m-%dT00:00:00Z")
    };
    let day = app
        .get(
            &format!(
                "/api/v1/crypto/bitcoin/history?from={}&to={}",
                day_of(10),
                day_of(9)
            ),
            None,
        )
        .await;
    assert_eq!(day.status, StatusCode::OK, "{}", day.body);

    let week = app.get("/api/v1/crypto/bitcoin/history", None).await;
    assert_eq!(week.status, StatusCode::OK, "{}", week.body);
    let points = week.body["points"].as_array().expect("points");
    // Seven days from a `from` that is not on the hour: 168 hours, the one in progress maybe
    // not yet priced.
    assert!((167..=169).contains(&points.len()), "{}", points.len());
    assert!(
        hours_between(points).iter().all(|&gap| gap <= 3_600),
        "no hole wider than an hour"
    );
    assert_eq!(week.body["unavailable"], serde_json::json!([]));

    // A range the store only partly holds is completed, and asking again changes nothing.
    let month = "/api/v1/crypto/bitcoin/history?from=2026-10-01T00:00:00Z&to=2026-10-31T00:00:00Z";
    let first = app.get(month, None).await;
    assert_eq!(
        first.body["points"].as_array().expect("points").len(),
        30 * 24 + 1
    );
    let again = app.get(month, None).await;
    assert_eq!(again.body["points"], first.body["points"]);
}

#[tokio::test]
async fn long_ranges_are_daily() {
    let app = TestApp::spawn().await;
    let reply = app
        .get(
            "/api/v1/crypto/ethereum/history?from=2025-06-01T00:00:00Z&to=2025-12-31T00:00:00Z&vs_currency=EUR",
            None,
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["resolution"], "day");
    assert_eq!(reply.body["vs_currency"], "eur");
    let points = reply.body["points"].as_array().expect("points");
    assert_eq!(points.len(), 214, "every day from June 1 to December 31");
    assert!(hours_between(points).iter().all(|&gap| gap == 86_400));
    assert_eq!(reply.body["unavailable"], serde_json::json!([]));
}

#[tokio::test]
async fn coins_can_be_found_by_id_symbol_or_name() {
    let app = TestApp::spawn().await;
    let all = app.get("/api/v1/crypto/coins?per_page=5", None).await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["items"][0]["id"], "bitcoin");
    assert_eq!(all.body["items"][0]["rank"], 1);
    assert_eq!(all.body["items"].as_array().expect("items").len(), 5);
    assert!(all.body["total"].as_u64().expect("total") >= 90);

    let by_symbol = app.get("/api/v1/crypto/coins?search=ETH", None).await;
    assert_eq!(
        by_symbol.body["items"][0]["id"], "ethereum",
        "{}",
        by_symbol.body
    );
    let by_name = app.get("/api/v1/crypto/coins?search=bitc", None).await;
    let ids: Vec<&str> = by_name.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|coin| coin["id"].as_str().expect("id"))
        .collect();
    assert!(ids.contains(&"bitcoin"), "{ids:?}");
    assert!(ids.iter().all(|id| id.starts_with("bitc")), "{ids:?}");

    let none = app.get("/api/v1/crypto/coins?search=%25", None).await;
    assert_eq!(none.status, StatusCode::OK);
    assert_eq!(none.body["total"], 0, "a wildcard is taken literally");

    let page_two = app
        .get("/api/v1/crypto/coins?per_page=5&page=2", None)
        .await;
    assert_eq!(page_two.body["page"], 2);
    assert_ne!(page_two.body["items"][0]["id"], "bitcoin");
    for bad in ["page=0", "per_page=101", "search=%00"] {
        app.get(&format!("/api/v1/crypto/coins?{bad}"), None)
            .await
            .assert_problem(422, "VALIDATION_ERROR");
    }
    let synced: i64 = sqlx::query_scalar("SELECT count(*) FROM market_catalogues")
        .fetch_one(&app.pool)
        .await
        .expect("count");
    assert_eq!(synced, 1, "the catalogue is read once");
}

#[tokio::test]
async fn every_advertised_currency_is_served() {
    let app = TestApp::spawn().await;
    let reply = app.get("/api/v1/crypto/currencies", None).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.body["provider"], "simulated");
    let currencies: Vec<String> = reply.body["currencies"]
        .as_array()
        .expect("currencies")
        .iter()
        .map(|code| code.as_str().expect("code").to_owned())
        .collect();
    assert!(currencies.contains(&"eur".to_owned()), "{currencies:?}");
    let usd: Decimal = app.get("/api/v1/crypto/prices/bitcoin", None).await.body["price"]
        .as_str()
        .expect("price")
        .parse()
        .expect("decimal");
    for code in &currencies {
        let price = app
            .get(
                &format!("/api/v1/crypto/prices/bitcoin?vs_currency={code}"),
                None,
            )
            .await;
        assert_eq!(price.status, StatusCode::OK, "{code}: {}", price.body);
        assert_eq!(price.body["vs_currency"], code.as_str());
    }
    let eur: Decimal = app
        .get("/api/v1/crypto/prices/bitcoin?vs_currency=eur", None)
        .await
        .body["price"]
        .as_str()
        .expect("price")
        .parse()
        .expect("decimal");
    // The documented fixed rate (0.92 EUR per USD); the two reads may fall in different minutes.
    let ratio = eur / usd;
    assert!(
        ratio > Decimal::new(85, 2) && ratio < Decimal::new(99, 2),
        "{ratio}"
    );
}
