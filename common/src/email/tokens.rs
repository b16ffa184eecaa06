//! Single-use account tokens (email verification, password reset). A token is 256 random
//! bits sent in a message; only its SHA-256 is stored, with its purpose, the address it was
//! sent to and an expiry. The worker creates them as it sends; the API consumes them.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgExecutor;
use uuid::Uuid;

crate::text_enum! {
    /// What a token lets its holder do.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    pub enum TokenPurpose {
        /// Confirm the address it was sent to.
        VerifyEmail = "verify_email",
        /// Choose a new password.
        PasswordReset = "password_reset",
    }
}

impl TokenPurpose {
    /// How long a token of this purpose stays usable.
    pub fn lifetime(self) -> Duration {
        match self {
            TokenPurpose::VerifyEmail => Duration::from_secs(24 * 3600),
            TokenPurpose::PasswordReset => Duration::from_secs(3600),
        }
    }
}

/// The stored form of a token. A fast hash is right: 256 random bits cannot be brute-forced
/// from a leaked digest.
pub fn hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a token for `user_id` at `email` and stores its hash; returns the token, which
/// exists nowhere else. Call it in the transaction that records the message's delivery, so a
/// message that was not sent leaves no usable token.
pub async fn create(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    email: &str,
    purpose: TokenPurpose,
) -> Result<String, sqlx::Error> {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let token = URL_SAFE_NO_PAD.encode(bytes);
    let lifetime = i64::try_from(purpose.lifetime().as_secs()).unwrap_or(i64::MAX);
    sqlx::query!(
        r#"INSERT INTO account_tokens (token_hash, user_id, purpose, email, expires_at)
           VALUES ($1, $2, $3, $4, now() + make_interval(secs => $5))"#,
        hash(&token),
        user_id,
        purpose as TokenPurpose,
        email,
        lifetime as f64,
    )
    .execute(db)
    .await?;
    Ok(token)
}

/// Whose token it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumedToken {
    /// The account.
    pub user_id: Uuid,
    /// The address the token was sent to.
    pub email: String,
}

/// Uses up a token of `purpose`: `None` when it is unknown, expired, already used or of
/// another purpose (callers answer all of these alike). Every other unused token of the same
/// account and purpose is used up with it, so an older link stops working too.
pub async fn consume(
    db: impl PgExecutor<'_>,
    token: &str,
    purpose: TokenPurpose,
) -> Result<Option<ConsumedToken>, sqlx::Error> {
    sqlx::query_as!(
        ConsumedToken,
        r#"WITH used AS (
               UPDATE account_tokens SET used_at = now()
               WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > now()
               RETURNING user_id, email
           ), siblings AS (
               UPDATE account_tokens AS other SET used_at = now()
               FROM used
               WHERE other.user_id = used.user_id AND other.purpose = $2
                 AND other.used_at IS NULL AND other.token_hash <> $1
           )
           SELECT user_id, email FROM used"#,
        hash(token),
        purpose as TokenPurpose,
    )
    .fetch_optional(db)
    .await
}

/// Deletes up to `limit` tokens that expired more than a day ago (housekeeping).
pub async fn purge_expired(db: impl PgExecutor<'_>, limit: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"DELETE FROM account_tokens WHERE token_hash IN (
               SELECT token_hash FROM account_tokens
               WHERE expires_at < now() - interval '1 day' LIMIT $1)"#,
        limit,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}
