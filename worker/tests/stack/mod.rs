//! The stack the end-to-end tests of the job pipeline run: the real `api` and `worker`
//! binaries, real Postgres and Redis, and a fake CoinGecko (a real HTTP server on loopback)
//! whose answers each test scripts.

// Each test crate uses its part of the stack.
#![allow(dead_code)]

use std::collections::VecDeque;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use poem::http::StatusCode;
use poem::web::{Data, Query};
use poem::{EndpointExt, IntoResponse, Response, Route, get, handler};
use serde_json::{Value, json};
use test_support::{
    RunningBinary, TestDatabase, free_port, http_client, redis_prefix, redis_url, wait_until,
    workspace_binary,
};

/// One scripted answer: wait `delay_ms`, then answer `status` (200 = a normal answer).
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub status: u16,
    pub delay_ms: u64,
}

#[derive(Clone, Default)]
pub struct Upstream {
    pub calls: Arc<Mutex<Vec<Instant>>>,
    pub script: Arc<Mutex<VecDeque<Step>>>,
}

impl Upstream {
    pub fn calls(&self) -> usize {
        self.calls.lock().expect("lock").len()
    }
    pub fn call_times(&self) -> Vec<Instant> {
        self.calls.lock().expect("lock").clone()
    }
    pub fn script(&self, steps: impl IntoIterator<Item = Step>) {
        self.script.lock().expect("lock").extend(steps);
    }
}

#[derive(serde::Deserialize)]
pub struct MarketsQuery {
    pub ids: Option<String>,
}

#[handler]
pub async fn markets(upstream: Data<&Upstream>, query: Query<MarketsQuery>) -> Response {
    upstream.calls.lock().expect("lock").push(Instant::now());
    let step = upstream.script.lock().expect("lock").pop_front();
    if let Some(step) = step {
        tokio::time::sleep(Duration::from_millis(step.delay_ms)).await;
        if step.status != 200 {
            return "upstream trouble"
                .with_status(StatusCode::from_u16(step.status).expect("status"))
                .into_response();
        }
    }
    let ids = query
        .ids
        .clone()
        .unwrap_or_else(|| "bitcoin,ethereum,tether".into());
    let rows: Vec<Value> = ids
        .split(',')
        .filter(|id| !id.starts_with("unknown"))
        .enumerate()
        .map(|(i, id)| {
            json!({
                "id": id, "symbol": id, "name": id, "current_price": 100.5 + i as f64,
                "market_cap": 1_000_000.0 - i as f64, "market_cap_rank": i + 1,
                "total_volume": 10.0, "price_change_percentage_24h": 2.5,
                "last_updated": "2026-11-21T10:00:00.000Z"
            })
        })
        .collect();
    poem::web::Json(rows).into_response()
}

pub async fn start_upstream() -> (Upstream, String) {
    let upstream = Upstream::default();
    let app = Route::new()
        .at("/api/v3/coins/markets", get(markets))
        .data(upstream.clone());
    let addr = test_support::serve_on_loopback(app).await;
    (upstream, format!("http://{addr}/api/v3"))
}

/// A Redis server of the test's own, so it can be stopped and started again.
pub struct OwnRedis {
    pub port: u16,
    pub child: Option<Child>,
}

impl OwnRedis {
    pub async fn start() -> Self {
        let mut redis = Self {
            port: free_port(),
            child: None,
        };
        redis.resume().await;
        redis
    }
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
    pub async fn resume(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        wait_until("own redis up", Duration::from_secs(10), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(addr).await.is_ok() }
        })
        .await;
    }
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Postgres, Redis, the fake upstream, the api, and workers started on demand.
pub struct Stack {
    pub db: TestDatabase,
    pub prefix: String,
    pub redis_url: String,
    pub upstream: Upstream,
    pub upstream_url: String,
    pub api: RunningBinary,
    pub token: String,
}

impl Stack {
    pub async fn start() -> Self {
        Self::start_with_redis(redis_url()).await
    }

    pub async fn start_with_redis(redis_url: String) -> Self {
        Self::start_with(redis_url, &[]).await
    }

    /// The stack with extra settings for the api.
    pub async fn start_with(redis_url: String, api_settings: &[(&str, String)]) -> Self {
        let db = TestDatabase::create().await;
        let prefix = redis_prefix();
        let (upstream, upstream_url) = start_upstream().await;
        let port = free_port();
        let env = vec![
            ("DATABASE_URL", db.url().to_owned()),
            ("REDIS_URL", redis_url.clone()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("REDIS_TIMEOUT", "300ms".to_owned()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("PASSWORD_HASH_MEMORY_KIB", "1024".into()),
            ("PASSWORD_HASH_ITERATIONS", "1".into()),
            ("PRICE_PROVIDER", "coingecko".into()),
            ("COINGECKO_BASE_URL", upstream_url.clone()),
        ];
        let mut env = env;
        env.extend(api_settings.iter().cloned());
        let api = RunningBinary::start(&workspace_binary("api"), &env, port, "/health/live").await;
        let registered: Value = http_client()
            .post(format!("{}/api/v1/auth/register", api.base_url))
            .json(&json!({"email": "jobs@example.com", "username": "jobs", "password": "correct-horse-1"}))
            .send()
            .await
            .expect("register")
            .json()
            .await
            .expect("json");
        let token = registered["access_token"]
            .as_str()
            .expect("token")
            .to_owned();
        Self {
            db,
            prefix,
            redis_url,
            upstream,
            upstream_url,
            api,
            token,
        }
    }

    pub async fn start_worker(&self, extra: &[(&str, &str)]) -> RunningBinary {
        let mut settings = vec![
            ("REDIS_URL", self.redis_url.clone()),
            ("REDIS_TIMEOUT", "300ms".to_owned()),
            ("WORKER_RETRY_MAX", "1s".to_owned()),
            ("WORKER_REDIS_GRACE", "30s".to_owned()),
            ("WORKER_SHUTDOWN_TIMEOUT", "10s".to_owned()),
            ("PRICE_REFRESH_INTERVAL", "1h".to_owned()),
            // Refresh jobs are still scheduled, but only tests that want them run them, so
            // the upstream sees nothing but the test's own jobs.
            ("WORKER_QUEUES", "bulk_fetch".to_owned()),
            ("PRICE_PROVIDER", "coingecko".to_owned()),
            ("COINGECKO_BASE_URL", self.upstream_url.clone()),
            ("COINGECKO_MAX_ATTEMPTS", "1".to_owned()),
            ("COINGECKO_CALLS_PER_MINUTE", "60000".to_owned()),
        ];
        settings.extend(extra.iter().map(|(key, value)| (*key, (*value).to_owned())));
        test_support::start_worker(
            Path::new(env!("CARGO_BIN_EXE_worker")),
            self.db.url(),
            &self.prefix,
            &settings,
        )
        .await
    }

    pub async fn bulk(&self, coins: &[String]) -> String {
        let response = http_client()
            .post(format!("{}/api/v1/crypto/bulk", self.api.base_url))
            .bearer_auth(&self.token)
            .json(&json!({ "coins": coins, "vs_currency": "usd" }))
            .send()
            .await
            .expect("bulk");
        assert_eq!(response.status(), 202, "{:?}", response.text().await);
        let job: Value = response.json().await.expect("json");
        job["id"].as_str().expect("id").to_owned()
    }

    pub async fn job(&self, id: &str) -> Value {
        http_client()
            .get(format!("{}/api/v1/jobs/{id}", self.api.base_url))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("job")
            .json()
            .await
            .expect("json")
    }

    pub async fn wait_for_status(&self, id: &str, status: &str, deadline: Duration) -> Value {
        wait_until(&format!("job {id} {status}"), deadline, || async {
            self.job(id).await["status"] == status
        })
        .await;
        self.job(id).await
    }
}

pub async fn metrics_of(worker: &RunningBinary) -> String {
    test_support::get_text(&format!("{}/metrics", worker.base_url)).await
}

pub fn coins(names: &[&str]) -> Vec<String> {
    names.iter().map(|name| (*name).to_owned()).collect()
}
