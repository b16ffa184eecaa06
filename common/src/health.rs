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

/// How often [`watch_dependencies`] pings Postgres and Redis.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// Runs forever: every [`WATCH_INTERVAL`], pings Postgres and Redis and exports what this
/// process sees of them: `dependency_up{dependency}` (1 answered, 0 not) and
/// `dependency_ping_seconds{dependency}` (the round trip; the timeout when it failed). Logs
/// only changes, so an outage is one warning and one recovery line.
pub async fn watch_dependencies(db: PgPool, redis: Redis) {
    let mut ticks = tokio::time::interval(WATCH_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut was_up = [true, true];
    loop {
        ticks.tick().await;
        let timed =
            |name: &'static str, started: std::time::Instant, result: Result<(), String>| {
                (name, started.elapsed(), result)
            };
        let (postgres, redis_result) = tokio::join!(
            async {
                let started = std::time::Instant::now();
                timed(
                    "postgres",
                    started,
                    crate::db::ping(&db, CHECK_TIMEOUT).await,
                )
            },
            async {
                let started = std::time::Instant::now();
                timed("redis", started, redis.ping(CHECK_TIMEOUT).await)
            }
        );
        for (slot, (name, took, result)) in [postgres, redis_result].into_iter().enumerate() {
            let up = result.is_ok();
            metrics::gauge!("dependency_up", "dependency" => name).set(if up { 1.0 } else { 0.0 });
            metrics::gauge!("dependency_ping_seconds", "dependency" => name)
                .set(took.as_secs_f64());
            match (was_up[slot], result) {
                (true, Err(reason)) => tracing::warn!(%reason, "{name} stopped answering"),
                (false, Ok(())) => tracing::info!("{name} answers again"),
                _ => {}
            }
            was_up[slot] = up;
        }
    }
}
