//! Queries for delivering notifications.

use serde_json::Value;
use sqlx::PgExecutor;
use uuid::Uuid;

/// What delivery needs to know of the recipient: whether the account is there and active,
/// and their preferences (the defaults when they never set any).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient {
    pub active: bool,
    pub in_app_enabled: bool,
    pub email_enabled: bool,
    pub price_alerts: bool,
    pub account: bool,
    pub jobs: bool,
}

/// The recipient, or `None` when the account no longer exists.
pub async fn recipient(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<Option<Recipient>, sqlx::Error> {
    sqlx::query_as!(
        Recipient,
        r#"SELECT u.is_active AS active,
                  COALESCE(p.in_app_enabled, true) AS "in_app_enabled!",
                  COALESCE(p.email_enabled, true) AS "email_enabled!",
                  COALESCE(p.price_alerts, true) AS "price_alerts!",
                  COALESCE(p.account, true) AS "account!",
                  COALESCE(p.jobs, true) AS "jobs!"
           FROM users u LEFT JOIN notification_preferences p ON p.user_id = u.id
           WHERE u.id = $1"#,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// A notification to store.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub id: Uuid,
    pub user_id: Uuid,
    pub category: &'a str,
    pub kind: &'a str,
    pub title: &'a str,
    pub body: &'a str,
    pub data: &'a Value,
}

/// Stores the in-app notification unless the event already has one; `true` when written now.
pub async fn insert(
    db: impl PgExecutor<'_>,
    notification: &NewNotification<'_>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        r#"INSERT INTO notifications (id, user_id, category, kind, title, body, data)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           ON CONFLICT (id) DO NOTHING"#,
        notification.id,
        notification.user_id,
        notification.category,
        notification.kind,
        notification.title,
        notification.body,
        notification.data,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}
