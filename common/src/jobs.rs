//! Queue names shared by the API (which enqueues) and the worker (which consumes).

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
    }
}
