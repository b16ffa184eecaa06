//! The readiness check both binaries serve at `/health/ready`.

use std::time::Duration;

use sqlx::PgPool;

use crate::redis::Redis;

/// How long readiness waits for each dependency.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// The state of each dependency; a failure reason is logged, never shown to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    /// Postgres answered.
    pub postgres: bool,
    /// Redis answered.
    pub redis: bool,
}

impl Readiness {
    /// Checks Postgres and Redis concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn check(db: &PgPool, redis: &Redis) -> Self {
        let (postgres, redis) = tokio::join!(
            crate::db::ping(db, CHECK_TIMEOUT),
            redis.ping(CHECK_TIMEOUT)
        );
        for (name, result) in [("postgres", &postgres), ("redis", &redis)] {
            if let Err(reason) = result {
                tracing::warn!(%reason, "readiness: {name} check failed");
            }
        }
        Self {
            postgres: postgres.is_ok(),
            redis: redis.is_ok(),
        }
    }

    /// Whether every dependency answered.
    pub fn is_ready(&self) -> bool {
        self.postgres && self.redis
    }

    /// The names of the dependencies that did not answer.
    pub fn failed(&self) -> Vec<&'static str> {
        [("postgres", self.postgres), ("redis", self.redis)]
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(name, _)| name)
            .collect()
    }
}

/// `ok` or `unavailable`, as the health endpoints report a dependency.
pub fn word(ok: bool) -> &'static str {
    if ok { "ok" } else { "unavailable" }
}
