//! The worker's job metrics (names are a contract with `grafana/`; buckets are set in
//! `common::telemetry`).

use std::time::Duration;

use common::jobs::Queue;
use metrics::{Counter, Gauge, Histogram};

/// One queue's job metrics, registered once.
#[derive(Debug, Clone)]
pub struct JobMetrics {
    queue: &'static str,
    wait: Histogram,
    duration: Histogram,
    in_flight: Gauge,
    dead: Counter,
}

impl JobMetrics {
    /// Handles for `queue`.
    pub fn new(queue: Queue) -> Self {
        let name = queue.as_str();
        Self {
            queue: name,
            wait: metrics::histogram!("job_wait_seconds", "queue" => name),
            duration: metrics::histogram!("job_duration_seconds", "queue" => name),
            in_flight: metrics::gauge!("jobs_in_flight", "queue" => name),
            dead: metrics::counter!("jobs_dead_total", "queue" => name),
        }
    }

    /// An attempt started after waiting `wait` for a worker.
    pub fn started(&self, wait: Duration) {
        self.wait.record(wait.as_secs_f64());
        self.in_flight.increment(1.0);
    }

    /// An attempt ended after `took`.
    pub fn finished(&self, took: Duration) {
        self.in_flight.decrement(1.0);
        self.duration.record(took.as_secs_f64());
    }

    /// An attempt's outcome: `succeeded`, `failed`, `dead` or `skipped`.
    pub fn completed(&self, outcome: &'static str) {
        metrics::counter!("jobs_completed_total", "queue" => self.queue, "outcome" => outcome)
            .increment(1);
    }

    /// A job is dead.
    pub fn dead(&self) {
        self.dead.increment(1);
    }
}
