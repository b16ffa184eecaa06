//! Account flows by email: verifying the address, and resetting a forgotten password. The
//! API only queues messages (`email` jobs); the worker creates each message's single-use
//! token as it sends it, and the API consumes tokens here.

use chrono::Utc;
use common::email::tokens::{self, TokenPurpose};
use common::email::{EmailMessage, Recipient, SendEmail};
use common::jobs::store as jobs_store;
use poem_openapi::payload::Json;
use poem_openapi::types::Example;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde::Deserialize;
use uuid::Uuid;

use super::extract::ActiveUser;
use crate::app::AppState;
use crate::error::{ApiError, ApiResult, status};
use crate::notifications::outbox;
use crate::platform::ApiTags;
use crate::platform::json_body::JsonBody;
use crate::users::{store, validate};

/// Email verification and password reset.
#[derive(Debug)]
pub struct AccountEmailApi {
    state: AppState,
}

impl AccountEmailApi {
    /// Creates the endpoints over shared state.
    pub fn new(state: AppState) -> Self {
        Self { state }
    }
}

/// A token from an email.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct VerifyEmailRequest {
    /// The token from the verification link (`…/verify-email?token=…`).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub token: String,
}

impl Example for VerifyEmailRequest {
    fn example() -> Self {
        Self {
            token: "p1Ck3Q0m7Fq2tq9h4cY3o0rU5vJm1sA8e6bW2xNzL4k".into(),
        }
    }
}

/// The outcome of a verification.
#[derive(Debug, Object)]
pub struct EmailVerified {
    /// Always `true`: the account's address is verified.
    pub email_verified: bool,
}

/// Who forgot their password.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetRequest {
    /// The account's email address (as for registering).
    #[oai(validator(
        max_length = 254,
        pattern = r#"^[ \t\n\r]*[^\s\x00-\x1f\x7f-\x9f"@]{1,64}@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+[ \t\n\r]*$"#
    ))]
    pub email: String,
}

impl Example for PasswordResetRequest {
    fn example() -> Self {
        Self {
            email: "ada@example.com".into(),
        }
    }
}

/// A new password, with the token that allows it.
#[derive(Debug, Object, Deserialize)]
#[oai(deny_unknown_fields, example)]
#[serde(deny_unknown_fields)]
pub struct PasswordResetConfirm {
    /// The token from the reset link (`…/reset-password?token=…`).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub token: String,
    /// 8–128 characters, not all spaces, without U+0000.
    #[oai(validator(
        min_length = 8,
        max_length = 128,
        pattern = r"^[^\x00]*[^\s\x00][^\x00]*$"
    ))]
    pub new_password: String,
}

impl Example for PasswordResetConfirm {
    fn example() -> Self {
        Self {
            token: "p1Ck3Q0m7Fq2tq9h4cY3o0rU5vJm1sA8e6bW2xNzL4k".into(),
            new_password: "a much longer passphrase".into(),
        }
    }
}

#[derive(ApiResponse)]
enum Accepted {
    /// Accepted: a message is on its way if there is anyone to send it to.
    #[oai(status = 202)]
    Accepted,
}

#[derive(ApiResponse)]
enum Done {
    /// Done.
    #[oai(status = 204)]
    Done,
}

/// The one answer for every unusable token: unknown, expired, used or of another purpose.
fn invalid_token() -> ApiError {
    ApiError::invalid("token", "is invalid or has expired; ask for a new email")
}

/// An event id shared by every request of one kind about one subject within one minute: the
/// email job's id derives from it, so repeats within the minute queue nothing (no mail bombs).
fn per_minute_event(what: &str, subject: &str) -> Uuid {
    let minute = Utc::now().timestamp().div_euclid(60);
    let name = format!("coinpulse:{what}:{subject}:{minute}");
    Uuid::new_v5(&Uuid::NAMESPACE_OID, name.as_bytes())
}

#[OpenApi(prefix_path = "/api/v1/auth", tag = "ApiTags::Auth")]
impl AccountEmailApi {
    /// Send (again) the link that verifies the caller's email address.
    ///
    /// At most one message per minute: a repeat within the minute is accepted and sends
    /// nothing more. An address already verified answers `409`.
    #[oai(path = "/verify-email/request", method = "post")]
    async fn request_verification(
        &self,
        caller: ActiveUser,
    ) -> ApiResult<Accepted, { status::AUTHED | status::CONFLICT }> {
        let user = caller.0;
        if user.email_verified {
            return Err(ApiError::Conflict {
                detail: "the email address is already verified".into(),
                field: None,
            }
            .into());
        }
        let email = SendEmail {
            event_id: per_minute_event("verify_email", &user.id.to_string()),
            to: Recipient::User { user_id: user.id },
            message: EmailMessage::VerifyEmail,
        };
        let mut tx = self.state.db.begin().await?;
        let row = jobs_store::insert_once(&mut *tx, email.job_id(), &email).await?;
        tx.commit().await?;
        outbox::dispatch(&self.state, row);
        Ok(Accepted::Accepted)
    }

    /// Verify an email address with the token from the link sent to it.
    ///
    /// No bearer token is needed: the link may be opened on any device. A token is single
    /// use, valid for 24 hours, and only for the address it was sent to (after a change of
    /// address, verify the new one). Any unusable token answers `422` on `token`.
    #[oai(path = "/verify-email/confirm", method = "post")]
    async fn confirm_verification(
        &self,
        body: JsonBody<VerifyEmailRequest>,
    ) -> ApiResult<Json<EmailVerified>, { status::ALWAYS | status::BODY }> {
        let mut tx = self.state.db.begin().await?;
        let token = tokens::consume(&mut *tx, body.0.token.trim(), TokenPurpose::VerifyEmail)
            .await?
            .ok_or_else(invalid_token)?;
        if !store::mark_email_verified(&mut *tx, token.user_id, &token.email).await? {
            return Err(invalid_token().into());
        }
        tx.commit().await?;
        self.state.users.invalidate(token.user_id);
        tracing::info!(user_id = %token.user_id, "email address verified");
        Ok(Json(EmailVerified {
            email_verified: true,
        }))
    }

    /// Ask for a password reset link.
    ///
    /// Always `202`, whether or not an account has this address, after the same work: the
    /// answer tells nobody which addresses have accounts. At most one message per address
    /// per minute. The link is valid for an hour, once.
    #[oai(path = "/password-reset/request", method = "post")]
    async fn request_reset(
        &self,
        body: JsonBody<PasswordResetRequest>,
    ) -> ApiResult<Accepted, { status::ALWAYS | status::BODY }> {
        let email = validate::email("email", &body.0.email)
            .map_err(|err| ApiError::Validation(vec![err]))?;
        let job = SendEmail {
            event_id: per_minute_event("password_reset", &email.to_lowercase()),
            to: Recipient::Address { email },
            message: EmailMessage::PasswordReset,
        };
        let mut tx = self.state.db.begin().await?;
        let row = jobs_store::insert_once(&mut *tx, job.job_id(), &job).await?;
        tx.commit().await?;
        outbox::dispatch(&self.state, row);
        Ok(Accepted::Accepted)
    }

    /// Choose a new password with the token from a reset link.
    ///
    /// Every session of the account ends (refresh tokens revoked, access tokens refused), and
    /// the owner is told their password changed; failed logins counted against the account are
    /// forgiven. An unusable token answers `422` on `token`.
    #[oai(path = "/password-reset/confirm", method = "post")]
    async fn confirm_reset(
        &self,
        body: JsonBody<PasswordResetConfirm>,
    ) -> ApiResult<Done, { status::ALWAYS | status::BODY }> {
        let request = body.0;
        let new_password = validate::new_password("new_password", &request.new_password)
            .map_err(|err| ApiError::Validation(vec![err]))?;
        let new_hash = self.state.passwords.hash(&new_password).await?;
        let mut tx = self.state.db.begin().await?;
        let token = tokens::consume(&mut *tx, request.token.trim(), TokenPurpose::PasswordReset)
            .await?
            .ok_or_else(invalid_token)?;
        let user = store::find(&mut *tx, token.user_id)
            .await?
            .filter(|user| user.is_active && user.email.eq_ignore_ascii_case(&token.email))
            .ok_or_else(invalid_token)?;
        let notice = crate::users::replace_password(&mut tx, user.id, &new_hash).await?;
        tx.commit().await?;
        self.state.users.invalidate(user.id);
        self.state.lockout.clear(&user.email).await;
        outbox::dispatch(&self.state, notice);
        tracing::info!(user_id = %user.id, "password reset; sessions revoked");
        Ok(Done::Done)
    }
}
