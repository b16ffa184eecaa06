//! A portfolio's files: `/api/v1/portfolios/{id}/imports` and `/exports`, each a background
//! job; an export's file is downloaded from its job (`GET /api/v1/jobs/{id}/download`).

use chrono::Utc;
use common::jobs::store as jobs_store;
use common::portfolios::jobs::{ExportTransactions, FileFormat, ImportTransactions};
use common::portfolios::store::{self as files_store, Purpose};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use super::not_found;
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, on_constraint, status};
use crate::jobs::{self, ACCOUNT_GONE, Job};
use crate::platform::ApiTags;
use crate::portfolios::files::ImportFile;
use crate::portfolios::store;

/// How long an upload waits for its import job before it is deleted.
const UPLOAD_LIFETIME: chrono::Duration = chrono::Duration::days(7);

/// Import and export endpoints.
#[derive(Debug)]
pub struct PortfolioFilesApi {
    state: AppState,
}

impl PortfolioFilesApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

#[derive(ApiResponse)]
enum FileJobAccepted {
    /// Accepted: the job is stored and will run; poll `Location` (or watch the `job` events)
    /// for its progress and result.
    #[oai(status = 202)]
    Accepted(
        Json<Job>,
        /// The job's URL.
        #[oai(header = "Location")]
        String,
    ),
}

impl PortfolioFilesApi {
    /// Stores `args` as the caller's job (with `upload` when given) once the portfolio is
    /// found to be theirs, and hands it to its queue.
    async fn accept<J: common::jobs::JobArgs>(
        &self,
        user: Uuid,
        portfolio_id: Uuid,
        args: &J,
        upload: Option<&ImportFile>,
    ) -> Result<FileJobAccepted, ApiError> {
        let mut tx = self.state.db.begin().await?;
        store::find(&mut *tx, user, portfolio_id)
            .await?
            .ok_or_else(not_found)?;
        let row = jobs_store::insert(&mut *tx, Some(user), args)
            .await
            .map_err(|err| on_constraint(err, ACCOUNT_GONE))?;
        if let Some(upload) = upload {
            files_store::save_file(
                &mut *tx,
                row.id,
                Purpose::Upload,
                upload.format.media_type(),
                &upload.content,
                Utc::now() + UPLOAD_LIFETIME,
            )
            .await?;
        }
        let job = Job::try_from(row.clone())?;
        tx.commit().await?;
        jobs::dispatch_in_background(&self.state, &row);
        Ok(FileJobAccepted::Accepted(Json(job), jobs::location(row.id)))
    }
}

#[OpenApi(prefix_path = "/api/v1/portfolios", tag = "ApiTags::Portfolios")]
impl PortfolioFilesApi {
    /// Import transactions from a file, in the background.
    ///
    /// Send a CSV file (`Content-Type: text/csv`; the README documents its columns) or a
    /// Ghostfolio JSON export (`application/json`), up to `MAX_IMPORT_BYTES` (32 MiB) and
    /// 100,000 transactions; amounts are in the portfolio's base currency. Answers `202` with
    /// the job at once. The job checks every row first (its fields, that its coin exists, and
    /// the ledger with the new rows in it) and lists each problem with its line and field in
    /// its result (`outcome: rejected`); only a file without problems is applied, in one
    /// transaction (`outcome: applied`). Rows already in the portfolio (same coin, side,
    /// amounts, time and note) are not added again, so importing a file twice adds it once.
    /// Progress (`rows` done of the file's) shows on the job while it runs.
    #[oai(path = "/:id/imports", method = "post")]
    async fn import(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        file: ImportFile,
    ) -> ApiResult<FileJobAccepted, { status::AUTHED | status::BODY | status::NOT_FOUND }> {
        // CPU-bound for a large file: off the async threads (the file holds its permit).
        let file = tokio::task::spawn_blocking(move || file.check().map(|()| file))
            .await
            .map_err(|err| ApiError::Internal(err.into()))??;
        let args = ImportTransactions {
            portfolio_id: id.0,
            format: file.format,
            bytes: file.content.len() as u64,
        };
        let accepted = self.accept(caller.0.id, id.0, &args, Some(&file)).await?;
        tracing::info!(portfolio_id = %id.0, bytes = args.bytes, format = ?args.format, "import accepted");
        Ok(accepted)
    }

    /// Export the transactions to a file, in the background.
    ///
    /// `format` is `csv` (default; the columns an import reads) or `json` (Ghostfolio's export
    /// format). Answers `202` with the job; once it succeeded, its `result.download` is the
    /// file's URL (`GET /api/v1/jobs/{id}/download`, for its owner, for a day). The file
    /// imports again unchanged.
    #[oai(path = "/:id/exports", method = "post")]
    async fn export(
        &self,
        caller: ActiveUser,
        /// The portfolio's id.
        id: Path<Uuid>,
        /// `csv` (default) or `json`.
        format: Query<Option<FileFormat>>,
    ) -> ApiResult<FileJobAccepted, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let args = ExportTransactions {
            portfolio_id: id.0,
            format: format.0.unwrap_or(FileFormat::Csv),
        };
        Ok(self.accept(caller.0.id, id.0, &args, None).await?)
    }
}
