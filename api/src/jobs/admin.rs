//! Operators' queue operations, under `/api/v1/admin`: the queues (counts, latency, pause and
//! resume) and any job (search, one job's history, retry, cancel, discard; one or by filter).
//! Each action is one transaction with its audit log entry; Redis is told after commit, and
//! what Redis misses then (an outage) the worker's relay and rescuer make good from Postgres.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use common::jobs::admin::{self as ops, JobFilter};
use common::jobs::store::{JobRow, OutboxJob};
use common::jobs::{JobKind, JobStatus, Queue};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Enum, Object, OpenApi};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::admin::audit::{self, AuditAction};
use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::error::{ApiError, ApiResult, status};
use crate::jobs::JobProgress;
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};

/// Rows one batch of a retry or discard by filter changes (one transaction each).
const BATCH: i64 = 1_000;
/// The longest argument search text.
const MAX_SEARCH: usize = 200;

/// Operators' queue and job endpoints.
#[derive(Debug, Clone)]
pub struct QueuesAdminApi {
    state: AppState,
}

impl QueuesAdminApi {
    /// The operations, over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// One queue as operators see it.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct QueueCounts {
    /// The queue.
    pub queue: Queue,
    /// Jobs ready and waiting for a worker.
    pub depth: u64,
    /// How long the oldest ready job has waited, in seconds: the queue's latency.
    pub oldest_job_age_seconds: f64,
    /// Jobs held by workers right now.
    pub in_flight: u64,
    /// Jobs waiting for their time: delayed, or retrying after a failure.
    pub scheduled: u64,
    /// Jobs whose last attempt failed and which wait for the next one.
    pub failed: u64,
    /// Dead jobs (every attempt failed), kept for a week or the latest 10,000.
    pub dead: u64,
    /// Workers consuming the queue (with a live lease).
    pub workers: u64,
    /// Whether workers are stopped from starting its jobs (it still accepts them).
    pub paused: bool,
    /// Since when it is paused.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub paused_at: Option<DateTime<Utc>>,
    /// Who paused it.
    pub paused_by: Option<Uuid>,
    /// Why, as the operator wrote it.
    pub pause_reason: Option<String>,
}

impl poem_openapi::types::Example for QueueCounts {
    fn example() -> Self {
        Self {
            queue: Queue::BulkFetch,
            depth: 12,
            oldest_job_age_seconds: 0.8,
            in_flight: 8,
            scheduled: 3,
            failed: 3,
            dead: 1,
            workers: 2,
            paused: false,
            paused_at: None,
            paused_by: None,
            pause_reason: None,
        }
    }
}

/// Every queue.
#[derive(Debug, Clone, Object)]
pub struct QueuesBody {
    /// One entry per queue.
    pub queues: Vec<QueueCounts>,
}

/// Why a queue is paused.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct PauseQueue {
    /// A note for other operators (at most 280 characters).
    #[oai(validator(max_length = 280, pattern = r"^[^\x00-\x1f\x7f-\x9f]*$"))]
    pub reason: Option<String>,
}

/// A job as operators see it: any user's or the system's.
#[derive(Debug, Clone, Object)]
pub struct AdminJob {
    /// The job's id.
    pub id: Uuid,
    /// Who asked for it; absent for system jobs.
    pub user_id: Option<Uuid>,
    /// What it does.
    pub kind: JobKind,
    /// The queue carrying it.
    pub queue: Queue,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Attempts started (since its last retry by an operator).
    pub attempts: i32,
    /// Attempts allowed before it is `dead`.
    pub max_attempts: i32,
    /// Its arguments, as stored.
    pub args: Value,
    /// Its result, once `succeeded`.
    pub result: Option<Value>,
    /// The last failure, if any.
    pub error: Option<String>,
    /// When it was accepted.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub updated_at: DateTime<Utc>,
    /// When its latest attempt started.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub started_at: Option<DateTime<Utc>>,
    /// When it reached a final status.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub finished_at: Option<DateTime<Utc>>,
    /// How far it is, once its handler reported it.
    pub progress: Option<JobProgress>,
}

impl From<JobRow> for AdminJob {
    fn from(row: JobRow) -> Self {
        Self {
            progress: JobProgress::of(&row),
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
        }
    }
}

/// One failed attempt.
#[derive(Debug, Clone, Object, Deserialize)]
pub struct AttemptError {
    /// The attempt's number.
    pub attempt: i32,
    /// How it failed.
    pub error: String,
    /// When it ended.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub at: DateTime<Utc>,
}

/// A job with its history.
#[derive(Debug, Clone, Object)]
pub struct AdminJobDetail {
    /// The job.
    #[oai(flatten)]
    pub job: AdminJob,
    /// Its failed attempts, oldest first (the latest 20), across operator retries.
    pub errors: Vec<AttemptError>,
    /// When it was handed to Redis; absent while it waits in the outbox.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub enqueued_at: Option<DateTime<Utc>>,
}

/// Statuses a retry applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum RetryStatus {
    /// Every attempt failed.
    Dead,
    /// Cancelled before it finished.
    Cancelled,
    /// Waiting for its next attempt: it runs now.
    Failed,
}

/// Statuses a discard applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum DiscardStatus {
    /// Every attempt failed.
    Dead,
    /// Waiting for its next attempt: it never runs again.
    Failed,
}

/// Which jobs to retry; every field narrows. Without `status`, dead jobs.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct RetryJobs {
    /// Only this queue.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub queue: Option<Queue>,
    /// Only this kind.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub kind: Option<JobKind>,
    /// Only jobs in this status (default `dead`).
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub status: Option<RetryStatus>,
    /// Only this user's jobs.
    pub user_id: Option<Uuid>,
    /// Only jobs whose arguments contain this text (case-insensitive, at most 200 characters).
    #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
    pub q: Option<String>,
}

/// Which jobs to discard; every field narrows. Without `status`, dead jobs.
#[derive(Debug, Clone, Object, Deserialize)]
#[oai(deny_unknown_fields)]
#[serde(deny_unknown_fields)]
pub struct DiscardJobs {
    /// Only this queue.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub queue: Option<Queue>,
    /// Only this kind.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub kind: Option<JobKind>,
    /// Only jobs in this status (default `dead`).
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub status: Option<DiscardStatus>,
    /// Only this user's jobs.
    pub user_id: Option<Uuid>,
    /// Only jobs whose arguments contain this text (case-insensitive, at most 200 characters).
    #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
    pub q: Option<String>,
}

/// How many jobs an action changed.
#[derive(Debug, Clone, Object)]
pub struct Affected {
    /// Jobs changed.
    pub affected: u64,
    /// The audit log entry recording it.
    pub audit_id: Uuid,
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

const ADMIN: u32 = status::AUTHED | status::FORBIDDEN;

/// The search text, trimmed; empty means none. Also checked here whatever the document's
/// validators do: Postgres text cannot hold U+0000.
fn search_text(field: &str, q: Option<String>) -> Result<Option<String>, ApiError> {
    let text = q
        .map(|text| text.trim().to_owned())
        .filter(|text| !text.is_empty());
    if text
        .as_ref()
        .is_some_and(|text| text.chars().count() > MAX_SEARCH || text.contains('\0'))
    {
        return Err(ApiError::invalid(
            field,
            format!("must be at most {MAX_SEARCH} characters, without U+0000"),
        ));
    }
    Ok(text)
}

impl From<RetryStatus> for JobStatus {
    fn from(status: RetryStatus) -> Self {
        match status {
            RetryStatus::Dead => JobStatus::Dead,
            RetryStatus::Cancelled => JobStatus::Cancelled,
            RetryStatus::Failed => JobStatus::Failed,
        }
    }
}

impl From<DiscardStatus> for JobStatus {
    fn from(status: DiscardStatus) -> Self {
        match status {
            DiscardStatus::Dead => JobStatus::Dead,
            DiscardStatus::Failed => JobStatus::Failed,
        }
    }
}

/// The jobs a retry or discard by filter applies to: one status, narrowed by the rest.
fn selection(
    queue: Option<Queue>,
    kind: Option<JobKind>,
    status: JobStatus,
    user_id: Option<Uuid>,
    q: Option<String>,
) -> Result<JobFilter, ApiError> {
    Ok(JobFilter {
        queue,
        kind,
        status: Some(status),
        user_id,
        search: search_text("q", q)?,
    })
}

fn conflict(detail: String) -> ApiError {
    ApiError::Conflict {
        detail,
        field: None,
    }
}

fn filter_details(filter: &JobFilter) -> Value {
    json!({
        "queue": filter.queue.map(Queue::as_str),
        "kind": filter.kind.map(JobKind::as_str),
        "status": filter.status.map(JobStatus::as_str),
        "user_id": filter.user_id,
        "q": filter.search,
    })
}

impl QueuesAdminApi {
    /// Hands requeued jobs to Redis now; if that fails they wait in the outbox for the relay.
    async fn dispatch(&self, jobs: &[OutboxJob]) {
        if let Err(err) = self.state.queues.dispatch(&self.state.db, jobs).await {
            tracing::warn!(jobs = jobs.len(), error = %err, "retried jobs left to the outbox relay");
        }
    }

    async fn find(&self, id: Uuid) -> Result<ops::JobDetail, ApiError> {
        ops::find(&self.state.db, id)
            .await?
            .ok_or_else(|| ApiError::not_found("job"))
    }

    async fn queue_state(&self, queue: Queue) -> Result<QueueCounts, ApiError> {
        let all = self.queue_states().await?;
        Ok(all
            .into_iter()
            .find(|counts| counts.queue == queue)
            .expect("every queue is listed"))
    }

    async fn queue_states(&self) -> Result<Vec<QueueCounts>, ApiError> {
        let stats =
            self.state.queues.stats().await.map_err(|err| {
                ApiError::Unavailable(format!("the queues are unavailable: {err}"))
            })?;
        let pauses: HashMap<Queue, ops::Pause> = ops::pauses(&self.state.db)
            .await?
            .into_iter()
            .map(|pause| (pause.queue, pause))
            .collect();
        let failed: HashMap<String, i64> = sqlx::query!(
            r#"SELECT queue, count(*) AS "count!" FROM jobs WHERE status = 'failed' GROUP BY queue"#
        )
        .fetch_all(&self.state.db)
        .await?
        .into_iter()
        .map(|row| (row.queue, row.count))
        .collect();
        Ok(stats
            .into_iter()
            .map(|(queue, stats)| {
                let pause = pauses.get(&queue);
                QueueCounts {
                    queue,
                    depth: stats.ready,
                    oldest_job_age_seconds: stats.oldest_ready_age.as_secs_f64(),
                    in_flight: stats.in_flight,
                    scheduled: stats.scheduled,
                    failed: failed
                        .get(queue.as_str())
                        .map_or(0, |count| count.unsigned_abs()),
                    dead: stats.dead,
                    workers: stats.workers,
                    // The record decides; Redis's flag follows it (the rescuer re-sets it).
                    paused: pause.is_some(),
                    paused_at: pause.map(|pause| pause.paused_at),
                    paused_by: pause.and_then(|pause| pause.paused_by),
                    pause_reason: pause.and_then(|pause| pause.reason.clone()),
                }
            })
            .collect())
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl QueuesAdminApi {
    /// Every queue: depth, oldest job's age, in flight, scheduled, failed, dead, workers, and
    /// whether it is paused.
    #[oai(path = "/queues", method = "get")]
    async fn queues(&self, _admin: AdminUser) -> ApiResult<Json<QueuesBody>, ADMIN> {
        Ok(Json(QueuesBody {
            queues: self.queue_states().await?,
        }))
    }

    /// Pause a queue: workers start none of its jobs within a second (running ones finish);
    /// it still accepts jobs. Pausing a paused queue changes nothing.
    #[oai(path = "/queues/:queue/pause", method = "post")]
    async fn pause(
        &self,
        admin: AdminUser,
        /// The queue.
        queue: Path<Queue>,
        body: JsonBody<PauseQueue>,
    ) -> ApiResult<Json<QueueCounts>, { ADMIN | status::BODY }> {
        let reason = body
            .0
            .reason
            .map(|text| text.trim().to_owned())
            .filter(|text| !text.is_empty());
        if reason
            .as_ref()
            .is_some_and(|text| text.chars().count() > 280 || text.chars().any(char::is_control))
        {
            return Err(ApiError::invalid(
                "reason",
                "must be at most 280 characters, without control characters",
            )
            .into());
        }
        let queue = queue.0;
        // Read first: with Redis unreachable this answers 503 before anything is recorded.
        let mut counts = self.queue_state(queue).await?;
        let mut tx = self.state.db.begin().await?;
        let pause = ops::pause(&mut *tx, queue, admin.0.id, reason.as_deref()).await?;
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::QueuePaused,
            &format!("queue:{queue}"),
            1,
            json!({ "reason": pause.reason }),
        )
        .await?;
        tx.commit().await?;
        if let Err(err) = self.state.queues.get(queue).pause().await {
            // Redis is away, so no worker claims anything either; the rescuer sets the flag.
            tracing::warn!(queue = queue.as_str(), error = %err, "pause recorded; Redis flag left to the rescuer");
        }
        tracing::info!(admin_id = %admin.0.id, queue = queue.as_str(), "queue paused");
        counts.paused = true;
        counts.paused_at = Some(pause.paused_at);
        counts.paused_by = pause.paused_by;
        counts.pause_reason = pause.reason;
        Ok(Json(counts))
    }

    /// Resume a paused queue: workers start its jobs again within a second.
    #[oai(path = "/queues/:queue/resume", method = "post")]
    async fn resume(
        &self,
        admin: AdminUser,
        /// The queue.
        queue: Path<Queue>,
    ) -> ApiResult<Json<QueueCounts>, { ADMIN | status::VALIDATION }> {
        let queue = queue.0;
        // Read first: with Redis unreachable this answers 503 before anything is recorded.
        let mut counts = self.queue_state(queue).await?;
        let mut tx = self.state.db.begin().await?;
        let was_paused = ops::resume(&mut *tx, queue).await?;
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::QueueResumed,
            &format!("queue:{queue}"),
            u64::from(was_paused),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        if let Err(err) = self.state.queues.get(queue).resume().await {
            tracing::warn!(queue = queue.as_str(), error = %err, "resume recorded; Redis flag left to the rescuer");
        }
        tracing::info!(admin_id = %admin.0.id, queue = queue.as_str(), "queue resumed");
        counts.paused = false;
        counts.paused_at = None;
        counts.paused_by = None;
        counts.pause_reason = None;
        Ok(Json(counts))
    }

    /// Search every job, newest first: by queue, kind, status, owner, and text in its arguments.
    #[oai(path = "/jobs", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_jobs(
        &self,
        _admin: AdminUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only this queue.
        queue: Query<Option<Queue>>,
        /// Only this kind.
        kind: Query<Option<JobKind>>,
        /// Only this status.
        status: Query<Option<JobStatus>>,
        /// Only this user's jobs.
        user_id: Query<Option<Uuid>>,
        /// Only jobs whose arguments contain this text (case-insensitive, at most 200
        /// characters).
        #[oai(validator(max_length = 200, pattern = r"^[^\x00]*$"))]
        q: Query<Option<String>>,
    ) -> ApiResult<Json<Page<AdminJob>>, { ADMIN | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let filter = JobFilter {
            queue: queue.0,
            kind: kind.0,
            status: status.0,
            user_id: user_id.0,
            search: search_text("q", q.0)?,
        };
        let mut conn = self.state.db.acquire().await?;
        let (rows, total) =
            ops::search(&mut conn, &filter, request.limit(), request.offset()).await?;
        let items = rows.into_iter().map(AdminJob::from).collect();
        Ok(Json(Page::new(items, request, total)))
    }

    /// One job with its failed attempts and errors.
    #[oai(path = "/jobs/:id", method = "get")]
    async fn get_job(
        &self,
        _admin: AdminUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<AdminJobDetail>, { ADMIN | status::VALIDATION | status::NOT_FOUND }> {
        let detail = self.find(id.0).await?;
        let errors = serde_json::from_value(detail.errors).map_err(|err| {
            ApiError::Internal(anyhow::anyhow!("job {} has unreadable errors: {err}", id.0))
        })?;
        Ok(Json(AdminJobDetail {
            job: detail.row.into(),
            errors,
            enqueued_at: detail.enqueued_at,
        }))
    }

    /// Run a job again: a dead or cancelled one from its first attempt (its error history is
    /// kept), a failed one (waiting for its next attempt) now. Any other status is 409.
    #[oai(path = "/jobs/:id/retry", method = "post")]
    async fn retry_job(
        &self,
        admin: AdminUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<
        Json<AdminJob>,
        { ADMIN | status::VALIDATION | status::NOT_FOUND | status::CONFLICT },
    > {
        let id = id.0;
        let job = self.find(id).await?.row;
        let target = format!("job:{id}");
        if job.status == JobStatus::Failed {
            let moved = self
                .state
                .queues
                .get(job.queue)
                .run_now(&[id.to_string()])
                .await
                .map_err(|err| ApiError::Unavailable(format!("the queue is unavailable: {err}")))?;
            if moved == 0 {
                return Err(
                    conflict("the job is already starting its next attempt".to_owned()).into(),
                );
            }
            let mut tx = self.state.db.begin().await?;
            let details = json!({ "status": "failed" });
            audit::record(
                &mut tx,
                &admin.0,
                AuditAction::JobRetried,
                &target,
                1,
                details,
            )
            .await?;
            tx.commit().await?;
            return Ok(Json(job.into()));
        }
        let mut tx = self.state.db.begin().await?;
        let Some(outbox) = ops::requeue_one(&mut *tx, id).await? else {
            return Err(conflict(format!(
                "the job is {}; only dead, cancelled or failed jobs can be retried",
                job.status
            ))
            .into());
        };
        let details = json!({ "status": job.status.as_str() });
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::JobRetried,
            &target,
            1,
            details,
        )
        .await?;
        tx.commit().await?;
        self.dispatch(&[outbox]).await;
        tracing::info!(admin_id = %admin.0.id, job_id = %id, "job retried by an operator");
        Ok(Json(self.find(id).await?.row.into()))
    }

    /// Cancel a job that has not finished. A running one is stopped by its worker, in whichever
    /// process, within about a second; its outcome is not recorded. A finished job is 409.
    #[oai(path = "/jobs/:id/cancel", method = "post")]
    async fn cancel_job(
        &self,
        admin: AdminUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<
        Json<AdminJob>,
        { ADMIN | status::VALIDATION | status::NOT_FOUND | status::CONFLICT },
    > {
        let id = id.0;
        let mut tx = self.state.db.begin().await?;
        let Some(job) = ops::cancel_unfinished(&mut *tx, id).await? else {
            let job = self.find(id).await?.row;
            return Err(conflict(format!(
                "the job is {}; only unfinished jobs can be cancelled",
                job.status
            ))
            .into());
        };
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::JobCancelled,
            &format!("job:{id}"),
            1,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        tracing::info!(admin_id = %admin.0.id, job_id = %id, "job cancelled by an operator");
        Ok(Json(job.into()))
    }

    /// Delete a dead or failed job (a failed one never runs again). Any other status is 409.
    #[oai(path = "/jobs/:id", method = "delete")]
    async fn discard_job(
        &self,
        admin: AdminUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<NoContent, { ADMIN | status::VALIDATION | status::NOT_FOUND | status::CONFLICT }>
    {
        let id = id.0;
        let mut tx = self.state.db.begin().await?;
        let Some(queue) = ops::discard_one(&mut *tx, id).await? else {
            let job = self.find(id).await?.row;
            return Err(conflict(format!(
                "the job is {}; only dead or failed jobs can be discarded",
                job.status
            ))
            .into());
        };
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::JobDiscarded,
            &format!("job:{id}"),
            1,
            json!({ "queue": queue.as_str() }),
        )
        .await?;
        tx.commit().await?;
        self.forget(&[(id, queue)]).await;
        Ok(NoContent::Done)
    }

    /// Run every job matching a filter again (default: dead jobs), in batches of 1,000; answers
    /// how many. Dead and cancelled jobs start from their first attempt, failed ones run now.
    #[oai(path = "/jobs/retry", method = "post")]
    async fn retry_jobs(
        &self,
        admin: AdminUser,
        body: JsonBody<RetryJobs>,
    ) -> ApiResult<Json<Affected>, { ADMIN | status::BODY }> {
        let request = body.0;
        let status = request.status.unwrap_or(RetryStatus::Dead).into();
        let filter = selection(
            request.queue,
            request.kind,
            status,
            request.user_id,
            request.q,
        )?;
        let (affected, audit_id) = if filter.status == Some(JobStatus::Failed) {
            self.run_failed_now(&admin, &filter).await?
        } else {
            self.requeue_finished(&admin, &filter).await?
        };
        tracing::info!(admin_id = %admin.0.id, affected, "jobs retried by an operator");
        Ok(Json(Affected { affected, audit_id }))
    }

    /// Delete every dead (default) or failed job matching a filter, in batches of 1,000;
    /// answers how many.
    #[oai(path = "/jobs/discard", method = "post")]
    async fn discard_jobs(
        &self,
        admin: AdminUser,
        body: JsonBody<DiscardJobs>,
    ) -> ApiResult<Json<Affected>, { ADMIN | status::BODY }> {
        let request = body.0;
        let status = request.status.unwrap_or(DiscardStatus::Dead).into();
        let filter = selection(
            request.queue,
            request.kind,
            status,
            request.user_id,
            request.q,
        )?;
        let mut entry = None;
        let mut affected = 0;
        loop {
            let mut tx = self.state.db.begin().await?;
            let discarded = ops::discard(&mut tx, &filter, BATCH).await?;
            let count = discarded.len() as u64;
            entry = Some(
                self.count_batch(
                    &mut tx,
                    &admin,
                    AuditAction::JobsDiscarded,
                    &filter,
                    entry,
                    count,
                )
                .await?,
            );
            tx.commit().await?;
            affected += count;
            self.forget(&discarded).await;
            if count < BATCH as u64 {
                break;
            }
        }
        tracing::info!(admin_id = %admin.0.id, affected, "jobs discarded by an operator");
        Ok(Json(Affected {
            affected,
            audit_id: entry.expect("one batch at least"),
        }))
    }
}

impl QueuesAdminApi {
    /// Records a batch in the audit log: the first creates the entry, later ones add to it.
    async fn count_batch(
        &self,
        tx: &mut sqlx::PgConnection,
        admin: &AdminUser,
        action: AuditAction,
        filter: &JobFilter,
        entry: Option<Uuid>,
        count: u64,
    ) -> Result<Uuid, ApiError> {
        Ok(match entry {
            None => {
                audit::record(tx, &admin.0, action, "jobs", count, filter_details(filter)).await?
            }
            Some(entry) => {
                audit::add_affected(tx, entry, count).await?;
                entry
            }
        })
    }

    async fn requeue_finished(
        &self,
        admin: &AdminUser,
        filter: &JobFilter,
    ) -> Result<(u64, Uuid), ApiError> {
        let mut entry = None;
        let mut affected = 0;
        loop {
            let mut tx = self.state.db.begin().await?;
            let jobs = ops::requeue_finished(&mut tx, filter, BATCH).await?;
            let count = jobs.len() as u64;
            entry = Some(
                self.count_batch(
                    &mut tx,
                    admin,
                    AuditAction::JobsRetried,
                    filter,
                    entry,
                    count,
                )
                .await?,
            );
            tx.commit().await?;
            affected += count;
            if !jobs.is_empty() {
                self.dispatch(&jobs).await;
            }
            if count < BATCH as u64 {
                return Ok((affected, entry.expect("recorded above")));
            }
        }
    }

    async fn run_failed_now(
        &self,
        admin: &AdminUser,
        filter: &JobFilter,
    ) -> Result<(u64, Uuid), ApiError> {
        let mut after = Uuid::nil();
        let mut affected = 0;
        // Redis failing part-way leaves the jobs moved so far moved: they are recorded before
        // the 503, so the audit log never misses what did happen.
        let mut unavailable = None;
        'pages: loop {
            let mut conn = self.state.db.acquire().await?;
            let page = ops::failed_after(&mut conn, filter, after, BATCH).await?;
            drop(conn);
            let Some(last) = page.last() else { break };
            after = last.0;
            for queue in Queue::ALL {
                let ids: Vec<String> = page
                    .iter()
                    .filter(|(_, of)| *of == queue)
                    .map(|(id, _)| id.to_string())
                    .collect();
                if ids.is_empty() {
                    continue;
                }
                match self.state.queues.get(queue).run_now(&ids).await {
                    Ok(moved) => affected += moved as u64,
                    Err(err) => {
                        unavailable = Some(format!("the queue is unavailable: {err}"));
                        break 'pages;
                    }
                }
            }
            if (page.len() as i64) < BATCH {
                break;
            }
        }
        if let (Some(why), 0) = (&unavailable, affected) {
            return Err(ApiError::Unavailable(why.clone()));
        }
        let mut tx = self.state.db.begin().await?;
        let entry = self
            .count_batch(
                &mut tx,
                admin,
                AuditAction::JobsRetried,
                filter,
                None,
                affected,
            )
            .await?;
        tx.commit().await?;
        match unavailable {
            Some(why) => Err(ApiError::Unavailable(why)),
            None => Ok((affected, entry)),
        }
    }

    /// Removes discarded jobs' Redis copies (dead ones); what this misses expires by itself.
    async fn forget(&self, jobs: &[(Uuid, Queue)]) {
        for queue in Queue::ALL {
            let ids: Vec<String> = jobs
                .iter()
                .filter(|(_, of)| *of == queue)
                .map(|(id, _)| id.to_string())
                .collect();
            if ids.is_empty() {
                continue;
            }
            if let Err(err) = self.state.queues.get(queue).forget(&ids).await {
                tracing::warn!(queue = queue.as_str(), error = %err, "discarded jobs' Redis copies left to expire");
            }
        }
    }
}
