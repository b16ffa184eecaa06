//! Tracing and Prometheus metrics, set up once per process.
//!
//! The Prometheus recorder is the one piece of global state in Coinpulse: the `metrics`
//! macros need a process-wide recorder. [`install_metrics`] is idempotent so tests that build
//! several apps in one process share it.

use std::io::Stdout;
use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing::Subscriber;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, TracingConfig};
use crate::trace_context::SpanExport;

mod json_lines;
mod log_writer;

use log_writer::{BatchedWriter, WriterGuard};

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

/// How often histogram samples recorded since the last scrape are folded into their buckets.
/// Without it a process nobody scrapes keeps every sample (8 bytes a request) until it is.
const METRICS_UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// What [`init_tracing`] started: the span exporter and the log writer thread. Call
/// [`Telemetry::shut_down`] at the end of `main` so the last spans and log lines are written.
#[derive(Debug)]
pub struct Telemetry {
    spans: SpanExport,
    logs: WriterGuard,
}

impl Telemetry {
    /// Sends the buffered spans, then writes the log lines still queued for stdout.
    pub fn shut_down(self) {
        self.spans.shut_down();
        // Dropping the guard makes the writer thread write what is pending and stop.
        drop(self.logs);
    }
}

/// Installs the global tracing subscriber: logs in `format` on stdout (written by a thread of
/// their own, in batches), and spans exported over OTLP when `tracing` names an
/// endpoint (as `service_name` unless configured otherwise).
///
/// `filter` uses `RUST_LOG` syntax. Calling it again (as tests do) keeps the first subscriber.
/// Keep the returned handle and call [`Telemetry::shut_down`] before exiting.
pub fn init_tracing(
    format: LogFormat,
    filter: &str,
    tracing: &TracingConfig,
    service_name: &str,
) -> Telemetry {
    let filter = LogFilter::parse(filter);
    let (otel, spans) = match crate::trace_context::layer(tracing, service_name) {
        Ok(built) => built,
        Err(err) => {
            eprintln!("tracing: spans will not be exported: {err}");
            (None, SpanExport::default())
        }
    };
    // Stdout written by a thread of its own, in batches (see `log_writer`): a request or job
    // never waits on a `write` to stdout, and under load many lines share one.
    let (writer, logs) = log_writer::batched(std::io::stdout(), "log-writer")
        .expect("a thread can be started at start-up");
    // `try_init` fails only when a subscriber is already set, which is fine.
    let _ = match otel {
        // Each layer filters for itself: `RUST_LOG` decides what is logged, while exported
        // spans are the INFO-level ones (requests, jobs, upstream calls) whatever the level.
        Some(otel) => tracing_subscriber::registry()
            .with(otel.with_filter(LevelFilter::INFO))
            .with(log_layer(format, writer).with_filter(filter.per_layer()))
            .try_init(),
        // Nothing exported: one filter for the whole subscriber. A per-layer filter looks the
        // span up in the registry at every enter and exit (each poll of a request's future);
        // a global one decides once per span and callsite.
        None => tracing_subscriber::registry()
            .with(filter.global())
            .with(log_layer(format, writer))
            .try_init(),
    };
    Telemetry { spans, logs }
}

/// The log formatter of `format`, writing to `writer`.
fn log_layer<S>(format: LogFormat, writer: BatchedWriter<Stdout>) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    match format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(json_lines::JsonMembers)
            .event_format(json_lines::JsonLines::default())
            .with_writer(writer)
            .boxed(),
        LogFormat::Pretty => tracing_subscriber::fmt::layer()
            .compact()
            // Colour codes only for a person at a terminal, never into files or pipes.
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .with_writer(writer)
            .boxed(),
    }
}

/// `RUST_LOG`, parsed once.
enum LogFilter {
    /// Only targets and levels (`info`, `warn,sqlx=error`): a static filter that keeps no
    /// per-span state, so entering a span costs it nothing.
    Targets(Box<Targets>),
    /// Directives on spans or fields (`[request]=debug`) need `EnvFilter`'s span tracking;
    /// unparsable ones fall back to `info`.
    Env(Box<EnvFilter>),
}

impl LogFilter {
    fn parse(directives: &str) -> Self {
        // An empty `RUST_LOG` is `EnvFilter`'s (errors only); as `Targets` it would log nothing.
        let static_only =
            !directives.trim().is_empty() && !directives.contains(['[', ']', '{', '}']);
        match directives.parse::<Targets>() {
            Ok(targets) if static_only => Self::Targets(Box::new(targets)),
            _ => Self::Env(Box::new(
                EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info")),
            )),
        }
    }

    fn global<S>(self) -> Box<dyn Layer<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self {
            Self::Targets(targets) => (*targets).boxed(),
            Self::Env(env) => (*env).boxed(),
        }
    }

    fn per_layer<S>(self) -> Box<dyn Filter<S> + Send + Sync>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        match self {
            Self::Targets(targets) => Box::new(*targets),
            Self::Env(env) => Box::new(*env),
        }
    }
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
            let handle = builder
                .install_recorder()
                .expect("the Prometheus recorder is installed only here, once");
            let upkeep = handle.clone();
            // A thread rather than a task: the recorder outlives any one runtime (tests build
            // several), and the upkeep is a few microseconds every few seconds.
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(METRICS_UPKEEP_INTERVAL);
                        upkeep.run_upkeep();
                    }
                })
                .expect("a thread can be started at start-up");
            handle
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

#[cfg(test)]
mod tests {
    use tracing::Level;

    use super::*;

    #[test]
    fn targets_and_levels_take_the_static_filter() {
        let LogFilter::Targets(targets) = LogFilter::parse("warn,common::jobs=debug,sqlx=off")
        else {
            panic!("targets and levels only: the static filter");
        };
        assert!(targets.would_enable("common::jobs::rows", &Level::DEBUG));
        assert!(!targets.would_enable("common::jobs", &Level::TRACE));
        assert!(targets.would_enable("api", &Level::WARN));
        assert!(!targets.would_enable("api", &Level::INFO));
        assert!(!targets.would_enable("sqlx::query", &Level::ERROR));
    }

    #[test]
    fn span_and_field_directives_keep_env_filter() {
        for directives in [
            "info,[request]=debug",
            "warn,[request{method=GET}]=trace",
            " ",
        ] {
            assert!(
                matches!(LogFilter::parse(directives), LogFilter::Env(_)),
                "{directives}"
            );
        }
        let LogFilter::Env(fallback) = LogFilter::parse("info,=x=") else {
            panic!("an unparsable filter falls back to EnvFilter at info");
        };
        assert_eq!(
            EnvFilter::max_level_hint(&fallback),
            Some(LevelFilter::INFO)
        );
    }
}
