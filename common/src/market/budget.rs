//! The upstream request budget, shared by every process that calls the provider.
//!
//! Each process first waits on its own `governor` limiter (so one process alone never exceeds
//! the budget, even without Redis), then on a GCRA limiter kept in Redis that all processes
//! share, so scaling workers out never multiplies the calls per minute. If Redis is down the
//! process falls back to its local limiter and says so in the log: calls are delayed or
//! over-budget by at most a factor of the process count, never unbounded.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};

use crate::redis::Redis;

/// GCRA over a "theoretical arrival time" key. Returns 0 when a call may go now (and books
/// it), otherwise the milliseconds to wait. Uses the Redis server's clock, so processes with
/// skewed clocks still agree.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local allow_at = tat - tolerance
if now < allow_at then return allow_at - now end
local new_tat = tat + interval
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now + tolerance + 1000)
return 0
";

/// Calls per minute for one upstream API, across processes.
#[derive(Clone)]
pub struct Budget {
    local: Arc<DefaultDirectRateLimiter>,
    shared: Option<(Redis, String)>,
    interval_ms: u64,
    tolerance_ms: u64,
    script: Arc<redis::Script>,
}

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("interval_ms", &self.interval_ms)
            .field("shared", &self.shared.as_ref().map(|(_, key)| key))
            .finish_non_exhaustive()
    }
}

impl Budget {
    /// `per_minute` calls (at least 1) with a burst of `burst` (at least 1). With `redis`, the
    /// budget is shared under the key `{prefix}budget:{name}`.
    pub fn new(name: &str, per_minute: u32, burst: u32, redis: Option<Redis>) -> Self {
        let per_minute = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
        let burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        let interval_ms = 60_000 / u64::from(per_minute.get());
        Self {
            local: Arc::new(RateLimiter::direct(
                Quota::per_minute(per_minute).allow_burst(burst),
            )),
            shared: redis.map(|redis| {
                let key = redis.key(&format!("budget:{name}"));
                (redis, key)
            }),
            interval_ms,
            tolerance_ms: interval_ms * u64::from(burst.get() - 1),
            script: Arc::new(redis::Script::new(GCRA)),
        }
    }

    /// Waits until one call fits in the budget.
    pub async fn acquire(&self) {
        self.local.until_ready().await;
        let Some((redis, key)) = &self.shared else {
            return;
        };
        loop {
            let wait_ms = async {
                let mut conn = redis.conn().await?;
                self.script
                    .key(key)
                    .arg(self.interval_ms)
                    .arg(self.tolerance_ms)
                    .invoke_async::<u64>(&mut conn)
                    .await
            }
            .await;
            match wait_ms {
                Ok(0) => return,
                Ok(wait_ms) => tokio::time::sleep(Duration::from_millis(wait_ms)).await,
                Err(err) => {
                    tracing::warn!(error = %err, "shared upstream budget unavailable; using the local limit only");
                    return;
                }
            }
        }
    }
}
