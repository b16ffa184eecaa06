//! Liveness, readiness, version and metrics.

use common::health;
use poem_openapi::payload::Json;
use poem_openapi::{Object, OpenApi};

use crate::app::AppState;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;

/// Health endpoints.
#[derive(Debug)]
pub struct HealthApi {
    state: AppState,
}

impl HealthApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Version and uptime of this process.
#[derive(Debug, Object)]
#[oai(example)]
pub struct HealthInfo {
    /// Always `ok` when the process answers.
    pub status: String,
    /// The build's version.
    pub version: String,
    /// Seconds since this process started.
    pub uptime_seconds: u64,
    /// `development` or `production`.
    pub environment: String,
}

impl poem_openapi::types::Example for HealthInfo {
    fn example() -> Self {
        Self {
            status: "ok".into(),
            version: "0.1.0".into(),
            uptime_seconds: 3600,
            environment: "production".into(),
        }
    }
}

/// Status of each dependency.
#[derive(Debug, Object)]
pub struct Readiness {
    /// `ready`.
    pub status: String,
    /// `ok` for Postgres.
    pub postgres: String,
    /// `ok` for Redis.
    pub redis: String,
}

/// Liveness answer.
#[derive(Debug, Object)]
pub struct Liveness {
    /// Always `ok`.
    pub status: String,
}

#[OpenApi(tag = "ApiTags::Operations")]
impl HealthApi {
    /// Version and uptime.
    #[oai(path = "/health", method = "get")]
    async fn health(&self) -> Json<HealthInfo> {
        Json(HealthInfo {
            status: "ok".into(),
            version: common::VERSION.into(),
            uptime_seconds: self.state.started_at.elapsed().as_secs(),
            environment: self.state.config.common.app_env.as_str().into(),
        })
    }

    /// Liveness: the process serves HTTP. Never checks dependencies.
    #[oai(path = "/health/live", method = "get")]
    async fn live(&self) -> Json<Liveness> {
        Json(Liveness {
            status: "ok".into(),
        })
    }

    /// Readiness: Postgres and Redis both answer within a second; 503 names what failed.
    #[oai(path = "/health/ready", method = "get")]
    async fn ready(
        &self,
    ) -> ApiResult<Json<Readiness>, { status::UNAVAILABLE | status::INTERNAL }> {
        let readiness = health::Readiness::check(&self.state.db, &self.state.redis).await;
        if !readiness.is_ready() {
            let failed = readiness.failed().join(" and ");
            return Err(ApiError::Unavailable(format!("not ready: {failed} unavailable")).into());
        }
        Ok(Json(Readiness {
            status: "ready".into(),
            postgres: health::word(readiness.postgres).into(),
            redis: health::word(readiness.redis).into(),
        }))
    }
}

/// `GET /metrics`: Prometheus text of this process. A plain route rather than an operation of
/// the document: it is for the operator's scraper, and production serves it only on the
/// internal `METRICS_ADDR`.
pub fn metrics_endpoint(state: &AppState) -> impl poem::Endpoint<Output = poem::Response> + use<> {
    use poem::{EndpointExt, IntoResponse};
    let db = state.db.clone();
    let handle = state.metrics.clone();
    poem::endpoint::make_sync(move |_| {
        common::telemetry::record_scrape_time_gauges(&db);
        handle
            .render()
            .with_content_type("text/plain; version=0.0.4; charset=utf-8")
            .into_response()
    })
    .map_to_response()
}
