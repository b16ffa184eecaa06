//! Which coins people asked about lately, so the scheduled refresh keeps them fresh.

use std::time::Duration;

use crate::redis::Redis;

const KEY: &str = "market:recent";
/// The set is trimmed to this many coins (the most recently asked).
const CAP: isize = 1000;

/// Notes that `coin_ids` were just asked about. Best effort: a failure only means a coin is
/// refreshed a little less eagerly.
pub async fn note(redis: &Redis, coin_ids: &[String]) {
    if coin_ids.is_empty() {
        return;
    }
    let now = chrono::Utc::now().timestamp();
    let result: Result<(), redis::RedisError> = async {
        let mut conn = redis.conn().await?;
        let key = redis.key(KEY);
        let mut pipe = redis::pipe();
        let members: Vec<(i64, &str)> = coin_ids.iter().map(|id| (now, id.as_str())).collect();
        pipe.zadd_multiple(&key, &members)
            .ignore()
            .cmd("ZREMRANGEBYRANK")
            .arg(&key)
            .arg(0)
            .arg(-CAP - 1)
            .ignore();
        pipe.query_async(&mut conn).await
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(error = %err, "recent coins not noted");
    }
}

/// Coins asked about within `window`.
pub async fn since(redis: &Redis, window: Duration) -> Result<Vec<String>, redis::RedisError> {
    let from = chrono::Utc::now().timestamp() - i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
    let mut conn = redis.conn().await?;
    redis::cmd("ZRANGEBYSCORE")
        .arg(redis.key(KEY))
        .arg(from)
        .arg("+inf")
        .query_async(&mut conn)
        .await
}
