//! Third-party tools are the judges of the served OpenAPI document: it must validate, generate
//! a Python and a TypeScript client without a warning, and the generated Python client must
//! carry a new user from registration to a portfolio valuation against the real binaries.
//! `scripts/services.sh tools` (run by `make test`) installs the tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_support::{RunningBinary, TestDatabase, free_port, redis_prefix, workspace_binary};

/// Where `scripts/services.sh tools` put the PyPI and npm tools.
fn tools_dir() -> PathBuf {
    std::env::var_os("COINPULSE_TOOLS_DIR")
        .map_or_else(|| PathBuf::from("/var/tmp/coinpulse-tools"), PathBuf::from)
}

fn run(what: &str, command: &mut Command) -> String {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().unwrap_or_else(|err| {
        panic!("{what}: cannot start ({err}); run `scripts/services.sh tools`")
    });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&stdout),
        String::from_utf8_lossy(&stderr)
    );
    assert!(status.success(), "{what} failed:\n{text}");
    text
}

fn assert_no_warning(what: &str, output: &str) {
    let lower = output.to_lowercase();
    assert!(
        !lower.contains("warn") && !lower.contains("unable to process"),
        "{what} warned:\n{output}"
    );
}

#[tokio::test]
async fn generated_clients_are_clean_and_the_python_one_drives_a_first_hour() {
    let db = TestDatabase::create().await;
    let prefix = redis_prefix();
    let port = free_port();
    let mut api_env = crate::binary::env(&db, port);
    api_env.retain(|(key, _)| *key != "REDIS_KEY_PREFIX");
    api_env.push(("REDIS_KEY_PREFIX", prefix.clone()));
    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &api_env,
        port,
        "/health/ready",
    )
    .await;
    let worker_port = free_port();
    let worker_env = vec![
        ("DATABASE_URL", db.url().to_owned()),
        ("REDIS_URL", test_support::redis_url()),
        ("REDIS_KEY_PREFIX", prefix),
        ("WORKER_METRICS_ADDR", format!("127.0.0.1:{worker_port}")),
        ("PRICE_REFRESH_INTERVAL", "1h".to_owned()),
    ];
    let _worker = RunningBinary::start(
        &workspace_binary("worker"),
        &worker_env,
        worker_port,
        "/health/ready",
    )
    .await;

    let work = std::env::temp_dir().join(format!("coinpulse-clients-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&work).expect("work dir");
    let document = work.join("openapi.json");
    let served = test_support::get_text(&format!("{}/openapi.json", api.base_url)).await;
    std::fs::write(&document, served).expect("write the document");
    let config = work.join("python-client.yaml");
    // No post hooks: they run formatters (ruff) that are not part of the judgement.
    std::fs::write(&config, "post_hooks: []\n").expect("write the config");
    let tools = tools_dir();

    run(
        "openapi-spec-validator",
        Command::new(tools.join("venv/bin/openapi-spec-validator")).arg(&document),
    );

    let python_client = work.join("python");
    let generated = run(
        "openapi-python-client",
        Command::new(tools.join("venv/bin/openapi-python-client"))
            .args(["generate", "--path"])
            .arg(&document)
            .arg("--output-path")
            .arg(&python_client)
            .arg("--config")
            .arg(&config),
    );
    assert_no_warning("openapi-python-client", &generated);

    let typescript = run(
        "openapi-typescript",
        Command::new(tools.join("node/node_modules/.bin/openapi-typescript"))
            .arg(&document)
            .arg("-o")
            .arg(work.join("schema.d.ts")),
    );
    assert_no_warning("openapi-typescript", &typescript);

    let flow = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/flow.py");
    let output = run(
        "the generated Python client's flow",
        Command::new(tools.join("venv/bin/python"))
            .arg(&flow)
            .arg(&api.base_url)
            .env("PYTHONPATH", &python_client),
    );
    assert!(output.starts_with("ok:"), "{output}");
    let _ = std::fs::remove_dir_all(&work);
}
