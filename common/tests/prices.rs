//! The prices service's rule against real Postgres and Redis and a fake CoinGecko (a real HTTP
//! server on loopback that can be told to fail or to hang): cache, then a fresh stored price,
//! then the provider, else the older stored price marked stale.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use clap::Parser;
use common::market::{MarketConfig, PriceProvider, ProviderKind};
use common::prices::{PriceError, Prices};
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use test_support::{TestDatabase, redis_client};

/// How the fake answers, besides normally (0): with a 503, or not within the service's wait.
const DOWN: usize = 1;
const HANGING: usize = 2;
/// Answers once the test opens `gate`.
const GATED: usize = 3;

#[derive(Clone)]
struct Fake {
    mode: Arc<AtomicUsize>,
    calls: Arc<AtomicUsize>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl Default for Fake {
    fn default() -> Self {
        Self {
            mode: Arc::default(),
            calls: Arc::default(),
            gate: Arc::new(tokio::sync::Semaphore::new(0)),
        }
    }
}

#[derive(serde::Deserialize)]
struct MarketsQuery {
    ids: Option<String>,
}

#[handler]
async fn markets(fake: Data<&Fake>, query: Query<MarketsQuery>) -> Response {
    fake.calls.fetch_add(1, Ordering::SeqCst);
    match fake.mode.load(Ordering::SeqCst) {
        DOWN => {
            return "down"
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .into_response();
        }
        HANGING => tokio::time::sleep(Duration::from_secs(30)).await,
        GATED => fake.gate.acquire().await.expect("gate open").forget(),
        _ => {}
    }
    let rows: Vec<serde_json::Value> = query
        .ids
        .clone()
        .unwrap_or_default()
        .split(',')
        .filter(|id| !id.starts_with("unknown"))
        .map(|id| {
            serde_json::json!({
                "id": id, "symbol": id, "name": id, "current_price": 42.5,
                "market_cap": 1000.0, "market_cap_rank": 1, "total_volume": 10.0,
                "price_change_percentage_24h": 2.5, "last_updated": "2026-11-21T10:00:00.000Z"
            })
        })
        .collect();
    poem::web::Json(rows).into_response()
}

struct Setup {
    /// Waits long for the provider: a busy machine's slow answer still counts as an answer.
    prices: Prices,
    /// The same service waiting only 300 ms, for the provider that never answers.
    impatient: Prices,
    fake: Fake,
    pool: sqlx::PgPool,
    _db: TestDatabase,
}

async fn setup(max_age: &str) -> Setup {
    let fake = Fake::default();
    let app = Route::new()
        .at("/api/v3/coins/markets", get(markets))
        .data(fake.clone());
    let addr = test_support::serve_on_loopback(app).await;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        market: MarketConfig,
    }
    let config = |wait: &str| {
        let mut config = Cli::parse_from([
            "test",
            "--price-max-age",
            max_age,
            "--price-provider-wait",
            wait,
            "--price-cache-ttl",
            "1h",
        ])
        .market;
        config.provider = ProviderKind::Coingecko;
        config.coingecko_base_url = format!("http://{addr}/api/v3");
        config.coingecko_max_attempts = 1;
        config.coingecko_calls_per_minute = 60_000;
        config
    };

    let db = TestDatabase::create().await;
    let pool = db.pool().await;
    let redis = redis_client();
    let service = |config: MarketConfig| {
        let provider = PriceProvider::from_config(&config, None).expect("provider");
        Prices::from_config(pool.clone(), redis.clone(), Arc::new(provider), &config)
    };
    Setup {
        prices: service(config("60s")),
        impatient: service(config("300ms")),
        fake,
        pool,
        _db: db,
    }
}

fn coins(ids: &[&str]) -> Vec<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

#[tokio::test]
async fn a_read_asks_the_provider_once_then_the_cache_answers() {
    let setup = setup("2m").await;
    let first = setup
        .prices
        .latest("bitcoin", "usd")
        .await
        .expect("a price")
        .expect("a known coin");
    assert_eq!(first.price.to_string(), "42.5");
    assert!(!first.stale);
    let again = setup
        .prices
        .latest("bitcoin", "usd")
        .await
        .expect("a price");
    assert_eq!(again, Some(first));
    assert_eq!(
        setup.fake.calls.load(Ordering::SeqCst),
        1,
        "the second read was cached"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM latest_prices")
        .fetch_one(&setup.pool)
        .await
        .expect("count");
    assert_eq!(stored, 1, "the provider's quote was stored");

    assert_eq!(
        setup
            .prices
            .latest("unknown-coin", "usd")
            .await
            .expect("no error"),
        None,
        "a coin the provider does not know has no price"
    );
}

#[tokio::test]
async fn a_provider_that_is_down_or_slow_gets_the_stored_price_marked_stale() {
    let setup = setup("2m").await;
    let fresh = setup
        .prices
        .latest_many(&coins(&["bitcoin", "ethereum"]), "usd")
        .await
        .expect("prices");
    assert_eq!(fresh.prices.len(), 2);
    assert_eq!(fresh.unavailable, None);
    // Both stored prices grow old, and the cache forgets them.
    sqlx::query("UPDATE latest_prices SET fetched_at = now() - interval '1 hour'")
        .execute(&setup.pool)
        .await
        .expect("age the prices");
    setup.prices.cache().clear().await.expect("clear the cache");

    for mode in [DOWN, HANGING] {
        setup.fake.mode.store(mode, Ordering::SeqCst);
        let found = setup
            .impatient
            .latest_many(&coins(&["bitcoin", "ethereum", "solana"]), "usd")
            .await
            .expect("stored prices stand in for the provider");
        assert!(found.unavailable.is_some(), "mode {mode}");
        assert!(found.prices["bitcoin"].stale && found.prices["ethereum"].stale);
        assert!(
            !found.prices.contains_key("solana"),
            "never stored, so no price"
        );
        let single = setup.impatient.latest("solana", "usd").await;
        assert!(
            matches!(single, Err(PriceError::Unavailable(_))),
            "mode {mode}: {single:?}"
        );
    }
}

#[tokio::test]
async fn concurrent_misses_for_one_coin_make_one_upstream_call() {
    let setup = setup("2m").await;
    setup.fake.mode.store(GATED, Ordering::SeqCst);
    let lookups: Vec<_> = (0..20)
        .map(|i| {
            let prices = setup.prices.clone();
            // Half ask for bitcoin alone, half for bitcoin and ethereum: each coin is asked
            // for once, whoever asks first.
            let wanted = if i % 2 == 0 {
                coins(&["bitcoin"])
            } else {
                coins(&["bitcoin", "ethereum"])
            };
            tokio::spawn(async move { prices.latest_many(&wanted, "usd").await })
        })
        .collect();
    test_support::wait_until(
        "every lookup waiting on a provider call",
        Duration::from_secs(10),
        || async { setup.prices.lookups_waiting() >= 20 },
    )
    .await;
    setup.fake.gate.add_permits(100);
    for lookup in lookups {
        let found = lookup.await.expect("task").expect("prices");
        assert!(found.unavailable.is_none());
        assert_eq!(found.prices["bitcoin"].price.to_string(), "42.5");
    }
    let calls = setup.fake.calls.load(Ordering::SeqCst);
    assert!(
        calls <= 2,
        "bitcoin asked for once, ethereum once (possibly in the same call): {calls} calls"
    );
}
