//! A portfolio's valuation: `/api/v1/portfolios/{id}/valuation`.

use chrono::{DateTime, Utc};
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use uuid::Uuid;

use super::not_found;
use super::performance::{self, Interval, PortfolioPerformance};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::conditional::{self, Conditional};
use crate::portfolios::model::Valuation;
use crate::portfolios::prices::{self, Wanted};
use crate::portfolios::store;
use crate::portfolios::valuation::{self, LedgerError};

/// Valuation endpoints.
#[derive(Debug)]
pub struct ValuationApi {
    state: AppState,
}

impl ValuationApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

fn valuation_error(err: LedgerError) -> ApiError {
    ApiError::Internal(anyhow::anyhow!("valuation failed: {err}"))
}

#[OpenApi(prefix_path = "/api/v1/portfolios", tag = "ApiTags::Portfolios")]
impl ValuationApi {
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
    ///
    /// The `ETag` covers everything but `valued_at`: with `If-None-Match` the answer is `304`
    /// while neither the portfolio nor a price in it has changed.
    #[oai(path = "/:id/valuation", method = "get")]
    async fn valuation(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// The `ETag` of a copy the caller holds (`*` or a list also work).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<
        Conditional<Valuation>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND },
    > {
        current_valuation(&self.state, caller.0.id, id.0)
            .await?
            .map(|valuation| {
                let etag = conditional::content_etag(&valuation, &["valued_at"]);
                Conditional::new(valuation, etag, if_none_match.0.as_deref())
            })
            .ok_or_else(|| not_found().into())
    }

    /// A portfolio's value, net contributions and returns over time, and against a benchmark.
    ///
    /// One point per day (midnight UTC) or hour between `from` and `to` (both included, at
    /// most 1,000 points). Each point is valued with the stored price history at that instant
    /// (the latest price at most one interval older), never today's price for a past day; a
    /// held coin without one makes the point's `value` `null` and is listed in
    /// `missing_prices`. Gaps in a coin's history are first filled from the price provider.
    /// A transaction is a cash flow: a `buy` brings `quantity × price + fee`, a `sell` takes
    /// out `quantity × price − fee`, a transfer moves its coins at its own price or else the
    /// market price of its instant (its fee is money in). `cumulative_return_pct` is the
    /// time-weighted return (cash flows neutralised, comparable with `benchmark_return_pct`);
    /// the summary adds the money-weighted return (XIRR, annualised), the absolute P&L and each
    /// holding's contribution. Money has 8 decimal places and percentages 4, rounded half away
    /// from zero.
    #[oai(path = "/:id/performance", method = "get")]
    async fn performance(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// First instant (RFC 3339); default the first transaction (or 30 days before `to`).
        from: Query<Option<DateTime<Utc>>>,
        /// Last instant (RFC 3339); default now (a later one counts as now).
        to: Query<Option<DateTime<Utc>>>,
        /// `day` (default) or `hour`.
        interval: Query<Option<Interval>>,
        /// A coin to compare with, e.g. `bitcoin`, priced in the portfolio's base currency.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        benchmark: Query<Option<String>>,
    ) -> ApiResult<
        Json<PortfolioPerformance>,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND },
    > {
        let request = performance::Request {
            from: from.0,
            to: to.0,
            interval: interval.0.unwrap_or(Interval::Day),
            benchmark: benchmark.0,
        };
        performance::performance(&self.state, caller.0.id, id.0, request)
            .await?
            .map(Json)
            .ok_or_else(|| not_found().into())
    }
}

/// `user`'s portfolio `id` valued now, or `None` when it is not theirs (or not there).
pub async fn current_valuation(
    state: &AppState,
    user: Uuid,
    id: Uuid,
) -> Result<Option<Valuation>, ApiError> {
    let Some(portfolio) = store::find(&state.db, user, id).await? else {
        return Ok(None);
    };
    let method = portfolio.method();
    let ledgers = store::ledgers(&state.db, portfolio.id).await?;
    let mut positions = Vec::with_capacity(ledgers.len());
    for (coin_id, entries) in ledgers {
        let position = valuation::replay(method.into(), &entries).map_err(valuation_error)?;
        positions.push((coin_id, position));
    }
    let wanted: Vec<Wanted<'_>> = positions
        .iter()
        .map(|(coin_id, position)| Wanted {
            coin_id,
            held: !position.quantity.is_zero(),
        })
        .collect();
    let prices = prices::latest(state, &wanted, &portfolio.base_currency).await?;
    let valued = valuation::value_positions(positions, &prices).map_err(valuation_error)?;
    Ok(Some(Valuation {
        portfolio_id: portfolio.id,
        base_currency: portfolio.base_currency,
        cost_basis_method: method,
        valued_at: Utc::now(),
        holdings: valued.holdings,
        totals: valued.totals,
    }))
}
