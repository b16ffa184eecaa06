//! Registration, login and the token lifecycle.

pub mod email_flows;
pub mod extract;
pub mod hmac_only;
pub mod lockout;
pub mod passwords;
pub mod sessions;
pub mod tokens;

use chrono::Utc;
use common::domain::Role;
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;

use self::extract::ActiveUser;
use self::passwords::Verification;
use self::sessions::Rotation;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, status};
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::users::model::{UserProfile, UserRow};
use crate::users::{store, validate};

/// Authentication endpoints.
#[derive(Debug)]
pub struct AuthApi {
    state: AppState,
}

impl AuthApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        for reason in RefreshRefusal::ALL {
            metrics::counter!("auth_refresh_refused_total", "reason" => reason.as_str())
                .increment(0);
        }
        Self { state }
    }
}

/// Why a refresh was refused, as `auth_refresh_refused_total{reason}` counts it: operators
/// alert on `reuse` (a copied token) and expect `ended` after logouts.
#[derive(Debug, Clone, Copy)]
enum RefreshRefusal {
    /// A rotated token was presented again.
    Reuse,
    /// The session was ended before the token was used.
    Ended,
    /// Unknown, expired, or its account is gone or disabled.
    Invalid,
}

impl RefreshRefusal {
    const ALL: [Self; 3] = [Self::Reuse, Self::Ended, Self::Invalid];

    fn as_str(self) -> &'static str {
        match self {
            Self::Reuse => "reuse",
            Self::Ended => "ended",
            Self::Invalid => "invalid",
        }
    }

    fn count(self) {
        metrics::counter!("auth_refresh_refused_total", "reason" => self.as_str()).increment(1);
    }
}

/// A new account.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// Email address (unique, case-insensitive; at most 254 characters); surrounding spaces
    /// are ignored.
    #[oai(validator(
        max_length = 254,
        pattern = r#"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f"@]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\r]*$"#
    ))]
    pub email: String,
    /// 3–32 letters, digits, `_`, `-` or `.`, starting with a letter or digit (unique);
    /// surrounding spaces are ignored.
    #[oai(validator(pattern = r"^[ \t\n\r]*[A-Za-z0-9][A-Za-z0-9_.-]{2,31}[ \t\n\r]*$"))]
    pub username: String,
    /// 8–128 characters, not all spaces, without U+0000.
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    ))]
    pub password: String,
}

impl poem_openapi::types::Example for RegisterRequest {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            username: "ada".into(),
            password: "correct horse battery".into(),
        }
    }
}

/// Credentials.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address (any case).
    pub email: String,
    /// Password.
    pub password: String,
}

impl poem_openapi::types::Example for LoginRequest {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
            password: "correct horse battery".into(),
        }
    }
}

/// A refresh token, for `/auth/refresh` and `/auth/logout`.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The opaque refresh token from login, register or a previous refresh.
    pub refresh_token: String,
}

/// A new pair of tokens.
#[derive(Debug, Object)]
#[oai(example)]
pub struct TokenResponse {
    /// Short-lived JWT for `Authorization: Bearer …`.
    pub access_token: String,
    /// Opaque, single-use token to get the next pair; rotated on every refresh.
    pub refresh_token: String,
    /// Always `Bearer`.
    pub token_type: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    /// The authenticated user.
    pub user: UserProfile,
}

impl poem_openapi::types::Example for RefreshRequest {
    fn example() -> Self {
        Self {
            refresh_token: "q3V0bGVzcy1yYW5kb20tMjU2LWJpdHMtYmFzZTY0dXJs".into(),
        }
    }
}

impl poem_openapi::types::Example for TokenResponse {
    fn example() -> Self {
        Self {
            access_token: "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIuLi4ifQ.c2lnbmF0dXJl"
                .into(),
            refresh_token: "q3V0bGVzcy1yYW5kb20tMjU2LWJpdHMtYmFzZTY0dXJs".into(),
            token_type: "Bearer".into(),
            expires_in: 900,
            user: <UserProfile as poem_openapi::types::Example>::example(),
        }
    }
}

#[derive(ApiResponse)]
enum Registered {
    /// The account was created and is logged in.
    #[oai(status = 201)]
    Created(Json<TokenResponse>),
}

#[derive(ApiResponse)]
enum NoContent {
    /// Done.
    #[oai(status = 204)]
    Done,
}

impl AuthApi {
    /// Starts a session for `user` inside `tx` and signs its first access token.
    async fn start_session(
        &self,
        tx: &mut sqlx::PgConnection,
        user: UserRow,
    ) -> Result<TokenResponse, ApiError> {
        let refresh =
            sessions::issue(&mut *tx, user.id, None, self.state.config.auth.refresh_ttl).await?;
        self.token_response(user, refresh.token)
    }

    fn token_response(
        &self,
        user: UserRow,
        refresh_token: String,
    ) -> Result<TokenResponse, ApiError> {
        let access_token = self.state.tokens.issue(user.id, user.role)?;
        Ok(TokenResponse {
            access_token,
            refresh_token,
            token_type: "Bearer".into(),
            expires_in: self.state.tokens.access_ttl().as_secs(),
            user: user.into(),
        })
    }
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AuthApi {
    /// Create an account and log in.
    #[oai(path = "/register", method = "post")]
    async fn register(
        &self,
        body: JsonBody<RegisterRequest>,
    ) -> ApiResult<Registered, { status::ALWAYS | status::BODY | status::CONFLICT }> {
        let request = body.0;
        let fields = validate::all(vec![
            validate::email("email", &request.email),
            validate::username("username", &request.username),
            validate::new_password("password", &request.password),
        ])
        .map_err(ApiError::Validation)?;
        let [email, username, password] = <[String; 3]>::try_from(fields)
            .map_err(|_| ApiError::Internal(anyhow::anyhow!("validated field count")))?;

        let password_hash = self.state.passwords.hash(&password).await?;
        let mut tx = self.state.db.begin().await?;
        let user = store::insert(
            &mut *tx,
            &store::NewUser {
                email: &email,
                username: &username,
                password_hash: &password_hash,
                role: Role::User,
            },
        )
        .await?;
        let welcome = crate::notifications::outbox::notify(
            &mut tx,
            user.id,
            common::notifications::NotificationContent::Welcome,
        )
        .await?;
        let response = self.start_session(&mut tx, user).await?;
        tx.commit().await?;
        crate::notifications::outbox::dispatch(&self.state, welcome);
        tracing::info!(user_id = %response.user.id, "user registered");
        Ok(Registered::Created(Json(response)))
    }

    /// Log in with email and password.
    ///
    /// An unknown email and a wrong password get the same 401 after the same amount of work.
    #[oai(path = "/login", method = "post")]
    async fn login(
        &self,
        body: JsonBody<LoginRequest>,
    ) -> ApiResult<Json<TokenResponse>, { status::AUTHED | status::BODY | status::FORBIDDEN }> {
        let request = body.0;
        let attempt = self.state.lockout.begin(&request.email).await?;
        let user = store::find_by_email(&self.state.db, request.email.trim()).await?;
        let verification = self
            .state
            .passwords
            .verify(
                &request.password,
                user.as_ref().map(|u| u.password_hash.as_str()),
            )
            .await?;
        if user.is_some() && verification != Verification::Mismatch {
            self.state.lockout.succeeded(attempt).await;
        }
        let user = match (user, verification) {
            (Some(user), Verification::Match | Verification::MatchRehashed(_))
                if !user.is_active =>
            {
                return Err(ApiError::Forbidden("this account is disabled".into()).into());
            }
            (Some(user), Verification::Match) => user,
            (Some(user), Verification::MatchRehashed(new_hash)) => {
                store::set_password_hash(&self.state.db, user.id, &new_hash).await?;
                user
            }
            _ => return Err(ApiError::Unauthorized("invalid email or password".into()).into()),
        };
        let mut tx = self.state.db.begin().await?;
        let now = Utc::now();
        store::touch_last_login(&mut *tx, user.id, now).await?;
        let user = UserRow {
            last_login_at: Some(now),
            ..user
        };
        let response = self.start_session(&mut tx, user).await?;
        tx.commit().await?;
        Ok(Json(response))
    }

    /// Trade a refresh token for a new pair.
    ///
    /// The presented token is used up. Presenting it again is treated as theft: its whole
    /// session (every token descended from the same login) is revoked and the answer is 401.
    /// A token of a session that was ended (logout, logout-all, password change) answers 401
    /// "the session has ended" and revokes nothing more.
    #[oai(path = "/refresh", method = "post")]
    async fn refresh(
        &self,
        body: JsonBody<RefreshRequest>,
    ) -> ApiResult<Json<TokenResponse>, { status::AUTHED | status::BODY }> {
        let mut tx = self.state.db.begin().await?;
        let rotation = sessions::rotate(
            &mut tx,
            &body.0.refresh_token,
            self.state.config.auth.refresh_ttl,
        )
        .await?;
        let (user_id, token) = match rotation {
            Rotation::Rotated { user_id, token } => (user_id, token),
            Rotation::ReuseDetected => {
                // Commit the revocation before refusing.
                tx.commit().await?;
                RefreshRefusal::Reuse.count();
                tracing::warn!("refresh token reuse detected; session revoked");
                return Err(ApiError::Unauthorized(
                    "refresh token reuse detected; the session was revoked".into(),
                )
                .into());
            }
            Rotation::Ended => {
                RefreshRefusal::Ended.count();
                tracing::info!("refresh with a token of an ended session refused");
                return Err(
                    ApiError::Unauthorized("the session has ended; log in again".into()).into(),
                );
            }
            Rotation::Refused => {
                RefreshRefusal::Invalid.count();
                return Err(ApiError::Unauthorized(
                    "the refresh token is invalid or expired".into(),
                )
                .into());
            }
        };
        let user = match store::find(&mut *tx, user_id).await? {
            Some(user) if user.is_active => user,
            _ => {
                RefreshRefusal::Invalid.count();
                return Err(ApiError::Unauthorized(
                    "the refresh token is invalid or expired".into(),
                )
                .into());
            }
        };
        let response = self.token_response(user, token.token)?;
        tx.commit().await?;
        Ok(Json(response))
    }

    /// End the session a refresh token belongs to.
    ///
    /// Idempotent: an unknown or already revoked token also answers 204.
    #[oai(path = "/logout", method = "post")]
    async fn logout(
        &self,
        body: JsonBody<RefreshRequest>,
    ) -> ApiResult<NoContent, { status::ALWAYS | status::BODY }> {
        sessions::revoke_session_of(&self.state.db, &body.0.refresh_token).await?;
        Ok(NoContent::Done)
    }

    /// End every session of the caller.
    #[oai(path = "/logout-all", method = "post")]
    async fn logout_all(&self, caller: ActiveUser) -> ApiResult<NoContent, { status::AUTHED }> {
        let revoked = sessions::revoke_all(&self.state.db, caller.0.id).await?;
        self.state.users.invalidate(caller.0.id);
        tracing::info!(user_id = %caller.0.id, revoked, "all sessions revoked");
        Ok(NoContent::Done)
    }
}
