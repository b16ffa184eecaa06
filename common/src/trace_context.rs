//! Tracing across the split: OTLP export of spans, and the W3C `traceparent` that carries a
//! trace from a request to the job it enqueued, so one trace runs request → queue → job →
//! upstream call or email.
//!
//! Without `OTEL_EXPORTER_OTLP_ENDPOINT` nothing here costs anything: no OpenTelemetry layer is
//! installed, spans have no trace context, and [`current_traceparent`] is `None`.

use std::collections::HashMap;

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::{OtlpProtocol, TracingConfig};

/// The `traceparent` of the current span (`00-{trace id}-{span id}-{flags}`), to store with
/// work that continues elsewhere; `None` when spans are not exported.
pub fn current_traceparent() -> Option<String> {
    let context = tracing::Span::current().context();
    let span = context.span();
    let span_context = span.span_context();
    span_context.is_valid().then(|| {
        format!(
            "00-{}-{}-{:02x}",
            span_context.trace_id(),
            span_context.span_id(),
            span_context.trace_flags().to_u8()
        )
    })
}

/// Makes `span` a child of the remote span `traceparent` names (an incoming request's header, or
/// the one stored with a job). A malformed value is ignored: the span starts a new trace.
pub fn continue_trace(span: &tracing::Span, traceparent: &str) {
    let carrier = HashMap::from([("traceparent".to_owned(), traceparent.to_owned())]);
    let parent = TraceContextPropagator::new().extract(&carrier);
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
}

/// Keeps the span exporter of the process; [`SpanExport::shut_down`] sends what is buffered.
#[derive(Debug, Default)]
pub struct SpanExport {
    provider: Option<SdkTracerProvider>,
}

impl SpanExport {
    /// Flushes buffered spans and stops the exporter (at the end of `main`).
    pub fn shut_down(&self) {
        let Some(provider) = &self.provider else {
            return;
        };
        // The exporter's requests run on the runtime: let its other threads take over this
        // one's tasks while it waits for the last batch.
        let shutdown = || provider.shutdown();
        let flushed = match tokio::runtime::Handle::try_current() {
            Ok(runtime)
                if runtime.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread =>
            {
                tokio::task::block_in_place(shutdown)
            }
            _ => shutdown(),
        };
        if let Err(err) = flushed {
            tracing::warn!(error = %err, "spans not flushed at shutdown");
        }
    }
}

/// Builds the OpenTelemetry layer when `config` names an endpoint: spans are batched and sent
/// to `{endpoint}/v1/traces` as `service_name` (or the configured name). Must run inside the
/// Tokio runtime, whose handle the exporter's HTTP client uses.
pub(crate) fn layer<S>(
    config: &TracingConfig,
    service_name: &str,
) -> Result<
    (
        Option<tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>>,
        SpanExport,
    ),
    String,
>
where
    S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
{
    let Some(endpoint) = &config.otlp_endpoint else {
        return Ok((None, SpanExport::default()));
    };
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let protocol = match config.otlp_protocol {
        OtlpProtocol::HttpProtobuf => opentelemetry_otlp::Protocol::HttpBinary,
        OtlpProtocol::HttpJson => opentelemetry_otlp::Protocol::HttpJson,
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(format!("{}/v1/traces", endpoint.trim_end_matches('/')))
        .with_protocol(protocol)
        .with_http_client(TokioHttpClient::new()?)
        .build()
        .map_err(|err| format!("OTLP exporter: {err}"))?;
    let name = config
        .service_name
        .clone()
        .unwrap_or_else(|| service_name.to_owned());
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(name)
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.version",
                    crate::VERSION,
                ))
                .build(),
        )
        .build();
    let tracer = provider.tracer("coinpulse");
    Ok((
        Some(tracing_opentelemetry::layer().with_tracer(tracer)),
        SpanExport {
            provider: Some(provider),
        },
    ))
}

/// The exporter's HTTP client: the process's reqwest, run on the Tokio runtime (the batch
/// processor exports from a thread of its own, outside the runtime).
#[derive(Debug)]
struct TokioHttpClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl TokioHttpClient {
    fn new() -> Result<Self, String> {
        crate::tls::install_crypto_provider();
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|_| "the span exporter needs the Tokio runtime".to_owned())?;
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .build()
            .map_err(|err| err.to_string())?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for TokioHttpClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let sent = self.runtime.spawn(async move {
            let response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>((status, headers, body))
        });
        let (status, headers, body) = sent.await??;
        let mut response = http::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        Ok(response)
    }
}
