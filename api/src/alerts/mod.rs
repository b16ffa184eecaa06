//! Price alerts: `/api/v1/alerts`. The API stores what callers ask to be told about; the
//! worker evaluates alerts after each price refresh (`worker/src/alerts/`).

mod model;
mod store;
mod validate;

use chrono::Utc;
use common::alerts::Trigger;
use poem_openapi::param::{Header, Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::MaybeUndefined;
use poem_openapi::{ApiResponse, OpenApi};
use uuid::Uuid;

use self::model::AlertRow;
pub use self::model::{Alert, CreateAlertRequest, UpdateAlertRequest};
use self::store::AlertFields;
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::conditional;
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};
use crate::portfolios::validate::FieldErrors;

/// Alert endpoints.
#[derive(Debug)]
pub struct AlertsApi {
    state: AppState,
}

impl AlertsApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }

    /// Refuses one more active alert beyond the caller's limit. Call it with the owner's row
    /// locked (`store::lock_owner`), so two requests cannot both take the last place.
    async fn check_limit(
        &self,
        tx: &mut sqlx::PgConnection,
        user: Uuid,
        except: Option<Uuid>,
    ) -> Result<(), ApiError> {
        let limit = self.state.config.alerts_max_active_per_user;
        let active = store::count_active(&mut *tx, user, except).await?;
        if active >= i64::from(limit) {
            return Err(ApiError::invalid(
                "active",
                format!(
                    "at most {limit} alerts may be active at once; deactivate or delete one first"
                ),
            ));
        }
        Ok(())
    }
}

#[derive(ApiResponse)]
enum AlertCreated {
    /// Created.
    #[oai(status = 201)]
    Created(
        Json<Alert>,
        /// The alert's URL.
        #[oai(header = "Location")]
        String,
        /// The alert's version, for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
enum AlertFound {
    /// The alert.
    #[oai(status = 200)]
    Ok(
        Json<Alert>,
        /// The alert's version (a strong ETag such as `"3"`), for `If-Match`.
        #[oai(header = "ETag")]
        String,
    ),
}

#[derive(ApiResponse)]
enum AlertDeleted {
    /// Deleted.
    #[oai(status = 204)]
    Done,
}

fn found(row: AlertRow) -> AlertFound {
    let etag = row.etag();
    AlertFound::Ok(Json(row.into()), etag)
}

fn not_found() -> ApiError {
    ApiError::not_found("alert")
}

/// Whether `If-Match` allows a change to `row` (412 otherwise).
fn check_if_match(if_match: Option<&str>, row: &AlertRow) -> Result<(), ApiError> {
    conditional::check_if_match(if_match, &row.etag(), "alert")
}

#[OpenApi(prefix_path = "/api/v1/alerts", tag = "ApiTags::Alerts")]
impl AlertsApi {
    /// The caller's alerts, newest first; filter by coin and by whether they are active.
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
        /// Only alerts on this coin.
        #[oai(validator(pattern = r"^[a-z0-9_.-]{1,100}$"))]
        coin_id: Query<Option<String>>,
        /// Only active (`true`) or inactive (`false`) alerts; expired ones are inactive.
        active: Query<Option<bool>>,
    ) -> ApiResult<Json<Page<Alert>>, { status::AUTHED | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let mut conn = self.state.db.acquire().await?;
        let (rows, total) = store::list(
            &mut conn,
            caller.0.id,
            coin_id.0.as_deref(),
            active.0,
            request.limit(),
            request.offset(),
        )
        .await?;
        Ok(Json(Page::new(
            rows.into_iter().map(Alert::from).collect(),
            request,
            total,
        )))
    }

    /// Create an alert.
    ///
    /// After each price refresh the worker evaluates active alerts; one that fires sends a
    /// notification (in-app, email, live event) as the caller's preferences allow. Level
    /// conditions (`above`, `below`, `pct_change_24h_*`) fire at the first evaluation where
    /// they hold — at once if they already do — and an `every_crossing` one fires again only
    /// after the condition was false in between; edge conditions (`crossing*`) fire when the
    /// price moves through the target between two evaluations. At most
    /// `ALERTS_MAX_ACTIVE_PER_USER` (default 100) alerts may be active at once (`422`).
    #[oai(path = "/", method = "post")]
    async fn create(
        &self,
        caller: ActiveUser,
        body: JsonBody<CreateAlertRequest>,
    ) -> ApiResult<AlertCreated, { status::AUTHED | status::BODY }> {
        let request = body.0;
        let now = Utc::now();
        let mut problems = FieldErrors::default();
        let coin_id = validate::coin_id(&mut problems, &request.coin_id)?;
        let vs_currency = validate::vs_currency(
            &mut problems,
            self.state.prices.provider(),
            request.vs_currency.as_deref(),
        );
        validate::target(&mut problems, request.condition, request.target.0);
        let trigger = request.trigger.unwrap_or(Trigger::Once);
        validate::cooldown(&mut problems, trigger, request.cooldown);
        validate::expires_at(&mut problems, request.expires_at, now);
        let note = validate::note(&mut problems, request.note.as_deref());
        problems.finish()?;
        let fields = AlertFields {
            coin_id: coin_id.unwrap_or_default(),
            vs_currency: vs_currency.unwrap_or_default(),
            condition: request.condition,
            target: request.target.0,
            trigger,
            cooldown_seconds: request.cooldown,
            expires_at: request.expires_at,
            note,
            active: request.active.unwrap_or(true),
        };
        let user = caller.0.id;
        let mut tx = self.state.db.begin().await?;
        if fields.active {
            store::lock_owner(&mut tx, user).await?;
            self.check_limit(&mut tx, user, None).await?;
        }
        let row = store::insert(&mut *tx, user, &fields).await?;
        tx.commit().await?;
        tracing::info!(alert_id = %row.id, "alert created");
        let location = format!("/api/v1/alerts/{}", row.id);
        let etag = row.etag();
        Ok(AlertCreated::Created(Json(row.into()), location, etag))
    }

    /// One of the caller's alerts, with its version as `ETag`.
    #[oai(path = "/:id", method = "get")]
    async fn get(
        &self,
        caller: ActiveUser,
        /// The alert's id.
        id: Path<Uuid>,
    ) -> ApiResult<AlertFound, { status::AUTHED | status::VALIDATION | status::NOT_FOUND }> {
        let row = store::find(&self.state.db, caller.0.id, id.0)
            .await?
            .ok_or_else(not_found)?;
        Ok(found(row))
    }

    /// Change an alert (a merge patch).
    ///
    /// Changing what it watches (coin, currency, condition, target, trigger) or re-activating
    /// it re-arms it: the next evaluation starts afresh. Re-activating counts toward the limit
    /// of active alerts (`422`); an expired alert needs a new `expires_at` (or `null`) to be
    /// re-activated. `If-Match` with the `ETag` last seen makes the change conditional (`412`
    /// if the alert changed since, e.g. because it fired). A body with no field changes nothing.
    #[oai(path = "/:id", method = "patch")]
    async fn update(
        &self,
        caller: ActiveUser,
        /// The alert's id.
        id: Path<Uuid>,
        /// The `ETag` last seen, e.g. `"3"`; `*` matches any version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
        body: JsonBody<UpdateAlertRequest>,
    ) -> ApiResult<
        AlertFound,
        { status::AUTHED | status::BODY | status::NOT_FOUND | status::PRECONDITION_FAILED },
    > {
        let request = body.0;
        let user = caller.0.id;
        let now = Utc::now();
        let mut tx = self.state.db.begin().await?;
        // Only `"active": true` can re-activate, and that takes the owner's row lock: take it
        // before the alert's, in the order creates and account deletion (which cascades to
        // alerts) lock them, so concurrent requests queue instead of deadlocking.
        if request.active == Some(true) {
            store::lock_owner(&mut tx, user).await?;
        }
        let current = store::lock(&mut tx, user, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        let untouched = request.coin_id.is_none()
            && request.vs_currency.is_none()
            && request.condition.is_none()
            && request.target.is_none()
            && request.trigger.is_none()
            && request.cooldown.is_undefined()
            && request.expires_at.is_undefined()
            && request.note.is_undefined()
            && request.active.is_none();
        if untouched {
            // An empty merge patch (RFC 7396) changes nothing: the current copy, same version.
            return Ok(found(current));
        }

        let mut problems = FieldErrors::default();
        let coin_id = match request.coin_id.as_deref() {
            Some(raw) => validate::coin_id(&mut problems, raw)?,
            None => Some(current.coin_id.clone()),
        };
        let vs_currency = match request.vs_currency.as_deref() {
            Some(raw) => {
                validate::vs_currency(&mut problems, self.state.prices.provider(), Some(raw))
            }
            None => Some(current.vs_currency.clone()),
        };
        let condition = request.condition.unwrap_or(current.condition);
        let target = request.target.map_or(current.target, |target| target.0);
        if request.condition.is_some() || request.target.is_some() {
            validate::target(&mut problems, condition, target);
        }
        let trigger = request.trigger.unwrap_or(current.trigger);
        let cooldown_seconds = match request.cooldown {
            MaybeUndefined::Value(seconds) => Some(seconds),
            MaybeUndefined::Null => None,
            MaybeUndefined::Undefined => current.cooldown_seconds,
        };
        validate::cooldown(&mut problems, trigger, cooldown_seconds);
        let expires_at = match request.expires_at {
            MaybeUndefined::Value(at) => {
                validate::expires_at(&mut problems, Some(at), now);
                Some(at)
            }
            MaybeUndefined::Null => None,
            MaybeUndefined::Undefined => current.expires_at,
        };
        let note = match &request.note {
            MaybeUndefined::Value(note) => validate::note(&mut problems, Some(note)),
            MaybeUndefined::Null => None,
            MaybeUndefined::Undefined => current.note.clone(),
        };
        let was_active = current.active && !current.expired(now);
        let active = request.active.unwrap_or(was_active);
        if active && expires_at.is_some_and(|at| at <= now) {
            problems.push(
                "expires_at",
                "the alert has expired: give a new expires_at (or null) to re-activate it",
            );
        }
        problems.finish()?;
        let fields = AlertFields {
            coin_id: coin_id.unwrap_or_default(),
            vs_currency: vs_currency.unwrap_or_default(),
            condition,
            target,
            trigger,
            cooldown_seconds,
            expires_at,
            note,
            active,
        };
        let watches_something_else = fields.coin_id != current.coin_id
            || fields.vs_currency != current.vs_currency
            || fields.condition != current.condition
            || fields.target != current.target
            || fields.trigger != current.trigger;
        let reactivated = active && !was_active;
        if reactivated {
            // The owner's row is locked above (`request.active == Some(true)`).
            self.check_limit(&mut tx, user, Some(current.id)).await?;
        }
        let row = store::update(
            &mut *tx,
            current.id,
            &fields,
            watches_something_else || reactivated,
        )
        .await?;
        tx.commit().await?;
        Ok(found(row))
    }

    /// Delete an alert. `If-Match` works as for `PATCH`.
    #[oai(path = "/:id", method = "delete")]
    async fn delete(
        &self,
        caller: ActiveUser,
        /// The alert's id.
        id: Path<Uuid>,
        /// The `ETag` last seen, e.g. `"3"`; `*` matches any version.
        #[oai(name = "If-Match")]
        if_match: Header<Option<String>>,
    ) -> ApiResult<
        AlertDeleted,
        { status::AUTHED | status::VALIDATION | status::NOT_FOUND | status::PRECONDITION_FAILED },
    > {
        let mut tx = self.state.db.begin().await?;
        let current = store::lock(&mut tx, caller.0.id, id.0)
            .await?
            .ok_or_else(not_found)?;
        check_if_match(if_match.0.as_deref(), &current)?;
        store::delete(&mut *tx, current.id).await?;
        tx.commit().await?;
        Ok(AlertDeleted::Done)
    }
}
