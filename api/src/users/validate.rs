//! Parsing of user-supplied identity fields. Values that pass are valid everywhere after.

use crate::error::FieldError;

/// Longest email address accepted (RFC 5321 path limit).
const EMAIL_MAX: usize = 254;
/// Username length bounds, in characters.
const USERNAME_MIN: usize = 3;
const USERNAME_MAX: usize = 32;
/// Password length bounds, in characters (OWASP: at least 8, allow at least 64).
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 128;

/// A syntactically valid email address, trimmed.
pub fn email(field: &str, raw: &str) -> Result<String, FieldError> {
    let value = raw.trim();
    let invalid = || FieldError::new(field, "must be a valid email address");
    if value.is_empty() || value.len() > EMAIL_MAX {
        return Err(invalid());
    }
    let (local, domain) = value.rsplit_once('@').ok_or_else(invalid)?;
    let domain_ok = domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
        && domain
            .chars()
            .all(|c| c.is_alphanumeric() || c == '-' || c == '.');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local.contains('@')
        && local
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && c != '"');
    if domain_ok && local_ok {
        Ok(value.to_owned())
    } else {
        Err(invalid())
    }
}

/// A username: 3–32 letters, digits, `_`, `-` or `.`, starting with a letter or digit.
pub fn username(field: &str, raw: &str) -> Result<String, FieldError> {
    let value = raw.trim();
    let length = value.chars().count();
    if !(USERNAME_MIN..=USERNAME_MAX).contains(&length) {
        return Err(FieldError::new(
            field,
            format!("must be {USERNAME_MIN} to {USERNAME_MAX} characters long"),
        ));
    }
    let starts_well = value.chars().next().is_some_and(char::is_alphanumeric);
    let allowed = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if starts_well && allowed {
        Ok(value.to_owned())
    } else {
        Err(FieldError::new(
            field,
            "may contain only letters, digits, '_', '-' and '.', and must start with a letter or digit",
        ))
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
        return Err(FieldError::new(field, "must not be blank"));
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
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "ada@ex..com",
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
