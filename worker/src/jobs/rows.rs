//! Group commit for the `jobs` rows of running jobs. Every attempt moves its row twice
//! (`running`, then how it ended); as single-row statements those two writes were the
//! ceiling of the whole worker. Here each kind of write goes through a writer task that takes
//! everything submitted while its previous statement ran and writes it in one statement, so
//! an idle worker still writes at once and a busy one writes many rows per round trip.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use common::jobs::store::{self, Attempt, Outcome, StartedJob};
use sqlx::PgPool;
use tokio::sync::{Semaphore, mpsc, oneshot};

/// Most rows written by one statement.
const MAX_BATCH: usize = 256;
/// Statements of one kind in flight at once: while one runs, the next batch fills, and a
/// second can start before the first returns.
const IN_FLIGHT: usize = 2;
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

/// The worker's writer of job rows. Cheap to clone; one per process.
#[derive(Debug, Clone)]
pub struct JobRows {
    starts: Batcher<Attempt, Option<StartedJob>>,
    finishes: Batcher<(Attempt, Outcome), ()>,
}

impl JobRows {
    /// Starts the writer tasks; they end when the last clone is dropped.
    pub fn spawn(db: PgPool) -> Self {
        let starts = {
            let db = db.clone();
            Batcher::spawn(move |attempts: Vec<Attempt>| {
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
        let finishes = Batcher::spawn(move |finished: Vec<(Attempt, Outcome)>| {
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
        self.starts.submit(attempt).await
    }

    /// Records how the attempt ended.
    pub async fn finish(&self, attempt: Attempt, outcome: Outcome) -> Result<(), RowError> {
        self.finishes.submit((attempt, outcome)).await
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

type Reply<O> = oneshot::Sender<Result<O, RowError>>;

/// Submits items one by one and runs them in batches: a task takes every item waiting (up to
/// [`MAX_BATCH`]) and hands them to `write`, which answers one output per item, in order.
#[derive(Debug)]
struct Batcher<I, O> {
    sender: mpsc::UnboundedSender<(I, Reply<O>)>,
}

impl<I, O> Clone for Batcher<I, O> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<I: Send + 'static, O: Send + 'static> Batcher<I, O> {
    fn spawn<F, Fut>(write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, sqlx::Error>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(I, Reply<O>)>();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(IN_FLIGHT));
            let mut waiting = Vec::with_capacity(MAX_BATCH);
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                if receiver.recv_many(&mut waiting, MAX_BATCH).await == 0 {
                    return;
                }
                let (items, replies): (Vec<I>, Vec<Reply<O>>) = waiting.drain(..).unzip();
                let batch = write(items);
                tokio::spawn(async move {
                    let outputs = batch.await;
                    drop(slot);
                    match outputs {
                        Ok(outputs) => {
                            for (reply, output) in replies.into_iter().zip(outputs) {
                                let _ = reply.send(Ok(output));
                            }
                        }
                        Err(err) => {
                            let err = RowError::Database(Arc::new(err));
                            for reply in replies {
                                let _ = reply.send(Err(err.clone()));
                            }
                        }
                    }
                });
            }
        });
        Self { sender }
    }

    async fn submit(&self, item: I) -> Result<O, RowError> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((item, reply))
            .map_err(|_| RowError::Stopped)?;
        answer.await.map_err(|_| RowError::Stopped)?
    }
}
