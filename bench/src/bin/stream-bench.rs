//! `stream-bench`: price-tick fan-out to many SSE clients of one api process.
//!
//! Starts the release `api` binary (`STREAM_BENCH_API`, default `target/release/api`) on the
//! benchmark's Postgres and Redis, registers a user, and for each N in `STREAM_BENCH_CLIENTS`
//! (`1000,10000`) opens N `GET /api/v1/stream/prices?coins=bitcoin&interval=0` connections
//! (plain sockets: the client side costs as little as it can). Then `STREAM_BENCH_ROUNDS` (20)
//! times it publishes a price tick exactly as a worker does (`common::events::Publisher`) and
//! waits until every client has read it. Latency = receipt − publish, on one clock (this
//! process). Memory = the api's RSS with the N clients connected minus its RSS before them,
//! per connection. Targets: p99 ≤ 100 ms at 10,000 clients, ≤ 30 KB per connection.
//!
//! Prints a markdown report on stdout, progress on stderr. Settings: `DATABASE_URL`,
//! `REDIS_URL`, `STREAM_BENCH_*` above, `STREAM_BENCH_ADDR` (127.0.0.1:18095). Needs a file
//! descriptor limit above twice the largest N (`scripts/bench.sh` raises it).

use std::process::{Child, Command, Stdio};
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
    let start = response.find('{').context("no JSON in the register response")?;
    let value: serde_json::Value = serde_json::from_str(response[start..].trim_end_matches(|c: char| c != '}'))?;
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

/// One client: reads the stream and reports each round it sees (`"price":"<round>.5"`).
async fn client(
    addr: String,
    token: String,
    rounds: mpsc::UnboundedSender<(u64, Instant)>,
) -> anyhow::Result<()> {
    let mut stream = TcpStream::connect(&addr).await?;
    stream
        .write_all(
            format!(
                "GET /api/v1/stream/prices?coins=bitcoin&interval=0 HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .as_bytes(),
        )
        .await?;
    let mut buffer = vec![0u8; 4096];
    let mut pending = String::new();
    loop {
        let read = stream.read(&mut buffer).await?;
        if read == 0 {
            return Ok(());
        }
        let at = Instant::now();
        pending.push_str(&String::from_utf8_lossy(&buffer[..read]));
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

async fn measure(
    api: &Api,
    token: &str,
    publisher: &Publisher,
    clients: usize,
    rounds: u64,
) -> anyhow::Result<String> {
    let idle = api.rss_kib()?;
    let (sender, mut received) = mpsc::unbounded_channel();
    let mut tasks = Vec::with_capacity(clients);
    for chunk in 0..clients.div_ceil(500) {
        for _ in (chunk * 500)..((chunk + 1) * 500).min(clients) {
            tasks.push(tokio::spawn(client(
                api.addr.clone(),
                token.to_owned(),
                sender.clone(),
            )));
        }
        let expected = ((chunk + 1) * 500).min(clients) as f64;
        let deadline = Instant::now() + Duration::from_secs(60);
        while stream_clients(&api.addr).await? < expected {
            if Instant::now() > deadline {
                bail!("only some of {expected} streams opened within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    eprintln!("stream-bench: {clients} clients connected");
    let connected = api.rss_kib()?;
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
                Ok(None) | Err(_) => bail!("round {round}: {seen} of {clients} clients got the tick"),
            }
        }
    }
    let peak = api.rss_kib()?;
    for task in &tasks {
        task.abort();
    }
    latencies.sort();
    let per_connection = connected.saturating_sub(idle) as f64 / clients as f64;
    Ok(format!(
        "| {clients} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {per_connection:.1} |",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.last().copied().unwrap_or_default()),
        idle as f64 / 1024.0,
        connected as f64 / 1024.0,
        peak as f64 / 1024.0,
    ))
}

/// A round number no earlier run used (the marker clients look for).
fn rand_round() -> u64 {
    u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(1) * 1000
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let database_url = std::env::var("DATABASE_URL").context("DATABASE_URL")?;
    let redis_url = std::env::var("REDIS_URL").context("REDIS_URL")?;
    let binary = std::env::var("STREAM_BENCH_API").unwrap_or_else(|_| "target/release/api".into());
    let addr = std::env::var("STREAM_BENCH_ADDR").unwrap_or_else(|_| "127.0.0.1:18095".into());
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

    let child = Command::new(&binary)
        .env("DATABASE_URL", &database_url)
        .env("REDIS_URL", &redis_url)
        .env("REDIS_KEY_PREFIX", &prefix)
        .env("API_ADDR", &addr)
        .env("RUST_LOG", "warn")
        .env("LOG_FORMAT", "json")
        .env("PASSWORD_HASH_MEMORY_KIB", "1024")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("RATE_LIMIT_PER_MINUTE", "100000000")
        .env("RATE_LIMIT_BURST", "1000000")
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "100000000")
        .env("AUTH_RATE_LIMIT_BURST", "1000000")
        .env("STREAM_MAX_PER_USER", "10000")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting {binary}"))?;
    let api = Api { child, addr };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(body) = http(
            &api.addr,
            "GET /health/live HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".into(),
        )
        .await
            && !body.is_empty()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the api did not start within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let token = register(&api.addr).await?;
    let redis = Redis::new(&RedisConfig {
        url: common::secret::Secret::new(redis_url),
        key_prefix: prefix,
        timeout: Duration::from_secs(2),
    })?;
    let publisher = Publisher::new(redis, Default::default());

    println!("## Live price stream: fan-out from one publish to N SSE clients of one api process");
    println!();
    println!(
        "{rounds} ticks per row, each published as a worker does and read by every client; latency \
         = receipt − publish (one clock). Target: p99 ≤ 100 ms at 10,000 clients, ≤ 30 KB per connection."
    );
    println!();
    println!("| clients | p50 ms | p99 ms | max ms | api RSS idle MB | with clients MB | after ticks MB | KB per connection |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for clients in sizes {
        eprintln!("stream-bench: {clients} clients");
        let row = measure(&api, &token, &publisher, clients, rounds).await?;
        println!("{row}");
        // Let the closed connections go before the next size.
        let deadline = Instant::now() + Duration::from_secs(60);
        while stream_clients(&api.addr).await? > 0.0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
