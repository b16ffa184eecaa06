//! Group commit: callers submit one item each and wait for its answer; a task takes every
//! item waiting and hands them to one write, so an idle system writes each item at once and a
//! busy one writes many per round trip (to Postgres, to Redis) without a timer or a setting.
//!
//! The worker's job rows, the queue's acks and the job events go through a [`Batcher`].

use std::future::Future;
use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// Why a submitted item got no answer.
#[derive(Debug, thiserror::Error)]
pub enum BatchError<E> {
    /// The write of its batch failed; every item of that batch gets this error.
    #[error(transparent)]
    Failed(Arc<E>),
    /// The batcher's task is gone (the runtime is stopping).
    #[error("the batch writer has stopped")]
    Stopped,
}

impl<E> Clone for BatchError<E> {
    fn clone(&self) -> Self {
        match self {
            Self::Failed(err) => Self::Failed(err.clone()),
            Self::Stopped => Self::Stopped,
        }
    }
}

type Reply<O, E> = oneshot::Sender<Result<O, BatchError<E>>>;

/// How a [`Batcher`] groups items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most items in one write.
    pub max_batch: usize,
    /// Writes in progress at once: while one runs, the next batch fills, and with more than
    /// one it can start before the first returns. Items of one submitter that waits for each
    /// answer before the next submit keep their order whatever this is.
    pub in_flight: usize,
}

/// Runs submitted items in batches. Cheap to clone; its task ends when the last clone is
/// dropped, after answering everything submitted.
#[derive(Debug)]
pub struct Batcher<I, O, E> {
    sender: mpsc::UnboundedSender<(I, Reply<O, E>)>,
}

impl<I, O, E> Clone for Batcher<I, O, E> {
    fn clone(&self) -> Self {
        Self {
            sender: self.sender.clone(),
        }
    }
}

impl<I, O, E> Batcher<I, O, E>
where
    I: Send + 'static,
    O: Send + 'static,
    E: Send + Sync + 'static,
{
    /// Starts the task (on the current tokio runtime) that hands every waiting item, up to
    /// `limits.max_batch`, to `write`, which must answer one output per item, in order.
    pub fn spawn<F, Fut>(limits: Limits, write: F) -> Self
    where
        F: Fn(Vec<I>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Vec<O>, E>> + Send + 'static,
    {
        let (sender, mut receiver) = mpsc::unbounded_channel::<(I, Reply<O, E>)>();
        let max_batch = limits.max_batch.max(1);
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(limits.in_flight.max(1)));
            let mut waiting = Vec::with_capacity(max_batch);
            loop {
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                if receiver.recv_many(&mut waiting, max_batch).await == 0 {
                    return;
                }
                let (items, replies): (Vec<I>, Vec<Reply<O, E>>) = waiting.drain(..).unzip();
                let batch = write(items);
                tokio::spawn(async move {
                    let outputs = batch.await;
                    drop(slot);
                    match outputs {
                        Ok(outputs) => {
                            debug_assert_eq!(outputs.len(), replies.len(), "one output per item");
                            for (reply, output) in replies.into_iter().zip(outputs) {
                                let _ = reply.send(Ok(output));
                            }
                        }
                        Err(err) => {
                            let err = BatchError::Failed(Arc::new(err));
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

    /// Submits `item` and waits for its answer.
    pub async fn submit(&self, item: I) -> Result<O, BatchError<E>> {
        let (reply, answer) = oneshot::channel();
        self.sender
            .send((item, reply))
            .map_err(|_| BatchError::Stopped)?;
        answer.await.map_err(|_| BatchError::Stopped)?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[tokio::test]
    async fn items_waiting_together_share_one_write_and_get_their_own_answers() {
        let sizes = Arc::new(Mutex::new(Vec::new()));
        let gate = Arc::new(tokio::sync::Notify::new());
        let batcher = {
            let sizes = sizes.clone();
            let gate = gate.clone();
            Batcher::spawn(
                Limits {
                    max_batch: 100,
                    in_flight: 1,
                },
                move |items: Vec<u32>| {
                    let sizes = sizes.clone();
                    let gate = gate.clone();
                    async move {
                        let first = sizes.lock().expect("lock").is_empty();
                        sizes.lock().expect("lock").push(items.len());
                        if first {
                            // Hold the first write so the others queue up behind it.
                            gate.notified().await;
                        }
                        Ok::<_, std::io::Error>(items.iter().map(|i| i * 2).collect::<Vec<_>>())
                    }
                },
            )
        };
        let first = tokio::spawn({
            let batcher = batcher.clone();
            async move { batcher.submit(1).await }
        });
        // Wait until the first write is running, then submit ten more behind it.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while sizes.lock().expect("lock").is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "first write never ran"
            );
            tokio::task::yield_now().await;
        }
        // A current-thread runtime: each task below runs its submit's send before it yields,
        // so once all ten counted themselves, all ten wait in the channel.
        let submitted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let rest: Vec<_> = (2..12)
            .map(|i| {
                let batcher = batcher.clone();
                let submitted = submitted.clone();
                tokio::spawn(async move {
                    submitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    batcher.submit(i).await
                })
            })
            .collect();
        while submitted.load(std::sync::atomic::Ordering::SeqCst) < 10 {
            assert!(tokio::time::Instant::now() < deadline, "submits never ran");
            tokio::task::yield_now().await;
        }
        gate.notify_one();
        assert_eq!(first.await.expect("task").expect("answer"), 2);
        for (i, handle) in (2..12).zip(rest) {
            assert_eq!(handle.await.expect("task").expect("answer"), i * 2);
        }
        assert_eq!(*sizes.lock().expect("lock"), vec![1, 10]);
    }

    #[tokio::test]
    async fn a_failed_write_fails_each_of_its_items() {
        let batcher = Batcher::spawn(
            Limits {
                max_batch: 8,
                in_flight: 2,
            },
            |_items: Vec<u8>| async { Err::<Vec<()>, _>(std::io::Error::other("down")) },
        );
        match batcher.submit(1).await {
            Err(BatchError::Failed(err)) => assert_eq!(err.to_string(), "down"),
            other => panic!("expected the write's error, got {other:?}"),
        }
    }
}
