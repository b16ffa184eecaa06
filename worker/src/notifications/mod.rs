//! Notifications: `notify` jobs deliver one event to one user — the in-app notification, a
//! `user:{id}` event and, when the user's preferences allow, an `email` job — each keyed by
//! the event id, so a re-run writes nothing twice. Also turns the user's finished jobs into
//! notifications.

pub mod finished;
mod store;
pub mod text;

use common::email::{EmailMessage, Recipient as EmailRecipient, SendEmail};
use common::events::Event;
use common::jobs::store::{self as jobs_store, OutboxJob};
use common::notifications::jobs::{Notify, NotifyResult};
use common::notifications::{Category, NotificationContent};
use serde_json::json;

use self::store::NewNotification;
use crate::jobs::{Handlers, JobContext, JobError};

/// The notifications feature's job kinds and their handlers.
pub fn handlers(handlers: Handlers) -> Handlers {
    handlers.register(notify)
}

/// Delivers one notification as the recipient's preferences allow.
pub async fn notify(ctx: JobContext, job: Notify) -> Result<NotifyResult, JobError> {
    let retry = |err: sqlx::Error| JobError::Retry(format!("delivering the notification: {err}"));
    let mut tx = ctx.db.begin().await.map_err(retry)?;
    let Some(recipient) = store::recipient(&mut *tx, job.user_id)
        .await
        .map_err(retry)?
    else {
        return Ok(skipped("the account no longer exists"));
    };
    if !recipient.active {
        return Ok(skipped("the account is disabled"));
    }
    let category = job.content.category();
    let wanted = match category {
        Category::PriceAlerts => recipient.price_alerts,
        Category::Account => recipient.account,
        Category::Jobs => recipient.jobs,
    };
    if !wanted {
        return Ok(skipped("the category is switched off"));
    }
    let (title, body) = text::title_and_body(&job.content);
    let data = serde_json::to_value(&job.content)
        .map_err(|err| JobError::Permanent(format!("notification content: {err}")))?;
    // With in-app on, the event's notification exists after this transaction: written now, or
    // by an earlier run (its id is the event's).
    let in_app = recipient.in_app_enabled;
    let written = if in_app {
        let notification = NewNotification {
            id: job.event_id,
            user_id: job.user_id,
            category: category.as_str(),
            kind: job.content.kind(),
            title: &title,
            body: &body,
            data: &data,
        };
        match store::insert(&mut *tx, &notification).await {
            Ok(written) => written,
            // The account was deleted since it was read: nobody is left to notify.
            Err(err)
                if err
                    .as_database_error()
                    .is_some_and(|db| db.is_foreign_key_violation()) =>
            {
                return Ok(skipped("the account no longer exists"));
            }
            Err(err) => return Err(retry(err)),
        }
    } else {
        false
    };
    let email_job = if recipient.email_enabled {
        let email = SendEmail {
            event_id: job.event_id,
            to: EmailRecipient::User {
                user_id: job.user_id,
            },
            message: email_message(&job.content),
        };
        jobs_store::insert_once(&mut *tx, email.job_id(), &email)
            .await
            .map_err(retry)?
    } else {
        None
    };
    tx.commit().await.map_err(retry)?;
    // Only the run that wrote the notification announces it: a re-run announces nothing twice.
    // (A run killed between its commit and here loses the event; the notification stands.)
    if written {
        metrics::counter!("notifications_created_total", "category" => category.as_str())
            .increment(1);
        let event = Event {
            kind: "notification".to_owned(),
            id: job.event_id,
            at: chrono::Utc::now(),
            data: json!({
                "id": job.event_id,
                "category": category.as_str(),
                "kind": job.content.kind(),
                "title": title,
                "body": body,
                "data": data,
            }),
        };
        if let Err(err) = ctx.events.to_user(job.user_id, &event).await {
            tracing::debug!(error = %err, "notification event not published");
        }
    }
    if let Some(row) = &email_job
        && let Err(err) = ctx.queues.dispatch(&ctx.db, &[OutboxJob::from(row)]).await
    {
        tracing::warn!(error = %err, "email left to the outbox relay");
    }
    Ok(NotifyResult {
        in_app,
        email: recipient.email_enabled,
        skipped: None,
    })
}

fn skipped(why: &str) -> NotifyResult {
    NotifyResult {
        in_app: false,
        email: false,
        skipped: Some(why.to_owned()),
    }
}

/// The email that goes with a notification.
fn email_message(content: &NotificationContent) -> EmailMessage {
    match content {
        NotificationContent::PriceAlert(fired) => EmailMessage::PriceAlert(fired.clone()),
        NotificationContent::JobFinished(finished) => EmailMessage::JobFinished(finished.clone()),
        NotificationContent::Welcome => EmailMessage::Welcome,
        NotificationContent::PasswordChanged => EmailMessage::PasswordChanged,
    }
}
