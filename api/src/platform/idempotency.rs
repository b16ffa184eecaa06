//! `Idempotency-Key` on creates: a retry replays the first response.
//!
//! The first request with a key claims it by inserting its row inside the same database
//! transaction as the resource it creates, and stores its response there before committing.
//! A concurrent retry's insert blocks on the primary key until that transaction ends; then it
//! either finds the committed row and replays it, or (the first one failed and rolled back)
//! claims the key itself. So one key creates at most one resource, without advisory locks or
//! polling. Only successful responses are stored: a request that failed changed nothing and
//! may simply run again. Keys are per user and operation and expire after 24 hours. A replay
//! answers the stored status and body ([`Answer`]).

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::ApiResponse;
use poem_openapi::registry::{MetaResponses, Registry};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::error::{ApiError, on_constraint};

/// The header's name, as problems name the field.
pub const HEADER: &str = "Idempotency-Key";

/// A key as the OpenAPI document states it.
pub const KEY_PATTERN: &str = r"^[!-~]{1,255}$";
/// What [`KEY_PATTERN`] means.
pub const KEY_MESSAGE: &str = "must be 1–255 visible ASCII characters, e.g. a UUID";

/// A validated key: 1–255 visible ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// Validates the header's value.
    pub fn parse(raw: &str) -> Result<Self, ApiError> {
        if (1..=255).contains(&raw.len()) && raw.bytes().all(|b| b.is_ascii_graphic()) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(ApiError::invalid(HEADER, KEY_MESSAGE))
        }
    }
}

/// An operation that takes keys, each with its own key space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    CreatePortfolio,
    CreateTransaction,
    BulkFetch,
}

impl Scope {
    fn as_str(self) -> &'static str {
        match self {
            Self::CreatePortfolio => "create_portfolio",
            Self::CreateTransaction => "create_transaction",
            Self::BulkFetch => "bulk_fetch",
        }
    }
}

/// The fingerprint of a request: its path and its body as parsed (so whitespace and key order
/// do not matter, and `"1.50"` is the same amount as `"1.5"`).
pub fn fingerprint(path: &str, body: &impl Serialize) -> Result<Vec<u8>, ApiError> {
    let body = serde_json::to_vec(body).map_err(|err| ApiError::Internal(err.into()))?;
    let mut hasher = Sha256::new();
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(&body);
    Ok(hasher.finalize().to_vec())
}

/// `"true"` on a replayed response, for the `Idempotent-Replayed` header.
pub fn replayed_header(replay: bool) -> Option<String> {
    replay.then(|| "true".to_owned())
}

/// What a claim found.
#[derive(Debug)]
pub enum Claim<T> {
    /// The key is ours: do the work, then [`store`] the response before committing.
    Fresh,
    /// The key was used for this very request: answer with its first response again, with
    /// the status it was answered with ([`Answer::replay`]).
    Replay { status: StatusCode, body: T },
}

/// A create's response: what the handler made of it, answered with the stored status when it
/// is a replay. The OpenAPI document shows `R`'s responses, one of which the first request
/// answered.
#[derive(Debug)]
pub struct Answer<R> {
    response: R,
    /// The stored status of a replay.
    replayed: Option<StatusCode>,
}

impl<R> Answer<R> {
    /// A response made just now.
    pub fn fresh(response: R) -> Self {
        Self {
            response,
            replayed: None,
        }
    }

    /// The replay of a response first answered with `status`.
    pub fn replay(status: StatusCode, response: R) -> Self {
        Self {
            response,
            replayed: Some(status),
        }
    }
}

impl<R: IntoResponse> IntoResponse for Answer<R> {
    fn into_response(self) -> Response {
        let mut response = self.response.into_response();
        if let Some(status) = self.replayed {
            response.set_status(status);
        }
        response
    }
}

impl<R: ApiResponse> ApiResponse for Answer<R> {
    const BAD_REQUEST_HANDLER: bool = R::BAD_REQUEST_HANDLER;

    fn meta() -> MetaResponses {
        R::meta()
    }

    fn register(registry: &mut Registry) {
        R::register(registry);
    }

    fn from_parse_request_error(err: poem::Error) -> Self {
        Self::fresh(R::from_parse_request_error(err))
    }
}

/// Claims `key` for this request inside `conn`'s transaction, or finds its first response.
///
/// The same key with a different request is a 422.
pub async fn claim<T: ParseFromJSON>(
    conn: &mut PgConnection,
    user_id: Uuid,
    scope: Scope,
    key: &Key,
    fingerprint: &[u8],
) -> Result<Claim<T>, ApiError> {
    // Inserts, or takes over a row older than 24 h; returns a row only if the key is now ours.
    let claimed = sqlx::query_scalar!(
        r#"INSERT INTO idempotency_keys (user_id, scope, key, request_hash)
           VALUES ($1, $2, $3, $4)
           ON CONFLICT (user_id, scope, key) DO UPDATE
             SET request_hash = EXCLUDED.request_hash, response_status = NULL,
                 response_body = NULL, created_at = now()
             WHERE idempotency_keys.created_at < now() - interval '24 hours'
           RETURNING true AS "claimed!""#,
        user_id,
        scope.as_str(),
        &key.0,
        fingerprint,
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(|err| {
        // The account was deleted while its access token is still valid.
        on_constraint(
            err,
            &[("idempotency_keys_user_id_fkey", || {
                ApiError::Unauthorized("the account no longer exists".into())
            })],
        )
    })?;
    if claimed.is_some() {
        // Keep each user's key table small: their expired keys go on every claim.
        sqlx::query!(
            "DELETE FROM idempotency_keys
             WHERE user_id = $1 AND created_at < now() - interval '24 hours'",
            user_id,
        )
        .execute(&mut *conn)
        .await?;
        return Ok(Claim::Fresh);
    }
    let stored = sqlx::query!(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys
         WHERE user_id = $1 AND scope = $2 AND key = $3",
        user_id,
        scope.as_str(),
        &key.0,
    )
    .fetch_one(&mut *conn)
    .await?;
    if stored.request_hash != fingerprint {
        return Err(ApiError::invalid(
            HEADER,
            "this key was already used with a different request; use a new key",
        ));
    }
    // Both are written in the claiming transaction, so a committed row always has them.
    let status = stored
        .response_status
        .and_then(|status| u16::try_from(status).ok())
        .and_then(|status| StatusCode::from_u16(status).ok())
        .ok_or_else(|| {
            ApiError::Internal(anyhow::anyhow!(
                "stored idempotent response has no valid status: {:?}",
                stored.response_status
            ))
        })?;
    let body = T::parse_from_json(stored.response_body).map_err(|err| {
        ApiError::Internal(anyhow::anyhow!(
            "stored idempotent response: {}",
            err.message()
        ))
    })?;
    Ok(Claim::Replay { status, body })
}

/// Stores the response of a request that claimed its key (same transaction as its writes):
/// the status it answers and its body.
pub async fn store<T: ToJSON>(
    conn: &mut PgConnection,
    user_id: Uuid,
    scope: Scope,
    key: &Key,
    status: StatusCode,
    body: &T,
) -> Result<(), ApiError> {
    let status = i16::try_from(status.as_u16()).map_err(|err| ApiError::Internal(err.into()))?;
    sqlx::query!(
        "UPDATE idempotency_keys SET response_status = $4, response_body = $5
         WHERE user_id = $1 AND scope = $2 AND key = $3",
        user_id,
        scope.as_str(),
        &key.0,
        status,
        body.to_json(),
    )
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Deletes up to `limit` keys of any user that expired (older than 24 h); returns how many.
/// Keys already locked by a request taking them over are skipped.
pub async fn purge_expired(db: &sqlx::PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    let purged = sqlx::query!(
        "DELETE FROM idempotency_keys
         WHERE ctid = ANY(ARRAY(
             SELECT ctid FROM idempotency_keys
             WHERE created_at < now() - interval '24 hours'
             ORDER BY created_at
             LIMIT $1
             FOR UPDATE SKIP LOCKED))
           AND created_at < now() - interval '24 hours'",
        limit,
    )
    .execute(db)
    .await?;
    Ok(purged.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_visible_ascii() {
        assert!(Key::parse("0193a3c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d").is_ok());
        assert!(Key::parse("").is_err());
        assert!(Key::parse("has space").is_err());
        assert!(Key::parse("é").is_err());
        assert!(Key::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn fingerprints_cover_path_and_body() {
        #[derive(Serialize)]
        struct Body {
            name: &'static str,
        }
        let a = fingerprint("/a", &Body { name: "x" }).expect("hashes");
        assert_eq!(a, fingerprint("/a", &Body { name: "x" }).expect("hashes"));
        assert_ne!(a, fingerprint("/b", &Body { name: "x" }).expect("hashes"));
        assert_ne!(a, fingerprint("/a", &Body { name: "y" }).expect("hashes"));
    }
}
