//! Asking the worker to notify a user: a `notify` job written in the caller's transaction,
//! handed to Redis after commit (the worker's relay covers a failed hand-off).

use common::jobs::store::{self as jobs_store, JobRow};
use common::notifications::NotificationContent;
use common::notifications::jobs::Notify;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::app::AppState;

/// Queues a notification of `content` to `user_id` as a new event. Call it inside the
/// transaction of the change it reports; pass the row to [`dispatch`] after commit.
pub async fn notify(
    tx: &mut PgConnection,
    user_id: Uuid,
    content: NotificationContent,
) -> Result<Option<JobRow>, sqlx::Error> {
    let job = Notify {
        event_id: Uuid::now_v7(),
        user_id,
        content,
    };
    jobs_store::insert_once(&mut *tx, job.job_id(), &job).await
}

/// Hands a committed job to its queue in the background.
pub fn dispatch(state: &AppState, row: Option<JobRow>) {
    if let Some(row) = row {
        crate::jobs::dispatch_in_background(state, &row);
    }
}
