//! The caller's portfolios, their transactions and valuation: `/api/v1/portfolios`.
//!
//! Every route answers 404 for a portfolio that is not the caller's (or is deleted), whatever
//! the method. Every write under a portfolio locks its row first (see [`repo::lock`]), so
//! writes to one portfolio run one at a time and each check sees the state it protects.

pub mod amount;
pub mod idempotency;
pub mod model;
pub mod repo;
pub mod valuation;

use std::collections::HashMap;
use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use common::market::store as market_store;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use regex::Regex;
use rust_decimal::Decimal;
use uuid::Uuid;

use self::amount::Dec;
use self::idempotency::{Claim, Key, Scope};
use self::model::{
    CreatePortfolioRequest, CreateTransactionRequest, Portfolio, PortfolioRow, PortfolioSort,
    SortOrder, Transaction, TransactionSide, UpdatePortfolioRequest, Valuation, ValuationTotals,
};
use self::repo::{LedgerRow, NewTransaction};
use self::valuation::{Entry, LedgerError, MarketPrice, Side};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, FieldError, status};
use crate::market::{parse_coin_id, parse_vs_currency};
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};
use crate::users::validate::SURROUNDING_SPACE;
use common::prices::PriceError;

/// Clock skew tolerated on `executed_at` before it counts as "in the future".
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// Upper bound (exclusive) of a quantity, and of `quantity × price + fee`: far beyond any
/// real holding, and low enough that sums over millions of transactions stay exact.
const MAX_TOTAL: Decimal = Decimal::from_parts(0x6310_0000, 0x6bc7_5e2d, 0x5, false, 0); // 10^20
/// Upper bound (exclusive) of a price or fee.
const MAX_PRICE: Decimal = Decimal::from_parts(0xa4c6_8000, 0x38d7e, 0, false, 0); // 10^15
/// Longest note.
const MAX_NOTE_CHARS: usize = 1000;
/// Longest portfolio name.
const MAX_NAME_CHARS: usize = 100;

/// A portfolio name: up to [`MAX_NAME_CHARS`] characters without control characters, neither
/// starting nor ending with whitespace once surrounding ASCII spaces, tabs and line breaks are
/// dropped. The OpenAPI document states this very pattern.
pub const NAME_PATTERN: &str = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$";

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(NAME_PATTERN).expect("the name pattern compiles"));

/// Portfolio endpoints.
#[derive(Debug)]
pub struct PortfoliosApi {
    state: AppState,
}

impl PortfoliosApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// The `Location` of a portfolio.
fn location(id: Uuid) -> String {
    format!("/api/v1/portfolios/{id}")
}

/// `"true"` on a replayed response, for the `Idempotent-Replayed` header.
fn replayed(replay: bool) -> Option<String> {
    replay.then(|| "true".to_owned())
}

#[derive(ApiResponse)]
enum PortfolioCreated {
    /// Created. With an `Idempotency-Key` that was used before for the same request, this is
    /// the first response again (same id), marked `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<Portfolio>,
        /// The portfolio's URL.
        #[oai(header = "Location")]
        String,
        /// The portfolio's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
        /// `true` when this is a replay of an earlier response.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
enum PortfolioFound {
    /// The portfolio.
    #[oai(status = 200)]
    Ok(
        Json<Portfolio>,
        /// The portfolio's version (a strong ETag such as `"3"`), for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
enum TransactionCreated {
    /// Recorded. With an `Idempotency-Key` that was used before for the same request, this is
    /// the first response again (same id), marked `Idempotent-Replayed: true`.
    #[oai(status = 201)]
    Created(
        Json<Transaction>,
        /// The transaction's URL.
        #[oai(header = "Location")]
        String,
        /// `true` when this is a replay of an earlier response.
        #[oai(header = "Idempotent-Replayed")]
        Option<String>,
    ),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// A portfolio name: trimmed, 1–100 characters, no control characters.
fn parse_name(raw: &str) -> Result<String, FieldError> {
    if NAME.is_match(raw) {
        Ok(raw.trim_matches(SURROUNDING_SPACE).to_owned())
    } else {
        Err(FieldError::new(
            "name",
            format!(
                "must be 1 to {MAX_NAME_CHARS} characters without control characters \
                 (surrounding spaces aside)"
            ),
        ))
    }
}

/// Collects field errors, then fails with all of them at once.
#[derive(Debug, Default)]
struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    fn take<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|err| self.0.push(err)).ok()
    }

    fn take_api<T>(&mut self, result: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(ApiError::Validation(mut errors)) => {
                self.0.append(&mut errors);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

impl PortfoliosApi {
    /// A currency the price provider quotes in.
    fn parse_base_currency(&self, raw: Option<&str>) -> Result<String, ApiError> {
        let vs = parse_vs_currency(raw).map_err(|_| {
            ApiError::invalid(
                "base_currency",
                "must be a currency code such as usd or eur",
            )
        })?;
        if self.state.prices.provider().accepts_currency(&vs) {
            Ok(vs)
        } else {
            Err(ApiError::invalid(
                "base_currency",
                format!("{vs:?} is not supported by the price provider"),
            ))
        }
    }

    /// Makes sure the coin is known: stored already, or known to the price provider (whose
    /// quote is then stored). Unknown coins are a 422.
    async fn ensure_coin(&self, coin_id: &str, vs: &str) -> Result<(), ApiError> {
        if market_store::coin_exists(&self.state.db, coin_id).await? {
            return Ok(());
        }
        match self.state.prices.latest(coin_id, vs).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(ApiError::invalid("coin_id", "is not a known coin")),
            Err(PriceError::Refused(err)) => {
                tracing::warn!(error = %err, coin_id, "price provider refused a coin lookup");
                Err(ApiError::invalid("coin_id", "is not a known coin"))
            }
            Err(PriceError::Unavailable(_)) => Err(unavailable()),
            Err(PriceError::Database(err)) => Err(err.into()),
        }
    }

    /// Latest prices of `coins` (the prices service's rule, one batched provider call at
    /// most). A provider that fails leaves prices missing (or stale) rather than failing the
    /// valuation.
    async fn prices(
        &self,
        coins: &[&str],
        vs: &str,
    ) -> Result<HashMap<String, MarketPrice>, ApiError> {
        let coins: Vec<String> = coins.iter().map(|coin| (*coin).to_owned()).collect();
        let found = match self.state.prices.latest_many(&coins, vs).await {
            Ok(found) => found,
            Err(PriceError::Database(err)) => return Err(err.into()),
            Err(err) => {
                tracing::warn!(error = %err, coins = coins.len(), "no prices for a valuation");
                return Ok(HashMap::new());
            }
        };
        Ok(found
            .prices
            .into_values()
            .map(|price| {
                let market = MarketPrice {
                    price: price.price,
                    change_24h_pct: price.change_24h_pct,
                    updated_at: price.last_updated,
                };
                (price.coin_id, market)
            })
            .collect())
    }
}

fn created_portfolio(portfolio: Portfolio, replay: bool) -> PortfolioCreated {
    let location = location(portfolio.id);
    let etag = model::etag(portfolio.version);
    PortfolioCreated::Created(Json(portfolio), location, etag, replayed(replay))
}

fn created_transaction(transaction: Transaction, replay: bool) -> TransactionCreated {
    let location = format!(
        "{}/transactions/{}",
        location(transaction.portfolio_id),
        transaction.id
    );
    TransactionCreated::Created(Json(transaction), location, replayed(replay))
}

fn unavailable() -> ApiError {
    ApiError::Unavailable("the price provider is unavailable; retry later".into())
}

fn not_found() -> ApiError {
    ApiError::not_found("portfolio")
}

/// Whether `If-Match` allows a change to `row`: no header, `*`, or a list naming its ETag.
/// Comparison is strong (RFC 9110 §13.1.1): a weak tag (`W/"3"`) never matches.
fn check_if_match(if_match: Option<&str>, row: &PortfolioRow) -> Result<(), ApiError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = row.etag();
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current);
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "the portfolio has changed (its ETag is now {current}); reload it and retry"
        )))
    }
}

/// The earliest `executed_at` accepted: the day of Bitcoin's first block.
fn earliest_execution() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2009, 1, 3, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Validates a new transaction against everything but the ledger.
fn parse_transaction(
    request: &CreateTransactionRequest,
    now: DateTime<Utc>,
) -> Result<(String, NewTransactionOwned), ApiError> {
    let mut problems = FieldErrors::default();
    let coin_id = problems.take_api(parse_coin_id("coin_id", &request.coin_id))?;
    let side = Side::from(request.side);
    let quantity = request.quantity.0;
    if quantity <= Decimal::ZERO {
        problems
            .0
            .push(FieldError::new("quantity", "must be greater than 0"));
    } else if quantity >= MAX_TOTAL {
        problems
            .0
            .push(FieldError::new("quantity", "must be less than 10^20"));
    }
    let price = match (request.price, side) {
        (Some(price), _) => price.0,
        (None, Side::Buy | Side::Sell) => {
            problems
                .0
                .push(FieldError::new("price", "is required for buy and sell"));
            Decimal::ZERO
        }
        (None, _) => Decimal::ZERO,
    };
    if price < Decimal::ZERO {
        problems
            .0
            .push(FieldError::new("price", "must be at least 0"));
    } else if price >= MAX_PRICE {
        problems
            .0
            .push(FieldError::new("price", "must be less than 10^15"));
    }
    let fee = request.fee.map_or(Decimal::ZERO, |fee| fee.0);
    if fee < Decimal::ZERO {
        problems
            .0
            .push(FieldError::new("fee", "must be at least 0"));
    } else if fee >= MAX_PRICE {
        problems
            .0
            .push(FieldError::new("fee", "must be less than 10^15"));
    }
    let executed_at = request.executed_at.unwrap_or(now);
    if executed_at > now + CLOCK_SKEW {
        problems
            .0
            .push(FieldError::new("executed_at", "must not be in the future"));
    } else if executed_at < earliest_execution() {
        problems.0.push(FieldError::new(
            "executed_at",
            "must not be before 2009-01-03 (the first Bitcoin block)",
        ));
    }
    if request
        .note
        .as_deref()
        .is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS)
    {
        problems.0.push(FieldError::new(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    let note = request
        .note
        .as_deref()
        .map(str::trim)
        .filter(|note| !note.is_empty());
    problems.finish()?;
    let total = quantity
        .checked_mul(price)
        .and_then(|gross| gross.checked_add(fee))
        .filter(|total| *total < MAX_TOTAL);
    if total.is_none() {
        return Err(ApiError::invalid(
            "quantity",
            "quantity × price + fee must be less than 10^20",
        ));
    }
    let coin_id = coin_id.unwrap_or_default();
    Ok((
        coin_id,
        NewTransactionOwned {
            side,
            quantity,
            price,
            fee,
            executed_at,
            note: note.map(str::to_owned),
        },
    ))
}

/// A validated transaction, before it borrows its coin id into a [`NewTransaction`].
#[derive(Debug)]
struct NewTransactionOwned {
    side: Side,
    quantity: Decimal,
    price: Decimal,
    fee: Decimal,
    executed_at: DateTime<Utc>,
    note: Option<String>,
}

fn ledger_overflow() -> ApiError {
    ApiError::invalid(
        "quantity",
        "the holding would become too large to compute exactly",
    )
}

fn describe_outflow(row: &LedgerRow) -> String {
    let side = match row.entry.side {
        Side::Sell => "sell",
        _ => "transfer out",
    };
    format!(
        "the {side} of {} at {}",
        Dec(row.entry.quantity),
        row.executed_at.to_rfc3339()
    )
}

/// The over-sell rule for a new transaction placed after every transaction executed at or
/// before its time: neither it nor any later transaction may take out more than is held.
fn check_insert(
    ledger: &[LedgerRow],
    coin_id: &str,
    new: &NewTransactionOwned,
) -> Result<(), ApiError> {
    let at = ledger.partition_point(|row| row.executed_at <= new.executed_at);
    let entry = Entry {
        side: new.side,
        quantity: new.quantity,
        price: new.price,
        fee: new.fee,
    };
    let entries = ledger[..at]
        .iter()
        .map(|row| &row.entry)
        .chain(std::iter::once(&entry))
        .chain(ledger[at..].iter().map(|row| &row.entry));
    match valuation::first_shortfall(entries).map_err(|_| ledger_overflow())? {
        None => Ok(()),
        Some((index, held)) if index == at => Err(ApiError::invalid(
            "quantity",
            format!(
                "is more than the holding of {} {coin_id} at {}",
                Dec(held),
                new.executed_at.to_rfc3339()
            ),
        )),
        Some((index, held)) => {
            let later = &ledger[index - 1];
            Err(ApiError::invalid(
                "quantity",
                format!(
                    "would leave too little {coin_id} for {} (the holding then would be {})",
                    describe_outflow(later),
                    Dec(held)
                ),
            ))
        }
    }
}

/// The over-sell rule for deleting `id`: no later transaction may be left short.
fn check_delete(ledger: &[LedgerRow], coin_id: &str, id: Uuid) -> Result<(), ApiError> {
    let remaining: Vec<&LedgerRow> = ledger.iter().filter(|row| row.id != id).collect();
    let shortfall = valuation::first_shortfall(remaining.iter().map(|row| &row.entry))
        .map_err(|err| ApiError::Internal(err.into()))?;
    match shortfall {
        None => Ok(()),
        Some((index, held)) => Err(ApiError::Conflict {
            detail: format!(
                "deleting this transaction would leave too little {coin_id} for {} \
                 (the holding then would be {})",
                describe_outflow(remaining[index]),
                Dec(held)
            ),
            field: None,
        }),
    }
}

fn valuation_error(err: LedgerError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("valuation failed: {err}"))
}

#[OpenApi(prefix_path = "/api/v1/portfolios", tag = "ApiTags::Portfolios")]
impl PortfoliosApi {
    /// The caller's portfolios.
    ///
    /// Sorted by `sort` (`created_at` by default, `name` regardless of case, or `updated_at`)
    /// in `order` (default `desc` for the times, `asc` for `name`); ties are broken by id, so
    /// paging is stable.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        caller: ActiveUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Sort key: `created_at` (default), `name` or `updated_at`.
        sort: Query<Option<PortfolioSort>>,
        /// `asc` or `desc`; default `desc` for times, `asc` for `name`.
        order: Query<Option<SortOrder>>,
    ) -> ApiResult<Json<Page<Portfolio>>, { status::AUTHED | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let user = caller.0.id;
        let sort = sort.0.unwrap_or(PortfolioSort::CreatedAt);
        let order = order.0.unwrap_or(match sort {
            PortfolioSort::Name => SortOrder::Asc,
            _ => SortOrder::Desc,
        });
        let mut conn = self.state.db.acquire().await?;
        let (rows, total) = repo::list(
            &mut conn,
            user,
            sort.as_str(),
            order.as_str(),
            request.limit(),
            request.offset(),
        )
        .await?;
        Ok(Json(Page::new(
            rows.into_iter().map(Portfolio::from).collect(),
            request,
            total,
        )))
    }

    /// Create a portfolio.
    ///
    /// Send an `Idempotency-Key` to make retries safe: for 24 hours, the same key with the
    /// same request answers the first response again (same id, `201`), and with a different
    /// request `422`. Only successful creates are remembered.
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        caller: ActiveUser,
        /// A unique value per intended create, e.g. a UUID (1–255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<CreatePortfolioRequest>,
    ) -> ApiResult<PortfolioCreated, { status::AUTHED | status::BODY | status::CONFLICT }> {
        let request = body.0;
        let mut problems = FieldErrors::default();
        let name = problems.take(parse_name(&request.name));
        let base_currency =
            problems.take_api(self.parse_base_currency(request.base_currency.as_deref()))?;
        let key = problems.take_api(idempotency_key.0.as_deref().map(Key::parse).transpose())?;
        problems.finish()?;
        let (name, base_currency, key) = (
            name.unwrap_or_default(),
            base_currency.unwrap_or_default(),
            key.flatten(),
        );
        let method = request
            .cost_basis_method
            .unwrap_or(model::CostBasisMethod::Average);
        let user = caller.0.id;

        let mut tx = self.state.db.begin().await?;
        if let Some(key) = &key {
            let fingerprint = idempotency::fingerprint("/api/v1/portfolios", &request)?;
            let claim = idempotency::claim::<Portfolio>(
                &mut tx,
                user,
                Scope::CreatePortfolio,
                key,
                &fingerprint,
            )
            .await?;
            if let Claim::Replay(portfolio) = claim {
                return Ok(created_portfolio(portfolio, true));
            }
        }
        let row = repo::insert(
            &mut *tx,
            user,
            &repo::NewPortfolio {
                name: &name,
                base_currency: &base_currency,
                cost_basis_method: method.as_str(),
            },
        )
        .await?;
        let portfolio = Portfolio::from(row);
        if let Some(key) = &key {
            idempotency::store(&mut tx, user, Scope::CreatePortfolio, key, 201, &portfolio).await?;
        }
        tx.commit().await?;
        tracing::info!(portfolio_id = %portfolio.id, "portfolio created");
        Ok(created_portfolio(portfolio, false))
    }

    /// One of the caller's portfolios, with its version as `ETag`.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
    ) -> ApiResult<PortfolioFound, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let user = caller.0.id;
        let row = repo::find(&self.state.db, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let etag = row.etag();
        Ok(PortfolioFound::Ok(Json(row.into()), etag))
    }

    /// Change a portfolio's name, base currency or cost-basis method.
    ///
    /// Send the `ETag` of the copy being changed as `If-Match`: if the portfolio has changed
    /// since, the answer is `412` and nothing changes. Without `If-Match` the change applies
    /// unconditionally. Every change bumps the version; a body with no field (`{}`) changes
    /// nothing and answers the current copy. The base currency can only change
    /// while the portfolio has no transactions (`409`), as their prices are in the old one.
    #[oai(path = "/:id", method = "patch")]
    async fn update(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The `ETag` last seen, e.g. `"3"`; `*` matches any version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonBody<UpdatePortfolioRequest>,
    ) -> ApiResult<
        PortfolioFound,
        {
            status::AUTHED
                | status::BODY
                | status::NOT_FOUND
                | status::CONFLICT
                | status::PRECONDITION_FAILED
        },
    > {
        let request = body.0;
        let mut problems = FieldErrors::default();
        let name = request
            .name
            .as_deref()
            .and_then(|name| problems.take(parse_name(name)));
        let base_currency = match request.base_currency.as_deref() {
            Some(raw) => problems.take_api(self.parse_base_currency(Some(raw)))?,
            None => None,
        };
        problems.finish()?;
        let changes = repo::Changes {
            name,
            base_currency,
            cost_basis_method: request.cost_basis_method.map(|m| m.as_str()),
        };
        let user = caller.0.id;

        let mut tx = self.state.db.begin().await?;
        let current = repo::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        if changes.is_empty() {
            // An empty merge patch (RFC 7396) changes nothing: the current copy, same version.
            let etag = current.etag();
            return Ok(PortfolioFound::Ok(Json(current.into()), etag));
        }
        if let Some(vs) = &changes.base_currency
            && *vs != current.base_currency
            && repo::has_transactions(&mut *tx, current.id).await?
        {
            return Err(ApiError::Conflict {
                detail: "the base currency cannot change once the portfolio has transactions \
                         (their prices are in the current one)"
                    .into(),
                field: Some("base_currency"),
            }
            .into());
        }
        let row = repo::update(&mut *tx, current.id, &changes).await?;
        tx.commit().await?;
        let etag = row.etag();
        Ok(PortfolioFound::Ok(Json(row.into()), etag))
    }

    /// Delete a portfolio, with its transactions and valuation.
    ///
    /// The delete is soft: everything under the portfolio answers 404 from now on and its
    /// name is free again. `If-Match` works as for `PATCH` (`412` on a stale version).
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The `ETag` last seen, e.g. `"3"`; `*` matches any version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
    ) -> ApiResult<
        NoContent,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::PRECONDITION_FAILED },
    > {
        let user = caller.0.id;
        let mut tx = self.state.db.begin().await?;
        let current = repo::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        repo::soft_delete(&mut *tx, current.id).await?;
        tx.commit().await?;
        tracing::info!(portfolio_id = %current.id, "portfolio deleted");
        Ok(NoContent::Done)
    }

    /// A portfolio's transactions, by `executed_at` (then the order they were recorded in).
    ///
    /// `order` is `asc` (ledger order, the default) or `desc`; filter by `coin_id` and `side`.
    #[oai(path = "/:id/transactions", method = "get")]
    #[expect(
        clippy::too_many_arguments,
        reason = "poem-openapi takes each query parameter as an argument"
    )]
    async fn list_transactions(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only this coin's transactions.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        coin_id: Query<Option<String>>,
        /// Only transactions of this side.
        side: Query<Option<TransactionSide>>,
        /// `asc` (default) or `desc` by `executed_at`.
        order: Query<Option<SortOrder>>,
    ) -> ApiResult<
        Json<Page<Transaction>>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND },
    > {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let coin_id = coin_id
            .0
            .as_deref()
            .map(|raw| parse_coin_id("coin_id", raw))
            .transpose()?;
        let user = caller.0.id;
        let mut conn = self.state.db.acquire().await?;
        let portfolio = repo::find(&mut *conn, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let (rows, total) = repo::list_transactions(
            &mut conn,
            portfolio.id,
            &repo::TransactionFilter {
                coin_id: coin_id.as_deref(),
                side: side.0.map(Side::from),
                order: order.0.unwrap_or(SortOrder::Asc).as_str(),
            },
            request.limit(),
            request.offset(),
        )
        .await?;
        let items = rows
            .into_iter()
            .map(Transaction::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Json(Page::new(items, request, total)))
    }

    /// Record a transaction.
    ///
    /// A `sell` or `transfer_out` may not take out more than the holding at its
    /// `executed_at`, nor leave a later one short (`422`, naming the transaction). Amounts are
    /// decimal strings. `Idempotency-Key` works as for creating a portfolio.
    #[oai(path = "/:id/transactions", method = "post")]
    async fn create_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// A unique value per intended create, e.g. a UUID (1–255 visible ASCII characters).
        #[oai(name = "Idempotency-Key", validator(pattern = r"^[!-~]{1,255}$"))]
        idempotency_key: Header<Option<String>>,
        body: JsonBody<CreateTransactionRequest>,
    ) -> ApiResult<TransactionCreated, { status::AUTHED | status::BODY | status::NOT_FOUND }> {
        let request = body.0;
        let key = idempotency_key.0.as_deref().map(Key::parse).transpose()?;
        let (coin_id, new) = parse_transaction(&request, Utc::now())?;
        let user = caller.0.id;
        let portfolio = repo::find(&self.state.db, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        self.ensure_coin(&coin_id, &portfolio.base_currency).await?;

        let mut tx = self.state.db.begin().await?;
        if let Some(key) = &key {
            let path = format!("{}/transactions", location(portfolio.id));
            let fingerprint = idempotency::fingerprint(&path, &request)?;
            let claim = idempotency::claim::<Transaction>(
                &mut tx,
                user,
                Scope::CreateTransaction,
                key,
                &fingerprint,
            )
            .await?;
            if let Claim::Replay(transaction) = claim {
                return Ok(created_transaction(transaction, true));
            }
        }
        let portfolio = repo::lock(&mut tx, user, portfolio.id)
            .await?
            .ok_or_else(not_found)?;
        let ledger = repo::coin_ledger(&mut *tx, portfolio.id, &coin_id).await?;
        check_insert(&ledger, &coin_id, &new)?;
        let row = repo::insert_transaction(
            &mut *tx,
            portfolio.id,
            &NewTransaction {
                coin_id: &coin_id,
                side: new.side,
                quantity: new.quantity,
                price: new.price,
                fee: new.fee,
                executed_at: new.executed_at,
                note: new.note.as_deref(),
            },
        )
        .await?;
        let transaction = Transaction::try_from(row)?;
        if let Some(key) = &key {
            idempotency::store(
                &mut tx,
                user,
                Scope::CreateTransaction,
                key,
                201,
                &transaction,
            )
            .await?;
        }
        tx.commit().await?;
        Ok(created_transaction(transaction, false))
    }

    /// One transaction of a portfolio.
    #[oai(path = "/:id/transactions/:tx_id", method = "get")]
    async fn get_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The transaction's id.
        tx_id: Path<Uuid>,
    ) -> ApiResult<Json<Transaction>, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let user = caller.0.id;
        let mut conn = self.state.db.acquire().await?;
        let portfolio = repo::find(&mut *conn, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let row = repo::find_transaction(&mut *conn, portfolio.id, tx_id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("transaction"))?;
        Ok(Json(row.try_into()?))
    }

    /// Delete a transaction.
    ///
    /// Refused with `409` when a later `sell` or `transfer_out` would then take out more than
    /// the holding (the problem names it); nothing changes.
    #[oai(path = "/:id/transactions/:tx_id", method = "delete")]
    async fn delete_transaction(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The transaction's id.
        tx_id: Path<Uuid>,
    ) -> ApiResult<
        NoContent,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::CONFLICT },
    > {
        let user = caller.0.id;
        let mut tx = self.state.db.begin().await?;
        let portfolio = repo::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let row = repo::find_transaction(&mut *tx, portfolio.id, tx_id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("transaction"))?;
        let ledger = repo::coin_ledger(&mut *tx, portfolio.id, &row.coin_id).await?;
        check_delete(&ledger, &row.coin_id, row.id)?;
        repo::delete_transaction(&mut *tx, row.id).await?;
        tx.commit().await?;
        Ok(NoContent::Done)
    }

    /// A portfolio valued at the latest prices: per holding and in total.
    ///
    /// Cost basis follows the portfolio's method (`average` or `fifo`); fees count in it.
    /// `transfer_in` adds coins at zero cost basis unless it gives a price; `transfer_out`
    /// removes coins with their cost basis and no proceeds. Quantities and prices are exact;
    /// money is rounded to 8 decimal places, `avg_cost` to 18 and percentages to 4, half away
    /// from zero, and totals are sums of the rounded holdings. A holding whose price is not
    /// known is listed with `price: null` and `price_missing: true`; the totals then say
    /// `partial: true` and name it in `missing_prices`. Allocation covers the priced holdings
    /// and sums to exactly 100.
    #[oai(path = "/:id/valuation", method = "get")]
    async fn valuation(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<Valuation>, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let user = caller.0.id;
        let portfolio = repo::find(&self.state.db, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        let method = portfolio.method();
        let ledgers = repo::ledgers(&self.state.db, portfolio.id).await?;
        let mut positions = Vec::with_capacity(ledgers.len());
        for (coin_id, entries) in ledgers {
            let position = valuation::replay(method.into(), &entries).map_err(valuation_error)?;
            positions.push((coin_id, position));
        }
        let coins: Vec<&str> = positions.iter().map(|(coin, _)| coin.as_str()).collect();
        let prices = self.prices(&coins, &portfolio.base_currency).await?;
        let valued = valuation::value_positions(positions, &prices).map_err(valuation_error)?;
        Ok(Json(Valuation {
            portfolio_id: portfolio.id,
            base_currency: portfolio.base_currency,
            cost_basis_method: method,
            valued_at: Utc::now(),
            holdings: valued.holdings,
            totals: ValuationTotals {
                total_value: valued.total_value,
                total_cost: valued.total_cost,
                unrealized_pnl: valued.unrealized_pnl,
                unrealized_pnl_pct: valued.unrealized_pnl_pct,
                realized_pnl: valued.realized_pnl,
                partial: valued.partial,
                missing_prices: valued.missing_prices,
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_powers_of_ten_they_claim() {
        assert_eq!(MAX_TOTAL, Decimal::from_i128_with_scale(10_i128.pow(20), 0));
        assert_eq!(MAX_PRICE, Decimal::from_i128_with_scale(10_i128.pow(15), 0));
    }
}
