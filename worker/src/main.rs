//! The Coinpulse worker: consumes the job queues and serves its own metrics and health.

use std::process::ExitCode;

use worker::config::WorkerConfig;

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
    let telemetry = common::telemetry::init_tracing(
        config.common.effective_log_format(),
        &config.common.log_filter,
        &config.common.tracing,
        "coinpulse-worker",
    );
    let code = match worker::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "worker failed");
            eprintln!("worker: {err:#}");
            ExitCode::FAILURE
        }
    };
    telemetry.shut_down();
    code
}
