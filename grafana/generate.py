#!/usr/bin/env python3
"""Writes the Coinpulse Grafana dashboards (grafana/*.json) from the definitions below.

Edit here, run `python3 grafana/generate.py`, commit both. Every query uses only metric names
the binaries export (the metrics contract); worker/tests/observability.rs evaluates each one
against live binaries and a real Prometheus, so a panel that errors or stays empty fails CI.
"""

import json
import pathlib

HERE = pathlib.Path(__file__).resolve().parent
DS = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}


def variable(name, label, query):
    return {
        "name": name, "label": label, "type": "query", "datasource": DS,
        "definition": query, "query": query,
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "hide": 0, "includeAll": True, "multi": True, "options": [], "refresh": 2,
        "regex": "", "sort": 1,
    }


def target(expr, legend="", ref="A"):
    return {"datasource": DS, "expr": expr, "legendFormat": legend, "range": True, "refId": ref}


def stat(title, description, expr, unit="short", steps=None):
    return {
        "type": "stat", "title": title, "description": description,
        "fieldConfig": {"defaults": {
            "unit": unit, "color": {"mode": "thresholds"},
            "thresholds": {"mode": "absolute", "steps": steps or [{"color": "green", "value": None}]},
        }, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                    "colorMode": "value", "graphMode": "area", "justifyMode": "auto",
                    "orientation": "auto", "textMode": "auto"},
        "targets": [target(expr)], "datasource": DS, "_size": (4, 4),
    }


def series(title, description, targets, unit="short", width=12, stack=False, max_value=None):
    defaults = {
        "unit": unit, "min": 0, "color": {"mode": "palette-classic"},
        "custom": {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10, "showPoints": "never",
                   "spanNulls": False,
                   "stacking": {"mode": "normal" if stack else "none", "group": "A"}},
    }
    if max_value is not None:
        defaults["max"] = max_value
    return {
        "type": "timeseries", "title": title, "description": description,
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                               "calcs": ["mean", "max"]},
                    "tooltip": {"mode": "multi", "sort": "desc"}},
        "targets": [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(targets)],
        "datasource": DS, "_size": (8, width),
    }


def table(title, description, expr):
    return {
        "type": "table", "title": title, "description": description,
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {"showHeader": True},
        "targets": [dict(target(expr), format="table", instant=True, range=False)],
        "transformations": [{"id": "organize", "options": {
            "excludeByName": {"Time": True, "Value": True, "__name__": True}}}],
        "datasource": DS, "_size": (6, 24),
    }


def row(title):
    return {"type": "row", "title": title, "collapsed": False, "panels": [], "_size": (1, 24)}


def dashboard(uid, title, description, variables, panels, links):
    x = y = 0
    line_height = 0
    laid = []
    for number, panel in enumerate(panels, start=1):
        height, width = panel.pop("_size")
        if panel["type"] == "row" or x + width > 24:
            x, y = 0, y + line_height
            line_height = 0
        panel["id"] = number
        panel["gridPos"] = {"h": height, "w": width, "x": x, "y": y}
        x += width
        line_height = max(line_height, height)
        if panel["type"] == "row":
            x, y, line_height = 0, y + height, 0
        laid.append(panel)
    return {
        "annotations": {"list": [{"builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                                  "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
                                  "name": "Annotations & Alerts", "type": "dashboard"}]},
        "description": description, "editable": True, "fiscalYearStartMonth": 0, "graphTooltip": 1,
        "id": None,
        "links": [{"title": name, "type": "link", "url": f"/d/{other}", "icon": "dashboard",
                   "keepTime": True, "includeVars": False, "asDropdown": False, "tags": [],
                   "targetBlank": False, "tooltip": ""} for other, name in links if other != uid],
        "panels": laid, "refresh": "30s", "schemaVersion": 39, "tags": ["coinpulse"],
        "templating": {"list": [{"name": "DS_PROMETHEUS", "label": "Prometheus", "type": "datasource",
                                 "query": "prometheus", "current": {}, "hide": 0, "includeAll": False,
                                 "multi": False, "options": [], "refresh": 1, "regex": ""}] + variables},
        "time": {"from": "now-1h", "to": "now"}, "timepicker": {}, "timezone": "", "title": title,
        "uid": uid, "version": 1, "weekStart": "",
    }


LINKS = [("coinpulse-api", "Coinpulse API"), ("coinpulse-queues", "Coinpulse queues"),
         ("coinpulse-upstream", "Coinpulse upstream"), ("coinpulse-health", "Coinpulse health")]
API = 'instance=~"$instance"'
Q = 'queue=~"$queue", instance=~"$instance"'
RATE = "[$__rate_interval]"


def quantiles(metric, by, selector):
    return [(f"histogram_quantile({q}, sum by (le, {by}) (rate({metric}_bucket{{{selector}}}{RATE})))",
             f"p{int(q * 100)} {{{{{by}}}}}") for q in (0.5, 0.95, 0.99)]


api = dashboard(
    "coinpulse-api", "Coinpulse API",
    "Requests, errors, latency by route, rate limiting and live streams of the Coinpulse API processes.",
    [variable("instance", "Instance", 'label_values(coinpulse_build_info{binary="api"}, instance)')],
    [
        row("Overview"),
        stat("Requests / s", "All answered requests.", f"sum(rate(http_requests_total{{{API}}}{RATE}))", "reqps"),
        stat("5xx ratio", "Share of responses that were server errors (alert: over 5% for 5 minutes).",
             f'(sum(rate(http_requests_total{{status=~"5..", {API}}}{RATE})) or vector(0)) / sum(rate(http_requests_total{{{API}}}{RATE}))',
             "percentunit", [{"color": "green", "value": None}, {"color": "orange", "value": 0.01}, {"color": "red", "value": 0.05}]),
        stat("p99 latency", "Time to the response head, all routes.",
             f"histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{{{API}}}{RATE})))", "s"),
        stat("Slow responses (SLO)", "Share of responses over 500 ms; the SLO allows 1%.",
             f'1 - sum(rate(http_request_duration_seconds_bucket{{le="0.5", {API}}}{RATE})) / sum(rate(http_request_duration_seconds_count{{{API}}}{RATE}))',
             "percentunit", [{"color": "green", "value": None}, {"color": "red", "value": 0.01}]),
        stat("In flight", "Requests being handled now.", f"sum(http_requests_in_flight{{{API}}})"),
        stat("Stream clients", "Open SSE and WebSocket connections.", f"sum(stream_clients{{{API}}})"),
        row("Traffic"),
        series("Requests by route and status", "http_requests_total by route template and status.",
               [(f"sum by (route, status) (rate(http_requests_total{{{API}}}{RATE}))", "{{route}} {{status}}")], "reqps"),
        series("5xx ratio by route", "Server errors as a share of each route's responses.",
               [(f'(sum by (route) (rate(http_requests_total{{status=~"5..", {API}}}{RATE})) or 0 * sum by (route) (rate(http_requests_total{{{API}}}{RATE}))) / sum by (route) (rate(http_requests_total{{{API}}}{RATE}))', "{{route}}")],
               "percentunit"),
        row("Latency (http_request_duration_seconds)"),
        series("p50 latency by route", "Median time to the response head.",
               [(f"histogram_quantile(0.5, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{API}}}{RATE})))", "{{route}}")], "s", 8),
        series("p95 latency by route", "95th percentile.",
               [(f"histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{API}}}{RATE})))", "{{route}}")], "s", 8),
        series("p99 latency by route", "99th percentile.",
               [(f"histogram_quantile(0.99, sum by (le, route) (rate(http_request_duration_seconds_bucket{{{API}}}{RATE})))", "{{route}}")], "s", 8),
        row("Load, limits and streams"),
        series("Requests in flight", "Per API process.",
               [(f"sum by (instance) (http_requests_in_flight{{{API}}})", "{{instance}}")], "short", 8),
        series("Rate limited", "429 answers by scope (general, auth, account).",
               [(f"sum by (scope) (rate(rate_limited_total{{{API}}}{RATE}))", "{{scope}}")], "reqps", 8),
        series("Stream clients", "Open streams by kind.",
               [(f"sum by (kind) (stream_clients{{{API}}})", "{{kind}}")], "short", 8),
        series("Stream messages dropped", "Messages not delivered to clients too slow to read them (they are then closed).",
               [(f"sum by (kind) (rate(stream_messages_dropped_total{{{API}}}{RATE}))", "{{kind}}")], "ops"),
        series("Stream resumes", "Event-stream reconnections: replayed from history, or told to resync.",
               [(f"sum by (outcome) (rate(stream_resumes_total{{{API}}}{RATE}))", "{{outcome}}")], "ops"),
    ],
    LINKS,
)

queues = dashboard(
    "coinpulse-queues", "Coinpulse queues",
    "Backlog, latency, throughput, outcomes, retries and dead jobs of the Coinpulse job queues, and the workers consuming them.",
    [variable("instance", "Instance", 'label_values(coinpulse_build_info{binary="worker"}, instance)'),
     variable("queue", "Queue", "label_values(queue_depth, queue)")],
    [
        row("Overview"),
        stat("Backlog", "Jobs ready and waiting, all selected queues (one value per queue: every worker reports every queue).",
             f"sum(max by (queue) (queue_depth{{{Q}}}))", "short",
             [{"color": "green", "value": None}, {"color": "orange", "value": 200}, {"color": "red", "value": 1000}]),
        stat("Oldest job age", "How long the oldest ready job has waited (the queue's latency; alert: over 2 minutes).",
             f"max(queue_oldest_job_age_seconds{{{Q}}})", "s",
             [{"color": "green", "value": None}, {"color": "orange", "value": 30}, {"color": "red", "value": 120}]),
        stat("Completed / s", "Job attempts finished.", f"sum(rate(jobs_completed_total{{{Q}}}{RATE}))", "ops"),
        stat("Dead (time range)", "Jobs that used their last attempt.",
             f"sum(increase(jobs_dead_total{{{Q}}}[$__range]))", "short",
             [{"color": "green", "value": None}, {"color": "red", "value": 1}]),
        stat("Workers", "Workers holding a lease, summed over queues.", f"sum(max by (queue) (queue_workers{{{Q}}}))"),
        stat("Paused queues", "Queues operators paused (POST /admin/queues/{queue}/pause).",
             f"sum(max by (queue) (queue_paused{{{Q}}}))", "short",
             [{"color": "green", "value": None}, {"color": "orange", "value": 1}]),
        row("Backlog and latency"),
        series("Queue depth", "queue_depth: jobs ready and waiting.",
               [(f"max by (queue) (queue_depth{{{Q}}})", "{{queue}}")]),
        series("Oldest job age", "queue_oldest_job_age_seconds: what to scale and alert on.",
               [(f"max by (queue) (queue_oldest_job_age_seconds{{{Q}}})", "{{queue}}")], "s"),
        series("Job wait (ready → start)", "job_wait_seconds quantiles per queue.",
               quantiles("job_wait_seconds", "queue", Q), "s"),
        series("Job run time", "job_duration_seconds quantiles per queue.",
               quantiles("job_duration_seconds", "queue", Q), "s"),
        row("Throughput and outcomes"),
        series("Enqueued by queue", "jobs_enqueued_total: jobs handed to Redis.",
               [(f"sum by (queue) (rate(jobs_enqueued_total{{{Q}}}{RATE}))", "{{queue}}")], "ops", 8),
        series("Completed by outcome", "jobs_completed_total by queue and outcome (succeeded, failed, dead, skipped, cancelled).",
               [(f"sum by (queue, outcome) (rate(jobs_completed_total{{{Q}}}{RATE}))", "{{queue}} {{outcome}}")], "ops", 8),
        series("Retries", "Attempts that failed and will be retried (outcome failed).",
               [(f'sum by (queue) (rate(jobs_completed_total{{outcome="failed", {Q}}}{RATE}))', "{{queue}}")], "ops", 8),
        series("Dead jobs", "jobs_dead_total: inspect with GET /admin/jobs?status=dead, then retry or discard.",
               [(f"sum by (queue) (increase(jobs_dead_total{{{Q}}}{RATE}))", "{{queue}}")], "short", 8),
        series("Rescued jobs", "jobs_rescued_total: jobs Redis lost, pushed again from Postgres.",
               [(f"sum by (queue) (increase(jobs_rescued_total{{{Q}}}{RATE}))", "{{queue}}")], "short", 8),
        series("Rescue rounds", "Rounds of the rescuer (one process at a time).",
               [(f"sum(rate(rescue_rounds_total{{{API}}}{RATE}))", "rounds")], "ops", 8),
        row("Workers"),
        series("Workers by queue", "queue_workers: workers with a live lease.",
               [(f"max by (queue) (queue_workers{{{Q}}})", "{{queue}}")], "short", 8),
        series("Jobs in flight", "jobs_in_flight per queue, all processes.",
               [(f"sum by (queue) (jobs_in_flight{{{Q}}})", "{{queue}}")], "short", 8),
        series("Paused", "queue_paused: 1 while paused.",
               [(f"max by (queue) (queue_paused{{{Q}}})", "{{queue}}")], "short", 8, max_value=1),
    ],
    LINKS,
)

upstream = dashboard(
    "coinpulse-upstream", "Coinpulse upstream",
    "The price provider (calls, 429s, budget, circuit breaker, latency), the price cache and email delivery.",
    [variable("instance", "Instance", "label_values(coinpulse_build_info, instance)")],
    [
        row("Price provider"),
        stat("Calls / min", "Upstream requests, all processes.",
             f"sum(rate(upstream_requests_total{{{API}}}{RATE})) * 60", "short"),
        stat("Budget use", "Upstream calls per minute over COINGECKO_CALLS_PER_MINUTE (shared by all processes).",
             f"sum(rate(upstream_requests_total{{{API}}}{RATE})) * 60 / max(upstream_budget_per_minute{{{API}}})",
             "percentunit", [{"color": "green", "value": None}, {"color": "orange", "value": 0.8}, {"color": "red", "value": 1}]),
        stat("429 share", "Requests the provider refused for rate (the budget should keep this at 0).",
             f'(sum(rate(upstream_requests_total{{status="429", {API}}}{RATE})) or vector(0)) / sum(rate(upstream_requests_total{{{API}}}{RATE}))',
             "percentunit", [{"color": "green", "value": None}, {"color": "red", "value": 0.01}]),
        stat("Breaker", "Worst circuit breaker state of any process: 0 closed, 1 half-open, 2 open.",
             f"max(upstream_breaker_state{{{API}}})", "short",
             [{"color": "green", "value": None}, {"color": "orange", "value": 1}, {"color": "red", "value": 2}]),
        row("Calls"),
        series("Requests by status", "upstream_requests_total by provider and HTTP status (error: no answer).",
               [(f"sum by (provider, status) (rate(upstream_requests_total{{{API}}}{RATE}))", "{{provider}} {{status}}")], "reqps"),
        series("429s", "Rate-limit refusals by the provider.",
               [(f'sum by (provider) (rate(upstream_requests_total{{status="429", {API}}}{RATE}))', "{{provider}}")], "reqps"),
        series("Upstream latency", "upstream_request_duration_seconds quantiles.",
               quantiles("upstream_request_duration_seconds", "provider", API), "s"),
        series("Circuit breaker by process", "upstream_breaker_state: 0 closed, 1 half-open, 2 open.",
               [(f"max by (instance, provider) (upstream_breaker_state{{{API}}})", "{{instance}}")], "short", max_value=2),
        row("Price cache and email"),
        series("Price cache hit ratio", "Lookups answered from the Redis price cache.",
               [(f'sum(rate(price_cache_requests_total{{result="hit", {API}}}{RATE})) / sum(rate(price_cache_requests_total{{{API}}}{RATE}))', "hit ratio")],
               "percentunit", 8),
        series("Coalesced lookups", "Lookups that waited for another lookup's provider call instead of making one.",
               [(f"sum(rate(price_lookups_coalesced_total{{{API}}}{RATE}))", "coalesced")], "ops", 8),
        series("Emails by outcome", "emails_sent_total: sent, outbox, duplicate, no_recipient, failed.",
               [(f"sum by (outcome) (rate(emails_sent_total{{{API}}}{RATE}))", "{{outcome}}")], "ops", 8),
    ],
    LINKS,
)

health = dashboard(
    "coinpulse-health", "Coinpulse health",
    "Postgres and Redis as each Coinpulse process sees them, connection pools, and the versions running.",
    [variable("instance", "Instance", "label_values(coinpulse_build_info, instance)")],
    [
        row("Dependencies"),
        stat("Postgres reachable", "Processes whose last ping to Postgres failed show 0.",
             f'min(dependency_up{{dependency="postgres", {API}}})', "short",
             [{"color": "red", "value": None}, {"color": "green", "value": 1}]),
        stat("Redis reachable", "Processes whose last ping to Redis failed show 0.",
             f'min(dependency_up{{dependency="redis", {API}}})', "short",
             [{"color": "red", "value": None}, {"color": "green", "value": 1}]),
        stat("Processes up", "Scrape targets answering (api and worker).",
             'sum(up{job=~"coinpulse.*", instance=~"$instance"})'),
        row("Round trips and pools"),
        series("Dependency reachable by process", "dependency_up: 1 answered, 0 not (pinged every 5 s).",
               [(f"min by (instance, dependency) (dependency_up{{{API}}})", "{{instance}} {{dependency}}")], "short", max_value=1),
        series("Ping round trip", "dependency_ping_seconds: a slow Postgres or Redis shows here first.",
               [(f"max by (instance, dependency) (dependency_ping_seconds{{{API}}})", "{{instance}} {{dependency}}")], "s"),
        series("Postgres pool connections", "db_pool_connections by state; max is the pool size.",
               [(f'sum by (instance, state) (db_pool_connections{{state!="max", {API}}})', "{{instance}} {{state}}"),
                (f'sum by (instance) (db_pool_connections{{state="max", {API}}})', "{{instance}} max")], "short", 24),
        table("Build info", "The version each process runs.", f"coinpulse_build_info{{{API}}}"),
    ],
    LINKS,
)

for name, board in [("coinpulse-api", api), ("coinpulse-queues", queues),
                    ("coinpulse-upstream", upstream), ("coinpulse-health", health)]:
    (HERE / f"{name}.json").write_text(json.dumps(board, indent=2, ensure_ascii=False) + "\n")
