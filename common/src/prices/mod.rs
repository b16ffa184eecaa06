//! The prices service: the one place that knows what "the latest price" of a coin is.
//!
//! The rule: the Redis cache; else a price stored less than `max_age` ago; else the provider
//! (waited on for at most `provider_wait`), whose quotes are stored and cached; else, when the
//! provider is down or slow, the older stored price, marked `stale`. The API's market and
//! portfolio endpoints and the worker's refresh all go through [`Prices`]; it alone reads and
//! writes the `latest_prices` table ([`store`]) and the cache ([`cache`]). Concurrent lookups
//! that miss for the same coin share one provider call (`flights`).

pub mod cache;
mod flights;
pub mod store;

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use sqlx::PgPool;

pub use self::cache::{CacheStats, PriceCache};
use self::flights::{Flights, Landed};
pub use self::store::LatestPrice;
use crate::market::{PriceProvider, ProviderError, Quote};

/// How long a price counts as fresh, and how long a request waits for the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Freshness {
    /// A stored price younger than this is served without asking the provider.
    pub max_age: Duration,
    /// The longest a read waits for the provider before it serves what is stored.
    pub provider_wait: Duration,
}

/// Why prices could not be had.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    /// The provider refused the request itself (e.g. an unsupported currency): asking again
    /// will not help.
    #[error(transparent)]
    Refused(ProviderError),
    /// The provider failed or was too slow, and nothing is stored to fall back on.
    #[error("the price provider is unavailable: {0}")]
    Unavailable(String),
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// What a lookup of several coins found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Found {
    /// Prices by coin id; a coin without one is unknown to the provider, or `unavailable`.
    pub prices: HashMap<String, LatestPrice>,
    /// Set when the provider failed or was too slow for the coins that were neither cached
    /// nor fresh: those have a `stale` price when one is stored, none otherwise.
    pub unavailable: Option<String>,
}

/// The prices service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Prices {
    db: PgPool,
    cache: PriceCache,
    provider: Arc<PriceProvider>,
    freshness: Freshness,
    flights: Flights,
}

impl Prices {
    /// The service over Postgres, the cache and the configured provider.
    pub fn new(
        db: PgPool,
        cache: PriceCache,
        provider: Arc<PriceProvider>,
        freshness: Freshness,
    ) -> Self {
        metrics::counter!("price_lookups_coalesced_total").increment(0);
        Self {
            db,
            cache,
            provider,
            freshness,
            flights: Flights::default(),
        }
    }

    /// The service as `config` sets it, over `provider`.
    pub fn from_config(
        db: PgPool,
        redis: crate::redis::Redis,
        provider: Arc<PriceProvider>,
        config: &crate::market::MarketConfig,
    ) -> Self {
        Self::new(
            db,
            PriceCache::new(redis, config.price_cache_ttl),
            provider,
            Freshness {
                max_age: config.price_max_age,
                provider_wait: config.price_provider_wait,
            },
        )
    }

    /// The configured provider, for what is not a latest price (history, currencies, top).
    pub fn provider(&self) -> &PriceProvider {
        &self.provider
    }

    /// The cache, for its administration (stats, clearing).
    pub fn cache(&self) -> &PriceCache {
        &self.cache
    }

    fn fresh_since(&self) -> chrono::DateTime<Utc> {
        let max_age =
            chrono::Duration::from_std(self.freshness.max_age).unwrap_or(chrono::Duration::MAX);
        Utc::now()
            .checked_sub_signed(max_age)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC)
    }

    /// The latest price of `coin_id` in `vs`; `Ok(None)` when the provider does not know the
    /// coin.
    pub async fn latest(&self, coin_id: &str, vs: &str) -> Result<Option<LatestPrice>, PriceError> {
        let mut found = self.latest_many(&[coin_id.to_owned()], vs).await?;
        match (found.prices.remove(coin_id), found.unavailable) {
            (Some(price), _) => Ok(Some(price)),
            (None, Some(why)) => Err(PriceError::Unavailable(why)),
            (None, None) => Ok(None),
        }
    }

    /// The latest prices of `coins` in `vs`: one cache round trip, one query, and at most one
    /// provider call for the coins that are neither cached nor fresh in storage, shared with
    /// concurrent lookups of the same coins (one upstream call however many ask at once). A
    /// provider that fails or is slow is not an error here: those coins get their older stored
    /// price, marked `stale`, and [`Found::unavailable`] says why the rest have none. Only a
    /// request the provider refuses (an unsupported currency) is an error.
    pub async fn latest_many(&self, coins: &[String], vs: &str) -> Result<Found, PriceError> {
        let mut found = Found {
            prices: by_coin(self.cache.get_many(coins, vs).await),
            unavailable: None,
        };
        let uncached: Vec<String> = coins
            .iter()
            .filter(|coin| !found.prices.contains_key(*coin))
            .cloned()
            .collect();
        if uncached.is_empty() {
            return Ok(found);
        }
        let fresh_since = self.fresh_since();
        let (fresh, stale): (Vec<LatestPrice>, Vec<LatestPrice>) =
            store::latest_many(&self.db, &uncached, vs)
                .await?
                .into_iter()
                .partition(|price| price.fetched_at >= fresh_since);
        self.cache.put_many(&fresh).await;
        found.prices.extend(by_coin(fresh));
        let wanted: Vec<String> = uncached
            .into_iter()
            .filter(|coin| !found.prices.contains_key(coin))
            .collect();
        if wanted.is_empty() {
            return Ok(found);
        }
        let (boarding, departure) = self.flights.board(&wanted, vs);
        if let Some(departure) = departure {
            let this = self.clone();
            let vs = vs.to_owned();
            tokio::spawn(async move {
                let landed = this.fetch(&departure.coins, &vs).await;
                this.flights.land(departure, &vs, landed);
            });
        }
        let mut stale = by_coin(stale);
        for (coins, flight) in boarding {
            match self.flights.wait(flight).await {
                Landed::Prices(prices) => found.prices.extend(
                    coins
                        .iter()
                        .filter_map(|coin| Some((coin.clone(), prices.get(coin)?.clone()))),
                ),
                Landed::Unavailable(why) => {
                    tracing::warn!(reason = %why, wanted = coins.len(), "price provider unavailable; serving stored prices");
                    found.prices.extend(coins.iter().filter_map(|coin| {
                        let mut price = stale.remove(coin)?;
                        price.stale = true;
                        Some((coin.clone(), price))
                    }));
                    found.unavailable = Some(why);
                }
                Landed::Refused(err) => return Err(PriceError::Refused(err)),
            }
        }
        Ok(found)
    }

    /// One provider call for `coins`, its quotes stored and cached.
    async fn fetch(&self, coins: &[String], vs: &str) -> Landed {
        match self.ask(self.provider.markets(coins, vs)).await {
            Ok(Ok(batch)) => match self.record(&batch.quotes, vs).await {
                Ok(prices) => Landed::Prices(Arc::new(by_coin(prices))),
                Err(err) => {
                    tracing::error!(error = %err, "fetched prices could not be stored");
                    Landed::Unavailable(format!("fetched prices could not be stored: {err}"))
                }
            },
            Ok(Err(why)) => Landed::Unavailable(why),
            Err(PriceError::Refused(err)) => Landed::Refused(err),
            Err(other) => Landed::Unavailable(other.to_string()),
        }
    }

    /// How many lookups are waiting for a provider call right now (for diagnostics and tests).
    pub fn lookups_waiting(&self) -> usize {
        self.flights.waiting()
    }

    /// The stored prices of `coins` in `vs`, whatever their age (older than `max_age` are
    /// marked `stale`), without asking the provider: for coins whose price is shown but not
    /// needed (a closed holding is worth 0 at any price).
    pub async fn stored(
        &self,
        coins: &[String],
        vs: &str,
    ) -> Result<HashMap<String, LatestPrice>, PriceError> {
        if coins.is_empty() {
            return Ok(HashMap::new());
        }
        let fresh_since = self.fresh_since();
        Ok(store::latest_many(&self.db, coins, vs)
            .await?
            .into_iter()
            .map(|mut price| {
                price.stale = price.fetched_at < fresh_since;
                (price.coin_id.clone(), price)
            })
            .collect())
    }

    /// The `limit` largest coins by market capitalisation in `vs`: stored ones fetched within
    /// `max_age` when there are enough, else the provider's list (stored and cached); if the
    /// provider is down, what is stored.
    pub async fn popular(&self, limit: u32, vs: &str) -> Result<Vec<LatestPrice>, PriceError> {
        let since = self.fresh_since();
        let stored = store::popular(&self.db, vs, i64::from(limit), since).await?;
        if stored.len() >= limit as usize {
            return Ok(stored);
        }
        let why = match self.ask(self.provider.top(limit as usize, vs)).await? {
            Ok(quotes) => {
                self.record(&quotes, vs).await?;
                return Ok(store::popular(&self.db, vs, i64::from(limit), since).await?);
            }
            Err(why) => why,
        };
        if stored.is_empty() {
            return Err(PriceError::Unavailable(why));
        }
        tracing::warn!(reason = %why, "serving a partial popular list");
        Ok(stored)
    }

    /// Asks the provider, waiting at most `provider_wait`: `Ok(Ok(answer))`; `Ok(Err(why))` when
    /// it failed or was too slow (worth serving what is stored); `Err` when it refused the
    /// request itself.
    async fn ask<T>(
        &self,
        call: impl Future<Output = Result<T, ProviderError>>,
    ) -> Result<Result<T, String>, PriceError> {
        match tokio::time::timeout(self.freshness.provider_wait, call).await {
            Ok(Ok(answer)) => Ok(Ok(answer)),
            Ok(Err(err)) if !err.is_transient() => Err(PriceError::Refused(err)),
            Ok(Err(err)) => Ok(Err(err.to_string())),
            Err(_) => Ok(Err(format!(
                "no answer within {}",
                humantime::format_duration(self.freshness.provider_wait)
            ))),
        }
    }

    /// Records quotes the provider gave (bulk fetches, the refresh, reads that had to ask):
    /// coins, latest prices and a history point each in one transaction, then the cache.
    /// Returns them as latest prices.
    pub async fn record(
        &self,
        quotes: &[Quote],
        vs: &str,
    ) -> Result<Vec<LatestPrice>, sqlx::Error> {
        let source = self.provider.kind().as_str();
        store::save_quotes(&self.db, quotes, vs, source).await?;
        let fetched_at = Utc::now();
        let prices: Vec<LatestPrice> = quotes
            .iter()
            .map(|quote| LatestPrice {
                coin_id: quote.id.clone(),
                symbol: quote.symbol.clone(),
                name: quote.name.clone(),
                vs_currency: vs.to_owned(),
                price: quote.price,
                market_cap: quote.market_cap,
                market_cap_rank: quote
                    .market_cap_rank
                    .and_then(|rank| i32::try_from(rank).ok()),
                volume_24h: quote.volume_24h,
                change_24h_pct: quote.change_24h_pct,
                last_updated: quote.last_updated,
                fetched_at,
                source: source.to_owned(),
                stale: false,
            })
            .collect();
        self.cache.put_many(&prices).await;
        Ok(prices)
    }
}

/// Prices keyed by their coin id.
fn by_coin(prices: impl IntoIterator<Item = LatestPrice>) -> HashMap<String, LatestPrice> {
    prices
        .into_iter()
        .map(|price| (price.coin_id.clone(), price))
        .collect()
}
