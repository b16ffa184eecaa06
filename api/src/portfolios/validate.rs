//! Parsing of portfolio and transaction input: what passes here is valid everywhere after,
//! except for the over-sell rules, which need the ledger (see [`super::ledger`]).

use std::sync::LazyLock;

use chrono::{DateTime, TimeZone, Utc};
use common::market::PriceProvider;
use regex::Regex;
use rust_decimal::Decimal;

use super::model::CreateTransactionRequest;
use super::store::NewTransaction;
use super::valuation::{Entry, Side};
use crate::error::{ApiError, FieldError};
use crate::market::{CURRENCY_MESSAGE, parse_coin_id, parse_vs_currency};
use crate::users::validate::SURROUNDING_SPACE;

/// Clock skew tolerated on `executed_at` before it counts as "in the future".
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// Upper bound (exclusive) of a quantity, and of `quantity × price + fee`: far beyond any
/// real holding, and low enough that sums over millions of transactions stay exact.
const MAX_TOTAL: Decimal = Decimal::from_parts(0x6310_0000, 0x6bc7_5e2d, 0x5, false, 0); // 10^20
/// Upper bound (exclusive) of a price or fee.
const MAX_PRICE: Decimal = Decimal::from_parts(0xa4c6_8000, 0x38d7e, 0, false, 0); // 10^15
/// Longest note.
const MAX_NOTE_CHARS: usize = 1000;

/// A portfolio name: up to 100 characters without control characters, neither
/// starting nor ending with whitespace once surrounding ASCII spaces, tabs and line breaks are
/// dropped. The OpenAPI document states this very pattern.
pub const NAME_PATTERN: &str = r"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f]([^\x00-\x1f\x7f-\x9f]{0,98}[^\s\x00-\x1f\x7f-\x9f])?[ \t\n\r]*$";

/// What [`NAME_PATTERN`] means.
pub const NAME_MESSAGE: &str =
    "must be 1 to 100 characters without control characters (surrounding spaces aside)";

static NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(NAME_PATTERN).expect("the name pattern compiles"));

/// A portfolio name ([`NAME_PATTERN`]), trimmed.
pub fn name(raw: &str) -> Result<String, FieldError> {
    if NAME.is_match(raw) {
        Ok(raw.trim_matches(SURROUNDING_SPACE).to_owned())
    } else {
        Err(FieldError::new("name", NAME_MESSAGE))
    }
}

/// A base currency (default `usd`), lower-cased: one the price provider quotes in.
pub fn base_currency(prices: &PriceProvider, raw: Option<&str>) -> Result<String, ApiError> {
    let vs =
        parse_vs_currency(raw).map_err(|_| ApiError::invalid("base_currency", CURRENCY_MESSAGE))?;
    if prices.accepts_currency(&vs) {
        Ok(vs)
    } else {
        Err(ApiError::invalid(
            "base_currency",
            format!("{vs:?} is not supported by the price provider"),
        ))
    }
}

/// Collects field errors, then fails with all of them at once.
#[derive(Debug, Default)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    /// The value, or `None` with its error kept.
    pub fn take<T>(&mut self, result: Result<T, FieldError>) -> Option<T> {
        result.map_err(|err| self.0.push(err)).ok()
    }

    /// Like [`take`](Self::take) for a parse that fails with an [`ApiError`]: its field errors
    /// are kept, any other error is returned at once.
    pub fn take_api<T>(&mut self, result: Result<T, ApiError>) -> Result<Option<T>, ApiError> {
        match result {
            Ok(value) => Ok(Some(value)),
            Err(ApiError::Validation(mut errors)) => {
                self.0.append(&mut errors);
                Ok(None)
            }
            Err(other) => Err(other),
        }
    }

    /// Adds an error.
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError::new(field, message));
    }

    /// `Ok` when no error was kept; otherwise a 422 listing them all.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::Validation(self.0))
        }
    }
}

/// A new transaction, valid in itself: what is left to check needs the ledger.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTransaction {
    pub coin_id: String,
    pub side: Side,
    pub quantity: Decimal,
    pub price: Decimal,
    pub fee: Decimal,
    pub executed_at: DateTime<Utc>,
    pub note: Option<String>,
}

impl ValidTransaction {
    /// What it does to the holding.
    pub fn entry(&self) -> Entry {
        Entry {
            side: self.side,
            quantity: self.quantity,
            price: self.price,
            fee: self.fee,
        }
    }

    /// The row to insert.
    pub fn as_new(&self) -> NewTransaction<'_> {
        NewTransaction {
            coin_id: &self.coin_id,
            side: self.side,
            quantity: self.quantity,
            price: self.price,
            fee: self.fee,
            executed_at: self.executed_at,
            note: self.note.as_deref(),
        }
    }
}

/// The earliest `executed_at` accepted: the day of Bitcoin's first block.
fn earliest_execution() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2009, 1, 3, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// Validates a new transaction against everything but the ledger; `now` is the default
/// `executed_at` and the bound of the future.
pub fn transaction(
    request: &CreateTransactionRequest,
    now: DateTime<Utc>,
) -> Result<ValidTransaction, ApiError> {
    let mut problems = FieldErrors::default();
    let coin_id = problems.take_api(parse_coin_id("coin_id", &request.coin_id))?;
    let side = Side::from(request.side);
    let quantity = request.quantity.0;
    if quantity <= Decimal::ZERO {
        problems.push("quantity", "must be greater than 0");
    } else if quantity >= MAX_TOTAL {
        problems.push("quantity", "must be less than 10^20");
    }
    let price = match (request.price, side) {
        (Some(price), _) => price.0,
        (None, Side::Buy | Side::Sell) => {
            problems.push("price", "is required for buy and sell");
            Decimal::ZERO
        }
        (None, _) => Decimal::ZERO,
    };
    if price < Decimal::ZERO {
        problems.push("price", "must be at least 0");
    } else if price >= MAX_PRICE {
        problems.push("price", "must be less than 10^15");
    }
    let fee = request.fee.map_or(Decimal::ZERO, |fee| fee.0);
    if fee < Decimal::ZERO {
        problems.push("fee", "must be at least 0");
    } else if fee >= MAX_PRICE {
        problems.push("fee", "must be less than 10^15");
    }
    let executed_at = request.executed_at.unwrap_or(now);
    if executed_at > now + CLOCK_SKEW {
        problems.push("executed_at", "must not be in the future");
    } else if executed_at < earliest_execution() {
        problems.push(
            "executed_at",
            "must not be before 2009-01-03 (the first Bitcoin block)",
        );
    }
    if request
        .note
        .as_deref()
        .is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS)
    {
        problems.push(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        );
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
    Ok(ValidTransaction {
        coin_id: coin_id.unwrap_or_default(),
        side,
        quantity,
        price,
        fee,
        executed_at,
        note: note.map(str::to_owned),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portfolios::amount::UnsignedDec;
    use crate::portfolios::model::TransactionSide;

    #[test]
    fn bounds_are_the_powers_of_ten_they_claim() {
        assert_eq!(MAX_TOTAL, Decimal::from_i128_with_scale(10_i128.pow(20), 0));
        assert_eq!(MAX_PRICE, Decimal::from_i128_with_scale(10_i128.pow(15), 0));
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(name("  Long term \t").as_deref(), Ok("Long term"));
        assert_eq!(name(&"x".repeat(100)).map(|n| n.len()), Ok(100));
        for bad in ["", "   ", "tab\there", &"x".repeat(101)] {
            assert!(name(bad).is_err(), "{bad:?} should be refused");
        }
    }

    fn request(
        side: TransactionSide,
        quantity: i64,
        price: Option<i64>,
    ) -> CreateTransactionRequest {
        CreateTransactionRequest {
            coin_id: "bitcoin".into(),
            side,
            quantity: UnsignedDec(Decimal::from(quantity)),
            price: price.map(|p| UnsignedDec(Decimal::from(p))),
            fee: None,
            executed_at: None,
            note: Some("  ".into()),
        }
    }

    #[test]
    fn transactions_get_their_defaults() {
        let now = Utc::now();
        let got = transaction(&request(TransactionSide::TransferIn, 2, None), now)
            .expect("a transfer needs no price");
        assert_eq!(got.price, Decimal::ZERO);
        assert_eq!(got.fee, Decimal::ZERO);
        assert_eq!(got.executed_at, now);
        assert_eq!(got.note, None, "a blank note is no note");
    }

    #[test]
    fn every_bad_field_is_reported_at_once() {
        let mut bad = request(TransactionSide::Sell, 0, None);
        bad.executed_at = Some(Utc::now() + chrono::Duration::hours(1));
        let Err(ApiError::Validation(errors)) = transaction(&bad, Utc::now()) else {
            panic!("refused");
        };
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["quantity", "price", "executed_at"]);
    }
}
