//! Queries on `jobs`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{JobStatus, Queue};

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The job's id (UUIDv7).
    pub id: Uuid,
    /// Who asked for it; `None` for system jobs.
    pub user_id: Option<Uuid>,
    /// What it does (and the queue it runs on).
    pub kind: Queue,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed before `dead`.
    pub max_attempts: i32,
    /// The job's input.
    pub payload: Value,
    /// The job's output, once it succeeded.
    pub result: Option<Value>,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// When the row last changed.
    pub updated_at: DateTime<Utc>,
    /// When its latest attempt started.
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final status.
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to accept.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Who asks for it.
    pub user_id: Option<Uuid>,
    /// What it does.
    pub kind: Queue,
    /// Its input.
    pub payload: Value,
}

/// Writes a job as `queued` and not yet handed to Redis. Call it inside the transaction of
/// the request's own writes: the job exists exactly when they do.
pub async fn insert(db: impl PgExecutor<'_>, job: &NewJob) -> Result<JobRow, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"INSERT INTO jobs (id, user_id, kind, queue, max_attempts, payload)
           VALUES ($1, $2, $3, $3, $4, $5)
           RETURNING id, user_id, kind AS "kind: Queue", status AS "status: JobStatus", attempts,
                     max_attempts, payload, result, error, created_at, updated_at, started_at,
                     finished_at"#,
        Uuid::now_v7(),
        job.user_id,
        job.kind as Queue,
        job.kind.max_attempts(),
        job.payload,
    )
    .fetch_one(db)
    .await
}

/// The caller's job with this id.
pub async fn find_for_user(
    db: impl PgExecutor<'_>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"SELECT id, user_id, kind AS "kind: Queue", status AS "status: JobStatus", attempts,
                  max_attempts, payload, result, error, created_at, updated_at, started_at,
                  finished_at
           FROM jobs WHERE id = $1 AND user_id = $2"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await
}

/// One page of the caller's jobs, newest first, and the total matching.
pub async fn list_for_user(
    db: &PgPool,
    user_id: Uuid,
    status: Option<JobStatus>,
    kind: Option<Queue>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<JobRow>, i64), sqlx::Error> {
    let status = status.map(JobStatus::as_str);
    let kind = kind.map(Queue::as_str);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM jobs
           WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)"#,
        user_id,
        status,
        kind,
    )
    .fetch_one(db)
    .await?;
    let rows = sqlx::query_as!(
        JobRow,
        r#"SELECT id, user_id, kind AS "kind: Queue", status AS "status: JobStatus", attempts,
                  max_attempts, payload, result, error, created_at, updated_at, started_at,
                  finished_at
           FROM jobs
           WHERE user_id = $1 AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3)
           ORDER BY created_at DESC, id DESC
           LIMIT $4 OFFSET $5"#,
        user_id,
        status,
        kind,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    Ok((rows, total))
}

/// What a cancellation did.
#[derive(Debug, Clone, PartialEq)]
pub enum Cancellation {
    /// The job was queued and now is cancelled: it will never run.
    Cancelled(JobRow),
    /// The job has already started or finished.
    TooLate(JobStatus),
    /// No such job for this user.
    NotFound,
}

/// Cancels the caller's job if it is still queued. The status check and the change are one
/// statement, so a worker picking the job up at the same moment cannot both start it and see
/// it cancelled: workers only start rows that are still `queued`.
pub async fn cancel(db: &PgPool, user_id: Uuid, id: Uuid) -> Result<Cancellation, sqlx::Error> {
    let cancelled = sqlx::query_as!(
        JobRow,
        r#"UPDATE jobs SET status = 'cancelled', finished_at = now(), updated_at = now()
           WHERE id = $1 AND user_id = $2 AND status = 'queued'
           RETURNING id, user_id, kind AS "kind: Queue", status AS "status: JobStatus", attempts,
                     max_attempts, payload, result, error, created_at, updated_at, started_at,
                     finished_at"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await?;
    if let Some(job) = cancelled {
        return Ok(Cancellation::Cancelled(job));
    }
    Ok(match find_for_user(db, user_id, id).await? {
        Some(job) => Cancellation::TooLate(job.status),
        None => Cancellation::NotFound,
    })
}
