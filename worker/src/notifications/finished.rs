//! A user's job that reached a final status becomes a `jobs` notification (the tracking layer
//! asks for it once the row is final).

use common::jobs::queues::QueueSet;
use common::jobs::store::{self as jobs_store, OutboxJob};
use common::jobs::{JobKind, JobStatus};
use common::market::jobs::BulkFetchResult;
use common::notifications::jobs::Notify;
use common::notifications::{JobFinished, NotificationContent};
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
        _ => "It finished.".to_owned(),
    }
}
