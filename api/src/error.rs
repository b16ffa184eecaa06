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
    /// Missing, invalid or expired credentials.
    #[error("{0}")]
    Unauthorized(String),
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

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "BAD_REQUEST",
            Self::Validation(_) => "VALIDATION_ERROR",
            Self::Unauthorized(_) => "UNAUTHORIZED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Self::Conflict { .. } => "CONFLICT",
            Self::PreconditionFailed(_) => "PRECONDITION_FAILED",
            Self::PayloadTooLarge { .. } => "PAYLOAD_TOO_LARGE",
            Self::UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            Self::RateLimited { .. } => "RATE_LIMITED",
            Self::Unavailable(_) => "UNAVAILABLE",
            Self::Internal(_) => "INTERNAL",
        }
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
                response
                    .headers_mut()
                    .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
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
        if let Some(err) = err.downcast_ref::<poem_openapi::error::ParseParamError>() {
            return Self::invalid(err.name, err.reason.clone());
        }
        if let Some(err) = err.downcast_ref::<poem_openapi::error::ParsePathError>() {
            return Self::invalid(err.name, err.reason.clone());
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

impl From<anyhow::Error> for ApiError {
    fn from(err: anyhow::Error) -> Self {
        Self::Internal(err)
    }
}

/// Bit flags naming which problem statuses an operation can answer, for the OpenAPI document.
pub mod status {
    /// 400: the request could not be read.
    pub const BAD_REQUEST: u32 = 1 << 0;
    /// 401: credentials missing or invalid.
    pub const UNAUTHORIZED: u32 = 1 << 1;
    /// 403: not allowed.
    pub const FORBIDDEN: u32 = 1 << 2;
    /// 404: no such resource.
    pub const NOT_FOUND: u32 = 1 << 3;
    /// 409: conflicts with the current state.
    pub const CONFLICT: u32 = 1 << 4;
    /// 413: body too large.
    pub const PAYLOAD_TOO_LARGE: u32 = 1 << 5;
    /// 422: invalid fields.
    pub const VALIDATION: u32 = 1 << 6;
    /// 429: rate limited.
    pub const RATE_LIMITED: u32 = 1 << 7;
    /// 500: internal error.
    pub const INTERNAL: u32 = 1 << 8;
    /// 503: a dependency is unavailable.
    pub const UNAVAILABLE: u32 = 1 << 9;
    /// 412: an `If-Match` precondition failed.
    pub const PRECONDITION_FAILED: u32 = 1 << 10;
    /// 415: the body's media type or content coding is not accepted.
    pub const UNSUPPORTED_MEDIA_TYPE: u32 = 1 << 11;

    /// What any operation can answer.
    pub const ALWAYS: u32 = BAD_REQUEST | RATE_LIMITED | INTERNAL | UNAVAILABLE;
    /// What any operation behind a bearer token can answer.
    pub const AUTHED: u32 = ALWAYS | UNAUTHORIZED;
    /// What any operation with a JSON body can answer in addition.
    pub const BODY: u32 = PAYLOAD_TOO_LARGE | UNSUPPORTED_MEDIA_TYPE | VALIDATION;

    pub(super) const ALL: [(u32, u16, &str); 12] = [
        (
            BAD_REQUEST,
            400,
            "The request could not be read (e.g. malformed JSON).",
        ),
        (
            UNAUTHORIZED,
            401,
            "The bearer token is missing, invalid or expired.",
        ),
        (FORBIDDEN, 403, "The caller may not do this."),
        (NOT_FOUND, 404, "No such resource (or not the caller's)."),
        (
            CONFLICT,
            409,
            "The request conflicts with the current state.",
        ),
        (
            PRECONDITION_FAILED,
            412,
            "`If-Match` does not match the current `ETag`: reload and retry.",
        ),
        (PAYLOAD_TOO_LARGE, 413, "The request body is too large."),
        (
            UNSUPPORTED_MEDIA_TYPE,
            415,
            "The body is not `application/json`, or is compressed (`Content-Encoding` other \
             than `identity`).",
        ),
        (VALIDATION, 422, "Invalid fields; see `errors`."),
        (RATE_LIMITED, 429, "Rate limited; see `Retry-After`."),
        (INTERNAL, 500, "Internal error; quote `request_id`."),
        (
            UNAVAILABLE,
            503,
            "A dependency is unavailable; retry later.",
        ),
    ];
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
        let responses = status::ALL
            .iter()
            .filter(|(flag, _, _)| SET & flag != 0)
            .map(|(_, code, description)| MetaResponse {
                description,
                status: Some(*code),
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
    fn documented_statuses_follow_the_set() {
        let meta = <Problems<{ status::UNAUTHORIZED | status::NOT_FOUND }>>::meta();
        let codes: Vec<_> = meta.responses.iter().filter_map(|r| r.status).collect();
        assert_eq!(codes, vec![401, 404]);
    }
}
