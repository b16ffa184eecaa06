//! Third-party tools are the judges of the served OpenAPI document: it must validate, generate
//! a Python and a TypeScript client without a warning, and the generated Python client must
//! carry a new user from registration to a portfolio valuation against the real binaries.
//! `scripts/services.sh tools` (run by `make test`) installs the tools.

use std::path::Path;
use std::process::{Command, Output};

use test_support::{
    RunningBinary, TestDatabase, free_port, redis_prefix, tools_dir, workspace_binary,
};

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
    // The emails the run makes the worker write (no SMTP here) go to a scratch directory,
    // not into the source tree (the default `outbox` is relative to the test's directory).
    let outbox =
        std::env::temp_dir().join(format!("coinpulse-clients-outbox-{}", std::process::id()));
    let worker_env = vec![
        ("EMAIL_OUTBOX_DIR", outbox.display().to_string()),
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
    // No post hooks: they run formatters (ruff) that are not part of the judgement. The
    // generator knows no `text/csv`; its documented override sends an import's CSV as bytes
    // (docs/ARCHITECTURE.md, "Clients").
    std::fs::write(
        &config,
        "post_hooks: []\ncontent_type_overrides:\n  text/csv: application/octet-stream\n",
    )
    .expect("write the config");
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
    let _ = std::fs::remove_dir_all(&outbox);
}

/// Runs schemathesis with every check (`--checks all`'s set) against `base_url`, authenticated by the hook in
/// `tests/clients/schemathesis_auth.py`; `extra` narrows the run or sets the account.
fn schemathesis(base_url: &str, extra_args: &[&str], extra_env: &[(&str, &str)]) -> String {
    let clients = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients");
    let mut command = Command::new(tools_dir().join("venv/bin/schemathesis"));
    command
        .current_dir(&clients)
        .arg("--config-file")
        .arg(clients.join("schemathesis.toml"))
        .args(["run", &format!("{base_url}/openapi.json")])
        // No `--checks all` on the command line: every check is on by default (the same set),
        // and the command-line flag would override the per-operation settings in the file.
        .args(["--max-examples", "25"])
        // A fixed seed: the same cases on every machine, so a failure reproduces.
        .args(["--seed", "20261128", "--no-color"])
        .args(extra_args)
        .env("PYTHONPATH", &clients)
        .env("SCHEMATHESIS_HOOKS", "schemathesis_auth")
        .env("COINPULSE_API_URL", base_url)
        .envs(extra_env.iter().copied());
    run("schemathesis", &mut command)
}

#[tokio::test]
async fn schemathesis_finds_no_failure_on_any_operation() {
    let db = TestDatabase::create().await;
    let port = free_port();
    let mut api_env = crate::binary::env(&db, port);
    // The fuzzer sends thousands of requests from one address and guesses passwords: limits
    // are not what it judges (the security tests do).
    api_env.extend([
        ("RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("RATE_LIMIT_BURST", "100000".to_owned()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "1000000".to_owned()),
        ("AUTH_RATE_LIMIT_BURST", "100000".to_owned()),
        ("LOGIN_FAILURES_PER_ACCOUNT", "1000000".to_owned()),
        // Streams end on their own within a second, so that reading one finishes.
        ("STREAM_MAX_DURATION", "1s".to_owned()),
    ]);
    let admin_password = "schemathesis-admin-password";
    let mut admin_env = api_env.clone();
    admin_env.push(("ADMIN_PASSWORD", admin_password.to_owned()));
    run(
        "api create-admin",
        Command::new(env!("CARGO_BIN_EXE_api"))
            .args(["create-admin", "--email", "root@example.com"])
            .args(["--username", "root"])
            .envs(admin_env.iter().map(|(key, value)| (*key, value.as_str()))),
    );
    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &api_env,
        port,
        "/health/ready",
    )
    .await;

    // Every operation as a fresh user (admin operations answer 403, as documented) ...
    let as_user = schemathesis(&api.base_url, &[], &[]);
    assert!(as_user.contains(" passed"), "{as_user}");
    // ... and the administration operations as an administrator.
    let login: serde_json::Value = reqwest::Client::new()
        .post(format!("{}/api/v1/auth/login", api.base_url))
        .json(&serde_json::json!({"email": "root@example.com", "password": admin_password}))
        .send()
        .await
        .expect("log in as the administrator")
        .json()
        .await
        .expect("a token response");
    let token = login["access_token"].as_str().expect("an access token");
    let as_admin = schemathesis(
        &api.base_url,
        &["--include-tag", "Admin"],
        &[("COINPULSE_TOKEN", token)],
    );
    assert!(as_admin.contains(" passed"), "{as_admin}");
}

/// Every pattern the document states for a field is the one the server checks with: the
/// constants below are what the handlers match against.
#[tokio::test]
async fn the_document_states_the_servers_own_patterns() {
    use api::market::{COIN_ID_PATTERN, CURRENCY_PATTERN};
    use api::portfolios::NAME_PATTERN;
    use api::streams::COINS_PATTERN;
    use api::users::validate::{EMAIL_PATTERN, USERNAME_PATTERN};

    let db = TestDatabase::create().await;
    let port = free_port();
    let api = RunningBinary::start(
        Path::new(env!("CARGO_BIN_EXE_api")),
        &crate::binary::env(&db, port),
        port,
        "/health/ready",
    )
    .await;
    let document: serde_json::Value = serde_json::from_str(
        &test_support::get_text(&format!("{}/openapi.json", api.base_url)).await,
    )
    .expect("a JSON document");
    let schemas = &document["components"]["schemas"];
    let pattern = |schema: &str, field: &str| {
        schemas[schema]["properties"][field]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema}.{field} has no pattern"))
            .to_owned()
    };
    for schema in ["RegisterRequest", "UpdateProfileRequest", "AdminUpdateUser"] {
        assert_eq!(pattern(schema, "email"), EMAIL_PATTERN, "{schema}");
        assert_eq!(pattern(schema, "username"), USERNAME_PATTERN, "{schema}");
    }
    for schema in ["CreatePortfolioRequest", "UpdatePortfolioRequest"] {
        assert_eq!(pattern(schema, "name"), NAME_PATTERN, "{schema}");
    }
    assert_eq!(
        pattern("CreateTransactionRequest", "coin_id"),
        COIN_ID_PATTERN
    );
    assert_eq!(
        schemas["BulkFetchRequest"]["properties"]["coins"]["items"]["pattern"],
        COIN_ID_PATTERN
    );
    // The simulated provider quotes in a fixed list: the general pattern narrowed to it.
    assert_ne!(pattern("BulkFetchRequest", "vs_currency"), CURRENCY_PATTERN);
    let narrowed = pattern("BulkFetchRequest", "vs_currency");
    assert!(
        narrowed.starts_with("^([Uu][Ss][Dd]|[Ee][Uu][Rr]|"),
        "{narrowed}"
    );
    let narrowed = regex::Regex::new(&narrowed).expect("pattern");
    assert!(narrowed.is_match("GBP") && !narrowed.is_match("xyz"));
    let stream_coins = document["paths"]["/api/v1/stream/prices"]["get"]["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["name"] == "coins")
        .expect("a coins parameter")["schema"]["pattern"]
        .clone();
    assert_eq!(stream_coins, COINS_PATTERN);
    let parameters = document["paths"]["/api/v1/crypto/prices/{coin_id}"]["get"]["parameters"]
        .as_array()
        .expect("parameters");
    let coin_id = parameters
        .iter()
        .find(|parameter| parameter["name"] == "coin_id")
        .expect("coin_id");
    assert_eq!(coin_id["schema"]["pattern"], COIN_ID_PATTERN);
}
