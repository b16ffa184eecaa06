//! Plain words for every `pattern` the OpenAPI document states.
//!
//! A value refused by a pattern is explained the way its own validator explains it, never as a
//! regular expression: the schema check of a body and the message of a query, path or header
//! parameter both look the pattern up here. A test walks every schema of the API and fails
//! on a pattern without words, so a new pattern cannot slip through unexplained.

use crate::market::{COIN_ID_MESSAGE, COIN_ID_PATTERN, CURRENCY_MESSAGE, CURRENCY_PATTERN};
use crate::platform::idempotency::{KEY_MESSAGE, KEY_PATTERN};
use crate::portfolios::amount::{
    DECIMAL_MESSAGE, DECIMAL_PATTERN, UNSIGNED_DECIMAL_MESSAGE, UNSIGNED_DECIMAL_PATTERN,
};
use crate::portfolios::validate::{NAME_MESSAGE, NAME_PATTERN};
use crate::streams::{COINS_MESSAGE, COINS_PATTERN};
use crate::users::validate::{
    BLANK_PASSWORD_MESSAGE, EMAIL_MESSAGE, EMAIL_PATTERN, PASSWORD_PATTERN, USERNAME_MESSAGE,
    USERNAME_PATTERN,
};

/// Any text without U+0000 (Postgres text cannot hold it).
pub const NO_NUL_PATTERN: &str = r"^[^\x00]*$";
/// What [`NO_NUL_PATTERN`] means.
pub const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";
/// Text on one line without control characters.
pub const NO_CONTROL_PATTERN: &str = r"^[^\x00-\x1f\x7f-\x9f]*$";
/// What [`NO_CONTROL_PATTERN`] means.
pub const CONTROL_MESSAGE: &str = "must not contain control characters (line breaks included)";

/// Each documented pattern with what it means.
const WORDS: &[(&str, &str)] = &[
    (EMAIL_PATTERN, EMAIL_MESSAGE),
    (USERNAME_PATTERN, USERNAME_MESSAGE),
    (PASSWORD_PATTERN, BLANK_PASSWORD_MESSAGE),
    (NAME_PATTERN, NAME_MESSAGE),
    (COIN_ID_PATTERN, COIN_ID_MESSAGE),
    (COINS_PATTERN, COINS_MESSAGE),
    (CURRENCY_PATTERN, CURRENCY_MESSAGE),
    (DECIMAL_PATTERN, DECIMAL_MESSAGE),
    (UNSIGNED_DECIMAL_PATTERN, UNSIGNED_DECIMAL_MESSAGE),
    (KEY_PATTERN, KEY_MESSAGE),
    (NO_NUL_PATTERN, NUL_MESSAGE),
    (NO_CONTROL_PATTERN, CONTROL_MESSAGE),
];

/// What `pattern` asks of a value ("must be …"), if it is one of the API's.
pub fn words(pattern: &str) -> Option<&'static str> {
    WORDS
        .iter()
        .find(|(known, _)| *known == pattern)
        .map(|(_, words)| *words)
}

#[cfg(test)]
mod tests {
    use poem_openapi::OpenApi;
    use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};

    use super::*;

    fn patterns<'a>(schema: &'a MetaSchema, found: &mut Vec<&'a str>) {
        found.extend(schema.pattern.as_deref());
        let children = schema
            .properties
            .iter()
            .map(|(_, child)| child)
            .chain(schema.items.as_deref())
            .chain(schema.additional_properties.as_deref())
            .chain(&schema.all_of)
            .chain(&schema.any_of)
            .chain(&schema.one_of);
        for child in children {
            if let MetaSchemaRef::Inline(child) = child {
                patterns(child, found);
            }
        }
    }

    #[test]
    fn every_pattern_of_the_api_has_words() {
        let mut registry = Registry::new();
        crate::app::Apis::register(&mut registry);
        let mut found = Vec::new();
        for schema in registry.schemas.values() {
            patterns(schema, &mut found);
        }
        let apis = crate::app::Apis::meta();
        let params = apis
            .iter()
            .flat_map(|api| &api.paths)
            .flat_map(|path| &path.operations)
            .flat_map(|operation| &operation.params);
        for param in params {
            if let MetaSchemaRef::Inline(schema) = &param.schema {
                patterns(schema, &mut found);
            }
        }
        assert!(found.len() > 10, "the walk reaches the API's patterns");
        let missing: Vec<&str> = found.into_iter().filter(|p| words(p).is_none()).collect();
        assert!(missing.is_empty(), "patterns without words: {missing:?}");
    }

    #[test]
    fn the_words_are_the_validators_own() {
        use crate::users::validate;
        let refusal =
            |result: Result<String, crate::error::FieldError>| result.expect_err("refused").message;
        let email = refusal(validate::email("email", "nope"));
        assert_eq!(words(EMAIL_PATTERN), Some(email.as_str()));
        let username = refusal(validate::username("username", "x"));
        assert_eq!(words(USERNAME_PATTERN), Some(username.as_str()));
        let blank = refusal(validate::new_password("password", "          "));
        assert_eq!(words(PASSWORD_PATTERN), Some(blank.as_str()));
        let name = refusal(crate::portfolios::validate::name(""));
        assert_eq!(words(NAME_PATTERN), Some(name.as_str()));
        assert_eq!(words("^x$"), None);
    }
}
