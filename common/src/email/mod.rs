//! Email: the `email` job kind and the single-use account tokens some messages carry.
//! Rendering and sending live in the worker; the API only asks for messages.

pub mod tokens;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jobs::{JobArgs, JobKind, Queue};
use crate::notifications::{AlertFired, JobFinished};

/// Who a message goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Recipient {
    /// An account, at its current address.
    User {
        /// The account.
        user_id: Uuid,
    },
    /// Whichever account has this address, if any (password reset: the requester does not
    /// learn whether one exists, and the API does the same work either way).
    Address {
        /// The address as the requester typed it.
        email: String,
    },
}

/// Which message, with what it needs. Messages that carry a link with a token (welcome,
/// verification, reset) get the token when they are sent: it is never stored in the job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "template", rename_all = "snake_case")]
pub enum EmailMessage {
    /// Welcome, with a link to verify the address.
    Welcome,
    /// A link to verify the address.
    VerifyEmail,
    /// A link to choose a new password.
    PasswordReset,
    /// The password was changed.
    PasswordChanged,
    /// A price alert fired.
    PriceAlert(AlertFired),
    /// A job finished.
    JobFinished(JobFinished),
}

impl EmailMessage {
    /// The template's name (`email_deliveries.template`, logs).
    pub fn template(&self) -> &'static str {
        match self {
            EmailMessage::Welcome => "welcome",
            EmailMessage::VerifyEmail => "verify_email",
            EmailMessage::PasswordReset => "password_reset",
            EmailMessage::PasswordChanged => "password_changed",
            EmailMessage::PriceAlert(_) => "price_alert",
            EmailMessage::JobFinished(_) => "job_finished",
        }
    }
}

/// Send one message. `event_id` is what makes it exactly once: the delivery record, the
/// job's id and the `Message-ID` header all derive from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEmail {
    /// The event the message is about.
    pub event_id: Uuid,
    /// Who it goes to.
    pub to: Recipient,
    /// What it says.
    pub message: EmailMessage,
}

impl SendEmail {
    /// The job's id, derived from the event: asking twice for one event's email queues it once.
    pub fn job_id(&self) -> Uuid {
        let name = format!("coinpulse:email:{}", self.event_id);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }
}

impl JobArgs for SendEmail {
    const KIND: JobKind = JobKind::Email;
    const QUEUE: Queue = Queue::Email;
    /// With the default backoff (1 s doubling, at most 5 min) this keeps trying for about
    /// 15 minutes: a mail server restart or a short outage costs no message.
    const MAX_ATTEMPTS: i32 = 10;
    const TIMEOUT: Option<Duration> = Some(Duration::from_secs(60));
    const DEDUPLICATED: bool = true;
    type Output = EmailResult;
}

crate::text_enum! {
    /// How an email job ended.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
    #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
    pub enum EmailOutcome {
        /// The mail server accepted it.
        Sent = "sent",
        /// Written to the outbox directory (no `SMTP_URL`).
        Outbox = "outbox",
        /// A delivery record existed: an earlier run sent it.
        Duplicate = "duplicate",
        /// Nobody to send to (no such account, account deleted, address already verified).
        NoRecipient = "no_recipient",
    }
}

/// What an email job did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct EmailResult {
    /// How it ended.
    pub outcome: EmailOutcome,
    /// The message's `Message-ID`, when one was sent (now or by an earlier run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}
