//! The API's one error type and its mapping to RFC 9457 problem details.
//!
//! Handlers return [`ApiError`] (through [`Problems`], which only adds OpenAPI documentation);
//! the request-context middleware turns every error, ours or the framework's, into an
//! `application/problem+json` response carrying the request id. This is the only place an
//! error becomes HTTP.

use std::fmt;

use poem::http::StatusCode;
use poem::http::header::{HeaderValue, RETRY_AFTER, WWW_AUTHENTICATE};
use poem::{IntoResponse, Response};
use poem_openapi::registry::{MetaMediaType, MetaResponse, MetaResponses, Registry};
use poem_openapi::types::Type;
use poem_openapi::{ApiResponse, Object};

/// The media type of every error body.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid input field.
#[derive(Debug, Clone, PartialEq, Eq, Object, serde::Serialize)]
pub struct FieldError {
    /// The field's name (a JSON path such as `email`, or a query/path parameter name).
    pub field: String,
    /// What is wrong with it, in plain words.
    pub message: String,
}

impl FieldError {
    /// Describes one invalid field.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Object, serde::Serialize)]
#[oai(example)]
pub struct Problem {
    /// A URI naming the problem type; `about:blank` means the HTTP status says it all.
    #[oai(rename = "type")]
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary: the HTTP reason phrase.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence, safe to show to a user.
    pub detail: String,
    /// The request path this problem arose on.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// A stable machine-readable code, e.g. `VALIDATION_ERROR`, `UNAUTHORIZED`, `RATE_LIMITED`.
    pub code: String,
    /// The request's id (also in the `X-Request-ID` header); quote it when reporting issues.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The invalid fields, for `VALIDATION_ERROR`.
    #[oai(default, skip_serializing_if_is_empty)]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

impl poem_openapi::types::Example for Problem {
    fn example() -> Self {
        Self {
            kind: "about:blank".into(),
            title: "Unprocessable Entity".into(),
            status: 422,
            detail: "the request has invalid fields".into(),
            instance: Some("/api/v1/auth/register".into()),
            code: "VALIDATION_ERROR".into(),
            request_id: Some("0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d".into()),
            errors: vec![FieldError::new("email", "must be a valid email address")],
        }
    }
}

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request could not be read at all (malformed JSON, bad encoding).
    #[error("{0}")]
    BadRequest(String),
    /// Well-formed input that breaks the rules.
    #[error("the request has invalid fields")]
    Validation(Vec<FieldError>),
    /// Missing or wrong credentials (no bearer token, a wrong password).
    #[error("{0}")]
    Unauthorized(String),
    /// A bearer token was presented but cannot act: malformed, expired, signed by another key,
    /// or its session or account ended (RFC 6750 `invalid_token`).
    #[error("{0}")]
    InvalidToken(String),
    /// Authenticated, but not allowed.
    #[error("{0}")]
    Forbidden(String),
    /// The resource does not exist, or is not the caller's to see.
    #[error("{0}")]
    NotFound(String),
    /// The method is not defined for this path.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the current state (e.g. a taken email).
    #[error("{detail}")]
    Conflict {
        /// What conflicts.
        detail: String,
        /// The field at fault, if one is.
        field: Option<&'static str>,
    },
    /// The resource existed but is gone for good (an expired download).
    #[error("{0}")]
    Gone(String),
    /// A precondition (`If-Match`) does not hold: the caller's copy is stale.
    #[error("{0}")]
    PreconditionFailed(String),
    /// The body is larger than the configured limit.
    #[error("the request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body's media type is not accepted.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Too many requests; try again after `retry_after_secs`.
    #[error("too many requests; retry after {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be accepted.
        retry_after_secs: u64,
    },
    /// A dependency (database, Redis) is unavailable right now.
    #[error("{0}")]
    Unavailable(String),
    /// A bug or an unexpected failure; logged in full, answered generically.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// A validation error on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    /// The generic "not found" for a resource kind, e.g. `not_found("user")`.
    pub fn not_found(what: &str) -> Self {
        Self::NotFound(format!("{what} not found"))
    }

    /// The kind of problem this is: the one place a variant is given its HTTP status, its
    /// `code` and the status-set bit that documents it (all three in [`status::Kind`]).
    pub fn kind(&self) -> status::Kind {
        use status::Kind;
        match self {
            Self::BadRequest(_) => Kind::BadRequest,
            Self::Validation(_) => Kind::Validation,
            Self::Unauthorized(_) | Self::InvalidToken(_) => Kind::Unauthorized,
            Self::Forbidden(_) => Kind::Forbidden,
            Self::NotFound(_) => Kind::NotFound,
            Self::MethodNotAllowed => Kind::MethodNotAllowed,
            Self::Conflict { .. } => Kind::Conflict,
            Self::Gone(_) => Kind::Gone,
            Self::PreconditionFailed(_) => Kind::PreconditionFailed,
            Self::PayloadTooLarge { .. } => Kind::PayloadTooLarge,
            Self::UnsupportedMediaType(_) => Kind::UnsupportedMediaType,
            Self::RateLimited { .. } => Kind::RateLimited,
            Self::Unavailable(_) => Kind::Unavailable,
            Self::Internal(_) => Kind::Internal,
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        self.kind().status()
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        self.kind().code()
    }

    /// The problem document for this error; internal details never leave the process.
    pub fn to_problem(&self, request_id: Option<&str>, instance: Option<&str>) -> Problem {
        let status = self.status();
        let errors = match self {
            Self::Validation(errors) => errors.clone(),
            Self::Conflict {
                detail,
                field: Some(field),
            } => vec![FieldError::new(*field, detail.clone())],
            _ => Vec::new(),
        };
        Problem {
            kind: "about:blank".into(),
            title: status.canonical_reason().unwrap_or("Error").into(),
            status: status.as_u16(),
            detail: self.to_string(),
            instance: instance.map(str::to_owned),
            code: self.code().into(),
            request_id: request_id.map(str::to_owned),
            errors,
        }
    }

    /// The full HTTP response: problem body plus the headers this error calls for.
    pub fn to_response(&self, request_id: Option<&str>, instance: Option<&str>) -> Response {
        let problem = self.to_problem(request_id, instance);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = Response::builder()
            .status(self.status())
            .content_type(PROBLEM_JSON)
            .body(body);
        match self {
            Self::Unauthorized(_) => {
                response.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static(r#"Bearer realm="coinpulse""#),
                );
            }
            Self::InvalidToken(why) => {
                // RFC 6750 §3: a quoted-string without quotes or backslashes inside.
                let description: String = why
                    .chars()
                    .filter(|c| *c != '"' && *c != '\\' && (' '..='~').contains(c))
                    .collect();
                let challenge = format!(
                    r#"Bearer realm="coinpulse", error="invalid_token", error_description="{description}""#
                );
                if let Ok(value) = HeaderValue::from_str(&challenge) {
                    response.headers_mut().insert(WWW_AUTHENTICATE, value);
                }
            }
            Self::RateLimited { retry_after_secs } => {
                response
                    .headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        response
    }

    /// Maps any error raised inside the stack (ours, poem's or poem-openapi's) to an `ApiError`.
    pub fn from_poem(err: poem::Error) -> Self {
        if err.is::<ApiError>() {
            return match err.downcast::<ApiError>() {
                Ok(api_error) => api_error,
                Err(err) => Self::Internal(anyhow::anyhow!("{err}")),
            };
        }
        if let Some(failure) = ParamFailure::of(&err) {
            return Self::invalid(failure.name, failure.message());
        }
        if let Some(err) = err.downcast_ref::<poem_openapi::error::ParseRequestPayloadError>() {
            return Self::BadRequest(format!(
                "the request body could not be read: {}",
                err.reason
            ));
        }
        if err.is::<poem_openapi::error::AuthorizationError>() {
            return Self::Unauthorized("a bearer access token is required".into());
        }
        if let Some(err) = err.downcast_ref::<poem_openapi::error::ContentTypeError>() {
            return Self::UnsupportedMediaType(format!("{err}; send application/json"));
        }
        match err.status() {
            StatusCode::NOT_FOUND => Self::NotFound("no such route".into()),
            StatusCode::METHOD_NOT_ALLOWED => Self::MethodNotAllowed,
            StatusCode::PAYLOAD_TOO_LARGE => Self::PayloadTooLarge { limit: 0 },
            StatusCode::UNAUTHORIZED => Self::Unauthorized("authentication required".into()),
            StatusCode::FORBIDDEN => Self::Forbidden(err.to_string()),
            status if status.is_client_error() => Self::BadRequest(err.to_string()),
            _ => Self::Internal(anyhow::anyhow!("{err}")),
        }
    }
}

/// A query, path, header or cookie parameter poem-openapi could not parse or validate.
///
/// Its own reason names internal types (`failed to parse "optional_JobStatus"`) and is never
/// shown; the request context says what the parameter must be instead (`ParamMessages`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParamFailure {
    /// The parameter's name (poem-openapi's `param0`, … for path parameters).
    pub name: &'static str,
    /// Whether it was absent rather than wrong.
    pub missing: bool,
}

impl ParamFailure {
    /// The parameter failure `err` is, if it is one.
    pub fn of(err: &poem::Error) -> Option<Self> {
        let (name, reason) =
            if let Some(err) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
                (err.name, err.reason.as_str())
            } else if let Some(err) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
                (err.name, err.reason.as_str())
            } else {
                return None;
            };
        Some(Self {
            name,
            // poem-openapi's wording for an absent value: `Type "string" expects an input value.`
            missing: reason.contains("expects an input value"),
        })
    }

    /// What it is told when nothing better is known of the parameter.
    pub fn message(self) -> &'static str {
        if self.missing {
            "is required"
        } else {
            "is not a valid value"
        }
    }
}

impl poem::error::ResponseError for ApiError {
    fn status(&self) -> StatusCode {
        ApiError::status(self)
    }

    fn as_response(&self) -> Response {
        self.to_response(None, None)
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        match err {
            sqlx::Error::PoolTimedOut => Self::Unavailable("the database is busy; retry".into()),
            other => Self::Internal(other.into()),
        }
    }
}

/// A constraint a request can violate, by name, and the problem that answers its violation.
pub type Constraint = (&'static str, fn() -> ApiError);

/// Answers the violation of a constraint in `map` with its problem; any other error (another
/// constraint's too) is what `From<sqlx::Error>` makes of it.
///
/// Constraint names are unique per table and say what kind they are (`…_key` unique,
/// `…_fkey` foreign key), so the name alone picks the problem:
///
/// ```text
/// .map_err(|err| on_constraint(err, &[("users_email_key", || ApiError::Conflict { … })]))
/// ```
pub fn on_constraint(err: sqlx::Error, map: &[Constraint]) -> ApiError {
    let problem = err
        .as_database_error()
        .and_then(|db| db.constraint())
        .and_then(|name| map.iter().find(|(constraint, _)| *constraint == name))
        .map(|(_, problem)| problem());
    problem.unwrap_or_else(|| err.into())
}

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

/// The kinds of problem and the bit flags naming which of them an operation can answer, for
/// the OpenAPI document.
pub mod status {
    use poem::http::StatusCode;

    /// A kind of problem: one per HTTP status the API answers errors with. [`Kind::row`] is
    /// the one table of what each kind is answered with; its bit in a status set
    /// ([`Kind::flag`]) documents that an operation can answer it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    pub enum Kind {
        BadRequest,
        Unauthorized,
        Forbidden,
        NotFound,
        MethodNotAllowed,
        Conflict,
        Gone,
        PreconditionFailed,
        PayloadTooLarge,
        UnsupportedMediaType,
        Validation,
        RateLimited,
        Internal,
        Unavailable,
    }

    impl Kind {
        /// Every kind, in declaration (and status) order: the order the document lists them.
        pub const ALL: [Self; 14] = [
            Self::BadRequest,
            Self::Unauthorized,
            Self::Forbidden,
            Self::NotFound,
            Self::MethodNotAllowed,
            Self::Conflict,
            Self::Gone,
            Self::PreconditionFailed,
            Self::PayloadTooLarge,
            Self::UnsupportedMediaType,
            Self::Validation,
            Self::RateLimited,
            Self::Internal,
            Self::Unavailable,
        ];

        /// The HTTP status, the problem's `code`, and the document's description.
        const fn row(self) -> (StatusCode, &'static str, &'static str) {
            match self {
                Self::BadRequest => (
                    StatusCode::BAD_REQUEST,
                    "BAD_REQUEST",
                    "The request could not be read (e.g. malformed JSON).",
                ),
                Self::Unauthorized => (
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHORIZED",
                    "The bearer token is missing, invalid or expired.",
                ),
                Self::Forbidden => (
                    StatusCode::FORBIDDEN,
                    "FORBIDDEN",
                    "The caller may not do this.",
                ),
                Self::NotFound => (
                    StatusCode::NOT_FOUND,
                    "NOT_FOUND",
                    "No such resource (or not the caller's).",
                ),
                Self::MethodNotAllowed => (
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    "The method is not defined for this path.",
                ),
                Self::Conflict => (
                    StatusCode::CONFLICT,
                    "CONFLICT",
                    "The request conflicts with the current state.",
                ),
                Self::Gone => (
                    StatusCode::GONE,
                    "GONE",
                    "It existed but is gone for good (e.g. a download past its expiry).",
                ),
                Self::PreconditionFailed => (
                    StatusCode::PRECONDITION_FAILED,
                    "PRECONDITION_FAILED",
                    "`If-Match` does not match the current `ETag`: reload and retry.",
                ),
                Self::PayloadTooLarge => (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "PAYLOAD_TOO_LARGE",
                    "The request body is too large.",
                ),
                Self::UnsupportedMediaType => (
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UNSUPPORTED_MEDIA_TYPE",
                    "The body is not `application/json`, or is compressed (`Content-Encoding` \
                     other than `identity`).",
                ),
                Self::Validation => (
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "VALIDATION_ERROR",
                    "Invalid fields; see `errors`.",
                ),
                Self::RateLimited => (
                    StatusCode::TOO_MANY_REQUESTS,
                    "RATE_LIMITED",
                    "Rate limited; see `Retry-After`.",
                ),
                Self::Internal => (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "Internal error; quote `request_id`.",
                ),
                Self::Unavailable => (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "UNAVAILABLE",
                    "A dependency is unavailable; retry later.",
                ),
            }
        }

        /// The HTTP status.
        pub const fn status(self) -> StatusCode {
            self.row().0
        }

        /// The stable machine-readable `code`.
        pub const fn code(self) -> &'static str {
            self.row().1
        }

        /// What the OpenAPI document says of this response.
        pub const fn description(self) -> &'static str {
            self.row().2
        }

        /// This kind's bit in a status set.
        pub const fn flag(self) -> u32 {
            1 << self as u32
        }
    }

    /// 400: the request could not be read.
    pub const BAD_REQUEST: u32 = Kind::BadRequest.flag();
    /// 401: credentials missing or invalid.
    pub const UNAUTHORIZED: u32 = Kind::Unauthorized.flag();
    /// 403: not allowed.
    pub const FORBIDDEN: u32 = Kind::Forbidden.flag();
    /// 404: no such resource.
    pub const NOT_FOUND: u32 = Kind::NotFound.flag();
    /// 405: the method is not defined for this path.
    pub const METHOD_NOT_ALLOWED: u32 = Kind::MethodNotAllowed.flag();
    /// 409: conflicts with the current state.
    pub const CONFLICT: u32 = Kind::Conflict.flag();
    /// 410: gone for good.
    pub const GONE: u32 = Kind::Gone.flag();
    /// 412: an `If-Match` precondition failed.
    pub const PRECONDITION_FAILED: u32 = Kind::PreconditionFailed.flag();
    /// 413: body too large.
    pub const PAYLOAD_TOO_LARGE: u32 = Kind::PayloadTooLarge.flag();
    /// 415: the body's media type or content coding is not accepted.
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = Kind::UnsupportedMediaType.flag();
    /// 422: invalid fields.
    pub const VALIDATION: u32 = Kind::Validation.flag();
    /// 429: rate limited.
    pub const RATE_LIMITED: u32 = Kind::RateLimited.flag();
    /// 500: internal error.
    pub const INTERNAL: u32 = Kind::Internal.flag();
    /// 503: a dependency is unavailable.
    pub const UNAVAILABLE: u32 = Kind::Unavailable.flag();

    /// What any operation can answer.
    pub const ALWAYS: u32 = BAD_REQUEST | RATE_LIMITED | INTERNAL | UNAVAILABLE;
    /// What any operation behind a bearer token can answer.
    pub const AUTHED: u32 = ALWAYS | UNAUTHORIZED;
    /// What any operation with a JSON body can answer in addition.
    pub const BODY: u32 = PAYLOAD_TOO_LARGE | UNSUPPORTED_MEDIA_TYPE | VALIDATION;
}

/// An [`ApiError`] typed with the set of statuses an operation documents.
///
/// `SET` is a union of [`status`] flags; it changes only the OpenAPI document, so each operation
/// lists exactly its own error responses while all of them share one error type and `?`.
pub struct Problems<const SET: u32>(pub ApiError);

impl<const SET: u32> fmt::Debug for Problems<SET> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<const SET: u32, E: Into<ApiError>> From<E> for Problems<SET> {
    fn from(err: E) -> Self {
        Self(err.into())
    }
}

impl<const SET: u32> From<Problems<SET>> for poem::Error {
    fn from(problems: Problems<SET>) -> Self {
        poem::Error::from(problems.0)
    }
}

impl<const SET: u32> IntoResponse for Problems<SET> {
    fn into_response(self) -> Response {
        self.0.to_response(None, None)
    }
}

impl<const SET: u32> ApiResponse for Problems<SET> {
    fn meta() -> MetaResponses {
        let responses = status::Kind::ALL
            .into_iter()
            .filter(|kind| SET & kind.flag() != 0)
            .map(|kind| MetaResponse {
                description: kind.description(),
                status: Some(kind.status().as_u16()),
                status_range: None,
                content: vec![MetaMediaType {
                    content_type: PROBLEM_JSON,
                    schema: Problem::schema_ref(),
                }],
                headers: vec![],
            })
            .collect();
        MetaResponses { responses }
    }

    fn register(registry: &mut Registry) {
        Problem::register(registry);
    }
}

/// The result of an operation that documents the problem statuses in `SET`.
pub type ApiResult<T, const SET: u32> = Result<T, Problems<SET>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_never_leak_their_cause() {
        let err = ApiError::Internal(anyhow::anyhow!("SELECT secret FROM users failed"));
        let problem = err.to_problem(Some("rid"), Some("/x"));
        assert_eq!(problem.status, 500);
        assert_eq!(problem.code, "INTERNAL");
        assert!(!problem.detail.contains("SELECT"));
    }

    #[test]
    fn validation_problems_list_their_fields() {
        let err = ApiError::invalid("email", "must be a valid email address");
        let problem = err.to_problem(None, None);
        assert_eq!(problem.status, 422);
        assert_eq!(
            problem.errors,
            vec![FieldError::new("email", "must be a valid email address")]
        );
    }

    #[test]
    fn kinds_are_listed_once_in_status_order_with_a_bit_each() {
        use status::Kind;
        for (index, kind) in Kind::ALL.into_iter().enumerate() {
            assert_eq!(
                kind as usize, index,
                "{kind:?} is listed in declaration order"
            );
            assert_eq!(kind.flag(), 1 << index);
        }
        assert_eq!(
            Kind::ALL.len(),
            Kind::Unavailable as usize + 1,
            "every kind"
        );
        assert!(Kind::ALL.windows(2).all(|w| w[0].status() < w[1].status()));
    }

    #[test]
    fn every_variant_answers_its_kinds_status_and_code() {
        let cases = [
            (ApiError::BadRequest("x".into()), 400, "BAD_REQUEST"),
            (ApiError::invalid("f", "m"), 422, "VALIDATION_ERROR"),
            (ApiError::Unauthorized("x".into()), 401, "UNAUTHORIZED"),
            (ApiError::Forbidden("x".into()), 403, "FORBIDDEN"),
            (ApiError::not_found("x"), 404, "NOT_FOUND"),
            (ApiError::MethodNotAllowed, 405, "METHOD_NOT_ALLOWED"),
            (
                ApiError::Conflict {
                    detail: "x".into(),
                    field: None,
                },
                409,
                "CONFLICT",
            ),
            (
                ApiError::PreconditionFailed("x".into()),
                412,
                "PRECONDITION_FAILED",
            ),
            (
                ApiError::PayloadTooLarge { limit: 1 },
                413,
                "PAYLOAD_TOO_LARGE",
            ),
            (
                ApiError::UnsupportedMediaType("x".into()),
                415,
                "UNSUPPORTED_MEDIA_TYPE",
            ),
            (
                ApiError::RateLimited {
                    retry_after_secs: 1,
                },
                429,
                "RATE_LIMITED",
            ),
            (ApiError::Unavailable("x".into()), 503, "UNAVAILABLE"),
            (ApiError::Internal(anyhow::anyhow!("x")), 500, "INTERNAL"),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status().as_u16(), status, "{err:?}");
            assert_eq!(err.code(), code, "{err:?}");
            let problem = err.to_problem(None, None);
            assert_eq!((problem.status, problem.code.as_str()), (status, code));
        }
    }

    /// A database error naming a violated constraint.
    #[derive(Debug)]
    struct Violation(&'static str);

    impl fmt::Display for Violation {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "violates {}", self.0)
        }
    }

    impl std::error::Error for Violation {}

    impl sqlx::error::DatabaseError for Violation {
        fn message(&self) -> &str {
            self.0
        }

        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }

        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }

        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::UniqueViolation
        }

        fn constraint(&self) -> Option<&str> {
            Some(self.0)
        }
    }

    #[test]
    fn named_constraints_become_their_problems_and_others_pass_through() {
        const MAP: &[Constraint] = &[
            ("things_name_key", || ApiError::Conflict {
                detail: "taken".into(),
                field: Some("name"),
            }),
            ("things_owner_fkey", || {
                ApiError::Unauthorized("gone".into())
            }),
        ];
        let violation = |name| sqlx::Error::Database(Box::new(Violation(name)));
        let err = on_constraint(violation("things_name_key"), MAP);
        assert!(
            matches!(
                err,
                ApiError::Conflict {
                    field: Some("name"),
                    ..
                }
            ),
            "{err:?}"
        );
        let err = on_constraint(violation("things_owner_fkey"), MAP);
        assert!(matches!(err, ApiError::Unauthorized(_)), "{err:?}");
        let err = on_constraint(violation("other_key"), MAP);
        assert!(matches!(err, ApiError::Internal(_)), "{err:?}");
        let err = on_constraint(sqlx::Error::PoolTimedOut, MAP);
        assert!(matches!(err, ApiError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn parameter_failures_never_show_poem_openapis_reason() {
        let wrong = poem::Error::from(poem_openapi::error::ParseParamError {
            name: "status",
            reason: r#"failed to parse "JobStatus": Expect a valid enumeration value. (occurred while parsing "optional_JobStatus")"#.into(),
        });
        assert_eq!(
            ParamFailure::of(&wrong),
            Some(ParamFailure {
                name: "status",
                missing: false
            })
        );
        let ApiError::Validation(errors) = ApiError::from_poem(wrong) else {
            panic!("a parameter failure is a validation problem");
        };
        assert_eq!(
            errors,
            vec![FieldError::new("status", "is not a valid value")]
        );
        let absent = poem::Error::from(poem_openapi::error::ParseParamError {
            name: "coins",
            reason: r#"Type "string" expects an input value."#.into(),
        });
        let ApiError::Validation(errors) = ApiError::from_poem(absent) else {
            panic!("a missing parameter is a validation problem");
        };
        assert_eq!(errors, vec![FieldError::new("coins", "is required")]);
        let path = poem::Error::from(poem_openapi::error::ParsePathError {
            name: "param0",
            reason: r#"failed to parse "string_uuid": invalid length: found 3"#.into(),
        });
        assert_eq!(
            ParamFailure::of(&path).map(|failure| failure.name),
            Some("param0")
        );
        assert_eq!(
            ParamFailure::of(&poem::Error::from_status(StatusCode::NOT_FOUND)),
            None
        );
    }

    #[test]
    fn documented_statuses_follow_the_set() {
        let meta = <Problems<{ status::UNAUTHORIZED | status::NOT_FOUND }>>::meta();
        let codes: Vec<_> = meta.responses.iter().filter_map(|r| r.status).collect();
        assert_eq!(codes, vec![401, 404]);
    }
}
