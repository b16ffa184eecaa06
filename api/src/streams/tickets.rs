//! Single-use WebSocket tickets: a browser cannot set `Authorization` on a WebSocket, and a
//! long-lived access token in a URL ends up in logs and histories. A ticket is 256 random bits,
//! valid for `WS_TICKET_TTL`, stored in Redis (only its SHA-256) so that any API process can
//! redeem it, exactly once (`GETDEL`).

use std::time::Duration;

use common::redis::Redis;

use crate::auth::extract::StreamSession;
use crate::auth::tokens::{new_refresh_token, sha256_hex};
use crate::error::ApiError;

fn key(redis: &Redis, ticket: &str) -> String {
    redis.key(&format!("ws-ticket:{}", sha256_hex(ticket)))
}

fn unavailable(err: &redis::RedisError) -> ApiError {
    tracing::warn!(error = %err, "WebSocket tickets unavailable");
    ApiError::Unavailable("WebSocket tickets are unavailable right now; retry later".into())
}

/// A new ticket for `session`.
pub async fn issue(
    redis: &Redis,
    session: StreamSession,
    ttl: Duration,
) -> Result<String, ApiError> {
    // 256 random bits, URL-safe: what a refresh token is made of.
    let ticket = new_refresh_token().token;
    let mut conn = redis.conn().await.map_err(|err| unavailable(&err))?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    redis::cmd("SET")
        .arg(key(redis, &ticket))
        .arg(format!(
            "{} {} {}",
            session.user_id, session.issued_ms, session.expires_at
        ))
        .arg("PX")
        .arg(ttl_ms)
        .query_async::<()>(&mut conn)
        .await
        .map_err(|err| unavailable(&err))?;
    Ok(ticket)
}

/// The session a ticket was issued for, if the ticket exists, is unexpired and unused; it is
/// used up by this call.
pub async fn redeem(redis: &Redis, ticket: &str) -> Result<Option<StreamSession>, ApiError> {
    if ticket.len() > 100 {
        return Ok(None);
    }
    let mut conn = redis.conn().await.map_err(|err| unavailable(&err))?;
    let stored: Option<String> = redis::cmd("GETDEL")
        .arg(key(redis, ticket))
        .query_async(&mut conn)
        .await
        .map_err(|err| unavailable(&err))?;
    Ok(stored.and_then(|value| {
        let mut parts = value.split(' ');
        Some(StreamSession {
            user_id: parts.next()?.parse().ok()?,
            issued_ms: parts.next()?.parse().ok()?,
            expires_at: parts.next()?.parse().ok()?,
        })
    }))
}
