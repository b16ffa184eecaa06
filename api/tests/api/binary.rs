//! End to end: the built `api` binary, started as an operator would.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use test_support::{RunningBinary, TestDatabase, free_port, redis_prefix, redis_url};

/// The environment of an api binary in development mode, over `db`, listening on `port`.
pub fn env(db: &TestDatabase, port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", redis_prefix()),
        ("API_ADDR", format!("127.0.0.1:{port}")),
        ("PASSWORD_HASH_MEMORY_KIB", "1024".into()),
        ("PASSWORD_HASH_ITERATIONS", "1".into()),
        ("APP_ENV", "development".into()),
    ]
}

/// Registers `name` (`name@example.com`, password `name-password`) on the api at `base`, from
/// `forwarded_for` when given; returns the token response.
pub async fn register(
    client: &reqwest::Client,
    base: &str,
    name: &str,
    forwarded_for: Option<&str>,
) -> Value {
    let mut request = client.post(format!("{base}/api/v1/auth/register")).json(
        &json!({"email": format!("{name}@example.com"), "username": name,
                "password": format!("{name}-password")}),
    );
    if let Some(address) = forwarded_for {
        request = request.header("x-forwarded-for", address);
    }
    let response = request.send().await.expect("register");
    assert_eq!(response.status(), 201);
    response.json().await.expect("json")
}

#[tokio::test]
async fn the_api_binary_serves_registers_logs_in_and_stops_cleanly() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &env(&db, port),
        port,
        "/health/ready",
    )
    .await;
    let client = test_support::http_client();
    let base = api.base_url.clone();

    let spec: Value = client
        .get(format!("{base}/openapi.json"))
        .send()
        .await
        .expect("spec")
        .json()
        .await
        .expect("json");
    assert!(spec["paths"]["/api/v1/auth/login"]["post"].is_object());

    let registered = client
        .post(format!("{base}/api/v1/auth/register"))
        .json(&json!({"email": "e2e@example.com", "username": "e2e", "password": "e2e-password"}))
        .send()
        .await
        .expect("register");
    assert_eq!(registered.status(), 201);
    assert!(registered.headers().contains_key("x-request-id"));

    let login: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": "e2e@example.com", "password": "e2e-password"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    let token = login["access_token"].as_str().expect("token");
    let me: Value = client
        .get(format!("{base}/api/v1/users/me"))
        .bearer_auth(token)
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("json");
    assert_eq!(me["username"], "e2e");

    // Every metric the api has recorded by now (requests, errors, rate limits, the pool) is in a
    // form Prometheus tooling accepts.
    let refused = client
        .get(format!("{base}/api/v1/users/me"))
        .send()
        .await
        .expect("anonymous me");
    assert_eq!(refused.status(), 401);
    let metrics = test_support::get_text(&format!("{base}/metrics")).await;
    assert!(metrics.contains("# HELP http_requests_total"), "{metrics}");
    for standard in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            metrics.contains(&format!("\n{standard} ")),
            "{standard} missing: {metrics}"
        );
    }
    test_support::assert_promtool_accepts(&metrics);

    let status = api.terminate().await;
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
}

#[tokio::test]
async fn create_admin_makes_an_admin_who_can_log_in() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut environment = env(&db, port);
    environment.push(("ADMIN_PASSWORD", "admin-password-1".into()));
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            "create-admin",
            "--email",
            "root@example.com",
            "--username",
            "root",
        ])
        .envs(environment.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run create-admin");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let duplicate = Command::new(env!("CARGO_BIN_EXE_api"))
        .args([
            "create-admin",
            "--email",
            "ROOT@example.com",
            "--username",
            "root2",
        ])
        .envs(environment.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run create-admin");
    assert!(!duplicate.status.success());
    let complaint = format!(
        "{}{}",
        String::from_utf8_lossy(&duplicate.stdout),
        String::from_utf8_lossy(&duplicate.stderr)
    );
    assert!(complaint.contains("already registered"), "{complaint}");
    assert_eq!(complaint.trim().lines().count(), 1, "one line: {complaint}");

    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &environment,
        port,
        "/health/ready",
    )
    .await;
    let client = test_support::http_client();
    let login: Value = client
        .post(format!("{}/api/v1/auth/login", api.base_url))
        .json(&json!({"email": "root@example.com", "password": "admin-password-1"}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    assert_eq!(login["user"]["role"], "admin");
}

#[test]
fn bad_configuration_stops_start_up_with_one_line_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("APP_ENV", "production")
        .env("DATABASE_URL", "postgres://u:p@127.0.0.1:1/db")
        .env("JWT_SECRET", "too-short")
        .env("CORS_ORIGINS", "https://app.example.com")
        .output()
        .expect("run api");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr.trim(),
        "configuration error: JWT_SECRET must be at least 32 bytes in production"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_api"))
        .env("JWT_ACCESS_TTL", "soon")
        .output()
        .expect("run api");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("configuration error: JWT_ACCESS_TTL has an invalid value \"soon\""),
        "{stderr}"
    );
}

#[tokio::test]
async fn logs_into_a_pipe_carry_no_colour_codes_and_a_second_start_no_postgres_notices() {
    let db = TestDatabase::create().await;
    let mut environment = env(&db, free_port());
    environment.push(("LOG_FORMAT", "pretty".into()));
    environment.push(("RUST_LOG", "info".into()));
    for run in ["first", "second"] {
        let output = Command::new(env!("CARGO_BIN_EXE_api"))
            .arg("migrate")
            .envs(environment.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .expect("run api migrate");
        assert!(output.status.success(), "{run}: {output:?}");
        let logs = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(logs.contains("migrations applied"), "{run}: {logs}");
        assert!(
            !logs.contains('\u{1b}'),
            "{run}: colour codes in a pipe: {logs:?}"
        );
        assert!(
            !logs.contains("already exists"),
            "{run}: Postgres notice logged: {logs}"
        );
    }
}

/// A refresh after a logout is logged at INFO ("session ended"); only a rotated token
/// presented again is a WARN (reuse), as an operator reading the log at `warn` sees it.
#[tokio::test]
async fn only_token_reuse_is_a_warning_in_the_log() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &env(&db, port),
        port,
        "/health/ready",
    )
    .await;
    let client = test_support::http_client();
    let base = api.base_url.clone();
    let refresh = |token: String| {
        let request = client
            .post(format!("{base}/api/v1/auth/refresh"))
            .json(&json!({ "refresh_token": token }));
        async move { request.send().await.expect("refresh") }
    };

    let ended = register(&client, &base, "ended", None).await;
    let ended_token = ended["refresh_token"].as_str().expect("token").to_owned();
    let logout = client
        .post(format!("{base}/api/v1/auth/logout"))
        .json(&json!({ "refresh_token": ended_token }))
        .send()
        .await
        .expect("logout");
    assert_eq!(logout.status(), 204);
    assert_eq!(refresh(ended_token).await.status(), 401);

    let stolen = register(&client, &base, "stolen", None).await;
    let first = stolen["refresh_token"].as_str().expect("token").to_owned();
    assert_eq!(refresh(first.clone()).await.status(), 200);
    // The log line is handed to the log writer before the answer; wait for it to be written.
    assert_eq!(refresh(first).await.status(), 401);
    test_support::wait_until(
        "the reuse warning",
        std::time::Duration::from_secs(10),
        || {
            let log = api.log();
            async move { log.contains("refresh token reuse detected") }
        },
    )
    .await;
    let log = api.log();
    let warnings: Vec<&str> = log
        .lines()
        .filter(|line| line.contains("\"WARN\""))
        .collect();
    assert_eq!(warnings.len(), 1, "one warning, for the reuse only: {log}");
    assert!(
        !log.contains("ended session"),
        "a logout is not a warning: {log}"
    );
}
