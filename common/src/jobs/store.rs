//! Queries on `jobs`.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::{JobArgs, JobKind, JobStatus, Queue};

/// A row of `jobs`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    /// The job's id (UUIDv7).
    pub id: Uuid,
    /// Who asked for it; `None` for system jobs.
    pub user_id: Option<Uuid>,
    /// What it does.
    pub kind: JobKind,
    /// The queue it was handed to. Stored, not derived from the kind: rows already accepted
    /// keep their queue if a kind moves to another one.
    pub queue: Queue,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed before `dead`.
    pub max_attempts: i32,
    /// The job's arguments, as its [`JobArgs`] type serialises them.
    pub args: Value,
    /// The job's output ([`JobArgs::Output`]), once it succeeded.
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
    /// Units its handler reported done (with `progress_total`), if it reported any.
    pub progress_done: Option<i64>,
    /// Units in all, as its handler reported them.
    pub progress_total: Option<i64>,
}

/// A job as handed to Redis: enough to run it and to mark its row enqueued.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxJob {
    /// The job's id (also its id in Redis).
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// The queue it waits on.
    pub queue: Queue,
    /// Its arguments, as stored.
    pub args: Value,
    /// Attempts allowed.
    pub max_attempts: i32,
}

impl From<&JobRow> for OutboxJob {
    fn from(row: &JobRow) -> Self {
        Self {
            id: row.id,
            kind: row.kind,
            queue: row.queue,
            args: row.args.clone(),
            max_attempts: row.max_attempts,
        }
    }
}

/// Accepts a job: writes it as `queued` and not yet handed to Redis. Call it inside the
/// transaction of the request's own writes: the job exists exactly when they do.
pub async fn insert<J: JobArgs>(
    db: impl PgExecutor<'_>,
    user_id: Option<Uuid>,
    args: &J,
) -> Result<JobRow, sqlx::Error> {
    let args = serde_json::to_value(args).map_err(|err| sqlx::Error::Encode(err.into()))?;
    sqlx::query_as!(
        JobRow,
        r#"INSERT INTO jobs (id, user_id, kind, queue, max_attempts, payload, traceparent)
           VALUES ($1, $2, $3, $4, $5, $6, $7)
           RETURNING id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                     status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                     result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total"#,
        Uuid::now_v7(),
        user_id,
        J::KIND as JobKind,
        J::QUEUE as Queue,
        J::MAX_ATTEMPTS,
        args,
        crate::trace_context::current_traceparent(),
    )
    .fetch_one(db)
    .await
}

/// Accepts a system job of a [`JobArgs::DEDUPLICATED`] kind under a chosen id, unless a job
/// with that id exists; `None` when it did (the duplicate is dropped). A deterministic id
/// makes "once per slot" hold across processes.
pub async fn insert_once<J: JobArgs>(
    db: impl PgExecutor<'_>,
    id: Uuid,
    args: &J,
) -> Result<Option<JobRow>, sqlx::Error> {
    debug_assert!(J::DEDUPLICATED, "{} jobs are not deduplicated", J::KIND);
    let args = serde_json::to_value(args).map_err(|err| sqlx::Error::Encode(err.into()))?;
    sqlx::query_as!(
        JobRow,
        r#"INSERT INTO jobs (id, user_id, kind, queue, max_attempts, payload, traceparent)
           VALUES ($1, NULL, $2, $3, $4, $5, $6)
           ON CONFLICT (id) DO NOTHING
           RETURNING id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                     status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                     result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total"#,
        id,
        J::KIND as JobKind,
        J::QUEUE as Queue,
        J::MAX_ATTEMPTS,
        args,
        crate::trace_context::current_traceparent(),
    )
    .fetch_optional(db)
    .await
}

/// Accepts many system jobs of one [`JobArgs::DEDUPLICATED`] kind in one statement, each
/// under its chosen id; returns the rows written (ids already taken are dropped, as
/// [`insert_once`] does).
pub async fn insert_many_once<J: JobArgs>(
    db: impl PgExecutor<'_>,
    jobs: &[(Uuid, J)],
) -> Result<Vec<JobRow>, sqlx::Error> {
    debug_assert!(J::DEDUPLICATED, "{} jobs are not deduplicated", J::KIND);
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = Vec::with_capacity(jobs.len());
    let mut payloads = Vec::with_capacity(jobs.len());
    for (id, args) in jobs {
        ids.push(*id);
        payloads.push(serde_json::to_value(args).map_err(|err| sqlx::Error::Encode(err.into()))?);
    }
    sqlx::query_as!(
        JobRow,
        r#"INSERT INTO jobs (id, user_id, kind, queue, max_attempts, payload, traceparent)
           SELECT id, NULL, $2, $3, $4, payload, $6 FROM unnest($1::uuid[], $5::jsonb[]) AS j(id, payload)
           ON CONFLICT (id) DO NOTHING
           RETURNING id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                     status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                     result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total"#,
        &ids,
        J::KIND as JobKind,
        J::QUEUE as Queue,
        J::MAX_ATTEMPTS,
        &payloads,
        crate::trace_context::current_traceparent(),
    )
    .fetch_all(db)
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
        r#"SELECT id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                  status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                  result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total
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
    kind: Option<JobKind>,
    limit: i64,
    offset: i64,
) -> Result<(Vec<JobRow>, i64), sqlx::Error> {
    let status = status.map(JobStatus::as_str);
    let kind = kind.map(JobKind::as_str);
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
        r#"SELECT id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                  status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                  result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total
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
    Cancelled(Box<JobRow>),
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
           RETURNING id, user_id, kind AS "kind: JobKind", queue AS "queue: Queue",
                     status AS "status: JobStatus", attempts, max_attempts, payload AS args,
                     result, error, created_at, updated_at, started_at, finished_at, progress_done, progress_total"#,
        id,
        user_id,
    )
    .fetch_optional(db)
    .await?;
    if let Some(job) = cancelled {
        return Ok(Cancellation::Cancelled(Box::new(job)));
    }
    Ok(match find_for_user(db, user_id, id).await? {
        Some(job) => Cancellation::TooLate(job.status),
        None => Cancellation::NotFound,
    })
}

/// Outbox rows older than `min_age` (younger ones are still being handed over by the API
/// process that accepted them), oldest first.
pub async fn outbox_batch(
    db: impl PgExecutor<'_>,
    min_age: std::time::Duration,
    limit: i64,
) -> Result<Vec<OutboxJob>, sqlx::Error> {
    let min_age_ms = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_as!(
        OutboxJob,
        r#"SELECT id, kind AS "kind: JobKind", queue AS "queue: Queue", payload AS args,
                  max_attempts
           FROM jobs
           WHERE enqueued_at IS NULL AND status = 'queued'
             AND created_at < now() - make_interval(secs => $1::bigint / 1000.0)
           ORDER BY created_at
           LIMIT $2"#,
        min_age_ms,
        limit,
    )
    .fetch_all(db)
    .await
}

/// A job Redis should be holding: handed over (`enqueued_at` set) and not finished.
#[derive(Debug, Clone, PartialEq)]
pub struct UnfinishedJob {
    /// The job's id (also its id in Redis).
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// Its queue.
    pub queue: Queue,
    /// Its arguments.
    pub args: Value,
    /// Attempts allowed.
    pub max_attempts: i32,
    /// Attempts started so far (a `running` job's current one included).
    pub attempts: i32,
    /// `queued` or `running`.
    pub status: JobStatus,
}

/// Up to `limit` jobs Redis should be holding whose rows have not changed for `min_age`, with
/// ids after `after`, in id order (a round walks them all a page at a time).
pub async fn unfinished_after(
    db: impl PgExecutor<'_>,
    min_age: std::time::Duration,
    after: Uuid,
    limit: i64,
) -> Result<Vec<UnfinishedJob>, sqlx::Error> {
    let min_age_ms = i64::try_from(min_age.as_millis()).unwrap_or(i64::MAX);
    sqlx::query_as!(
        UnfinishedJob,
        r#"SELECT id, kind AS "kind: JobKind", queue AS "queue: Queue", payload AS args,
                  max_attempts, attempts, status AS "status: JobStatus"
           FROM jobs
           WHERE status IN ('queued', 'running') AND enqueued_at IS NOT NULL AND id > $2
             AND updated_at < now() - make_interval(secs => $1::bigint / 1000.0)
           ORDER BY id
           LIMIT $3"#,
        min_age_ms,
        after,
        limit,
    )
    .fetch_all(db)
    .await
}

/// Records that these jobs reached Redis.
pub async fn mark_enqueued(db: impl PgExecutor<'_>, ids: &[Uuid]) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE jobs SET enqueued_at = now() WHERE id = ANY($1) AND enqueued_at IS NULL",
        ids
    )
    .execute(db)
    .await?;
    Ok(())
}

/// An attempt the queue handed to a worker: the job and the attempt number it counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attempt {
    /// The job's id.
    pub id: Uuid,
    /// The attempt's number, from 1.
    pub attempt: i32,
}

/// A job whose attempt is starting.
#[derive(Debug, Clone, PartialEq)]
pub struct StartedJob {
    /// What it does.
    pub kind: JobKind,
    /// Who asked for it.
    pub user_id: Option<Uuid>,
    /// When it was accepted.
    pub created_at: DateTime<Utc>,
    /// The trace it was accepted in (W3C `traceparent`), to continue.
    pub traceparent: Option<String>,
}

/// Moves each job to `running` for its attempt, unless it is final (succeeded, cancelled,
/// dead) or already past that attempt. Returns the attempts that may run; any other must not.
///
/// A batch is one statement, its rows sent in id order so that two batches sharing rows tend
/// to lock them in the same order (the caller retries the rare deadlock). A batch of one uses
/// the single-row statement, which Postgres plans in a fraction of the time (an idle worker
/// writes one row at a time).
pub async fn start_attempts(
    db: impl PgExecutor<'_>,
    attempts: &[Attempt],
) -> Result<Vec<(Attempt, StartedJob)>, sqlx::Error> {
    // Only a job's latest attempt may start: an earlier one beside it is a stale duplicate.
    let mut latest = attempts.to_vec();
    latest.sort_unstable_by_key(|attempt| (attempt.id, std::cmp::Reverse(attempt.attempt)));
    latest.dedup_by_key(|attempt| attempt.id);
    if let [only] = latest[..] {
        let started = sqlx::query_as!(
            StartedJob,
            r#"UPDATE jobs
             SET status = 'running', attempts = $2, started_at = now(), updated_at = now()
             WHERE id = $1 AND status IN ('queued', 'failed', 'running') AND attempts < $2
             RETURNING kind AS "kind: JobKind", user_id, created_at, traceparent"#,
            only.id,
            only.attempt,
        )
        .fetch_optional(db)
        .await?;
        return Ok(started.map(|job| (only, job)).into_iter().collect());
    }
    let (ids, numbers): (Vec<Uuid>, Vec<i32>) = latest
        .iter()
        .map(|attempt| (attempt.id, attempt.attempt))
        .unzip();
    let rows = sqlx::query!(
        r#"UPDATE jobs AS j
           SET status = 'running', attempts = b.attempt, started_at = now(), updated_at = now()
           FROM unnest($1::uuid[], $2::int4[]) AS b(id, attempt)
           WHERE j.id = b.id AND j.status IN ('queued', 'failed', 'running')
             AND j.attempts < b.attempt
           RETURNING j.id, j.attempts, j.kind AS "kind: JobKind", j.user_id, j.created_at,
                     j.traceparent"#,
        &ids,
        &numbers,
    )
    .fetch_all(db)
    .await?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let attempt = Attempt {
                id: row.id,
                attempt: row.attempts,
            };
            let job = StartedJob {
                kind: row.kind,
                user_id: row.user_id,
                created_at: row.created_at,
                traceparent: row.traceparent,
            };
            (attempt, job)
        })
        .collect())
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It succeeded with this result.
    Succeeded(Value),
    /// It failed with this error and another attempt follows.
    Failed(String),
    /// It failed with this error and no attempt follows.
    Dead(String),
}

impl Outcome {
    /// The row's new status, result and error. Both statements keep only the field that goes
    /// with the status, so the unused one is a placeholder rather than NULL (the batch's arrays
    /// carry no NULLs: the macros type them as non-null).
    fn columns(&self) -> (&'static str, Value, &str) {
        let status = self.status().as_str();
        match self {
            Outcome::Succeeded(result) => (status, result.clone(), ""),
            Outcome::Failed(error) | Outcome::Dead(error) => (status, Value::Null, error),
        }
    }

    /// The status the row takes.
    pub fn status(&self) -> JobStatus {
        match self {
            Outcome::Succeeded(_) => JobStatus::Succeeded,
            Outcome::Failed(_) => JobStatus::Failed,
            Outcome::Dead(_) => JobStatus::Dead,
        }
    }
}

/// Records how attempts ended, in one statement (the single-row one for a batch of one). An
/// attempt that is no longer the row's running one (superseded by a later attempt) changes
/// nothing.
pub async fn finish_attempts(
    db: impl PgExecutor<'_>,
    finished: &[(Attempt, Outcome)],
) -> Result<(), sqlx::Error> {
    if let [(attempt, outcome)] = finished {
        let (status, result, error) = outcome.columns();
        sqlx::query!(
            "UPDATE jobs
             SET status = $3,
                 result = CASE WHEN $3 = 'succeeded' THEN $4::jsonb END,
                 error = CASE WHEN $3 <> 'succeeded' THEN $5 END,
                 errors = CASE WHEN $3 = 'succeeded' THEN errors
                     ELSE jsonb_path_query_array(errors || jsonb_build_array(jsonb_build_object(
                         'attempt', $2::int4, 'error', $5::text, 'at', now())), 'lax $[last - 19 to last]') END,
                 updated_at = now(),
                 finished_at = CASE WHEN $3 IN ('succeeded', 'dead') THEN now() END
             WHERE id = $1 AND status = 'running' AND attempts = $2",
            attempt.id,
            attempt.attempt,
            status,
            result,
            error,
        )
        .execute(db)
        .await?;
        return Ok(());
    }
    let mut finished: Vec<_> = finished.iter().collect();
    finished.sort_by_key(|(attempt, _)| (attempt.id, attempt.attempt));
    let mut ids = Vec::with_capacity(finished.len());
    let mut numbers = Vec::with_capacity(finished.len());
    let mut statuses = Vec::with_capacity(finished.len());
    let mut results = Vec::with_capacity(finished.len());
    let mut errors = Vec::with_capacity(finished.len());
    for (attempt, outcome) in finished {
        let (status, result, error) = outcome.columns();
        ids.push(attempt.id);
        numbers.push(attempt.attempt);
        statuses.push(status);
        results.push(result);
        errors.push(error);
    }
    sqlx::query!(
        r#"UPDATE jobs AS j
           SET status = b.status,
               result = CASE WHEN b.status = 'succeeded' THEN b.result END,
               error = CASE WHEN b.status <> 'succeeded' THEN b.error END,
               errors = CASE WHEN b.status = 'succeeded' THEN j.errors
                   ELSE jsonb_path_query_array(j.errors || jsonb_build_array(jsonb_build_object(
                       'attempt', b.attempt, 'error', b.error, 'at', now())), 'lax $[last - 19 to last]') END,
               updated_at = now(),
               finished_at = CASE WHEN b.status IN ('succeeded', 'dead') THEN now() END
           FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::jsonb[], $5::text[])
                AS b(id, attempt, status, result, error)
           WHERE j.id = b.id AND j.status = 'running' AND j.attempts = b.attempt"#,
        &ids,
        &numbers,
        &statuses as &[&str],
        &results,
        &errors as &[&str],
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Marks a job dead that the queue gave up on without running (its last run was lost with
/// its worker). Final jobs are left alone.
pub async fn dead_letter(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempts: i32,
    error: &str,
) -> Result<Option<StartedJob>, sqlx::Error> {
    sqlx::query_as!(
        StartedJob,
        r#"UPDATE jobs
         SET status = 'dead', attempts = GREATEST(attempts, $2), error = $3,
             errors = jsonb_path_query_array(errors || jsonb_build_array(jsonb_build_object(
                 'attempt', GREATEST(attempts, $2), 'error', $3::text, 'at', now())), 'lax $[last - 19 to last]'),
             finished_at = now(), updated_at = now()
         WHERE id = $1 AND status NOT IN ('succeeded', 'cancelled', 'dead')
         RETURNING kind AS "kind: JobKind", user_id, created_at, traceparent"#,
        id,
        attempts,
        error,
    )
    .fetch_optional(db)
    .await
}

/// Deletes up to `limit` finished jobs (succeeded, cancelled, dead) that finished before
/// `finished_before`, oldest first; returns how many. Rows another process is deleting are
/// skipped, so several purging at once is harmless.
pub async fn purge_finished(
    db: impl PgExecutor<'_>,
    finished_before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query!(
        r#"DELETE FROM jobs WHERE id IN (
               SELECT id FROM jobs
               WHERE status IN ('succeeded', 'cancelled', 'dead') AND finished_at < $1
               ORDER BY finished_at
               LIMIT $2
               FOR UPDATE SKIP LOCKED)"#,
        finished_before,
        limit,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected())
}

/// Records how far attempt `attempt` of job `id` is; `false` when the job is no longer running
/// that attempt (cancelled, finished or superseded), which records nothing.
pub async fn record_progress(
    db: impl PgExecutor<'_>,
    id: Uuid,
    attempt: i32,
    done: i64,
    total: i64,
) -> Result<bool, sqlx::Error> {
    let updated = sqlx::query!(
        "UPDATE jobs SET progress_done = $3, progress_total = $4, updated_at = now()
         WHERE id = $1 AND attempts = $2 AND status = 'running'",
        id,
        attempt,
        done,
        total,
    )
    .execute(db)
    .await?;
    Ok(updated.rows_affected() == 1)
}
