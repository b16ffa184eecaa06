//! Market data endpoints: latest prices, popular coins, price history, cache administration.
//!
//! Reads go cache (Redis) → database → provider: a price fetched within `PRICE_MAX_AGE` is
//! served from storage; an older or missing one is fetched from the provider once, stored and
//! cached. If the provider is down, a stale stored price is served (its `fetched_at` says how
//! old) rather than an error.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use common::market::catalogue::{self, CatalogueError};
use common::market::history::{self, HistoryError, Resolution};
use common::market::{PricePoint, ProviderError};
use common::prices::{LatestPrice, PriceError};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};
use regex::Regex;
use rust_decimal::Decimal;

use common::jobs::store as jobs_store;
use common::market::PriceProvider;
use common::market::jobs::BulkFetch;
use poem_openapi::ApiResponse;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::extract::{ActiveUser, AdminUser};
use crate::error::FieldError;
use crate::error::{ApiError, ApiResult, on_constraint, status};
use crate::jobs::{self, Job};
use crate::platform::ApiTags;
use crate::platform::conditional::{self, Conditional};
use crate::platform::idempotency::{self, Answer, Claim, Key, Scope};
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};

/// Most coins one bulk fetch may ask for (one upstream call's worth).
pub const MAX_BULK_COINS: usize = 250;

/// A coin id as the provider writes it. The OpenAPI document states this very pattern.
pub const COIN_ID_PATTERN: &str = r"^[a-z0-9_.-]{1,100}$";

/// A currency code, any case. The OpenAPI document states this pattern, narrowed to the
/// provider's own currencies when it has a fixed list (see `openapi_doc`).
pub const CURRENCY_PATTERN: &str = r"^[A-Za-z]{2,10}$";

/// What [`COIN_ID_PATTERN`] means.
pub const COIN_ID_MESSAGE: &str = common::portfolios::rules::COIN_ID_RULE;
/// What [`CURRENCY_PATTERN`] means.
pub const CURRENCY_MESSAGE: &str = "must be a currency code such as usd or eur";

static CURRENCY: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(CURRENCY_PATTERN).expect("the currency pattern compiles"));

/// Longest history range one request may ask for.
const MAX_HISTORY_DAYS: i64 = 365;

/// How often one process tells Redis a coin was asked about. The refresh looks back a day,
/// so once a minute is plenty, and a hot coin costs no Redis write per request.
const RECENT_NOTE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Market data endpoints.
#[derive(Debug)]
pub struct MarketApi {
    state: AppState,
    /// Coins this process noted as asked about within `RECENT_NOTE_INTERVAL`.
    noted: moka::sync::Cache<String, ()>,
}

impl MarketApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self {
            state,
            noted: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(RECENT_NOTE_INTERVAL)
                .build(),
        }
    }
}

/// A coin's latest price, as the prices service has it (documented as `Price`).
pub type Price = LatestPrice;

/// A coin's prices over a time range.
#[derive(Debug, Object)]
pub struct PriceHistory {
    /// Coin id.
    pub coin_id: String,
    /// Currency of the prices.
    pub vs_currency: String,
    /// Start of the range.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub from: DateTime<Utc>,
    /// End of the range.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub to: DateTime<Utc>,
    /// How far apart the points are: `hour` for ranges up to 90 days, `day` beyond.
    pub resolution: HistoryResolution,
    /// At most one price per hour (or day), the first one recorded in it, at its own instant;
    /// oldest first.
    pub points: Vec<HistoryPoint>,
    /// Finished hours (or days) of the range that have no price even after asking the
    /// provider (e.g. before the coin was listed, or while the provider is down), merged into
    /// spans; empty when the range is complete.
    pub unavailable: Vec<TimeSpan>,
}

/// The spacing of a price history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, poem_openapi::Enum)]
#[oai(rename_all = "lowercase")]
pub enum HistoryResolution {
    /// One point per hour (UTC).
    Hour,
    /// One point per day (UTC).
    Day,
}

impl From<Resolution> for HistoryResolution {
    fn from(resolution: Resolution) -> Self {
        match resolution {
            Resolution::Hour => Self::Hour,
            Resolution::Day => Self::Day,
        }
    }
}

/// A span of time, `from` inclusive, `to` exclusive.
#[derive(Debug, Object)]
pub struct TimeSpan {
    /// Start (inclusive).
    #[oai(serialize_with = "common::wire::timestamp")]
    pub from: DateTime<Utc>,
    /// End (exclusive).
    #[oai(serialize_with = "common::wire::timestamp")]
    pub to: DateTime<Utc>,
}

/// A coin the price provider knows.
#[derive(Debug, Object)]
pub struct Coin {
    /// The id every other endpoint takes, e.g. `bitcoin`.
    pub id: String,
    /// Ticker, e.g. `btc`.
    pub symbol: String,
    /// Display name, e.g. `Bitcoin`.
    pub name: String,
    /// Position by market capitalisation (1 = largest), when known.
    pub rank: Option<u32>,
}

/// The currencies prices can be asked in.
#[derive(Debug, Object)]
pub struct CurrencyList {
    /// Where prices come from (`simulated` or `coingecko`).
    pub provider: String,
    /// Lower-case currency codes, e.g. `usd`, `eur`; any of them is accepted as `vs_currency`
    /// (in any case).
    pub currencies: Vec<String>,
}

/// One price at one time.
#[derive(Debug, Object)]
pub struct HistoryPoint {
    /// When.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
    /// Price per unit (decimal string).
    #[oai(serialize_with = "common::wire::decimal")]
    pub price: Decimal,
}

/// Price-cache counters across all API processes.
#[derive(Debug, Object)]
pub struct CacheStatsBody {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that were not.
    pub misses: u64,
    /// hits / (hits + misses), 0 when there were no reads.
    pub hit_ratio: f64,
    /// Prices cached now.
    pub keys: u64,
}

/// Result of emptying the cache.
#[derive(Debug, Object)]
pub struct CacheCleared {
    /// How many cached prices were removed.
    pub deleted: u64,
}

/// Prices to fetch in the background.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct BulkFetchRequest {
    /// 1–250 distinct coin ids.
    #[oai(validator(
        min_items = 1,
        max_items = 250,
        unique_items,
        pattern = r"^[a-z0-9_.-]{1,100}$"
    ))]
    pub coins: Vec<String>,
    /// Currency, default `usd` (any case).
    #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
    pub vs_currency: Option<String>,
}

impl poem_openapi::types::Example for BulkFetchRequest {
    fn example() -> Self {
        Self {
            coins: vec!["bitcoin".into(), "ethereum".into(), "solana".into()],
            vs_currency: Some("usd".into()),
        }
    }
}

#[derive(ApiResponse)]
enum BulkAccepted {
    /// Accepted: the job is stored and will run; poll `Location` for its result.
    #[oai(status = 202)]
    Accepted(
        Json<Job>,
        /// The job's URL.
        #[oai(header = "Location")]
        String,
        /// `true` when this answers a retry with an `Idempotency-Key` already used: the job is
        /// the first request's, as it was accepted.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

fn bulk_accepted(job: Job, replay: bool) -> BulkAccepted {
    let location = jobs::location(job.id);
    BulkAccepted::Accepted(Json(job), location, idempotency::replayed_header(replay))
}

/// Validates a bulk request: 1–250 valid, distinct ids and a supported currency.
fn parse_bulk(
    request: &BulkFetchRequest,
    provider: &PriceProvider,
) -> Result<(Vec<String>, String), ApiError> {
    let mut errors = Vec::new();
    if request.coins.is_empty() || request.coins.len() > MAX_BULK_COINS {
        errors.push(FieldError::new(
            "coins",
            format!("must list 1 to {MAX_BULK_COINS} coin ids"),
        ));
    }
    let mut seen = std::collections::HashMap::new();
    for (index, raw) in request.coins.iter().enumerate() {
        let field = format!("coins[{index}]");
        match parse_coin_id(&field, raw) {
            Err(ApiError::Validation(mut field_errors)) => errors.append(&mut field_errors),
            Err(other) => return Err(other),
            Ok(id) => {
                if let Some(first) = seen.insert(id, index) {
                    errors.push(FieldError::new(field, format!("repeats coins[{first}]")));
                }
            }
        }
    }
    let vs = match parse_vs_currency(request.vs_currency.as_deref()) {
        Ok(vs) if provider.accepts_currency(&vs) => Some(vs),
        Ok(vs) => {
            errors.push(FieldError::new(
                "vs_currency",
                format!("{vs:?} is not supported by the price provider"),
            ));
            None
        }
        Err(ApiError::Validation(mut field_errors)) => {
            errors.append(&mut field_errors);
            None
        }
        Err(other) => return Err(other),
    };
    match vs {
        Some(vs) if errors.is_empty() => Ok((request.coins.clone(), vs)),
        _ => Err(ApiError::Validation(errors)),
    }
}

/// A coin id as the provider writes it: lower-case letters, digits, `-`, `_`, `.`.
pub fn parse_coin_id(field: &str, raw: &str) -> Result<String, ApiError> {
    if common::portfolios::rules::is_coin_id(raw) {
        Ok(raw.to_owned())
    } else {
        Err(ApiError::invalid(field, COIN_ID_MESSAGE))
    }
}

/// A currency code, lower-cased; defaults to `usd`.
pub fn parse_vs_currency(raw: Option<&str>) -> Result<String, ApiError> {
    let value = raw.unwrap_or("usd");
    if CURRENCY.is_match(value) {
        Ok(value.to_ascii_lowercase())
    } else {
        Err(ApiError::invalid("vs_currency", CURRENCY_MESSAGE))
    }
}

/// Maps provider failures to caller-facing errors: never a 500 for someone else's outage.
fn provider_error(err: ProviderError) -> ApiError {
    match err {
        ProviderError::UnsupportedCurrency(currency) => ApiError::invalid(
            "vs_currency",
            format!("{currency:?} is not supported by the price provider"),
        ),
        ProviderError::UnknownCoin(_) => ApiError::not_found("coin"),
        other => {
            tracing::warn!(error = %other, "price provider failed");
            ApiError::Unavailable("the price provider is unavailable; retry later".into())
        }
    }
}

/// Maps what the prices service could not do to caller-facing errors.
pub fn price_error(err: PriceError) -> ApiError {
    match err {
        PriceError::Refused(err) => provider_error(err),
        PriceError::Unavailable(why) => {
            tracing::warn!(reason = %why, "no price to serve");
            ApiError::Unavailable("the price provider is unavailable; retry later".into())
        }
        PriceError::Database(err) => err.into(),
    }
}

impl MarketApi {
    /// The latest price of one coin (the prices service's rule); 404 for a coin the provider
    /// does not know.
    pub async fn latest_price(&self, coin_id: &str, vs: &str) -> Result<LatestPrice, ApiError> {
        self.state
            .prices
            .latest(coin_id, vs)
            .await
            .map_err(price_error)?
            .ok_or_else(|| ApiError::not_found("coin"))
    }
}

#[OpenApi(prefix_path = "/api/v1/crypto", tag = "ApiTags::Market")]
impl MarketApi {
    /// The latest price of a coin.
    ///
    /// Served from a short-lived cache or storage when fresh, otherwise fetched from the price
    /// provider. `source` says where prices come from (`simulated` offline).
    ///
    /// With the last `ETag` as `If-None-Match`, the answer is `304` (no body) until a newer
    /// price is fetched.
    #[oai(path = "/prices/:coin_id", method = "get")]
    async fn price(
        &self,
        /// Coin id, e.g. `bitcoin`.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        coin_id: Path<String>,
        /// Currency code, default `usd` (any case).
        #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
        vs_currency: Query<Option<String>>,
        /// The `ETag` of a copy the caller holds (`*` or a list also work).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<Conditional<Price>, { status::ALWAYS | status::VALIDATION | status::NOT_FOUND }>
    {
        let coin_id = parse_coin_id("coin_id", &coin_id.0)?;
        let vs = parse_vs_currency(vs_currency.0.as_deref())?;
        let price = self.latest_price(&coin_id, &vs).await?;
        if !self.noted.contains_key(&coin_id) {
            self.noted.insert(coin_id.clone(), ());
            let redis = self.state.redis.clone();
            // Keeps the coin in the scheduled refresh; never delays the answer.
            tokio::spawn(async move { common::market::recent::note(&redis, &[coin_id]).await });
        }
        let etag = conditional::content_etag(&price, &[]);
        Ok(Conditional::new(price, etag, if_none_match.0.as_deref()))
    }

    /// Fetch prices for many coins in the background.
    ///
    /// Answers `202` at once with the job and its `Location`; the job is stored before this
    /// answers, so it runs even if the queue is briefly unavailable. Its `result` holds each
    /// coin's price or that coin's own error. With an `Idempotency-Key`, a retry of the same
    /// request (within 24 hours) answers the first job again instead of starting another
    /// (`Idempotent-Replayed: true`); the same key with another request is a `422`.
    #[oai(path = "/bulk", method = "post")]
    async fn bulk(
        &self,
        caller: ActiveUser,
        /// A unique value per intended fetch, e.g. a UUID (1–255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<BulkFetchRequest>,
    ) -> ApiResult<Answer<BulkAccepted>, { status::AUTHED | status::BODY }> {
        let (coins, vs) = parse_bulk(&body.0, self.state.prices.provider())?;
        let key = idempotency_key.0.as_deref().map(Key::parse).transpose()?;
        let count = coins.len();
        let args = BulkFetch {
            coins,
            vs_currency: vs,
        };
        let user = caller.0.id;
        let mut tx = self.state.db.begin().await?;
        if let Some(key) = &key {
            // The parsed request: ids and currency as normalised (case, spaces) are compared.
            let fingerprint = idempotency::fingerprint("/api/v1/crypto/bulk", &args)?;
            let claim =
                idempotency::claim::<Job>(&mut tx, user, Scope::BulkFetch, key, &fingerprint)
                    .await?;
            if let Claim::Replay { status, body } = claim {
                return Ok(Answer::replay(status, bulk_accepted(body, true)));
            }
        }
        // The account may be deleted between the check and this insert: a 401, not a 500.
        let row = jobs_store::insert(&mut *tx, Some(user), &args)
            .await
            .map_err(|err| on_constraint(err, jobs::ACCOUNT_GONE))?;
        let job = Job::try_from(row.clone())?;
        if let Some(key) = &key {
            let status = poem::http::StatusCode::ACCEPTED; // What `BulkAccepted` answers.
            idempotency::store(&mut tx, user, Scope::BulkFetch, key, status, &job).await?;
        }
        tx.commit().await?;
        tracing::info!(job_id = %job.id, coins = count, "bulk fetch accepted");
        jobs::dispatch_in_background(&self.state, &row);
        Ok(Answer::fresh(bulk_accepted(job, false)))
    }

    /// The largest coins by market capitalisation.
    #[oai(path = "/popular", method = "get")]
    async fn popular(
        &self,
        /// How many coins, 1–100 (default 10).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        limit: Query<Option<u32>>,
        /// Currency code, default `usd` (any case).
        #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
        vs_currency: Query<Option<String>>,
    ) -> ApiResult<Json<Vec<Price>>, { status::ALWAYS | status::VALIDATION }> {
        let limit = limit.0.unwrap_or(10);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::invalid("limit", "must be between 1 and 100").into());
        }
        let vs = parse_vs_currency(vs_currency.0.as_deref())?;
        let prices = self
            .state
            .prices
            .popular(limit, &vs)
            .await
            .map_err(price_error)?;
        Ok(Json(prices))
    }

    /// A coin's price history between `from` and `to` (at most 365 days; default the last 7).
    #[oai(path = "/:coin_id/history", method = "get")]
    async fn history(
        &self,
        /// Coin id, e.g. `bitcoin`.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        coin_id: Path<String>,
        /// Start (RFC 3339); default `to` minus 7 days.
        from: Query<Option<DateTime<Utc>>>,
        /// End (RFC 3339); default now.
        to: Query<Option<DateTime<Utc>>>,
        /// Currency code, default `usd` (any case).
        #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
        vs_currency: Query<Option<String>>,
    ) -> ApiResult<Json<PriceHistory>, { status::ALWAYS | status::VALIDATION | status::NOT_FOUND }>
    {
        let coin_id = parse_coin_id("coin_id", &coin_id.0)?;
        let vs = parse_vs_currency(vs_currency.0.as_deref())?;
        let to = to.0.unwrap_or_else(Utc::now);
        let from = from.0.unwrap_or(to - chrono::Duration::days(7));
        if from >= to {
            return Err(ApiError::invalid("from", "must be before `to`").into());
        }
        if to - from > chrono::Duration::days(MAX_HISTORY_DAYS) {
            return Err(ApiError::invalid(
                "from",
                format!("the range may span at most {MAX_HISTORY_DAYS} days"),
            )
            .into());
        }
        // Validates the coin (404) and records the current price, which fills the hour in
        // progress.
        self.latest_price(&coin_id, &vs).await?;
        let provider = self.state.prices.provider();
        let series = history::series(
            &self.state.db,
            provider,
            &coin_id,
            &vs,
            from,
            to,
            Utc::now(),
        )
        .await
        .map_err(|err| match err {
            HistoryError::Database(err) => err.into(),
            HistoryError::Provider(err) => provider_error(err),
        })?;
        Ok(Json(PriceHistory {
            coin_id,
            vs_currency: vs,
            from,
            to,
            resolution: series.resolution.into(),
            points: series
                .points
                .into_iter()
                .map(|PricePoint { at, price }| HistoryPoint { at, price })
                .collect(),
            unavailable: series
                .unavailable
                .into_iter()
                .map(|span| TimeSpan {
                    from: span.from,
                    to: span.to,
                })
                .collect(),
        }))
    }

    /// Find coins: their ids (what every other endpoint takes), symbols and names.
    ///
    /// `search` matches the start of the id, symbol or name, in any case (`bit`, `BTC`,
    /// `ether`); exact id or symbol matches come first, then by market capitalisation. The
    /// list is the price provider's own, read at most once a day.
    #[oai(path = "/coins", method = "get")]
    async fn coins(
        &self,
        /// Text the id, symbol or name starts with (at most 100 characters); every coin when
        /// absent or blank.
        #[oai(validator(max_length = 100, pattern = r"^[^\x00]*$"))]
        search: Query<Option<String>>,
        /// Page number, from 1 (at most 1,000,000; default 1).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Coins per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
    ) -> ApiResult<Json<Page<Coin>>, { status::ALWAYS | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let search = search
            .0
            .as_deref()
            .map(str::trim)
            .filter(|text| !text.is_empty());
        // Also checked here, whatever the document's validators do: Postgres text cannot hold
        // U+0000, and the bound keeps the prefix match cheap.
        if search.is_some_and(|text| text.chars().count() > 100 || text.contains('\0')) {
            return Err(ApiError::invalid(
                "search",
                "must be at most 100 characters, without U+0000",
            )
            .into());
        }
        let found = catalogue::search(
            &self.state.db,
            self.state.prices.provider(),
            search,
            request.limit(),
            request.offset(),
        )
        .await
        .map_err(catalogue_error)?;
        let coins = found
            .coins
            .into_iter()
            .map(|coin| Coin {
                id: coin.id,
                symbol: coin.symbol,
                name: coin.name,
                rank: coin
                    .market_cap_rank
                    .and_then(|rank| u32::try_from(rank).ok()),
            })
            .collect();
        Ok(Json(Page::new(coins, request, found.total)))
    }

    /// The currencies prices can be asked in (`vs_currency` everywhere).
    #[oai(path = "/currencies", method = "get")]
    async fn currencies(&self) -> ApiResult<Json<CurrencyList>, { status::ALWAYS }> {
        let provider = self.state.prices.provider();
        let currencies = catalogue::currencies(&self.state.db, provider)
            .await
            .map_err(catalogue_error)?;
        Ok(Json(CurrencyList {
            provider: provider.kind().as_str().to_owned(),
            currencies,
        }))
    }
}

fn catalogue_error(err: CatalogueError) -> ApiError {
    match err {
        CatalogueError::Database(err) => err.into(),
        CatalogueError::Provider(err) => provider_error(err),
    }
}

/// Price-cache administration.
#[derive(Debug)]
pub struct MarketAdminApi {
    state: AppState,
}

impl MarketAdminApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl MarketAdminApi {
    /// Price-cache hits, misses and size, across all API processes.
    #[oai(path = "/cache/stats", method = "get")]
    async fn cache_stats(
        &self,
        _admin: AdminUser,
    ) -> ApiResult<Json<CacheStatsBody>, { status::AUTHED | status::FORBIDDEN }> {
        let stats = self
            .state
            .prices
            .cache()
            .stats()
            .await
            .map_err(|err| ApiError::Unavailable(format!("the cache is unavailable: {err}")))?;
        let reads = stats.hits + stats.misses;
        Ok(Json(CacheStatsBody {
            hits: stats.hits,
            misses: stats.misses,
            hit_ratio: if reads == 0 {
                0.0
            } else {
                stats.hits as f64 / reads as f64
            },
            keys: stats.keys,
        }))
    }

    /// Empty the price cache and reset its counters.
    #[oai(path = "/cache", method = "delete")]
    async fn clear_cache(
        &self,
        admin: AdminUser,
    ) -> ApiResult<Json<CacheCleared>, { status::AUTHED | status::FORBIDDEN }> {
        let admin = admin.0;
        let deleted = self
            .state
            .prices
            .cache()
            .clear()
            .await
            .map_err(|err| ApiError::Unavailable(format!("the cache is unavailable: {err}")))?;
        tracing::info!(admin_id = %admin.id, deleted, "price cache cleared");
        Ok(Json(CacheCleared { deleted }))
    }
}
