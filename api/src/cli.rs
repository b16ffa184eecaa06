//! The `api` command line: serve (default), migrate, create-admin.

use std::io::BufRead;

use anyhow::Context;
use common::domain::Role;
use common::redis::Redis;
use poem::Server;
use poem::listener::TcpListener;

use crate::app::{AppState, build_app};
use crate::auth::passwords::PasswordHasher;
use crate::config::ApiConfig;
use crate::users::{repo, validate};

/// Coinpulse HTTP API. Every flag can also be set through the environment variable shown.
#[derive(Debug, clap::Parser)]
#[command(name = "api", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub config: ApiConfig,
}

/// What to do; serving HTTP is the default.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Serve the HTTP API (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an administrator. The password comes from ADMIN_PASSWORD or, if unset, the
    /// first line of standard input.
    CreateAdmin {
        /// The admin's email address.
        #[arg(long)]
        email: String,
        /// The admin's username.
        #[arg(long)]
        username: String,
    },
}

/// Runs the chosen command to completion.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(cli.config).await,
        Command::Migrate => {
            common::db::connect_and_migrate(&cli.config.common.database).await?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::CreateAdmin { email, username } => {
            create_admin(&cli.config, &email, &username).await
        }
    }
}

/// Serves HTTP until SIGTERM/SIGINT, then drains in-flight requests (bounded).
pub async fn serve(config: ApiConfig) -> anyhow::Result<()> {
    let metrics = common::telemetry::install_metrics("api");
    let db = common::db::connect_and_migrate(&config.common.database).await?;
    let redis = Redis::new(&config.common.redis).context("REDIS_URL is not a valid Redis URL")?;
    let addr = config.addr;
    let shutdown_timeout = config.http.shutdown_timeout;
    let housekeeping = crate::housekeeping::spawn(db.clone(), config.housekeeping_interval);
    let state = AppState::new(config, db.clone(), redis, metrics)?;
    let app = build_app(state);

    tracing::info!(%addr, "api listening; docs at http://{addr}/docs");
    Server::new(TcpListener::bind(addr))
        .run_with_graceful_shutdown(app, common::shutdown::signal(), Some(shutdown_timeout))
        .await
        .with_context(|| format!("serving HTTP on {addr} (API_ADDR) failed"))?;
    housekeeping.abort();
    db.close().await;
    tracing::info!("api stopped");
    Ok(())
}

async fn create_admin(config: &ApiConfig, email: &str, username: &str) -> anyhow::Result<()> {
    let password = match std::env::var("ADMIN_PASSWORD") {
        Ok(password) => password,
        Err(_) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from stdin")?;
            line.trim_end_matches(['\r', '\n']).to_owned()
        }
    };
    let fields = validate::all(vec![
        validate::email("--email", email),
        validate::username("--username", username),
        validate::new_password("ADMIN_PASSWORD", &password),
    ]);
    let [email, username, password] = match fields {
        Ok(fields) => {
            <[String; 3]>::try_from(fields).map_err(|_| anyhow::anyhow!("validated field count"))?
        }
        Err(errors) => {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect();
            anyhow::bail!("invalid admin: {}", lines.join("; "));
        }
    };
    let db = common::db::connect_and_migrate(&config.common.database).await?;
    let hash = PasswordHasher::new(&config.auth)?.hash(&password).await?;
    let user = repo::insert(
        &db,
        &repo::NewUser {
            email: &email,
            username: &username,
            password_hash: &hash,
            role: Role::Admin,
        },
    )
    .await
    .map_err(|err| anyhow::anyhow!("could not create the admin: {err}"))?;
    println!("created admin {} ({})", user.username, user.id);
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn flags_are_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
