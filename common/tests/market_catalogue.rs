//! Price history without holes and the coin catalogue, against real Postgres and a fake
//! CoinGecko (a real HTTP server on loopback speaking the v3 shapes, counting calls, able to
//! fail on demand).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use common::market::catalogue;
use common::market::history::{self, Resolution, Span};
use common::market::{MarketConfig, PriceProvider, ProviderKind};
use poem::http::StatusCode;
use poem::web::{Data, Path, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use test_support::TestDatabase;

/// `newcoin` has prices from this instant on (it was "listed" then).
const LISTED: &str = "2026-10-10T00:00:00Z";

#[derive(Clone, Default)]
struct Fake {
    chart_calls: Arc<AtomicUsize>,
    list_calls: Arc<AtomicUsize>,
    down: Arc<AtomicBool>,
}

#[derive(serde::Deserialize)]
struct RangeQuery {
    from: i64,
    to: i64,
}

#[handler]
fn market_chart(fake: Data<&Fake>, Path(id): Path<String>, query: Query<RangeQuery>) -> Response {
    fake.chart_calls.fetch_add(1, Ordering::SeqCst);
    if fake.down.load(Ordering::SeqCst) {
        return "down"
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    assert_eq!(id, "newcoin");
    let listed = at(LISTED).timestamp();
    // Hourly, a few minutes past each hour, as CoinGecko answers ranges of 1–90 days.
    let prices: Vec<(i64, f64)> = (query.from / 3600..=query.to / 3600)
        .map(|hour| hour * 3600 + 120)
        .filter(|&secs| secs >= listed && secs >= query.from && secs <= query.to)
        .map(|secs| (secs * 1000, 2.5))
        .collect();
    poem::web::Json(serde_json::json!({ "prices": prices })).into_response()
}

#[handler]
fn coins_list(fake: Data<&Fake>) -> Response {
    fake.list_calls.fetch_add(1, Ordering::SeqCst);
    if fake.down.load(Ordering::SeqCst) {
        return "down"
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .into_response();
    }
    poem::web::Json(serde_json::json!([
        {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin"},
        {"id": "bitcoin-cash", "symbol": "bch", "name": "Bitcoin Cash"},
        {"id": "newcoin", "symbol": "new", "name": "New Coin"},
        {"id": "bitcoin", "symbol": "btc", "name": "Bitcoin (listed twice)"},
        {"id": "percent", "symbol": "pct", "name": "100% Coin"}
    ]))
    .into_response()
}

#[handler]
fn currencies() -> Response {
    poem::web::Json(serde_json::json!(["usd", "eur", "BTC"])).into_response()
}

fn at(text: &str) -> DateTime<Utc> {
    text.parse().expect("RFC 3339")
}

struct Setup {
    fake: Fake,
    provider: PriceProvider,
    pool: sqlx::PgPool,
    _db: TestDatabase,
}

async fn setup() -> Setup {
    let fake = Fake::default();
    let app = Route::new()
        .at("/api/v3/coins/list", get(coins_list))
        .at("/api/v3/coins/:id/market_chart/range", get(market_chart))
        .at("/api/v3/simple/supported_vs_currencies", get(currencies))
        .data(fake.clone());
    let addr = test_support::serve_on_loopback(app).await;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        market: MarketConfig,
    }
    let mut config = Cli::parse_from(["test"]).market;
    config.provider = ProviderKind::Coingecko;
    config.coingecko_base_url = format!("http://{addr}/api/v3");
    config.coingecko_max_attempts = 1;
    config.coingecko_calls_per_minute = 60_000;
    // A failure must not open the breaker: the test asks again right after one.
    config.coingecko_breaker_failures = 1_000;
    let provider = PriceProvider::from_config(&config, None).expect("provider");
    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    sqlx::query("INSERT INTO coins (id, symbol, name) VALUES ('newcoin', 'new', 'New Coin')")
        .execute(&pool)
        .await
        .expect("coin");
    Setup {
        fake,
        provider,
        pool,
        _db: db,
    }
}

#[tokio::test]
async fn a_span_before_listing_is_asked_once_then_reported_unavailable() {
    let setup = setup().await;
    let listed = at(LISTED);
    let (from, to) = (listed - TimeDelta::hours(5), listed + TimeDelta::hours(5));
    let ask = || {
        history::series(
            &setup.pool,
            &setup.provider,
            "newcoin",
            "usd",
            from,
            to,
            Utc::now(),
        )
    };
    let first = ask().await.expect("series");
    assert_eq!(first.resolution, Resolution::Hour);
    assert_eq!(setup.fake.chart_calls.load(Ordering::SeqCst), 1);
    // Hours 00:00 … 04:00 after listing, each at :02 (the hour `to` opens has no price
    // within the range, and is not a gap: it has not ended inside the range).
    assert_eq!(first.points.len(), 5, "{:?}", first.points);
    assert_eq!(first.points[0].at, listed + TimeDelta::minutes(2));
    assert_eq!(first.unavailable, vec![Span { from, to: listed }]);

    let second = ask().await.expect("series");
    assert_eq!(second, first, "the same answer");
    assert_eq!(
        setup.fake.chart_calls.load(Ordering::SeqCst),
        1,
        "a span already asked is not asked again"
    );

    // A wider range asks only for what it adds.
    let wider = history::series(
        &setup.pool,
        &setup.provider,
        "newcoin",
        "usd",
        from,
        to + TimeDelta::hours(3),
        Utc::now(),
    )
    .await
    .expect("series");
    assert_eq!(wider.points.len(), 8);
    assert_eq!(setup.fake.chart_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_failing_provider_leaves_gaps_unavailable_and_they_are_asked_again() {
    let setup = setup().await;
    let listed = at(LISTED);
    let (from, to) = (listed, listed + TimeDelta::hours(4));
    setup.fake.down.store(true, Ordering::SeqCst);
    let ask = || {
        history::series(
            &setup.pool,
            &setup.provider,
            "newcoin",
            "usd",
            from,
            to,
            Utc::now(),
        )
    };
    let down = ask().await.expect("a failing provider is not an error");
    assert!(down.points.is_empty());
    assert_eq!(down.unavailable, vec![Span { from, to }]);

    setup.fake.down.store(false, Ordering::SeqCst);
    let up = ask().await.expect("series");
    assert_eq!(up.points.len(), 4);
    assert!(up.unavailable.is_empty());
    assert_eq!(setup.fake.chart_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn the_catalogue_is_read_once_and_searched_by_prefix() {
    let setup = setup().await;
    let found = catalogue::search(&setup.pool, &setup.provider, Some("BIT"), 10, 0)
        .await
        .expect("search");
    let ids: Vec<&str> = found.coins.iter().map(|coin| coin.id.as_str()).collect();
    assert_eq!(ids, ["bitcoin", "bitcoin-cash"]);
    assert_eq!(found.total, 2);
    assert_eq!(
        found.coins[0].name, "Bitcoin",
        "the first listing of an id wins"
    );

    let by_symbol = catalogue::search(&setup.pool, &setup.provider, Some("bch"), 10, 0)
        .await
        .expect("search");
    assert_eq!(by_symbol.coins[0].id, "bitcoin-cash");
    let literal = catalogue::search(&setup.pool, &setup.provider, Some("100%"), 10, 0)
        .await
        .expect("search");
    assert_eq!(literal.total, 1);
    let wildcard = catalogue::search(&setup.pool, &setup.provider, Some("%"), 10, 0)
        .await
        .expect("search");
    assert_eq!(wildcard.total, 0, "`%` is not a wildcard");

    let codes = catalogue::currencies(&setup.pool, &setup.provider)
        .await
        .expect("currencies");
    assert_eq!(codes, ["usd", "eur", "btc"]);
    assert_eq!(setup.fake.list_calls.load(Ordering::SeqCst), 1, "read once");

    // A stale copy is kept when the provider fails.
    sqlx::query("UPDATE market_catalogues SET synced_at = now() - interval '2 days'")
        .execute(&setup.pool)
        .await
        .expect("age");
    setup.fake.down.store(true, Ordering::SeqCst);
    let stale = catalogue::search(&setup.pool, &setup.provider, Some("new"), 10, 0)
        .await
        .expect("the previous copy answers");
    assert_eq!(stale.coins[0].id, "newcoin");
    assert_eq!(setup.fake.list_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_catalogue_never_read_fails_while_the_provider_is_down() {
    let setup = setup().await;
    setup.fake.down.store(true, Ordering::SeqCst);
    let result = catalogue::search(&setup.pool, &setup.provider, None, 10, 0).await;
    assert!(
        matches!(result, Err(catalogue::CatalogueError::Provider(_))),
        "{result:?}"
    );
}
