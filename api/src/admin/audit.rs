//! The audit log: every operator action (who, what, on what, how many rows), written in the
//! transaction of the change it records, and readable at `GET /admin/audit`.

use chrono::{DateTime, Utc};
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use poem_openapi::{Enum, Object, OpenApi};
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::error::{ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::pagination::{Page, PageRequest};
use crate::users::model::UserRow;

/// What an operator did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum AuditAction {
    /// Changed an account (email, username, role, active state).
    UserUpdated,
    /// Deleted an account.
    UserDeleted,
    /// Ran one dead, cancelled or failed job again.
    JobRetried,
    /// Ran every job matching a filter again.
    JobsRetried,
    /// Deleted one dead or failed job.
    JobDiscarded,
    /// Deleted every dead or failed job matching a filter.
    JobsDiscarded,
    /// Cancelled a job that had not finished (a running one is stopped).
    JobCancelled,
    /// Paused a queue.
    QueuePaused,
    /// Resumed a queue.
    QueueResumed,
}

impl AuditAction {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::UserUpdated => "user_updated",
            AuditAction::UserDeleted => "user_deleted",
            AuditAction::JobRetried => "job_retried",
            AuditAction::JobsRetried => "jobs_retried",
            AuditAction::JobDiscarded => "job_discarded",
            AuditAction::JobsDiscarded => "jobs_discarded",
            AuditAction::JobCancelled => "job_cancelled",
            AuditAction::QueuePaused => "queue_paused",
            AuditAction::QueueResumed => "queue_resumed",
        }
    }

    fn parse(name: &str) -> Option<Self> {
        [
            AuditAction::UserUpdated,
            AuditAction::UserDeleted,
            AuditAction::JobRetried,
            AuditAction::JobsRetried,
            AuditAction::JobDiscarded,
            AuditAction::JobsDiscarded,
            AuditAction::JobCancelled,
            AuditAction::QueuePaused,
            AuditAction::QueueResumed,
        ]
        .into_iter()
        .find(|action| action.as_str() == name)
    }
}

/// One operator action.
#[derive(Debug, Clone, Object)]
pub struct AuditEntry {
    /// The entry's id.
    pub id: Uuid,
    /// Who did it; absent once that account is deleted.
    pub actor_id: Option<Uuid>,
    /// Their email address when they did it.
    pub actor_email: String,
    /// What they did.
    pub action: AuditAction,
    /// On what: `job:{id}`, `queue:{name}`, `user:{id}`, or `jobs` for a filter.
    pub target: String,
    /// How many rows it changed.
    pub affected: i64,
    /// The action's parameters (a filter, a reason, the changes made).
    pub details: Value,
    /// When.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
}

/// Records an action in `tx` (the transaction of the change itself); returns the entry's id.
pub async fn record(
    tx: &mut PgConnection,
    actor: &UserRow,
    action: AuditAction,
    target: &str,
    affected: u64,
    details: Value,
) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    sqlx::query!(
        "INSERT INTO audit_log (id, actor_id, actor_email, action, target, affected, details)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        id,
        actor.id,
        actor.email,
        action.as_str(),
        target,
        i64::try_from(affected).unwrap_or(i64::MAX),
        details,
    )
    .execute(tx)
    .await?;
    Ok(id)
}

/// Adds to an entry's count: an action done in batches records each batch with its own rows.
pub async fn add_affected(
    tx: &mut PgConnection,
    entry: Uuid,
    affected: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE audit_log SET affected = affected + $2 WHERE id = $1",
        entry,
        i64::try_from(affected).unwrap_or(i64::MAX),
    )
    .execute(tx)
    .await?;
    Ok(())
}

/// The audit log endpoint.
#[derive(Debug)]
pub struct AuditApi {
    state: AppState,
}

impl AuditApi {
    /// The endpoint, over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl AuditApi {
    /// Operator actions, newest first; filter by action and by who did them.
    #[oai(path = "/audit", method = "get")]
    async fn list(
        &self,
        _admin: AdminUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only this action.
        action: Query<Option<AuditAction>>,
        /// Only actions by this account.
        actor_id: Query<Option<Uuid>>,
    ) -> ApiResult<
        Json<Page<AuditEntry>>,
        { status::AUTHED | status::FORBIDDEN | status::VALIDATION },
    > {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let action = action.0.map(AuditAction::as_str);
        let total = sqlx::query_scalar!(
            r#"SELECT count(*) AS "count!" FROM audit_log
               WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR actor_id = $2)"#,
            action,
            actor_id.0,
        )
        .fetch_one(&self.state.db)
        .await?;
        let rows = sqlx::query!(
            r#"SELECT id, actor_id, actor_email, action, target, affected, details, created_at
               FROM audit_log
               WHERE ($1::text IS NULL OR action = $1) AND ($2::uuid IS NULL OR actor_id = $2)
               ORDER BY created_at DESC, id DESC
               LIMIT $3 OFFSET $4"#,
            action,
            actor_id.0,
            request.limit(),
            request.offset(),
        )
        .fetch_all(&self.state.db)
        .await?;
        let items = rows
            .into_iter()
            // Entries are written with this enum's names only; an unknown one (written by a
            // newer version during a rolling deploy) is left out rather than failing the page.
            .filter_map(|row| {
                Some(AuditEntry {
                    id: row.id,
                    actor_id: row.actor_id,
                    actor_email: row.actor_email,
                    action: AuditAction::parse(&row.action)?,
                    target: row.target,
                    affected: row.affected,
                    details: row.details,
                    at: row.created_at,
                })
            })
            .collect();
        Ok(Json(Page::new(items, request, total)))
    }
}
