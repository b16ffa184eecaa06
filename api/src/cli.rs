//! The `api` command line: serve (default), migrate, create-admin.

use std::io::BufRead;

use anyhow::Context;
use common::domain::Role;
use common::redis::Redis;
use poem::Server;
use poem::listener::{Listener, TcpListener};

use crate::app::{AppState, build_app, build_metrics_app};
use crate::auth::passwords::PasswordHasher;
use crate::config::ApiConfig;
use crate::users::{store, validate};

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
    tokio::spawn(redis.clone().warn_if_evicting());
    let dependencies = tokio::spawn(common::health::watch_dependencies(
        db.clone(),
        redis.clone(),
    ));
    let addr = config.addr;
    let shutdown_timeout = config.http.shutdown_timeout;
    let housekeeping = crate::housekeeping::spawn(
        db.clone(),
        config.housekeeping_interval,
        config.job_retention,
    );
    let metrics_addr = config.http.metrics_addr;
    let docs = config.docs_enabled();
    let state = AppState::new(config, db.clone(), redis, metrics)?;
    let metrics_server = match metrics_addr {
        Some(metrics_addr) => {
            let acceptor = TcpListener::bind(metrics_addr)
                .into_acceptor()
                .await
                .with_context(|| format!("cannot listen on {metrics_addr} (METRICS_ADDR)"))?;
            tracing::info!(%metrics_addr, "metrics listening");
            let app = build_metrics_app(&state);
            // Stopped with the process: scrapes need no draining.
            Some(tokio::spawn(Server::new_with_acceptor(acceptor).run(app)))
        }
        None if state.config.common.app_env.is_production() => {
            tracing::warn!("METRICS_ADDR is unset: production serves no /metrics");
            None
        }
        None => None,
    };
    let hub = state.hub.clone();
    let app = build_app(state);

    if docs {
        tracing::info!(%addr, "api listening; docs at http://{addr}/docs");
    } else {
        tracing::info!(%addr, "api listening");
    }
    Server::new(TcpListener::bind(addr))
        .run_with_graceful_shutdown(
            app,
            async move {
                common::shutdown::signal().await;
                // Open streams would hold the drain until its timeout: end them now.
                hub.shut_down();
            },
            Some(shutdown_timeout),
        )
        .await
        .with_context(|| format!("serving HTTP on {addr} (API_ADDR) failed"))?;
    if let Some(server) = metrics_server {
        server.abort();
    }
    housekeeping.abort();
    dependencies.abort();
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
    let user = store::insert(
        &db,
        &store::NewUser {
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
