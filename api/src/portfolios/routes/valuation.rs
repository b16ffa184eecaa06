//! A portfolio's valuation: `/api/v1/portfolios/{id}/valuation`.

use chrono::Utc;
use poem_openapi::OpenApi;
use poem_openapi::param::{Header, Path};
use uuid::Uuid;

use super::not_found;
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
