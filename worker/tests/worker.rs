//! End to end: the built `worker` binary, started as an operator would.

use std::path::Path;
use std::process::Command;

use test_support::{RunningBinary, TestDatabase, free_port, redis_prefix, redis_url};

#[tokio::test]
async fn the_worker_serves_health_and_metrics_and_stops_on_sigterm() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", redis_prefix()),
        ("WORKER_METRICS_ADDR", format!("127.0.0.1:{port}")),
        ("WORKER_QUEUES", "price_refresh,bulk_fetch".to_owned()),
    ];
    let worker = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_worker")),
        &env,
        port,
        "/health/ready",
    )
    .await;
    let client = test_support::http_client();
    let live = client
        .get(format!("{}/health/live", worker.base_url))
        .send()
        .await
        .expect("live");
    assert_eq!(live.status(), 200);
    let metrics = test_support::get_text(&format!("{}/metrics", worker.base_url)).await;
    assert!(
        metrics.contains(r#"coinpulse_build_info{version=""#)
            && metrics.contains(r#"binary="worker""#),
        "{metrics}"
    );
    assert!(metrics.contains("db_pool_connections"), "{metrics}");
    assert!(
        metrics.contains("\nprocess_resident_memory_bytes "),
        "standard process metrics: {metrics}"
    );
    test_support::assert_promtool_accepts(&metrics);
    let status = worker.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[tokio::test]
async fn readiness_fails_while_redis_is_unreachable() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let dead_redis = free_port();
    let env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", format!("redis://127.0.0.1:{dead_redis}")),
        ("REDIS_TIMEOUT", "200ms".to_owned()),
        ("WORKER_METRICS_ADDR", format!("127.0.0.1:{port}")),
    ];
    let worker = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_worker")),
        &env,
        port,
        "/health/live",
    )
    .await;
    let ready = test_support::http_client()
        .get(format!("{}/health/ready", worker.base_url))
        .send()
        .await
        .expect("ready");
    assert_eq!(ready.status(), 503);
    let body: serde_json::Value = ready.json().await.expect("json");
    assert_eq!(body["redis"], "unavailable");
    assert_eq!(body["postgres"], "ok");
}

#[test]
fn unknown_queues_stop_start_up_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_worker"))
        .env("WORKER_QUEUES", "bulk_fetch,emails")
        .output()
        .expect("run worker");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("configuration error: WORKER_QUEUES"),
        "{stderr}"
    );
}
