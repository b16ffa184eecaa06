//! The api binary's configuration, read once in `main` and passed down.

use std::net::SocketAddr;
use std::time::Duration;

use common::config::{CommonConfig, ConfigProblem, parse_duration};
use common::secret::Secret;

/// Signing key used when `JWT_SECRET` is unset outside production. Public, so never safe.
const DEV_JWT_SECRET: &str = "coinpulse-development-only-jwt-secret-change-me";

/// Marks the example secrets shipped in `deployments/` (e.g. `CHANGE-ME-to-at-least-…`). A
/// secret containing it (any case) was copied from an example and is public.
const PLACEHOLDER_MARK: &str = "change-me";

/// Everything the API needs to start.
#[derive(Debug, Clone, clap::Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the HTTP server listens on.
    #[arg(long = "api-addr", env = "API_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    #[command(flatten)]
    pub auth: AuthConfig,

    #[command(flatten)]
    pub http: HttpConfig,

    #[command(flatten)]
    pub rate_limit: RateLimitConfig,

    #[command(flatten)]
    pub market: common::market::MarketConfig,

    /// Most price alerts one user may have active at once.
    #[arg(
        long = "alerts-max-active-per-user",
        env = "ALERTS_MAX_ACTIVE_PER_USER",
        default_value_t = 100
    )]
    pub alerts_max_active_per_user: u32,

    /// How often expired idempotency keys and long-expired refresh tokens are deleted.
    #[arg(long = "housekeeping-interval", env = "HOUSEKEEPING_INTERVAL", default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub housekeeping_interval: Duration,

    /// How long finished jobs (succeeded, cancelled, dead) stay readable before housekeeping
    /// deletes them.
    #[arg(long = "job-retention", env = "JOB_RETENTION", default_value = "30d", value_parser = parse_duration, value_name = "DURATION")]
    pub job_retention: Duration,

    #[command(flatten)]
    pub streams: StreamsConfig,
}

/// Where rate-limit buckets live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RateLimitBackend {
    /// In this process's memory.
    Local,
    /// In Redis, shared by every API process.
    Redis,
}

/// Live streams (SSE and WebSocket).
#[derive(Debug, Clone, clap::Args)]
pub struct StreamsConfig {
    /// Idle time after which a stream sends a keep-alive (an SSE comment, a WebSocket ping).
    #[arg(long = "stream-keepalive", env = "STREAM_KEEPALIVE", default_value = "15s", value_parser = parse_duration, value_name = "DURATION")]
    pub keep_alive: Duration,

    /// Longest life of one stream; it then ends with `closed` (reason `expired`) and the client
    /// reconnects, which also spreads clients over new API processes. A stream also ends when
    /// the token that opened it expires.
    #[arg(long = "stream-max-duration", env = "STREAM_MAX_DURATION", default_value = "1h", value_parser = parse_duration, value_name = "DURATION")]
    pub max_duration: Duration,

    /// Messages a client may fall behind before it is dropped as too slow (its whole buffer).
    #[arg(
        long = "stream-client-buffer",
        env = "STREAM_CLIENT_BUFFER",
        default_value_t = 256,
        value_parser = clap::value_parser!(u32).range(2..=65_536)
    )]
    pub client_buffer: u32,

    /// Streams (SSE and WebSocket together) one user may hold open on one API process.
    #[arg(
        long = "stream-max-per-user",
        env = "STREAM_MAX_PER_USER",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub max_per_user: u32,

    /// Messages a WebSocket client may send per second (bursts of twice as many).
    #[arg(
        long = "ws-messages-per-second",
        env = "WS_MESSAGES_PER_SECOND",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub ws_messages_per_second: u32,

    /// How long a WebSocket ticket (`POST /stream/ws-ticket`) may wait to be used.
    #[arg(long = "ws-ticket-ttl", env = "WS_TICKET_TTL", default_value = "30s", value_parser = parse_duration, value_name = "DURATION")]
    pub ws_ticket_ttl: Duration,
}

/// Token and password settings.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthConfig {
    /// HMAC-SHA256 key for access tokens; required (≥ 32 bytes) in production.
    #[arg(long = "jwt-secret", env = "JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<Secret<String>>,

    /// `iss` claim written into and required of access tokens.
    #[arg(long = "jwt-issuer", env = "JWT_ISSUER", default_value = "coinpulse")]
    pub jwt_issuer: String,

    /// `aud` claim written into and required of access tokens.
    #[arg(
        long = "jwt-audience",
        env = "JWT_AUDIENCE",
        default_value = "coinpulse-api"
    )]
    pub jwt_audience: String,

    /// Lifetime of access tokens.
    #[arg(long = "jwt-access-ttl", env = "JWT_ACCESS_TTL", default_value = "15m", value_parser = parse_duration)]
    pub access_ttl: Duration,

    /// Lifetime of refresh tokens.
    #[arg(long = "jwt-refresh-ttl", env = "JWT_REFRESH_TTL", default_value = "7d", value_parser = parse_duration)]
    pub refresh_ttl: Duration,

    /// Argon2id memory cost in KiB (OWASP: 19456 = 19 MiB with 2 iterations).
    #[arg(
        long = "password-hash-memory-kib",
        env = "PASSWORD_HASH_MEMORY_KIB",
        default_value_t = 19_456
    )]
    pub password_memory_kib: u32,

    /// Argon2id iterations.
    #[arg(
        long = "password-hash-iterations",
        env = "PASSWORD_HASH_ITERATIONS",
        default_value_t = 2
    )]
    pub password_iterations: u32,

    /// How long a user record may be served from this process's cache on authenticated reads
    /// (0 turns the cache off). Writes through this process invalidate it at once; other API
    /// processes see a change within this bound.
    #[arg(long = "user-cache-ttl", env = "USER_CACHE_TTL", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub user_cache_ttl: Duration,

    /// How many password hashes may run at once; the rest queue, so a login flood cannot
    /// starve other requests of CPU. Defaults to the number of CPUs.
    #[arg(long = "password-hash-concurrency", env = "PASSWORD_HASH_CONCURRENCY")]
    pub password_concurrency: Option<usize>,
}

impl AuthConfig {
    /// The signing key: the configured one, or the development default.
    pub fn signing_secret(&self) -> &str {
        self.jwt_secret
            .as_ref()
            .map_or(DEV_JWT_SECRET, |secret| secret.expose().as_str())
    }
}

/// HTTP behaviour.
#[derive(Debug, Clone, clap::Args)]
pub struct HttpConfig {
    /// Allowed CORS origins, comma-separated, or `*` for any.
    #[arg(long = "cors-origins", env = "CORS_ORIGINS", default_value = "*")]
    pub cors_origins: String,

    /// Largest accepted request body in bytes.
    #[arg(
        long = "max-body-bytes",
        env = "MAX_BODY_BYTES",
        default_value_t = 1_048_576
    )]
    pub max_body_bytes: usize,

    /// Largest accepted portfolio import file (`POST /portfolios/{id}/imports`) in bytes.
    #[arg(
        long = "max-import-bytes",
        env = "MAX_IMPORT_BYTES",
        default_value_t = 33_554_432
    )]
    pub max_import_bytes: usize,

    /// How many reverse proxies in front of the API append to `X-Forwarded-For`. 0 (default)
    /// ignores the header and rate-limits by the socket's peer address.
    #[arg(
        long = "trusted-proxy-hops",
        env = "TRUSTED_PROXY_HOPS",
        default_value_t = 0
    )]
    pub trusted_proxy_hops: usize,

    /// A separate address serving `/metrics` (keep it internal). In production `/metrics` is
    /// served only there; in development also on `API_ADDR`.
    #[arg(long = "metrics-addr", env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// Whether `/docs` (the interactive documentation) is served: default true in
    /// development, false in production. `/openapi.json` is always served.
    #[arg(long = "docs-enabled", env = "DOCS_ENABLED")]
    pub docs_enabled: Option<bool>,

    /// Upper bound on handling one request.
    #[arg(long = "request-timeout", env = "REQUEST_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub request_timeout: Duration,

    /// How long in-flight requests may take to finish after SIGTERM.
    #[arg(long = "shutdown-timeout", env = "SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

/// Request rate limits (token buckets per caller).
#[derive(Debug, Clone, clap::Args)]
pub struct RateLimitConfig {
    /// Where buckets live: `local` (each API process limits by itself, so N processes allow up
    /// to N times the rate) or `redis` (one bucket per caller across every process; one round
    /// trip per request, falling back to the local limit while Redis does not answer).
    #[arg(
        long = "rate-limit-backend",
        env = "RATE_LIMIT_BACKEND",
        value_enum,
        default_value = "local"
    )]
    pub backend: RateLimitBackend,

    /// Sustained requests per minute per user (or per IP when anonymous).
    #[arg(
        long = "rate-limit-per-minute",
        env = "RATE_LIMIT_PER_MINUTE",
        default_value_t = 600
    )]
    pub per_minute: u32,

    /// Requests a caller may burst above the sustained rate.
    #[arg(
        long = "rate-limit-burst",
        env = "RATE_LIMIT_BURST",
        default_value_t = 100
    )]
    pub burst: u32,

    /// Sustained requests per minute per IP on `/api/v1/auth/*`.
    #[arg(
        long = "auth-rate-limit-per-minute",
        env = "AUTH_RATE_LIMIT_PER_MINUTE",
        default_value_t = 20
    )]
    pub auth_per_minute: u32,

    /// Burst on `/api/v1/auth/*`.
    #[arg(
        long = "auth-rate-limit-burst",
        env = "AUTH_RATE_LIMIT_BURST",
        default_value_t = 10
    )]
    pub auth_burst: u32,

    /// IPv6 clients are keyed by this many leading bits of their address (one host usually
    /// holds a whole /64).
    #[arg(
        long = "rate-limit-ipv6-prefix",
        env = "RATE_LIMIT_IPV6_PREFIX",
        default_value_t = 64,
        value_parser = clap::value_parser!(u8).range(1..=128)
    )]
    pub ipv6_prefix: u8,

    /// Callers tracked per scope before new anonymous callers share one bucket.
    #[arg(
        long = "rate-limit-max-keys",
        env = "RATE_LIMIT_MAX_KEYS",
        default_value_t = 100_000
    )]
    pub max_keys: usize,

    /// Failed password checks (login or password change) one account may take within
    /// `LOGIN_FAILURE_WINDOW`, from any address, before further attempts are refused (429).
    #[arg(
        long = "login-failures-per-account",
        env = "LOGIN_FAILURES_PER_ACCOUNT",
        default_value_t = 10
    )]
    pub login_failures_per_account: u32,

    /// The window that failed password checks are counted in, from the first failure.
    #[arg(long = "login-failure-window", env = "LOGIN_FAILURE_WINDOW", default_value = "15m", value_parser = parse_duration, value_name = "DURATION")]
    pub login_failure_window: Duration,
}

/// Whether `secret` is the development default or one of the examples in `deployments/`.
fn is_public_secret(secret: &str) -> bool {
    secret.contains(DEV_JWT_SECRET) || secret.to_ascii_lowercase().contains(PLACEHOLDER_MARK)
}

impl ApiConfig {
    /// Every invalid setting, one line each; empty when the configuration is usable.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = self.common.problems();
        let production = self.common.app_env.is_production();
        match &self.auth.jwt_secret {
            None if production => problems.push(ConfigProblem::new(
                "JWT_SECRET",
                "is required in production (at least 32 bytes)",
            )),
            Some(secret) if production && is_public_secret(secret.expose()) => {
                problems.push(ConfigProblem::new(
                    "JWT_SECRET",
                    "is an example or development value, which is public: generate a random \
                     one (e.g. `openssl rand -base64 48`)",
                ));
            }
            Some(secret) if secret.expose().len() < 32 && production => {
                problems.push(ConfigProblem::new(
                    "JWT_SECRET",
                    "must be at least 32 bytes in production",
                ));
            }
            Some(secret) if secret.expose().is_empty() => {
                problems.push(ConfigProblem::new("JWT_SECRET", "must not be empty"));
            }
            _ => {}
        }
        if self.housekeeping_interval.is_zero() {
            problems.push(ConfigProblem::new(
                "HOUSEKEEPING_INTERVAL",
                "must be positive",
            ));
        }
        if self.job_retention < Duration::from_secs(60) {
            problems.push(ConfigProblem::new(
                "JOB_RETENTION",
                "must be at least 1m: owners read their jobs' results after they finish",
            ));
        }
        if self.streams.max_duration.is_zero() {
            problems.push(ConfigProblem::new(
                "STREAM_MAX_DURATION",
                "must be positive",
            ));
        }
        if self.auth.access_ttl.is_zero() {
            problems.push(ConfigProblem::new("JWT_ACCESS_TTL", "must be positive"));
        }
        if self.auth.refresh_ttl <= self.auth.access_ttl {
            problems.push(ConfigProblem::new(
                "JWT_REFRESH_TTL",
                "must be longer than JWT_ACCESS_TTL",
            ));
        }
        if self.auth.password_memory_kib < 8 * 1024 && production {
            problems.push(ConfigProblem::new(
                "PASSWORD_HASH_MEMORY_KIB",
                "must be at least 8192 in production",
            ));
        }
        if self.auth.password_iterations == 0 {
            problems.push(ConfigProblem::new(
                "PASSWORD_HASH_ITERATIONS",
                "must be at least 1",
            ));
        }
        if self.auth.password_concurrency == Some(0) {
            problems.push(ConfigProblem::new(
                "PASSWORD_HASH_CONCURRENCY",
                "must be at least 1",
            ));
        }
        for (variable, value) in [
            ("RATE_LIMIT_PER_MINUTE", self.rate_limit.per_minute),
            ("RATE_LIMIT_BURST", self.rate_limit.burst),
            (
                "AUTH_RATE_LIMIT_PER_MINUTE",
                self.rate_limit.auth_per_minute,
            ),
            ("AUTH_RATE_LIMIT_BURST", self.rate_limit.auth_burst),
            (
                "LOGIN_FAILURES_PER_ACCOUNT",
                self.rate_limit.login_failures_per_account,
            ),
        ] {
            if value == 0 {
                problems.push(ConfigProblem::new(variable, "must be at least 1"));
            }
        }
        if self.http.max_body_bytes == 0 {
            problems.push(ConfigProblem::new("MAX_BODY_BYTES", "must be at least 1"));
        }
        if self.http.max_import_bytes == 0 {
            problems.push(ConfigProblem::new("MAX_IMPORT_BYTES", "must be at least 1"));
        }
        if production
            && self
                .http
                .cors_origins
                .split(',')
                .any(|origin| origin.trim() == "*")
        {
            problems.push(ConfigProblem::new(
                "CORS_ORIGINS",
                "must list the allowed origins in production (`*` lets any web page call the API)",
            ));
        }
        if self.rate_limit.max_keys == 0 {
            problems.push(ConfigProblem::new(
                "RATE_LIMIT_MAX_KEYS",
                "must be at least 1",
            ));
        }
        if self.rate_limit.login_failure_window.is_zero() {
            problems.push(ConfigProblem::new(
                "LOGIN_FAILURE_WINDOW",
                "must be positive",
            ));
        }
        if let Some(metrics) = self.http.metrics_addr
            && metrics == self.addr
        {
            problems.push(ConfigProblem::new(
                "METRICS_ADDR",
                "must differ from API_ADDR",
            ));
        }
        problems
    }

    /// Whether `/metrics` is served on `API_ADDR` (never in production).
    pub fn metrics_on_api_addr(&self) -> bool {
        !self.common.app_env.is_production()
    }

    /// Whether `/docs` is served.
    pub fn docs_enabled(&self) -> bool {
        self.http
            .docs_enabled
            .unwrap_or(!self.common.app_env.is_production())
    }

    /// A configuration for tests and tools: development defaults, given database and Redis.
    pub fn for_tests(database_url: &str, redis_url: &str, redis_key_prefix: &str) -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            config: ApiConfig,
        }
        let mut config = Defaults::parse_from(["api"]).config;
        config.common.app_env = common::config::AppEnv::Development;
        config.common.database.url = Secret::new(database_url.to_owned());
        config.common.database.max_connections = 5;
        config.common.redis.url = Secret::new(redis_url.to_owned());
        config.common.redis.key_prefix = redis_key_prefix.to_owned();
        config.auth.jwt_secret = Some(Secret::new(
            "test-secret-that-is-long-enough-0123456789".into(),
        ));
        // Tests hash many passwords; keep Argon2id but cheap.
        config.auth.password_memory_kib = 1024;
        config.auth.password_iterations = 1;
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn production() -> ApiConfig {
        let mut config = ApiConfig::for_tests("postgres://u:p@db/app", "redis://cache", "t:");
        config.common.app_env = common::config::AppEnv::Production;
        config.http.cors_origins = "https://app.example.com".into();
        config.auth.password_memory_kib = 19_456;
        config
    }

    fn variables(config: &ApiConfig) -> Vec<&'static str> {
        config
            .problems()
            .iter()
            .map(|problem| problem.variable)
            .collect()
    }

    #[test]
    fn production_refuses_public_secrets() {
        let mut config = production();
        assert!(variables(&config).is_empty(), "{:?}", variables(&config));
        for public in [
            DEV_JWT_SECRET.to_owned(),
            "CHANGE-ME-to-at-least-32-random-bytes".to_owned(),
            format!("prefix-{DEV_JWT_SECRET}-suffix"),
            "a-long-enough-secret-but-Change-Me-please".to_owned(),
        ] {
            config.auth.jwt_secret = Some(Secret::new(public.clone()));
            assert!(variables(&config).contains(&"JWT_SECRET"), "{public}");
        }
    }

    #[test]
    fn production_refuses_any_origin() {
        let mut config = production();
        for origins in ["*", " * ", "https://app.example.com, *"] {
            config.http.cors_origins = origins.into();
            assert_eq!(variables(&config), vec!["CORS_ORIGINS"], "{origins}");
        }
        config.common.app_env = common::config::AppEnv::Development;
        config.http.cors_origins = "*".into();
        assert!(variables(&config).is_empty());
    }

    #[test]
    fn docs_and_metrics_default_off_the_api_address_in_production() {
        let mut config = production();
        assert!(!config.docs_enabled());
        assert!(!config.metrics_on_api_addr());
        config.http.docs_enabled = Some(true);
        assert!(config.docs_enabled());
        config.common.app_env = common::config::AppEnv::Development;
        config.http.docs_enabled = None;
        assert!(config.docs_enabled());
        assert!(config.metrics_on_api_addr());
    }
}
