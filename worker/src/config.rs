//! The worker binary's configuration.

use std::net::SocketAddr;
use std::time::Duration;

use common::config::{CommonConfig, ConfigProblem, parse_duration};
use common::jobs::Queue;

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

    /// Jobs run at once per queue; defaults to each queue's own setting.
    #[arg(long, env = "WORKER_CONCURRENCY")]
    pub concurrency: Option<usize>,

    /// Queues to consume, comma-separated (default: all).
    #[arg(
        long,
        env = "WORKER_QUEUES",
        value_delimiter = ',',
        default_value = "bulk_fetch,price_refresh,alert_eval,notify,email"
    )]
    pub queues: Vec<Queue>,

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
        if self.queues.is_empty() {
            problems.push(ConfigProblem::new(
                "WORKER_QUEUES",
                "must name at least one queue",
            ));
        }
        problems
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
    fn queues_are_parsed_and_checked() {
        let config = WorkerConfig::try_parse_from([
            "worker",
            "--queues",
            "email,notify",
            "--concurrency",
            "4",
        ])
        .expect("parses");
        assert_eq!(config.queues, vec![Queue::Email, Queue::Notify]);
        assert_eq!(config.concurrency, Some(4));
        assert!(WorkerConfig::try_parse_from(["worker", "--queues", "nope"]).is_err());
        let zero = WorkerConfig::try_parse_from(["worker", "--concurrency", "0"]).expect("parses");
        assert_eq!(zero.problems()[0].variable, "WORKER_CONCURRENCY");
    }
}
