//! The Postgres pool and the embedded migrations.

use std::str::FromStr;
use std::time::Duration;

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

/// Every migration under `migrations/`, embedded in the binary.
///
/// sqlx takes a Postgres advisory lock while migrating, so several processes starting at once
/// apply each migration exactly once.
pub static MIGRATOR: Migrator = sqlx::migrate!("../migrations");

/// Opens a pool lazily: the process starts even while Postgres is briefly unavailable, and
/// each request then fails fast after `acquire_timeout`.
pub fn connect_lazy(config: &DatabaseConfig) -> Result<PgPool, sqlx::Error> {
    // NOTICEs (e.g. "relation _sqlx_migrations already exists, skipping" on every start) are
    // chatter, not news: Postgres sends warnings and above only.
    let options = PgConnectOptions::from_str(config.url.expose())?
        .options([("client_min_messages", "warning")]);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .acquire_timeout(config.acquire_timeout)
        .connect_lazy_with(options))
}

/// Opens a pool and applies pending migrations; used by both binaries at start-up.
pub async fn connect_and_migrate(config: &DatabaseConfig) -> anyhow::Result<PgPool> {
    let pool = connect_lazy(config)?;
    MIGRATOR
        .run(&pool)
        .await
        .map_err(|err| anyhow::anyhow!("applying database migrations failed: {err}"))?;
    Ok(pool)
}

/// Checks that Postgres answers a trivial query within `timeout`.
pub async fn ping(pool: &PgPool, timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(pool)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(err)) => Err(err.to_string()),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}
