//! Builds the whole HTTP application from configuration, in one place.

use std::sync::Arc;
use std::time::Instant;

use common::jobs::queues::{QueueDefaults, QueueSet};
use common::market::PriceProvider;
use common::prices::Prices;
use common::redis::Redis;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::middleware::{Compression, Cors, SetHeader};
use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;
use sqlx::PgPool;

use crate::admin::AdminApi;
use crate::admin::audit::AuditApi;
use crate::alerts::AlertsApi;
use crate::auth::AuthApi;
use crate::auth::email_flows::AccountEmailApi;
use crate::auth::extract::Accounts;
use crate::auth::lockout::LoginLockout;
use crate::auth::passwords::PasswordHasher;
use crate::auth::tokens::TokenKeys;
use crate::config::ApiConfig;
use crate::health::{HealthApi, metrics_endpoint};
use crate::jobs::JobsApi;
use crate::jobs::admin::QueuesAdminApi;
use crate::market::{MarketAdminApi, MarketApi};
use crate::notifications::NotificationsApi;
use crate::platform::body_limit::BodyLimit;
use crate::platform::param_messages::ParamMessages;
use crate::platform::rate_limit::RateLimit;
use crate::platform::request_context::RequestContext;
use crate::platform::route_templates::RouteTemplates;
use crate::portfolios::{PortfolioFilesApi, PortfoliosApi, TransactionsApi, ValuationApi};
use crate::streams::StreamsApi;
use crate::streams::hub::Hub;
use crate::streams::session::StreamSlots;
use crate::users::UsersApi;
use crate::users::cache::UserCache;

/// What every handler may use, built once at start-up and shared by reference.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<ApiConfig>,
    pub db: PgPool,
    pub redis: Redis,
    pub tokens: Arc<TokenKeys>,
    pub passwords: PasswordHasher,
    pub lockout: LoginLockout,
    pub users: UserCache,
    pub hub: Hub,
    pub stream_slots: StreamSlots,
    pub prices: Prices,
    pub queues: QueueSet,
    pub metrics: PrometheusHandle,
    pub started_at: Instant,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState").finish_non_exhaustive()
    }
}

impl AppState {
    /// Creates the state from configuration and already-open connections.
    pub fn new(
        config: ApiConfig,
        db: PgPool,
        redis: Redis,
        metrics: PrometheusHandle,
    ) -> anyhow::Result<Self> {
        let users = UserCache::new(config.auth.user_cache_ttl, Some(redis.clone()));
        // Runs for the life of the process (or test runtime): events for the streams, and
        // account changes made by other API processes for the cache.
        let hub = Hub::start(
            redis.clone(),
            users.clone(),
            config.streams.client_buffer as usize * 4,
        );
        Ok(Self {
            hub,
            stream_slots: StreamSlots::default(),
            tokens: Arc::new(TokenKeys::new(&config.auth)),
            passwords: PasswordHasher::new(&config.auth)?,
            lockout: LoginLockout::new(redis.clone(), &config.rate_limit),
            users,
            prices: Prices::from_config(
                db.clone(),
                redis.clone(),
                Arc::new(PriceProvider::from_config(
                    &config.market,
                    Some(redis.clone()),
                )?),
                &config.market,
            ),
            queues: QueueSet::new(&config.common.redis, &QueueDefaults::default())?,
            config: Arc::new(config),
            db,
            redis,
            metrics,
            started_at: Instant::now(),
        })
    }
}

impl AppState {
    /// What the bearer checkers need to load the caller's account.
    pub fn accounts(&self) -> Accounts {
        Accounts {
            tokens: self.tokens.clone(),
            db: self.db.clone(),
            users: self.users.clone(),
        }
    }
}

/// Every feature's operations.
pub type Apis = (
    HealthApi,
    AuthApi,
    AccountEmailApi,
    UsersApi,
    (PortfoliosApi, PortfolioFilesApi),
    TransactionsApi,
    ValuationApi,
    AlertsApi,
    NotificationsApi,
    AdminApi,
    MarketApi,
    MarketAdminApi,
    JobsApi,
    QueuesAdminApi,
    AuditApi,
    StreamsApi,
);

/// The OpenAPI service: every operation of the API.
pub fn openapi(state: &AppState) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            HealthApi::new(state.clone()),
            AuthApi::new(state.clone()),
            AccountEmailApi::new(state.clone()),
            UsersApi::new(state.clone()),
            (
                PortfoliosApi::new(state.clone()),
                PortfolioFilesApi::new(state.clone()),
            ),
            TransactionsApi::new(state.clone()),
            ValuationApi::new(state.clone()),
            AlertsApi::new(state.clone()),
            NotificationsApi::new(state.clone()),
            AdminApi::new(state.clone()),
            MarketApi::new(state.clone()),
            MarketAdminApi::new(state.clone()),
            JobsApi::new(state.clone()),
            QueuesAdminApi::new(state.clone()),
            AuditApi::new(state.clone()),
            StreamsApi::new(state.clone()),
        ),
        "Coinpulse API",
        common::VERSION,
    )
    .description(
        "Crypto-portfolio backend. Errors are RFC 9457 problem details \
         (`application/problem+json`) with `code`, `request_id` and, for validation, \
         `errors: [{field, message}]`. Every response carries `X-Request-ID`.",
    )
    .server("/")
}

/// The complete endpoint with every middleware, ready to serve.
pub fn build_app(state: AppState) -> impl Endpoint<Output = poem::Response> + 'static {
    let api = openapi(&state);
    let raw_spec = api.spec();
    let templates = RouteTemplates::from_spec(&raw_spec);
    let param_messages = ParamMessages::of::<Apis>();
    let document = bytes::Bytes::from(
        crate::platform::openapi_doc::document(&raw_spec, state.prices.provider().currencies())
            .expect("poem-openapi writes a JSON document"),
    );
    let spec = poem::endpoint::make_sync(move |_| {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(document.clone())
    });
    let mut routes = Route::new();
    if state.config.metrics_on_api_addr() {
        routes = routes.at("/metrics", metrics_endpoint(&state));
    }
    if state.config.docs_enabled() {
        routes = routes.nest("/docs", api.swagger_ui());
    }
    let routes = routes.at("/openapi.json", spec).nest("/", api);

    let http = &state.config.http;
    routes
        .with(RateLimit::new(
            &state.config.rate_limit,
            http,
            state.tokens.clone(),
            state.redis.clone(),
        ))
        // Compression inside BodyLimit: BodyLimit refuses encoded request bodies, so poem's
        // Compression only ever compresses responses and never decodes a request.
        .with(Compression::new())
        // Streams are written event by event; a compressor would hold events back until its
        // buffer fills.
        .before(|mut req: poem::Request| async move {
            if req.uri().path().starts_with("/api/v1/stream/") || req.uri().path() == "/api/v1/ws" {
                req.headers_mut()
                    .remove(poem::http::header::ACCEPT_ENCODING);
            }
            Ok(req)
        })
        .with(
            BodyLimit::new(http.max_body_bytes)
                .with_larger(crate::portfolios::is_import_path, http.max_import_bytes),
        )
        .with(cors(&http.cors_origins))
        .data(state.accounts())
        .data(crate::portfolios::files::FileChecks::default())
        .with(
            RequestContext::new(http.request_timeout, templates)
                .with_param_messages(param_messages),
        )
        // Outside the request context so that problem responses get the headers too.
        .with(security_headers())
}

/// What `METRICS_ADDR` serves: `/metrics` and liveness, with none of the API's middleware.
pub fn build_metrics_app(state: &AppState) -> impl Endpoint<Output = poem::Response> + use<> {
    Route::new().at("/metrics", metrics_endpoint(state)).at(
        "/health/live",
        poem::endpoint::make_sync(|_| "ok").map_to_response(),
    )
}

fn cors(origins: &str) -> Cors {
    let cors = Cors::new()
        .allow_methods(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"])
        .allow_headers([
            "authorization",
            "content-type",
            "x-request-id",
            "idempotency-key",
            "if-match",
            "if-none-match",
            "last-event-id",
            "traceparent",
        ])
        .expose_headers([
            "x-request-id",
            "x-ratelimit-limit",
            "x-ratelimit-remaining",
            "x-ratelimit-reset",
            "retry-after",
            "location",
            "etag",
            "idempotent-replayed",
        ])
        .max_age(600);
    let origins: Vec<&str> = origins
        .split(',')
        .map(str::trim)
        .filter(|origin| !origin.is_empty())
        .collect();
    if origins.contains(&"*") {
        cors
    } else {
        cors.allow_origins(origins)
    }
}

/// Headers for an API that serves JSON to programs (and HTML docs at `/docs`).
fn security_headers() -> SetHeader {
    SetHeader::new()
        .overriding("x-content-type-options", "nosniff")
        .overriding("x-frame-options", "DENY")
        .overriding("referrer-policy", "no-referrer")
        .overriding("cross-origin-opener-policy", "same-origin")
        .overriding(
            "strict-transport-security",
            "max-age=31536000; includeSubDomains",
        )
}
