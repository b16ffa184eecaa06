//! The Coinpulse worker: consumes the job queues and serves its own metrics and health.

mod config;
mod http;

use std::process::ExitCode;

use anyhow::Context;
use common::redis::Redis;
use poem::Server;
use poem::listener::TcpListener;

use crate::config::WorkerConfig;

// The same allocator as the api: many small, short-lived allocations from several threads.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    if let Err(message) = common::config::load_dotenv() {
        eprintln!("{message}");
        return ExitCode::from(2);
    }
    let config: WorkerConfig = common::config::parse_or_exit();
    common::config::exit_on_problems(&config.problems());
    common::telemetry::init_tracing(
        config.common.effective_log_format(),
        &config.common.log_filter,
    );
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "worker failed");
            eprintln!("worker: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let metrics = common::telemetry::install_metrics("worker");
    let db = common::db::connect_and_migrate(&config.common.database).await?;
    let redis = Redis::new(&config.common.redis).context("REDIS_URL is not a valid Redis URL")?;

    let queues: Vec<&str> = config.queues.iter().map(|queue| queue.as_str()).collect();
    tracing::info!(
        queues = %queues.join(","),
        concurrency = ?config.concurrency,
        metrics_addr = %config.metrics_addr,
        "worker started"
    );

    let addr = config.metrics_addr;
    Server::new(TcpListener::bind(addr))
        .run_with_graceful_shutdown(
            http::routes(db.clone(), redis, metrics),
            common::shutdown::signal(),
            Some(config.shutdown_timeout),
        )
        .await
        .with_context(|| format!("serving metrics on {addr} (WORKER_METRICS_ADDR) failed"))?;
    db.close().await;
    tracing::info!("worker stopped");
    Ok(())
}
