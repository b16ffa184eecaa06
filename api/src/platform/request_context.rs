//! The outermost middleware: request id, tracing span, access log, HTTP metrics, panic capture
//! and the single place where errors become problem+json responses.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use poem::PathPattern;
use poem::http::HeaderValue;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response};
use tracing::Instrument;
use uuid::Uuid;

use crate::error::{ApiError, ParamFailure};
use crate::platform::http_metrics::HttpMetrics;
use crate::platform::param_messages::ParamMessages;
use crate::platform::route_templates::RouteTemplates;

/// The header carrying the request id in and out.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The id of the request being handled, available to handlers as request data.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Headers an inner layer wants on the response even when it fails (e.g. rate-limit figures on
/// a 422): attach them to the `poem::Error` with `set_data`.
#[derive(Debug, Clone)]
pub struct ExtraHeaders(pub poem::http::HeaderMap);

/// Adds request ids, logging, metrics, panic capture, a deadline and problem rendering around
/// an endpoint.
#[derive(Debug, Clone)]
pub struct RequestContext {
    timeout: Duration,
    templates: Arc<RouteTemplates>,
    params: Arc<ParamMessages>,
    metrics: Arc<HttpMetrics>,
}

impl RequestContext {
    /// `timeout` bounds producing a response's head (a streamed body may go on after it);
    /// `templates` names routes and path parameters as documented.
    pub fn new(timeout: Duration, templates: RouteTemplates) -> Self {
        Self {
            timeout,
            templates: Arc::new(templates),
            params: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// Says what a parameter must be when it cannot be parsed, from `params`.
    #[must_use]
    pub fn with_param_messages(mut self, params: ParamMessages) -> Self {
        self.params = Arc::new(params);
        self
    }
}

impl<E: Endpoint> Middleware<E> for RequestContext {
    type Output = RequestContextEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RequestContextEndpoint {
            inner: ep,
            timeout: self.timeout,
            templates: self.templates.clone(),
            params: self.params.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

/// The endpoint produced by [`RequestContext`].
#[derive(Debug)]
pub struct RequestContextEndpoint<E> {
    inner: E,
    timeout: Duration,
    templates: Arc<RouteTemplates>,
    params: Arc<ParamMessages>,
    metrics: Arc<HttpMetrics>,
}

/// Keeps a caller's id only when it is short and made of safe characters, so ids can be logged
/// and echoed without escaping and cannot be used to inject headers or log lines.
fn accept_request_id(value: &HeaderValue) -> Option<String> {
    let value = value.to_str().ok()?;
    let valid = !value.is_empty()
        && value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    valid.then(|| value.to_owned())
}

/// The `method` label: one of the standard methods, else `other`. Any method token is valid
/// HTTP, so labelling with the raw method would let callers mint series without bound.
fn method_label(method: &poem::http::Method) -> &'static str {
    use poem::http::Method;
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("non-string panic payload")
}

impl<E: Endpoint> Endpoint for RequestContextEndpoint<E> {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Self::Output> {
        let started = Instant::now();
        let request_id = req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(accept_request_id)
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        req.set_data(RequestId(request_id.clone()));
        let method = req.method().clone();
        let path = req.uri().path().to_owned();

        let span = tracing::info_span!(
            "request",
            request_id = %request_id,
            method = %method,
            path = %path,
        );
        // A caller's trace (W3C `traceparent`) continues here; with spans exported, this
        // request's span and everything under it (and the jobs it enqueues) join it.
        if let Some(traceparent) = req
            .headers()
            .get("traceparent")
            .and_then(|value| value.to_str().ok())
        {
            common::trace_context::continue_trace(&span, traceparent);
        }
        let in_flight = self.metrics.in_flight();

        let deadline = self.timeout;
        // Boxed so the wrappers below move a pointer, not the whole (large) inner future.
        let inner = Box::pin(self.inner.call(req));
        let handled = async move {
            tokio::time::timeout(deadline, inner)
                .await
                .unwrap_or_else(|_| {
                    Err(ApiError::Unavailable(format!(
                        "the request did not finish within {} s",
                        deadline.as_secs()
                    ))
                    .into())
                })
        };
        let outcome = AssertUnwindSafe(handled.instrument(span.clone()))
            .catch_unwind()
            .await;
        let (mut response, pattern) = match outcome {
            Ok(Ok(output)) => {
                let response = output.into_response();
                let pattern = response.data::<PathPattern>().cloned();
                (response, pattern)
            }
            Ok(Err(err)) => {
                let pattern = err.data::<PathPattern>().cloned();
                let extra = err.data::<ExtraHeaders>().cloned();
                let failure = ParamFailure::of(&err);
                let mut api_error = ApiError::from_poem(err);
                if let (ApiError::Validation(errors), Some(pattern)) = (&mut api_error, &pattern) {
                    for error in errors {
                        if let Some(name) = self.templates.param_name(&pattern.0, &error.field) {
                            error.field = name;
                        }
                        if failure.is_some_and(|failure| !failure.missing)
                            && let Some(words) = self.params.get(
                                &method,
                                &self.templates.label(&pattern.0),
                                &error.field,
                            )
                        {
                            error.message = words.to_owned();
                        }
                    }
                }
                if let ApiError::Internal(cause) = &api_error {
                    span.in_scope(|| tracing::error!(error = ?cause, "request failed"));
                }
                let mut response = api_error.to_response(Some(&request_id), Some(&path));
                // RFC 9110: a 405 names the methods the resource does support.
                if matches!(api_error, ApiError::MethodNotAllowed)
                    && let Some(allowed) = self.templates.allowed_methods(&path)
                    && let Ok(value) = HeaderValue::from_str(allowed)
                {
                    response
                        .headers_mut()
                        .insert(poem::http::header::ALLOW, value);
                }
                if let Some(ExtraHeaders(headers)) = extra {
                    response.headers_mut().extend(headers);
                }
                (response, pattern)
            }
            Err(panic) => {
                let message = panic_message(panic.as_ref()).to_owned();
                span.in_scope(|| tracing::error!(panic = %message, "handler panicked"));
                let api_error = ApiError::Internal(anyhow::anyhow!("panic: {message}"));
                (api_error.to_response(Some(&request_id), Some(&path)), None)
            }
        };
        drop(in_flight);

        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert(REQUEST_ID_HEADER, value);
        }

        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.finished(
            &self.templates,
            pattern.as_ref().map(|pattern| &pattern.0),
            method_label(&method),
            status,
            elapsed,
        );

        span.in_scope(|| {
            let latency_ms = elapsed.as_secs_f64() * 1000.0;
            if status >= 500 {
                tracing::error!(status, latency_ms, "request finished");
            } else {
                tracing::info!(status, latency_ms, "request finished");
            }
        });
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use poem::test::TestClient;
    use poem::{EndpointExt, Route, get, handler};

    use super::*;

    #[handler]
    fn boom() -> &'static str {
        panic!("handler bug")
    }

    #[handler]
    fn fine() -> &'static str {
        "fine"
    }

    #[handler]
    async fn slow() -> &'static str {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    }

    fn app(timeout: Duration) -> impl Endpoint {
        Route::new()
            .at("/boom", get(boom))
            .at("/fine", get(fine))
            .at("/slow", get(slow))
            .with(RequestContext::new(timeout, RouteTemplates::default()))
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_problem_and_the_server_keeps_serving() {
        let client = TestClient::new(app(Duration::from_secs(5)));
        let response = client.get("/boom").send().await;
        response.assert_status(poem::http::StatusCode::INTERNAL_SERVER_ERROR);
        response.assert_content_type("application/problem+json");
        let body = response.0.into_body().into_string().await.expect("body");
        assert!(body.contains("\"code\":\"INTERNAL\""), "{body}");
        assert!(
            !body.contains("handler bug"),
            "panic message never leaks: {body}"
        );
        client.get("/fine").send().await.assert_text("fine").await;
    }

    #[tokio::test]
    async fn requests_over_the_deadline_are_cut_off() {
        let client = TestClient::new(app(Duration::from_millis(50)));
        let response = client.get("/slow").send().await;
        response.assert_status(poem::http::StatusCode::SERVICE_UNAVAILABLE);
        response.assert_content_type("application/problem+json");
    }

    #[derive(Debug, poem_openapi::Enum)]
    #[oai(rename_all = "snake_case")]
    enum Colour {
        Red,
        Green,
    }

    struct ColoursApi;

    #[poem_openapi::OpenApi]
    impl ColoursApi {
        #[oai(path = "/colours", method = "get")]
        async fn list(
            &self,
            colour: poem_openapi::param::Query<Option<Colour>>,
            #[oai(validator(maximum(value = "10")))] limit: poem_openapi::param::Query<Option<u32>>,
        ) -> poem_openapi::payload::PlainText<String> {
            poem_openapi::payload::PlainText(format!("{:?} {:?}", colour.0, limit.0))
        }
    }

    #[tokio::test]
    async fn unparsable_parameters_are_told_what_they_must_be() {
        let service = poem_openapi::OpenApiService::new(ColoursApi, "colours", "1");
        let client = TestClient::new(
            Route::new().nest("/", service).with(
                RequestContext::new(Duration::from_secs(5), RouteTemplates::default())
                    .with_param_messages(ParamMessages::of::<ColoursApi>()),
            ),
        );
        for (query, field, message) in [
            ("colour=blue", "colour", "must be one of: red, green"),
            ("limit=many", "limit", "must be an integer from 0 to 10"),
            ("limit=11", "limit", "must be an integer from 0 to 10"),
        ] {
            let response = client.get(format!("/colours?{query}")).send().await;
            response.assert_status(poem::http::StatusCode::UNPROCESSABLE_ENTITY);
            response.assert_content_type("application/problem+json");
            let body: serde_json::Value = response.0.into_body().into_json().await.expect("json");
            assert_eq!(
                body["errors"],
                serde_json::json!([{"field": field, "message": message}]),
                "{query}"
            );
        }
        client
            .get("/colours?colour=green&limit=3")
            .send()
            .await
            .assert_text("Some(Green) Some(3)")
            .await;
    }

    #[test]
    fn invented_methods_share_one_label() {
        use poem::http::Method;
        assert_eq!(method_label(&Method::PATCH), "PATCH");
        let invented = Method::from_bytes(b"XMETH0").expect("a valid token");
        assert_eq!(method_label(&invented), "other");
        let lower = Method::from_bytes(b"get").expect("a valid token");
        assert_eq!(method_label(&lower), "other");
    }

    #[test]
    fn request_ids_are_accepted_only_when_safe() {
        let ok = HeaderValue::from_static("abc-123_X.y:z");
        assert_eq!(accept_request_id(&ok).as_deref(), Some("abc-123_X.y:z"));
        assert_eq!(accept_request_id(&HeaderValue::from_static("a b")), None);
        assert_eq!(accept_request_id(&HeaderValue::from_static("")), None);
        let long = HeaderValue::from_str(&"a".repeat(129)).expect("ascii");
        assert_eq!(accept_request_id(&long), None);
    }
}
