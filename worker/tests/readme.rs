//! The README's API walk-through, run as written against the real `api` and `worker`
//! binaries on the offline default (simulated prices), as a new user would after `make run`.

use std::path::Path;
use std::process::Command;

use test_support::{
    RunningBinary, TestDatabase, free_port, redis_prefix, redis_url, workspace_binary,
};

/// The shell block between the walk-through markers of README.md.
fn walkthrough() -> String {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .expect("README.md");
    let block = readme
        .split("<!-- walkthrough:start -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- walkthrough:end -->").next())
        .expect("the README marks its walk-through");
    let script = block
        .trim()
        .strip_prefix("```sh")
        .and_then(|rest| rest.strip_suffix("```"))
        .expect("the walk-through is one sh block");
    script.to_owned()
}

#[tokio::test]
async fn the_readme_walkthrough_runs_against_the_real_binaries() {
    let db = TestDatabase::create().await;
    let prefix = redis_prefix();
    let port = free_port();
    let api = RunningBinary::start(
        &workspace_binary("api"),
        &[
            ("DATABASE_URL", db.url().to_owned()),
            ("REDIS_URL", redis_url()),
            ("REDIS_KEY_PREFIX", prefix.clone()),
            ("API_ADDR", format!("127.0.0.1:{port}")),
            ("OUTBOX_RELAY_INTERVAL", "200ms".to_owned()),
        ],
        port,
        "/health/ready",
    )
    .await;
    let worker = test_support::start_worker(
        Path::new(env!("CARGO_BIN_EXE_worker")),
        db.url(),
        &prefix,
        &[],
    )
    .await;

    let script = walkthrough();
    let base = api.base_url.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("BASE", base)
            .output()
            .expect("bash runs")
    })
    .await
    .expect("the walk-through finished");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the walk-through failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"ethereum"), "{stdout}");
    assert!(stdout.contains("'eur'"), "currencies listed: {stdout}");
    assert!(stdout.contains("'total_value'"), "a valuation: {stdout}");
    assert!(
        stdout.contains("'outcome': 'applied'") && stdout.contains("'added': 2"),
        "an import: {stdout}"
    );
    assert!(
        stdout.contains("executed_at,coin_id,side,quantity,price,fee,currency,note")
            && stdout.contains("solana,transfer_in,10,0,0,usd,"),
        "an export: {stdout}"
    );
    assert!(
        stderr.trim().is_empty(),
        "nothing alarming on stderr: {stderr}"
    );
    drop(worker);
    drop(api);
}
