//! Group commit for the `jobs` rows of running jobs. Every attempt moves its row twice
//! (`running`, then how it ended); as single-row statements those two writes were the
//! ceiling of the whole worker. Here each kind of write goes through a writer task that takes
//! everything submitted while its previous statement ran and writes it in one statement, so
//! an idle worker still writes at once and a busy one writes many rows per round trip.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use common::jobs::store::{self, Attempt, Outcome, StartedJob};
use group_commit::{BatchError, Batcher, Limits};
use sqlx::PgPool;

/// At most 256 rows per statement; two statements of one kind in flight at once: while one
/// runs, the next batch fills, and a second can start before the first returns.
const ROW_LIMITS: Limits = Limits {
    max_batch: 256,
    in_flight: 2,
};
/// How often a batch that lost a deadlock against another process's batch is tried again.
const DEADLOCK_RETRIES: usize = 3;

/// A write of job rows failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RowError {
    /// The statement failed; every attempt of its batch gets this.
    #[error("job row update failed: {0}")]
    Database(Arc<sqlx::Error>),
    /// The writer task is gone (the process is stopping).
    #[error("job row writer has stopped")]
    Stopped,
}

impl From<BatchError<sqlx::Error>> for RowError {
    fn from(err: BatchError<sqlx::Error>) -> Self {
        match err {
            BatchError::Failed(err) => Self::Database(err),
            BatchError::Stopped => Self::Stopped,
        }
    }
}

/// The worker's writer of job rows. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct JobRows {
    starts: Batcher<Attempt, Option<StartedJob>, sqlx::Error>,
    finishes: Batcher<(Attempt, Outcome), (), sqlx::Error>,
}

impl JobRows {
    /// Starts the writer tasks; they end when the last clone is dropped.
    pub fn spawn(db: PgPool) -> Self {
        let starts = {
            let db = db.clone();
            Batcher::spawn(ROW_LIMITS, move |attempts: Vec<Attempt>| {
                let db = db.clone();
                async move {
                    let mut started: HashMap<_, _> =
                        retry_deadlocks(|| store::start_attempts(&db, &attempts))
                            .await?
                            .into_iter()
                            .collect();
                    // `remove`: should one attempt come twice, only the first copy runs.
                    Ok(attempts
                        .iter()
                        .map(|attempt| started.remove(attempt))
                        .collect())
                }
            })
        };
        let finishes = Batcher::spawn(ROW_LIMITS, move |finished: Vec<(Attempt, Outcome)>| {
            let db = db.clone();
            async move {
                retry_deadlocks(|| store::finish_attempts(&db, &finished)).await?;
                Ok(vec![(); finished.len()])
            }
        });
        Self { starts, finishes }
    }

    /// Moves the row to `running` for this attempt; `None` when the job is final or already
    /// past this attempt, and the attempt must not run.
    pub async fn start(&self, attempt: Attempt) -> Result<Option<StartedJob>, RowError> {
        Ok(self.starts.submit(attempt).await?)
    }

    /// Records how the attempt ended.
    pub async fn finish(&self, attempt: Attempt, outcome: Outcome) -> Result<(), RowError> {
        Ok(self.finishes.submit((attempt, outcome)).await?)
    }
}

async fn retry_deadlocks<T, F, Fut>(mut write: F) -> Result<T, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, sqlx::Error>>,
{
    let mut tries = 0;
    loop {
        match write().await {
            Err(sqlx::Error::Database(err))
                if err.code().as_deref() == Some("40P01") && tries < DEADLOCK_RETRIES =>
            {
                tries += 1;
                tracing::debug!(tries, "job row batch lost a deadlock; writing it again");
            }
            result => return result,
        }
    }
}
