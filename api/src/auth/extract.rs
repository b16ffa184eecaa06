//! The bearer-token security scheme used by every authenticated operation.

use std::sync::Arc;

use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use super::tokens::{Claims, TokenError, TokenKeys};
use crate::error::ApiError;

/// A verified access token. Operations that take this parameter require
/// `Authorization: Bearer <access_token>`.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "verify_bearer"
)]
pub struct BearerAuth(pub Arc<Claims>);

/// The bearer token's verification result, computed once per request by the rate limiter
/// (which needs the user id) and reused by [`BearerAuth`].
#[derive(Debug, Clone)]
pub struct VerifiedBearer(pub Result<Arc<Claims>, TokenError>);

async fn verify_bearer(req: &Request, bearer: Bearer) -> poem::Result<Arc<Claims>> {
    let result = match req.data::<VerifiedBearer>() {
        Some(VerifiedBearer(result)) => result.clone(),
        None => {
            let keys = req.data::<Arc<TokenKeys>>().ok_or_else(|| {
                ApiError::Internal(anyhow::anyhow!("token keys are not installed"))
            })?;
            keys.verify(&bearer.token)
        }
    };
    result.map_err(|err| ApiError::Unauthorized(err.to_string()).into())
}

/// The raw bearer token of a request, if it has one.
pub fn bearer_token(req: &Request) -> Option<&str> {
    let value = req
        .headers()
        .get(poem::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
