//! The CoinGecko client against a fake CoinGecko: a real HTTP server on loopback that speaks
//! the v3 API's shapes, records every request and can be told to fail.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use common::market::{Budget, CoinGecko, MarketConfig, ProviderError};
use common::redis::Redis;
use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};

/// What the fake saw.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    ids: Option<String>,
    demo_key: Option<String>,
}

/// Responses to give before answering normally: (status, Retry-After, body).
type Script = VecDeque<(u16, Option<&'static str>, &'static str)>;

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Mutex<Script>>,
}

#[derive(serde::Deserialize)]
struct MarketsQuery {
    ids: Option<String>,
    vs_currency: String,
}

#[handler]
fn markets(fake: Data<&Fake>, query: Query<MarketsQuery>, req: &poem::Request) -> Response {
    fake.seen.lock().expect("lock").push(Seen {
        at: Instant::now(),
        ids: query.ids.clone(),
        demo_key: req
            .headers()
            .get("x-cg-demo-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    });
    if let Some((status, retry_after, body)) = fake.script.lock().expect("lock").pop_front() {
        let mut response = body
            .with_status(StatusCode::from_u16(status).expect("status"))
            .into_response();
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert("retry-after", seconds.parse().expect("header"));
        }
        return response;
    }
    assert_eq!(query.vs_currency, "usd");
    let ids = query.ids.clone().unwrap_or_default();
    let rows: Vec<serde_json::Value> = ids
        .split(',')
        .filter(|id| !id.starts_with("unknown"))
        .enumerate()
        .map(|(i, id)| {
            serde_json::json!({
                "id": id, "symbol": id, "name": id, "current_price": 1.5 + i as f64,
                "market_cap": 1000.0, "market_cap_rank": i + 1, "total_volume": 10.0,
                "price_change_percentage_24h": 2.5, "last_updated": "2026-11-21T10:00:00.000Z"
            })
        })
        .collect();
    poem::web::Json(rows).into_response()
}

async fn start_fake(fake: Fake) -> String {
    let app = Route::new()
        .at("/api/v3/coins/markets", get(markets))
        .data(fake);
    format!(
        "http://{}/api/v3",
        test_support::serve_on_loopback(app).await
    )
}

fn config(base_url: &str) -> MarketConfig {
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        market: MarketConfig,
    }
    let mut market = Cli::parse_from(["test"]).market;
    market.coingecko_base_url = base_url.to_owned();
    market.coingecko_api_key = Some("demo-key-123".into());
    market.coingecko_timeout = Duration::from_secs(5);
    market.coingecko_max_attempts = 3;
    market
}

fn client(base_url: &str, budget: Budget) -> CoinGecko {
    CoinGecko::new(&config(base_url), budget).expect("client")
}

fn unlimited() -> Budget {
    Budget::new("test", 60_000, 1_000, None)
}

fn ids(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("coin-{i}")).collect()
}

#[tokio::test]
async fn two_hundred_fifty_ids_take_one_call_and_more_take_two() {
    let fake = Fake::default();
    let base = start_fake(fake.clone()).await;
    let gecko = client(&base, unlimited());

    let batch = gecko.markets(&ids(250), "usd").await.expect("quotes");
    assert_eq!(batch.quotes.len(), 250);
    assert!(batch.missing.is_empty());
    assert_eq!(
        fake.seen.lock().expect("lock").len(),
        1,
        "one upstream call for 250 ids"
    );

    let batch = gecko.markets(&ids(251), "usd").await.expect("quotes");
    assert_eq!(batch.quotes.len(), 251);
    let seen = fake.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 3);
    assert_eq!(seen[2].ids.as_deref(), Some("coin-250"));
    assert_eq!(seen[0].demo_key.as_deref(), Some("demo-key-123"));
}

#[tokio::test]
async fn unknown_ids_are_reported_missing_not_failed() {
    let fake = Fake::default();
    let base = start_fake(fake.clone()).await;
    let batch = client(&base, unlimited())
        .markets(&["bitcoin".into(), "unknown-coin".into()], "usd")
        .await
        .expect("quotes");
    assert_eq!(batch.quotes.len(), 1);
    assert_eq!(batch.missing, vec!["unknown-coin".to_owned()]);
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_retried() {
    let fake = Fake::default();
    fake.script.lock().expect("lock").push_back((
        429,
        Some("1"),
        r#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#,
    ));
    let base = start_fake(fake.clone()).await;
    let batch = client(&base, unlimited())
        .markets(&["bitcoin".into()], "usd")
        .await
        .expect("quotes after the retry");
    assert_eq!(batch.quotes.len(), 1);
    let seen = fake.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen[1].at.duration_since(seen[0].at) >= Duration::from_millis(990),
        "the retry honoured Retry-After: {:?}",
        seen[1].at.duration_since(seen[0].at)
    );
}

#[tokio::test]
async fn an_html_429_that_persists_ends_as_rate_limited() {
    let fake = Fake::default();
    for _ in 0..3 {
        fake.script.lock().expect("lock").push_back((
            429,
            Some("0"),
            "<html><body>Too Many Requests</body></html>",
        ));
    }
    let base = start_fake(fake.clone()).await;
    let result = client(&base, unlimited())
        .markets(&["bitcoin".into()], "usd")
        .await;
    assert!(
        matches!(result, Err(ProviderError::RateLimited { .. })),
        "{result:?}"
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 3, "max attempts");
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_are_not() {
    let fake = Fake::default();
    fake.script
        .lock()
        .expect("lock")
        .push_back((502, None, "bad gateway"));
    let base = start_fake(fake.clone()).await;
    let gecko = client(&base, unlimited());
    assert_eq!(
        gecko
            .markets(&["bitcoin".into()], "usd")
            .await
            .expect("quotes")
            .quotes
            .len(),
        1
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 2);

    fake.script
        .lock()
        .expect("lock")
        .push_back((400, None, r#"{"error":"invalid vs_currency"}"#));
    let result = gecko.markets(&["bitcoin".into()], "usd").await;
    match result {
        Err(ProviderError::Upstream {
            status: 400,
            message,
        }) => assert_eq!(message, "invalid vs_currency"),
        other => panic!("expected a 400, got {other:?}"),
    }
    assert_eq!(fake.seen.lock().expect("lock").len(), 3, "no retry on 400");
}

#[tokio::test]
async fn the_budget_holds_across_processes_sharing_redis() {
    let fake = Fake::default();
    let base = start_fake(fake.clone()).await;
    let mut redis_config = config(&base);
    redis_config.coingecko_calls_per_minute = 600;
    let prefix = test_support::redis_prefix();
    let shared = |prefix: &str| {
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            redis: common::config::RedisConfig,
        }
        let mut cli = Cli::parse_from(["test"]);
        cli.redis.url = test_support::redis_url().as_str().into();
        cli.redis.key_prefix = prefix.to_owned();
        Redis::new(&cli.redis).expect("redis")
    };
    // Two clients with their own local limiters, as two worker processes would have, sharing
    // one Redis budget of 600 calls per minute (one per 100 ms, no burst).
    let a = client(
        &base,
        Budget::new("coingecko", 600, 1, Some(shared(&prefix))),
    );
    let b = client(
        &base,
        Budget::new("coingecko", 600, 1, Some(shared(&prefix))),
    );
    let one = vec!["bitcoin".to_owned()];
    let run = |gecko: CoinGecko, one: Vec<String>| async move {
        for _ in 0..5 {
            gecko.markets(&one, "usd").await.expect("quotes");
        }
    };
    tokio::join!(run(a, one.clone()), run(b, one.clone()));
    let seen = fake.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 10);
    let span = seen[9].at.duration_since(seen[0].at);
    // Ten calls at one per 100 ms span at least 900 ms, whichever process made them; each
    // process alone would have allowed 5 in 400 ms, so both together 10 in 400 ms.
    assert!(
        span >= Duration::from_millis(850),
        "ten calls took only {span:?}"
    );
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_not_called_until_the_breaker_cools_down() {
    let fake = Fake::default();
    for _ in 0..2 {
        fake.script
            .lock()
            .expect("lock")
            .push_back((502, None, "bad gateway"));
    }
    let base = start_fake(fake.clone()).await;
    let mut settings = config(&base);
    settings.coingecko_max_attempts = 2;
    settings.coingecko_breaker_failures = 2;
    settings.coingecko_breaker_cooldown = Duration::from_millis(300);
    let gecko = CoinGecko::new(&settings, unlimited()).expect("client");

    // Two failures in a row open the breaker; the call reports the provider's own error.
    let first = gecko.markets(&["bitcoin".into()], "usd").await;
    assert!(
        matches!(first, Err(ProviderError::Upstream { status: 502, .. })),
        "{first:?}"
    );
    assert_eq!(fake.seen.lock().expect("lock").len(), 2);
    // While open, calls fail at once without reaching the provider.
    let refused = gecko.markets(&["bitcoin".into()], "usd").await;
    let Err(ProviderError::CircuitOpen { retry_in }) = refused else {
        panic!("expected the breaker to refuse, got {refused:?}");
    };
    assert!(ProviderError::CircuitOpen { retry_in }.is_transient());
    assert_eq!(fake.seen.lock().expect("lock").len(), 2);

    assert!(retry_in <= Duration::from_millis(300));
    // After the cooldown one probe goes out; the provider has recovered, so calls flow again.
    test_support::wait_until(
        "the breaker to let a probe through",
        Duration::from_secs(10),
        || async { gecko.markets(&["bitcoin".into()], "usd").await.is_ok() },
    )
    .await;
    gecko
        .markets(&["ethereum".into()], "usd")
        .await
        .expect("closed again");
    assert_eq!(fake.seen.lock().expect("lock").len(), 4);
}
