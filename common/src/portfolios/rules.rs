//! What a transaction may be, wherever it comes from (a request, an edit, a row of an imported
//! file), and the over-sell rule on a coin's ledger. No I/O: the caller says what "now" is and
//! reads the ledger.

use chrono::{DateTime, TimeZone, Utc};
use rust_decimal::Decimal;

use super::Side;

/// Clock skew tolerated on `executed_at` before it counts as "in the future".
pub const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(60);
/// Upper bound (exclusive) of a quantity, and of `quantity × price + fee`: far beyond any
/// real holding, and low enough that sums over millions of transactions stay exact.
pub const MAX_TOTAL: Decimal = Decimal::from_parts(0x6310_0000, 0x6bc7_5e2d, 0x5, false, 0); // 10^20
/// Upper bound (exclusive) of a price or fee.
pub const MAX_PRICE: Decimal = Decimal::from_parts(0xa4c6_8000, 0x38d7e, 0, false, 0); // 10^15
/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 1000;
/// Longest coin id.
pub const MAX_COIN_ID_CHARS: usize = 100;
/// What a coin id must be (the API's `COIN_ID_PATTERN` says the same).
pub const COIN_ID_RULE: &str =
    "must be a coin id: 1–100 lower-case letters, digits, '-', '_' or '.'";

/// Whether `raw` is a coin id: 1–100 of `a-z`, `0-9`, `-`, `_`, `.`.
pub fn is_coin_id(raw: &str) -> bool {
    (1..=MAX_COIN_ID_CHARS).contains(&raw.len())
        && raw.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// The earliest `executed_at` accepted: the day of Bitcoin's first block.
pub fn earliest_execution() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2009, 1, 3, 0, 0, 0)
        .single()
        .unwrap_or_default()
}

/// A transaction as given, before any rule: absent fields get their defaults when valid.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft<'a> {
    /// The coin's id.
    pub coin_id: &'a str,
    /// Buy, sell or transfer.
    pub side: Side,
    /// Units.
    pub quantity: Decimal,
    /// Price per unit; required for buys and sells, 0 for transfers when absent.
    pub price: Option<Decimal>,
    /// Fee; 0 when absent.
    pub fee: Option<Decimal>,
    /// When it happened; "now" when absent.
    pub executed_at: Option<DateTime<Utc>>,
    /// Free text; blank is none.
    pub note: Option<&'a str>,
}

/// A transaction valid in itself: what is left to check needs the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ValidTransaction {
    /// The coin's id (not yet known to exist).
    pub coin_id: String,
    /// Buy, sell or transfer.
    pub side: Side,
    /// Units, > 0.
    pub quantity: Decimal,
    /// Price per unit, ≥ 0.
    pub price: Decimal,
    /// Fee, ≥ 0.
    pub fee: Decimal,
    /// When it happened.
    pub executed_at: DateTime<Utc>,
    /// Free text, trimmed, never blank.
    pub note: Option<String>,
}

/// One broken rule: the field and what it must be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The field, as the API names it (`quantity`, `executed_at`, …).
    pub field: &'static str,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

/// Checks `draft` against every rule but the ledger's and reports every broken one at once;
/// `now` is the default `executed_at` and the bound of the future.
pub fn validate(draft: &Draft<'_>, now: DateTime<Utc>) -> Result<ValidTransaction, Vec<Problem>> {
    let mut problems = Vec::new();
    if !is_coin_id(draft.coin_id) {
        problems.push(Problem::new("coin_id", COIN_ID_RULE));
    }
    let quantity = draft.quantity;
    if quantity <= Decimal::ZERO {
        problems.push(Problem::new("quantity", "must be greater than 0"));
    } else if quantity >= MAX_TOTAL {
        problems.push(Problem::new("quantity", "must be less than 10^20"));
    }
    let price = match (draft.price, draft.side) {
        (Some(price), _) => price,
        (None, Side::Buy | Side::Sell) => {
            problems.push(Problem::new("price", "is required for buy and sell"));
            Decimal::ZERO
        }
        (None, _) => Decimal::ZERO,
    };
    if price < Decimal::ZERO {
        problems.push(Problem::new("price", "must be at least 0"));
    } else if price >= MAX_PRICE {
        problems.push(Problem::new("price", "must be less than 10^15"));
    }
    let fee = draft.fee.unwrap_or(Decimal::ZERO);
    if fee < Decimal::ZERO {
        problems.push(Problem::new("fee", "must be at least 0"));
    } else if fee >= MAX_PRICE {
        problems.push(Problem::new("fee", "must be less than 10^15"));
    }
    let executed_at = draft.executed_at.unwrap_or(now);
    if executed_at > now + CLOCK_SKEW {
        problems.push(Problem::new("executed_at", "must not be in the future"));
    } else if executed_at < earliest_execution() {
        problems.push(Problem::new(
            "executed_at",
            "must not be before 2009-01-03 (the first Bitcoin block)",
        ));
    }
    if draft
        .note
        .is_some_and(|note| note.chars().count() > MAX_NOTE_CHARS)
    {
        problems.push(Problem::new(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        ));
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let total = quantity
        .checked_mul(price)
        .and_then(|gross| gross.checked_add(fee))
        .filter(|total| *total < MAX_TOTAL);
    if total.is_none() {
        return Err(vec![Problem::new(
            "quantity",
            "quantity × price + fee must be less than 10^20",
        )]);
    }
    let note = draft.note.map(str::trim).filter(|note| !note.is_empty());
    Ok(ValidTransaction {
        coin_id: draft.coin_id.to_owned(),
        side: draft.side,
        quantity,
        price,
        fee,
        executed_at,
        note: note.map(str::to_owned),
    })
}

/// A holding too large to compute exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an amount is too large to compute exactly")]
pub struct Overflow;

/// Where a ledger's holding first goes negative, if it does: the index of the flow that takes
/// out more than is held, and the holding just before it. `flows` are in ledger order.
pub fn first_shortfall(
    flows: impl IntoIterator<Item = (Side, Decimal)>,
) -> Result<Option<(usize, Decimal)>, Overflow> {
    let mut held = Decimal::ZERO;
    for (index, (side, quantity)) in flows.into_iter().enumerate() {
        if side.is_inflow() {
            held = held.checked_add(quantity).ok_or(Overflow)?;
        } else if quantity > held {
            return Ok(Some((index, held)));
        } else {
            held -= quantity;
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_the_powers_of_ten_they_claim() {
        assert_eq!(MAX_TOTAL, Decimal::from_i128_with_scale(10_i128.pow(20), 0));
        assert_eq!(MAX_PRICE, Decimal::from_i128_with_scale(10_i128.pow(15), 0));
    }

    #[test]
    fn coin_ids_are_lower_case_words() {
        for good in ["bitcoin", "usd-coin", "a.b_c", "0x"] {
            assert!(is_coin_id(good), "{good}");
        }
        for bad in ["", "Bitcoin", "bit coin", "é", &"x".repeat(101)] {
            assert!(!is_coin_id(bad), "{bad}");
        }
    }

    fn draft(side: Side, quantity: i64, price: Option<i64>) -> Draft<'static> {
        Draft {
            coin_id: "bitcoin",
            side,
            quantity: Decimal::from(quantity),
            price: price.map(Decimal::from),
            fee: None,
            executed_at: None,
            note: Some("  "),
        }
    }

    #[test]
    fn defaults_fill_what_is_absent() {
        let now = Utc::now();
        let got = validate(&draft(Side::TransferIn, 2, None), now).expect("valid");
        assert_eq!(
            (got.price, got.fee, got.executed_at),
            (Decimal::ZERO, Decimal::ZERO, now)
        );
        assert_eq!(got.note, None, "a blank note is no note");
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        let mut bad = draft(Side::Sell, 0, None);
        bad.coin_id = "BTC";
        bad.executed_at = Some(Utc::now() + chrono::Duration::hours(1));
        let problems = validate(&bad, Utc::now()).expect_err("refused");
        let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
        assert_eq!(fields, ["coin_id", "quantity", "price", "executed_at"]);
    }

    #[test]
    fn a_shortfall_is_found_where_the_holding_goes_negative() {
        let d = Decimal::from;
        let flows = [
            (Side::Buy, d(2)),
            (Side::Sell, d(1)),
            (Side::TransferOut, d(1)),
            (Side::Sell, d(1)),
        ];
        assert_eq!(first_shortfall(flows), Ok(Some((3, Decimal::ZERO))));
        assert_eq!(first_shortfall(flows[..3].iter().copied()), Ok(None));
    }
}
