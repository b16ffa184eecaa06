//! Events the worker publishes on Redis pub/sub for the API processes to fan out.
//!
//! Channels: `prices` (price ticks) and `user:{user_id}` (job status changes, notifications),
//! both under the deployment's key prefix. Payload: JSON `{type, id, at, data}`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::redis::Redis;

/// The channel of price ticks.
pub const PRICES_CHANNEL: &str = "prices";

/// The channel of one user's events.
pub fn user_channel(user_id: Uuid) -> String {
    format!("user:{user_id}")
}

/// One event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// What happened, e.g. `prices` or `job`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Unique id (UUIDv7), so receivers can drop duplicates.
    pub id: Uuid,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// The details.
    pub data: Value,
}

impl Event {
    /// A new event of `kind` happening now.
    pub fn new(kind: impl Into<String>, data: Value) -> Self {
        Self {
            kind: kind.into(),
            id: Uuid::now_v7(),
            at: Utc::now(),
            data,
        }
    }
}

/// Publishes `event` on `channel` (prefixed); returns how many subscribers got it. Events
/// are notifications, not records: a failure is the caller's to log, never to retry a job for.
pub async fn publish(
    redis: &Redis,
    channel: &str,
    event: &Event,
) -> Result<usize, redis::RedisError> {
    let payload = serde_json::to_string(event).map_err(|err| {
        redis::RedisError::from((redis::ErrorKind::Client, "event encoding", err.to_string()))
    })?;
    let mut conn = redis.conn().await?;
    redis::cmd("PUBLISH")
        .arg(redis.key(channel))
        .arg(payload)
        .query_async(&mut conn)
        .await
}
