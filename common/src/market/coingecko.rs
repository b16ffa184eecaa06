//! The CoinGecko v3 client.
//!
//! - ids are batched: `/coins/markets` takes up to 250 ids per call;
//! - every call waits for the shared [`Budget`] first;
//! - `429` and `5xx` are retried with exponential backoff, honouring `Retry-After`;
//! - a [`Breaker`] stops calling a provider that keeps failing, for a cooldown;
//! - bodies are parsed defensively: a 429 can be JSON `{status: {error_message}}` or an HTML
//!   page, and a quote with a missing price is reported as missing rather than failing all.

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
use rust_decimal::Decimal;
use serde::Deserialize;
use tracing::Instrument;

use super::breaker::Breaker;
use super::budget::Budget;
use super::{CoinInfo, MarketBatch, MarketConfig, PricePoint, ProviderError, Quote};

/// The public (keyless or demo key) API.
pub const PUBLIC_BASE_URL: &str = "https://api.coingecko.com/api/v3";
/// Ids per `/coins/markets` call.
pub const MAX_IDS_PER_CALL: usize = 250;
/// Longest `Retry-After` we are willing to sleep through inside one call.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// First backoff step for failures without `Retry-After`.
const BASE_BACKOFF: Duration = Duration::from_millis(250);
const PROVIDER: &str = "coingecko";

/// A CoinGecko API client.
#[derive(Debug, Clone)]
pub struct CoinGecko {
    http: reqwest::Client,
    base_url: String,
    budget: Budget,
    breaker: Breaker,
    max_attempts: u32,
}

impl CoinGecko {
    /// Builds the client; the key header (demo or pro) follows from the base URL.
    pub fn new(config: &MarketConfig, budget: Budget) -> Result<Self, ProviderError> {
        crate::tls::install_crypto_provider();
        let mut headers = HeaderMap::new();
        headers.insert("accept", HeaderValue::from_static("application/json"));
        if let Some(key) = &config.coingecko_api_key {
            let name = key_header(&config.coingecko_base_url);
            let mut value = HeaderValue::from_str(key.expose()).map_err(|_| {
                ProviderError::Malformed("COINGECKO_API_KEY is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("coinpulse/", env!("CARGO_PKG_VERSION")))
            .timeout(config.coingecko_timeout)
            .connect_timeout(config.coingecko_timeout.min(Duration::from_secs(5)))
            .build()
            .map_err(|err| ProviderError::Transport(err.to_string()))?;
        Ok(Self {
            http,
            base_url: config.coingecko_base_url.trim_end_matches('/').to_owned(),
            budget,
            breaker: Breaker::new(
                PROVIDER,
                config.coingecko_breaker_failures,
                config.coingecko_breaker_cooldown,
            ),
            max_attempts: config.coingecko_max_attempts.max(1),
        })
    }

    /// Quotes for `ids` in `vs`, in as few calls as the API allows.
    pub async fn markets(&self, ids: &[String], vs: &str) -> Result<MarketBatch, ProviderError> {
        let mut batch = MarketBatch::default();
        for chunk in ids.chunks(MAX_IDS_PER_CALL) {
            let per_page = chunk.len().to_string();
            let joined = chunk.join(",");
            let rows: Vec<MarketRow> = self
                .get_json(
                    "/coins/markets",
                    &[
                        ("vs_currency", vs),
                        ("ids", &joined),
                        ("per_page", &per_page),
                        ("page", "1"),
                        ("price_change_percentage", "24h"),
                    ],
                )
                .await?;
            let mut quoted = std::collections::HashSet::new();
            for row in rows {
                if let Some(quote) = row.into_quote() {
                    quoted.insert(quote.id.clone());
                    batch.quotes.push(quote);
                }
            }
            batch
                .missing
                .extend(chunk.iter().filter(|id| !quoted.contains(*id)).cloned());
        }
        Ok(batch)
    }

    /// The `limit` (≤ 250) largest coins by market capitalisation.
    pub async fn top(&self, limit: usize, vs: &str) -> Result<Vec<Quote>, ProviderError> {
        let per_page = limit.clamp(1, MAX_IDS_PER_CALL).to_string();
        let rows: Vec<MarketRow> = self
            .get_json(
                "/coins/markets",
                &[
                    ("vs_currency", vs),
                    ("order", "market_cap_desc"),
                    ("per_page", &per_page),
                    ("page", "1"),
                ],
            )
            .await?;
        Ok(rows.into_iter().filter_map(MarketRow::into_quote).collect())
    }

    /// Prices of `id` between `from` and `to` (CoinGecko picks the granularity).
    pub async fn history(
        &self,
        id: &str,
        vs: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PricePoint>, ProviderError> {
        let path = format!("/coins/{id}/market_chart/range");
        let from = from.timestamp().to_string();
        let to = to.timestamp().to_string();
        let chart: MarketChart = self
            .get_json(&path, &[("vs_currency", vs), ("from", &from), ("to", &to)])
            .await
            .map_err(|err| match err {
                ProviderError::Upstream { status: 404, .. } => {
                    ProviderError::UnknownCoin(id.to_owned())
                }
                other => other,
            })?;
        Ok(chart
            .prices
            .into_iter()
            .filter_map(|(millis, price)| {
                let at = Utc.timestamp_millis_opt(millis as i64).single()?;
                Some(PricePoint {
                    at,
                    price: decimal(price)?,
                })
            })
            .collect())
    }

    /// Every coin CoinGecko lists (`/coins/list`: id, symbol, name; about 17,000).
    pub async fn coins(&self) -> Result<Vec<CoinInfo>, ProviderError> {
        let rows: Vec<ListedCoin> = self.get_json("/coins/list", &[]).await?;
        Ok(rows
            .into_iter()
            .filter(|row| !row.id.is_empty())
            .map(|row| CoinInfo {
                id: row.id,
                symbol: row.symbol,
                name: row.name,
                market_cap_rank: None,
            })
            .collect())
    }

    /// The currencies CoinGecko quotes in (`/simple/supported_vs_currencies`), lower case.
    pub async fn currencies(&self) -> Result<Vec<String>, ProviderError> {
        let codes: Vec<String> = self
            .get_json("/simple/supported_vs_currencies", &[])
            .await?;
        Ok(codes
            .into_iter()
            .map(|code| code.to_ascii_lowercase())
            .collect())
    }

    /// One GET with budget, retries and metrics.
    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ProviderError> {
        let url = format!("{}{path}", self.base_url);
        let mut attempt = 0;
        let mut last_error: Option<ProviderError> = None;
        loop {
            attempt += 1;
            if let Err(refused) = self.breaker.admit() {
                // Opened by this call's own failures: report what they were.
                return Err(last_error.unwrap_or(ProviderError::CircuitOpen {
                    retry_in: refused.retry_in,
                }));
            }
            self.budget.acquire().await;
            let started = Instant::now();
            let span = tracing::info_span!("upstream_request", provider = PROVIDER, path, attempt);
            let outcome = self
                .http
                .get(&url)
                .query(query)
                .send()
                .instrument(span)
                .await;
            metrics::histogram!("upstream_request_duration_seconds", "provider" => PROVIDER)
                .record(started.elapsed().as_secs_f64());
            let response = match outcome {
                Ok(response) => response,
                Err(err) => {
                    metrics::counter!("upstream_requests_total", "provider" => PROVIDER, "status" => "error").increment(1);
                    self.breaker.failed();
                    let error = ProviderError::Transport(without_url(err));
                    if attempt >= self.max_attempts {
                        return Err(error);
                    }
                    last_error = Some(error);
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            let status = response.status();
            metrics::counter!("upstream_requests_total", "provider" => PROVIDER, "status" => status.as_u16().to_string()).increment(1);
            let retryable = status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error();
            if retryable {
                self.breaker.failed();
            } else {
                self.breaker.succeeded();
            }
            if status.is_success() {
                let bytes = response
                    .bytes()
                    .await
                    .map_err(|err| ProviderError::Transport(without_url(err)))?;
                return serde_json::from_slice(&bytes)
                    .map_err(|err| ProviderError::Malformed(err.to_string()));
            }
            let retry_after = retry_after(response.headers());
            let body = response.bytes().await.unwrap_or_default();
            let message = error_message(&body);
            let error = if status == StatusCode::TOO_MANY_REQUESTS {
                ProviderError::RateLimited { retry_after }
            } else {
                ProviderError::Upstream {
                    status: status.as_u16(),
                    message: message.clone(),
                }
            };
            if !retryable || attempt >= self.max_attempts {
                return Err(error);
            }
            last_error = Some(error);
            let wait = retry_after
                .unwrap_or_else(|| backoff(attempt))
                .min(MAX_RETRY_AFTER);
            tracing::warn!(%status, attempt, wait_ms = wait.as_millis() as u64, %message, "price provider call failed; retrying");
            tokio::time::sleep(wait).await;
        }
    }
}

/// Pro keys go to the pro host with their own header; every other host takes the demo header.
fn key_header(base_url: &str) -> &'static str {
    if base_url.contains("pro-api.coingecko.com") {
        "x-cg-pro-api-key"
    } else {
        "x-cg-demo-api-key"
    }
}

/// Exponential backoff with full jitter: a random wait in [0, base · 2^(attempt-1)].
fn backoff(attempt: u32) -> Duration {
    let ceiling = BASE_BACKOFF.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)));
    let jitter: f64 = rand::random();
    ceiling.mul_f64(jitter).max(Duration::from_millis(10))
}

/// `Retry-After` in seconds (the HTTP-date form is rare for this API and treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    value.parse::<u64>().ok().map(Duration::from_secs)
}

/// The provider's error text from a JSON body, or a short note for anything else (HTML pages).
fn error_message(body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Status {
        error_message: Option<String>,
    }
    #[derive(Deserialize)]
    struct Envelope {
        status: Option<Status>,
        error: Option<String>,
    }
    match serde_json::from_slice::<Envelope>(body) {
        Ok(Envelope {
            status: Some(Status {
                error_message: Some(message),
            }),
            ..
        })
        | Ok(Envelope {
            error: Some(message),
            ..
        }) => message.chars().take(200).collect(),
        _ if body.is_empty() => "empty body".into(),
        _ => format!("non-JSON body of {} bytes", body.len()),
    }
}

/// Transport errors without the URL (it carries the API key in some setups).
fn without_url(err: reqwest::Error) -> String {
    let timed_out = err.is_timeout();
    let mut message = err.without_url().to_string();
    if timed_out {
        message.push_str(" (timed out)");
    }
    message
}

fn decimal(value: f64) -> Option<Decimal> {
    if !value.is_finite() {
        return None;
    }
    Decimal::from_f64_retain(value)
        .and_then(|d| d.round_sf(12))
        .map(|d| d.normalize())
}

/// One row of `/coins/markets`; every numeric field may be null.
#[derive(Debug, Deserialize)]
struct MarketRow {
    id: String,
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    name: String,
    current_price: Option<f64>,
    market_cap: Option<f64>,
    market_cap_rank: Option<u32>,
    total_volume: Option<f64>,
    price_change_percentage_24h: Option<f64>,
    last_updated: Option<DateTime<Utc>>,
}

impl MarketRow {
    fn into_quote(self) -> Option<Quote> {
        Some(Quote {
            price: decimal(self.current_price?)?,
            market_cap: self.market_cap.and_then(decimal),
            market_cap_rank: self.market_cap_rank,
            volume_24h: self.total_volume.and_then(decimal),
            change_24h_pct: self.price_change_percentage_24h.and_then(decimal),
            last_updated: self.last_updated.unwrap_or_else(Utc::now),
            id: self.id,
            symbol: self.symbol,
            name: self.name,
        })
    }
}

#[derive(Debug, Deserialize)]
struct MarketChart {
    prices: Vec<(f64, f64)>,
}

/// One `/coins/list` entry; a missing symbol or name is kept empty rather than losing the coin.
#[derive(Debug, Deserialize)]
struct ListedCoin {
    id: String,
    #[serde(default)]
    symbol: String,
    #[serde(default)]
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_messages_are_read_from_json_or_summarised() {
        let json =
            br#"{"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}"#;
        assert_eq!(error_message(json), "You've exceeded the Rate Limit.");
        assert_eq!(
            error_message(br#"{"error":"coin not found"}"#),
            "coin not found"
        );
        let html = b"<html><body>Too Many Requests</body></html>";
        assert_eq!(
            error_message(html),
            format!("non-JSON body of {} bytes", html.len())
        );
    }

    #[test]
    fn the_key_header_follows_the_plan() {
        assert_eq!(
            key_header("https://pro-api.coingecko.com/api/v3"),
            "x-cg-pro-api-key"
        );
        assert_eq!(key_header(PUBLIC_BASE_URL), "x-cg-demo-api-key");
    }

    #[test]
    fn backoff_grows_and_stays_positive() {
        for attempt in 1..10 {
            let wait = backoff(attempt);
            assert!(wait >= Duration::from_millis(10));
            assert!(wait <= BASE_BACKOFF * 2u32.pow(attempt - 1));
        }
    }

    #[test]
    fn rows_without_a_price_are_not_quotes() {
        let rows: Vec<MarketRow> = serde_json::from_str(
            r#"[{"id":"bitcoin","symbol":"btc","name":"Bitcoin","current_price":67000.5,
                 "market_cap":1.3e12,"market_cap_rank":1,"total_volume":2.5e10,
                 "price_change_percentage_24h":-1.25,"last_updated":"2026-11-21T10:00:00.000Z"},
                {"id":"dead-coin","symbol":"x","name":"X","current_price":null}]"#,
        )
        .expect("parses");
        let quotes: Vec<Quote> = rows.into_iter().filter_map(MarketRow::into_quote).collect();
        assert_eq!(quotes.len(), 1);
        assert_eq!(quotes[0].price, Decimal::new(670_005, 1));
        assert_eq!(quotes[0].change_24h_pct, Some(Decimal::new(-125, 2)));
    }
}
