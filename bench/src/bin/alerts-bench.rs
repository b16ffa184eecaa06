//! `alerts-bench`: price-alert evaluation and the time from a price tick to the notification
//! row, measured in one process against the benchmark's Postgres and Redis.
//!
//! - **evaluation**: `ALERTS_BENCH_ALERTS` (10,000) active alerts over 100 coins and 100 users,
//!   evaluated by the worker's own `alert_eval` handler ([`worker::alerts::run`]) at prices
//!   that fire nothing (the steady state), against a baseline in the same process: the bare
//!   row work evaluation cannot avoid (lock each batch of alerts, write each one back, in the
//!   same batches). Alerts/s for both and their ratio; target: the 10,000 within one refresh
//!   interval (60 s).
//! - **tick to notification**: `ALERTS_BENCH_FIRING` (1,000) `crossing` alerts on one coin,
//!   run by the worker's job stack in this process (`alert_eval` and `notify` queues, as a
//!   worker runs them); each tick stores a new price that crosses them all and queues the
//!   evaluation, as the refresh does; latency per notification = its row's `created_at` minus
//!   the tick (both Postgres clock). `ALERTS_BENCH_TICKS` (5) ticks; p50/p99/max; target p99 ≤ 2 s.
//!
//! Prints a markdown report on stdout, progress on stderr. Settings: `DATABASE_URL`,
//! `REDIS_URL`, and the `ALERTS_BENCH_*` above. Its rows go into the benchmark database
//! (`scripts/bench.sh` drops it afterwards).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::Parser;
use common::alerts::jobs::AlertEval;
use common::config::{DatabaseConfig, RedisConfig};
use common::jobs::queues::{QueueDefaults, QueueSet};
use common::jobs::store::{self as jobs_store, OutboxJob};
use common::market::{PriceProvider, Quote};
use common::prices::Prices;
use common::redis::Redis;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;
use worker::config::WorkerConfig;
use worker::jobs::{Handlers, JobContext};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const COINS: usize = 100;
const USERS: usize = 100;

fn env_or(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(value) => value
            .trim()
            .parse()
            .with_context(|| format!("{name} must be a whole number")),
        Err(_) => Ok(default),
    }
}

fn coin(n: usize) -> String {
    format!("alert-bench-{n}")
}

fn quote(id: &str, price: Decimal) -> Quote {
    Quote {
        id: id.to_owned(),
        symbol: id.to_owned(),
        name: id.to_owned(),
        price,
        market_cap: None,
        market_cap_rank: None,
        volume_24h: None,
        change_24h_pct: Some(Decimal::ONE),
        last_updated: Utc::now(),
    }
}

async fn store_prices(db: &PgPool, quotes: &[Quote]) -> anyhow::Result<()> {
    common::prices::store::save_quotes(db, quotes, "usd", "simulated").await?;
    Ok(())
}

/// Users, coins with prices, and `alerts` alerts that do not fire at those prices.
async fn seed(db: &PgPool, run: &str, alerts: usize) -> anyhow::Result<Vec<Uuid>> {
    let users: Vec<Uuid> = (0..USERS).map(|_| Uuid::now_v7()).collect();
    for (n, user) in users.iter().enumerate() {
        sqlx::query(
            "INSERT INTO users (id, email, username, password_hash) VALUES ($1, $2, $3, 'x')",
        )
        .bind(user)
        .bind(format!("alerts-{run}-{n}@example.com"))
        .bind(format!("alerts{run}{n}"))
        .execute(db)
        .await?;
    }
    let quotes: Vec<Quote> = (0..COINS)
        .map(|n| quote(&coin(n), Decimal::from(100)))
        .collect();
    store_prices(db, &quotes).await?;
    // Half level alerts far above the price, half crossings of a level the price never reaches.
    sqlx::query(
        "INSERT INTO alerts (id, user_id, coin_id, vs_currency, condition, target, trigger)
         SELECT gen_random_uuid(), ($1::uuid[])[1 + n % $2], 'alert-bench-' || (n % $3), 'usd',
                CASE WHEN n % 2 = 0 THEN 'above' ELSE 'crossing' END, 1000 + n % 7,
                'every_crossing'
         FROM generate_series(0, $4 - 1) AS n",
    )
    .bind(&users)
    .bind(USERS as i32)
    .bind(COINS as i32)
    .bind(alerts as i32)
    .execute(db)
    .await?;
    Ok(users)
}

/// The row work of one evaluation without the evaluation: the same batches locked and each
/// alert written back.
async fn baseline(db: &PgPool, coins: &[String]) -> anyhow::Result<usize> {
    let mut after = Uuid::nil();
    let mut done = 0;
    loop {
        let mut tx = db.begin().await?;
        let ids: Vec<Uuid> = sqlx::query_scalar(
            "SELECT id FROM alerts WHERE active AND vs_currency = 'usd' AND coin_id = ANY($1)
               AND id > $2 ORDER BY id LIMIT 1000 FOR UPDATE",
        )
        .bind(coins)
        .bind(after)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = ids.last() else { break };
        after = *last;
        sqlx::query(
            "UPDATE alerts AS a SET last_evaluated_at = now()
             FROM unnest($1::uuid[]) AS e(id) WHERE a.id = e.id",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        done += ids.len();
        if ids.len() < 1000 {
            break;
        }
    }
    Ok(done)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let alerts = env_or("ALERTS_BENCH_ALERTS", 10_000)?;
    let firing = env_or("ALERTS_BENCH_FIRING", 1_000)?;
    let ticks = env_or("ALERTS_BENCH_TICKS", 5)?;
    let samples = env_or("ALERTS_BENCH_SAMPLES", 5)?;
    let _metrics = common::telemetry::install_metrics("worker");
    let run = Uuid::now_v7().simple().to_string();
    let prefix = format!("bench:{run}:");
    let mut config = WorkerConfig::try_parse_from([
        "worker",
        "--queues",
        "alert_eval,notify",
        "--redis-key-prefix",
        &prefix,
    ])
    .context("worker settings")?;
    config.relay_interval = Duration::from_millis(200);
    let db = common::db::connect_and_migrate(&DatabaseConfig {
        url: config.common.database.url.clone(),
        max_connections: 20,
        acquire_timeout: Duration::from_secs(5),
    })
    .await?;
    let redis = Redis::new(&RedisConfig {
        url: config.common.redis.url.clone(),
        key_prefix: prefix.clone(),
        timeout: Duration::from_secs(2),
        queue_cluster_nodes: Vec::new(),
    })?;
    let queues = QueueSet::new(&config.common.redis, &QueueDefaults::default())?;
    let provider = PriceProvider::from_config(&config.market, None)?;
    let prices = Prices::from_config(
        db.clone(),
        redis.clone(),
        Arc::new(provider),
        &config.market,
    );
    let ctx = JobContext {
        db: db.clone(),
        events: common::events::Publisher::new(redis.clone(), Default::default()),
        redis,
        queues,
        prices,
        progress: Default::default(),
        job: None,
    };

    eprintln!("alerts-bench: seeding {alerts} alerts");
    seed(&db, &run, alerts).await?;
    let coins: Vec<String> = (0..COINS).map(coin).collect();
    let job = |slot| AlertEval {
        vs_currency: "usd".into(),
        coins: coins.clone(),
        slot,
    };
    // A first evaluation records every alert's value (later ones compare with it).
    worker::alerts::run(ctx.clone(), job(0))
        .await
        .map_err(|err| anyhow::anyhow!("evaluation failed: {err}"))?;
    let (mut evaluated, mut bare) = (Vec::new(), Vec::new());
    for sample in 0..samples {
        // A B A B: the baseline and the evaluation alternate, so drift hits both.
        let began = Instant::now();
        let rows = baseline(&db, &coins).await?;
        bare.push(rows as f64 / began.elapsed().as_secs_f64());
        let began = Instant::now();
        let outcome = worker::alerts::run(ctx.clone(), job(sample as u64 + 1))
            .await
            .map_err(|err| anyhow::anyhow!("evaluation failed: {err}"))?;
        evaluated.push(outcome.evaluated as f64 / began.elapsed().as_secs_f64());
        anyhow::ensure!(outcome.fired == 0, "the steady state fires nothing");
    }
    let median = |values: &mut Vec<f64>| {
        values.sort_by(f64::total_cmp);
        percentile(values, 50.0)
    };
    let (eval_rate, bare_rate) = (median(&mut evaluated), median(&mut bare));

    eprintln!("alerts-bench: tick to notification, {firing} alerts x {ticks} ticks");
    let hot = "alert-bench-hot";
    store_prices(&db, &[quote(hot, Decimal::from(90))]).await?;
    let users: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM users WHERE email LIKE $1")
        .bind(format!("alerts-{run}-%"))
        .fetch_all(&db)
        .await?;
    sqlx::query(
        "INSERT INTO alerts (id, user_id, coin_id, vs_currency, condition, target, trigger,
                             last_value)
         SELECT gen_random_uuid(), ($1::uuid[])[1 + n % $2], $3, 'usd', 'crossing', 100,
                'every_crossing', 90
         FROM generate_series(0, $4 - 1) AS n",
    )
    .bind(&users)
    .bind(users.len() as i32)
    .bind(hot)
    .bind(firing as i32)
    .execute(&db)
    .await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handlers = worker::notifications::handlers(worker::alerts::handlers(Handlers::default()));
    let stack_config = config.clone();
    let stack_ctx = ctx.clone();
    let stack = tokio::spawn(async move {
        worker::jobs::run(&stack_config, stack_ctx, handlers, async {
            let _ = stopped.await;
        })
        .await
    });
    let mut latencies = Vec::with_capacity(firing * ticks);
    for tick in 0..ticks {
        let price = if tick % 2 == 0 { 110 } else { 90 };
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT now()").fetch_one(&db).await?;
        store_prices(&db, &[quote(hot, Decimal::from(price))]).await?;
        let eval = AlertEval {
            vs_currency: "usd".into(),
            coins: vec![hot.to_owned()],
            slot: 1_000 + tick as u64,
        };
        if let Some(row) = jobs_store::insert_once(&db, eval.job_id(), &eval).await? {
            ctx.queues.dispatch(&db, &[OutboxJob::from(&row)]).await?;
        }
        let expected = (firing * (tick + 1)) as i64;
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let written: i64 =
                sqlx::query_scalar("SELECT count(*) FROM notifications WHERE kind = 'price_alert'")
                    .fetch_one(&db)
                    .await?;
            if written >= expected {
                break;
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "tick {tick}: {written} of {expected} notifications after 120 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let seconds: Vec<f64> = sqlx::query_scalar(
            "SELECT EXTRACT(EPOCH FROM (created_at - $1))::float8 FROM notifications
             WHERE kind = 'price_alert' AND created_at >= $1",
        )
        .bind(at)
        .fetch_all(&db)
        .await?;
        latencies.extend(seconds);
    }
    let _ = stop.send(());
    let _ = stack.await;
    latencies.sort_by(f64::total_cmp);

    println!("## Price alerts");
    println!();
    println!(
        "Evaluation: {alerts} active alerts over {COINS} coins, the worker's `alert_eval` handler at prices that fire nothing, against the bare row work (lock each batch of 1,000, write each alert back) in the same process, alternating; median of {samples}."
    );
    println!();
    println!("| run | alerts/s | share of bare row work | 10,000 alerts take |");
    println!("|---|---:|---:|---:|");
    println!(
        "| bare row work (baseline) | {bare_rate:.0} | 1.00 | {:.2} s |",
        10_000.0 / bare_rate
    );
    println!(
        "| evaluation | {eval_rate:.0} | {:.2} | {:.2} s |",
        eval_rate / bare_rate,
        10_000.0 / eval_rate
    );
    println!();
    println!(
        "Tick to notification: {firing} alerts crossed by each of {ticks} ticks, run by the worker's `alert_eval` and `notify` queues in this process (default concurrency); from the price's store to each notification row (Postgres clock), {} notifications.",
        latencies.len()
    );
    println!();
    println!("| p50 | p99 | max |");
    println!("|---:|---:|---:|");
    println!(
        "| {:.3} s | {:.3} s | {:.3} s |",
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
        latencies.last().copied().unwrap_or(f64::NAN)
    );
    Ok(())
}
