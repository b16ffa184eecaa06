//! In-app notifications and notification preferences: `/api/v1/notifications`. The worker
//! writes notifications (`worker/src/notifications/`); callers read, mark and delete them, and
//! choose what reaches them and how.

pub mod outbox;
mod store;

use chrono::{DateTime, Utc};
use common::notifications::Category;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::{Any, Example};
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use self::store::{NotificationRow, PreferencesRow};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::PageRequest;

/// Notification endpoints.
#[derive(Debug)]
pub struct NotificationsApi {
    state: AppState,
}

impl NotificationsApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A notification.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct Notification {
    /// The notification's id (also the id of the event it reports).
    pub id: Uuid,
    /// `price_alerts`, `account` or `jobs`.
    pub category: Category,
    /// What happened: `price_alert`, `job_finished`, `welcome`, `password_changed`.
    pub kind: String,
    /// One line.
    pub title: String,
    /// The details in words.
    pub body: String,
    /// The details as data (by `kind`; e.g. a price alert's coin, target and price).
    pub data: Any<serde_json::Value>,
    /// Whether it was read.
    pub read: bool,
    /// When it was read.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub read_at: Option<DateTime<Utc>>,
    /// When it was written.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
}

impl Example for Notification {
    fn example() -> Self {
        let at = crate::platform::example_time();
        Self {
            id: Uuid::nil(),
            category: Category::PriceAlerts,
            kind: "price_alert".into(),
            title: "bitcoin rose through 100000 USD".into(),
            body: "bitcoin is at 100250.5 USD (2.1% over 24 h).".into(),
            data: Any(serde_json::json!({
                "type": "price_alert", "coin_id": "bitcoin", "vs_currency": "usd",
                "condition": "crossing_up", "target": "100000", "price": "100250.5"
            })),
            read: false,
            read_at: None,
            created_at: at,
        }
    }
}

impl From<NotificationRow> for Notification {
    fn from(row: NotificationRow) -> Self {
        Self {
            id: row.id,
            category: row.category,
            kind: row.kind,
            title: row.title,
            body: row.body,
            data: Any(row.data),
            read: row.read_at.is_some(),
            read_at: row.read_at,
            created_at: row.created_at,
        }
    }
}

/// One page of notifications, with the caller's unread count.
#[derive(Debug, Object)]
pub struct NotificationPage {
    /// The notifications on this page, newest first.
    pub items: Vec<Notification>,
    /// This page's number (1-based).
    pub page: u32,
    /// The page size asked for.
    pub per_page: u32,
    /// How many notifications match in all.
    pub total: u64,
    /// How many pages there are at this page size.
    pub total_pages: u64,
    /// The caller's unread notifications, whatever the filters.
    pub unread_count: u64,
}

/// How many notifications were marked read.
#[derive(Debug, Object)]
pub struct MarkedRead {
    /// Notifications that were unread and are read now.
    pub updated: u64,
}

/// What reaches the caller, and how. Categories switch notifications off entirely; the
/// channels say where the others go.
#[derive(Debug, Clone, Copy, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct NotificationPreferences {
    /// In-app notifications (and their live events).
    pub in_app_enabled: bool,
    /// Emails.
    pub email_enabled: bool,
    /// Price alerts that fired.
    pub price_alerts: bool,
    /// The account itself (welcome, password changed).
    pub account: bool,
    /// Your background jobs finishing.
    pub jobs: bool,
}

impl Example for NotificationPreferences {
    fn example() -> Self {
        Self {
            in_app_enabled: true,
            email_enabled: false,
            price_alerts: true,
            account: true,
            jobs: false,
        }
    }
}

impl From<PreferencesRow> for NotificationPreferences {
    fn from(row: PreferencesRow) -> Self {
        Self {
            in_app_enabled: row.in_app_enabled,
            email_enabled: row.email_enabled,
            price_alerts: row.price_alerts,
            account: row.account,
            jobs: row.jobs,
        }
    }
}

#[derive(ApiResponse)]
enum Deleted {
    /// Deleted.
    #[oai(status = 204)]
    Done,
}

fn not_found() -> ApiError {
    ApiError::not_found("notification")
}

#[OpenApi(prefix_path = "/api/v1/notifications", tag = "ApiTags::Notifications")]
impl NotificationsApi {
    /// The caller's notifications, newest first, with their unread count.
    #[oai(path = "/", method = "get")]
    async fn list(
        &self,
        caller: ActiveUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Only unread (`true`) or read (`false`) notifications.
        unread: Query<Option<bool>>,
        /// Only this category.
        category: Query<Option<Category>>,
    ) -> ApiResult<Json<NotificationPage>, { status::AUTHED | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let mut conn = self.state.db.acquire().await?;
        let (rows, total, unread_count) = store::list(
            &mut conn,
            caller.0.id,
            unread.0,
            category.0,
            request.limit(),
            request.offset(),
        )
        .await?;
        let total = u64::try_from(total).unwrap_or(0);
        Ok(Json(NotificationPage {
            items: rows.into_iter().map(Notification::from).collect(),
            page: request.page,
            per_page: request.per_page,
            total,
            total_pages: total.div_ceil(u64::from(request.per_page)),
            unread_count: u64::try_from(unread_count).unwrap_or(0),
        }))
    }

    /// Mark every unread notification read (of one category, if given).
    #[oai(path = "/read-all", method = "post")]
    async fn read_all(
        &self,
        caller: ActiveUser,
        /// Only this category.
        category: Query<Option<Category>>,
    ) -> ApiResult<Json<MarkedRead>, { status::AUTHED | status::VALIDATION }> {
        let updated = store::mark_all_read(&self.state.db, caller.0.id, category.0).await?;
        Ok(Json(MarkedRead { updated }))
    }

    /// What reaches the caller, and how (all on until changed).
    #[oai(path = "/preferences", method = "get")]
    async fn preferences(
        &self,
        caller: ActiveUser,
    ) -> ApiResult<Json<NotificationPreferences>, { status::AUTHED }> {
        let stored = store::preferences(&self.state.db, caller.0.id).await?;
        Ok(Json(stored.into()))
    }

    /// Replace the caller's preferences (every field is required). They apply to
    /// notifications delivered from now on.
    #[oai(path = "/preferences", method = "put")]
    async fn set_preferences(
        &self,
        caller: ActiveUser,
        body: JsonBody<NotificationPreferences>,
    ) -> ApiResult<Json<NotificationPreferences>, { status::AUTHED | status::BODY }> {
        let wanted = body.0;
        let stored = store::save_preferences(
            &self.state.db,
            caller.0.id,
            PreferencesRow {
                in_app_enabled: wanted.in_app_enabled,
                email_enabled: wanted.email_enabled,
                price_alerts: wanted.price_alerts,
                account: wanted.account,
                jobs: wanted.jobs,
            },
        )
        .await?;
        Ok(Json(stored.into()))
    }

    /// Mark one notification read (again is harmless: the first time is kept).
    #[oai(path = "/:id/read", method = "post")]
    async fn read(
        &self,
        caller: ActiveUser,
        /// The notification's id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<Notification>, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }>
    {
        let row = store::mark_read(&self.state.db, caller.0.id, id.0)
            .await?
            .ok_or_else(not_found)?;
        Ok(Json(row.into()))
    }

    /// Delete one notification.
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        caller: ActiveUser,
        /// The notification's id.
        id: Path<Uuid>,
    ) -> ApiResult<Deleted, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }> {
        if store::delete(&self.state.db, caller.0.id, id.0).await? {
            Ok(Deleted::Done)
        } else {
            Err(not_found().into())
        }
    }
}
