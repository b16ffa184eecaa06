//! The Redis client shared by both binaries.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::OnceCell;

use crate::config::RedisConfig;

/// A lazily connected, auto-reconnecting Redis connection plus this deployment's key prefix.
///
/// The first connection is made on first use rather than at start-up, so a process starts
/// (and reports itself not ready) while Redis is down instead of crashing. Cloning is cheap
/// and shares the connection.
#[derive(Clone)]
pub struct Redis {
    client: redis::Client,
    manager: std::sync::Arc<OnceCell<ConnectionManager>>,
    key_prefix: String,
    timeout: Duration,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Redis {
    /// Validates the URL; connects on first use.
    pub fn new(config: &RedisConfig) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(config.url.expose().as_str())?,
            manager: Default::default(),
            key_prefix: config.key_prefix.clone(),
            timeout: config.timeout,
        })
    }

    /// A connection handle; connects (bounded by the configured timeout) if not yet connected.
    pub async fn conn(&self) -> Result<ConnectionManager, redis::RedisError> {
        let manager = self
            .manager
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(self.timeout))
                    .set_response_timeout(Some(self.timeout))
                    .set_number_of_retries(2);
                ConnectionManager::new_with_config(self.client.clone(), config).await
            })
            .await?;
        Ok(manager.clone())
    }

    /// A new dedicated connection for subscribing to channels (pub/sub needs its own).
    pub async fn pubsub(&self) -> Result<redis::aio::PubSub, redis::RedisError> {
        tokio::time::timeout(self.timeout, self.client.get_async_pubsub())
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "pub/sub connection timed out"))
            })?
    }

    /// Logs a warning when the server may evict keys to make room (its `maxmemory-policy` is
    /// not `noeviction`): queue keys could then vanish under memory pressure. Says nothing when
    /// Redis is unreachable or hides its configuration (some managed services do). Takes the
    /// handle by value, so it can be spawned as it is.
    pub async fn warn_if_evicting(self) {
        let policy = async {
            let mut conn = self.conn().await?;
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("maxmemory-policy")
                .query_async::<Vec<String>>(&mut conn)
                .await
        };
        match policy.await.ok().and_then(|pair| pair.into_iter().nth(1)) {
            Some(policy) if policy != "noeviction" => tracing::warn!(
                %policy,
                "Redis may evict keys under memory pressure, queue keys included: set \
                 maxmemory-policy noeviction (deployments/redis.conf)"
            ),
            _ => {}
        }
    }

    /// The full key for `suffix`, with this deployment's prefix.
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.key_prefix)
    }

    /// The configured key prefix.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// Checks that Redis answers `PING` within `timeout`.
    pub async fn ping(&self, timeout: Duration) -> Result<(), String> {
        let attempt = async {
            let mut conn = self.conn().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
        }
    }
}
