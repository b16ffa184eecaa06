use api::cli::{Cli, run};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(message) = common::config::load_dotenv() {
        eprintln!("{message}");
        return std::process::ExitCode::from(2);
    }
    let cli: Cli = common::config::parse_or_exit();
    common::config::exit_on_problems(&cli.config.problems());
    let common = &cli.config.common;
    common::telemetry::init_tracing(common.effective_log_format(), &common.log_filter);

    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "api failed");
            eprintln!("api: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
