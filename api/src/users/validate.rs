//! Parsing of user-supplied identity fields. Values that pass are valid everywhere after.

use std::sync::LazyLock;

use regex::Regex;

use crate::error::FieldError;

/// Longest email address accepted, surrounding spaces included (RFC 5321 path limit).
pub const EMAIL_MAX: usize = 254;
/// What surrounds a value and is dropped: ASCII spaces, tabs and line breaks only, named
/// explicitly because `\s` means slightly different sets in Rust, Python and JavaScript.
pub const SURROUNDING_SPACE: [char; 4] = [' ', '\t', '\n', '\r'];
/// An email address as the API accepts it, surrounding spaces allowed (and dropped): a local
/// part of 1–64 characters without spaces, control characters, `"` or `@`, and a domain of
/// two or more dot-separated ASCII labels (internationalised domains in their `xn--` form,
/// which is what SMTP needs anyway). The OpenAPI document states this very pattern.
pub const EMAIL_PATTERN: &str =
    r#"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f"@]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\r]*$"#;
/// A username: 3–32 letters, digits, `_`, `-` or `.`, starting with a letter or digit;
/// surrounding spaces allowed (and dropped). The OpenAPI document states this very pattern.
pub const USERNAME_PATTERN: &str = r"^[ \t\n\r]*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}[ \t\n\r]*$";
/// A new password is not blank: some character that is neither whitespace nor U+0000.
/// The OpenAPI document states this very pattern (with the length bounds below).
pub const PASSWORD_PATTERN: &str = r"^[^\x00]*[^\s\x00][^\x00]*$";
/// What [`EMAIL_PATTERN`] means, said the same way wherever an email is refused.
pub const EMAIL_MESSAGE: &str = "must be a valid email address";
/// What [`USERNAME_PATTERN`] means.
pub const USERNAME_MESSAGE: &str =
    "must be 3 to 32 letters, digits, '_', '-' or '.', starting with a letter or digit";
/// What [`PASSWORD_PATTERN`] means.
pub const BLANK_PASSWORD_MESSAGE: &str = "must not be blank";
/// Password length bounds, in characters (OWASP: at least 8, allow at least 64).
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

static EMAIL: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(EMAIL_PATTERN).expect("the email pattern compiles"));
static USERNAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(USERNAME_PATTERN).expect("the username pattern compiles"));

/// A syntactically valid email address ([`EMAIL_PATTERN`]), trimmed.
pub fn email(field: &str, raw: &str) -> Result<String, FieldError> {
    if raw.chars().count() <= EMAIL_MAX && EMAIL.is_match(raw) {
        Ok(raw.trim_matches(SURROUNDING_SPACE).to_owned())
    } else {
        Err(FieldError::new(field, EMAIL_MESSAGE))
    }
}

/// A username ([`USERNAME_PATTERN`]), trimmed.
pub fn username(field: &str, raw: &str) -> Result<String, FieldError> {
    if USERNAME.is_match(raw) {
        Ok(raw.trim_matches(SURROUNDING_SPACE).to_owned())
    } else {
        Err(FieldError::new(field, USERNAME_MESSAGE))
    }
}

/// A new password: 8–128 characters, not blank. Never trimmed: spaces are part of it.
pub fn new_password(field: &str, raw: &str) -> Result<String, FieldError> {
    let length = raw.chars().count();
    if !(PASSWORD_MIN..=PASSWORD_MAX).contains(&length) {
        return Err(FieldError::new(
            field,
            format!("must be {PASSWORD_MIN} to {PASSWORD_MAX} characters long"),
        ));
    }
    if raw.trim().is_empty() {
        return Err(FieldError::new(field, BLANK_PASSWORD_MESSAGE));
    }
    Ok(raw.to_owned())
}

/// Collects the errors of several parses; `Ok` only when every field is valid.
pub fn all<T>(results: Vec<Result<T, FieldError>>) -> Result<Vec<T>, Vec<FieldError>> {
    let mut values = Vec::with_capacity(results.len());
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(value) => values.push(value),
            Err(error) => errors.push(error),
        }
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        assert_eq!(
            email("email", " Ada@Example.com ").as_deref(),
            Ok("Ada@Example.com")
        );
        assert!(email("email", "ada+tag@mail.xn--bcher-kva.example").is_ok());
        let longest = format!("{}@{}.com", "a".repeat(64), "b".repeat(185));
        assert_eq!(longest.len(), EMAIL_MAX);
        assert!(email("email", &longest).is_ok());
        assert!(email("email", &format!("{longest} ")).is_err());
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@ex..com",
            "ada@.example.com",
            "ada@example.com.",
            "a\"da@example.com",
            "ada@exa_mple.com",
        ] {
            assert!(email("email", bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn usernames() {
        assert!(username("username", "ada_l.0-x").is_ok());
        for bad in ["ab", "_ada", "ada lovelace", &"a".repeat(33), "adä"] {
            assert!(
                username("username", bad).is_err(),
                "{bad:?} should be refused"
            );
        }
    }

    #[test]
    fn passwords() {
        assert!(new_password("password", "correct horse").is_ok());
        assert!(new_password("password", "short").is_err());
        assert!(new_password("password", "         ").is_err());
        assert!(new_password("password", &"x".repeat(129)).is_err());
    }

    #[test]
    fn all_collects_every_error() {
        let errors = all(vec![email("email", "x"), username("username", "y")])
            .expect_err("both fields are invalid");
        assert_eq!(errors.len(), 2);
    }
}
