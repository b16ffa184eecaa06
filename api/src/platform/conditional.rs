//! Conditional writes: versions as strong entity tags, and `If-Match` checked against them
//! (RFC 9110 §13.1.1), the same way for every resource that has a version.

use crate::error::ApiError;

/// The strong ETag of a version, e.g. `"3"`.
pub fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// Whether `If-Match` allows a change to a `what` whose ETag is `current`: no header, `*`, or
/// a list naming it. Comparison is strong: a weak tag (`W/"3"`) never matches. A mismatch is
/// a 412 that says what the ETag is now.
pub fn check_if_match(if_match: Option<&str>, current: &str, what: &str) -> Result<(), ApiError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let matches = header
        .split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || tag == current);
    if matches {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed(format!(
            "the {what} has changed (its ETag is now {current}); reload it and retry"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_is_a_strong_comparison_over_a_list() {
        let current = etag(3);
        assert!(check_if_match(None, &current, "alert").is_ok());
        assert!(check_if_match(Some("*"), &current, "alert").is_ok());
        assert!(check_if_match(Some("\"2\", \"3\""), &current, "alert").is_ok());
        assert!(check_if_match(Some("W/\"3\""), &current, "alert").is_err());
        assert!(check_if_match(Some("\"4\""), &current, "alert").is_err());
    }
}
