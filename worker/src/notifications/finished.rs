//! A user's job that reached a final status becomes a `jobs` notification (the tracking layer
//! asks for it once the row is final).

use common::jobs::queues::QueueSet;
use common::jobs::store::{self as jobs_store, OutboxJob};
use common::jobs::{JobKind, JobStatus};
use common::market::jobs::BulkFetchResult;
use common::notifications::jobs::Notify;
use common::notifications::{JobFinished, NotificationContent};
use common::portfolios::jobs::{ExportResult, ImportOutcome, ImportResult};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

/// A final job of a user.
#[derive(Debug, Clone, Copy)]
pub struct FinishedJob<'a> {
    pub id: Uuid,
    pub kind: JobKind,
    pub user_id: Uuid,
    pub status: JobStatus,
    pub result: Option<&'a Value>,
    pub error: Option<&'a str>,
}

/// Queues the notification of `job` (once: its id derives from the job's). Best effort: a
/// failure is logged, and never fails the job, which has already ended.
pub async fn notify_owner(db: &PgPool, queues: &QueueSet, job: FinishedJob<'_>) {
    let name = format!("coinpulse:job_finished:{}", job.id);
    let notify = Notify {
        event_id: Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes()),
        user_id: job.user_id,
        content: NotificationContent::JobFinished(JobFinished {
            job_id: job.id,
            kind: job.kind,
            status: job.status,
            summary: summary(&job),
        }),
    };
    match jobs_store::insert_once(db, notify.job_id(), &notify).await {
        Ok(Some(row)) => {
            if let Err(err) = queues.dispatch(db, &[OutboxJob::from(&row)]).await {
                tracing::warn!(error = %err, "job notification left to the outbox relay");
            }
        }
        Ok(None) => {}
        // The owner was deleted meanwhile: nobody to tell.
        Err(err)
            if err
                .as_database_error()
                .is_some_and(|e| e.is_foreign_key_violation()) => {}
        Err(err) => tracing::warn!(job_id = %job.id, error = %err, "job notification not queued"),
    }
}

/// One line on how the job ended.
fn summary(job: &FinishedJob<'_>) -> String {
    if job.status != JobStatus::Succeeded {
        return format!(
            "It failed after its last attempt: {}",
            job.error.unwrap_or("no reason recorded")
        );
    }
    match job.kind {
        JobKind::BulkFetch => job
            .result
            .and_then(|result| serde_json::from_value::<BulkFetchResult>(result.clone()).ok())
            .map(|result| {
                format!(
                    "{} of {} coins priced in {}.",
                    result.found,
                    result.coins.len(),
                    result.vs_currency.to_uppercase()
                )
            })
            .unwrap_or_else(|| "It finished.".to_owned()),
        JobKind::PortfolioImport => job
            .result
            .and_then(|result| serde_json::from_value::<ImportResult>(result.clone()).ok())
            .map(|result| match result.outcome {
                ImportOutcome::Applied => format!(
                    "{} of {} transactions added ({} were already there).",
                    result.added, result.rows, result.duplicates
                ),
                ImportOutcome::Rejected => {
                    let first = result
                        .errors
                        .first()
                        .map(|e| format!(" The first: line {}, {} {}.", e.line, e.field, e.message))
                        .unwrap_or_default();
                    format!(
                        "Nothing was added: the file has {} problem(s).{first}",
                        result.errors_total
                    )
                }
            })
            .unwrap_or_else(|| "It finished.".to_owned()),
        JobKind::PortfolioExport => job
            .result
            .and_then(|result| serde_json::from_value::<ExportResult>(result.clone()).ok())
            .map(|result| {
                format!(
                    "{} transactions exported; download it until {}.",
                    result.rows,
                    common::wire::timestamp_text(&result.expires_at)
                )
            })
            .unwrap_or_else(|| "It finished.".to_owned()),
        _ => "It finished.".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use common::portfolios::jobs::{FileFormat, RowError};
    use serde_json::json;

    use super::*;

    fn finished(kind: JobKind, result: &Value) -> String {
        summary(&FinishedJob {
            id: Uuid::nil(),
            kind,
            user_id: Uuid::nil(),
            status: JobStatus::Succeeded,
            result: Some(result),
            error: None,
        })
    }

    #[test]
    fn an_import_says_what_it_added_or_why_it_added_nothing() {
        let mut result = ImportResult {
            outcome: ImportOutcome::Applied,
            format: FileFormat::Csv,
            rows: 5,
            added: 3,
            duplicates: 2,
            errors: vec![],
            errors_total: 0,
        };
        let applied = serde_json::to_value(&result).expect("json");
        assert_eq!(
            finished(JobKind::PortfolioImport, &applied),
            "3 of 5 transactions added (2 were already there)."
        );
        result.outcome = ImportOutcome::Rejected;
        result.errors = vec![RowError {
            line: 3,
            field: "executed_at".into(),
            message: "must not be in the future".into(),
        }];
        result.errors_total = 4;
        let rejected = serde_json::to_value(&result).expect("json");
        assert_eq!(
            finished(JobKind::PortfolioImport, &rejected),
            "Nothing was added: the file has 4 problem(s). The first: line 3, executed_at \
             must not be in the future."
        );
        let export = json!({"format": "csv", "rows": 7, "bytes": 100,
            "download": "/api/v1/jobs/x/download", "expires_at": "2026-12-05T10:00:00Z"});
        assert_eq!(
            finished(JobKind::PortfolioExport, &export),
            "7 transactions exported; download it until 2026-12-05T10:00:00Z."
        );
    }
}
