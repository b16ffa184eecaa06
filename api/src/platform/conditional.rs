//! Conditional requests (RFC 9110 §13): entity tags, `If-Match` for writes and
//! `If-None-Match` for reads, the same way for every resource.
//!
//! A resource with a version uses it as a strong tag (`"3"`); one without (a valuation, a job,
//! a price) is tagged by a hash of its JSON representation, so a tag changes exactly when what
//! a client would read changes.

use poem_openapi::ApiResponse;
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The strong ETag of a version, e.g. `"3"`.
pub fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// The strong ETag of a representation: a hash of its JSON without the `volatile` top-level
/// fields (e.g. a `valued_at` that says when, not what).
pub fn content_etag<T: ToJSON>(body: &T, volatile: &[&str]) -> String {
    let mut value = body.to_json().unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        for field in volatile {
            object.remove(*field);
        }
    }
    let digest = Sha256::digest(value.to_string().as_bytes());
    let hex: String = digest[..12]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    format!("\"{hex}\"")
}

/// An answer to a read that honours `If-None-Match`.
#[derive(Debug, ApiResponse)]
pub enum Conditional<T: ToJSON + Send + Sync> {
    /// The representation.
    #[oai(status = 200)]
    Ok(
        Json<T>,
        /// Its entity tag: send it back as `If-None-Match` to be answered `304` while it
        /// has not changed.
        #[oai(header = "ETag")]
        String,
    ),
    /// Unchanged since the entity tag sent in `If-None-Match`; no body.
    #[oai(status = 304)]
    NotModified(
        /// The current entity tag (the one sent).
        #[oai(header = "ETag")]
        String,
    ),
}

impl<T: ToJSON + Send + Sync> Conditional<T> {
    /// `body` with `etag`, or `304 Not Modified` when `if_none_match` names that tag.
    pub fn new(body: T, etag: String, if_none_match: Option<&str>) -> Self {
        if if_none_match.is_some_and(|header| none_match_fails(header, &etag)) {
            Self::NotModified(etag)
        } else {
            Self::Ok(Json(body), etag)
        }
    }
}

/// One entity tag of a header list: `W/"x"` or `"x"`.
#[derive(Debug, PartialEq, Eq)]
struct EntityTag<'a> {
    weak: bool,
    /// The opaque tag, quotes included.
    opaque: &'a str,
}

/// A parsed `If-Match` / `If-None-Match` value.
#[derive(Debug, PartialEq, Eq)]
enum TagList<'a> {
    /// `*`: any current representation.
    Any,
    /// `#entity-tag`.
    Tags(Vec<EntityTag<'a>>),
}

/// Parses `"*" / #entity-tag` (RFC 9110 §13.1.1); `None` when the value is not that syntax,
/// e.g. a tag without its quotes.
fn parse(header: &str) -> Option<TagList<'_>> {
    let trimmed = header.trim_matches([' ', '\t']);
    if trimmed == "*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = trimmed;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let (weak, after_prefix) = match rest.strip_prefix("W/") {
            Some(after) => (true, after),
            None => (false, rest),
        };
        let body = after_prefix.strip_prefix('"')?;
        // etagc: %x21 / %x23-7E / obs-text, i.e. anything visible but the quote.
        let end = body.find('"')?;
        if !body[..end]
            .bytes()
            .all(|byte| byte == 0x21 || (0x23..=0x7e).contains(&byte) || byte >= 0x80)
        {
            return None;
        }
        let opaque_len = end + 2;
        tags.push(EntityTag {
            weak,
            opaque: &after_prefix[..opaque_len],
        });
        rest = after_prefix[opaque_len..].trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with(',') {
            return None;
        }
    }
    if tags.is_empty() {
        None
    } else {
        Some(TagList::Tags(tags))
    }
}

/// Whether `If-None-Match: header` fails for a representation tagged `current`, i.e. the
/// client already has it (weak comparison, §13.1.2). A value that does not parse is ignored.
fn none_match_fails(header: &str, current: &str) -> bool {
    match parse(header) {
        Some(TagList::Any) => true,
        Some(TagList::Tags(tags)) => tags.iter().any(|tag| tag.opaque == current),
        None => false,
    }
}

/// Whether `If-Match` allows a change to a `what` whose ETag is `current`: no header, `*`, or
/// a list naming it. Comparison is strong (§13.1.1): a weak tag (`W/"3"`) never matches. A
/// mismatch is a 412 that says what the ETag is now and the form to send it in.
pub fn check_if_match(if_match: Option<&str>, current: &str, what: &str) -> Result<(), ApiError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    match parse(header) {
        Some(TagList::Any) => Ok(()),
        Some(TagList::Tags(tags)) if tags.iter().any(|tag| !tag.weak && tag.opaque == current) => {
            Ok(())
        }
        Some(TagList::Tags(_)) => Err(ApiError::PreconditionFailed(format!(
            "the {what} has changed: its ETag is now {current}; reload it and retry with \
             If-Match: {current}"
        ))),
        None => Err(ApiError::PreconditionFailed(format!(
            "If-Match must be `*` or entity tags in double quotes, as the ETag header shows \
             them: If-Match: {current} for the {what} as it is now"
        ))),
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
        assert!(check_if_match(Some("\"2\",\"3\""), &current, "alert").is_ok());
        assert!(check_if_match(Some("W/\"3\""), &current, "alert").is_err());
        assert!(check_if_match(Some("\"4\""), &current, "alert").is_err());
    }

    #[test]
    fn a_malformed_if_match_says_the_form_to_send() {
        for malformed in ["3", "\"3", "\"3\" \"4\"", "W/3", ""] {
            let err = check_if_match(Some(malformed), "\"3\"", "portfolio").expect_err(malformed);
            let ApiError::PreconditionFailed(message) = err else {
                panic!("{malformed}: {err:?}");
            };
            assert!(message.contains("If-Match: \"3\""), "{message}");
        }
    }

    #[test]
    fn tags_may_hold_commas_and_lists_may_be_loose() {
        assert_eq!(
            parse(" W/\"a,b\" ,, \"c\" "),
            Some(TagList::Tags(vec![
                EntityTag {
                    weak: true,
                    opaque: "\"a,b\""
                },
                EntityTag {
                    weak: false,
                    opaque: "\"c\""
                },
            ]))
        );
        assert_eq!(parse("\"a b\""), None, "a space is not an etagc");
    }

    #[test]
    fn if_none_match_is_a_weak_comparison() {
        let current = "\"abc\"";
        assert!(none_match_fails("\"abc\"", current));
        assert!(none_match_fails("W/\"abc\"", current));
        assert!(none_match_fails("\"x\", \"abc\"", current));
        assert!(none_match_fails("*", current));
        assert!(!none_match_fails("\"x\"", current));
        assert!(!none_match_fails("abc", current), "not a tag: ignored");
    }

    #[test]
    fn content_tags_follow_content_not_volatile_fields() {
        #[derive(poem_openapi::Object)]
        struct Body {
            value: u32,
            valued_at: String,
        }
        let tag = |value, at: &str| {
            content_etag(
                &Body {
                    value,
                    valued_at: at.into(),
                },
                &["valued_at"],
            )
        };
        assert_eq!(tag(1, "now"), tag(1, "later"));
        assert_ne!(tag(1, "now"), tag(2, "now"));
        assert!(tag(1, "now").starts_with('"') && tag(1, "now").len() == 26);
    }
}
