//! Configuration shared by both binaries.
//!
//! Every setting is a command-line flag with an environment-variable fallback (clap's `env`),
//! so `--help` documents every variable and a bad value stops start-up with one line naming it.
//! Binaries flatten these sections into their own clap structs, parse once in `main`, and pass
//! the typed result down explicitly.

use std::fmt;
use std::time::Duration;

use crate::secret::Secret;

/// The database URL used when `DATABASE_URL` is unset (development only).
pub const DEV_DATABASE_URL: &str = "postgres://coinpulse:coinpulse@127.0.0.1:5432/coinpulse";
/// The Redis URL used when `REDIS_URL` is unset.
pub const DEV_REDIS_URL: &str = "redis://127.0.0.1:6379";

/// Deployment environment; `production` turns on strict checks of every setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AppEnv {
    /// Local development and tests: dev defaults are allowed.
    Development,
    /// Production: dev defaults and weak secrets are refused at start-up.
    Production,
}

impl AppEnv {
    /// Whether strict production checks apply.
    pub fn is_production(self) -> bool {
        self == Self::Production
    }

    /// The lower-case name, as accepted in `APP_ENV`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Development => "development",
            Self::Production => "production",
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable, coloured lines.
    Pretty,
    /// One JSON object per line, for log shippers.
    Json,
}

/// Settings every binary has: environment, logging, Postgres and Redis.
#[derive(Debug, Clone, clap::Args)]
pub struct CommonConfig {
    /// Deployment environment.
    #[arg(long, env = "APP_ENV", value_enum, default_value = "development")]
    pub app_env: AppEnv,

    /// Log format; defaults to `pretty` in development and `json` in production.
    #[arg(long, env = "LOG_FORMAT", value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log filter in `tracing-subscriber` EnvFilter syntax.
    #[arg(long = "log-filter", env = "RUST_LOG", default_value = "info")]
    pub log_filter: String,

    #[command(flatten)]
    pub database: DatabaseConfig,

    #[command(flatten)]
    pub redis: RedisConfig,

    #[command(flatten)]
    pub tracing: TracingConfig,
}

/// Distributed tracing: spans exported over OTLP/HTTP when an endpoint is set (none by
/// default: no exporter, no overhead).
#[derive(Debug, Clone, clap::Args)]
pub struct TracingConfig {
    /// OTLP/HTTP collector base URL (e.g. `http://otel-collector:4318`); spans go to
    /// `{endpoint}/v1/traces`. Unset: spans are not exported.
    #[arg(long = "otlp-endpoint", env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,

    /// OTLP encoding: `http/protobuf` or `http/json`.
    #[arg(
        long = "otlp-protocol",
        env = "OTEL_EXPORTER_OTLP_PROTOCOL",
        value_enum,
        default_value = "http/protobuf"
    )]
    pub otlp_protocol: OtlpProtocol,

    /// The `service.name` of exported spans; defaults to `coinpulse-api` / `coinpulse-worker`.
    #[arg(long = "otel-service-name", env = "OTEL_SERVICE_NAME")]
    pub service_name: Option<String>,
}

/// How spans are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OtlpProtocol {
    /// Protocol buffers (the OTLP default).
    #[value(name = "http/protobuf")]
    HttpProtobuf,
    /// JSON.
    #[value(name = "http/json")]
    HttpJson,
}

impl CommonConfig {
    /// The log format in force once the environment's default is applied.
    pub fn effective_log_format(&self) -> LogFormat {
        self.log_format.unwrap_or(if self.app_env.is_production() {
            LogFormat::Json
        } else {
            LogFormat::Pretty
        })
    }

    /// Checks that cannot be expressed as a single flag's parser; empty when all is well.
    pub fn problems(&self) -> Vec<ConfigProblem> {
        let mut problems = Vec::new();
        if self.app_env.is_production() && self.database.url.expose() == DEV_DATABASE_URL {
            problems.push(ConfigProblem::new(
                "DATABASE_URL",
                "must be set explicitly in production (the development default is refused)",
            ));
        }
        if self.database.max_connections == 0 {
            problems.push(ConfigProblem::new(
                "DATABASE_MAX_CONNECTIONS",
                "must be at least 1",
            ));
        }
        problems
    }
}

/// Postgres connection settings.
#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseConfig {
    /// Postgres connection URL.
    #[arg(id = "database_url", long = "database-url", env = "DATABASE_URL", default_value = DEV_DATABASE_URL, hide_default_value = true, hide_env_values = true, value_name = "URL")]
    pub url: Secret<String>,

    /// Largest number of pooled connections per process.
    #[arg(
        id = "database_max_connections",
        long = "database-max-connections",
        env = "DATABASE_MAX_CONNECTIONS",
        default_value_t = 20,
        value_name = "N"
    )]
    pub max_connections: u32,

    /// How long a request waits for a free pooled connection before failing.
    #[arg(id = "database_acquire_timeout", long = "database-acquire-timeout", env = "DATABASE_ACQUIRE_TIMEOUT", default_value = "5s", value_parser = parse_duration, value_name = "DURATION")]
    pub acquire_timeout: Duration,
}

/// Redis connection settings.
#[derive(Debug, Clone, clap::Args)]
pub struct RedisConfig {
    /// Redis connection URL.
    #[arg(id = "redis_url", long = "redis-url", env = "REDIS_URL", default_value = DEV_REDIS_URL, hide_default_value = true, hide_env_values = true, value_name = "URL")]
    pub url: Secret<String>,

    /// Prefix of every key this deployment writes, so several deployments (or tests) can
    /// share one Redis.
    #[arg(
        long = "redis-key-prefix",
        env = "REDIS_KEY_PREFIX",
        default_value = "coinpulse:"
    )]
    pub key_prefix: String,

    /// Bound on connecting to Redis and on each command's response.
    #[arg(id = "redis_timeout", long = "redis-timeout", env = "REDIS_TIMEOUT", default_value = "2s", value_parser = parse_duration, value_name = "DURATION")]
    pub timeout: Duration,

    /// The job queues on a Redis Cluster instead of `REDIS_URL`: comma-separated node URLs
    /// (any of the cluster's nodes; the rest are discovered). Caches, events and locks stay on
    /// `REDIS_URL`. Api and workers must agree.
    #[arg(
        long = "queue-redis-cluster-nodes",
        env = "QUEUE_REDIS_CLUSTER_NODES",
        value_delimiter = ',',
        hide_env_values = true,
        value_name = "URLS"
    )]
    pub queue_cluster_nodes: Vec<Secret<String>>,
}

/// Parses durations written like `15m`, `7d`, `250ms` or `1h 30m`.
pub fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value).map_err(|err| format!("{err} (expected e.g. 30s, 15m, 7d)"))
}

/// One invalid setting: the variable it comes from and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// What is wrong, phrased to complete "VARIABLE …".
    pub message: String,
}

impl ConfigProblem {
    /// Describes a bad setting.
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.variable, self.message)
    }
}

/// Loads an optional `.env` file from the working directory into the process environment.
///
/// Variables already set in the environment win over the file. Call it once, first thing in
/// `main`, before parsing flags. A malformed file is reported, a missing one is not.
pub fn load_dotenv() -> Result<(), String> {
    match dotenvy::dotenv() {
        Ok(_) => Ok(()),
        Err(err) if err.not_found() => Ok(()),
        Err(err) => Err(format!(
            "configuration error: .env could not be read: {err}"
        )),
    }
}

/// Parses flags and environment variables into `P`.
///
/// `--help` and `--version` print and exit as usual. A bad value exits with status 2 and one
/// line naming the environment variable (operators set variables, not flags), e.g.
/// `configuration error: JWT_ACCESS_TTL has an invalid value "soon": …`.
pub fn parse_or_exit<P: clap::Parser>() -> P {
    use clap::error::{ContextKind, ContextValue, ErrorKind};

    let err = match P::try_parse() {
        Ok(parsed) => return parsed,
        Err(err) => err,
    };
    if matches!(
        err.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        err.exit();
    }
    let text = |kind| match err.get(kind) {
        Some(ContextValue::String(value)) => Some(value.clone()),
        Some(ContextValue::Strings(values)) => Some(values.join(", ")),
        _ => None,
    };
    let flag = text(ContextKind::InvalidArg).unwrap_or_default();
    let command = P::command();
    let variable = command
        .get_arguments()
        .find(|arg| {
            arg.get_long()
                .is_some_and(|long| flag.split([' ', '=']).next() == Some(&format!("--{long}")))
        })
        .and_then(|arg| arg.get_env())
        .map(|env| env.to_string_lossy().into_owned());
    let Some(variable) = variable else { err.exit() };
    let value = text(ContextKind::InvalidValue).unwrap_or_default();
    let reason = std::error::Error::source(&err)
        .map(ToString::to_string)
        .or_else(|| text(ContextKind::ValidValue).map(|valid| format!("expected one of {valid}")))
        .unwrap_or_else(|| err.kind().to_string());
    eprintln!("configuration error: {variable} has an invalid value {value:?}: {reason}");
    std::process::exit(2);
}

/// Prints each problem on its own line and exits with status 2 when there are any.
pub fn exit_on_problems(problems: &[ConfigProblem]) {
    if problems.is_empty() {
        return;
    }
    for problem in problems {
        eprintln!("{problem}");
    }
    std::process::exit(2);
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct TestCli {
        #[command(flatten)]
        common: CommonConfig,
    }

    #[test]
    fn flags_are_well_formed() {
        use clap::CommandFactory;
        TestCli::command().debug_assert();
    }

    #[test]
    fn durations_accept_human_units() {
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn production_refuses_the_dev_database_url() {
        let cli = TestCli::try_parse_from([
            "test",
            "--app-env",
            "production",
            "--database-url",
            DEV_DATABASE_URL,
        ])
        .expect("parses");
        let problems = cli.common.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].variable, "DATABASE_URL");
        assert_eq!(
            problems[0].to_string(),
            "configuration error: DATABASE_URL must be set explicitly in production (the development default is refused)"
        );
    }

    #[test]
    fn development_accepts_defaults() {
        let mut cli = TestCli::try_parse_from([
            "test",
            "--app-env",
            "development",
            "--database-url",
            DEV_DATABASE_URL,
        ])
        .expect("parses");
        assert!(cli.common.problems().is_empty());
        cli.common.log_format = None;
        assert_eq!(cli.common.effective_log_format(), LogFormat::Pretty);
        cli.common.app_env = AppEnv::Production;
        assert_eq!(cli.common.effective_log_format(), LogFormat::Json);
    }

    #[test]
    fn secrets_are_not_printed_in_debug() {
        let cli = TestCli::try_parse_from(["test", "--database-url", "postgres://u:pw@h/db"])
            .expect("parses");
        assert!(!format!("{cli:?}").contains("pw@"));
    }
}
