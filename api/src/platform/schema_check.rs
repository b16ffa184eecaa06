//! Checks a JSON value against the schema poem-openapi registers for its type, and says in
//! plain words what a schema asks of a value.
//!
//! serde stops at the first field it cannot read, so a caller fixing a body would meet its
//! mistakes one request at a time. Checking the body against its own schema first reports
//! every field that breaks it at once, each under its JSON path. The schema is the one the
//! OpenAPI document publishes, so nothing is refused here that the document allows. Only the
//! keywords poem-openapi writes are understood; what they cannot express is left to serde and
//! to the handlers' own validation.

use std::collections::HashMap;
use std::sync::{LazyLock, PoisonError, RwLock};

use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use regex::Regex;
use serde_json::{Map, Value};

use crate::error::FieldError;
use crate::platform::pattern_words;

/// How deep `allOf` nesting is followed: poem-openapi's own schemas are far shallower, and a
/// schema that includes itself must not be followed forever.
const MAX_DEPTH: usize = 16;

/// What a value of `format: uuid` must be.
pub const UUID_WORDS: &str = "must be a UUID, such as 0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";
/// What a value of `format: date-time` must be.
pub const DATE_TIME_WORDS: &str =
    "must be a date and time in RFC 3339 format, such as 2026-11-21T09:30:00Z";
/// What an absent required field is told.
pub const REQUIRED: &str = "is required";
/// What a field the schema does not list is told.
pub const UNKNOWN: &str = "is not a known field";

/// Every way `value` breaks `schema`, at most one per field, in the schema's field order.
/// `registry` holds the named schemas `schema` refers to. An object at the top refuses fields
/// its schema does not list (request bodies deny unknown fields); nested ones leave that to
/// serde.
pub fn check(value: &Value, schema: &MetaSchemaRef, registry: &Registry) -> Vec<FieldError> {
    let mut checker = Checker {
        registry,
        errors: Vec::new(),
    };
    checker.value(value, schema, "", true);
    checker.errors
}

/// What a value of `schema` must be, in words ("must be one of: a, b", "must be a UUID"):
/// for a parameter that could not be parsed, where only the whole rule helps.
pub fn describe(schema: &MetaSchemaRef, registry: &Registry) -> String {
    let parts = parts(registry, schema);
    let Some(part) = parts
        .iter()
        .find(|part| !part.ty.is_empty() || !part.enum_items.is_empty())
    else {
        return "is not a valid value".into();
    };
    if part.ty == "string" && part.enum_items.is_empty() && part.format.is_none() {
        let clauses: Vec<String> = [
            length_limited(part).then(|| length_words(part)),
            part.pattern.as_deref().map(words_for_pattern),
        ]
        .into_iter()
        .flatten()
        .collect();
        if !clauses.is_empty() {
            return clauses.join(" and ");
        }
    }
    type_words(part)
}

/// `schema` and the schemas its `allOf` adds (poem-openapi writes a described reference as
/// `allOf: [{$ref}, {description}]`), the outer one first.
fn parts<'a>(registry: &'a Registry, schema: &'a MetaSchemaRef) -> Vec<&'a MetaSchema> {
    let mut found = Vec::new();
    let mut pending = vec![(schema, 0)];
    while let Some((schema, depth)) = pending.pop() {
        let resolved = match schema {
            MetaSchemaRef::Inline(inline) => Some(&**inline),
            MetaSchemaRef::Reference(name) => registry.schemas.get(name),
        };
        let Some(resolved) = resolved else {
            continue;
        };
        found.push(resolved);
        if depth < MAX_DEPTH {
            pending.extend(resolved.all_of.iter().rev().map(|part| (part, depth + 1)));
        }
    }
    found
}

struct Checker<'a> {
    registry: &'a Registry,
    errors: Vec<FieldError>,
}

impl<'a> Checker<'a> {
    /// Records a problem unless `field` already has one: the first is the one to fix.
    fn push(&mut self, field: &str, message: impl Into<String>) {
        if !self.errors.iter().any(|error| error.field == field) {
            self.errors.push(FieldError::new(field, message));
        }
    }

    fn value(&mut self, value: &Value, schema: &'a MetaSchemaRef, field: &str, closed: bool) {
        for part in parts(self.registry, schema) {
            self.part(value, part, field, closed);
        }
    }

    fn part(&mut self, value: &Value, part: &'a MetaSchema, field: &str, closed: bool) {
        if value.is_null() {
            if !part.nullable && (!part.ty.is_empty() || !part.enum_items.is_empty()) {
                self.push(field, type_words(part));
            }
            return;
        }
        if !part.enum_items.is_empty() {
            if !part.enum_items.contains(value) {
                self.push(field, one_of(part));
            }
            return;
        }
        let fits = match part.ty {
            "string" => value.as_str().is_some_and(|text| {
                if let Some(problem) = string_problem(part, text) {
                    self.push(field, problem);
                }
                true
            }),
            "integer" => integer(value).is_some_and(|number| {
                if !Bounds::of(part).contain(number as f64) {
                    self.push(field, type_words(part));
                }
                true
            }),
            "number" => value.as_f64().is_some_and(|number| {
                if !Bounds::of(part).contain(number) {
                    self.push(field, type_words(part));
                }
                true
            }),
            "boolean" => value.is_boolean(),
            "array" => value.as_array().is_some_and(|items| {
                self.array(items, part, field);
                true
            }),
            "object" => value.as_object().is_some_and(|fields| {
                self.object(fields, part, field, closed);
                true
            }),
            _ => true,
        };
        if !fits {
            self.push(field, type_words(part));
        }
    }

    fn array(&mut self, items: &[Value], part: &'a MetaSchema, field: &str) {
        let count = items.len();
        if part.min_items.is_some_and(|min| count < min)
            || part.max_items.is_some_and(|max| count > max)
        {
            // Over-long arrays are not looked into: the caller must shorten them anyway, and a
            // body full of bad items must not be answered with as many errors.
            self.push(field, items_words(part));
            if part.max_items.is_some_and(|max| count > max) {
                return;
            }
        }
        if let Some(schema) = part.items.as_deref() {
            for (index, item) in items.iter().enumerate() {
                self.value(item, schema, &format!("{field}[{index}]"), false);
            }
        }
        if part.unique_items == Some(true) {
            let mut seen: HashMap<String, usize> = HashMap::new();
            for (index, item) in items.iter().enumerate() {
                if let Some(first) = seen.get(&item.to_string()) {
                    self.push(
                        &format!("{field}[{index}]"),
                        format!("repeats {field}[{first}]"),
                    );
                } else {
                    seen.insert(item.to_string(), index);
                }
            }
        }
    }

    fn object(
        &mut self,
        fields: &Map<String, Value>,
        part: &'a MetaSchema,
        field: &str,
        closed: bool,
    ) {
        for (name, schema) in &part.properties {
            let path = field_path(field, name);
            let required = part.required.contains(name);
            match fields.get(*name) {
                None if required => self.push(&path, REQUIRED),
                None => {}
                // An optional field may be `null` (the document marks it nullable), except
                // one holding an enum: OpenAPI 3.0 cannot mark a reference nullable, so there
                // the document says a value or nothing.
                Some(Value::Null) if !required => {
                    if let Some(choice) = parts(self.registry, schema)
                        .into_iter()
                        .find(|part| !part.enum_items.is_empty())
                    {
                        self.push(&path, one_of(choice));
                    }
                }
                Some(value) => self.value(value, schema, &path, false),
            }
        }
        for (name, value) in fields {
            if part.properties.iter().any(|(known, _)| known == name) {
                continue;
            }
            let path = field_path(field, name);
            match part.additional_properties.as_deref() {
                Some(schema) => self.value(value, schema, &path, false),
                None if closed => self.push(&path, UNKNOWN),
                None => {}
            }
        }
    }
}

/// A field's path as `FieldError` names it: `a.b` (and `coins[2]` for items). U+0000 in a
/// name is written `\u0000`, so that a path never carries the character it may be refused for.
pub fn field_path(parent: &str, name: &str) -> String {
    let name = name.replace('\0', "\\u0000");
    if parent.is_empty() {
        name
    } else {
        format!("{parent}.{name}")
    }
}

/// A JSON integer (not `1.0`, which serde refuses for integer types too).
fn integer(value: &Value) -> Option<i128> {
    value
        .as_i64()
        .map(i128::from)
        .or_else(|| value.as_u64().map(i128::from))
}

/// The first thing wrong with `text`: its format, then its length, then its pattern.
fn string_problem(part: &MetaSchema, text: &str) -> Option<String> {
    match part.format {
        Some("uuid") if uuid::Uuid::parse_str(text).is_err() => return Some(UUID_WORDS.into()),
        // What chrono's serde accepts: RFC 3339, with a space allowed for the `T`.
        Some("date-time")
            if text
                .parse::<chrono::DateTime<chrono::FixedOffset>>()
                .is_err() =>
        {
            return Some(DATE_TIME_WORDS.into());
        }
        _ => {}
    }
    let length = text.chars().count();
    if part.min_length.is_some_and(|min| length < min)
        || part.max_length.is_some_and(|max| length > max)
    {
        return Some(length_words(part));
    }
    match part.pattern.as_deref() {
        Some(pattern) if !matches(pattern, text) => Some(words_for_pattern(pattern)),
        _ => None,
    }
}

/// Whether `text` matches `pattern`. A pattern the regex crate cannot compile checks nothing
/// here; serde and the handler still check the value.
fn matches(pattern: &str, text: &str) -> bool {
    static COMPILED: LazyLock<RwLock<HashMap<String, Option<Regex>>>> =
        LazyLock::new(RwLock::default);
    if let Some(compiled) = COMPILED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .get(pattern)
    {
        return compiled.as_ref().is_none_or(|regex| regex.is_match(text));
    }
    let compiled = Regex::new(pattern).ok();
    let matched = compiled.as_ref().is_none_or(|regex| regex.is_match(text));
    COMPILED
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(pattern.to_owned(), compiled);
    matched
}

fn words_for_pattern(pattern: &str) -> String {
    pattern_words::words(pattern).map_or_else(
        || format!("must match the pattern {pattern}"),
        str::to_owned,
    )
}

fn length_limited(part: &MetaSchema) -> bool {
    part.min_length.is_some() || part.max_length.is_some()
}

fn length_words(part: &MetaSchema) -> String {
    match (part.min_length, part.max_length) {
        (Some(min), Some(max)) => format!("must be {min} to {max} characters long"),
        (Some(1), None) => "must not be empty".into(),
        (Some(min), None) => format!("must be at least {min} characters long"),
        (None, Some(max)) => format!("must be at most {max} characters long"),
        (None, None) => "must be a string".into(),
    }
}

fn items_words(part: &MetaSchema) -> String {
    match (part.min_items, part.max_items) {
        (Some(min), Some(max)) => format!("must list {min} to {max} items"),
        (Some(min), None) => format!("must list at least {min} items"),
        (None, Some(max)) => format!("must list at most {max} items"),
        (None, None) => "must be an array".into(),
    }
}

fn one_of(part: &MetaSchema) -> String {
    let values: Vec<String> = part
        .enum_items
        .iter()
        .map(|value| match value {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        })
        .collect();
    format!("must be one of: {}", values.join(", "))
}

/// What a value of this type must be, for one of another type (or `null`, or out of range).
fn type_words(part: &MetaSchema) -> String {
    if !part.enum_items.is_empty() {
        return one_of(part);
    }
    match (part.ty, part.format) {
        ("string", Some("uuid")) => UUID_WORDS.into(),
        ("string", Some("date-time")) => DATE_TIME_WORDS.into(),
        // A formatted string whose pattern says what it is (a decimal amount).
        ("string", Some(_)) if part.pattern.as_deref().is_some_and(has_words) => part
            .pattern
            .as_deref()
            .map(words_for_pattern)
            .unwrap_or_default(),
        ("string", _) => "must be a string".into(),
        ("integer", _) => Bounds::of(part).words("an integer"),
        ("number", _) => Bounds::of(part).words("a number"),
        ("boolean", _) => "must be true or false".into(),
        ("array", _) => "must be an array".into(),
        ("object", _) => "must be an object".into(),
        _ => "is not a valid value".into(),
    }
}

fn has_words(pattern: &str) -> bool {
    pattern_words::words(pattern).is_some()
}

/// The range a number must be in: the schema's own bounds, else its format's.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bounds {
    /// Lower bound and whether it is exclusive.
    min: Option<(f64, bool)>,
    /// Upper bound and whether it is exclusive.
    max: Option<(f64, bool)>,
}

impl Bounds {
    fn of(part: &MetaSchema) -> Self {
        // 64-bit formats are left unbounded here: `integer` already keeps a value within
        // i64 or u64, and their limits would only clutter the message.
        let (low, high) = match part.format {
            Some("int8") => (Some(f64::from(i8::MIN)), Some(f64::from(i8::MAX))),
            Some("int16") => (Some(f64::from(i16::MIN)), Some(f64::from(i16::MAX))),
            Some("int32") => (Some(f64::from(i32::MIN)), Some(f64::from(i32::MAX))),
            Some("uint8") => (Some(0.0), Some(f64::from(u8::MAX))),
            Some("uint16") => (Some(0.0), Some(f64::from(u16::MAX))),
            Some("uint32") => (Some(0.0), Some(f64::from(u32::MAX))),
            Some("uint64") => (Some(0.0), None),
            _ => (None, None),
        };
        Self {
            min: part
                .minimum
                .map(|min| (min, part.exclusive_minimum == Some(true)))
                .or(low.map(|min| (min, false))),
            max: part
                .maximum
                .map(|max| (max, part.exclusive_maximum == Some(true)))
                .or(high.map(|max| (max, false))),
        }
    }

    fn contain(self, number: f64) -> bool {
        let above = self.min.is_none_or(|(min, exclusive)| {
            if exclusive {
                number > min
            } else {
                number >= min
            }
        });
        let below = self.max.is_none_or(|(max, exclusive)| {
            if exclusive {
                number < max
            } else {
                number <= max
            }
        });
        above && below
    }

    /// "must be an integer from 1 to 100", "must be a number, greater than 0".
    fn words(self, kind: &str) -> String {
        if let (Some((min, false)), Some((max, false))) = (self.min, self.max) {
            return format!("must be {kind} from {} to {}", plain(min), plain(max));
        }
        let clauses: Vec<String> = [
            self.min.map(|(min, exclusive)| {
                let relation = if exclusive {
                    "greater than"
                } else {
                    "at least"
                };
                format!("{relation} {}", plain(min))
            }),
            self.max.map(|(max, exclusive)| {
                let relation = if exclusive { "less than" } else { "at most" };
                format!("{relation} {}", plain(max))
            }),
        ]
        .into_iter()
        .flatten()
        .collect();
        if clauses.is_empty() {
            format!("must be {kind}")
        } else {
            format!("must be {kind}, {}", clauses.join(" and "))
        }
    }
}

/// A bound as people write it: `100`, not `100.0`.
fn plain(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{number:.0}")
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::types::Type;
    use poem_openapi::{Enum, Object};
    use serde_json::json;

    use super::*;

    #[derive(Debug, Enum)]
    #[oai(rename_all = "snake_case")]
    enum Side {
        Buy,
        Sell,
    }

    #[derive(Debug, Object)]
    struct Line {
        #[oai(validator(min_length = 2, max_length = 5))]
        code: String,
        /// A described reference: poem-openapi wraps it in `allOf`.
        side: Side,
        kind: Option<Side>,
        #[oai(validator(minimum(value = "1"), maximum(value = "10")))]
        count: u32,
        id: Option<uuid::Uuid>,
        at: Option<chrono::DateTime<chrono::Utc>>,
        #[oai(validator(min_items = 1, max_items = 3, unique_items))]
        tags: Vec<String>,
        #[oai(validator(pattern = r"^[^\x00]*$"))]
        note: Option<String>,
        flag: Option<bool>,
    }

    fn errors(body: Value) -> Vec<(String, String)> {
        let mut registry = Registry::new();
        Line::register(&mut registry);
        check(&body, &Line::schema_ref(), &registry)
            .into_iter()
            .map(|error| (error.field, error.message))
            .collect()
    }

    fn valid() -> Value {
        json!({"code": "ab", "side": "buy", "count": 3, "tags": ["x"]})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut body = valid();
        body[field] = value;
        body
    }

    #[test]
    fn a_valid_value_passes() {
        assert_eq!(errors(valid()), vec![]);
        let full = json!({
            "code": "abcde", "side": "sell", "kind": "buy", "count": 10,
            "id": "0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d", "at": "2026-11-21T09:30:00Z",
            "tags": ["a", "b"], "note": "fine", "flag": null
        });
        assert_eq!(errors(full), vec![]);
    }

    #[test]
    fn every_bad_field_is_reported_in_schema_order() {
        let body = json!({
            "code": 7, "side": "hold", "count": 0, "id": "nope", "at": "yesterday",
            "tags": [], "flag": "yes", "extra": 1
        });
        let fields: Vec<String> = errors(body).into_iter().map(|(field, _)| field).collect();
        assert_eq!(
            fields,
            ["code", "side", "count", "id", "at", "tags", "flag", "extra"]
        );
    }

    #[test]
    fn messages_say_what_the_value_must_be() {
        let one = |field: &str, value: Value| {
            let found = errors(with(field, value));
            assert_eq!(found.len(), 1, "{found:?}");
            found[0].1.clone()
        };
        assert_eq!(one("code", json!(7)), "must be a string");
        assert_eq!(one("code", json!("a")), "must be 2 to 5 characters long");
        assert_eq!(one("side", json!("hold")), "must be one of: buy, sell");
        assert_eq!(one("side", json!(null)), "must be one of: buy, sell");
        assert_eq!(one("kind", json!(null)), "must be one of: buy, sell");
        assert_eq!(one("count", json!(11)), "must be an integer from 1 to 10");
        assert_eq!(one("count", json!(1.5)), "must be an integer from 1 to 10");
        assert_eq!(one("count", json!("3")), "must be an integer from 1 to 10");
        assert_eq!(one("id", json!("nope")), UUID_WORDS);
        assert_eq!(one("at", json!(5)), DATE_TIME_WORDS);
        assert_eq!(one("tags", json!([])), "must list 1 to 3 items");
        assert_eq!(one("tags", json!("x")), "must be an array");
        assert_eq!(
            one("note", json!("a\u{0}b")),
            "must not contain the NUL character (U+0000)"
        );
        assert_eq!(one("flag", json!("yes")), "must be true or false");
        assert_eq!(one("mood", json!("calm")), UNKNOWN);
        let mut missing = valid();
        missing.as_object_mut().expect("object").remove("side");
        assert_eq!(errors(missing), vec![("side".into(), REQUIRED.into())]);
    }

    #[test]
    fn array_items_are_checked_by_index() {
        assert_eq!(
            errors(with("tags", json!(["a", 5, "a"]))),
            vec![
                ("tags[1]".into(), "must be a string".into()),
                ("tags[2]".into(), "repeats tags[0]".into()),
            ]
        );
        let long: Vec<Value> = (0..1000).map(|_| json!(0)).collect();
        assert_eq!(
            errors(with("tags", Value::Array(long))),
            vec![("tags".into(), "must list 1 to 3 items".into())],
            "an over-long array is answered once, not item by item"
        );
    }

    #[test]
    fn optional_plain_fields_may_be_null() {
        let body = json!({
            "code": "ab", "side": "buy", "count": 1, "tags": ["x"],
            "id": null, "at": null, "note": null, "flag": null
        });
        assert_eq!(errors(body), vec![]);
    }

    #[test]
    fn parameters_are_described_by_their_whole_rule() {
        let registry = {
            let mut registry = Registry::new();
            Side::register(&mut registry);
            registry
        };
        let describe_type = |schema: MetaSchemaRef| describe(&schema, &registry);
        assert_eq!(
            describe_type(<Option<Side>>::schema_ref()),
            "must be one of: buy, sell"
        );
        assert_eq!(describe_type(uuid::Uuid::schema_ref()), UUID_WORDS);
        assert_eq!(describe_type(i64::schema_ref()), "must be an integer");
        assert_eq!(
            describe_type(u32::schema_ref()),
            "must be an integer from 0 to 4294967295"
        );
        assert_eq!(describe_type(bool::schema_ref()), "must be true or false");
        let bounded = MetaSchemaRef::Inline(Box::new(MetaSchema {
            minimum: Some(1.0),
            maximum: Some(100.0),
            ..MetaSchema::new_with_format("integer", "uint32")
        }));
        assert_eq!(describe_type(bounded), "must be an integer from 1 to 100");
        let text = MetaSchemaRef::Inline(Box::new(MetaSchema {
            max_length: Some(200),
            pattern: Some(pattern_words::NO_NUL_PATTERN.into()),
            ..MetaSchema::new("string")
        }));
        assert_eq!(
            describe_type(text),
            "must be at most 200 characters long and must not contain the NUL character (U+0000)"
        );
        let unknown = MetaSchemaRef::Inline(Box::new(MetaSchema {
            pattern: Some("^z+$".into()),
            ..MetaSchema::new("string")
        }));
        assert_eq!(describe_type(unknown), "must match the pattern ^z+$");
    }

    #[test]
    fn exclusive_and_one_sided_bounds_read_naturally() {
        let bounds = Bounds {
            min: Some((0.0, true)),
            max: None,
        };
        assert_eq!(bounds.words("a number"), "must be a number, greater than 0");
        assert!(!bounds.contain(0.0) && bounds.contain(0.5));
        assert_eq!(plain(2.5), "2.5");
    }
}
