//! User administration, for role `admin`, and the audit log of operator actions.

pub mod audit;

use common::domain::Role;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

use self::audit::AuditAction;

use crate::app::AppState;
use crate::auth::extract::AdminUser;
use crate::auth::sessions;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::platform::pagination::{Page, PageRequest};
use crate::users::model::{RoleName, UserProfile};
use crate::users::{parse_profile_changes, store};

/// Admin endpoints.
#[derive(Debug)]
pub struct AdminApi {
    state: AppState,
}

impl AdminApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Changes an admin may make to any account; omitted fields stay as they are.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct AdminUpdateUser {
    /// New email address (as for registering).
    #[oai(validator(
        max_length = 254,
        pattern = r#"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f"@]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\r]*$"#
    ))]
    pub email: Option<String>,
    /// New username (as for registering).
    #[oai(validator(pattern = r"^[ \t\n\r]*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}[ \t\n\r]*$"))]
    pub username: Option<String>,
    /// New role.
    #[serde(default, deserialize_with = "crate::platform::json_body::non_null")]
    pub role: Option<RoleName>,
    /// Enable or disable the account; disabling revokes its sessions.
    pub is_active: Option<bool>,
}

impl poem_openapi::types::Example for AdminUpdateUser {
    fn example() -> Self {
        Self {
            email: None,
            username: None,
            role: Some(RoleName::Admin),
            is_active: Some(true),
        }
    }
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

const ADMIN: u32 = status::AUTHED | status::FORBIDDEN;

fn conflict(detail: &str) -> ApiError {
    ApiError::Conflict {
        detail: detail.into(),
        field: None,
    }
}

#[OpenApi(prefix_path = "/api/v1/admin", tag = "ApiTags::Admin")]
impl AdminApi {
    /// List users, newest first; search by email or username, filter by role and state.
    #[oai(path = "/users", method = "get")]
    #[allow(clippy::too_many_arguments)]
    async fn list_users(
        &self,
        _admin: AdminUser,
        /// Page number, from 1 (at most 1,000,000).
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Items per page, 1–100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        per_page: Query<Option<u32>>,
        /// Case-insensitive substring of email or username (at most 254 characters).
        #[oai(validator(max_length = 254, pattern = r"^[^\x00]*$"))]
        q: Query<Option<String>>,
        /// Only users with this role.
        role: Query<Option<RoleName>>,
        /// Only active (`true`) or disabled (`false`) users.
        active: Query<Option<bool>>,
    ) -> ApiResult<Json<Page<UserProfile>>, { ADMIN | status::VALIDATION }> {
        let request = PageRequest::parse(page.0, per_page.0)?;
        let search =
            q.0.map(|text| text.trim().to_owned())
                .filter(|text| !text.is_empty());
        // Also checked here, whatever the document's validators do: Postgres text cannot hold
        // U+0000, and the bound keeps the ILIKE cheap.
        if search
            .as_ref()
            .is_some_and(|text| text.chars().count() > 254 || text.contains('\0'))
        {
            return Err(
                ApiError::invalid("q", "must be at most 254 characters, without U+0000").into(),
            );
        }
        let filter = store::UserFilter {
            search,
            role: role.0.map(Role::from),
            is_active: active.0,
        };
        let (rows, total) =
            store::list(&self.state.db, &filter, request.limit(), request.offset()).await?;
        let items = rows.into_iter().map(UserProfile::from).collect();
        Ok(Json(Page::new(items, request, total)))
    }

    /// One user.
    #[oai(path = "/users/:id", method = "get")]
    async fn get_user(
        &self,
        _admin: AdminUser,
        /// The user's id.
        id: Path<Uuid>,
    ) -> ApiResult<Json<UserProfile>, { ADMIN | status::VALIDATION | status::NOT_FOUND }> {
        let user = store::find(&self.state.db, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        Ok(Json(user.into()))
    }

    /// Change a user's email, username, role or active state.
    ///
    /// Demoting or disabling the last active administrator is refused (409).
    #[oai(path = "/users/:id", method = "patch")]
    async fn update_user(
        &self,
        admin: AdminUser,
        /// The user's id.
        id: Path<Uuid>,
        body: JsonBody<AdminUpdateUser>,
    ) -> ApiResult<Json<UserProfile>, { ADMIN | status::BODY | status::NOT_FOUND | status::CONFLICT }>
    {
        let request = body.0;
        let mut changes =
            parse_profile_changes(request.email.as_deref(), request.username.as_deref())?;
        changes.role = request.role.map(Role::from);
        changes.is_active = request.is_active;

        let mut tx = self.state.db.begin().await?;
        let target = store::find(&mut *tx, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        let loses_admin = target.role == Role::Admin
            && target.is_active
            && (changes.role == Some(Role::User) || changes.is_active == Some(false));
        if loses_admin && store::lock_active_admins(&mut *tx).await? <= 1 {
            return Err(
                conflict("the last active administrator cannot be demoted or disabled").into(),
            );
        }
        let user = store::update(&mut *tx, id.0, &changes)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        if changes.is_active == Some(false) {
            sessions::revoke_all(&mut *tx, user.id).await?;
        }
        let details = json!({
            "email": request.email.is_some(),
            "username": request.username.is_some(),
            "role": changes.role.map(|role| role.as_str()),
            "is_active": changes.is_active,
        });
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::UserUpdated,
            &format!("user:{}", user.id),
            1,
            details,
        )
        .await?;
        tx.commit().await?;
        self.state.users.invalidate(user.id);
        tracing::info!(admin_id = %admin.0.id, user_id = %user.id, "user updated by admin");
        Ok(Json(user.into()))
    }

    /// Delete a user and everything they own.
    ///
    /// Deleting the last active administrator is refused (409).
    #[oai(path = "/users/:id", method = "delete")]
    async fn delete_user(
        &self,
        admin: AdminUser,
        /// The user's id.
        id: Path<Uuid>,
    ) -> ApiResult<NoContent, { ADMIN | status::VALIDATION | status::NOT_FOUND | status::CONFLICT }>
    {
        let mut tx = self.state.db.begin().await?;
        let target = store::find(&mut *tx, id.0)
            .await?
            .ok_or_else(|| ApiError::not_found("user"))?;
        if target.role == Role::Admin
            && target.is_active
            && store::lock_active_admins(&mut *tx).await? <= 1
        {
            return Err(conflict("the last active administrator cannot be deleted").into());
        }
        // Recorded before the delete: an admin deleting their own account is still the actor
        // (the entry's `actor_id` then becomes NULL with the account; the email stays).
        audit::record(
            &mut tx,
            &admin.0,
            AuditAction::UserDeleted,
            &format!("user:{}", target.id),
            1,
            json!({ "email": target.email }),
        )
        .await?;
        store::delete(&mut *tx, target.id).await?;
        tx.commit().await?;
        self.state.users.invalidate(target.id);
        tracing::info!(admin_id = %admin.0.id, user_id = %target.id, "user deleted by admin");
        Ok(NoContent::Done)
    }
}
