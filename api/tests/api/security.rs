//! Attacks sent to the real `api` binary: compression bombs, oversized bodies, invented methods,
//! rate-limit key rotation, password guessing spread over addresses, and unsafe production
//! settings.

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use test_support::{RunningBinary, TestDatabase, free_port, redis_prefix, redis_url};

use crate::binary::env;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// What a bomb expands to.
const BOMB_BYTES: usize = 200 * 1024 * 1024;

async fn start(env: &[(&'static str, String)], port: u16) -> RunningBinary {
    RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        env,
        port,
        "/health/ready",
    )
    .await
}

/// The peak resident set of process `pid` so far, in bytes (Linux `VmHWM`).
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kib * 1024
}

/// `BOMB_BYTES` of JSON-ish zeros pushed through `encoder`.
fn expand_into<W: Write>(mut encoder: W) -> W {
    let chunk = vec![b'0'; 1024 * 1024];
    for _ in 0..BOMB_BYTES / chunk.len() {
        encoder.write_all(&chunk).expect("compress");
    }
    encoder
}

fn bomb(coding: &str) -> Vec<u8> {
    match coding {
        "gzip" => expand_into(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::best(),
        ))
        .finish()
        .expect("gzip"),
        "deflate" => expand_into(flate2::write::ZlibEncoder::new(
            Vec::new(),
            flate2::Compression::best(),
        ))
        .finish()
        .expect("deflate"),
        "br" => {
            let mut out = Vec::new();
            drop(expand_into(brotli::CompressorWriter::new(
                &mut out, 4096, 5, 22,
            )));
            out
        }
        "zstd" => expand_into(zstd::Encoder::new(Vec::new(), 3).expect("zstd"))
            .finish()
            .expect("zstd"),
        other => panic!("no bomb for {other}"),
    }
}

#[tokio::test]
async fn compressed_bodies_are_refused_before_a_byte_is_decoded() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let api = start(&env(&db, port), port).await;
    let client = test_support::http_client();
    let login = format!("{}/api/v1/auth/login", api.base_url);

    let bombs: Vec<(&str, Vec<u8>)> = ["gzip", "deflate", "br", "zstd"]
        .into_iter()
        .map(|coding| (coding, bomb(coding)))
        .collect();
    let start = peak_rss(api.pid());
    // The first round also warms up the paths the bombs take (threads, buffers, allocator
    // heaps); the next two show what a bomb costs once the process is warm. The allocator takes
    // memory in 4 MiB segments, so a plain 200 KB request moves the peak in steps of 4 MiB now
    // and then too; one decoded bomb would move it by 200 MiB.
    let mut warm = 0;
    for round in 0..3 {
        if round == 1 {
            warm = peak_rss(api.pid());
        }
        for (coding, body) in &bombs {
            assert!(
                body.len() < 1024 * 1024,
                "{coding} bomb is {} bytes",
                body.len()
            );
            let declared = client
                .post(&login)
                .header("content-type", "application/json")
                .header("content-encoding", *coding)
                .body(body.clone())
                .send()
                .await
                .expect("send bomb");
            assert_refused_encoding(declared, coding).await;

            // The same bomb chunked, without Content-Length.
            let head = format!(
                "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
                 content-encoding: {coding}\r\ntransfer-encoding: chunked\r\n\r\n"
            );
            assert_eq!(
                raw_status(&api.base_url, head, chunked(body, 16 * 1024)).await,
                415,
                "chunked {coding}"
            );
        }
    }
    let end = peak_rss(api.pid());
    let warm_growth = end.saturating_sub(warm);
    assert!(
        warm_growth <= 12 * 1024 * 1024,
        "peak RSS grew by {warm_growth} bytes over sixteen warm bombs of {BOMB_BYTES} bytes each"
    );
    let total_growth = end.saturating_sub(start);
    assert!(
        total_growth <= 48 * 1024 * 1024,
        "peak RSS grew by {total_growth} bytes over twenty-four bombs"
    );

    // Responses are still compressed for callers that ask.
    let compressed = client
        .get(format!("{}/openapi.json", api.base_url))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("spec");
    assert_eq!(compressed.headers()["content-encoding"], "gzip");
}

async fn assert_refused_encoding(response: reqwest::Response, coding: &str) {
    assert_eq!(
        response.status(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "{coding}"
    );
    assert_eq!(
        response.headers()["accept-encoding"],
        "identity",
        "{coding}"
    );
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{coding}"
    );
    let problem: Value = response.json().await.expect("problem");
    assert_eq!(problem["code"], "UNSUPPORTED_MEDIA_TYPE", "{coding}");
}

/// `body` in HTTP/1.1 chunked transfer coding, `size` bytes a chunk.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / size * 12 + 16);
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// Writes `head` then `body` on a raw connection and returns the status of the answer.
async fn raw_status(base_url: &str, head: String, body: Vec<u8>) -> u16 {
    let addr = base_url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(head.as_bytes()).await.expect("head");
    // The server may answer and stop reading before the body is through: ignore write errors.
    let _ = stream.write_all(&body).await;
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("an answer within 30 s")
            .expect("read");
        assert!(read > 0, "connection closed without an answer");
        answer.extend_from_slice(&buffer[..read]);
    }
    let status_line = String::from_utf8_lossy(&answer);
    status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("a status line")
}

#[tokio::test]
async fn oversized_bodies_get_413_whatever_they_declare() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = env(&db, port);
    env.push(("MAX_BODY_BYTES", "65536".into()));
    let api = start(&env, port).await;
    let declared = format!(
        "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n\
         content-length: {BOMB_BYTES}\r\n\r\n"
    );
    let chunked_head = "POST /api/v1/auth/login HTTP/1.1\r\nhost: x\r\n\
         content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n";
    let oversized = chunked(&[b' '; 96 * 1024], 16 * 1024);
    let mut warm = 0;
    for round in 0..3 {
        if round == 1 {
            warm = peak_rss(api.pid());
        }
        // A declared 200 MiB is refused from the head alone.
        assert_eq!(
            raw_status(&api.base_url, declared.clone(), Vec::new()).await,
            413
        );
        // Chunked, with no length to trust: counted as it is read.
        assert_eq!(
            raw_status(&api.base_url, chunked_head.to_owned(), oversized.clone()).await,
            413
        );
    }
    // In 4 MiB allocator segments, as above; the bodies are 200 MiB and 96 KiB against a limit
    // of 64 KiB.
    let growth = peak_rss(api.pid()).saturating_sub(warm);
    assert!(
        growth <= 12 * 1024 * 1024,
        "peak RSS grew by {growth} bytes"
    );
}

/// The label sets of the HTTP request series in a Prometheus text exposition.
fn http_series(metrics: &str) -> std::collections::BTreeSet<String> {
    metrics
        .lines()
        .filter(|line| line.starts_with("http_request"))
        .filter_map(|line| line.rsplit_once(' ').map(|(series, _)| series.to_owned()))
        .collect()
}

#[tokio::test]
async fn invented_methods_add_no_metric_series() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = env(&db, port);
    // Room for every request below, so no 429 series appears halfway.
    env.push(("RATE_LIMIT_BURST", "1000".into()));
    env.push(("AUTH_RATE_LIMIT_BURST", "1000".into()));
    let api = start(&env, port).await;
    let client = test_support::http_client();
    let metrics_url = format!("{}/metrics", api.base_url);
    let metrics = || test_support::get_text(&metrics_url);
    let invent = |i: usize, path: &'static str| {
        let method = Method::from_bytes(format!("XMETH{i}").as_bytes()).expect("a method token");
        client
            .request(method, format!("{}{path}", api.base_url))
            .send()
    };
    // One invented method on a known and an unknown path, and a scrape, create the series that
    // every later invented method must reuse.
    for path in ["/api/v1/auth/login", "/nowhere"] {
        let response = invent(1000, path).await.expect("invented method");
        assert!(response.status().is_client_error(), "{}", response.status());
    }
    metrics().await;
    let before = http_series(&metrics().await);
    for i in 0..100 {
        for path in ["/api/v1/auth/login", "/nowhere"] {
            invent(i, path).await.expect("invented method");
        }
    }
    let after = http_series(&metrics().await);
    assert_eq!(
        after.difference(&before).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "invented methods added series"
    );
    assert!(!after.iter().any(|series| series.contains("XMETH")));
}

async fn login_from(
    client: &reqwest::Client,
    base_url: &str,
    forwarded_for: &str,
    email: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base_url}/api/v1/auth/login"))
        .header("x-forwarded-for", forwarded_for)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .expect("login")
}

/// The statuses of one wrong login per address in `addresses`, in order.
async fn wrong_logins_from(
    client: &reqwest::Client,
    base_url: &str,
    addresses: &[&str],
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for address in addresses {
        let response = login_from(client, base_url, address, "x@example.com", "guess-1").await;
        statuses.push(response.status().as_u16());
    }
    statuses
}

#[tokio::test]
async fn rotating_addresses_within_one_ipv6_prefix_shares_one_bucket() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = env(&db, port);
    env.extend([
        ("TRUSTED_PROXY_HOPS", "1".into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1".into()),
        ("AUTH_RATE_LIMIT_BURST", "3".into()),
    ]);
    let api = start(&env, port).await;
    let client = test_support::http_client();
    let statuses = |addresses| wrong_logins_from(&client, &api.base_url, addresses);
    assert_eq!(
        statuses(&[
            "2001:db8:1:2::1",
            "2001:db8:1:2::2",
            "2001:db8:1:2:ffff::3",
            "2001:db8:1:2:8000::4",
        ])
        .await,
        vec![401, 401, 401, 429],
        "one /64 is one caller"
    );
    assert_eq!(
        statuses(&["2001:db8:1:3::1"]).await,
        vec![401],
        "the next /64 is another caller"
    );
}

#[tokio::test]
async fn forwarded_for_with_fewer_entries_than_hops_is_keyed_by_the_socket() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = env(&db, port);
    env.extend([
        ("TRUSTED_PROXY_HOPS", "2".into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1".into()),
        ("AUTH_RATE_LIMIT_BURST", "2".into()),
    ]);
    let api = start(&env, port).await;
    let client = test_support::http_client();
    // A client talking to the api directly, inventing one address per request.
    let statuses = wrong_logins_from(
        &client,
        &api.base_url,
        &["198.51.100.1", "198.51.100.2", "198.51.100.3"],
    )
    .await;
    assert_eq!(statuses, vec![401, 401, 429]);
}

#[tokio::test]
async fn password_guesses_spread_over_addresses_lock_the_account_not_the_others() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut env = env(&db, port);
    env.extend([
        ("TRUSTED_PROXY_HOPS", "1".into()),
        ("LOGIN_FAILURES_PER_ACCOUNT", "3".into()),
    ]);
    let api = start(&env, port).await;
    let client = test_support::http_client();
    let base = api.base_url.clone();
    let mut next_ip = 0u32;
    let mut fresh_ip = || {
        next_ip += 1;
        std::net::Ipv4Addr::from(0xC633_6400 + next_ip).to_string()
    };
    let mut tokens = Vec::new();
    for name in ["victim", "bystander"] {
        let body = crate::binary::register(&client, &base, name, Some(&fresh_ip())).await;
        tokens.push(body["access_token"].as_str().expect("token").to_owned());
    }

    for guess in 0..3 {
        let response = login_from(
            &client,
            &base,
            &fresh_ip(),
            "victim@example.com",
            &format!("guess-{guess}"),
        )
        .await;
        assert_eq!(response.status(), 401, "guess {guess}");
    }
    // The right password, another address, the email spelt differently: still refused.
    let locked = login_from(
        &client,
        &base,
        &fresh_ip(),
        " Victim@Example.COM ",
        "victim-password",
    )
    .await;
    assert_eq!(locked.status(), 429);
    let retry_after: u64 = locked.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("seconds");
    assert!((1..=15 * 60).contains(&retry_after), "{retry_after}");
    let problem: Value = locked.json().await.expect("problem");
    assert_eq!(problem["code"], "RATE_LIMITED");

    // With a stolen access token, guessing the current password counts against the same limit.
    let change = client
        .put(format!("{base}/api/v1/users/me/password"))
        .bearer_auth(&tokens[0])
        .json(&json!({"current_password": "guess-9", "new_password": "a-new-password"}))
        .send()
        .await
        .expect("change password");
    assert_eq!(change.status(), 429);

    // Other accounts are untouched.
    let bystander = login_from(
        &client,
        &base,
        &fresh_ip(),
        "bystander@example.com",
        "bystander-password",
    )
    .await;
    assert_eq!(bystander.status(), 200);

    // Unknown accounts are limited the same way, so the limit tells nothing about existence.
    let mut unknown = Vec::new();
    for guess in 0..4 {
        let response = login_from(
            &client,
            &base,
            &fresh_ip(),
            "ghost@example.com",
            &format!("guess-{guess}"),
        )
        .await;
        unknown.push(response.status().as_u16());
    }
    assert_eq!(unknown, vec![401, 401, 401, 429]);
}

fn production_env(db_url: &str, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("APP_ENV", "production".into()),
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", redis_prefix()),
        ("API_ADDR", format!("127.0.0.1:{port}")),
        (
            "JWT_SECRET",
            "a-random-looking-production-secret-0123456789".into(),
        ),
        ("CORS_ORIGINS", "https://app.example.com".into()),
        ("PASSWORD_HASH_MEMORY_KIB", "8192".into()),
    ]
}

fn refusal(env: &[(&'static str, String)]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env_clear()
        .envs(env.iter().map(|(key, value)| (*key, value.as_str())))
        .output()
        .expect("run api");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    String::from_utf8_lossy(&output.stderr).trim().to_owned()
}

#[test]
fn production_refuses_public_secrets_and_any_origin() {
    let unreachable = "postgres://u:p@127.0.0.1:1/db";
    let with = |key: &'static str, value: &str| {
        let mut env = production_env(unreachable, free_port());
        env.retain(|(k, _)| *k != key);
        env.push((key, value.to_owned()));
        env
    };
    for secret in [
        // The example in deployments/k8s/secret.example.yaml, and the development default.
        "CHANGE-ME-to-at-least-32-random-bytes",
        "coinpulse-development-only-jwt-secret-change-me",
    ] {
        let stderr = refusal(&with("JWT_SECRET", secret));
        assert!(
            stderr.starts_with("configuration error: JWT_SECRET is an example"),
            "{stderr}"
        );
    }
    let stderr = refusal(&with("CORS_ORIGINS", "*"));
    assert!(
        stderr.starts_with("configuration error: CORS_ORIGINS must list"),
        "{stderr}"
    );
}

#[tokio::test]
async fn production_serves_metrics_only_on_the_internal_address_and_no_docs() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let metrics_port = free_port();
    let mut env = production_env(db.url(), port);
    env.push(("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")));
    let api = start(&env, port).await;
    let client = test_support::http_client();
    let status = async |url: String| client.get(url).send().await.expect("get").status();

    assert_eq!(status(format!("{}/metrics", api.base_url)).await, 404);
    assert_eq!(status(format!("{}/docs", api.base_url)).await, 404);
    assert_eq!(status(format!("{}/openapi.json", api.base_url)).await, 200);
    let internal = client
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(internal.status(), 200);
    let text = internal.text().await.expect("text");
    assert!(text.contains("http_requests_total"), "{text}");
}
