//! The HTTP request series (`http_requests_total`, `http_request_duration_seconds`,
//! `http_requests_in_flight`), with their handles resolved once per route, method and status.
//!
//! Going through the `metrics` macros on every request builds each series' labels (two
//! allocations for the route and status), hashes them and looks them up in the recorder's
//! registry, three times per request. Here a request costs one lookup in a small map of
//! handles; the first request of a kind registers its series as the macros would. The map is
//! bounded: routes are the router's patterns, methods the standard ones, statuses below 1000.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use dashmap::DashMap;
use metrics::{Counter, Gauge, Histogram};

use crate::platform::route_templates::RouteTemplates;

/// Which requests share a counter: the router's pattern (none when nothing matched), the
/// method label and the status.
#[derive(Debug, PartialEq, Eq, Hash)]
struct SeriesKey {
    pattern: Option<Arc<str>>,
    method: &'static str,
    status: u16,
}

/// The handles one kind of request records into.
#[derive(Debug)]
struct Series {
    requests: Counter,
    duration: Histogram,
}

/// The request series of one app. Handles are resolved on first use, after start-up has
/// installed the recorder.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    in_flight: OnceLock<Gauge>,
    series: DashMap<SeriesKey, Series>,
}

impl HttpMetrics {
    /// Counts a request as being handled until the returned guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        let gauge = self
            .in_flight
            .get_or_init(|| metrics::gauge!("http_requests_in_flight"));
        gauge.increment(1.0);
        InFlight(gauge)
    }

    /// Records one answered request: `pattern` is the route the router matched (none when
    /// nothing did), labelled as documented by `templates`.
    pub fn finished(
        &self,
        templates: &RouteTemplates,
        pattern: Option<&Arc<str>>,
        method: &'static str,
        status: u16,
        elapsed: Duration,
    ) {
        let key = SeriesKey {
            pattern: pattern.cloned(),
            method,
            status,
        };
        let record = |series: &Series| {
            series.requests.increment(1);
            series.duration.record(elapsed.as_secs_f64());
        };
        if let Some(series) = self.series.get(&key) {
            record(&series);
            return;
        }
        let series = self.series.entry(key).or_insert_with(|| {
            let route = pattern.map_or_else(
                || "unmatched".to_owned(),
                |pattern| templates.label(pattern),
            );
            Series {
                requests: metrics::counter!(
                    "http_requests_total",
                    "method" => method,
                    "route" => route.clone(),
                    "status" => status.to_string(),
                ),
                duration: metrics::histogram!(
                    "http_request_duration_seconds",
                    "method" => method,
                    "route" => route,
                ),
            }
        });
        record(&series);
    }
}

/// Holds one request in `http_requests_in_flight`; dropping it (also on a panic or a dropped
/// connection) takes the request out again.
#[derive(Debug)]
pub struct InFlight<'a>(&'a Gauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn line<'a>(text: &'a str, series: &str) -> Option<&'a str> {
        text.lines().find(|line| line.starts_with(series))
    }

    #[test]
    fn series_are_resolved_once_and_a_dropped_request_leaves_the_in_flight_count() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let rendered = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            let metrics = HttpMetrics::default();
            let first = metrics.in_flight();
            let second = metrics.in_flight();
            assert_eq!(
                line(&rendered.render(), "http_requests_in_flight "),
                Some("http_requests_in_flight 2")
            );
            // A request whose client hung up is dropped before it finishes.
            drop(first);
            drop(second);
            assert_eq!(
                line(&rendered.render(), "http_requests_in_flight "),
                Some("http_requests_in_flight 0")
            );

            let templates = RouteTemplates::default();
            let pattern: Arc<str> = Arc::from("/items/:id");
            for status in [200, 200, 404] {
                metrics.finished(
                    &templates,
                    Some(&pattern),
                    "GET",
                    status,
                    Duration::from_millis(3),
                );
            }
            metrics.finished(&templates, None, "other", 404, Duration::ZERO);
            assert_eq!(metrics.series.len(), 3);
            let text = rendered.render();
            for expected in [
                r#"http_requests_total{method="GET",route="/items/{id}",status="200"} 2"#,
                r#"http_requests_total{method="GET",route="/items/{id}",status="404"} 1"#,
                r#"http_requests_total{method="other",route="unmatched",status="404"} 1"#,
                r#"http_request_duration_seconds_count{method="GET",route="/items/{id}"} 3"#,
            ] {
                assert!(text.contains(expected), "{expected} in:\n{text}");
            }
        });
    }
}
