//! The alert resource as callers see it and send it.

use chrono::{DateTime, Utc};
use common::alerts::{AlertState, Condition, Trigger};
use poem_openapi::Object;
use poem_openapi::types::{Example, MaybeUndefined};
use rust_decimal::Decimal;
use serde::Deserialize;
use uuid::Uuid;

use crate::portfolios::amount::Dec;

/// A price alert.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Alert {
    /// The alert's id.
    pub id: Uuid,
    /// The coin watched.
    pub coin_id: String,
    /// The currency of `target` (for price conditions).
    pub vs_currency: String,
    /// When it fires.
    pub condition: Condition,
    /// The price level, or for `pct_change_24h_*` the 24 h change in percent.
    pub target: Dec,
    /// `once` (then inactive) or `every_crossing`.
    pub trigger: Trigger,
    /// Least time between two firings, in seconds.
    pub cooldown: Option<i32>,
    /// When it stops watching.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The caller's note, shown in the notification and email.
    pub note: Option<String>,
    /// Whether it is watching.
    pub active: bool,
    /// `armed`, `triggered` or `expired`.
    pub state: AlertState,
    /// When it last fired.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub last_triggered_at: Option<DateTime<Utc>>,
    /// How many times it fired.
    pub trigger_count: i32,
    /// When it was created.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
    /// When it last changed (by the caller or by firing).
    #[oai(serialize_with = "common::wire::timestamp")]
    pub updated_at: DateTime<Utc>,
}

impl Example for Alert {
    fn example() -> Self {
        let at = crate::platform::example_time();
        Self {
            id: Uuid::nil(),
            coin_id: "bitcoin".into(),
            vs_currency: "usd".into(),
            condition: Condition::CrossingUp,
            target: Dec(Decimal::new(100_000, 0)),
            trigger: Trigger::EveryCrossing,
            cooldown: Some(3600),
            expires_at: None,
            note: Some("take some profit".into()),
            active: true,
            state: AlertState::Armed,
            last_triggered_at: None,
            trigger_count: 0,
            created_at: at,
            updated_at: at,
        }
    }
}

/// A row of `alerts`.
#[derive(Debug, Clone)]
pub struct AlertRow {
    pub id: Uuid,
    pub coin_id: String,
    pub vs_currency: String,
    pub condition: Condition,
    pub target: Decimal,
    pub trigger: Trigger,
    pub cooldown_seconds: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub note: Option<String>,
    pub active: bool,
    pub state: AlertState,
    pub last_triggered_at: Option<DateTime<Utc>>,
    pub trigger_count: i32,
    pub version: i32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertRow {
    /// The strong ETag of this version.
    pub fn etag(&self) -> String {
        crate::platform::conditional::etag(self.version)
    }

    /// Whether its `expires_at` has passed (the worker retires it at its next evaluation).
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

impl From<AlertRow> for Alert {
    fn from(row: AlertRow) -> Self {
        // Past its expiry it is expired, whether or not the worker has seen it yet.
        let expired = row.expired(Utc::now());
        Self {
            id: row.id,
            coin_id: row.coin_id,
            vs_currency: row.vs_currency,
            condition: row.condition,
            target: Dec(row.target),
            trigger: row.trigger,
            cooldown: row.cooldown_seconds,
            expires_at: row.expires_at,
            note: row.note,
            active: row.active && !expired,
            state: if row.active && expired {
                AlertState::Expired
            } else {
                row.state
            },
            last_triggered_at: row.last_triggered_at,
            trigger_count: row.trigger_count,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A new alert.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertRequest {
    /// Coin id, e.g. `bitcoin`.
    #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
    pub coin_id: String,
    /// Currency of the target price, e.g. `usd` (one the price provider quotes in; default `usd`).
    #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
    pub vs_currency: Option<String>,
    /// When it fires.
    pub condition: Condition,
    /// The price level (greater than 0, below 10^15), or for `pct_change_24h_*` the change in
    /// percent (from -100 to 100000).
    pub target: Dec,
    /// `once` (default) or `every_crossing`.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub trigger: Option<Trigger>,
    /// Least time between two firings, in seconds: 1 to 2592000 (30 days); only for
    /// `every_crossing`.
    #[oai(validator(minimum(value = "1"), maximum(value = "2592000")))]
    pub cooldown: Option<i32>,
    /// When to stop watching (RFC 3339, in the future).
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Up to 280 characters without control characters; surrounding spaces are dropped.
    #[oai(validator(max_length = 280))]
    pub note: Option<String>,
    /// Whether it watches from now on (default `true`).
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub active: Option<bool>,
}

impl Example for CreateAlertRequest {
    fn example() -> Self {
        Self {
            coin_id: "bitcoin".into(),
            vs_currency: Some("usd".into()),
            condition: Condition::CrossingUp,
            target: Dec(Decimal::new(100_000, 0)),
            trigger: Some(Trigger::EveryCrossing),
            cooldown: Some(3600),
            expires_at: None,
            note: Some("take some profit".into()),
            active: None,
        }
    }
}

/// Changes to an alert (a merge patch): omitted fields stay as they are; `null` clears
/// `cooldown`, `expires_at` and `note`. Changing what it watches (coin, currency,
/// condition, target, trigger) or re-activating it re-arms it.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateAlertRequest {
    /// As for creating.
    #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
    pub coin_id: Option<String>,
    /// As for creating.
    #[oai(validator(pattern = r"^[A-Za-z]{2,10}$"))]
    pub vs_currency: Option<String>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub condition: Option<Condition>,
    /// As for creating.
    pub target: Option<Dec>,
    /// As for creating.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub trigger: Option<Trigger>,
    /// As for creating; `null` removes the cooldown.
    #[oai(validator(minimum(value = "1"), maximum(value = "2592000")))]
    #[serde(default)]
    pub cooldown: MaybeUndefined<i32>,
    /// As for creating; `null` removes the expiry.
    #[serde(default)]
    pub expires_at: MaybeUndefined<DateTime<Utc>>,
    /// As for creating; `null` removes the note.
    #[oai(validator(max_length = 280))]
    #[serde(default)]
    pub note: MaybeUndefined<String>,
    /// `false` pauses it; `true` re-arms it (counts toward the limit of active alerts).
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub active: Option<bool>,
}

impl Example for UpdateAlertRequest {
    fn example() -> Self {
        Self {
            coin_id: None,
            vs_currency: None,
            condition: None,
            target: Some(Dec(Decimal::new(120_000, 0))),
            trigger: None,
            cooldown: MaybeUndefined::Null,
            expires_at: MaybeUndefined::Undefined,
            note: MaybeUndefined::Undefined,
            active: Some(true),
        }
    }
}
