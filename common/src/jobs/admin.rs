//! Operators' queries on `jobs` and `queue_pauses`: search, retry, discard, cancel a running
//! job, pause a queue. The API's admin endpoints call these; the worker reads pauses and
//! cancellations from here.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgConnection, PgExecutor};
use uuid::Uuid;

use super::store::{JobRow, OutboxJob};
use super::{JobKind, JobStatus, Queue};

/// Which jobs an operator means; every field narrows, `None` matches all.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobFilter {
    /// Only this queue.
    pub queue: Option<Queue>,
    /// Only this kind.
    pub kind: Option<JobKind>,
    /// Only this status.
    pub status: Option<JobStatus>,
    /// Only this user's jobs.
    pub user_id: Option<Uuid>,
    /// Only jobs whose arguments contain this text (case-insensitive).
    pub search: Option<String>,
}

/// A [`JobFilter`] as query parameters: queue, kind, status, user id, search text.
type FilterColumns<'a> = (
    Option<&'a str>,
    Option<&'a str>,
    Option<&'a str>,
    Option<Uuid>,
    Option<&'a str>,
);

impl JobFilter {
    fn columns(&self) -> FilterColumns<'_> {
        (
            self.queue.map(Queue::as_str),
            self.kind.map(JobKind::as_str),
            self.status.map(JobStatus::as_str),
            self.user_id,
            self.search.as_deref(),
        )
    }
}

/// Jobs matching `filter`, newest first, and how many match in all.
pub async fn search(
    db: &mut PgConnection,
    filter: &JobFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<JobRow>, i64), sqlx::Error> {
    let (queue, kind, status, user_id, search) = filter.columns();
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM jobs
           WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::text IS NULL OR status = $3) AND ($4::uuid IS NULL OR user_id = $4)
             AND ($5::text IS NULL OR strpos(lower(payload::text), lower($5)) > 0)"#,
        queue,
        kind,
        status,
        user_id,
        search,
    )
    .fetch_one(&mut *db)
    .await?;
    let rows = sqlx::query_as!(
        JobRow,
        r#"SELECT id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                  status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                  result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total
           FROM jobs
           WHERE ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::text IS NULL OR status = $3) AND ($4::uuid IS NULL OR user_id = $4)
             AND ($5::text IS NULL OR strpos(lower(payload::text), lower($5)) > 0)
           ORDER BY created_at DESC, id DESC
           LIMIT $6 OFFSET $7"#,
        queue,
        kind,
        status,
        user_id,
        search,
        limit,
        offset,
    )
    .fetch_all(&mut *db)
    .await?;
    Ok((rows, total))
}

/// A job as operators see it: its row, every failed attempt's error, and when it reached Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct JobDetail {
    /// The row.
    pub row: JobRow,
    /// Failed attempts, oldest first (the latest 20): `{attempt, error, at}` each.
    pub errors: Value,
    /// When it was handed to Redis; `None` while it waits in the outbox.
    pub enqueued_at: Option<DateTime<Utc>>,
}

/// Any job by id.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<JobDetail>, sqlx::Error> {
    let row = sqlx::query!(
        r#"SELECT id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                  status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                  result, error, created_at, updated_at, started_at, finished_at, errors,
                  enqueued_at, progress_done, progress_total
           FROM jobs WHERE id = $1"#,
        id,
    )
    .fetch_optional(db)
    .await?;
    Ok(row.map(|row| JobDetail {
        row: JobRow {
            id: row.id,
            user_id: row.user_id,
            kind: row.kind,
            queue: row.queue,
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            args: row.args,
            result: row.result,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            progress_done: row.progress_done,
            progress_total: row.progress_total,
        },
        errors: row.errors,
        enqueued_at: row.enqueued_at,
    }))
}

/// Statuses a retry applies to.
pub const RETRYABLE: [JobStatus; 3] = [JobStatus::Dead, JobStatus::Cancelled, JobStatus::Failed];

/// Runs finished jobs (dead, cancelled) again: each row goes back to `queued` with its attempts
/// reset and its error history kept, and into the outbox (the caller hands the returned jobs
/// to Redis after commit; the relay does if that fails). Up to `limit` rows matching `filter`
/// per call (its status: dead or cancelled; none means dead); rows another operator is
/// changing are skipped. Retried rows no longer match, so calling again takes the next batch.
pub async fn requeue_finished(
    db: &mut PgConnection,
    filter: &JobFilter,
    limit: i64,
) -> Result<Vec<OutboxJob>, sqlx::Error> {
    let (queue, kind, status, user_id, search) = filter.columns();
    sqlx::query_as!(
        OutboxJob,
        r#"UPDATE jobs
           SET status = 'queued', attempts = 0, result = NULL, error = NULL, started_at = NULL,
               finished_at = NULL, enqueued_at = NULL, updated_at = now()
           WHERE id IN (
               SELECT id FROM jobs
               WHERE status IN ('dead', 'cancelled') AND status = COALESCE($3, 'dead')
                 AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)
                 AND ($4::uuid IS NULL OR user_id = $4)
                 AND ($5::text IS NULL OR strpos(lower(payload::text), lower($5)) > 0)
               ORDER BY id
               LIMIT $6
               FOR UPDATE SKIP LOCKED)
           RETURNING id, kind AS "kind: JobKind", queue AS "queue: Queue", payload AS args,
                     max_attempts"#,
        queue,
        kind,
        status,
        user_id,
        search,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Runs one finished job (dead or cancelled) again, as [`requeue_finished`] does; `None` when
/// there is no such job in either status.
pub async fn requeue_one(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<OutboxJob>, sqlx::Error> {
    sqlx::query_as!(
        OutboxJob,
        r#"UPDATE jobs
           SET status = 'queued', attempts = 0, result = NULL, error = NULL, started_at = NULL,
               finished_at = NULL, enqueued_at = NULL, updated_at = now()
           WHERE id = $1 AND status IN ('dead', 'cancelled')
           RETURNING id, kind AS "kind: JobKind", queue AS "queue: Queue", payload AS args,
                     max_attempts"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// Deletes one dead or failed job; its queue, or `None` when there is no such job.
pub async fn discard_one(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<Queue>, sqlx::Error> {
    sqlx::query_scalar!(
        r#"DELETE FROM jobs WHERE id = $1 AND status IN ('dead', 'failed')
           RETURNING queue AS "queue: Queue""#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// Failed jobs (waiting in Redis for their next attempt) matching `filter`, with ids after
/// `after`, in id order: a retry makes them run now ([`queue::RedisQueue::run_now`]).
pub async fn failed_after(
    db: &mut PgConnection,
    filter: &JobFilter,
    after: Uuid,
    limit: i64,
) -> Result<Vec<(Uuid, Queue)>, sqlx::Error> {
    let (queue, kind, _, user_id, search) = filter.columns();
    let rows = sqlx::query!(
        r#"SELECT id, queue AS "queue: Queue" FROM jobs
           WHERE status = 'failed' AND id > $6
             AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)
             AND ($3::uuid IS NULL OR user_id = $3)
             AND ($4::text IS NULL OR strpos(lower(payload::text), lower($4)) > 0)
           ORDER BY id
           LIMIT $5"#,
        queue,
        kind,
        user_id,
        search,
        limit,
        after,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.queue)).collect())
}

/// Deletes up to `limit` dead or failed jobs matching `filter` (its status: dead or failed;
/// none means dead); returns their ids and queues, so their Redis copies can be forgotten too
/// (a failed job's copy, waiting for its retry, is skipped when it comes due: it has no row).
pub async fn discard(
    db: &mut PgConnection,
    filter: &JobFilter,
    limit: i64,
) -> Result<Vec<(Uuid, Queue)>, sqlx::Error> {
    let (queue, kind, status, user_id, search) = filter.columns();
    let rows = sqlx::query!(
        r#"DELETE FROM jobs WHERE id IN (
               SELECT id FROM jobs
               WHERE status IN ('dead', 'failed') AND status = COALESCE($3, 'dead')
                 AND ($1::text IS NULL OR queue = $1) AND ($2::text IS NULL OR kind = $2)
                 AND ($4::uuid IS NULL OR user_id = $4)
                 AND ($5::text IS NULL OR strpos(lower(payload::text), lower($5)) > 0)
               ORDER BY id
               LIMIT $6
               FOR UPDATE SKIP LOCKED)
           RETURNING id, queue AS "queue: Queue""#,
        queue,
        kind,
        status,
        user_id,
        search,
        limit,
    )
    .fetch_all(db)
    .await?;
    Ok(rows.into_iter().map(|row| (row.id, row.queue)).collect())
}

/// Cancels any job that has not finished: queued, failed (waiting to retry) or running. A
/// running job's worker sees the row change and stops it ([`cancelled_among`]); whatever its
/// handler returns afterwards is not recorded. `None` when there is no such unfinished job.
pub async fn cancel_unfinished(
    db: impl PgExecutor<'_>,
    id: Uuid,
) -> Result<Option<JobRow>, sqlx::Error> {
    sqlx::query_as!(
        JobRow,
        r#"UPDATE jobs
           SET status = 'cancelled', error = 'cancelled by an operator', finished_at = now(),
               updated_at = now()
           WHERE id = $1 AND status IN ('queued', 'failed', 'running')
           RETURNING id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                     status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                     result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// Which of `ids` (jobs a worker is running) have been cancelled.
pub async fn cancelled_among(
    db: impl PgExecutor<'_>,
    ids: &[Uuid],
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar!(
        "SELECT id FROM jobs WHERE id = ANY($1) AND status = 'cancelled'",
        ids
    )
    .fetch_all(db)
    .await
}

/// A paused queue, as recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// The queue.
    pub queue: Queue,
    /// Since when.
    pub paused_at: DateTime<Utc>,
    /// Who paused it (`None` once that account is deleted).
    pub paused_by: Option<Uuid>,
    /// Why, as the operator wrote it.
    pub reason: Option<String>,
}

/// Records `queue` as paused (keeping the first pause's time and author if it already is);
/// returns the record.
pub async fn pause(
    db: impl PgExecutor<'_>,
    queue: Queue,
    by: Uuid,
    reason: Option<&str>,
) -> Result<Pause, sqlx::Error> {
    sqlx::query_as!(
        Pause,
        r#"INSERT INTO queue_pauses (queue, paused_by, reason) VALUES ($1, $2, $3)
           ON CONFLICT (queue) DO UPDATE SET queue = EXCLUDED.queue
           RETURNING queue AS "queue: Queue", paused_at, paused_by, reason"#,
        queue as Queue,
        by,
        reason,
    )
    .fetch_one(db)
    .await
}

/// Removes `queue`'s pause; whether it was paused.
pub async fn resume(db: impl PgExecutor<'_>, queue: Queue) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!("DELETE FROM queue_pauses WHERE queue = $1", queue as Queue)
        .execute(db)
        .await?;
    Ok(done.rows_affected() > 0)
}

/// Every paused queue.
pub async fn pauses(db: impl PgExecutor<'_>) -> Result<Vec<Pause>, sqlx::Error> {
    sqlx::query_as!(
        Pause,
        r#"SELECT queue AS "queue: Queue", paused_at, paused_by, reason FROM queue_pauses
           ORDER BY queue"#
    )
    .fetch_all(db)
    .await
}
