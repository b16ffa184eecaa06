//! The Redis cache of latest prices, shared by every process.
//!
//! Entries expire after `PRICE_CACHE_TTL`. Hits and misses are counted in Redis (so
//! `GET /admin/cache/stats` covers all processes) and in `price_cache_requests_total{result}`.
//! Redis being down never fails a request: the cache then reads as a miss and writes are
//! skipped.

use std::time::Duration;

use redis::AsyncCommands;

use super::LatestPrice;
use crate::redis::Redis;

/// The latest-price cache.
#[derive(Debug, Clone)]
pub struct PriceCache {
    redis: Redis,
    ttl: Duration,
}

/// Counters of the cache across all API processes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Reads answered from the cache.
    pub hits: u64,
    /// Reads that found nothing.
    pub misses: u64,
    /// Prices cached now.
    pub keys: u64,
}

impl PriceCache {
    /// A cache in `redis` whose entries live for `ttl`.
    pub fn new(redis: Redis, ttl: Duration) -> Self {
        Self { redis, ttl }
    }

    fn key(&self, coin_id: &str, vs: &str) -> String {
        self.redis.key(&format!("price:{vs}:{coin_id}"))
    }

    fn stats_key(&self) -> String {
        self.redis.key("price-cache:stats")
    }

    /// The cached prices of `coins` (one round trip), counting each hit or miss.
    pub async fn get_many(&self, coins: &[String], vs: &str) -> Vec<LatestPrice> {
        if coins.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = coins.iter().map(|coin| self.key(coin, vs)).collect();
        let result = async {
            let mut conn = self.redis.conn().await?;
            let cached: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query_async(&mut conn).await?;
            let hits = cached.iter().filter(|entry| entry.is_some()).count();
            let mut counts = redis::pipe();
            counts
                .hincr(self.stats_key(), "hits", hits)
                .ignore()
                .hincr(self.stats_key(), "misses", cached.len() - hits)
                .ignore();
            let () = counts.query_async(&mut conn).await?;
            Ok::<_, redis::RedisError>(cached)
        }
        .await;
        let cached = match result {
            Ok(cached) => cached,
            Err(err) => {
                tracing::warn!(error = %err, "price cache unavailable; reading through");
                Vec::new()
            }
        };
        let prices: Vec<LatestPrice> = cached
            .into_iter()
            .flatten()
            .filter_map(|json| serde_json::from_str(&json).ok())
            .collect();
        metrics::counter!("price_cache_requests_total", "result" => "hit")
            .increment(prices.len() as u64);
        metrics::counter!("price_cache_requests_total", "result" => "miss")
            .increment((coins.len() - prices.len()) as u64);
        prices
    }

    /// Caches prices in one round trip (best effort).
    pub async fn put_many(&self, prices: &[LatestPrice]) {
        if prices.is_empty() {
            return;
        }
        let ttl = self.ttl.as_millis().max(1) as u64;
        let mut writes = redis::pipe();
        for price in prices {
            if let Ok(json) = serde_json::to_string(price) {
                writes
                    .pset_ex(self.key(&price.coin_id, &price.vs_currency), json, ttl)
                    .ignore();
            }
        }
        let result = async {
            let mut conn = self.redis.conn().await?;
            writes.query_async::<()>(&mut conn).await
        }
        .await;
        if let Err(err) = result {
            tracing::warn!(error = %err, "price cache write failed");
        }
    }

    /// Hit and miss counts and the number of cached prices.
    pub async fn stats(&self) -> Result<CacheStats, redis::RedisError> {
        let mut conn = self.redis.conn().await?;
        let (hits, misses): (Option<u64>, Option<u64>) = redis::cmd("HMGET")
            .arg(self.stats_key())
            .arg("hits")
            .arg("misses")
            .query_async(&mut conn)
            .await?;
        let keys = self.scan_keys().await?.len() as u64;
        Ok(CacheStats {
            hits: hits.unwrap_or(0),
            misses: misses.unwrap_or(0),
            keys,
        })
    }

    /// Empties the cache and resets its counters; returns how many prices were removed.
    pub async fn clear(&self) -> Result<u64, redis::RedisError> {
        let keys = self.scan_keys().await?;
        let mut conn = self.redis.conn().await?;
        let mut removed = 0;
        for chunk in keys.chunks(500) {
            removed += conn.del::<_, u64>(chunk).await?;
        }
        conn.del::<_, ()>(self.stats_key()).await?;
        Ok(removed)
    }

    /// Every cached price key (SCAN, so Redis is never blocked by a large keyspace).
    async fn scan_keys(&self) -> Result<Vec<String>, redis::RedisError> {
        let mut conn = self.redis.conn().await?;
        let pattern = self.redis.key("price:*");
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(500)
                .query_async(&mut conn)
                .await?;
            keys.extend(batch);
            if next == 0 {
                return Ok(keys);
            }
            cursor = next;
        }
    }
}
