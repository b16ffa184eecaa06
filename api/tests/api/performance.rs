//! A portfolio's performance over time, through the API, against a spreadsheet-style
//! reference computed here from the same stored prices.

use poem::http::StatusCode;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use crate::helpers::{TestApp, portfolio_path};

/// A coin of the test's own (the simulated provider does not know it, so its history is
/// exactly what the test stores, holes included).
async fn seed_history(app: &TestApp, coin: &str, prices: &[(u32, &str)]) {
    sqlx::query("INSERT INTO coins (id, symbol, name) VALUES ($1, $1, $1)")
        .bind(coin)
        .execute(&app.pool)
        .await
        .expect("coin");
    for (day, price) in prices {
        sqlx::query(
            "INSERT INTO price_history (coin_id, vs_currency, at, price, source)
             VALUES ($1, 'usd', $2::timestamptz, $3::numeric, 'test')",
        )
        .bind(coin)
        .bind(format!("2025-01-{day:02}T00:00:00Z"))
        .bind(price)
        .execute(&app.pool)
        .await
        .expect("price");
    }
}

fn dec(value: &Value) -> Decimal {
    value
        .as_str()
        .expect("a decimal string")
        .parse()
        .expect("decimal")
}

fn tx(coin: &str, side: &str, quantity: &str, price: &str, fee: &str, day: u32) -> Value {
    json!({"coin_id": coin, "side": side, "quantity": quantity, "price": price, "fee": fee,
           "executed_at": format!("2025-01-{day:02}T00:00:00Z")})
}

#[tokio::test]
async fn performance_matches_a_reference_computed_from_the_same_prices() {
    let app = TestApp::spawn().await;
    let user = app.register("investor").await;
    seed_history(
        &app,
        "perf-a",
        &[(1, "100"), (2, "110"), (3, "120"), (4, "130"), (5, "150")],
    )
    .await;
    // No price on day 2: while the portfolio holds none of it, that does not matter.
    seed_history(
        &app,
        "perf-b",
        &[(1, "10"), (3, "10"), (4, "12"), (5, "11")],
    )
    .await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Perf"}))
        .await
        .created_id();
    for body in [
        tx("perf-a", "buy", "1", "100", "1", 1),
        tx("perf-b", "buy", "2", "10", "0", 3),
        tx("perf-a", "sell", "0.5", "130", "1", 4),
    ] {
        let added = app.add_transaction(&user, &portfolio, body).await;
        assert_eq!(added.status, StatusCode::CREATED, "{}", added.body);
    }
    let path = format!(
        "{}/performance?from=2025-01-01T00:00:00Z&to=2025-01-05T00:00:00Z&interval=day",
        portfolio_path(&portfolio)
    );
    let reply = app.get(&path, Some(&user.access)).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = &reply.body;
    let points = body["points"].as_array().expect("points");
    assert_eq!(points.len(), 5);

    // The reference, as a spreadsheet would lay it out: holdings × prices per day, flows per
    // day (money in > 0), then chained sub-period returns.
    let price_a = [100, 110, 120, 130, 150].map(Decimal::from);
    let price_b = [10, 10, 10, 12, 11].map(Decimal::from); // day 2 unused (not held)
    let held_a = ["1", "1", "1", "0.5", "0.5"].map(|q| q.parse::<Decimal>().expect("q"));
    let held_b = [0, 0, 2, 2, 2].map(Decimal::from);
    let flows = ["101", "0", "20", "-64", "0"].map(|f| f.parse::<Decimal>().expect("f"));
    let values: Vec<Decimal> = (0..5)
        .map(|d| held_a[d] * price_a[d] + held_b[d] * price_b[d])
        .collect();
    let mut growth = Decimal::ONE;
    let mut contributions = Decimal::ZERO;
    for day in 0..5 {
        contributions += flows[day];
        if day > 0 {
            growth *= (values[day] - flows[day]) / values[day - 1];
        }
        let point = &points[day];
        assert_eq!(dec(&point["value"]), values[day], "day {}", day + 1);
        assert_eq!(
            dec(&point["net_contributions"]),
            contributions,
            "day {}",
            day + 1
        );
        let expected = ((growth - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(4);
        assert_eq!(
            dec(&point["cumulative_return_pct"]),
            expected,
            "day {}",
            day + 1
        );
    }
    let summary = &body["summary"];
    assert_eq!(
        dec(&summary["time_weighted_return_pct"]),
        Decimal::new(429_310, 4)
    );
    let range_flows: Decimal = flows[1..].iter().sum();
    assert_eq!(dec(&summary["pnl"]), values[4] - values[0] - range_flows);
    assert_eq!(dec(&summary["net_contributions"]), range_flows);
    assert!(
        summary["money_weighted_return_pct"].is_string(),
        "{summary}"
    );
    assert_eq!(summary["complete"], true);
    let holdings = body["holdings"].as_array().expect("holdings");
    assert_eq!(holdings[0]["coin_id"], "perf-a");
    assert_eq!(dec(&holdings[0]["pnl"]), Decimal::from(39));
    assert_eq!(dec(&holdings[1]["pnl"]), Decimal::from(2));
    assert_eq!(dec(&holdings[0]["contribution_pct"]), Decimal::new(325, 1));

    // The daily closes (read for midnight points) and the per-instant probe (hourly points)
    // agree wherever both look at the same instant.
    let hourly = app
        .get(
            &path.replace("interval=day", "interval=hour"),
            Some(&user.access),
        )
        .await;
    assert_eq!(hourly.status, StatusCode::OK, "{}", hourly.body);
    let hourly_points = hourly.body["points"].as_array().expect("points");
    assert_eq!(hourly_points.len(), 4 * 24 + 1);
    for (day, point) in points.iter().enumerate() {
        let same_instant = &hourly_points[day * 24];
        assert_eq!(same_instant["at"], point["at"]);
        assert_eq!(same_instant["value"], point["value"], "day {}", day + 1);
    }
}

#[tokio::test]
async fn a_missing_price_is_marked_and_a_benchmark_shares_the_points() {
    let app = TestApp::spawn().await;
    let user = app.register("gaps").await;
    seed_history(&app, "perf-gap", &[(1, "10"), (3, "12")]).await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Gaps"}))
        .await
        .created_id();
    app.add_transaction(&user, &portfolio, tx("perf-gap", "buy", "3", "10", "0", 1))
        .await;
    let base = portfolio_path(&portfolio);
    let reply = app
        .get(
            &format!("{base}/performance?from=2025-01-01T00:00:00Z&to=2025-01-03T00:00:00Z&benchmark=bitcoin"),
            Some(&user.access),
        )
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let points = reply.body["points"].as_array().expect("points");
    assert_eq!(points[1]["value"], Value::Null, "never invented");
    assert_eq!(points[1]["missing_prices"], json!(["perf-gap"]));
    assert_eq!(points[1]["cumulative_return_pct"], Value::Null);
    assert_eq!(dec(&points[2]["cumulative_return_pct"]), Decimal::from(20));
    assert_eq!(reply.body["summary"]["complete"], false);

    // The benchmark's return on the same points, from the stored history of bitcoin.
    let stored: Vec<Decimal> = sqlx::query_scalar(
        "SELECT price FROM price_history
         WHERE coin_id = 'bitcoin' AND vs_currency = 'usd' AND at IN ($1::timestamptz, $2::timestamptz)
         ORDER BY at",
    )
    .bind("2025-01-01T00:00:00Z")
    .bind("2025-01-03T00:00:00Z")
    .fetch_all(&app.pool)
    .await
    .expect("bitcoin history");
    assert_eq!(stored.len(), 2, "the benchmark's history was filled");
    let expected = ((stored[1] / stored[0] - Decimal::ONE) * Decimal::ONE_HUNDRED).round_dp(4);
    assert_eq!(
        dec(&reply.body["summary"]["benchmark_return_pct"]),
        expected
    );
    assert_eq!(reply.body["benchmark"], "bitcoin");
}

#[tokio::test]
async fn performance_is_validated_and_private() {
    let app = TestApp::spawn().await;
    let user = app.register("owner").await;
    let portfolio = app
        .create_portfolio(&user, json!({"name": "Mine"}))
        .await
        .created_id();
    let base = format!("{}/performance", portfolio_path(&portfolio));
    let empty = app.get(&base, Some(&user.access)).await;
    assert_eq!(empty.status, StatusCode::OK, "{}", empty.body);
    assert_eq!(empty.body["interval"], "day");
    for (query, field) in [
        ("from=2025-01-05T00:00:00Z&to=2025-01-01T00:00:00Z", "from"),
        (
            "from=2020-01-01T00:00:00Z&to=2025-01-01T00:00:00Z&interval=hour",
            "from",
        ),
        ("interval=minute", "interval"),
        ("benchmark=Not%20A%20Coin", "benchmark"),
        ("benchmark=no-such-coin", "benchmark"),
    ] {
        let reply = app
            .get(&format!("{base}?{query}"), Some(&user.access))
            .await;
        reply.assert_problem(422, "VALIDATION_ERROR");
        assert_eq!(reply.error_fields(), vec![field], "{query}: {}", reply.body);
    }
    let stranger = app.register("stranger").await;
    app.get(&base, Some(&stranger.access))
        .await
        .assert_problem(404, "NOT_FOUND");
}
