//! Test harness shared by the crates' tests.
//!
//! Every test gets its own Postgres database, cloned from a template that is migrated once
//! (cloning takes milliseconds; migrating each time would not), and its own Redis key prefix,
//! so tests run in parallel without seeing each other. Postgres and Redis are the real servers
//! started by `scripts/services.sh`; their URLs come from `DATABASE_URL` and `REDIS_URL`.

use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection};

pub mod smtp;
pub mod sse;

/// The server URLs tests use: the environment's, or the development defaults.
pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| common::config::DEV_DATABASE_URL.into())
}

/// The Redis URL tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| common::config::DEV_REDIS_URL.into())
}

/// Serialises template creation across concurrently running test processes.
const TEMPLATE_LOCK: i64 = 0x0C01_5E5D;

/// A database of its own for one test; dropped (forcibly) when this value is dropped.
#[derive(Debug)]
pub struct TestDatabase {
    name: String,
    url: String,
    admin: PgConnectOptions,
}

impl TestDatabase {
    /// Creates a fresh, migrated database.
    pub async fn create() -> Self {
        let base: PgConnectOptions = database_url().parse().expect("DATABASE_URL parses");
        let admin = base.clone().database("postgres");
        let mut conn = PgConnection::connect_with(&admin)
            .await
            .expect("Postgres is reachable at DATABASE_URL (run `make services-up`)");
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .expect("lock");
        let template = ensure_template(&mut conn, &base).await;
        let name = format!("coinpulse_test_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE {name} TEMPLATE {template}"))
            .execute(&mut conn)
            .await
            .expect("create test database");
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(TEMPLATE_LOCK)
            .execute(&mut conn)
            .await
            .expect("unlock");
        let url = base.clone().database(&name).to_url_lossy().to_string();
        Self { name, url, admin }
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A pool on this database.
    pub async fn pool(&self) -> sqlx::PgPool {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(5)
            .connect(&self.url)
            .await
            .expect("connect to test database")
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = self.admin.clone();
        // Drop runs outside any runtime guarantee; use a private one on a plain thread.
        let dropper = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                if let Ok(mut conn) = PgConnection::connect_with(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}

/// The template's name is derived from the migrations themselves, so checkouts with different
/// migrations (two branches on one dev machine) each get their own template instead of
/// dropping each other's.
fn template_name() -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for migration in common::db::MIGRATOR.iter() {
        migration.version.hash(&mut hasher);
        migration.checksum.hash(&mut hasher);
    }
    format!("coinpulse_tpl_{:016x}", hasher.finish())
}

/// Creates the migrated template database for the current migrations unless it exists.
async fn ensure_template(conn: &mut PgConnection, base: &PgConnectOptions) -> String {
    let template = template_name();
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&template)
            .fetch_one(&mut *conn)
            .await
            .expect("query pg_database");
    if exists {
        return template;
    }
    // Built under a scratch name and renamed, so a process killed mid-migration never
    // leaves a half-migrated template behind.
    let building = format!("{template}_building");
    sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
        .execute(&mut *conn)
        .await
        .expect("drop leftover template build");
    sqlx::query(&format!("CREATE DATABASE {building}"))
        .execute(&mut *conn)
        .await
        .expect("create template");
    let mut scratch = PgConnection::connect_with(&base.clone().database(&building))
        .await
        .expect("connect to template");
    common::db::MIGRATOR
        .run(&mut scratch)
        .await
        .expect("migrate template");
    scratch.close().await.expect("close template");
    sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {template}"))
        .execute(&mut *conn)
        .await
        .expect("rename template");
    template
}

/// A Redis key prefix no other test uses.
pub fn redis_prefix() -> String {
    format!("test:{}:", uuid::Uuid::new_v4().simple())
}

/// A client of the test Redis under a key prefix no other test uses.
pub fn redis_client() -> common::redis::Redis {
    common::redis::Redis::new(&common::config::RedisConfig {
        url: redis_url().as_str().into(),
        key_prefix: redis_prefix(),
        timeout: Duration::from_secs(2),
        queue_cluster_nodes: Vec::new(),
    })
    .expect("a valid Redis URL")
}

/// An HTTP client for tests (installs the process's TLS crypto provider first, which reqwest
/// needs even for plain HTTP).
pub fn http_client() -> reqwest::Client {
    common::tls::install_crypto_provider();
    reqwest::Client::new()
}

/// The body of `GET url` as text; panics on any failure.
pub async fn get_text(url: &str) -> String {
    http_client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|err| panic!("GET {url}: {err}"))
        .text()
        .await
        .unwrap_or_else(|err| panic!("GET {url} body: {err}"))
}

/// Serves `app` (a fake of an outside service) on a loopback port it keeps for the life of the
/// test runtime; returns its address. The port is bound before this returns, so no other
/// server can take it.
pub async fn serve_on_loopback<E>(app: E) -> std::net::SocketAddr
where
    E: poem::IntoEndpoint + Send + 'static,
    E::Endpoint: 'static,
{
    use poem::listener::{Acceptor, Listener};
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .expect("bind a loopback port");
    let addr = *acceptor.local_addr()[0]
        .as_socket_addr()
        .expect("a socket address");
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    addr
}

/// A TCP port that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// Polls `check` until it returns true or `deadline` passes; panics with `what` on timeout.
pub async fn wait_until<F, Fut>(what: &str, deadline: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(
            start.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The path of another package's binary of this workspace (a test only gets its own package's
/// binaries from cargo), built first if it is missing. `cargo test --workspace` (what
/// `make test` runs) builds every binary before any test starts, so it is never stale there;
/// when running one package's tests alone, build the other binary first.
pub fn workspace_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable in target/<profile>/deps");
    let binary = profile_dir.join(name);
    static BUILD: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = BUILD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !binary.exists() {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "--bin", name, "-p", name])
            .env("SQLX_OFFLINE", "true")
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building {name} failed");
    }
    binary
}

/// A real binary of this workspace running as a child process; killed when dropped.
///
/// Its output (the log on stdout at `warn` unless a test sets `RUST_LOG`, and stderr) is
/// kept rather than printed: tests provoke
/// outages on purpose, and a passing run should not look alarming. A test that fails shows
/// the log of every binary it started (printed when they are dropped during the panic).
#[derive(Debug)]
pub struct RunningBinary {
    child: Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    name: String,
    /// The base URL of its HTTP server.
    pub base_url: String,
}

impl RunningBinary {
    /// Starts `binary` with `env` (on top of a cleared `RUST_LOG`/`.env`-free environment)
    /// and waits until `ready_path` answers 200.
    pub async fn start(binary: &Path, env: &[(&str, String)], port: u16, ready_path: &str) -> Self {
        let mut command = Command::new(binary);
        command
            .env("RUST_LOG", "warn")
            .env("LOG_FORMAT", "json")
            // Emails of workers without `SMTP_URL` go to a scratch directory, never into the
            // checkout (a test that looks at them sets its own).
            .env(
                "EMAIL_OUTBOX_DIR",
                std::env::temp_dir().join("coinpulse-test-outbox"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start binary");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let outputs: [Option<Box<dyn std::io::Read + Send>>; 2] = [
            child.stdout.take().map(|out| Box::new(out) as _),
            child.stderr.take().map(|err| Box::new(err) as _),
        ];
        for mut output in outputs.into_iter().flatten() {
            let log = log.clone();
            // Drains the pipe as the child writes, so a chatty child never blocks on it.
            std::thread::spawn(move || {
                let mut chunk = [0_u8; 8192];
                while let Ok(read @ 1..) = output.read(&mut chunk) {
                    log.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .extend_from_slice(&chunk[..read]);
                }
            });
        }
        let running = Self {
            child,
            log,
            name: binary.file_name().map_or_else(
                || binary.display().to_string(),
                |name| name.to_string_lossy().into_owned(),
            ),
            base_url: format!("http://127.0.0.1:{port}"),
        };
        let client = http_client();
        let url = format!("{}{ready_path}", running.base_url);
        wait_until(&format!("{} to be ready", binary.display()), Duration::from_secs(30), || {
            let request = client.get(&url).send();
            async move { matches!(request.await, Ok(response) if response.status().is_success()) }
        })
        .await;
        running
    }

    /// What the process has written so far (stdout and stderr, in arrival order).
    pub fn log(&self) -> String {
        String::from_utf8_lossy(
            &self
                .log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Whether the process has exited; its status if so.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().expect("wait for child")
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub async fn terminate(mut self) -> std::process::ExitStatus {
        // A child already reaped has a pid the system may have given to another process (pid
        // numbers wrap quickly on a busy machine): never signal it.
        if let Some(status) = self.child.try_wait().expect("wait for child") {
            return status;
        }
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for child") {
                return status;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "binary did not stop after SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

impl Drop for RunningBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            if !log.trim().is_empty() {
                // Captured by the test harness and shown with the failure.
                eprintln!(
                    "--- log of {} ({}):\n{log}--- end of log",
                    self.name, self.base_url
                );
            }
        }
    }
}

/// Starts a worker `binary` against `database_url` and the Redis key `prefix`, on a free
/// metrics port, with the short intervals tests use (1 s lease, retries from 100 ms, the relay
/// every 200 ms, 5 s to stop); each of `settings` adds a variable or replaces one of those.
pub async fn start_worker(
    binary: &Path,
    database_url: &str,
    prefix: &str,
    settings: &[(&str, String)],
) -> RunningBinary {
    let port = free_port();
    let mut env = vec![
        ("DATABASE_URL", database_url.to_owned()),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", prefix.to_owned()),
        ("WORKER_METRICS_ADDR", format!("127.0.0.1:{port}")),
        ("WORKER_LEASE", "1s".to_owned()),
        ("WORKER_RETRY_BASE", "100ms".to_owned()),
        ("WORKER_SHUTDOWN_TIMEOUT", "5s".to_owned()),
        ("OUTBOX_RELAY_INTERVAL", "200ms".to_owned()),
    ];
    for (key, value) in settings {
        env.retain(|(existing, _)| existing != key);
        env.push((key, value.clone()));
    }
    RunningBinary::start(binary, &env, port, "/health/live").await
}

/// Where `scripts/services.sh tools` put the PyPI and npm tools (`COINPULSE_TOOLS_DIR`).
pub fn tools_dir() -> std::path::PathBuf {
    std::env::var_os("COINPULSE_TOOLS_DIR").map_or_else(
        || std::path::PathBuf::from("/var/tmp/coinpulse-tools"),
        std::path::PathBuf::from,
    )
}

/// Runs `promtool check metrics` (from Debian's `prometheus` package, which
/// `scripts/services.sh tools` installs) on a Prometheus text exposition; panics with its
/// findings if it reports any.
pub fn assert_promtool_accepts(exposition: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (`scripts/services.sh tools` installs it; `make test` runs that)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(exposition.as_bytes())
        .expect("write to promtool");
    let output = child.wait_with_output().expect("promtool output");
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success() && findings.trim().is_empty(),
        "promtool check metrics found:\n{findings}\nin:\n{exposition}"
    );
}

/// A three-node Redis Cluster (`redis-server --cluster-enabled`, joined with
/// `redis-cli --cluster create`) for this test process: its node URLs, started on first use.
/// Each node is watched by a shell that stops it (and deletes the cluster's files) when this test process is gone, so
/// no server outlives the run.
pub fn redis_cluster() -> Vec<String> {
    static CLUSTER: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    CLUSTER.get_or_init(start_cluster).clone()
}

fn start_cluster() -> Vec<String> {
    let dir = std::env::temp_dir().join(format!("coinpulse-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("cluster dir");
    let ports: Vec<u16> = (0..3).map(|_| free_port()).collect();
    for port in &ports {
        let server = format!(
            "redis-server --port {port} --cluster-enabled yes \
             --cluster-config-file nodes-{port}.conf --cluster-node-timeout 5000 \
             --save '' --appendonly no --dir {dir}",
            dir = dir.display()
        );
        let watched = format!(
            "{server} & server=$!; while kill -0 {parent} 2>/dev/null; do sleep 1; done; \
             kill $server; wait $server; rm -rf {dir}",
            parent = std::process::id(),
            dir = dir.display()
        );
        // Never waited for: the watcher outlives this process on purpose (init reaps it).
        #[allow(clippy::zombie_processes)]
        Command::new("sh")
            .args(["-c", &watched])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
    }
    for port in &ports {
        wait_for("node up", || {
            std::net::TcpStream::connect(("127.0.0.1", *port)).is_ok()
        });
    }
    let addresses: Vec<String> = ports
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect();
    let created = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addresses)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .expect("redis-cli --cluster create");
    assert!(
        created.status.success(),
        "cluster create failed: {}",
        String::from_utf8_lossy(&created.stdout)
    );
    for port in &ports {
        wait_for("cluster state ok", || {
            Command::new("redis-cli")
                .args(["-p", &port.to_string(), "cluster", "info"])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).contains("cluster_state:ok"))
        });
    }
    ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}"))
        .collect()
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "redis cluster: {what} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
