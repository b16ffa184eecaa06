//! Refresh-token sessions: issue, rotate, revoke.
//!
//! A login starts a *family*. Each refresh marks the presented token used and issues its
//! successor in the same family. A used or revoked token presented again means a copy leaked,
//! so the whole family is revoked and the caller must log in again (OAuth 2.0 Security BCP,
//! "refresh token rotation").

use std::time::Duration;

use chrono::Utc;
use sqlx::{PgConnection, PgExecutor, PgPool};
use uuid::Uuid;

use super::tokens::{NewRefreshToken, hash_refresh_token, new_refresh_token};
use crate::error::ApiError;

/// Stores a new refresh token in `family_id` (a new family when `None`).
pub async fn issue(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    family_id: Option<Uuid>,
    ttl: Duration,
) -> Result<NewRefreshToken, ApiError> {
    let token = new_refresh_token();
    let expires_at = Utc::now()
        + chrono::Duration::from_std(ttl).map_err(|err| ApiError::Internal(err.into()))?;
    sqlx::query!(
        "INSERT INTO refresh_tokens (id, user_id, family_id, token_hash, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        Uuid::now_v7(),
        user_id,
        family_id.unwrap_or_else(Uuid::now_v7),
        token.hash,
        expires_at,
    )
    .execute(db)
    .await?;
    Ok(token)
}

/// The outcome of presenting a refresh token.
#[derive(Debug)]
pub enum Rotation {
    /// The token was current: here is its successor.
    Rotated {
        /// The session's user.
        user_id: Uuid,
        /// The new refresh token.
        token: NewRefreshToken,
    },
    /// Unknown, expired, or the user is gone: refuse.
    Refused,
    /// The session was ended (logout, logout-all, a password change, an administrator) before
    /// this token was used: refuse, nothing suspicious.
    Ended,
    /// The token was already traded for a successor: whoever presents it now holds a copy,
    /// so its family has now been revoked.
    ReuseDetected,
}

/// Rotates `presented` inside the caller's transaction. The row lock serialises concurrent
/// refreshes of one token: exactly one succeeds, the other counts as reuse.
pub async fn rotate(
    tx: &mut PgConnection,
    presented: &str,
    ttl: Duration,
) -> Result<Rotation, ApiError> {
    let hash = hash_refresh_token(presented);
    let Some(row) = sqlx::query!(
        r#"SELECT id, user_id, family_id, expires_at, used_at, revoked_at
           FROM refresh_tokens WHERE token_hash = $1 FOR UPDATE"#,
        hash,
    )
    .fetch_optional(&mut *tx)
    .await?
    else {
        return Ok(Rotation::Refused);
    };
    // Only a rotated token is evidence of theft: its legitimate holder got a successor and
    // has no reason to present it again. A revoked but never used one is a session that
    // ended normally, e.g. a client refreshing after its user logged out elsewhere.
    if row.used_at.is_some() {
        revoke_family(&mut *tx, row.family_id).await?;
        return Ok(Rotation::ReuseDetected);
    }
    if row.revoked_at.is_some() {
        return Ok(Rotation::Ended);
    }
    if row.expires_at <= Utc::now() {
        return Ok(Rotation::Refused);
    }
    sqlx::query!(
        "UPDATE refresh_tokens SET used_at = now() WHERE id = $1",
        row.id
    )
    .execute(&mut *tx)
    .await?;
    let token = issue(&mut *tx, row.user_id, Some(row.family_id), ttl).await?;
    Ok(Rotation::Rotated {
        user_id: row.user_id,
        token,
    })
}

/// Revokes every live token of a family.
pub async fn revoke_family(db: impl PgExecutor<'_>, family_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now() WHERE family_id = $1 AND revoked_at IS NULL",
        family_id,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends the session `presented` belongs to; unknown tokens are ignored (logout is idempotent).
pub async fn revoke_session_of(db: &PgPool, presented: &str) -> Result<(), sqlx::Error> {
    let hash = hash_refresh_token(presented);
    sqlx::query!(
        "UPDATE refresh_tokens SET revoked_at = now()
         WHERE revoked_at IS NULL
           AND family_id = (SELECT family_id FROM refresh_tokens WHERE token_hash = $1)",
        hash,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Ends every session of a user: their refresh tokens are revoked and access tokens issued
/// until now are refused (`users.tokens_valid_after`). Returns how many refresh tokens were
/// revoked.
pub async fn revoke_all(db: impl PgExecutor<'_>, user_id: Uuid) -> Result<u64, sqlx::Error> {
    // One statement, so both halves happen or neither. The cut-off comes from this process's
    // clock, the one that stamps access tokens, so a skewed database clock cannot refuse a
    // token issued right after.
    let result = sqlx::query!(
        r#"WITH ended AS (UPDATE users SET tokens_valid_after = $2 WHERE id = $1)
           UPDATE refresh_tokens SET revoked_at = now() WHERE user_id = $1 AND revoked_at IS NULL"#,
        user_id,
        Utc::now(),
    )
    .execute(db)
    .await?;
    Ok(result.rows_affected())
}

/// How long an expired refresh token is kept: presenting it within this time still counts as
/// reuse and revokes its family; afterwards it is only an unknown token (refused).
pub const EXPIRED_TOKEN_RETENTION: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// Deletes up to `limit` refresh tokens that expired more than [`EXPIRED_TOKEN_RETENTION`]
/// ago; returns how many.
pub async fn purge_expired(db: &PgPool, limit: i64) -> Result<u64, sqlx::Error> {
    let cutoff = Utc::now() - EXPIRED_TOKEN_RETENTION;
    let purged = sqlx::query!(
        "DELETE FROM refresh_tokens
         WHERE id = ANY(ARRAY(
             SELECT id FROM refresh_tokens WHERE expires_at < $1
             ORDER BY expires_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED))",
        cutoff,
        limit,
    )
    .execute(db)
    .await?;
    Ok(purged.rows_affected())
}
