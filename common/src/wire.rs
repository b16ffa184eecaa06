//! One written form per kind of value in every JSON answer: the functions the API's types
//! name in `#[oai(serialize_with = …)]`.
//!
//! - Timestamps: RFC 3339 in UTC with `Z`, with as many fractional digits as the value has
//!   (none for whole seconds), as chrono's serde form writes them too, so REST answers and
//!   stream events agree.
//! - Decimals: normalised, without trailing zeros (`8.554`, never `8.5540`; `0`, never `0.00`
//!   or `-0`): a stored `NUMERIC` keeps the scale it was written with, which says nothing.

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde_json::Value;

/// The written form of a timestamp.
pub fn timestamp_text(value: &DateTime<Utc>) -> String {
    value.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The written form of a decimal.
pub fn decimal_text(value: &Decimal) -> String {
    if value.is_zero() {
        "0".to_owned()
    } else {
        value.normalize().to_string()
    }
}

/// A timestamp as JSON.
pub fn timestamp(value: &DateTime<Utc>) -> Option<Value> {
    Some(Value::String(timestamp_text(value)))
}

/// An optional timestamp as JSON (`null` when absent).
pub fn optional_timestamp(value: &Option<DateTime<Utc>>) -> Option<Value> {
    Some(
        value
            .as_ref()
            .map_or(Value::Null, |at| Value::String(timestamp_text(at))),
    )
}

/// A decimal as a JSON string.
pub fn decimal(value: &Decimal) -> Option<Value> {
    Some(Value::String(decimal_text(value)))
}

/// An optional decimal as a JSON string (`null` when absent).
pub fn optional_decimal(value: &Option<Decimal>) -> Option<Value> {
    Some(
        value
            .as_ref()
            .map_or(Value::Null, |d| Value::String(decimal_text(d))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_end_in_z_with_only_the_digits_they_have() {
        let at = |text: &str| text.parse::<DateTime<Utc>>().expect("time");
        assert_eq!(
            timestamp_text(&at("2026-12-04T20:02:00+00:00")),
            "2026-12-04T20:02:00Z"
        );
        assert_eq!(
            timestamp_text(&at("2026-12-04T21:02:47.884392+01:00")),
            "2026-12-04T20:02:47.884392Z"
        );
        assert_eq!(
            serde_json::to_value(at("2026-12-04T20:02:47.5Z")).expect("serde"),
            timestamp(&at("2026-12-04T20:02:47.5Z")).expect("json"),
            "the same form as chrono's serde"
        );
    }

    #[test]
    fn decimals_lose_trailing_zeros_and_negative_zero() {
        let text = |s: &str| decimal_text(&s.parse().expect("decimal"));
        assert_eq!(text("8.5540"), "8.554");
        assert_eq!(text("100.00"), "100");
        assert_eq!(text("0.00000000"), "0");
        assert_eq!(text("-0.0"), "0");
        assert_eq!(text("-1.50"), "-1.5");
        assert_eq!(optional_decimal(&None), Some(Value::Null));
    }
}
