//! Queries of email delivery.

use sqlx::PgExecutor;
use uuid::Uuid;

/// An account a message can go to.
#[derive(Debug, Clone)]
pub struct Account {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub email_verified: bool,
    pub is_active: bool,
}

/// Serialises the runs of one event's email across processes until the transaction ends.
pub async fn lock_event(db: impl PgExecutor<'_>, event_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "SELECT pg_advisory_xact_lock(hashtextextended($1::text, 7301))",
        event_id.to_string()
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The `Message-ID` of the event's delivery, if it was delivered.
pub async fn delivered(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT message_id FROM email_deliveries WHERE event_id = $1",
        event_id
    )
    .fetch_optional(db)
    .await
}

/// Records the event's delivery.
pub async fn record(
    db: impl PgExecutor<'_>,
    event_id: Uuid,
    user_id: Uuid,
    template: &str,
    message_id: &str,
    transport: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        r#"INSERT INTO email_deliveries (event_id, user_id, template, message_id, transport)
           VALUES ($1, $2, $3, $4, $5)"#,
        event_id,
        user_id,
        template,
        message_id,
        transport,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// The account with this id.
pub async fn account(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as!(
        Account,
        "SELECT id, email, username, email_verified, is_active FROM users WHERE id = $1",
        id
    )
    .fetch_optional(db)
    .await
}

/// The account with this address (case-insensitive, as accounts are unique).
pub async fn account_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<Account>, sqlx::Error> {
    sqlx::query_as!(
        Account,
        "SELECT id, email, username, email_verified, is_active FROM users
         WHERE lower(email) = lower($1)",
        email
    )
    .fetch_optional(db)
    .await
}
