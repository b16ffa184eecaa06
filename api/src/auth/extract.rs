//! The bearer-token security schemes: every authenticated operation takes the caller as an
//! [`ActiveUser`] (or an [`AdminUser`]), whose checker has verified the token *and* loaded the
//! account, so a handler cannot forget that a valid token may belong to an account that was
//! disabled or deleted since it was issued. No handler reads the token's claims.

use std::sync::Arc;

use common::domain::Role;
use poem::Request;
use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;
use sqlx::PgPool;

use super::tokens::{Claims, TokenError, TokenKeys};
use crate::error::ApiError;
use crate::users::active_account;
use crate::users::cache::UserCache;
use crate::users::model::UserRow;

/// The caller: an account that exists and is active now. Operations that take it require
/// `Authorization: Bearer <access_token>`; a token of a disabled or deleted account gets 401.
///
/// Read from the per-process user cache when fresh (`USER_CACHE_TTL`); changes to an account
/// reach every process's cache within a second through Redis (`users::cache`).
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "active_user"
)]
pub struct ActiveUser(pub Arc<UserRow>);

/// The caller, who must be an active administrator *now*: the account is read from Postgres on
/// every request (never from a cache or the token's role claim), so a demotion takes effect at
/// once. A non-admin gets 403.
#[derive(Debug, SecurityScheme)]
#[oai(
    rename = "bearerAuth",
    ty = "bearer",
    bearer_format = "JWT",
    checker = "active_admin"
)]
pub struct AdminUser(pub UserRow);

/// What the checkers need, installed as request data by `build_app`.
#[derive(Debug, Clone)]
pub struct Accounts {
    /// The keys that verify access tokens.
    pub tokens: Arc<TokenKeys>,
    /// Where accounts are read.
    pub db: PgPool,
    /// Recently read accounts.
    pub users: UserCache,
}

/// The bearer token's verification result, computed once per request by the rate limiter
/// (which needs the user id) and reused by the checkers.
#[derive(Debug, Clone)]
pub struct VerifiedBearer(pub Result<Arc<Claims>, TokenError>);

fn accounts(req: &Request) -> Result<&Accounts, ApiError> {
    req.data::<Accounts>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("account lookup is not installed")))
}

fn verified_claims(req: &Request, keys: &TokenKeys, token: &str) -> Result<Arc<Claims>, ApiError> {
    let result = match req.data::<VerifiedBearer>() {
        Some(VerifiedBearer(result)) => result.clone(),
        None => keys.verify(token),
    };
    result.map_err(|err| ApiError::InvalidToken(err.to_string()))
}

/// An account the token names that can no longer act (deleted, disabled) makes the token
/// itself invalid.
fn token_problem(err: ApiError) -> ApiError {
    match err {
        ApiError::Unauthorized(why) => ApiError::InvalidToken(why),
        other => other,
    }
}

/// When the token was issued, in milliseconds since the epoch: the token id's (UUIDv7)
/// millisecond, so a token issued a moment after a cut-off is not taken for one issued in the
/// same second before it.
fn issued_ms(claims: &Claims) -> i64 {
    claims
        .jti
        .get_timestamp()
        .map_or(claims.iat.saturating_mul(1000), |stamp| {
            let (secs, nanos) = stamp.to_unix();
            i64::try_from(secs * 1000 + u64::from(nanos / 1_000_000)).unwrap_or(i64::MAX)
        })
}

/// Whether a token issued at `issued_ms` predates the account's sessions being last ended
/// (logout-all, a password change, disabling).
fn issued_before_cutoff(issued_ms: i64, user: &UserRow) -> bool {
    user.tokens_valid_after
        .is_some_and(|cutoff| issued_ms < cutoff.timestamp_millis())
}

/// `user` if the token may still act for it.
fn unless_ended<U: std::borrow::Borrow<UserRow>>(claims: &Claims, user: U) -> Result<U, ApiError> {
    if issued_before_cutoff(issued_ms(claims), user.borrow()) {
        return Err(ApiError::InvalidToken(
            "the session was ended; log in again".into(),
        ));
    }
    Ok(user)
}

async fn active_user(req: &Request, bearer: Bearer) -> poem::Result<Arc<UserRow>> {
    let accounts = accounts(req)?;
    let claims = verified_claims(req, &accounts.tokens, &bearer.token)?;
    let user = match accounts.users.get(claims.sub) {
        Some(user) => user,
        None => {
            let user = Arc::new(
                active_account(&accounts.db, claims.sub)
                    .await
                    .map_err(token_problem)?,
            );
            accounts.users.insert(user.clone());
            user
        }
    };
    Ok(unless_ended(&claims, user)?)
}

async fn active_admin(req: &Request, bearer: Bearer) -> poem::Result<UserRow> {
    let accounts = accounts(req)?;
    let claims = verified_claims(req, &accounts.tokens, &bearer.token)?;
    let account = active_account(&accounts.db, claims.sub)
        .await
        .map_err(token_problem)?;
    let user = unless_ended(&claims, account)?;
    if user.role != Role::Admin {
        return Err(ApiError::Forbidden("administrator role required".into()).into());
    }
    Ok(user)
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

/// The session behind a long-lived response (a stream): whose it is and when its token was
/// issued, so that the stream can ask later whether the account may still use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSession {
    /// The account.
    pub user_id: uuid::Uuid,
    /// When the token that opened the stream was issued (ms since the epoch).
    pub issued_ms: i64,
    /// When that token expires (Unix seconds): the stream ends then, and the client comes
    /// back with a fresh token.
    pub expires_at: i64,
}

impl StreamSession {
    /// The session of a request that an [`ActiveUser`] checker has let through.
    pub fn of_request(req: &Request) -> Result<Self, ApiError> {
        let accounts = accounts(req)?;
        let token = bearer_token(req)
            .ok_or_else(|| ApiError::Unauthorized("a bearer token is required".into()))?;
        let claims = verified_claims(req, &accounts.tokens, token)?;
        Ok(Self {
            user_id: claims.sub,
            issued_ms: issued_ms(&claims),
            expires_at: claims.exp,
        })
    }

    /// The session of a bearer token, checked now: the token is valid and its account active.
    pub async fn from_token(accounts: &Accounts, token: &str) -> Result<Self, ApiError> {
        let claims = accounts
            .tokens
            .verify(token)
            .map_err(|err| ApiError::InvalidToken(err.to_string()))?;
        let user = active_account(&accounts.db, claims.sub)
            .await
            .map_err(token_problem)?;
        unless_ended(&claims, &user)?;
        Ok(Self {
            user_id: claims.sub,
            issued_ms: issued_ms(&claims),
            expires_at: claims.exp,
        })
    }

    /// Whether the account is still active and this session was not ended since, read from
    /// Postgres (not the cache, which may be the one that just changed).
    pub async fn still_valid(&self, db: &PgPool) -> Result<bool, ApiError> {
        match active_account(db, self.user_id).await {
            Ok(user) => Ok(!issued_before_cutoff(self.issued_ms, &user)),
            Err(ApiError::Unauthorized(_) | ApiError::InvalidToken(_)) => Ok(false),
            Err(err) => Err(err),
        }
    }
}
