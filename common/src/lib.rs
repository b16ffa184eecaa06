//! Code shared by the Coinpulse `api` and `worker` binaries.
//!
//! Nothing here knows about HTTP routing or job execution: this crate holds configuration,
//! telemetry, the Postgres pool and migrations, the Redis client, shutdown signals and the
//! small domain types both binaries agree on.

pub mod alerts;
pub mod config;
pub mod db;
pub mod domain;
pub mod email;
pub mod events;
pub mod health;
pub mod jobs;
pub mod market;
pub mod notifications;
pub mod portfolios;
pub mod prices;
pub mod redis;
pub mod secret;
pub mod shutdown;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
pub mod wire;

/// The version of this build, as reported by `/health` and `coinpulse_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
