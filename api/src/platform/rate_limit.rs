//! Per-caller rate limits (GCRA token buckets from `governor`).
//!
//! Two scopes: `auth` for `/api/v1/auth/*` (keyed by client IP, strict, against credential
//! stuffing) and `general` for everything else (keyed by user when the bearer token is valid,
//! otherwise by client IP). Health and metrics endpoints are exempt so probes never fail.
//! Limits are per process: with N API replicas a caller gets up to N times the rate, the usual
//! trade for not putting Redis on every request's path.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use poem::http::{HeaderMap, HeaderValue};
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};

use crate::auth::extract::{VerifiedBearer, bearer_token};
use crate::auth::tokens::TokenKeys;
use crate::config::{HttpConfig, RateLimitConfig};
use crate::error::ApiError;
use crate::platform::request_context::ExtraHeaders;

type KeyedLimiter =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// One scope's limiter and the figures it advertises in headers.
struct Scope {
    name: &'static str,
    limiter: KeyedLimiter,
    per_minute: u32,
    burst: u32,
}

impl Scope {
    fn new(name: &'static str, per_minute: u32, burst: u32) -> Self {
        let per_minute = per_minute.max(1);
        let burst = burst.max(1);
        let quota = Quota::per_minute(NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN));
        Self {
            name,
            limiter: RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>(),
            per_minute,
            burst,
        }
    }

    /// Seconds for one token to come back.
    fn replenish_secs(&self) -> f64 {
        60.0 / f64::from(self.per_minute)
    }

    /// Takes one token for `key`: the headers to send, and when refused, the seconds to wait.
    fn check(&self, key: &String) -> (HeaderMap, Option<u64>) {
        match self.limiter.check_key(key) {
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
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit").finish_non_exhaustive()
    }
}

impl RateLimit {
    /// Builds both scopes and starts the task that forgets idle callers.
    pub fn new(limits: &RateLimitConfig, http: &HttpConfig, tokens: Arc<TokenKeys>) -> Self {
        let general = Arc::new(Scope::new("general", limits.per_minute, limits.burst));
        let auth = Arc::new(Scope::new(
            "auth",
            limits.auth_per_minute,
            limits.auth_burst,
        ));
        spawn_cleanup(Arc::downgrade(&general), Arc::downgrade(&auth));
        Self {
            general,
            auth,
            tokens,
            trusted_proxy_hops: http.trusted_proxy_hops,
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
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        tick.tick().await;
        loop {
            tick.tick().await;
            let (Some(general), Some(auth)) = (general.upgrade(), auth.upgrade()) else {
                return;
            };
            for scope in [general, auth] {
                scope.limiter.retain_recent();
                scope.limiter.shrink_to_fit();
            }
        }
    });
}

/// The client's address: the peer, or with `hops` trusted proxies the entry they appended to
/// `X-Forwarded-For` (entries further left are client-controlled and could be forged).
fn client_ip(req: &Request, hops: usize) -> Option<IpAddr> {
    if hops > 0 {
        let forwarded: Vec<IpAddr> = req
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(|entry| entry.trim().parse().ok())
            .collect();
        if let Some(ip) = forwarded
            .len()
            .checked_sub(hops)
            .and_then(|i| forwarded.get(i))
        {
            return Some(*ip);
        }
    }
    req.remote_addr().as_socket_addr().map(|addr| addr.ip())
}

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
        // The IP is only formatted when it is the key: most API traffic carries a token.
        let ip_key = |req: &Request| {
            client_ip(req, self.limits.trusted_proxy_hops)
                .map_or_else(|| "ip:unknown".to_owned(), |ip| format!("ip:{ip}"))
        };
        let verified = bearer_token(&req).map(|token| self.limits.tokens.verify(token));
        let (scope, key) = if path.starts_with("/api/v1/auth/") {
            (&self.limits.auth, ip_key(&req))
        } else {
            match &verified {
                Some(Ok(claims)) => (&self.limits.general, format!("user:{}", claims.sub)),
                _ => (&self.limits.general, ip_key(&req)),
            }
        };
        if let Some(result) = verified {
            req.set_data(VerifiedBearer(result));
        }
        let (headers, refused) = scope.check(&key);
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
