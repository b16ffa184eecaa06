//! The worker's small HTTP server: metrics and health, nothing else.

use common::health::{self, Readiness};
use common::redis::Redis;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use sqlx::PgPool;

/// The routes: `/metrics`, `/health/live`, `/health/ready`.
pub fn routes(db: PgPool, redis: Redis, metrics: PrometheusHandle) -> impl poem::Endpoint {
    Route::new()
        .at("/metrics", get(render_metrics))
        .at("/health/live", get(live))
        .at("/health/ready", get(ready))
        .data(db)
        .data(redis)
        .data(metrics)
}

#[handler]
fn render_metrics(db: Data<&PgPool>, metrics: Data<&PrometheusHandle>) -> Response {
    common::telemetry::record_scrape_time_gauges(&db);
    metrics
        .render()
        .with_content_type("text/plain; version=0.0.4")
        .into_response()
}

#[handler]
fn live() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[handler]
async fn ready(db: Data<&PgPool>, redis: Data<&Redis>) -> Response {
    let readiness = Readiness::check(&db, &redis).await;
    let body = serde_json::json!({
        "status": if readiness.is_ready() { "ready" } else { "not_ready" },
        "postgres": health::word(readiness.postgres),
        "redis": health::word(readiness.redis),
    });
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(body).with_status(status).into_response()
}
