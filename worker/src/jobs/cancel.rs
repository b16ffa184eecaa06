//! Stopping running jobs that an operator cancelled. The API marks the row `cancelled` (in
//! whichever process it runs); each worker process asks Postgres, every
//! `WORKER_CANCEL_CHECK_INTERVAL` while it runs jobs, which of its running jobs were cancelled,
//! and stops them. Asking Postgres rather than listening on Redis means a cancellation is never
//! missed while Redis is away, and the row is the one record of it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::jobs::admin;
use sqlx::PgPool;
use tokio::sync::oneshot;
use uuid::Uuid;

/// The jobs this process is running, each with the means to stop it. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct RunningJobs {
    stops: Arc<Mutex<HashMap<Uuid, oneshot::Sender<()>>>>,
}

/// A running job's entry; leaving the registry when dropped.
#[derive(Debug)]
pub struct Registration {
    jobs: RunningJobs,
    id: Uuid,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.jobs.lock().remove(&self.id);
    }
}

impl RunningJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, oneshot::Sender<()>>> {
        // A panic while holding this lock leaves the map consistent (single inserts/removes).
        self.stops
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Registers job `id` as running here; the receiver resolves when it is cancelled.
    pub fn register(&self, id: Uuid) -> (Registration, oneshot::Receiver<()>) {
        let (stop, stopped) = oneshot::channel();
        self.lock().insert(id, stop);
        (
            Registration {
                jobs: self.clone(),
                id,
            },
            stopped,
        )
    }

    fn ids(&self) -> Vec<Uuid> {
        self.lock().keys().copied().collect()
    }

    fn stop(&self, id: Uuid) {
        if let Some(stop) = self.lock().remove(&id) {
            let _ = stop.send(());
        }
    }
}

/// Runs forever: every `interval`, stops the running jobs whose rows were cancelled.
pub async fn watch(db: PgPool, running: RunningJobs, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let ids = running.ids();
        if ids.is_empty() {
            continue;
        }
        match admin::cancelled_among(&db, &ids).await {
            Ok(cancelled) => {
                for id in cancelled {
                    tracing::info!(job_id = %id, "job cancelled by an operator; stopping it");
                    running.stop(id);
                }
            }
            Err(err) => tracing::warn!(error = %err, "cannot check for cancelled jobs"),
        }
    }
}
