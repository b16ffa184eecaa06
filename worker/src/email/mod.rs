//! Email: `email` jobs render a message from templates and send it over SMTP (or into the
//! outbox directory), exactly once per event. In one transaction per message: an advisory
//! lock on the event (two runs of one job take turns), the delivery record checked (an
//! earlier run sent it: nothing to do), the account resolved, a token created for messages
//! with a link (stored hashed; the token exists in the message alone), the message sent, and
//! the delivery recorded with the token. A failed send rolls all of it back and the job is
//! retried with backoff; a permanent refusal makes it `dead`.

pub mod config;
pub mod render;
mod store;
pub mod transport;

use std::sync::Arc;

use common::email::tokens::{self, TokenPurpose};
use common::email::{EmailMessage, EmailOutcome, EmailResult, Recipient, SendEmail};
use lettre::Message;
use lettre::message::{Mailbox, MultiPart};

use self::config::EmailConfig;
use self::render::{Addressee, Templates};
use self::store::Account;
use self::transport::{SendError, Transport};
use crate::jobs::{Handlers, JobContext, JobError};

/// Everything sending needs, built once at start-up.
#[derive(Debug)]
pub struct Mailer {
    transport: Transport,
    from: Mailbox,
    domain: String,
    templates: Templates,
}

impl Mailer {
    /// From the settings; fails on a sender that is not a mailbox or an unusable `SMTP_URL`.
    pub fn from_config(config: &EmailConfig) -> anyhow::Result<Self> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|err| anyhow::anyhow!("EMAIL_FROM is not a mailbox: {err}"))?;
        let domain = from.email.domain().to_owned();
        // An empty `SMTP_URL=` (as a `.env` line often leaves it) means unset.
        let smtp_url = config
            .smtp_url
            .as_deref()
            .filter(|url| !url.trim().is_empty());
        let transport = Transport::new(smtp_url, config.outbox_dir.clone())
            .map_err(|err| anyhow::anyhow!("SMTP_URL is not usable: {err}"))?;
        let templates = Templates::new(&config.app_url)
            .map_err(|err| anyhow::anyhow!("email templates: {err}"))?;
        Ok(Self {
            transport,
            from,
            domain,
            templates,
        })
    }

    /// The transport's name (`smtp` or `outbox`), for the start-up log.
    pub fn transport_name(&self) -> &'static str {
        self.transport.name()
    }

    /// The deterministic `Message-ID` of an event's message.
    fn message_id(&self, event: uuid::Uuid) -> String {
        format!("<{event}@{}>", self.domain)
    }
}

/// The email job kind, sent with `mailer`.
pub fn handlers(handlers: Handlers, mailer: Arc<Mailer>) -> Handlers {
    for outcome in EmailOutcome::ALL.iter().copied() {
        metrics::counter!("emails_sent_total", "outcome" => outcome.as_str()).increment(0);
    }
    metrics::counter!("emails_sent_total", "outcome" => "failed").increment(0);
    handlers.register(move |ctx: JobContext, job: SendEmail| {
        let mailer = mailer.clone();
        async move {
            let outcome = send(&ctx, &mailer, job).await;
            let label = match &outcome {
                Ok(result) => result.outcome.as_str(),
                Err(_) => "failed",
            };
            metrics::counter!("emails_sent_total", "outcome" => label).increment(1);
            outcome
        }
    })
}

async fn send(ctx: &JobContext, mailer: &Mailer, job: SendEmail) -> Result<EmailResult, JobError> {
    let retry = |err: sqlx::Error| JobError::Retry(format!("email delivery: {err}"));
    let mut tx = ctx.db.begin().await.map_err(retry)?;
    store::lock_event(&mut *tx, job.event_id)
        .await
        .map_err(retry)?;
    if let Some(message_id) = store::delivered(&mut *tx, job.event_id)
        .await
        .map_err(retry)?
    {
        return Ok(EmailResult {
            outcome: EmailOutcome::Duplicate,
            message_id: Some(message_id),
        });
    }
    let account = match &job.to {
        Recipient::User { user_id } => store::account(&mut *tx, *user_id).await,
        Recipient::Address { email } => store::account_by_email(&mut *tx, email).await,
    }
    .map_err(retry)?;
    let nobody = Ok(EmailResult {
        outcome: EmailOutcome::NoRecipient,
        message_id: None,
    });
    let Some(account) = account.filter(|account| account.is_active) else {
        return nobody;
    };
    let purpose = match job.message {
        EmailMessage::Welcome if !account.email_verified => Some(TokenPurpose::VerifyEmail),
        EmailMessage::VerifyEmail if account.email_verified => return nobody,
        EmailMessage::VerifyEmail => Some(TokenPurpose::VerifyEmail),
        EmailMessage::PasswordReset => Some(TokenPurpose::PasswordReset),
        _ => None,
    };
    let token = match purpose {
        Some(purpose) => Some(
            tokens::create(&mut *tx, account.id, &account.email, purpose)
                .await
                .map_err(retry)?,
        ),
        None => None,
    };
    let link = token.as_ref().zip(purpose).map(|(token, purpose)| {
        let page = match purpose {
            TokenPurpose::VerifyEmail => "verify-email",
            TokenPurpose::PasswordReset => "reset-password",
        };
        format!("{}/{page}?token={token}", mailer.templates.app_url())
    });
    let rendered = mailer
        .templates
        .render(
            &job.message,
            &Addressee {
                username: &account.username,
                link: link.as_deref(),
                token: token.as_deref(),
            },
        )
        .map_err(|err| JobError::Permanent(format!("rendering the message: {err}")))?;
    let message_id = mailer.message_id(job.event_id);
    let message = build(mailer, &account, &message_id, rendered)?;
    mailer
        .transport
        .send(&message, &job.event_id.to_string())
        .await
        .map_err(|err| match err {
            SendError::Transient(why) => JobError::Retry(why),
            SendError::Permanent(why) => JobError::Permanent(why),
        })?;
    store::record(
        &mut *tx,
        job.event_id,
        account.id,
        job.message.template(),
        &message_id,
        mailer.transport.name(),
    )
    .await
    .map_err(retry)?;
    // A crash between the server's acceptance and this commit sends the message again on
    // retry, with the same Message-ID, by which receivers drop it.
    tx.commit().await.map_err(retry)?;
    tracing::info!(event_id = %job.event_id, template = job.message.template(), transport = mailer.transport.name(), "email sent");
    let outcome = match mailer.transport {
        Transport::Smtp(_) => EmailOutcome::Sent,
        Transport::Outbox(_) => EmailOutcome::Outbox,
    };
    Ok(EmailResult {
        outcome,
        message_id: Some(message_id),
    })
}

fn build(
    mailer: &Mailer,
    account: &Account,
    message_id: &str,
    rendered: render::Rendered,
) -> Result<Message, JobError> {
    let address = account.email.parse().map_err(|err| {
        JobError::Permanent(format!("the account's address is not deliverable: {err}"))
    })?;
    Message::builder()
        .message_id(Some(message_id.to_owned()))
        .from(mailer.from.clone())
        // The username is the user's text: no line break reaches the header (lettre would
        // panic on one), and lettre quotes or encodes the rest.
        .to(Mailbox::new(
            Some(render::header_safe(&account.username)),
            address,
        ))
        .subject(rendered.subject)
        .date_now()
        .multipart(MultiPart::alternative_plain_html(
            rendered.text,
            rendered.html,
        ))
        .map_err(|err| JobError::Permanent(format!("building the message: {err}")))
}
