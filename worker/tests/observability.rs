//! The dashboards and alert rules against a live system: the real `api` and `worker` binaries
//! under load, scraped by a real Prometheus (Debian's `prometheus` package) that loads
//! `deployments/prometheus/rules.yml`. Every dashboard query and every rule expression must
//! return data: a panel that errors or stays empty here would do the same for an operator.

mod stack;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use test_support::{free_port, http_client, wait_until};

use self::stack::*;

/// A Prometheus server of the test's own, scraping every second.
struct Prometheus {
    child: Child,
    url: String,
    dir: PathBuf,
}

impl Prometheus {
    async fn start(targets: &[(&str, &str)]) -> Self {
        let dir =
            std::env::temp_dir().join(format!("coinpulse-prometheus-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).expect("prometheus dir");
        let rules = repository().join("deployments/prometheus/rules.yml");
        let scrape: String = targets
            .iter()
            .map(|(job, address)| {
                format!(
                    "  - job_name: {job}\n    static_configs:\n      - targets: [\"{address}\"]\n"
                )
            })
            .collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n{scrape}",
            rules.display()
        );
        std::fs::write(dir.join("prometheus.yml"), config).expect("config");
        let port = free_port();
        let child = Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus (scripts/services.sh tools installs it)");
        let url = format!("http://127.0.0.1:{port}");
        let ready = format!("{url}/-/ready");
        wait_until("prometheus ready", Duration::from_secs(30), || {
            let ready = ready.clone();
            async move {
                matches!(http_client().get(&ready).send().await, Ok(response) if response.status() == 200)
            }
        })
        .await;
        Self { child, url, dir }
    }

    /// Evaluates `query` now: `Ok(result)` or `Err(the error)`.
    async fn query(&self, query: &str) -> Result<Vec<Value>, String> {
        let answer: Value = http_client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
            .map_err(|err| err.to_string())?
            .json()
            .await
            .map_err(|err| err.to_string())?;
        if answer["status"] != "success" {
            return Err(answer["error"].to_string());
        }
        Ok(answer["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }

    async fn rules(&self) -> Vec<Value> {
        let answer: Value = http_client()
            .get(format!("{}/api/v1/rules", self.url))
            .send()
            .await
            .expect("rules")
            .json()
            .await
            .expect("json");
        answer["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|group| group["rules"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Every panel query of every dashboard, with Grafana's variables set as "all".
fn dashboard_queries() -> Vec<(String, String)> {
    let mut queries = Vec::new();
    for entry in std::fs::read_dir(repository().join("grafana")).expect("grafana dir") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|ext| ext.to_str()) != Some("json") {
            continue;
        }
        let board: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
        for panel in board["panels"].as_array().expect("panels") {
            for target in panel["targets"].as_array().cloned().unwrap_or_default() {
                let expr = target["expr"]
                    .as_str()
                    .expect("expr")
                    .replace("$__rate_interval", "30s")
                    .replace("$__range", "5m")
                    .replace("$instance", ".*")
                    .replace("$queue", ".*");
                let name = format!(
                    "{} / {}",
                    board["title"].as_str().unwrap_or("?"),
                    panel["title"].as_str().unwrap_or("?")
                );
                queries.push((name, expr));
            }
        }
    }
    queries
}

/// An alert's expression without its thresholds: what it compares must have data, whether or
/// not the alert fires.
fn without_thresholds(expr: &str) -> String {
    let comparison = regex::Regex::new(r"(==|!=|>=|<=|>|<)\s*(\([^()]*\)|[0-9.]+)").expect("regex");
    comparison.replace_all(expr, "").into_owned()
}

#[tokio::test]
async fn every_dashboard_query_and_rule_expression_returns_data_from_live_binaries() {
    let stack = Stack::start().await;
    let outbox = std::env::temp_dir().join(format!("coinpulse-outbox-{}", uuid::Uuid::now_v7()));
    let worker = stack
        .start_worker(&[
            (
                "WORKER_QUEUES",
                "bulk_fetch,price_refresh,alert_eval,notify,email",
            ),
            ("EMAIL_OUTBOX_DIR", outbox.to_str().expect("utf-8 path")),
        ])
        .await;
    let prometheus = Prometheus::start(&[
        (
            "coinpulse-api",
            stack.api.base_url.trim_start_matches("http://"),
        ),
        (
            "coinpulse-worker",
            worker.base_url.trim_start_matches("http://"),
        ),
    ])
    .await;

    // Load: price reads, bulk fetches (one rate-limited by the provider, so 429s are seen),
    // failing and succeeding jobs, a welcome email (registration), an unauthorised call.
    stack.upstream.script([Step {
        status: 429,
        delay_ms: 0,
    }]);
    let client = http_client();
    let queries = dashboard_queries();
    let rules = prometheus.rules().await;
    assert!(rules.len() >= 15, "rules loaded: {rules:?}");
    // Polls until everything has data (scrapes every second, gauges sampled every 5 s),
    // loading the system each round; on the deadline, fails naming what is still empty.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    for round in 0.. {
        stack
            .bulk(&coins(&["bitcoin", &format!("coin-{round}")]))
            .await;
        for path in [
            "/api/v1/crypto/prices/bitcoin",
            "/api/v1/users/me",
            "/health/ready",
        ] {
            let _ = client
                .get(format!("{}{path}", stack.api.base_url))
                .bearer_auth(&stack.token)
                .send()
                .await;
        }
        let mut missing = Vec::new();
        for (name, expr) in &queries {
            match prometheus.query(expr).await {
                Ok(result) if !result.is_empty() => {}
                Ok(_) => missing.push(format!("{name}: no data for {expr}")),
                Err(err) => missing.push(format!("{name}: {err} in {expr}")),
            }
        }
        for rule in &rules {
            let name = rule["name"].as_str().unwrap_or("?");
            let expr = without_thresholds(rule["query"].as_str().expect("query"));
            match prometheus.query(&expr).await {
                Ok(result) if !result.is_empty() => {}
                Ok(_) => missing.push(format!("rule {name}: no data for {expr}")),
                Err(err) => missing.push(format!("rule {name}: {err} in {expr}")),
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still without data after 120 s:\n{}",
            missing.join("\n")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Every rule evaluates without error in Prometheus itself, too.
    for rule in prometheus.rules().await {
        assert_eq!(rule["health"], "ok", "{rule}");
    }
    let _ = std::fs::remove_dir_all(outbox);
}

#[test]
fn the_alert_rules_pass_their_unit_tests_and_the_config_is_valid() {
    let dir = repository().join("deployments/prometheus");
    for args in [
        vec!["test", "rules", "rules.test.yml"],
        vec!["check", "config", "prometheus.yml"],
    ] {
        let output = Command::new("promtool")
            .args(&args)
            .current_dir(&dir)
            .output()
            .expect("run promtool (scripts/services.sh tools installs it)");
        assert!(
            output.status.success(),
            "promtool {}:\n{}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
