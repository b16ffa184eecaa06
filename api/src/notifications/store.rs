//! Queries on `notifications` and `notification_preferences` for the API.

use chrono::{DateTime, Utc};
use common::notifications::Category;
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

/// A row of `notifications`.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub id: Uuid,
    pub category: Category,
    pub kind: String,
    pub title: String,
    pub body: String,
    pub data: Value,
    pub read_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A page of the caller's notifications (newest first), the total matching, and the
/// caller's unread count.
pub async fn list(
    db: &mut PgConnection,
    user_id: Uuid,
    unread: Option<bool>,
    category: Option<Category>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<NotificationRow>, i64, i64), sqlx::Error> {
    let category = category.map(Category::as_str);
    let rows = sqlx::query_as!(
        NotificationRow,
        r#"SELECT id, category AS "category: Category", kind, title, body, data, read_at,
                  created_at
           FROM notifications
           WHERE user_id = $1 AND ($2::bool IS NULL OR (read_at IS NULL) = $2)
             AND ($3::text IS NULL OR category = $3)
           ORDER BY created_at DESC, id DESC
           LIMIT $4 OFFSET $5"#,
        user_id,
        unread,
        category,
        limit,
        offset,
    )
    .fetch_all(&mut *db)
    .await?;
    let counts = sqlx::query!(
        r#"SELECT count(*) FILTER (WHERE ($2::bool IS NULL OR (read_at IS NULL) = $2)
                                   AND ($3::text IS NULL OR category = $3)) AS "total!",
                  count(*) FILTER (WHERE read_at IS NULL) AS "unread!"
           FROM notifications WHERE user_id = $1"#,
        user_id,
        unread,
        category,
    )
    .fetch_one(&mut *db)
    .await?;
    Ok((rows, counts.total, counts.unread))
}

/// Marks the caller's notification read (keeping the first time); `None` if it is not theirs.
pub async fn mark_read(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as!(
        NotificationRow,
        r#"UPDATE notifications SET read_at = COALESCE(read_at, now())
           WHERE id = $1 AND user_id = $2
           RETURNING id, category AS "category: Category", kind, title, body, data, read_at,
                     created_at"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// Marks every unread notification of the caller read (of one category, if given).
pub async fn mark_all_read(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    category: Option<Category>,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE notifications SET read_at = now()
         WHERE user_id = $1 AND read_at IS NULL AND ($2::text IS NULL OR category = $2)",
        user_id,
        category.map(Category::as_str),
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Deletes the caller's notification; `false` if it is not theirs.
pub async fn delete(db: impl PgExecutor<'_>, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "DELETE FROM notifications WHERE id = $1 AND user_id = $2",
        id,
        user_id
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A user's preferences.
#[derive(Debug, Clone, Copy)]
pub struct PreferencesRow {
    pub in_app_enabled: bool,
    pub email_enabled: bool,
    pub price_alerts: bool,
    pub account: bool,
    pub jobs: bool,
}

/// The caller's preferences (the defaults, all on, when never set).
pub async fn preferences(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
) -> Result<PreferencesRow, sqlx::Error> {
    let stored = sqlx::query_as!(
        PreferencesRow,
        "SELECT in_app_enabled, email_enabled, price_alerts, account, jobs
         FROM notification_preferences WHERE user_id = $1",
        user_id
    )
    .fetch_optional(db)
    .await?;
    Ok(stored.unwrap_or(PreferencesRow {
        in_app_enabled: true,
        email_enabled: true,
        price_alerts: true,
        account: true,
        jobs: true,
    }))
}

/// Stores the caller's preferences.
pub async fn save_preferences(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    preferences: PreferencesRow,
) -> Result<PreferencesRow, sqlx::Error> {
    sqlx::query_as!(
        PreferencesRow,
        r#"INSERT INTO notification_preferences
               (user_id, in_app_enabled, email_enabled, price_alerts, account, jobs)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (user_id) DO UPDATE SET
               in_app_enabled = $2, email_enabled = $3, price_alerts = $4, account = $5,
               jobs = $6, updated_at = now()
           RETURNING in_app_enabled, email_enabled, price_alerts, account, jobs"#,
        user_id,
        preferences.in_app_enabled,
        preferences.email_enabled,
        preferences.price_alerts,
        preferences.account,
        preferences.jobs,
    )
    .fetch_one(db)
    .await
}
