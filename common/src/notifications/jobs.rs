//! `notify`: delivers one notification.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::NotificationContent;
use crate::jobs::{JobArgs, JobKind, Queue};

/// Deliver `content` to `user_id`: the in-app notification, a `user:{id}` event and, when the
/// user's preferences allow, an `email` job. Everything is keyed by `event_id`, so a re-run
/// writes nothing twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Notify {
    /// The event being notified; the notification's id and the email's key.
    pub event_id: Uuid,
    /// Who is told.
    pub user_id: Uuid,
    /// What they are told.
    pub content: NotificationContent,
}

impl Notify {
    /// The job's id, derived from the event: a second request to notify the same event is
    /// dropped.
    pub fn job_id(&self) -> Uuid {
        let name = format!("coinpulse:notify:{}", self.event_id);
        Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
    }
}

impl JobArgs for Notify {
    const KIND: JobKind = JobKind::Notify;
    const QUEUE: Queue = Queue::Notify;
    const MAX_ATTEMPTS: i32 = 10;
    const DEDUPLICATED: bool = true;
    type Output = NotifyResult;
}

/// What delivering a notification did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(poem_openapi::Object))]
pub struct NotifyResult {
    /// An in-app notification exists for the event.
    pub in_app: bool,
    /// An email job exists for the event.
    pub email: bool,
    /// Why nothing was delivered (category switched off, account gone), if so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}
