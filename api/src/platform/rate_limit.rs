//! Per-caller rate limits (GCRA token buckets from `governor`).
//!
//! Two scopes: `auth` for `/api/v1/auth/*` (keyed by client IP, strict, against credential
//! stuffing) and for `PUT /api/v1/users/me/password` (keyed by the token's user, so a stolen
//! access token guesses the current password no faster than login allows); `general` for
//! everything else (keyed by user when the bearer token is valid, otherwise by client IP).
//! Health and metrics endpoints are exempt so probes never fail. IPv6 clients are keyed by
//! their network prefix (`/64` by default): one host usually holds a whole `/64`, and keying by
//! the full address would hand it 2^64 buckets.
//!
//! By default limits are per process: with N API replicas a caller gets up to N times the
//! rate, the usual trade for not putting Redis on every request's path. `RATE_LIMIT_BACKEND=redis`
//! makes them global: each check is one script (`GCRA`, the same algorithm governor uses) on
//! Redis's clock, and the headers are the same. If Redis does not answer within
//! [`REDIS_CHECK_TIMEOUT`], the request is checked against the local limiter instead (fail
//! open to the per-process limit, never to no limit, and never fail the request). The
//! per-account limit on failed password checks, which must hold across replicas, lives in
//! Redis either way (`auth::lockout`).
//!
//! Memory: a key is a fixed-size value (no allocation), and a bucket that has refilled is
//! forgotten every [`CLEANUP_INTERVAL`]. When more than `RATE_LIMIT_MAX_KEYS` callers are live
//! in a scope at a cleanup, that scope keys new anonymous callers by one shared overflow key
//! until the next cleanup finds it under the cap again, so key rotation cannot grow the table
//! without bound.

use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use poem::http::{HeaderMap, HeaderValue};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use common::redis::Redis;

use crate::auth::extract::{VerifiedBearer, bearer_token};
use crate::auth::tokens::TokenKeys;
use crate::config::{HttpConfig, RateLimitBackend, RateLimitConfig};
use crate::error::ApiError;
use crate::platform::request_context::ExtraHeaders;

/// How often buckets that have refilled are forgotten and the key cap is checked.
pub const CLEANUP_INTERVAL: Duration = Duration::from_secs(5);

/// The longest a request waits for the shared (Redis) bucket before the local one decides.
pub const REDIS_CHECK_TIMEOUT: Duration = Duration::from_millis(250);

/// GCRA on Redis's clock. KEYS[1]: the bucket (its value is the theoretical arrival time, ms).
/// ARGV: emission interval (ms per token), burst. Returns {allowed (0|1), remaining tokens,
/// ms until the bucket is full again (allowed) or until a token is back (refused)}.
const GCRA: &str = r#"
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local capacity = interval * burst
if new_tat - now > capacity then
  return {0, 0, new_tat - now - capacity}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((capacity - (new_tat - now)) / interval), new_tat - now}
"#;

impl CallerKey {
    /// The key's part of a Redis bucket name.
    fn redis_suffix(&self) -> String {
        match self {
            CallerKey::Ip(ip) => format!("ip:{ip}"),
            CallerKey::User(id) => format!("user:{id}"),
            CallerKey::Unknown => "unknown".to_owned(),
            CallerKey::Overflow => "overflow".to_owned(),
        }
    }
}

/// The shared buckets of `RATE_LIMIT_BACKEND=redis`.
#[derive(Clone)]
struct SharedBuckets {
    redis: Redis,
    script: Arc<redis::Script>,
    /// Whether the last check fell back to the local limiter: an outage logs once, not once
    /// per request.
    failing: Arc<AtomicBool>,
}

/// Who a bucket belongs to. Fixed-size, so a key costs no allocation of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallerKey {
    /// A client address (IPv6: its network prefix).
    Ip(IpAddr),
    /// An authenticated user.
    User(uuid::Uuid),
    /// A request whose address is unknown.
    Unknown,
    /// Every new anonymous caller while the scope holds more keys than its cap.
    Overflow,
}

/// The size of a key, for the memory figures in docs/BENCHMARKS.md.
pub const CALLER_KEY_BYTES: usize = std::mem::size_of::<CallerKey>();

/// A keyed token-bucket limiter over [`CallerKey`]s.
pub type KeyedLimiter = RateLimiter<
    CallerKey,
    DefaultKeyedStateStore<CallerKey>,
    DefaultClock,
    StateInformationMiddleware,
>;

/// A limiter of `per_minute` sustained requests and `burst` at once per key (each at least 1).
pub fn keyed_limiter(per_minute: u32, burst: u32) -> KeyedLimiter {
    let quota = Quota::per_minute(NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN))
        .allow_burst(NonZeroU32::new(burst.max(1)).unwrap_or(NonZeroU32::MIN));
    RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>()
}

/// One scope's limiter and the figures it advertises in headers.
struct Scope {
    name: &'static str,
    limiter: KeyedLimiter,
    per_minute: u32,
    burst: u32,
    max_keys: usize,
    /// Set by the cleanup when the table is over `max_keys`.
    saturated: AtomicBool,
    /// With `RATE_LIMIT_BACKEND=redis`: where the buckets really are (the local limiter is
    /// then only the fallback while Redis does not answer).
    shared: Option<SharedBuckets>,
}

impl Scope {
    fn new(name: &'static str, per_minute: u32, burst: u32, max_keys: usize) -> Self {
        // Exported at 0 from the start, so dashboards and alert rules see the series.
        metrics::counter!("rate_limited_total", "scope" => name).increment(0);
        Self {
            name,
            limiter: keyed_limiter(per_minute, burst),
            per_minute: per_minute.max(1),
            burst: burst.max(1),
            max_keys,
            saturated: AtomicBool::new(false),
            shared: None,
        }
    }

    fn shared(mut self, shared: Option<SharedBuckets>) -> Self {
        self.shared = shared;
        self
    }

    /// Forgets refilled buckets, then decides whether new anonymous callers must share one key.
    fn clean(&self) {
        self.limiter.retain_recent();
        self.limiter.shrink_to_fit();
        let saturated = self.limiter.len() > self.max_keys;
        if saturated && !self.saturated.load(Ordering::Relaxed) {
            tracing::warn!(
                scope = self.name,
                keys = self.limiter.len(),
                max_keys = self.max_keys,
                "rate-limit table over its cap: new anonymous callers share one bucket"
            );
        }
        self.saturated.store(saturated, Ordering::Relaxed);
    }

    /// `key`, or the shared overflow key for an anonymous caller while the table is full.
    fn admit(&self, key: CallerKey) -> CallerKey {
        match key {
            CallerKey::Ip(_) | CallerKey::Unknown if self.saturated.load(Ordering::Relaxed) => {
                CallerKey::Overflow
            }
            key => key,
        }
    }

    /// Seconds for one token to come back.
    fn replenish_secs(&self) -> f64 {
        60.0 / f64::from(self.per_minute)
    }

    /// Takes one token for `key` from the shared bucket when there is one (the local one while
    /// Redis does not answer): the headers to send, and when refused, the seconds to wait.
    async fn check(&self, key: CallerKey) -> (HeaderMap, Option<u64>) {
        if let Some(shared) = &self.shared {
            let why =
                match tokio::time::timeout(REDIS_CHECK_TIMEOUT, self.check_shared(shared, key))
                    .await
                {
                    Ok(Ok(decision)) => {
                        if shared.failing.swap(false, Ordering::Relaxed) {
                            tracing::info!("shared rate limits answer again");
                        }
                        return decision;
                    }
                    Ok(Err(err)) => err.to_string(),
                    Err(_) => format!("no answer within {} ms", REDIS_CHECK_TIMEOUT.as_millis()),
                };
            if !shared.failing.swap(true, Ordering::Relaxed) {
                tracing::warn!(reason = %why, "shared rate limits unavailable; each process limits by itself until Redis answers");
            }
        }
        self.check_local(key)
    }

    async fn check_shared(
        &self,
        shared: &SharedBuckets,
        key: CallerKey,
    ) -> Result<(HeaderMap, Option<u64>), redis::RedisError> {
        let interval_ms = (60_000 / u64::from(self.per_minute)).max(1);
        let bucket = shared
            .redis
            .key(&format!("ratelimit:{}:{}", self.name, key.redis_suffix()));
        let mut conn = shared.redis.conn().await?;
        let (allowed, remaining, wait_ms): (u8, u32, u64) = shared
            .script
            .key(bucket)
            .arg(interval_ms)
            .arg(self.burst)
            .invoke_async(&mut conn)
            .await?;
        let secs = wait_ms.div_ceil(1000);
        if allowed == 1 {
            Ok((self.headers(remaining.min(self.burst), secs), None))
        } else {
            metrics::counter!("rate_limited_total", "scope" => self.name).increment(1);
            Ok((self.headers(0, secs.max(1)), Some(secs.max(1))))
        }
    }

    fn check_local(&self, key: CallerKey) -> (HeaderMap, Option<u64>) {
        match self.limiter.check_key(&self.admit(key)) {
            Ok(snapshot) => {
                let remaining = snapshot.remaining_burst_capacity();
                let refill =
                    f64::from(self.burst - remaining.min(self.burst)) * self.replenish_secs();
                (self.headers(remaining, refill.ceil() as u64), None)
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(DefaultClock::default().now());
                let retry_after_secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                metrics::counter!("rate_limited_total", "scope" => self.name).increment(1);
                (self.headers(0, retry_after_secs), Some(retry_after_secs))
            }
        }
    }

    fn headers(&self, remaining: u32, reset_secs: u64) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(3);
        headers.insert("x-ratelimit-limit", HeaderValue::from(self.per_minute));
        headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        headers.insert("x-ratelimit-reset", HeaderValue::from(reset_secs));
        headers
    }
}

/// The rate-limiting middleware.
#[derive(Clone)]
pub struct RateLimit {
    general: Arc<Scope>,
    auth: Arc<Scope>,
    tokens: Arc<TokenKeys>,
    trusted_proxy_hops: usize,
    ipv6_prefix: u8,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl RateLimit {
    /// Builds both scopes (over Redis when `limits.backend` says so) and starts the task that
    /// forgets idle callers.
    pub fn new(
        limits: &RateLimitConfig,
        http: &HttpConfig,
        tokens: Arc<TokenKeys>,
        redis: Redis,
    ) -> Self {
        let shared = (limits.backend == RateLimitBackend::Redis).then(|| SharedBuckets {
            redis,
            script: Arc::new(redis::Script::new(GCRA)),
            failing: Arc::default(),
        });
        let general = Arc::new(
            Scope::new("general", limits.per_minute, limits.burst, limits.max_keys)
                .shared(shared.clone()),
        );
        let auth = Arc::new(
            Scope::new(
                "auth",
                limits.auth_per_minute,
                limits.auth_burst,
                limits.max_keys,
            )
            .shared(shared),
        );
        spawn_cleanup(Arc::downgrade(&general), Arc::downgrade(&auth));
        Self {
            general,
            auth,
            tokens,
            trusted_proxy_hops: http.trusted_proxy_hops,
            ipv6_prefix: limits.ipv6_prefix,
        }
    }
}

/// Drops the state of callers whose buckets are full again, so memory stays bounded by recent
/// callers. Ends when the limiters are dropped.
fn spawn_cleanup(general: Weak<Scope>, auth: Weak<Scope>) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(CLEANUP_INTERVAL);
        tick.tick().await;
        loop {
            tick.tick().await;
            let (Some(general), Some(auth)) = (general.upgrade(), auth.upgrade()) else {
                return;
            };
            general.clean();
            auth.clean();
        }
    });
}

/// The client's address: the peer, or with `hops` trusted proxies the entry the outermost of
/// them appended to `X-Forwarded-For` (entries further left are client-controlled and could be
/// forged). With fewer entries than hops, or an entry there that is not an address, the header
/// did not come through the proxies as configured and the peer address is used.
fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, hops: usize) -> Option<IpAddr> {
    if hops > 0 {
        let entries: Vec<&str> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let forwarded = entries
            .len()
            .checked_sub(hops)
            .and_then(|i| entries.get(i))
            .and_then(|entry| entry.parse::<IpAddr>().ok());
        if let Some(ip) = forwarded {
            return Some(ip);
        }
    }
    peer
}

/// The bucket key of an address: IPv4 as is, IPv6 (not IPv4-mapped) cut to `ipv6_prefix` bits.
fn ip_key(ip: IpAddr, ipv6_prefix: u8) -> CallerKey {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u32::from(ipv6_prefix.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            CallerKey::Ip(IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)))
        }
        v4 => CallerKey::Ip(v4),
    }
}

/// The one operation outside `/auth` that checks a password and so counts in the auth scope.
const PASSWORD_CHANGE_PATH: &str = "/api/v1/users/me/password";

fn is_exempt(path: &str) -> bool {
    path == "/metrics" || path == "/health" || path.starts_with("/health/")
}

impl<E: Endpoint> Middleware<E> for RateLimit {
    type Output = RateLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RateLimitEndpoint {
            inner: ep,
            limits: self.clone(),
        }
    }
}

/// The endpoint produced by [`RateLimit`].
pub struct RateLimitEndpoint<E> {
    inner: E,
    limits: RateLimit,
}

impl<E> std::fmt::Debug for RateLimitEndpoint<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimitEndpoint").finish_non_exhaustive()
    }
}

impl<E: Endpoint> Endpoint for RateLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let path = req.uri().path();
        if is_exempt(path) {
            return self.inner.call(req).await.map(IntoResponse::into_response);
        }
        let caller_ip = |req: &Request| {
            let peer = req.remote_addr().as_socket_addr().map(|addr| addr.ip());
            client_ip(req.headers(), peer, self.limits.trusted_proxy_hops)
                .map_or(CallerKey::Unknown, |ip| ip_key(ip, self.limits.ipv6_prefix))
        };
        let verified = bearer_token(&req).map(|token| self.limits.tokens.verify(token));
        let user_or_ip = |req: &Request| match &verified {
            Some(Ok(claims)) => CallerKey::User(claims.sub),
            _ => caller_ip(req),
        };
        let (scope, key) = if path.starts_with("/api/v1/auth/") {
            (&self.limits.auth, caller_ip(&req))
        } else if path == PASSWORD_CHANGE_PATH {
            (&self.limits.auth, user_or_ip(&req))
        } else {
            (&self.limits.general, user_or_ip(&req))
        };
        if let Some(result) = verified {
            req.set_data(VerifiedBearer(result));
        }
        let (headers, refused) = scope.check(key).await;
        if let Some(retry_after_secs) = refused {
            let mut error = poem::Error::from(ApiError::RateLimited { retry_after_secs });
            error.set_data(ExtraHeaders(headers));
            return Err(error);
        }
        match Box::pin(self.inner.call(req)).await {
            Ok(output) => {
                let mut response = output.into_response();
                response.headers_mut().extend(headers);
                Ok(response)
            }
            Err(mut error) => {
                error.set_data(ExtraHeaders(headers));
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(text: &str) -> IpAddr {
        text.parse().expect("an address")
    }

    #[test]
    fn ipv6_addresses_of_one_prefix_share_a_key() {
        let a = ip_key(v6("2001:db8:1:2:aaaa::1"), 64);
        let b = ip_key(v6("2001:db8:1:2:ffff:ffff:ffff:ffff"), 64);
        let other = ip_key(v6("2001:db8:1:3::1"), 64);
        assert_eq!(a, b);
        assert_ne!(a, other);
        assert_eq!(a, CallerKey::Ip(v6("2001:db8:1:2::")));
        assert_eq!(
            ip_key(v6("2001:db8::1"), 128),
            CallerKey::Ip(v6("2001:db8::1"))
        );
        assert_eq!(ip_key(v6("2001:db8::1"), 0), CallerKey::Ip(v6("::")));
    }

    #[test]
    fn ipv4_and_mapped_ipv4_addresses_are_keyed_whole() {
        let plain = ip_key(v6("203.0.113.7"), 64);
        assert_eq!(plain, CallerKey::Ip(v6("203.0.113.7")));
        assert_eq!(ip_key(v6("::ffff:203.0.113.7"), 64), plain);
        assert_ne!(ip_key(v6("203.0.113.8"), 64), plain);
    }

    fn forwarded(values: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for value in values {
            headers.append("x-forwarded-for", HeaderValue::from_static(value));
        }
        headers
    }

    #[test]
    fn forwarded_addresses_are_trusted_only_as_far_as_the_configured_hops() {
        let peer = Some(v6("192.0.2.1"));
        let two = forwarded(&["198.51.100.1, 203.0.113.9"]);
        assert_eq!(client_ip(&two, peer, 0), peer);
        assert_eq!(client_ip(&two, peer, 1), Some(v6("203.0.113.9")));
        assert_eq!(client_ip(&two, peer, 2), Some(v6("198.51.100.1")));
        // Fewer entries than hops: the header did not pass every proxy.
        assert_eq!(client_ip(&two, peer, 3), peer);
        assert_eq!(client_ip(&HeaderMap::new(), peer, 1), peer);
        // Several headers read as one list, in order.
        let split = forwarded(&["198.51.100.1", "203.0.113.9"]);
        assert_eq!(client_ip(&split, peer, 1), Some(v6("203.0.113.9")));
        // An entry that is not an address at the trusted position never shifts the choice to a
        // client-written one.
        let garbled = forwarded(&["198.51.100.1, unknown"]);
        assert_eq!(client_ip(&garbled, peer, 1), peer);
    }

    #[tokio::test]
    async fn without_redis_the_shared_backend_falls_back_to_the_local_limit() {
        let unreachable = Redis::new(&common::config::RedisConfig {
            // Nothing listens on port 1.
            url: "redis://127.0.0.1:1".into(),
            key_prefix: "test:".into(),
            timeout: Duration::from_millis(100),
            queue_cluster_nodes: Vec::new(),
        })
        .expect("a valid url");
        let scope = Scope::new("test", 60, 1, 10).shared(Some(SharedBuckets {
            redis: unreachable,
            script: Arc::new(redis::Script::new(GCRA)),
            failing: Arc::default(),
        }));
        let caller = CallerKey::Ip(IpAddr::from([10, 0, 0, 1]));
        let (headers, refused) = scope.check(caller).await;
        assert!(refused.is_none(), "Redis down never fails the request");
        assert_eq!(headers["x-ratelimit-remaining"], "0");
        let (_, refused) = scope.check(caller).await;
        assert!(refused.is_some(), "the local bucket still limits");
    }

    #[test]
    fn a_full_table_sends_new_anonymous_callers_to_one_bucket() {
        let scope = Scope::new("test", 60, 1, 2);
        for last in 1..=3u8 {
            let (_, refused) = scope.check_local(CallerKey::Ip(IpAddr::from([10, 0, 0, last])));
            assert!(refused.is_none());
        }
        scope.clean();
        // Three buckets just used, none refilled: over the cap of two.
        assert!(scope.saturated.load(Ordering::Relaxed));
        let stranger = CallerKey::Ip(IpAddr::from([10, 0, 0, 99]));
        assert_eq!(scope.admit(stranger), CallerKey::Overflow);
        let user = CallerKey::User(uuid::Uuid::nil());
        assert_eq!(scope.admit(user), user, "users keep their own bucket");
        let (_, first) = scope.check_local(stranger);
        let (_, second) = scope.check_local(CallerKey::Ip(IpAddr::from([10, 0, 0, 100])));
        assert!(first.is_none());
        assert!(second.is_some(), "the overflow bucket is shared");
    }
}
