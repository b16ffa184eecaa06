//! Portfolio, transaction and valuation shapes as the API shows them, and the rows behind them.

use chrono::{DateTime, Utc};
use poem_openapi::types::{Example, MaybeUndefined};
use poem_openapi::{Enum, Object};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::amount::{Dec, UnsignedDec};
use super::valuation::{Method, Side};
use crate::platform::example_time;

/// How the cost of units sold or transferred out is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum CostBasisMethod {
    /// Every unit carries the holding's average cost (the default).
    Average,
    /// First in, first out: units leave in the order they arrived.
    Fifo,
}

impl CostBasisMethod {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Average => "average",
            Self::Fifo => "fifo",
        }
    }

    /// Parses the stored name (the column's CHECK allows only these two).
    pub fn from_db(name: &str) -> Self {
        if name == "fifo" {
            Self::Fifo
        } else {
            Self::Average
        }
    }
}

impl From<CostBasisMethod> for Method {
    fn from(method: CostBasisMethod) -> Self {
        match method {
            CostBasisMethod::Average => Self::Average,
            CostBasisMethod::Fifo => Self::Fifo,
        }
    }
}

/// What a transaction does to a holding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum TransactionSide {
    /// Bought: adds `quantity` at `quantity × price + fee`.
    Buy,
    /// Sold: removes `quantity`; proceeds `quantity × price − fee`.
    Sell,
    /// Received from elsewhere: adds `quantity` at `quantity × price + fee`, `price` 0 unless given.
    TransferIn,
    /// Sent elsewhere: removes `quantity` and its cost basis; no proceeds, the fee is a realised loss.
    TransferOut,
}

impl From<TransactionSide> for Side {
    fn from(side: TransactionSide) -> Self {
        match side {
            TransactionSide::Buy => Self::Buy,
            TransactionSide::Sell => Self::Sell,
            TransactionSide::TransferIn => Self::TransferIn,
            TransactionSide::TransferOut => Self::TransferOut,
        }
    }
}

impl From<Side> for TransactionSide {
    fn from(side: Side) -> Self {
        match side {
            Side::Buy => Self::Buy,
            Side::Sell => Self::Sell,
            Side::TransferIn => Self::TransferIn,
            Side::TransferOut => Self::TransferOut,
        }
    }
}

/// What a portfolio list is sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum PortfolioSort {
    /// Creation time (the default).
    CreatedAt,
    /// Name, regardless of case.
    Name,
    /// Time of the last change.
    UpdatedAt,
}

impl PortfolioSort {
    /// The name the list query switches on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreatedAt => "created_at",
            Self::Name => "name",
            Self::UpdatedAt => "updated_at",
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending.
    Desc,
}

impl SortOrder {
    /// The name the list queries switch on.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asc => "asc",
            Self::Desc => "desc",
        }
    }
}

/// A row of `portfolios` (never a deleted one).
#[derive(Debug, Clone)]
pub struct PortfolioRow {
    pub id: Uuid,
    pub name: String,
    pub base_currency: String,
    pub cost_basis_method: String,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl PortfolioRow {
    /// The strong ETag of this version.
    pub fn etag(&self) -> String {
        crate::platform::conditional::etag(self.version)
    }

    /// The cost-basis method.
    pub fn method(&self) -> CostBasisMethod {
        CostBasisMethod::from_db(&self.cost_basis_method)
    }
}

/// A portfolio.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Portfolio {
    /// The portfolio's id.
    pub id: Uuid,
    /// Its name, unique among the owner's portfolios regardless of case.
    pub name: String,
    /// The currency prices, costs and values are in, e.g. `usd`.
    pub base_currency: String,
    /// How the cost of units sold is measured.
    pub cost_basis_method: CostBasisMethod,
    /// Changes with every update; the `ETag` header is this number in quotes.
    pub version: i32,
    /// When it was created.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub updated_at: DateTime<Utc>,
}

impl Example for Portfolio {
    fn example() -> Self {
        Self {
            id: Uuid::nil(),
            name: "Long term".into(),
            base_currency: "usd".into(),
            cost_basis_method: CostBasisMethod::Average,
            version: 1,
            created_at: example_time(),
            updated_at: example_time(),
        }
    }
}

impl From<PortfolioRow> for Portfolio {
    fn from(row: PortfolioRow) -> Self {
        Self {
            cost_basis_method: row.method(),
            id: row.id,
            name: row.name,
            base_currency: row.base_currency,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new portfolio.
#[derive(Debug, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct CreatePortfolioRequest {
    /// 1–100 characters without control characters (surrounding spaces are dropped), unique
    /// among the caller's portfolios regardless of case.
    #[oai(validator(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$"
    ))]
    pub name: String,
    /// Currency of prices and values (any case); one the price provider quotes in. Default
    /// `usd`.
    #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
    pub base_currency: Option<String>,
    /// Default `average`.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub cost_basis_method: Option<CostBasisMethod>,
}

impl Example for CreatePortfolioRequest {
    fn example() -> Self {
        Self {
            name: "Long term".into(),
            base_currency: Some("usd".into()),
            cost_basis_method: Some(CostBasisMethod::Fifo),
        }
    }
}

/// Changes to a portfolio (a merge patch): omitted or `null` fields stay as they are.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdatePortfolioRequest {
    /// New name (as for creating).
    #[oai(validator(
        pattern = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$"
    ))]
    pub name: Option<String>,
    /// New base currency (as for creating); only while the portfolio has no transactions
    /// (their prices are in the old one), otherwise 409.
    #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
    pub base_currency: Option<String>,
    /// New cost-basis method; valuation follows it at once.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub cost_basis_method: Option<CostBasisMethod>,
}

impl Example for UpdatePortfolioRequest {
    fn example() -> Self {
        Self {
            name: Some("Retirement".into()),
            base_currency: None,
            cost_basis_method: Some(CostBasisMethod::Average),
        }
    }
}

/// A row of `portfolio_transactions`.
#[derive(Debug, Clone)]
pub struct TransactionRow {
    pub id: Uuid,
    pub portfolio_id: Uuid,
    pub coin_id: String,
    pub side: String,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub executed_at: DateTime<Utc>,
    pub note: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// A transaction. Amounts are exact decimal strings, in the portfolio's base currency.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Transaction {
    /// The transaction's id.
    pub id: Uuid,
    /// The portfolio it belongs to.
    pub portfolio_id: Uuid,
    /// Coin id, e.g. `bitcoin`.
    pub coin_id: String,
    /// What it does to the holding.
    pub side: TransactionSide,
    /// Units of the coin, exactly as given.
    pub quantity: Dec,
    /// Price per unit.
    pub price: Dec,
    /// Fee paid, in the base currency.
    pub fee: Dec,
    /// When it happened.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub executed_at: DateTime<Utc>,
    /// The caller's note.
    pub note: Option<String>,
    /// When it was recorded.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
}

impl Example for Transaction {
    fn example() -> Self {
        Self {
            id: Uuid::nil(),
            portfolio_id: Uuid::nil(),
            coin_id: "bitcoin".into(),
            side: TransactionSide::Buy,
            quantity: Dec(Decimal::new(125, 3)),
            price: Dec(Decimal::new(6_712_345, 2)),
            fee: Dec(Decimal::new(499, 2)),
            executed_at: example_time(),
            note: Some("DCA".into()),
            created_at: example_time(),
        }
    }
}

impl TryFrom<TransactionRow> for Transaction {
    type Error = crate::error::ApiError;

    fn try_from(row: TransactionRow) -> Result<Self, Self::Error> {
        let side = Side::from_db(&row.side).ok_or_else(|| {
            crate::error::ApiError::Internal(anyhow::anyhow!(
                "unknown transaction side {:?}",
                row.side
            ))
        })?;
        Ok(Self {
            id: row.id,
            portfolio_id: row.portfolio_id,
            side: side.into(),
            coin_id: row.coin_id,
            quantity: Dec(row.quantity),
            price: Dec(row.price),
            fee: Dec(row.fee),
            executed_at: row.executed_at,
            note: row.note,
            created_at: row.created_at,
        })
    }
}

/// A new transaction. Amounts are decimal strings (JSON numbers are refused: they may already
/// have lost digits), with at most 18 digits after the point and 28 in all.
#[derive(Debug, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct CreateTransactionRequest {
    /// Coin id, e.g. `bitcoin`; unknown coins are refused (422).
    #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
    pub coin_id: String,
    /// `buy`, `sell`, `transfer_in` or `transfer_out`.
    pub side: TransactionSide,
    /// Units, greater than 0. A `sell` or `transfer_out` may not exceed the holding at
    /// `executed_at`, nor leave a later one short (422).
    pub quantity: UnsignedDec,
    /// Price per unit in the base currency, at least 0. Required for `buy` and `sell`; for
    /// transfers it defaults to 0 (a `transfer_in` is at zero cost basis unless a price is
    /// given; a `transfer_out`'s price is kept for the record only).
    pub price: Option<UnsignedDec>,
    /// Fee in the base currency, at least 0 (default 0). Counts in the cost basis of buys and
    /// transfers in, reduces a sale's proceeds, and is a realised loss on a transfer out.
    pub fee: Option<UnsignedDec>,
    /// When it happened (RFC 3339), default now; not in the future (a minute of clock skew is
    /// tolerated).
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub executed_at: Option<DateTime<Utc>>,
    /// Up to 1000 characters; surrounding whitespace is dropped.
    #[oai(validator(max_length = 1000))]
    pub note: Option<String>,
}

impl Example for CreateTransactionRequest {
    fn example() -> Self {
        Self {
            coin_id: "bitcoin".into(),
            side: TransactionSide::Buy,
            quantity: UnsignedDec(Decimal::new(125, 3)),
            price: Some(UnsignedDec(Decimal::new(6_712_345, 2))),
            fee: Some(UnsignedDec(Decimal::new(499, 2))),
            executed_at: Some(example_time()),
            note: Some("DCA".into()),
        }
    }
}

/// Changes to a transaction: every field is optional and keeps its value when absent; the
/// result must satisfy the same rules as a new transaction.
#[derive(Debug, Object, Serialize, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateTransactionRequest {
    /// As for creating (moving a transaction to another coin replays both ledgers).
    #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub coin_id: Option<String>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub side: Option<TransactionSide>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub quantity: Option<UnsignedDec>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub price: Option<UnsignedDec>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub fee: Option<UnsignedDec>,
    /// As for creating.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub executed_at: Option<DateTime<Utc>>,
    /// As for creating; `null` removes the note.
    #[oai(validator(max_length = 1000))]
    #[serde(default)]
    pub note: MaybeUndefined<String>,
}

impl Example for UpdateTransactionRequest {
    fn example() -> Self {
        Self {
            coin_id: None,
            side: None,
            quantity: Some(UnsignedDec(Decimal::new(15, 2))),
            price: None,
            fee: Some(UnsignedDec(Decimal::new(250, 2))),
            executed_at: None,
            note: MaybeUndefined::Value("corrected from the exchange's statement".into()),
        }
    }
}

impl UpdateTransactionRequest {
    /// The transaction `current` would become, as a create request (validated the same way).
    pub fn applied_to(&self, current: &Transaction) -> CreateTransactionRequest {
        CreateTransactionRequest {
            coin_id: self
                .coin_id
                .clone()
                .unwrap_or_else(|| current.coin_id.clone()),
            side: self.side.unwrap_or(current.side),
            quantity: self.quantity.unwrap_or(UnsignedDec(current.quantity.0)),
            price: Some(self.price.unwrap_or(UnsignedDec(current.price.0))),
            fee: Some(self.fee.unwrap_or(UnsignedDec(current.fee.0))),
            executed_at: Some(self.executed_at.unwrap_or(current.executed_at)),
            note: match &self.note {
                MaybeUndefined::Undefined => current.note.clone(),
                MaybeUndefined::Null => None,
                MaybeUndefined::Value(note) => Some(note.clone()),
            },
        }
    }
}

/// One holding's figures. Quantities and prices are exact; money is rounded to 8 decimal
/// places, `avg_cost` to 18 and percentages to 4, half away from zero.
#[derive(Debug, Clone, PartialEq, Object)]
#[oai(example)]
pub struct Holding {
    /// Coin id.
    pub coin_id: String,
    /// Units held now (exact). 0 for a closed position, listed for its realised P&L.
    pub quantity: Dec,
    /// Cost basis per unit held, per the portfolio's method; null when nothing is held.
    pub avg_cost: Option<Dec>,
    /// What the units held cost, fees included.
    pub cost_basis: Dec,
    /// The latest price per unit in the base currency; null when none is known.
    pub price: Option<Dec>,
    /// `quantity × price`; null when the price is missing.
    pub value: Option<Dec>,
    /// `value − cost_basis`; null when the price is missing.
    pub unrealized_pnl: Option<Dec>,
    /// `unrealized_pnl / cost_basis × 100`; null without a price or with a zero cost basis.
    pub unrealized_pnl_pct: Option<Dec>,
    /// Gains and losses of everything sold or transferred out so far.
    pub realized_pnl: Dec,
    /// The price's change over 24 hours, in percent, when the provider reports it.
    pub change_24h_pct: Option<Dec>,
    /// Share of `total_value`, in percent; the priced holdings' shares sum to exactly 100.
    pub allocation_pct: Option<Dec>,
    /// When the provider last updated the price.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub price_updated_at: Option<DateTime<Utc>>,
    /// No price is known for this coin: it is listed, but left out of value totals.
    pub price_missing: bool,
}

impl Example for Holding {
    fn example() -> Self {
        Self {
            coin_id: "bitcoin".into(),
            quantity: Dec(Decimal::new(175, 2)),
            avg_cost: Some(Dec(Decimal::new(8_325, 2))),
            cost_basis: Dec(Decimal::new(1_456_875, 4)),
            price: Some(Dec(Decimal::new(160, 0))),
            value: Some(Dec(Decimal::new(280, 0))),
            unrealized_pnl: Some(Dec(Decimal::new(1_343_125, 4))),
            unrealized_pnl_pct: Some(Dec(Decimal::new(921_922, 4))),
            realized_pnl: Dec(Decimal::new(569, 1)),
            change_24h_pct: Some(Dec(Decimal::new(-12_345, 4))),
            allocation_pct: Some(Dec(Decimal::new(848_485, 4))),
            price_updated_at: Some(example_time()),
            price_missing: false,
        }
    }
}

/// The portfolio's totals: sums of the holdings' rounded figures, so they add up as shown.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct ValuationTotals {
    /// Value of the priced holdings.
    pub total_value: Dec,
    /// Cost basis of every holding, priced or not.
    pub total_cost: Dec,
    /// `total_value` minus the priced holdings' cost basis.
    pub unrealized_pnl: Dec,
    /// `unrealized_pnl` over the priced holdings' cost basis, in percent; null when that is 0.
    pub unrealized_pnl_pct: Option<Dec>,
    /// Realised P&L of every holding.
    pub realized_pnl: Dec,
    /// Some open holding has no price, so `total_value` and `unrealized_pnl` leave it out.
    pub partial: bool,
    /// The coins of those holdings.
    pub missing_prices: Vec<String>,
}

impl Example for ValuationTotals {
    fn example() -> Self {
        Self {
            total_value: Dec(Decimal::new(330, 0)),
            total_cost: Dec(Decimal::new(2_526_875, 4)),
            unrealized_pnl: Dec(Decimal::new(843_125, 4)),
            unrealized_pnl_pct: Some(Dec(Decimal::new(34_317, 3))),
            realized_pnl: Dec(Decimal::new(589, 1)),
            partial: true,
            missing_prices: vec!["some-new-coin".into()],
        }
    }
}

/// A portfolio's holdings valued at the latest prices.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Valuation {
    /// The portfolio.
    pub portfolio_id: Uuid,
    /// Currency of every amount.
    pub base_currency: String,
    /// How cost basis was measured.
    pub cost_basis_method: CostBasisMethod,
    /// When this valuation was computed.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub valued_at: DateTime<Utc>,
    /// One entry per coin ever held: largest value first, holdings without a price last,
    /// then by coin id.
    pub holdings: Vec<Holding>,
    /// Totals.
    pub totals: ValuationTotals,
}

impl Example for Valuation {
    fn example() -> Self {
        Self {
            portfolio_id: Uuid::nil(),
            base_currency: "usd".into(),
            cost_basis_method: CostBasisMethod::Average,
            valued_at: example_time(),
            holdings: vec![Holding::example()],
            totals: ValuationTotals::example(),
        }
    }
}
