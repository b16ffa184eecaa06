//! Checks on alert fields, shared by create and update.

use chrono::{DateTime, Utc};
use common::alerts::{Condition, Trigger};
use common::market::PriceProvider;
use rust_decimal::Decimal;

use crate::error::ApiError;
use crate::market::{CURRENCY_MESSAGE, parse_coin_id, parse_vs_currency};
use crate::portfolios::validate::FieldErrors;

/// Longest note, in characters.
pub const MAX_NOTE_CHARS: usize = 280;

/// Highest price target (as for transaction prices).
fn max_price() -> Decimal {
    Decimal::from(1_000_000_000_000_000_i64)
}

/// A coin id.
pub fn coin_id(problems: &mut FieldErrors, raw: &str) -> Result<Option<String>, ApiError> {
    problems.take_api(parse_coin_id("coin_id", raw))
}

/// A quote currency the provider quotes in, lower-cased.
pub fn vs_currency(
    problems: &mut FieldErrors,
    prices: &PriceProvider,
    raw: Option<&str>,
) -> Option<String> {
    match parse_vs_currency(raw) {
        Ok(vs) if prices.accepts_currency(&vs) => Some(vs),
        Ok(vs) => {
            problems.push(
                "vs_currency",
                format!("{vs:?} is not supported by the price provider"),
            );
            None
        }
        Err(_) => {
            problems.push("vs_currency", CURRENCY_MESSAGE);
            None
        }
    }
}

/// A target that makes sense for `condition`.
pub fn target(problems: &mut FieldErrors, condition: Condition, target: Decimal) {
    if condition.watches_change() {
        if target < Decimal::from(-100) || target > Decimal::from(100_000) {
            problems.push("target", "must be a change in percent from -100 to 100000");
        }
    } else if target <= Decimal::ZERO {
        problems.push("target", "must be a price greater than 0");
    } else if target >= max_price() {
        problems.push("target", "must be less than 10^15");
    }
}

/// A cooldown only applies to alerts that fire more than once.
pub fn cooldown(problems: &mut FieldErrors, trigger: Trigger, cooldown: Option<i32>) {
    if let Some(seconds) = cooldown {
        if !(1..=2_592_000).contains(&seconds) {
            problems.push("cooldown", "must be from 1 to 2592000 seconds (30 days)");
        } else if trigger == Trigger::Once {
            problems.push(
                "cooldown",
                "only applies to every_crossing alerts (a once alert fires once)",
            );
        }
    }
}

/// An expiry in the future.
pub fn expires_at(problems: &mut FieldErrors, at: Option<DateTime<Utc>>, now: DateTime<Utc>) {
    if at.is_some_and(|at| at <= now) {
        problems.push("expires_at", "must be in the future");
    }
}

/// A note: trimmed, at most 280 characters, no control characters; empty means none.
pub fn note(problems: &mut FieldErrors, raw: Option<&str>) -> Option<String> {
    let note = raw.map(str::trim).filter(|note| !note.is_empty())?;
    if note.chars().count() > MAX_NOTE_CHARS {
        problems.push(
            "note",
            format!("must be at most {MAX_NOTE_CHARS} characters"),
        );
        None
    } else if note.chars().any(char::is_control) {
        problems.push(
            "note",
            "must not contain control characters (line breaks included)",
        );
        None
    } else {
        Some(note.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_trimmed_bounded_and_single_line() {
        let mut problems = FieldErrors::default();
        assert_eq!(note(&mut problems, Some("  sell ")), Some("sell".into()));
        assert_eq!(note(&mut problems, Some("   ")), None);
        assert!(problems.finish().is_ok());
        for bad in ["a\r\nBcc: x@example.com", &"x".repeat(281)] {
            let mut problems = FieldErrors::default();
            assert_eq!(note(&mut problems, Some(bad)), None);
            assert!(problems.finish().is_err(), "{bad:?} is refused");
        }
    }

    #[test]
    fn targets_fit_their_condition() {
        let check = |condition, value: i64| {
            let mut problems = FieldErrors::default();
            target(&mut problems, condition, Decimal::from(value));
            problems.finish().is_ok()
        };
        assert!(check(Condition::Above, 1));
        assert!(!check(Condition::Above, 0));
        assert!(check(Condition::PctChange24hBelow, -5));
        assert!(!check(Condition::PctChange24hBelow, -101));
    }
}
