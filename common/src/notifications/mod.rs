//! Notifications: what happened that a user should hear about, and how it reaches them
//! (in-app row, `user:{id}` event, email), as the user's preferences allow.

pub mod jobs;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alerts::Condition;
use crate::jobs::{JobKind, JobStatus};

crate::text_enum! {
    /// What a notification is about; users switch categories on and off in their preferences.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    #[cfg_attr(feature = "openapi", derive(poem_openapi::Enum))]
    #[cfg_attr(feature = "openapi", oai(rename_all = "snake_case"))]
    pub enum Category {
        /// A price alert fired.
        PriceAlerts = "price_alerts",
        /// The account itself: welcome, password changed.
        Account = "account",
        /// The user's background jobs finished.
        Jobs = "jobs",
    }
}

/// What a notification says, by kind. Stored as the notification's `data` and rendered into
/// its title, body and email by the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NotificationContent {
    /// A price alert fired.
    PriceAlert(AlertFired),
    /// One of the user's jobs reached a final status.
    JobFinished(JobFinished),
    /// A new account: welcome, with a link to verify the address.
    Welcome,
    /// The account's password was changed (by the user, or by a reset).
    PasswordChanged,
}

impl NotificationContent {
    /// The category whose switch governs it.
    pub fn category(&self) -> Category {
        match self {
            NotificationContent::PriceAlert(_) => Category::PriceAlerts,
            NotificationContent::JobFinished(_) => Category::Jobs,
            NotificationContent::Welcome | NotificationContent::PasswordChanged => {
                Category::Account
            }
        }
    }

    /// The kind's name (`notifications.kind`, the event's `data.kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            NotificationContent::PriceAlert(_) => "price_alert",
            NotificationContent::JobFinished(_) => "job_finished",
            NotificationContent::Welcome => "welcome",
            NotificationContent::PasswordChanged => "password_changed",
        }
    }
}

/// One firing of a price alert.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertFired {
    /// The alert.
    pub alert_id: Uuid,
    /// Its nth firing (with the alert, the firing key).
    pub sequence: i32,
    /// The coin.
    pub coin_id: String,
    /// The quote currency.
    pub vs_currency: String,
    /// The alert's condition.
    pub condition: Condition,
    /// The alert's target (a price, or a 24 h change in percent).
    pub target: Decimal,
    /// The price when it fired.
    pub price: Decimal,
    /// The 24 h change in percent when it fired, if known.
    pub change_24h_pct: Option<Decimal>,
    /// The user's note on the alert.
    pub note: Option<String>,
    /// When it fired.
    pub fired_at: DateTime<Utc>,
}

/// One of the user's jobs reached a final status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobFinished {
    /// The job.
    pub job_id: Uuid,
    /// What it did.
    pub kind: JobKind,
    /// How it ended (`succeeded` or `dead`).
    pub status: JobStatus,
    /// One line on the outcome (e.g. "3 of 4 coins priced").
    pub summary: String,
}
