//! Tracing and Prometheus metrics, set up once per process.
//!
//! The Prometheus recorder is the one piece of global state in Coinpulse: the `metrics`
//! macros need a process-wide recorder. [`install_metrics`] is idempotent so tests that build
//! several apps in one process share it.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

/// Buckets for HTTP latencies: most requests take a few milliseconds, slow ones seconds.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
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

/// Installs the global tracing subscriber.
///
/// `filter` uses `RUST_LOG` syntax. Calling it again (as tests do) keeps the first subscriber.
pub fn init_tracing(format: LogFormat, filter: &str) {
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    // `try_init` fails only when a subscriber is already set, which is fine.
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry
            .with(tracing_subscriber::fmt::layer().compact())
            .try_init(),
    };
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
    metrics::gauge!("coinpulse_build_info", "version" => crate::VERSION, "binary" => binary)
        .set(1.0);
    handle
}

/// Records the state of a Postgres pool as `db_pool_connections{state="idle"|"in_use"|"max"}`.
///
/// Called right before rendering `/metrics`, so the gauges are exact at scrape time without a
/// background sampler.
pub fn record_pool_gauges(pool: &sqlx::PgPool) {
    let size = f64::from(pool.size());
    // `num_idle` is a usize; pools here hold at most a few hundred connections.
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_pool_connections", "state" => "in_use").set((size - idle).max(0.0));
    metrics::gauge!("db_pool_connections", "state" => "max")
        .set(f64::from(pool.options().get_max_connections()));
}
