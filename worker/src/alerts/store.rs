//! Queries on `alerts` and `alert_firings` for evaluation.

use chrono::{DateTime, Utc};
use common::alerts::{AlertState, Condition, Trigger};
use rust_decimal::Decimal;
use sqlx::PgExecutor;
use uuid::Uuid;

/// An active alert, locked for evaluation.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub coin_id: String,
    pub vs_currency: String,
    pub condition: Condition,
    pub target: Decimal,
    pub trigger: Trigger,
    pub cooldown_seconds: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub state: AlertState,
    pub last_value: Option<Decimal>,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
}

/// The coins with active alerts, per quote currency: the refresh keeps their prices fresh.
pub async fn watched_coins_by_currency(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    let rows = sqlx::query!(
        r#"SELECT vs_currency, array_agg(DISTINCT coin_id) AS "coins!"
           FROM alerts
           WHERE active AND (expires_at IS NULL OR expires_at > now())
           GROUP BY vs_currency"#
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| (row.vs_currency, row.coins))
        .collect())
}

/// The next `limit` active alerts on `coins` in `vs` after `after` (by id), locked until the
/// transaction ends: a second evaluation of the same alerts waits, then sees this one's
/// outcome.
pub async fn lock_batch(
    db: impl PgExecutor<'_>,
    vs: &str,
    coins: &[String],
    after: Uuid,
    limit: i64,
) -> Result<Vec<AlertRow>, sqlx::Error> {
    sqlx::query_as!(
        AlertRow,
        r#"SELECT id, user_id, coin_id, vs_currency, condition AS "condition: Condition",
                  target, trigger AS "trigger: Trigger", cooldown_seconds, expires_at, note,
                  state AS "state: AlertState", last_value, last_triggered_at, trigger_count
           FROM alerts
           WHERE active AND vs_currency = $1 AND coin_id = ANY($2) AND id > $3
           ORDER BY id
           LIMIT $4
           FOR UPDATE"#,
        vs,
        coins,
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// The outcome of evaluating one alert, as stored.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub id: Uuid,
    pub state: AlertState,
    pub active: bool,
    pub last_value: Option<Decimal>,
    pub fired: bool,
    /// Whether anything a caller sees changed (state, active, firing): bumps the ETag.
    pub changed: bool,
}

/// Stores a batch's outcomes in one statement.
pub async fn save(db: impl PgExecutor<'_>, evaluated: &[Evaluated]) -> Result<(), sqlx::Error> {
    if evaluated.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(evaluated.len());
    let mut states = Vec::with_capacity(evaluated.len());
    let mut actives = Vec::with_capacity(evaluated.len());
    // The arrays carry no NULLs (the macros type them as non-null): a flag says which values
    // are real.
    let mut has_value = Vec::with_capacity(evaluated.len());
    let mut values = Vec::with_capacity(evaluated.len());
    let mut fired = Vec::with_capacity(evaluated.len());
    let mut changed = Vec::with_capacity(evaluated.len());
    for one in evaluated {
        ids.push(one.id);
        states.push(one.state.as_str().to_owned());
        actives.push(one.active);
        has_value.push(one.last_value.is_some());
        values.push(one.last_value.unwrap_or_default());
        fired.push(one.fired);
        changed.push(one.changed);
    }
    sqlx::query!(
        r#"UPDATE alerts AS a
           SET state = e.state, active = e.active,
               last_value = CASE WHEN e.has_value THEN e.value END,
               last_evaluated_at = now(),
               last_triggered_at = CASE WHEN e.fired THEN now() ELSE a.last_triggered_at END,
               trigger_count = a.trigger_count + CASE WHEN e.fired THEN 1 ELSE 0 END,
               version = a.version + CASE WHEN e.changed THEN 1 ELSE 0 END,
               updated_at = CASE WHEN e.changed THEN now() ELSE a.updated_at END
           FROM unnest($1::uuid[], $2::text[], $3::bool[], $4::bool[], $5::numeric[],
                       $6::bool[], $7::bool[])
                AS e(id, state, active, has_value, value, fired, changed)
           WHERE a.id = e.id"#,
        &ids,
        &states,
        &actives,
        &has_value,
        &values,
        &fired,
        &changed,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// A firing to record.
#[derive(Debug, Clone)]
pub struct Firing {
    pub id: Uuid,
    pub alert_id: Uuid,
    pub user_id: Uuid,
    pub sequence: i32,
    pub value: Decimal,
    pub price: Decimal,
}

/// Records firings; returns the ids written. A firing whose key (alert, sequence) or id is
/// already there is dropped: whoever wrote it first owns its notification.
pub async fn record_firings(
    db: impl PgExecutor<'_>,
    firings: &[Firing],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if firings.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = firings.iter().map(|f| f.id).collect();
    let alerts: Vec<Uuid> = firings.iter().map(|f| f.alert_id).collect();
    let users: Vec<Uuid> = firings.iter().map(|f| f.user_id).collect();
    let sequences: Vec<i32> = firings.iter().map(|f| f.sequence).collect();
    let values: Vec<Decimal> = firings.iter().map(|f| f.value).collect();
    let prices: Vec<Decimal> = firings.iter().map(|f| f.price).collect();
    sqlx::query_scalar!(
        r#"INSERT INTO alert_firings (id, alert_id, user_id, sequence, value, price)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int4[], $5::numeric[],
                                $6::numeric[])
           ON CONFLICT DO NOTHING
           RETURNING id"#,
        &ids,
        &alerts,
        &users,
        &sequences,
        &values,
        &prices,
    )
    .fetch_all(db)
    .await
}
