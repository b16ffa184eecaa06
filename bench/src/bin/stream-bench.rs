//! `stream-bench`: price-tick fan-out to many SSE clients of one api process.
//!
//! Starts the release `api` binary (`STREAM_BENCH_API`, default `target/release/api`) on the
//! benchmark's Postgres and Redis, registers a user, and for each N in `STREAM_BENCH_CLIENTS`
//! (`1000,10000`) opens N `GET /api/v1/stream/prices?coins=bitcoin&interval=0` connections
//! (plain sockets: the client side costs as little as it can). Then `STREAM_BENCH_ROUNDS` (20)
//! times it publishes a price tick exactly as a worker does (`common::events::Publisher`) and
//! waits until every client has read it. Latency = receipt − publish, on one clock (this
//! process). Memory = the server's RSS with the N clients connected minus its RSS before
//! them, per connection. The same is measured first on `bench-hello /sse`
//! (`STREAM_BENCH_BASELINE`, default `target/release/bench-hello`), a bare Poem relay of the
//! same channel, and the report gives the api's figures as ratios to it. Targets: p99 ≤ 100 ms
//! at 10,000 clients, ≤ 30 KB per connection.
//!
//! Prints a markdown report on stdout, progress on stderr. Settings: `DATABASE_URL`,
//! `REDIS_URL`, `STREAM_BENCH_*` above, `STREAM_BENCH_ADDR` (127.0.0.1:18095). Needs a file
//! descriptor limit above twice the largest N (`scripts/bench.sh` raises it).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use common::config::RedisConfig;
use common::events::{Event, Publisher};
use common::redis::Redis;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Api {
    child: Child,
    addr: String,
}

impl Drop for Api {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Api {
    fn rss_kib(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/PID/status")
    }
}

/// One HTTP/1.1 exchange on a fresh connection; the response body.
async fn http(addr: &str, request: String) -> anyhow::Result<String> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    Ok(response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default())
}

async fn register(addr: &str) -> anyhow::Result<String> {
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let body = json!({"email": format!("stream-{suffix}@example.com"),
                      "username": format!("s{}", &suffix[..20]), "password": "bench-password-123"})
    .to_string();
    let response = http(
        addr,
        format!(
            "POST /api/v1/auth/register HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )
    .await?;
    let start = response
        .find('{')
        .context("no JSON in the register response")?;
    let value: serde_json::Value =
        serde_json::from_str(response[start..].trim_end_matches(|c: char| c != '}'))?;
    value["access_token"]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no token in {value}"))
}

async fn stream_clients(addr: &str) -> anyhow::Result<f64> {
    let body = http(
        addr,
        "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".into(),
    )
    .await?;
    Ok(body
        .lines()
        .find_map(|line| line.strip_prefix("stream_clients{kind=\"prices\"}"))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0))
}

/// One client: sends `request`, says when the response has started, then reports each round
/// it sees (`"price":"<round>.5"`).
async fn client(
    addr: String,
    request: Arc<str>,
    ready: mpsc::UnboundedSender<()>,
    rounds: mpsc::UnboundedSender<(u64, Instant)>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(&addr).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut buffer = vec![0u8; 4096];
    let mut pending = String::new();
    let mut started = false;
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        let at = Instant::now();
        pending.push_str(&String::from_utf8_lossy(&buffer[..read]));
        if !started {
            if !pending.starts_with("HTTP/1.1 200") {
                bail!("the stream was refused: {pending}");
            }
            started = true;
            let _ = ready.send(());
        }
        while let Some(found) = pending.find("\"price\":\"") {
            let rest = &pending[found + 9..];
            let Some(dot) = rest.find('.') else { break };
            if let Ok(round) = rest[..dot].parse::<u64>() {
                let _ = rounds.send((round, at));
            }
            pending.drain(..found + 9 + dot);
        }
        if pending.len() > 8192 {
            pending.clear();
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn ms(duration: Duration) -> String {
    format!("{:.1}", duration.as_secs_f64() * 1000.0)
}

/// What one measurement found.
struct Measured {
    p50: Duration,
    p99: Duration,
    max: Duration,
    idle_kib: u64,
    connected_kib: u64,
    after_kib: u64,
}

impl Measured {
    fn kib_per_connection(&self, clients: usize) -> f64 {
        self.connected_kib.saturating_sub(self.idle_kib) as f64 / clients as f64
    }

    fn row(&self, server: &str, clients: usize) -> String {
        format!(
            "| {server} | {clients} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.idle_kib as f64 / 1024.0,
            self.connected_kib as f64 / 1024.0,
            self.after_kib as f64 / 1024.0,
            self.kib_per_connection(clients),
        )
    }
}

/// Opens `clients` streams on `server` with `request`, publishes `rounds` ticks, and measures.
async fn measure(
    server: &Api,
    request: &str,
    publisher: &Publisher,
    clients: usize,
    rounds: u64,
) -> anyhow::Result<Measured> {
    let idle = server.rss_kib()?;
    let request: Arc<str> = request.into();
    let (sender, mut received) = mpsc::unbounded_channel();
    let (ready_sender, mut ready) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(clients);
    for chunk in 0..clients.div_ceil(500) {
        let opening = ((chunk + 1) * 500).min(clients) - chunk * 500;
        for _ in 0..opening {
            tasks.push(tokio::spawn(client(
                server.addr.clone(),
                request.clone(),
                ready_sender.clone(),
                sender.clone(),
            )));
        }
        for _ in 0..opening {
            tokio::time::timeout(Duration::from_secs(60), ready.recv())
                .await
                .context("streams did not open within 60 s")?
                .context("a client failed")?;
        }
    }
    eprintln!(
        "stream-bench: {clients} clients connected to {}",
        server.addr
    );
    let connected = server.rss_kib()?;
    let mut latencies = Vec::with_capacity(clients * rounds as usize);
    let base_round = rand_round();
    for round in base_round..base_round + rounds {
        let event = Event::new(
            "prices",
            json!({"vs_currency": "usd", "source": "simulated", "quotes": [{
                "coin_id": "bitcoin", "price": format!("{round}.5"),
                "change_24h_pct": null, "quoted_at": chrono::Utc::now()}]}),
        );
        let published = Instant::now();
        publisher.prices(&event).await?;
        let mut seen = 0;
        let deadline = published + Duration::from_secs(60);
        while seen < clients {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, received.recv()).await {
                Ok(Some((got, at))) if got == round => {
                    seen += 1;
                    latencies.push(at.saturating_duration_since(published));
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => {
                    bail!("round {round}: {seen} of {clients} clients got the tick")
                }
            }
        }
    }
    let after = server.rss_kib()?;
    for task in &tasks {
        task.abort();
    }
    latencies.sort();
    Ok(Measured {
        p50: percentile(&latencies, 50.0),
        p99: percentile(&latencies, 99.0),
        max: latencies.last().copied().unwrap_or_default(),
        idle_kib: idle,
        connected_kib: connected,
        after_kib: after,
    })
}

/// A round number no earlier run used (the marker clients look for).
fn rand_round() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(1) * 1000
}

/// Starts `binary` with `env` and waits until `ready_path` answers.
async fn start(
    binary: &str,
    addr: &str,
    env: &[(&str, &str)],
    ready_path: &str,
) -> anyhow::Result<Api> {
    let child = Command::new(binary)
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let server = Api {
        child,
        addr: addr.to_owned(),
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(body) = http(
            addr,
            format!("GET {ready_path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"),
        )
        .await
            && !body.is_empty()
        {
            return Ok(server);
        }
        if Instant::now() > deadline {
            bail!("{binary} did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `subscribers` processes listen on the prices channel.
async fn wait_subscribed(redis: &Redis, subscribers: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut conn = redis.conn().await?;
        let counts: Vec<(String, u64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(redis.key("prices"))
            .query_async(&mut conn)
            .await?;
        if counts
            .first()
            .is_some_and(|(_, count)| *count >= subscribers)
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the servers did not subscribe to prices within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the api counts no stream client (the previous size's are gone).
async fn wait_drained(api: &Api) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while stream_clients(&api.addr).await? > 0.0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let redis_url = std::env::var("REDIS_URL").context("REDIS_URL")?;
    let api_binary =
        std::env::var("STREAM_BENCH_API").unwrap_or_else(|_| "target/release/api".into());
    let hello_binary = std::env::var("STREAM_BENCH_BASELINE")
        .unwrap_or_else(|_| "target/release/bench-hello".into());
    let api_addr = std::env::var("STREAM_BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:18095".into());
    let hello_addr =
        std::env::var("STREAM_BENCH_BASELINE_ADDR").unwrap_or_else(|_| "127.0.0.1:18096".into());
    let rounds: u64 = std::env::var("STREAM_BENCH_ROUNDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(20);
    let sizes: Vec<usize> = std::env::var("STREAM_BENCH_CLIENTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let prefix = format!("stream-bench:{}:", uuid::Uuid::new_v4().simple());

    let api = start(
        &api_binary,
        &api_addr,
        &[
            ("DATABASE_URL", &database_url),
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", &prefix),
            ("API_ADDR", &api_addr),
            ("RUST_LOG", "warn"),
            ("LOG_FORMAT", "json"),
            ("PASSWORD_HASH_MEMORY_KIB", "1024"),
            ("PASSWORD_HASH_ITERATIONS", "1"),
            ("RATE_LIMIT_PER_MINUTE", "100000000"),
            ("RATE_LIMIT_BURST", "1000000"),
            ("AUTH_RATE_LIMIT_PER_MINUTE", "100000000"),
            ("AUTH_RATE_LIMIT_BURST", "1000000"),
            ("STREAM_MAX_PER_USER", "10000"),
        ],
        "/health/live",
    )
    .await?;
    let hello = start(
        &hello_binary,
        &hello_addr,
        &[
            ("BENCH_HELLO_ADDR", &hello_addr),
            ("BENCH_HELLO_REDIS_URL", &redis_url),
            ("BENCH_HELLO_PREFIX", &prefix),
        ],
        "/",
    )
    .await?;
    let token = register(&api.addr).await?;
    let redis = Redis::new(&RedisConfig {
        url: common::secret::Secret::new(redis_url),
        key_prefix: prefix,
        timeout: Duration::from_secs(2),
        queue_cluster_nodes: Vec::new(),
    })?;
    wait_subscribed(&redis, 2).await?;
    let publisher = Publisher::new(redis, Default::default());
    let api_request = format!(
        "GET /api/v1/stream/prices?coins=bitcoin&interval=0 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    let hello_request = "GET /sse HTTP/1.1\r\nHost: bench\r\n\r\n";

    println!("## Live price stream: one publish fanned out to N SSE clients of one process");
    println!();
    println!(
        "{rounds} ticks per row, each published as a worker does (`common::events::Publisher`) \
         and read by every client; latency = receipt − publish, on one clock. Baseline: \
         `bench-hello /sse`, a bare Poem server relaying the same Redis channel to its SSE \
         clients (no authentication, filtering or per-client queue), measured in the same run. \
         Targets: p99 ≤ 100 ms at 10,000 clients, ≤ 30 KB per connection."
    );
    println!();
    println!(
        "| server | clients | p50 ms | p99 ms | max ms | RSS idle MB | with clients MB | after ticks MB | KB per connection |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut ratios = Vec::new();
    for clients in sizes {
        eprintln!("stream-bench: {clients} clients, baseline");
        let base = measure(&hello, hello_request, &publisher, clients, rounds).await?;
        println!("{}", base.row("bare Poem", clients));
        eprintln!("stream-bench: {clients} clients, api");
        let ours = measure(&api, &api_request, &publisher, clients, rounds).await?;
        println!("{}", ours.row("api", clients));
        ratios.push(format!(
            "| {clients} | {:.2} | {:.2} | {:.2} |",
            ours.p50.as_secs_f64() / base.p50.as_secs_f64().max(1e-6),
            ours.p99.as_secs_f64() / base.p99.as_secs_f64().max(1e-6),
            ours.kib_per_connection(clients) / base.kib_per_connection(clients).max(1e-6),
        ));
        wait_drained(&api).await?;
    }
    println!();
    println!("| clients | p50 api / bare | p99 api / bare | memory per connection api / bare |");
    println!("|---:|---:|---:|---:|");
    for row in ratios {
        println!("{row}");
    }
    Ok(())
}
