//! Tracing and Prometheus metrics, set up once per process.
//!
//! The Prometheus recorder is the one piece of global state in Coinpulse: the `metrics`
//! macros need a process-wide recorder. [`install_metrics`] is idempotent so tests that build
//! several apps in one process share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TracingConfig};
use crate::trace_context::SpanExport;

mod json_lines;

/// Buckets for HTTP latencies: most requests take a few milliseconds, slow ones seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Buckets for job run times: from no-op jobs to multi-minute fetches waiting on budget.
const JOB_DURATION_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0,
    900.0,
];

/// Buckets for enqueue-to-start waits: sub-millisecond on an idle worker, growing with backlog
/// and backoff.
const JOB_WAIT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0, 300.0,
];

/// Buckets for calls to upstream HTTP APIs (price providers, SMTP).
const UPSTREAM_BUCKETS: &[f64] = &[0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Installs the global tracing subscriber: logs in `format`, and spans exported over OTLP
/// when `tracing` names an endpoint (as `service_name` unless configured otherwise).
///
/// `filter` uses `RUST_LOG` syntax. Calling it again (as tests do) keeps the first subscriber.
/// Keep the returned handle and call [`SpanExport::shut_down`] before exiting.
pub fn init_tracing(
    format: LogFormat,
    filter: &str,
    tracing: &TracingConfig,
    service_name: &str,
) -> SpanExport {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (otel, export) = match crate::trace_context::layer(tracing, service_name) {
        Ok(built) => built,
        Err(err) => {
            eprintln!("tracing: spans will not be exported: {err}");
            (None, SpanExport::default())
        }
    };
    // Each layer filters for itself: `RUST_LOG` decides what is logged, while exported spans
    // are the INFO-level ones (requests, jobs, upstream calls) whatever the log level.
    let registry =
        tracing_subscriber::registry().with(otel.map(|layer| layer.with_filter(LevelFilter::INFO)));
    // `try_init` fails only when a subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .fmt_fields(tracing_subscriber::fmt::format::JsonFields::new())
                    .event_format(json_lines::JsonLines::default())
                    .with_filter(filter),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .compact()
                    // Colour codes only for a person at a terminal, never into files or pipes.
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
                    .with_filter(filter),
            )
            .try_init(),
    };
    export
}

/// Installs the Prometheus recorder (once per process) and returns the handle that renders
/// `/metrics`.
///
/// `binary` labels `coinpulse_build_info{version,binary}`, which is set to 1.
pub fn install_metrics(binary: &'static str) -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    let handle = HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Prefix("http_request_duration".into()),
                    HTTP_BUCKETS,
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("job_duration_seconds".into()),
                        JOB_DURATION_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full("job_wait_seconds".into()),
                        JOB_WAIT_BUCKETS,
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Prefix("upstream_".into()), UPSTREAM_BUCKETS)
                })
                .expect("bucket lists are non-empty constants");
            builder
                .install_recorder()
                .expect("the Prometheus recorder is installed only here, once")
        })
        .clone();
    describe_metrics();
    metrics::gauge!("coinpulse_build_info", "version" => crate::VERSION, "binary" => binary)
        .set(1.0);
    handle
}

/// Gives every metric either binary records its `# HELP` text. A description only shows once
/// the metric has a value, so one list serves both binaries.
fn describe_metrics() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    metrics_process::Collector::default().describe();
    describe_gauge!(
        "coinpulse_build_info",
        "Always 1; the labels name the running version and binary."
    );
    describe_gauge!(
        "db_pool_connections",
        "Postgres pool connections by state (idle, in_use, max), sampled at scrape time."
    );
    describe_gauge!(
        "dependency_up",
        "Whether Postgres or Redis answered this process's last ping (every 5 s): 1 or 0."
    );
    describe_gauge!(
        "dependency_ping_seconds",
        "Round trip of this process's last ping to Postgres or Redis (the timeout if it failed)."
    );
    describe_counter!(
        "http_requests_total",
        "HTTP requests answered, by method (standard methods, else other), route template and status."
    );
    describe_histogram!(
        "http_request_duration_seconds",
        "Time to produce an HTTP response's head, by method and route template."
    );
    describe_gauge!(
        "http_requests_in_flight",
        "HTTP requests being handled now."
    );
    describe_gauge!(
        "stream_clients",
        "Open stream connections (SSE and WebSocket) on this API process, by kind."
    );
    describe_counter!(
        "stream_messages_dropped_total",
        "Stream messages not delivered because the client was too slow (it is then dropped), by kind."
    );
    describe_counter!(
        "stream_resumes_total",
        "Event-stream gaps filled from the history (outcome replayed) or answered with resync (resync, unavailable)."
    );
    describe_counter!(
        "rate_limited_total",
        "Requests refused with 429, by scope (general, auth, account)."
    );
    describe_counter!(
        "auth_refresh_refused_total",
        "Refused token refreshes, by reason: reuse (a rotated token presented again; its session is revoked), ended (a logged-out session), invalid."
    );
    describe_counter!(
        "price_cache_requests_total",
        "Price lookups in the Redis price cache, by result (hit or miss)."
    );
    describe_counter!(
        "jobs_enqueued_total",
        "Jobs handed to the Redis queue, by queue."
    );
    describe_counter!(
        "jobs_completed_total",
        "Job attempts finished, by queue and outcome."
    );
    describe_counter!(
        "jobs_dead_total",
        "Jobs that used their last attempt and were dead-lettered, by queue."
    );
    describe_histogram!(
        "job_duration_seconds",
        "Time one job attempt ran, by queue."
    );
    describe_histogram!(
        "job_wait_seconds",
        "Time from a job being enqueued to its attempt starting, by queue."
    );
    describe_gauge!("jobs_in_flight", "Job attempts running now, by queue.");
    describe_gauge!(
        "queue_depth",
        "Jobs ready and waiting for a worker, by queue (sampled every 5 s)."
    );
    describe_gauge!(
        "queue_oldest_job_age_seconds",
        "How long the oldest ready job has waited for a worker, by queue (sampled every 5 s)."
    );
    describe_gauge!(
        "queue_workers",
        "Workers consuming the queue now (with a live lease), by queue (sampled every 5 s)."
    );
    describe_gauge!(
        "queue_paused",
        "1 while operators have paused the queue (workers start none of its jobs), by queue."
    );
    describe_counter!(
        "jobs_rescued_total",
        "Jobs pushed again from their Postgres records after Redis lost them, by queue."
    );
    describe_counter!(
        "rescue_rounds_total",
        "Rescue rounds this worker completed (one process holds each round)."
    );
    describe_counter!(
        "alerts_evaluated_total",
        "Active price alerts evaluated against a new price."
    );
    describe_counter!(
        "alerts_fired_total",
        "Price alert firings recorded (each queues one notification)."
    );
    describe_counter!(
        "emails_sent_total",
        "Email jobs finished, by outcome (sent, outbox, duplicate, no_recipient, failed)."
    );
    describe_counter!(
        "notifications_created_total",
        "In-app notifications written, by category."
    );
    describe_gauge!(
        "upstream_budget_per_minute",
        "Calls per minute the price provider allows all processes together (COINGECKO_CALLS_PER_MINUTE)."
    );
    describe_gauge!(
        "upstream_breaker_state",
        "The price provider's circuit breaker in this process: 0 closed, 1 half-open, 2 open."
    );
    describe_counter!(
        "price_lookups_coalesced_total",
        "Price lookups that waited for another lookup's provider call instead of making one."
    );
    describe_counter!(
        "upstream_requests_total",
        "Calls to the price provider, by provider and status."
    );
    describe_histogram!(
        "upstream_request_duration_seconds",
        "Time one price-provider call took, by provider."
    );
}

/// Records the state of a Postgres pool as `db_pool_connections{state="idle"|"in_use"|"max"}`.
///
/// Called right before rendering `/metrics`, so the gauges are exact at scrape time without a
/// background sampler. Also records the standard `process_*` metrics (CPU seconds, resident
/// and virtual memory, open and maximum file descriptors, threads, start time).
pub fn record_scrape_time_gauges(pool: &sqlx::PgPool) {
    metrics_process::Collector::default().collect();
    let size = f64::from(pool.size());
    // `num_idle` is a usize; pools here hold at most a few hundred connections.
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("db_pool_connections", "state" => "max")
        .set(f64::from(pool.options().get_max_connections()));
}
