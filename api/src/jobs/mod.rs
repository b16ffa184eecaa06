//! The caller's jobs: `/api/v1/jobs`; operators' queue operations are in [`admin`].

pub mod admin;

use chrono::{DateTime, Utc};
use common::jobs::store::OutboxJob;
use common::jobs::store::{self, Cancellation, JobRow};
use common::jobs::{JobKind, JobStatus};
use common::market::jobs::{BulkFetch, BulkFetchResult};
use common::portfolios::jobs::{
    ExportResult, ExportTransactions, ImportResult, ImportTransactions,
};
use common::portfolios::store::{self as files_store, Purpose};
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, Union};
use uuid::Uuid;

use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, Constraint, status};
use crate::platform::ApiTags;
use crate::platform::conditional::{self, Conditional};
use crate::platform::pagination::{Page, PageRequest};
use crate::portfolios::files::FileDownload;

/// Job endpoints.
#[derive(Debug)]
pub struct JobsApi {
    state: AppState,
}

impl JobsApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A job's arguments, by kind (the job's `kind` says which). `anyOf`, not `oneOf`: an
/// export's arguments are an import's without `bytes`, so an import's match both.
#[derive(Debug, Clone, Union)]
pub enum JobPayload {
    /// `bulk_fetch`.
    BulkFetch(BulkFetch),
    /// `portfolio_import`.
    PortfolioImport(ImportTransactions),
    /// `portfolio_export`.
    PortfolioExport(ExportTransactions),
}

/// A succeeded job's result, by kind (the job's `kind` says which).
#[derive(Debug, Clone, Union)]
#[oai(one_of)]
pub enum JobResult {
    /// `bulk_fetch`.
    BulkFetch(BulkFetchResult),
    /// `portfolio_import`.
    PortfolioImport(ImportResult),
    /// `portfolio_export`.
    PortfolioExport(ExportResult),
}

/// A job and its outcome.
#[derive(Debug, Object)]
#[oai(example)]
pub struct Job {
    /// The job's id.
    pub id: Uuid,
    /// What it does.
    pub kind: JobKind,
    /// Where it is in its life.
    pub status: JobStatus,
    /// Attempts started so far.
    pub attempts: i32,
    /// Attempts allowed before it is `dead`.
    pub max_attempts: i32,
    /// The job's arguments.
    pub payload: JobPayload,
    /// The outcome, once `succeeded`.
    pub result: Option<JobResult>,
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
    /// How far it is, once its handler reported it (kept after it ends; starts again with a
    /// new attempt). Also sent as `job` events with `status: running`.
    pub progress: Option<JobProgress>,
}

/// How far a job is: `done` of `total` units (coins, rows, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Object)]
pub struct JobProgress {
    /// Units done.
    pub done: u64,
    /// Units in all.
    pub total: u64,
}

impl JobProgress {
    /// The progress a row records, if any.
    pub fn of(row: &JobRow) -> Option<Self> {
        match (row.progress_done, row.progress_total) {
            (Some(done), Some(total)) => Some(Self {
                done: u64::try_from(done).unwrap_or(0),
                total: u64::try_from(total).unwrap_or(0),
            }),
            _ => None,
        }
    }
}

impl poem_openapi::types::Example for Job {
    fn example() -> Self {
        let at = crate::platform::example_time();
        Self {
            id: Uuid::nil(),
            kind: JobKind::BulkFetch,
            status: JobStatus::Queued,
            attempts: 0,
            max_attempts: 5,
            payload: JobPayload::BulkFetch(BulkFetch {
                coins: vec!["bitcoin".into(), "ethereum".into()],
                vs_currency: "usd".into(),
            }),
            result: None,
            error: None,
            created_at: at,
            updated_at: at,
            started_at: None,
            finished_at: None,
            progress: None,
        }
    }
}

impl TryFrom<JobRow> for Job {
    type Error = ApiError;

    /// Reads the stored arguments and result as the kind's types. A row that does not parse
    /// (or a kind callers never own) is a bug, answered as a 500 and logged.
    fn try_from(row: JobRow) -> Result<Self, ApiError> {
        let unreadable = |err: serde_json::Error| {
            ApiError::Internal(anyhow::anyhow!(
                "job {} does not parse as {}: {err}",
                row.id,
                row.kind
            ))
        };
        // The kind's arguments and result types, wrapped as the API shows them.
        let typed =
            |payload: fn(serde_json::Value) -> serde_json::Result<JobPayload>,
             result: fn(serde_json::Value) -> serde_json::Result<JobResult>| {
                Ok::<_, ApiError>((
                    payload(row.args.clone()).map_err(unreadable)?,
                    row.result
                        .clone()
                        .map(result)
                        .transpose()
                        .map_err(unreadable)?,
                ))
            };
        let (payload, result) = match row.kind {
            JobKind::BulkFetch => typed(
                |args| serde_json::from_value(args).map(JobPayload::BulkFetch),
                |result| serde_json::from_value(result).map(JobResult::BulkFetch),
            )?,
            JobKind::PortfolioImport => typed(
                |args| serde_json::from_value(args).map(JobPayload::PortfolioImport),
                |result| serde_json::from_value(result).map(JobResult::PortfolioImport),
            )?,
            JobKind::PortfolioExport => typed(
                |args| serde_json::from_value(args).map(JobPayload::PortfolioExport),
                |result| serde_json::from_value(result).map(JobResult::PortfolioExport),
            )?,
            JobKind::PriceRefresh | JobKind::AlertEval | JobKind::Notify | JobKind::Email => {
                return Err(ApiError::Internal(anyhow::anyhow!(
                    "job {} is a system job, which no caller owns",
                    row.id
                )));
            }
        };
        Ok(Self {
            progress: JobProgress::of(&row),
            id: row.id,
            kind: row.kind,
            status: row.status,
            attempts: row.attempts,
            max_attempts: row.max_attempts,
            payload,
            result,
            error: row.error,
            created_at: row.created_at,
            updated_at: row.updated_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
        })
    }
}

/// The job's owner no longer exists (deleted after the account check): a 401, not a 500.
pub const ACCOUNT_GONE: &[Constraint] = &[("jobs_user_id_fkey", || {
    ApiError::Unauthorized("the account no longer exists".into())
})];

/// Hands a just-committed job to its queue without delaying the response. If that fails
/// (Redis down, process killed), the job stays in the outbox and the worker's relay pushes it.
pub fn dispatch_in_background(state: &AppState, job: &JobRow) {
    let queues = state.queues.clone();
    let db = state.db.clone();
    let outbox = [OutboxJob::from(job)];
    tokio::spawn(async move {
        if let Err(err) = queues.dispatch(&db, &outbox).await {
            tracing::warn!(job_id = %outbox[0].id, error = %err, "job left to the outbox relay");
        }
    });
}

/// The `Location` of a job.
pub fn location(id: Uuid) -> String {
    format!("/api/v1/jobs/{id}")
}

#[derive(ApiResponse)]
enum Cancelled {
    /// The job was cancelled and will never run.
    #[oai(status = 200)]
    Ok(Json<Job>),
}

#[OpenApi(prefix_path = "/api/v1/jobs", tag = "ApiTags::Jobs")]
impl JobsApi {
    /// The caller's jobs, newest first; filter by status and kind.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        caller: ActiveUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only jobs with this status.
        status: Query<Option<JobStatus>>,
        /// Only jobs of this kind.
        kind: Query<Option<JobKind>>,
    ) -> ApiResult<Json<Page<Job>>, { status::AUTHED | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let (rows, total) = store::list_for_user(
            &self.state.db,
            caller.0.id,
            status.0,
            kind.0,
            request.limit(),
            request.offset(),
        )
        .await?;
        let jobs = rows
            .into_iter()
            .map(Job::try_from)
            .collect::<Result<_, _>>()?;
        Ok(Json(Page::new(jobs, request, total)))
    }

    /// One of the caller's jobs: status, attempts, timestamps, result or error.
    ///
    /// Poll with the last `ETag` as `If-None-Match`: the answer is `304` (no body) until the
    /// job changes.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        caller: ActiveUser,
        /// The job's id.
        id: Path<Uuid>,
        /// The `ETag` of a copy the caller holds (`*` or a list also work).
        #[oai(name = "If-None-Match")]
        if_none_match: Header<Option<String>>,
    ) -> ApiResult<Conditional<Job>, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let job: Job = store::find_for_user(&self.state.db, caller.0.id, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("job"))?
            .try_into()?;
        let etag = conditional::content_etag(&job, &[]);
        Ok(Conditional::new(job, etag, if_none_match.0.as_deref()))
    }

    /// The file an export job wrote, for its owner, until it expires a day after the export.
    ///
    /// `404` for a job that is not the caller's or has no file (not an export), `409` while
    /// the export has not succeeded, `410` once its file expired.
    #[oai(path = "/:id/download", method = "get")]
    async fn download(
        &self,
        caller: ActiveUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<
        FileDownload,
        {
            status::AUTHED
                | status::VALIDATION
                | status::NOT_FOUND
                | status::CONFLICT
                | status::GONE
        },
    > {
        let row = store::find_for_user(&self.state.db, caller.0.id, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("job"))?;
        if row.kind != JobKind::PortfolioExport {
            return Err(ApiError::NotFound("this job has no file to download".into()).into());
        }
        if row.status != JobStatus::Succeeded {
            return Err(ApiError::Conflict {
                detail: format!(
                    "the export is {}; its file can be downloaded once it succeeded",
                    row.status
                ),
                field: None,
            }
            .into());
        }
        let job = Job::try_from(row)?;
        let (Some(JobResult::PortfolioExport(result)), JobPayload::PortfolioExport(args)) =
            (&job.result, &job.payload)
        else {
            return Err(
                ApiError::Internal(anyhow::anyhow!("export {} has no result", job.id)).into(),
            );
        };
        let Some(file) = files_store::find_file(&self.state.db, job.id, Purpose::Download).await?
        else {
            return Err(ApiError::Gone(format!(
                "the file expired at {}; export the portfolio again",
                common::wire::timestamp_text(&result.expires_at)
            ))
            .into());
        };
        let file_name = format!(
            "portfolio-{}-{}.{}",
            args.portfolio_id,
            job.created_at.format("%Y%m%d"),
            result.format.extension()
        );
        Ok(FileDownload {
            format: result.format,
            file_name,
            content: file.content,
        })
    }

    /// Cancel one of the caller's jobs while it is still queued.
    ///
    /// A job that has started or finished answers 409 and is left as it is.
    #[oai(path = "/:id", method = "delete")]
    async fn cancel(
        &self,
        caller: ActiveUser,
        /// The job's id.
        id: Path<Uuid>,
    ) -> ApiResult<
        Cancelled,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::CONFLICT },
    > {
        match store::cancel(&self.state.db, caller.0.id, id.0).await? {
            Cancellation::Cancelled(job) => Ok(Cancelled::Ok(Json((*job).try_into()?))),
            Cancellation::TooLate(status) => Err(ApiError::Conflict {
                detail: format!("the job is {status}; only queued jobs can be cancelled"),
                field: None,
            }
            .into()),
            Cancellation::NotFound => Err(ApiError::not_found("job").into()),
        }
    }
}
