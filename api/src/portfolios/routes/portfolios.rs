//! The portfolios themselves: `/api/v1/portfolios` and `/api/v1/portfolios/{id}`.

use poem::http::StatusCode;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::{NoContent, location, not_found, replayed};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::conditional::{self, Conditional};
use crate::platform::idempotency::{self, Answer, Claim, Key, Scope};
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};
use crate::portfolios::model::{
    self, CreatePortfolioRequest, Portfolio, PortfolioRow, PortfolioSort, SortOrder,
    UpdatePortfolioRequest,
};
use crate::portfolios::store;
use crate::portfolios::validate::{self, FieldErrors};

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

fn created_portfolio(portfolio: Portfolio, replay: bool) -> PortfolioCreated {
    let location = location(portfolio.id);
    let etag = conditional::etag(portfolio.version);
    PortfolioCreated::Created(Json(portfolio), location, etag, replayed(replay))
}

#[derive(ApiResponse)]
enum PortfolioUpdated {
    /// The portfolio as it is now.
    #[oai(status = 200)]
    Ok(
        Json<Portfolio>,
        /// The portfolio's version (a strong ETag such as `"3"`), for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

fn updated(row: PortfolioRow) -> PortfolioUpdated {
    let etag = row.etag();
    PortfolioUpdated::Ok(Json(row.into()), etag)
}

/// The portfolio, or `304` when `if_none_match` names its version.
fn found_unless(row: PortfolioRow, if_none_match: Option<&str>) -> PortfolioFound {
    let etag = row.etag();
    Conditional::new(row.into(), etag, if_none_match)
}

/// A portfolio with its version (a strong ETag such as `"3"`) for `If-Match` and
/// `If-None-Match`.
type PortfolioFound = Conditional<Portfolio>;

/// Whether `If-Match` allows a change to `row` (412 otherwise).
fn check_if_match(if_match: Option<&str>, row: &PortfolioRow) -> Result<(), ApiError> {
    conditional::check_if_match(if_match, &row.etag(), "portfolio")
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
        let (rows, total) = store::list(
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
    ) -> ApiResult<Answer<PortfolioCreated>, { status::AUTHED | status::BODY | status::CONFLICT }>
    {
        let request = body.0;
        let mut problems = FieldErrors::default();
        let name = problems.take(validate::name(&request.name));
        let base_currency = problems.take_api(validate::base_currency(
            self.state.prices.provider(),
            request.base_currency.as_deref(),
        ))?;
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
            if let Claim::Replay { status, body } = claim {
                return Ok(Answer::replay(status, created_portfolio(body, true)));
            }
        }
        let row = store::insert(
            &mut *tx,
            user,
            &store::NewPortfolio {
                name: &name,
                base_currency: &base_currency,
                cost_basis_method: method.as_str(),
            },
        )
        .await?;
        let portfolio = Portfolio::from(row);
        if let Some(key) = &key {
            let status = StatusCode::CREATED; // What `PortfolioCreated` answers.
            idempotency::store(
                &mut tx,
                user,
                Scope::CreatePortfolio,
                key,
                status,
                &portfolio,
            )
            .await?;
        }
        tx.commit().await?;
        tracing::info!(portfolio_id = %portfolio.id, "portfolio created");
        Ok(Answer::fresh(created_portfolio(portfolio, false)))
    }

    /// One of the caller's portfolios, with its version as `ETag`.
    ///
    /// With that `ETag` as `If-None-Match`, the answer is `304` (no body) while the portfolio
    /// is unchanged.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The `ETag` of a copy the caller holds, e.g. `"3"` (`*` or a list also work).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<PortfolioFound, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let user = caller.0.id;
        let row = store::find(&self.state.db, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        Ok(found_unless(row, if_none_match.0.as_deref()))
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
        PortfolioUpdated,
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
            .and_then(|name| problems.take(validate::name(name)));
        let base_currency = match request.base_currency.as_deref() {
            Some(raw) => problems.take_api(validate::base_currency(
                self.state.prices.provider(),
                Some(raw),
            ))?,
            None => None,
        };
        problems.finish()?;
        let changes = store::Changes {
            name,
            base_currency,
            cost_basis_method: request.cost_basis_method.map(|m| m.as_str()),
        };
        let user = caller.0.id;

        let mut tx = self.state.db.begin().await?;
        let current = store::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        if changes.is_empty() {
            // An empty merge patch (RFC 7396) changes nothing: the current copy, same version.
            return Ok(updated(current));
        }
        if let Some(vs) = &changes.base_currency
            && *vs != current.base_currency
            && store::has_transactions(&mut *tx, current.id).await?
        {
            return Err(ApiError::Conflict {
                detail: "the base currency cannot change once the portfolio has transactions \
                         (their prices are in the current one)"
                    .into(),
                field: Some("base_currency"),
            }
            .into());
        }
        let row = store::update(&mut *tx, current.id, &changes).await?;
        tx.commit().await?;
        Ok(updated(row))
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
        let current = store::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        store::soft_delete(&mut *tx, current.id).await?;
        tx.commit().await?;
        tracing::info!(portfolio_id = %current.id, "portfolio deleted");
        Ok(NoContent::Done)
    }
}
