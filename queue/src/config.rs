//! Settings of one queue.

use std::time::Duration;

/// How one queue behaves. Every duration is a trade-off between how fast the queue reacts and
/// how much it asks of Redis; the defaults suit jobs of seconds to minutes.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// The queue's name; part of every key.
    pub name: String,
    /// Prefix of every key, e.g. `coinpulse:`; lets deployments (and tests) share one Redis.
    pub key_prefix: String,
    /// How long a worker keeps its jobs without renewing its lease. A killed worker's jobs
    /// run again about this long after it died. The lease is renewed every third of it.
    pub lease: Duration,
    /// How often due delayed jobs are promoted, expired leases reaped and finished jobs past
    /// their time dropped.
    pub maintenance_interval: Duration,
    /// How long an idle worker blocks waiting for a job before it looks again; also bounds
    /// how long a stopping worker waits for a blocking move still in flight.
    pub block_timeout: Duration,
    /// Delay before each retry.
    pub backoff: Backoff,
    /// Attempts allowed for jobs pushed without their own limit.
    pub default_max_attempts: u32,
    /// How long a finished job's data stays in Redis.
    pub finished_ttl: Duration,
    /// How long a dead job's data stays in Redis (the dead index keeps at most `dead_cap`).
    pub dead_ttl: Duration,
    /// How many dead jobs the dead index keeps.
    pub dead_cap: u32,
    /// How long Redis may stay unreachable before a worker gives up and fails.
    pub redis_grace: Duration,
    /// Bounds one Redis round trip (connecting, or a non-blocking command).
    pub response_timeout: Duration,
}

impl QueueConfig {
    /// Defaults for a queue called `name` under `key_prefix`.
    pub fn new(name: impl Into<String>, key_prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            key_prefix: key_prefix.into(),
            lease: Duration::from_secs(5),
            maintenance_interval: Duration::from_millis(200),
            block_timeout: Duration::from_secs(1),
            backoff: Backoff::default(),
            default_max_attempts: 5,
            finished_ttl: Duration::from_secs(24 * 3600),
            dead_ttl: Duration::from_secs(7 * 24 * 3600),
            dead_cap: 10_000,
            redis_grace: Duration::from_secs(60),
            response_timeout: Duration::from_secs(2),
        }
    }

    /// The common beginning of this queue's keys. The name is a hash tag (`{name}`): on a
    /// Redis Cluster every key of one queue is in one slot, so each script runs on one node.
    pub(crate) fn base_key(&self) -> String {
        format!("{}queue:{{{}}}:", self.key_prefix, self.name)
    }
}

/// Exponential backoff with "equal" jitter (half fixed, half random), capped: the delay before retry `n` (after the
/// `n`-th failed attempt) is uniform in `[base * 2^(n-1) / 2, base * 2^(n-1)]`, at most `max`.
///
/// Half the window is kept as a floor so a retry never fires immediately, and the other half
/// is random so the jobs of one failing dependency do not come back in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The delay window after the first failed attempt.
    pub base: Duration,
    /// The largest delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// The upper bound of the delay after `failed_attempts` failures (≥ 1).
    pub fn ceiling(&self, failed_attempts: u32) -> Duration {
        let exponent = failed_attempts.saturating_sub(1).min(30);
        self.base.saturating_mul(1 << exponent).min(self.max)
    }

    /// A delay after `failed_attempts` failures, with jitter.
    pub fn delay(&self, failed_attempts: u32) -> Duration {
        let ceiling = self.ceiling(failed_attempts);
        let floor = ceiling / 2;
        let spread = ceiling.saturating_sub(floor).as_millis() as u64;
        floor + Duration::from_millis(rand::random_range(0..=spread))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_is_capped() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        assert_eq!(backoff.ceiling(1), Duration::from_millis(100));
        assert_eq!(backoff.ceiling(2), Duration::from_millis(200));
        assert_eq!(backoff.ceiling(4), Duration::from_millis(800));
        assert_eq!(backoff.ceiling(5), Duration::from_millis(1000));
        assert_eq!(backoff.ceiling(99), Duration::from_millis(1000));
        for attempt in 1..10 {
            let ceiling = backoff.ceiling(attempt);
            for _ in 0..50 {
                let delay = backoff.delay(attempt);
                assert!(
                    delay >= ceiling / 2 && delay <= ceiling,
                    "{delay:?} vs {ceiling:?}"
                );
            }
        }
    }
}
