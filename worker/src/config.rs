//! The worker binary's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use std::str::FromStr;

use common::config::{CommonConfig, ConfigProblem, parse_duration};
use common::events::HistoryConfig;
use common::jobs::Queue;
use common::jobs::queues::QueueDefaults;
use common::market::MarketConfig;

use crate::email::config::EmailConfig;

/// Coinpulse job worker. Every flag can also be set through the environment variable shown.
#[derive(Debug, Clone, clap::Parser)]
#[command(name = "worker", version, about, long_about = None)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the worker's own HTTP server (`/metrics`, `/health/live`, `/health/ready`).
    #[arg(
        long = "metrics-addr",
        env = "WORKER_METRICS_ADDR",
        default_value = "127.0.0.1:9091"
    )]
    pub metrics_addr: SocketAddr,

    #[command(flatten)]
    pub market: MarketConfig,

    #[command(flatten)]
    pub queue: QueueDefaults,

    #[command(flatten)]
    pub email: EmailConfig,

    #[command(flatten)]
    pub event_history: HistoryConfig,

    /// Jobs run at once per queue, unless `--queues` names one (`bulk_fetch:8`); defaults to
    /// each queue's own setting.
    #[arg(long, env = "WORKER_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// Queues to consume, comma-separated, each optionally with its own concurrency
    /// (`bulk_fetch:8,email`). Default: all.
    #[arg(
        long,
        env = "WORKER_QUEUES",
        value_delimiter = ',',
        default_value = "bulk_fetch,price_refresh,alert_eval,notify,email,portfolio_files"
    )]
    pub queues: Vec<ConsumedQueue>,

    /// Longest run of one job attempt; a slower attempt fails (and is retried).
    #[arg(long = "job-timeout", env = "WORKER_JOB_TIMEOUT", default_value = "2m", value_parser = parse_duration)]
    pub job_timeout: Duration,

    /// How often the outbox relay looks for accepted jobs that never reached Redis.
    #[arg(long = "relay-interval", env = "OUTBOX_RELAY_INTERVAL", default_value = "1s", value_parser = parse_duration)]
    pub relay_interval: Duration,

    /// How often one worker looks for handed-over jobs that Redis no longer holds (lost data)
    /// and pushes them again from their Postgres records.
    #[arg(long = "rescue-interval", env = "WORKER_RESCUE_INTERVAL", default_value = "10s", value_parser = parse_duration)]
    pub rescue_interval: Duration,

    /// How often a worker process asks Postgres which of its running jobs an operator
    /// cancelled (it stops them within about this long).
    #[arg(long = "cancel-check-interval", env = "WORKER_CANCEL_CHECK_INTERVAL", default_value = "250ms", value_parser = parse_duration)]
    pub cancel_check_interval: Duration,

    /// How long a job row must have been unchanged before the rescuer considers it.
    #[arg(long = "rescue-grace", env = "WORKER_RESCUE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub rescue_grace: Duration,

    /// How often prices are refreshed (once per interval across all workers).
    #[arg(long = "price-refresh-interval", env = "PRICE_REFRESH_INTERVAL", default_value = "60s", value_parser = parse_duration)]
    pub price_refresh_interval: Duration,

    /// How long in-flight jobs may take to finish after SIGTERM before the worker exits.
    #[arg(long = "shutdown-timeout", env = "WORKER_SHUTDOWN_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl WorkerConfig {
    /// Every invalid setting; empty when the configuration is usable.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = self.common.problems();
        if self.concurrency == Some(0) {
            problems.push(ConfigProblem::new(
                "WORKER_CONCURRENCY",
                "must be at least 1",
            ));
        }
        if self.price_refresh_interval < Duration::from_secs(1) {
            problems.push(ConfigProblem::new(
                "PRICE_REFRESH_INTERVAL",
                "must be at least 1s",
            ));
        }
        if self.cancel_check_interval < Duration::from_millis(10) {
            problems.push(ConfigProblem::new(
                "WORKER_CANCEL_CHECK_INTERVAL",
                "must be at least 10ms",
            ));
        }
        if self.rescue_interval < Duration::from_millis(100) {
            problems.push(ConfigProblem::new(
                "WORKER_RESCUE_INTERVAL",
                "must be at least 100ms",
            ));
        }
        if self.job_timeout.is_zero() {
            problems.push(ConfigProblem::new("WORKER_JOB_TIMEOUT", "must be positive"));
        }
        if self.queue.lease < Duration::from_millis(300) {
            problems.push(ConfigProblem::new("WORKER_LEASE", "must be at least 300ms"));
        }
        let mut seen = Vec::new();
        for spec in &self.queues {
            if seen.contains(&spec.queue) {
                problems.push(ConfigProblem::new(
                    "WORKER_QUEUES",
                    format!("names {} twice", spec.queue.as_str()),
                ));
            }
            seen.push(spec.queue);
        }
        if self.queues.is_empty() {
            problems.push(ConfigProblem::new(
                "WORKER_QUEUES",
                "must name at least one queue",
            ));
        }
        problems
    }
}

impl WorkerConfig {
    /// How many jobs of `spec`'s queue run at once in this process.
    pub fn concurrency_of(&self, spec: &ConsumedQueue) -> usize {
        spec.concurrency
            .or(self.concurrency)
            .unwrap_or_else(|| default_concurrency(spec.queue))
    }
}

/// Jobs at once per queue by default: bulk fetches and refreshes mostly wait on the upstream
/// budget, so many in parallel only queue up behind it; alert evaluation batches its own work;
/// notifications and emails wait on Postgres and the mail server; imports and exports hold a
/// whole file in memory, so a few at once.
fn default_concurrency(queue: Queue) -> usize {
    match queue {
        Queue::BulkFetch => 8,
        Queue::PortfolioFiles => 2,
        Queue::PriceRefresh | Queue::AlertEval => 1,
        Queue::Notify => 16,
        Queue::Email => 8,
    }
}

/// A queue this worker consumes, with an optional concurrency of its own (`bulk_fetch:8`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsumedQueue {
    /// The queue.
    pub queue: Queue,
    /// Jobs at once, if set for this queue.
    pub concurrency: Option<usize>,
}

impl FromStr for ConsumedQueue {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let (name, concurrency) = match value.split_once(':') {
            Some((name, n)) => {
                let n: usize =
                    n.trim().parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                        format!("concurrency of {name} must be a positive integer")
                    })?;
                (name, Some(n))
            }
            None => (value, None),
        };
        Ok(Self {
            queue: name.trim().parse()?,
            concurrency,
        })
    }
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::*;

    #[test]
    fn flags_are_well_formed() {
        WorkerConfig::command().debug_assert();
    }

    #[test]
    fn by_default_every_queue_is_consumed() {
        let config = WorkerConfig::try_parse_from(["worker"]).expect("parses");
        let queues: Vec<Queue> = config
            .queues
            .iter()
            .map(|consumed| consumed.queue)
            .collect();
        assert_eq!(queues, Queue::ALL);
    }

    #[test]
    fn queues_are_parsed_and_checked() {
        let config = WorkerConfig::try_parse_from([
            "worker",
            "--queues",
            "price_refresh,bulk_fetch",
            "--concurrency",
            "4",
        ])
        .expect("parses");
        let queues: Vec<Queue> = config
            .queues
            .iter()
            .map(|consumed| consumed.queue)
            .collect();
        assert_eq!(queues, vec![Queue::PriceRefresh, Queue::BulkFetch]);
        assert_eq!(config.concurrency_of(&config.queues[0]), 4);
        let per_queue =
            WorkerConfig::try_parse_from(["worker", "--queues", "bulk_fetch:3,price_refresh"])
                .expect("parses");
        assert_eq!(per_queue.concurrency_of(&per_queue.queues[0]), 3);
        assert_eq!(per_queue.concurrency_of(&per_queue.queues[1]), 1);
        assert!(WorkerConfig::try_parse_from(["worker", "--queues", "bulk_fetch:0"]).is_err());
        assert!(WorkerConfig::try_parse_from(["worker", "--queues", "emails"]).is_err());
        assert!(WorkerConfig::try_parse_from(["worker", "--queues", "nope"]).is_err());
        let zero = WorkerConfig::try_parse_from(["worker", "--concurrency", "0"]).expect("parses");
        assert_eq!(zero.problems()[0].variable, "WORKER_CONCURRENCY");
    }
}
