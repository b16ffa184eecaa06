//! Queries on `alerts` for the API.

use chrono::{DateTime, Utc};
use common::alerts::{AlertState, Condition, Trigger};
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::model::AlertRow;

/// An alert's fields as written by the caller.
#[derive(Debug, Clone)]
pub struct AlertFields {
    pub coin_id: String,
    pub vs_currency: String,
    pub condition: Condition,
    pub target: Decimal,
    pub trigger: Trigger,
    pub cooldown_seconds: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub active: bool,
}

/// Locks the caller's account row, so that counting their active alerts and adding one is
/// atomic across concurrent requests (the limit holds).
pub async fn lock_owner(db: &mut PgConnection, user_id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user_id)
        .fetch_optional(db)
        .await?;
    Ok(())
}

/// The caller's active, unexpired alerts, other than `except`.
pub async fn count_active(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    except: Option<Uuid>,
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM alerts
           WHERE user_id = $1 AND active AND (expires_at IS NULL OR expires_at > now())
             AND id IS DISTINCT FROM $2"#,
        user_id,
        except,
    )
    .fetch_one(db)
    .await
}

/// Inserts an alert.
pub async fn insert(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    fields: &AlertFields,
) -> Result<AlertRow, sqlx::Error> {
    sqlx::query_as!(
        AlertRow,
        r#"INSERT INTO alerts (id, user_id, coin_id, vs_currency, condition, target, trigger,
                               cooldown_seconds, expires_at, note, active)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
           RETURNING id, coin_id, vs_currency, condition AS "condition: Condition", target,
                     trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note, active,
                     state AS "state: AlertState", last_triggered_at, trigger_count, version,
                     created_at, updated_at"#,
        Uuid::now_v7(),
        user_id,
        fields.coin_id,
        fields.vs_currency,
        fields.condition as Condition,
        fields.target,
        fields.trigger as Trigger,
        fields.cooldown_seconds,
        fields.expires_at,
        fields.note,
        fields.active,
    )
    .fetch_one(db)
    .await
}

/// The caller's alert.
pub async fn find(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<AlertRow>, sqlx::Error> {
    sqlx::query_as!(
        AlertRow,
        r#"SELECT id, coin_id, vs_currency, condition AS "condition: Condition", target,
                  trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note, active,
                  state AS "state: AlertState", last_triggered_at, trigger_count, version,
                  created_at, updated_at
           FROM alerts WHERE id = $1 AND user_id = $2"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// The caller's alert, locked until the transaction ends.
pub async fn lock(
    db: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<AlertRow>, sqlx::Error> {
    sqlx::query_as!(
        AlertRow,
        r#"SELECT id, coin_id, vs_currency, condition AS "condition: Condition", target,
                  trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note, active,
                  state AS "state: AlertState", last_triggered_at, trigger_count, version,
                  created_at, updated_at
           FROM alerts WHERE id = $1 AND user_id = $2 FOR UPDATE"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// A page of the caller's alerts, newest first, with the total.
pub async fn list(
    db: &mut PgConnection,
    user_id: Uuid,
    coin_id: Option<&str>,
    active: Option<bool>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<AlertRow>, i64), sqlx::Error> {
    // `active` as callers see it: an alert past its expiry is not active.
    let rows = sqlx::query_as!(
        AlertRow,
        r#"SELECT id, coin_id, vs_currency, condition AS "condition: Condition", target,
                  trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note, active,
                  state AS "state: AlertState", last_triggered_at, trigger_count, version,
                  created_at, updated_at
           FROM alerts
           WHERE user_id = $1 AND ($2::text IS NULL OR coin_id = $2)
             AND ($3::bool IS NULL
                  OR (active AND (expires_at IS NULL OR expires_at > now())) = $3)
           ORDER BY created_at DESC, id DESC
           LIMIT $4 OFFSET $5"#,
        user_id,
        coin_id,
        active,
        limit,
        offset,
    )
    .fetch_all(&mut *db)
    .await?;
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM alerts
           WHERE user_id = $1 AND ($2::text IS NULL OR coin_id = $2)
             AND ($3::bool IS NULL
                  OR (active AND (expires_at IS NULL OR expires_at > now())) = $3)"#,
        user_id,
        coin_id,
        active,
    )
    .fetch_one(&mut *db)
    .await?;
    Ok((rows, total))
}

/// Writes the caller's fields; `rearm` starts evaluation afresh (armed, no remembered value).
pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    fields: &AlertFields,
    rearm: bool,
) -> Result<AlertRow, sqlx::Error> {
    sqlx::query_as!(
        AlertRow,
        r#"UPDATE alerts
           SET coin_id = $2, vs_currency = $3, condition = $4, target = $5, trigger = $6,
               cooldown_seconds = $7, expires_at = $8, note = $9, active = $10,
               state = CASE WHEN $11 THEN 'armed' ELSE state END,
               last_value = CASE WHEN $11 THEN NULL ELSE last_value END,
               last_evaluated_at = CASE WHEN $11 THEN NULL ELSE last_evaluated_at END,
               version = version + 1, updated_at = now()
           WHERE id = $1
           RETURNING id, coin_id, vs_currency, condition AS "condition: Condition", target,
                     trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note, active,
                     state AS "state: AlertState", last_triggered_at, trigger_count, version,
                     created_at, updated_at"#,
        id,
        fields.coin_id,
        fields.vs_currency,
        fields.condition as Condition,
        fields.target,
        fields.trigger as Trigger,
        fields.cooldown_seconds,
        fields.expires_at,
        fields.note,
        fields.active,
        rearm,
    )
    .fetch_one(db)
    .await
}

/// Deletes an alert (its firings go with it).
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query!("DELETE FROM alerts WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(())
}
