//! Job progress: how far a running job is (`done` of `total` units, e.g. rows or coins),
//! recorded on its row for `GET /jobs/{id}` and sent to its owner as a `job` event.
//!
//! Any handler may report it; reports are throttled (at most one write every
//! [`MIN_INTERVAL`], but always the first and the last), so a job reporting per row costs a
//! handful of writes a second. Progress is best-effort: a failed write is logged and the job
//! goes on.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::events::{Event, Publisher};
use common::jobs::JobKind;
use serde_json::json;
use sqlx::PgPool;
use uuid::Uuid;

/// The shortest time between two recorded reports of one job.
pub const MIN_INTERVAL: Duration = Duration::from_millis(250);

/// A running job's progress reporter; cheap to clone. One that belongs to no job (a handler
/// called outside the queue) reports nothing.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    job: Option<Arc<Reporter>>,
}

#[derive(Debug)]
struct Reporter {
    db: PgPool,
    events: Publisher,
    job_id: Uuid,
    kind: JobKind,
    user_id: Option<Uuid>,
    attempt: i32,
    throttle: Mutex<Throttle>,
}

impl Progress {
    /// The reporter of attempt `attempt` of job `job_id`.
    pub fn for_job(
        db: PgPool,
        events: Publisher,
        job_id: Uuid,
        kind: JobKind,
        user_id: Option<Uuid>,
        attempt: i32,
    ) -> Self {
        Self {
            job: Some(Arc::new(Reporter {
                db,
                events,
                job_id,
                kind,
                user_id,
                attempt,
                throttle: Mutex::new(Throttle::default()),
            })),
        }
    }

    /// Records that `done` of `total` units are done (throttled; `done == total` always
    /// recorded).
    pub async fn report(&self, done: u64, total: u64) {
        let Some(job) = &self.job else { return };
        let due = job
            .throttle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .due(Instant::now(), done >= total);
        if !due {
            return;
        }
        let clamp = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        let recorded = common::jobs::store::record_progress(
            &job.db,
            job.job_id,
            job.attempt,
            clamp(done.min(total)),
            clamp(total),
        )
        .await;
        match recorded {
            Ok(true) => {}
            // Cancelled or superseded meanwhile: nothing to tell.
            Ok(false) => return,
            Err(err) => {
                tracing::warn!(job_id = %job.job_id, error = %err, "job progress not recorded");
                return;
            }
        }
        let Some(user_id) = job.user_id else { return };
        let event = Event::new(
            "job",
            json!({
                "id": job.job_id,
                "kind": job.kind.as_str(),
                "status": "running",
                "attempts": job.attempt,
                "progress": { "done": done.min(total), "total": total },
            }),
        );
        if let Err(err) = job.events.to_user(user_id, &event).await {
            tracing::debug!(error = %err, "job progress event not published");
        }
    }
}

/// When the next report is recorded.
#[derive(Debug, Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    /// Whether a report at `now` is recorded (`last` one always is); notes it if so.
    fn due(&mut self, now: Instant, last: bool) -> bool {
        let due = last
            || self
                .last
                .is_none_or(|previous| now.duration_since(previous) >= MIN_INTERVAL);
        if due {
            self.last = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_and_last_reports_are_recorded_and_those_between_throttled() {
        let mut throttle = Throttle::default();
        let start = Instant::now();
        assert!(throttle.due(start, false), "the first");
        assert!(!throttle.due(start + Duration::from_millis(100), false));
        assert!(throttle.due(start + MIN_INTERVAL, false));
        assert!(!throttle.due(start + MIN_INTERVAL + Duration::from_millis(1), false));
        assert!(
            throttle.due(start + MIN_INTERVAL + Duration::from_millis(2), true),
            "the last, however soon"
        );
    }
}
