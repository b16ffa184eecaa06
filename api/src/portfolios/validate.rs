//! Parsing of portfolio and transaction input: what passes here is valid everywhere after,
//! except for the over-sell rules, which need the ledger (see [`super::ledger`]).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use common::market::PriceProvider;
use common::portfolios::rules;
use regex::Regex;

use super::model::CreateTransactionRequest;
use super::valuation::Side;
use crate::error::{ApiError, FieldError};
use crate::market::{CURRENCY_MESSAGE, parse_vs_currency};
use crate::users::validate::SURROUNDING_SPACE;

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
pub use common::portfolios::rules::ValidTransaction;

/// Validates a new transaction against everything but the ledger (the rules imports follow
/// too); `now` is the default `executed_at` and the bound of the future.
pub fn transaction(
    request: &CreateTransactionRequest,
    now: DateTime<Utc>,
) -> Result<ValidTransaction, ApiError> {
    let draft = rules::Draft {
        coin_id: &request.coin_id,
        side: Side::from(request.side),
        quantity: request.quantity.0,
        price: request.price.map(|price| price.0),
        fee: request.fee.map(|fee| fee.0),
        executed_at: request.executed_at,
        note: request.note.as_deref(),
    };
    rules::validate(&draft, now).map_err(|problems| {
        ApiError::Validation(
            problems
                .into_iter()
                .map(|problem| FieldError::new(problem.field, problem.message))
                .collect(),
        )
    })
}

#[cfg(test)]
mod tests {
    use rust_decimal::Decimal;

    use super::*;
    use crate::portfolios::amount::UnsignedDec;
    use crate::portfolios::model::TransactionSide;

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
