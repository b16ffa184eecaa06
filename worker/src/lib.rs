//! The Coinpulse worker: consumes the job queues and serves its own metrics and health.
//!
//! A library as well as a binary so that tests can build the same worker stack.

pub mod alerts;
pub mod config;
pub mod email;
pub mod http;
pub mod jobs;
pub mod market;
pub mod notifications;
pub mod portfolios;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use common::jobs::queues::QueueSet;
use common::market::PriceProvider;
use common::prices::Prices;
use common::redis::Redis;
use poem::Server;
use poem::listener::{Acceptor, Listener, TcpListener};

use crate::config::WorkerConfig;
use crate::jobs::JobContext;

/// Runs the worker until SIGTERM/SIGINT (then stops gracefully) or a fatal error.
pub async fn run(config: WorkerConfig) -> anyhow::Result<()> {
    let metrics = common::telemetry::install_metrics("worker");
    let db = common::db::connect_and_migrate(&config.common.database).await?;
    let redis = Redis::new(&config.common.redis).context("REDIS_URL is not a valid Redis URL")?;
    tokio::spawn(redis.clone().warn_if_evicting());
    tokio::spawn(common::health::watch_dependencies(
        db.clone(),
        redis.clone(),
    ));
    let queues = QueueSet::new(&config.common.redis, &config.queue)
        .context("REDIS_URL is not a valid Redis URL")?;
    let provider = PriceProvider::from_config(&config.market, Some(redis.clone()))
        .context("the price provider could not be set up")?;
    let prices = Prices::from_config(
        db.clone(),
        redis.clone(),
        Arc::new(provider),
        &config.market,
    );

    let addr = config.metrics_addr;
    let acceptor = TcpListener::bind(addr)
        .into_acceptor()
        .await
        .with_context(|| format!("cannot listen on {addr} (WORKER_METRICS_ADDR)"))?;
    let local = acceptor.local_addr();
    let (stop_http, http_stop) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            http::routes(db.clone(), redis.clone(), metrics),
            async {
                let _ = http_stop.await;
            },
            Some(Duration::from_secs(5)),
        ),
    );
    tracing::info!(
        metrics_addr = ?local.first(),
        provider = prices.provider().kind().as_str(),
        "worker started"
    );

    let ctx = JobContext {
        db: db.clone(),
        events: common::events::Publisher::new(redis.clone(), config.event_history),
        redis,
        queues,
        prices,
        progress: Default::default(),
        job: None,
    };
    // Every job kind this worker runs, by feature.
    let mailer = Arc::new(email::Mailer::from_config(&config.email)?);
    tracing::info!(transport = mailer.transport_name(), "email ready");
    let handlers = email::handlers(
        notifications::handlers(alerts::handlers(market::handlers(portfolios::handlers(
            jobs::Handlers::default(),
        )))),
        mailer,
    );
    let refresh = tokio::spawn(market::refresh::schedule(
        ctx.clone(),
        config.price_refresh_interval,
    ));
    let outcome = jobs::run(&config, ctx, handlers, common::shutdown::signal()).await;
    refresh.abort();
    let _ = stop_http.send(());
    let _ = server.await;
    db.close().await;
    if outcome.is_ok() {
        tracing::info!("worker stopped");
    }
    outcome
}
