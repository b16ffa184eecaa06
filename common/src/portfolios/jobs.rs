//! The portfolio job kinds: importing transactions from a file and exporting them to one.
//! The file itself is not an argument: it is stored with the job in Postgres (`job_files`), so
//! Redis only ever carries a few ids.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobArgs, JobKind, Queue};

/// A portfolio file's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum FileFormat {
    /// Comma-separated values with a header row (the README documents the columns).
    Csv,
    /// Ghostfolio's JSON export (`{"activities": [...]}`).
    Json,
}

impl FileFormat {
    /// The media type of a file in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            FileFormat::Csv => "text/csv; charset=utf-8",
            FileFormat::Json => "application/json",
        }
    }

    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
        }
    }
}

/// `portfolio_import`: add the transactions of an uploaded file to a portfolio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ImportTransactions {
    /// The portfolio the transactions are added to.
    pub portfolio_id: Uuid,
    /// The uploaded file's format.
    pub format: FileFormat,
    /// The uploaded file's size in bytes.
    pub bytes: u64,
}

impl JobArgs for ImportTransactions {
    const KIND: JobKind = JobKind::PortfolioImport;
    const QUEUE: Queue = Queue::PortfolioFiles;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(600));
    type Output = ImportResult;
}

/// Whether an import added its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum ImportOutcome {
    /// Every row was valid; the new ones were added in one transaction.
    Applied,
    /// Some row was not valid (see `errors`); nothing was added.
    Rejected,
}

/// One problem of an imported file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct RowError {
    /// The line of the file it is on (1 is the first line: a CSV file's header).
    pub line: u64,
    /// The column (CSV) or field (JSON) at fault; `file` for the file as a whole.
    pub field: String,
    /// What is wrong, in words.
    pub message: String,
}

/// An import's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ImportResult {
    /// `applied` or `rejected`.
    pub outcome: ImportOutcome,
    /// The file's format.
    pub format: FileFormat,
    /// Transactions in the file.
    pub rows: u64,
    /// Transactions added to the portfolio.
    pub added: u64,
    /// Transactions already in the portfolio with the same coin, side, amounts, time and note
    /// (e.g. from an earlier import of the same file), not added again.
    pub duplicates: u64,
    /// The problems found, in line order (at most 1,000; `errors_total` counts them all).
    pub errors: Vec<RowError>,
    /// How many problems were found.
    pub errors_total: u64,
}

/// `portfolio_export`: write a portfolio's transactions to a file to download.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ExportTransactions {
    /// The portfolio exported.
    pub portfolio_id: Uuid,
    /// The file's format.
    pub format: FileFormat,
}

impl JobArgs for ExportTransactions {
    const KIND: JobKind = JobKind::PortfolioExport;
    const QUEUE: Queue = Queue::PortfolioFiles;
    const MAX_ATTEMPTS: i32 = 3;
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(600));
    type Output = ExportResult;
}

/// An export's outcome: where to download the file, until when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct ExportResult {
    /// The file's format.
    pub format: FileFormat,
    /// Transactions in the file.
    pub rows: u64,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Where to download it (`GET`, as the job's owner).
    pub download: String,
    /// When the file is deleted; the download answers `410` after.
    #[cfg_attr(feature = "openapi", oai(serialize_with = "crate::wire::timestamp"))]
    pub expires_at: DateTime<Utc>,
}
