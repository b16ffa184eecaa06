//! Background jobs, shared by the API (which accepts them) and the worker (which runs them).
//!
//! Vocabulary (docs/ARCHITECTURE.md has the glossary):
//! - a **job kind** ([`JobKind`]) is what a job does; each kind is one Rust type implementing
//!   [`JobArgs`] — its arguments are the value, its result is [`JobArgs::Output`] — and both
//!   sides use that type, so a renamed field does not compile rather than fail at run time;
//! - a **queue** ([`Queue`]) is where jobs wait in Redis for a worker; several kinds may share
//!   one, and operators pick queues (`WORKER_QUEUES`), concurrency and dashboards by it;
//! - a job's **row** in Postgres `jobs` is its record (status, attempts, result); Redis only
//!   carries it to a worker ([`queues`]), and the worker rescues rows Redis lost.

pub mod admin;
pub mod queues;
pub mod store;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// A queue in Redis. The names are a contract with operators and dashboards (`queue` label,
/// `WORKER_QUEUES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum Queue {
    /// Bulk price fetches requested through `POST /crypto/bulk`.
    BulkFetch,
    /// The scheduled refresh of tracked prices.
    PriceRefresh,
    /// Price alert evaluation after each refresh.
    AlertEval,
    /// Notifications: in-app rows, `user:{id}` events, follow-up emails.
    Notify,
    /// Email delivery over SMTP (or into the outbox directory).
    Email,
    /// Portfolio imports and exports: long, file-sized jobs kept off the other queues.
    PortfolioFiles,
}

impl Queue {
    /// Every queue, in a stable order.
    pub const ALL: [Queue; 6] = [
        Queue::BulkFetch,
        Queue::PriceRefresh,
        Queue::AlertEval,
        Queue::Notify,
        Queue::Email,
        Queue::PortfolioFiles,
    ];

    /// The queue's name, as used in Redis keys, metrics labels and `WORKER_QUEUES`.
    pub fn as_str(self) -> &'static str {
        match self {
            Queue::BulkFetch => "bulk_fetch",
            Queue::PriceRefresh => "price_refresh",
            Queue::AlertEval => "alert_eval",
            Queue::Notify => "notify",
            Queue::Email => "email",
            Queue::PortfolioFiles => "portfolio_files",
        }
    }
}

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

crate::text_column!(Queue);

/// What a job does: one variant per [`JobArgs`] type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
pub enum JobKind {
    /// Fetch prices for a list of coins (`POST /crypto/bulk`).
    BulkFetch,
    /// The scheduled refresh of tracked prices.
    PriceRefresh,
    /// Evaluate the price alerts of the coins a refresh moved.
    AlertEval,
    /// Deliver one notification (in-app, event, email as the user's preferences say).
    Notify,
    /// Send one email.
    Email,
    /// Add the transactions of an uploaded file to a portfolio.
    PortfolioImport,
    /// Write a portfolio's transactions to a file to download.
    PortfolioExport,
}

impl JobKind {
    /// Every kind, in a stable order.
    pub const ALL: [JobKind; 7] = [
        JobKind::BulkFetch,
        JobKind::PriceRefresh,
        JobKind::AlertEval,
        JobKind::Notify,
        JobKind::Email,
        JobKind::PortfolioImport,
        JobKind::PortfolioExport,
    ];

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::BulkFetch => "bulk_fetch",
            JobKind::PriceRefresh => "price_refresh",
            JobKind::AlertEval => "alert_eval",
            JobKind::Notify => "notify",
            JobKind::Email => "email",
            JobKind::PortfolioImport => "portfolio_import",
            JobKind::PortfolioExport => "portfolio_export",
        }
    }
}

impl fmt::Display for JobKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        JobKind::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or_else(|| format!("unknown job kind {s:?}"))
    }
}

crate::text_column!(JobKind);

/// A job kind's arguments, and everything about the kind: its name, queue, attempts, time
/// limit and result type. Implemented once per kind in the feature that owns it (e.g.
/// [`crate::market::jobs`]); the API stores values of it and the worker registers one handler
/// per implementing type.
pub trait JobArgs: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The kind's name in `jobs.kind` and the API.
    const KIND: JobKind;
    /// The queue its jobs wait on.
    const QUEUE: Queue;
    /// Attempts before the job is `dead`.
    const MAX_ATTEMPTS: i32;
    /// The longest one attempt may run; `None` leaves it to the worker's `WORKER_JOB_TIMEOUT`.
    const TIMEOUT: Option<Duration> = None;
    /// Whether accepting a job whose id is already taken drops it (and reports so) rather than
    /// being an error: kinds given deterministic ids ("once per slot") set it.
    const DEDUPLICATED: bool = false;
    /// What a successful attempt stores as the job's `result`.
    type Output: Serialize + DeserializeOwned + Send + 'static;
}

/// What Redis carries for a job: the kind, so a worker finds its handler whatever the queue,
/// and the arguments as stored in the row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// What the job does.
    pub kind: JobKind,
    /// Its arguments, as [`JobArgs`] serialises them.
    pub args: serde_json::Value,
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
#[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for queue in Queue::ALL {
            assert_eq!(queue.as_str().parse::<Queue>(), Ok(queue));
        }
        assert!("emails".parse::<Queue>().is_err());
        for kind in JobKind::ALL {
            assert_eq!(kind.as_str().parse::<JobKind>(), Ok(kind));
            assert_eq!(
                serde_json::to_value(kind).expect("serialises"),
                serde_json::Value::from(kind.as_str())
            );
        }
        for status in JobStatus::ALL {
            assert_eq!(status.as_str().parse::<JobStatus>(), Ok(status));
        }
        assert!(JobStatus::Dead.is_final() && !JobStatus::Failed.is_final());
    }
}
