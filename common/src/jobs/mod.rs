//! Jobs: queue names, statuses and the Postgres record shared by the API (which enqueues)
//! and the worker (which consumes).

pub mod queues;
pub mod store;

use std::fmt;
use std::str::FromStr;

/// A job queue. The names are a contract with operators and dashboards (`queue` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Queue {
    /// Bulk price fetches requested through `POST /crypto/bulk`.
    BulkFetch,
    /// The scheduled refresh of tracked prices.
    PriceRefresh,
    /// Evaluation of price alerts after a refresh.
    AlertEval,
    /// In-app notifications.
    Notify,
    /// Outgoing email.
    Email,
}

impl Queue {
    /// Every queue, in a stable order.
    pub const ALL: [Queue; 5] = [
        Queue::BulkFetch,
        Queue::PriceRefresh,
        Queue::AlertEval,
        Queue::Notify,
        Queue::Email,
    ];

    /// The queue's name, as used in Redis keys, metrics labels and `WORKER_QUEUES`.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::BulkFetch => "bulk_fetch",
            Queue::PriceRefresh => "price_refresh",
            Queue::AlertEval => "alert_eval",
            Queue::Notify => "notify",
            Queue::Email => "email",
        }
    }
}

impl Queue {
    /// How many attempts a job on this queue gets before it is `dead`.
    pub fn max_attempts(self) -> i32 {
        match self {
            Queue::BulkFetch | Queue::AlertEval | Queue::Notify => 5,
            Queue::PriceRefresh => 3,
            Queue::Email => 8,
        }
    }
}

crate::text_column!(Queue);

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Accepted and waiting for a worker (possibly waiting to be retried).
    Queued,
    /// A worker is running it.
    Running,
    /// Finished; `result` holds the outcome.
    Succeeded,
    /// The last attempt failed and another is scheduled.
    Failed,
    /// Cancelled by its owner before it ran.
    Cancelled,
    /// Every attempt failed; kept for operators.
    Dead,
}

impl JobStatus {
    /// Every status, in lifecycle order.
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Cancelled,
        JobStatus::Dead,
    ];

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Dead => "dead",
        }
    }

    /// Whether the job will never run again.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Cancelled | JobStatus::Dead
        )
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| format!("unknown job status {s:?}"))
    }
}

crate::text_column!(JobStatus);

impl fmt::Display for Queue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Queue {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Queue::ALL
            .into_iter()
            .find(|queue| queue.as_str() == s.trim())
            .ok_or_else(|| {
                let names: Vec<_> = Queue::ALL.iter().map(|q| q.as_str()).collect();
                format!("unknown queue {s:?} (expected one of {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for queue in Queue::ALL {
            assert_eq!(queue.as_str().parse::<Queue>(), Ok(queue));
        }
        assert!("emails".parse::<Queue>().is_err());
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!(JobStatus::Dead.is_final() && !JobStatus::Failed.is_final());
    }
}
