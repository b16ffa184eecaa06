//! `Dec`: an exact decimal that travels as a JSON string.
//!
//! poem-openapi's own `Decimal` support documents `type: string, format: decimal` but accepts
//! JSON numbers too, which have already been through a binary float by the time they are
//! parsed. Money must never be, so `Dec` accepts only strings, refuses anything it could not
//! hold exactly, and carries an example in its schema.

use std::borrow::Cow;
use std::fmt;

use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

/// Most digits after the decimal point an input may have (`NUMERIC` stores them all; this
/// keeps every amount and the products valuation forms within rust_decimal's 28 digits).
pub const MAX_SCALE: usize = 18;
/// Most significant digits an input may have: what a `Decimal` holds exactly.
pub const MAX_DIGITS: usize = 28;

/// The shape of a decimal string, as the OpenAPI document states it.
pub const DECIMAL_PATTERN: &str = r"^-?[0-9]+(\.[0-9]+)?$";
/// What [`DECIMAL_PATTERN`] means (and what a JSON number in its place is told).
pub const DECIMAL_MESSAGE: &str = "must be a decimal number written as a string, such as \"12.5\"";
/// The pattern of [`UnsignedDec`]: a decimal without a sign.
pub const UNSIGNED_DECIMAL_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?$";
/// What [`UNSIGNED_DECIMAL_PATTERN`] means.
pub const UNSIGNED_DECIMAL_MESSAGE: &str =
    "must be a decimal number of at least 0 written as a string, such as \"12.5\"";

/// How every rounded figure is rounded: half away from zero ("commercial" rounding).
pub const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

/// The schema of a decimal string with `pattern`.
fn decimal_schema(pattern: &str) -> MetaSchemaRef {
    MetaSchemaRef::Inline(Box::new(MetaSchema {
        example: Some(Value::String("1234.56789".into())),
        pattern: Some(pattern.into()),
        ..MetaSchema::new_with_format("string", "decimal")
    }))
}

/// An exact decimal, written in JSON as a string such as `"0.000000000000000001"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dec(pub Decimal);

impl Dec {
    /// Zero.
    pub const ZERO: Self = Self(Decimal::ZERO);

    /// Rounds to `places` decimal places, half away from zero.
    pub fn rounded(value: Decimal, places: u32) -> Self {
        Self(value.round_dp_with_strategy(places, ROUNDING))
    }
}

impl From<Decimal> for Dec {
    fn from(value: Decimal) -> Self {
        Self(value)
    }
}

impl fmt::Display for Dec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Trailing zeros carry no meaning here, and `-0` must never be shown.
        let normal = self.0.normalize();
        if normal.is_zero() {
            f.write_str("0")
        } else {
            write!(f, "{normal}")
        }
    }
}

/// Why a string is not an acceptable decimal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecError {
    /// Not of the form `-123.456`.
    #[error("{}", DECIMAL_MESSAGE)]
    Syntax,
    /// Too many digits after the point.
    #[error("must have at most {MAX_SCALE} digits after the decimal point")]
    Scale,
    /// Too many digits in all.
    #[error("must have at most {MAX_DIGITS} significant digits")]
    Digits,
}

/// Parses a plain decimal (`-`, digits, optionally `.` and digits): no exponent, no `+`, no
/// spaces, nothing rounded away.
pub fn parse(text: &str) -> Result<Decimal, DecError> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|f| !digits(f)) {
        return Err(DecError::Syntax);
    }
    let fraction = fraction.unwrap_or("");
    if fraction.len() > MAX_SCALE {
        return Err(DecError::Scale);
    }
    let significant = whole.trim_start_matches('0').len()
        + if whole.trim_start_matches('0').is_empty() {
            fraction.trim_start_matches('0').len()
        } else {
            fraction.len()
        };
    if significant > MAX_DIGITS {
        return Err(DecError::Digits);
    }
    text.parse::<Decimal>().map_err(|_| DecError::Digits)
}

impl Type for Dec {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_decimal".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        decimal_schema(DECIMAL_PATTERN)
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for Dec {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        match value.unwrap_or_default() {
            Value::String(text) => parse(&text).map(Self).map_err(ParseError::custom),
            other => Err(ParseError::expected_type(other)),
        }
    }
}

impl ToJSON for Dec {
    fn to_json(&self) -> Option<Value> {
        Some(Value::String(self.to_string()))
    }
}

impl serde::Serialize for Dec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Dec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = Dec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a decimal number written as a string, such as \"12.5\"")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Dec, E> {
                parse(text).map(Dec).map_err(E::custom)
            }
        }

        // Numbers are refused by `deserialize_str`: they may already have lost digits.
        deserializer.deserialize_str(Visitor)
    }
}

/// An exact decimal the server refuses when negative (a quantity, a price, a fee): parsed
/// exactly like [`Dec`] (the sign is judged by the request's validation, so that every bad
/// field is reported together), but documented with a pattern without `-`, so clients and
/// fuzzers know a negative value is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UnsignedDec(pub Decimal);

impl Type for UnsignedDec {
    const IS_REQUIRED: bool = true;

    type RawValueType = Self;

    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string_unsigned_decimal".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        decimal_schema(UNSIGNED_DECIMAL_PATTERN)
    }

    fn as_raw_value(&self) -> Option<&Self::RawValueType> {
        Some(self)
    }

    fn raw_element_iter<'a>(
        &'a self,
    ) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
        Box::new(self.as_raw_value().into_iter())
    }
}

impl ParseFromJSON for UnsignedDec {
    fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
        Dec::parse_from_json(value)
            .map(|dec| Self(dec.0))
            .map_err(ParseError::propagate)
    }
}

impl ToJSON for UnsignedDec {
    fn to_json(&self) -> Option<Value> {
        Dec(self.0).to_json()
    }
}

impl serde::Serialize for UnsignedDec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        Dec(self.0).serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for UnsignedDec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Dec::deserialize(deserializer).map(|dec| Self(dec.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extremes_round_trip_exactly() {
        for text in [
            "0.000000000000000001",
            "123456789012.123456789",
            "9999999999999999999999999999",
            "0",
            "-42.5",
        ] {
            let value = parse(text).expect(text);
            assert_eq!(Dec(value).to_string(), text);
        }
    }

    #[test]
    fn trailing_zeros_and_negative_zero_are_normalised() {
        assert_eq!(Dec(parse("1.500").expect("parses")).to_string(), "1.5");
        assert_eq!(Dec(parse("-0.000").expect("parses")).to_string(), "0");
    }

    #[test]
    fn anything_inexact_or_odd_is_refused() {
        assert_eq!(parse("0.0000000000000000001"), Err(DecError::Scale));
        assert_eq!(
            parse("12345678901234567890123456789"),
            Err(DecError::Digits)
        );
        for text in [
            "", "-", ".5", "5.", "1e5", "+1", " 1", "1 ", "0x10", "1,5", "NaN",
        ] {
            assert_eq!(parse(text), Err(DecError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn json_numbers_are_refused() {
        assert!(serde_json::from_str::<Dec>("1.5").is_err());
        assert!(serde_json::from_str::<Dec>("2").is_err());
        assert_eq!(
            serde_json::from_str::<Dec>("\"2.25\"").expect("string").0,
            Decimal::new(225, 2)
        );
        assert!(Dec::parse_from_json(Some(serde_json::json!(1.5))).is_err());
    }

    #[test]
    fn rounding_is_half_away_from_zero() {
        assert_eq!(Dec::rounded(Decimal::new(125, 3), 2).to_string(), "0.13");
        assert_eq!(Dec::rounded(Decimal::new(-125, 3), 2).to_string(), "-0.13");
        assert_eq!(Dec::rounded(Decimal::new(135, 3), 2).to_string(), "0.14");
    }
}
