//! The worker's small HTTP server: metrics and health, nothing else.

use std::time::Duration;

use common::redis::Redis;
use metrics_exporter_prometheus::PrometheusHandle;
use poem::http::StatusCode;
use poem::web::{Data, Json};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use sqlx::PgPool;

/// How long readiness waits for each dependency.
const CHECK_TIMEOUT: Duration = Duration::from_secs(1);

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
    common::telemetry::record_pool_gauges(&db);
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
    let (postgres, redis) = tokio::join!(
        common::db::ping(&db, CHECK_TIMEOUT),
        redis.ping(CHECK_TIMEOUT)
    );
    let word = |result: &Result<(), String>| if result.is_ok() { "ok" } else { "unavailable" };
    let ready = postgres.is_ok() && redis.is_ok();
    for (name, result) in [("postgres", &postgres), ("redis", &redis)] {
        if let Err(reason) = result {
            tracing::warn!(%reason, "readiness: {name} check failed");
        }
    }
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "not_ready" },
        "postgres": word(&postgres),
        "redis": word(&redis),
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    Json(body).with_status(status).into_response()
}
