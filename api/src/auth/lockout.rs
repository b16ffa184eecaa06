//! A per-account limit on failed password checks, shared by every API process through Redis.
//!
//! The per-IP limit on `/auth/*` does nothing against a guesser spread over many addresses; this
//! one is keyed by the account (the normalised email), whatever the address. Every password
//! check (login, password change) first reserves an attempt: `INCR` on the account's counter,
//! which expires `LOGIN_FAILURE_WINDOW` after the first attempt. Over the limit, the check is
//! refused with 429 before any hashing. A correct password deletes the counter, so what remains
//! counts failures (and checks still in flight, which is what makes concurrent guesses count).
//!
//! Unknown emails are counted exactly like known ones, so the limit reveals nothing about which
//! accounts exist. The counter key holds a hash of the email, not the email.
//!
//! When Redis is unreachable the check is let through (logged): the per-IP limit still holds,
//! and refusing every login while Redis is down would hand an outage to all users.

use std::time::Duration;

use common::redis::Redis;

use super::tokens::sha256_hex;
use crate::config::RateLimitConfig;
use crate::error::ApiError;

/// Counts failed password checks per account.
#[derive(Debug, Clone)]
pub struct LoginLockout {
    redis: Redis,
    max_failures: u32,
    window: Duration,
}

/// A reserved password check; report a correct password with [`LoginLockout::succeeded`].
#[derive(Debug)]
#[must_use = "a correct password must clear the account's failures"]
pub struct Attempt {
    key: Option<String>,
}

impl LoginLockout {
    /// The limit from configuration, counted in `redis`.
    pub fn new(redis: Redis, limits: &RateLimitConfig) -> Self {
        Self {
            redis,
            max_failures: limits.login_failures_per_account,
            window: limits.login_failure_window,
        }
    }

    fn key(&self, account: &str) -> String {
        let hex = sha256_hex(&account.trim().to_lowercase());
        self.redis.key(&format!("login-failures:{hex}"))
    }

    /// Reserves one password check for `account`, or refuses it (429) when the account has had
    /// too many failures within the window.
    pub async fn begin(&self, account: &str) -> Result<Attempt, ApiError> {
        let key = self.key(account);
        let window_ms = u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX);
        let counted = async {
            let mut conn = self.redis.conn().await?;
            redis::pipe()
                .atomic()
                .incr(&key, 1u32)
                .cmd("PEXPIRE")
                .arg(&key)
                .arg(window_ms)
                .arg("NX")
                .ignore()
                .pttl(&key)
                .query_async::<(u32, i64)>(&mut conn)
                .await
        };
        match counted.await {
            Ok((attempts, _)) if attempts <= self.max_failures => Ok(Attempt { key: Some(key) }),
            Ok((_, ttl_ms)) => {
                metrics::counter!("rate_limited_total", "scope" => "account").increment(1);
                let ttl_ms = u64::try_from(ttl_ms).unwrap_or(window_ms).max(1);
                Err(ApiError::RateLimited {
                    retry_after_secs: ttl_ms.div_ceil(1000),
                })
            }
            Err(err) => {
                tracing::warn!(error = %err, "login failure counter unavailable; check allowed");
                Ok(Attempt { key: None })
            }
        }
    }

    /// The password was right: the account's failures are forgiven.
    pub async fn succeeded(&self, attempt: Attempt) {
        let Some(key) = attempt.key else { return };
        self.delete(&key).await;
    }

    /// Forgives `account`'s failures without a password check: after a password reset the
    /// owner has proven control of the address, and must be able to log in at once even if
    /// a guesser had locked the account.
    pub async fn clear(&self, account: &str) {
        self.delete(&self.key(account)).await;
    }

    async fn delete(&self, key: &str) {
        let cleared = async {
            let mut conn = self.redis.conn().await?;
            redis::cmd("DEL")
                .arg(key)
                .query_async::<()>(&mut conn)
                .await
        };
        if let Err(err) = cleared.await {
            tracing::warn!(error = %err, "could not clear the login failure counter");
        }
    }
}
