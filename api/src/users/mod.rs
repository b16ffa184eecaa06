//! The caller's own account: `/api/v1/users/me`.

pub mod cache;
pub mod model;
pub mod store;
pub mod validate;

use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use sqlx::PgExecutor;
use uuid::Uuid;

use self::model::{UserProfile, UserRow};
use crate::app::AppState;
use crate::auth::extract::ActiveUser;
use crate::auth::passwords::Verification;
use crate::auth::sessions;
use crate::error::{ApiError, ApiResult, FieldError, status};
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;

/// Endpoints on the caller's own account.
#[derive(Debug)]
pub struct UsersApi {
    state: AppState,
}

impl UsersApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// Stores a new password hash for `user_id`, ends every session (refresh tokens revoked,
/// access tokens issued until now refused) and queues the owner's "password changed"
/// notice, inside the caller's transaction. The one path for both changing the password
/// (with the current one) and resetting it (with an emailed token), so the two cannot drift
/// apart. After commit, invalidate the account cache and dispatch the returned job.
pub async fn replace_password(
    tx: &mut sqlx::PgConnection,
    user_id: Uuid,
    new_hash: &str,
) -> Result<Option<common::jobs::store::JobRow>, sqlx::Error> {
    store::set_password_hash(&mut *tx, user_id, new_hash).await?;
    sessions::revoke_all(&mut *tx, user_id).await?;
    crate::notifications::outbox::notify(
        tx,
        user_id,
        common::notifications::NotificationContent::PasswordChanged,
    )
    .await
}

/// Account `id` as stored now, if it is active; 401 when it was deleted or disabled.
pub async fn active_account(db: impl PgExecutor<'_>, id: Uuid) -> Result<UserRow, ApiError> {
    match store::find(db, id).await? {
        Some(user) if user.is_active => Ok(user),
        _ => Err(ApiError::Unauthorized(
            "the account no longer exists or is disabled".into(),
        )),
    }
}

/// Changes to the caller's profile; omitted fields stay as they are.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct UpdateProfileRequest {
    /// New email address (as for registering).
    #[oai(validator(
        max_length = 254,
        pattern = r#"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f"@]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\r]*$"#
    ))]
    pub email: Option<String>,
    /// New username (as for registering).
    #[oai(validator(pattern = r"^[ \t\n\r]*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}[ \t\n\r]*$"))]
    pub username: Option<String>,
}

/// A password change.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct ChangePasswordRequest {
    /// The password in use now.
    pub current_password: String,
    /// The new password (8–128 characters, not all spaces, different from the current one).
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    ))]
    pub new_password: String,
}

/// Deleting the caller's account.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct DeleteAccountRequest {
    /// The password in use now.
    pub current_password: String,
}

impl poem_openapi::types::Example for DeleteAccountRequest {
    fn example() -> Self {
        Self {
            current_password: "correct horse battery staple".into(),
        }
    }
}

impl poem_openapi::types::Example for UpdateProfileRequest {
    fn example() -> Self {
        Self {
            email: Some("ada.lovelace@example.com".into()),
            username: Some("ada_l".into()),
        }
    }
}

impl poem_openapi::types::Example for ChangePasswordRequest {
    fn example() -> Self {
        Self {
            current_password: "correct horse battery".into(),
            new_password: "a much longer passphrase".into(),
        }
    }
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// Validates a profile change: each field given must be valid (none given changes nothing).
pub fn parse_profile_changes(
    email: Option<&str>,
    username: Option<&str>,
) -> Result<store::UserChanges, ApiError> {
    let email = email
        .map(|value| validate::email("email", value))
        .transpose();
    let username = username
        .map(|value| validate::username("username", value))
        .transpose();
    let errors: Vec<FieldError> = [email.as_ref().err(), username.as_ref().err()]
        .into_iter()
        .flatten()
        .cloned()
        .collect();
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(store::UserChanges {
        email: email.ok().flatten(),
        username: username.ok().flatten(),
        ..Default::default()
    })
}

impl UsersApi {
    /// Checks a password the caller must prove they hold. A stolen access token must not make
    /// it cheaper to guess: each check counts against the same per-account limit as login.
    /// A mismatch is a 403, not a 422 (the request is well-formed, the caller just failed to
    /// prove it) and not a 401 (which would make a client drop its session).
    async fn verify_current_password(
        &self,
        user: &UserRow,
        password: &str,
    ) -> Result<(), ApiError> {
        let attempt = self.state.lockout.begin(&user.email).await?;
        let verification = self
            .state
            .passwords
            .verify(password, Some(&user.password_hash))
            .await?;
        if verification == Verification::Mismatch {
            return Err(ApiError::Forbidden(
                "the current password is incorrect".into(),
            ));
        }
        self.state.lockout.succeeded(attempt).await;
        Ok(())
    }
}

#[OpenApi(prefix_path = "/api/v1/users", tag = "ApiTags::Users")]
impl UsersApi {
    /// The caller's profile.
    #[oai(path = "/me", method = "get")]
    async fn me(&self, caller: ActiveUser) -> ApiResult<Json<UserProfile>, { status::AUTHED }> {
        Ok(Json(caller.0.as_ref().into()))
    }

    /// Change the caller's email or username.
    #[oai(path = "/me", method = "patch")]
    async fn update_me(
        &self,
        caller: ActiveUser,
        body: JsonBody<UpdateProfileRequest>,
    ) -> ApiResult<Json<UserProfile>, { status::AUTHED | status::BODY | status::CONFLICT }> {
        let changes = parse_profile_changes(body.0.email.as_deref(), body.0.username.as_deref())?;
        let user = store::update(&self.state.db, caller.0.id, &changes)
            .await?
            .ok_or_else(|| ApiError::Unauthorized("the account no longer exists".into()))?;
        self.state.users.invalidate(user.id);
        Ok(Json(user.into()))
    }

    /// Delete the caller's account and everything it owns.
    ///
    /// Asks for the current password, as a password change does: a stolen access token alone
    /// cannot delete an account. A wrong password is a `403` and counts against the same
    /// per-account limit as login (`429` once it is reached). The last active administrator
    /// cannot delete their account (`409`).
    #[oai(path = "/me", method = "delete")]
    async fn delete_me(
        &self,
        caller: ActiveUser,
        body: JsonBody<DeleteAccountRequest>,
    ) -> ApiResult<
        NoContent,
        { status::AUTHED | status::BODY | status::FORBIDDEN | status::CONFLICT },
    > {
        self.verify_current_password(&caller.0, &body.0.current_password)
            .await?;
        let mut tx = self.state.db.begin().await?;
        // Read again inside the transaction: the role decides the last-admin check below.
        let user = active_account(&mut *tx, caller.0.id).await?;
        if user.role == common::domain::Role::Admin
            && store::lock_active_admins(&mut *tx).await? <= 1
        {
            return Err(ApiError::Conflict {
                detail: "the last active administrator cannot delete their account".into(),
                field: None,
            }
            .into());
        }
        store::delete(&mut *tx, user.id).await?;
        tx.commit().await?;
        self.state.users.invalidate(user.id);
        tracing::info!(user_id = %user.id, "account deleted by its owner");
        Ok(NoContent::Done)
    }

    /// Change the caller's password; every session (refresh token) is revoked.
    ///
    /// A wrong `current_password` is a `403`; wrong guesses count against the same
    /// per-account limit as login (`429` once it is reached).
    #[oai(path = "/me/password", method = "put")]
    async fn change_password(
        &self,
        caller: ActiveUser,
        body: JsonBody<ChangePasswordRequest>,
    ) -> ApiResult<NoContent, { status::AUTHED | status::BODY | status::FORBIDDEN }> {
        let request = body.0;
        let new_password = validate::new_password("new_password", &request.new_password)
            .map_err(|err| ApiError::Validation(vec![err]))?;
        if new_password == request.current_password {
            return Err(
                ApiError::invalid("new_password", "must differ from the current password").into(),
            );
        }
        let user = caller.0;
        self.verify_current_password(&user, &request.current_password)
            .await?;
        let new_hash = self.state.passwords.hash(&new_password).await?;
        let mut tx = self.state.db.begin().await?;
        let notice = replace_password(&mut tx, user.id, &new_hash).await?;
        tx.commit().await?;
        self.state.users.invalidate(user.id);
        crate::notifications::outbox::dispatch(&self.state, notice);
        tracing::info!(user_id = %user.id, "password changed; sessions revoked");
        Ok(NoContent::Done)
    }
}
