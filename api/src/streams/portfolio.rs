//! A portfolio's valuation, sent again after each price tick that touches its coins.

use std::collections::HashSet;

use poem_openapi::types::ToJSON;
use uuid::Uuid;

use super::client::Frame;
use super::hub::PriceTick;
use crate::app::AppState;
use crate::error::ApiError;
use crate::portfolios::current_valuation;
use crate::portfolios::model::Valuation;

/// One watched portfolio.
#[derive(Debug, Clone)]
pub struct PortfolioFeed {
    /// The portfolio.
    pub id: Uuid,
    user: Uuid,
    coins: HashSet<String>,
    currency: String,
}

impl PortfolioFeed {
    /// Starts watching `user`'s portfolio `id`, with its valuation now; `None` when it is not
    /// theirs (or not there).
    pub async fn open(
        state: &AppState,
        user: Uuid,
        id: Uuid,
    ) -> Result<Option<(Self, Frame)>, ApiError> {
        let mut feed = Self {
            id,
            user,
            coins: HashSet::new(),
            currency: String::new(),
        };
        Ok(feed.value(state).await?.map(|frame| (feed, frame)))
    }

    /// Whether `tick` may change the valuation.
    pub fn touched_by(&self, tick: &PriceTick) -> bool {
        tick.data.vs_currency == self.currency
            && tick
                .data
                .quotes
                .iter()
                .any(|quote| self.coins.contains(&quote.coin_id))
    }

    /// The valuation now, as a `valuation` frame; `None` once the portfolio is gone.
    pub async fn value(&mut self, state: &AppState) -> Result<Option<Frame>, ApiError> {
        let Some(valuation) = current_valuation(state, self.user, self.id).await? else {
            return Ok(None);
        };
        self.coins = valuation
            .holdings
            .iter()
            .map(|h| h.coin_id.clone())
            .collect();
        self.currency.clone_from(&valuation.base_currency);
        Ok(Some(frame(&valuation)))
    }
}

fn frame(valuation: &Valuation) -> Frame {
    Frame::new(
        "valuation",
        valuation.to_json().unwrap_or(serde_json::Value::Null),
    )
}
