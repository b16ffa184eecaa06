use api::cli::{Cli, Command, run};

// Many small allocations per request from several threads: glibc malloc spent ~15 % of the
// CPU in a request benchmark, much of it waiting on its arena lock.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    if let Err(message) = common::config::load_dotenv() {
        eprintln!("{message}");
        return std::process::ExitCode::from(2);
    }
    let cli: Cli = common::config::parse_or_exit();
    common::config::exit_on_problems(&cli.config.problems());
    let common = &cli.config.common;
    let telemetry = common::telemetry::init_tracing(
        common.effective_log_format(),
        &common.log_filter,
        &common.tracing,
        "coinpulse-api",
    );

    // A one-shot command (create-admin, migrate) reports a failure as one line for the person
    // who typed it; the server also logs it for the log pipeline.
    let serving = matches!(cli.command, None | Some(Command::Serve));
    let code = match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            if serving {
                tracing::error!(error = format!("{err:#}"), "api failed");
            }
            eprintln!("api: {err:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shut_down();
    code
}
