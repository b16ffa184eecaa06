//! One trace across the split: a caller's `traceparent` continues in the api's request span,
//! is stored with the job it enqueues, and the worker's job and upstream-call spans join the
//! same trace. Both binaries export over OTLP/HTTP (JSON) to a local receiver started here.

mod stack;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use poem::web::Data;
use poem::{EndpointExt, Route, handler, post};
use serde_json::Value;
use test_support::{http_client, redis_url, wait_until};

use self::stack::*;

/// Every span received: (service name, trace id, span name).
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, String, String)>>>);

#[handler]
fn traces(Data(received): Data<&Received>, body: poem::web::Json<Value>) -> &'static str {
    for resource in body["resourceSpans"]
        .as_array()
        .cloned()
        .unwrap_or_default()
    {
        let service = resource["resource"]["attributes"]
            .as_array()
            .and_then(|attributes| {
                attributes
                    .iter()
                    .find(|attribute| attribute["key"] == "service.name")
            })
            .and_then(|attribute| attribute["value"]["stringValue"].as_str())
            .unwrap_or("?")
            .to_owned();
        for scope in resource["scopeSpans"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            for span in scope["spans"].as_array().cloned().unwrap_or_default() {
                received.0.lock().expect("lock").push((
                    service.clone(),
                    span["traceId"].as_str().unwrap_or_default().to_lowercase(),
                    span["name"].as_str().unwrap_or_default().to_owned(),
                ));
            }
        }
    }
    ""
}

#[tokio::test]
async fn one_trace_runs_from_the_request_through_the_job_to_the_upstream_call() {
    let received = Received::default();
    let collector = test_support::serve_on_loopback(
        Route::new()
            .at("/v1/traces", post(traces))
            .data(received.clone()),
    )
    .await;
    let otlp = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{collector}")),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json".to_owned()),
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ];
    let stack = Stack::start_with(redis_url(), &otlp).await;
    let worker_settings: Vec<(&str, &str)> = otlp
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let _worker = stack.start_worker(&worker_settings).await;

    let trace_id = uuid::Uuid::now_v7().simple().to_string();
    let response = http_client()
        .post(format!("{}/api/v1/crypto/bulk", stack.api.base_url))
        .bearer_auth(&stack.token)
        .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
        .json(&serde_json::json!({"coins": ["bitcoin"], "vs_currency": "usd"}))
        .send()
        .await
        .expect("bulk");
    assert_eq!(response.status(), 202);
    let job: Value = response.json().await.expect("json");
    stack
        .wait_for_status(
            job["id"].as_str().expect("id"),
            "succeeded",
            Duration::from_secs(15),
        )
        .await;

    let in_trace = |service: &str, name: &str| {
        received
            .0
            .lock()
            .expect("lock")
            .iter()
            .any(|(s, t, n)| s == service && *t == trace_id && n == name)
    };
    wait_until(
        "the request, job and upstream spans in the caller's trace",
        Duration::from_secs(20),
        || async {
            in_trace("coinpulse-api", "request")
                && in_trace("coinpulse-worker", "job")
                && in_trace("coinpulse-worker", "upstream_request")
        },
    )
    .await;
}
