//! Market data: the price-provider interface and its implementations.
//!
//! [`PriceProvider`] is chosen by `PRICE_PROVIDER`: `simulated` (the default, offline and
//! deterministic) or `coingecko` (the CoinGecko v3 API, with batching, retries and a request
//! budget shared by every worker process). Prices are exact decimals from the moment they are
//! parsed.

pub mod breaker;
pub mod budget;
pub mod catalogue;
pub mod coingecko;
pub mod coins;
pub mod history;
pub mod jobs;
pub mod recent;
pub mod simulated;
pub mod store;

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::parse_duration;
use crate::secret::Secret;

pub use self::budget::Budget;
pub use self::coingecko::CoinGecko;
pub use self::simulated::SimulatedProvider;

/// A coin's latest market data in one currency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quote {
    /// Provider id, e.g. `bitcoin`.
    pub id: String,
    /// Ticker, e.g. `btc`.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Price per unit.
    pub price: Decimal,
    /// Market capitalisation.
    pub market_cap: Option<Decimal>,
    /// Rank by market capitalisation (1 = largest).
    pub market_cap_rank: Option<u32>,
    /// Traded volume over 24 hours.
    pub volume_24h: Option<Decimal>,
    /// Price change over 24 hours, in percent.
    pub change_24h_pct: Option<Decimal>,
    /// When the provider last updated this quote.
    pub last_updated: DateTime<Utc>,
}

/// Quotes for a set of ids, plus the ids the provider does not know.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MarketBatch {
    /// One quote per known id.
    pub quotes: Vec<Quote>,
    /// Ids the provider has no data for.
    pub missing: Vec<String>,
}

/// A price at a point in time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PricePoint {
    /// When.
    pub at: DateTime<Utc>,
    /// Price per unit.
    pub price: Decimal,
}

/// A coin's identity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoinInfo {
    /// Provider id.
    pub id: String,
    /// Ticker.
    pub symbol: String,
    /// Display name.
    pub name: String,
    /// Position by market capitalisation, when the provider's list says.
    pub market_cap_rank: Option<u32>,
}

/// Why a provider call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProviderError {
    /// The currency is not one the provider quotes in.
    #[error("unsupported currency {0:?}")]
    UnsupportedCurrency(String),
    /// The coin id is unknown to the provider.
    #[error("unknown coin {0:?}")]
    UnknownCoin(String),
    /// The provider refused us for too many requests, even after waiting as told.
    #[error("the price provider is rate limiting us (retry after {retry_after:?})")]
    RateLimited {
        /// What the provider's last `Retry-After` said.
        retry_after: Option<Duration>,
    },
    /// The provider answered with an error status.
    #[error("the price provider answered {status}: {message}")]
    Upstream {
        /// HTTP status.
        status: u16,
        /// The provider's message, if it gave a readable one.
        message: String,
    },
    /// The provider's answer could not be understood.
    #[error("the price provider's answer could not be read: {0}")]
    Malformed(String),
    /// The network failed or timed out.
    #[error("the price provider could not be reached: {0}")]
    Transport(String),
    /// The provider kept failing, so calls are not made for a while (the circuit breaker).
    #[error("the price provider keeps failing; calls resume in {}", humantime::format_duration(*.retry_in))]
    CircuitOpen {
        /// How long until a call is tried again.
        retry_in: Duration,
    },
}

impl ProviderError {
    /// Whether trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::RateLimited { .. } | Self::Transport(_) | Self::CircuitOpen { .. }
        ) || matches!(self, Self::Upstream { status, .. } if *status >= 500)
    }
}

/// Which provider to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProviderKind {
    /// Built-in deterministic prices; needs no network.
    Simulated,
    /// The CoinGecko v3 API.
    Coingecko,
}

impl ProviderKind {
    /// The name used in metrics labels and provenance fields.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simulated => "simulated",
            Self::Coingecko => "coingecko",
        }
    }
}

/// Market-data settings.
#[derive(Debug, Clone, clap::Args)]
pub struct MarketConfig {
    /// Where prices come from.
    #[arg(
        long = "price-provider",
        env = "PRICE_PROVIDER",
        value_enum,
        default_value = "simulated"
    )]
    pub provider: ProviderKind,

    /// CoinGecko API base URL (the pro URL selects the pro key header).
    #[arg(
        long = "coingecko-base-url",
        env = "COINGECKO_BASE_URL",
        default_value = coingecko::PUBLIC_BASE_URL
    )]
    pub coingecko_base_url: String,

    /// CoinGecko API key (demo or pro); none for the keyless tier.
    #[arg(
        long = "coingecko-api-key",
        env = "COINGECKO_API_KEY",
        hide_env_values = true
    )]
    pub coingecko_api_key: Option<Secret<String>>,

    /// Upstream calls per minute across all worker processes together.
    #[arg(
        long = "coingecko-calls-per-minute",
        env = "COINGECKO_CALLS_PER_MINUTE",
        default_value_t = 30
    )]
    pub coingecko_calls_per_minute: u32,

    /// How long a price stays in the Redis cache.
    #[arg(long = "price-cache-ttl", env = "PRICE_CACHE_TTL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub price_cache_ttl: Duration,

    /// How old a stored price may be before a read asks the provider for a fresh one.
    #[arg(long = "price-max-age", env = "PRICE_MAX_AGE", default_value = "2m", value_parser = parse_duration, value_name = "DURATION")]
    pub price_max_age: Duration,

    /// The longest a read waits for the provider before it serves the stored price (marked
    /// stale) or answers that prices are unavailable.
    #[arg(long = "price-provider-wait", env = "PRICE_PROVIDER_WAIT", default_value = "3s", value_parser = parse_duration, value_name = "DURATION")]
    pub price_provider_wait: Duration,

    /// Timeout of one upstream call.
    #[arg(long = "coingecko-timeout", env = "COINGECKO_TIMEOUT", default_value = "10s", value_parser = parse_duration, value_name = "DURATION")]
    pub coingecko_timeout: Duration,

    /// Attempts per upstream call when it is rate limited or fails transiently.
    #[arg(
        long = "coingecko-max-attempts",
        env = "COINGECKO_MAX_ATTEMPTS",
        default_value_t = 4
    )]
    pub coingecko_max_attempts: u32,

    /// Failed upstream requests in a row (unreachable, 5xx, 429) after which calls fail fast
    /// for `COINGECKO_BREAKER_COOLDOWN` (the circuit breaker opens).
    #[arg(
        long = "coingecko-breaker-failures",
        env = "COINGECKO_BREAKER_FAILURES",
        default_value_t = 5
    )]
    pub coingecko_breaker_failures: u32,

    /// How long an open breaker fails calls before it lets one probe through.
    #[arg(long = "coingecko-breaker-cooldown", env = "COINGECKO_BREAKER_COOLDOWN", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub coingecko_breaker_cooldown: Duration,
}

/// The configured price provider.
#[derive(Debug, Clone)]
pub enum PriceProvider {
    /// Built-in deterministic prices.
    Simulated(SimulatedProvider),
    /// The CoinGecko API.
    CoinGecko(Box<CoinGecko>),
}

impl PriceProvider {
    /// Builds the provider `config` names; `redis` shares the upstream budget across processes.
    pub fn from_config(
        config: &MarketConfig,
        redis: Option<crate::redis::Redis>,
    ) -> Result<Self, ProviderError> {
        match config.provider {
            ProviderKind::Simulated => Ok(Self::Simulated(SimulatedProvider)),
            ProviderKind::Coingecko => {
                let per_minute = config.coingecko_calls_per_minute;
                metrics::gauge!("upstream_budget_per_minute", "provider" => "coingecko")
                    .set(f64::from(per_minute));
                // A small burst lets a refresh of several batches start at once.
                let budget = Budget::new(
                    "coingecko",
                    per_minute,
                    (per_minute / 10).clamp(1, 10),
                    redis,
                );
                Ok(Self::CoinGecko(Box::new(CoinGecko::new(config, budget)?)))
            }
        }
    }

    /// Which provider this is.
    pub fn kind(&self) -> ProviderKind {
        match self {
            Self::Simulated(_) => ProviderKind::Simulated,
            Self::CoinGecko(_) => ProviderKind::Coingecko,
        }
    }

    /// The currencies this provider quotes in, when it has a fixed list; `None` when the
    /// upstream decides (an unsupported one is then refused on first use).
    pub fn currencies(&self) -> Option<&'static [&'static str]> {
        match self {
            Self::Simulated(_) => Some(SimulatedProvider::CURRENCIES),
            Self::CoinGecko(_) => None,
        }
    }

    /// Whether `vs` can be quoted; `false` only when the provider is known to refuse it.
    pub fn accepts_currency(&self, vs: &str) -> bool {
        self.currencies().is_none_or(|known| known.contains(&vs))
    }

    /// Latest quotes for `ids` in `vs`.
    pub async fn markets(&self, ids: &[String], vs: &str) -> Result<MarketBatch, ProviderError> {
        match self {
            Self::Simulated(provider) => provider.markets_at(ids, vs, Utc::now()),
            Self::CoinGecko(provider) => provider.markets(ids, vs).await,
        }
    }

    /// The `limit` largest coins by market capitalisation.
    pub async fn top(&self, limit: usize, vs: &str) -> Result<Vec<Quote>, ProviderError> {
        match self {
            Self::Simulated(provider) => provider.top_at(limit, vs, Utc::now()),
            Self::CoinGecko(provider) => provider.top(limit, vs).await,
        }
    }

    /// Every coin the provider knows.
    pub async fn coins(&self) -> Result<Vec<CoinInfo>, ProviderError> {
        match self {
            Self::Simulated(provider) => Ok(provider.coins()),
            Self::CoinGecko(provider) => provider.coins().await,
        }
    }

    /// Every currency the provider quotes in, lower case, sorted as the provider lists them.
    pub async fn quote_currencies(&self) -> Result<Vec<String>, ProviderError> {
        match self {
            Self::Simulated(_) => Ok(SimulatedProvider::CURRENCIES
                .iter()
                .map(|code| (*code).to_owned())
                .collect()),
            Self::CoinGecko(provider) => provider.currencies().await,
        }
    }

    /// Prices of `id` between `from` and `to`.
    pub async fn history(
        &self,
        id: &str,
        vs: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<PricePoint>, ProviderError> {
        match self {
            Self::Simulated(provider) => provider.history(id, vs, from, to),
            Self::CoinGecko(provider) => provider.history(id, vs, from, to).await,
        }
    }
}
