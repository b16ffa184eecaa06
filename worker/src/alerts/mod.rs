//! Price alerts: `alert_eval` jobs evaluate the active alerts of the coins a refresh moved and
//! turn each firing into a `notify` job. Firing twice for one crossing is impossible: alerts
//! are evaluated under a row lock against the newest stored price, and each firing is a row
//! keyed by (alert, sequence) whose notification job id derives from it.

pub mod evaluate;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::time::Instant;

use chrono::Utc;
use common::alerts::firing_event_id;
use common::alerts::jobs::{AlertEval, AlertEvalResult};
use common::jobs::store::{self as jobs_store, OutboxJob};
use common::notifications::jobs::Notify;
use common::notifications::{AlertFired, NotificationContent};
use uuid::Uuid;

use self::evaluate::{AlertRule, Observation, evaluate};
use self::store::{Evaluated, Firing};
use crate::jobs::{Handlers, JobContext, JobError};

/// Alerts locked and evaluated per transaction: large enough that 10,000 alerts take a few
/// round trips, small enough that a transaction holds its locks briefly.
const BATCH: i64 = 1000;

/// The alerts feature's job kinds and their handlers.
pub fn handlers(handlers: Handlers) -> Handlers {
    handlers.register(run)
}

/// Evaluates every active alert on the job's coins against their latest stored prices.
pub async fn run(ctx: JobContext, job: AlertEval) -> Result<AlertEvalResult, JobError> {
    let began = Instant::now();
    let retry = |what: &str| {
        let what = what.to_owned();
        move |err: sqlx::Error| JobError::Retry(format!("{what}: {err}"))
    };
    // The newest stored prices, read now: a late or repeated job evaluates what is current.
    let observed: HashMap<String, Observation> = ctx
        .prices
        .stored(&job.coins, &job.vs_currency)
        .await
        .map_err(|err| JobError::Retry(format!("reading prices: {err}")))?
        .into_iter()
        .map(|(coin, price)| {
            let seen = Observation {
                price: price.price,
                change_24h_pct: price.change_24h_pct,
            };
            (coin, seen)
        })
        .collect();
    let coins: Vec<String> = observed.keys().cloned().collect();
    let mut outcome = AlertEvalResult::default();
    let mut after = Uuid::nil();
    loop {
        let mut tx = ctx.db.begin().await.map_err(retry("starting"))?;
        let batch = store::lock_batch(&mut *tx, &job.vs_currency, &coins, after, BATCH)
            .await
            .map_err(retry("reading alerts"))?;
        let Some(last) = batch.last() else { break };
        after = last.id;
        let now = Utc::now();
        let mut evaluated = Vec::with_capacity(batch.len());
        let mut firings = Vec::new();
        let mut notices = Vec::new();
        for alert in &batch {
            let Some(seen) = observed.get(&alert.coin_id).copied() else {
                continue;
            };
            let verdict = evaluate(&rule_of(alert), seen, now);
            if verdict.fires {
                let sequence = alert.trigger_count + 1;
                let id = firing_event_id(alert.id, sequence);
                firings.push(Firing {
                    id,
                    alert_id: alert.id,
                    user_id: alert.user_id,
                    sequence,
                    value: verdict.last_value.unwrap_or(seen.price),
                    price: seen.price,
                });
                let notify = Notify {
                    event_id: id,
                    user_id: alert.user_id,
                    content: NotificationContent::PriceAlert(AlertFired {
                        alert_id: alert.id,
                        sequence,
                        coin_id: alert.coin_id.clone(),
                        vs_currency: alert.vs_currency.clone(),
                        condition: alert.condition,
                        target: alert.target,
                        price: seen.price,
                        change_24h_pct: seen.change_24h_pct,
                        note: alert.note.clone(),
                        fired_at: now,
                    }),
                };
                notices.push((id, notify));
            }
            if verdict.state == common::alerts::AlertState::Expired {
                outcome.expired += 1;
            }
            evaluated.push(Evaluated {
                id: alert.id,
                state: verdict.state,
                active: verdict.active,
                last_value: verdict.last_value,
                fired: verdict.fires,
                changed: verdict.fires || verdict.state != alert.state || !verdict.active,
            });
        }
        store::save(&mut *tx, &evaluated)
            .await
            .map_err(retry("saving evaluations"))?;
        let written: HashSet<Uuid> = store::record_firings(&mut *tx, &firings)
            .await
            .map_err(retry("recording firings"))?
            .into_iter()
            .collect();
        notices.retain(|(id, _)| written.contains(id));
        let jobs: Vec<(Uuid, Notify)> = notices
            .into_iter()
            .map(|(_, notify)| (notify.job_id(), notify))
            .collect();
        let rows = jobs_store::insert_many_once(&mut *tx, &jobs)
            .await
            .map_err(retry("queueing notifications"))?;
        tx.commit().await.map_err(retry("committing"))?;
        outcome.evaluated += evaluated.len() as u64;
        outcome.fired += written.len() as u64;
        if !rows.is_empty() {
            let outbox: Vec<OutboxJob> = rows.iter().map(OutboxJob::from).collect();
            if let Err(err) = ctx.queues.dispatch(&ctx.db, &outbox).await {
                tracing::warn!(error = %err, "notifications left to the outbox relay");
            }
        }
        if batch.len() < BATCH as usize {
            break;
        }
    }
    metrics::counter!("alerts_evaluated_total").increment(outcome.evaluated);
    metrics::counter!("alerts_fired_total").increment(outcome.fired);
    tracing::info!(
        vs_currency = %job.vs_currency,
        evaluated = outcome.evaluated,
        fired = outcome.fired,
        expired = outcome.expired,
        elapsed_ms = began.elapsed().as_millis() as u64,
        "alerts evaluated"
    );
    Ok(outcome)
}

fn rule_of(alert: &store::AlertRow) -> AlertRule {
    AlertRule {
        condition: alert.condition,
        target: alert.target,
        trigger: alert.trigger,
        cooldown: alert
            .cooldown_seconds
            .map(|seconds| chrono::Duration::seconds(i64::from(seconds))),
        expires_at: alert.expires_at,
        state: alert.state,
        last_value: alert.last_value,
        last_triggered_at: alert.last_triggered_at,
    }
}
