//! The user record and its public shape.

use chrono::{DateTime, Utc};
use common::domain::Role;
use poem_openapi::{Enum, Object};
use uuid::Uuid;

/// A row of `users`.
#[derive(Debug, Clone)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub username: String,
    pub password_hash: String,
    pub role: Role,
    pub is_active: bool,
    pub email_verified: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub last_login_at: Option<DateTime<Utc>>,
    /// Access tokens issued before this are refused (set when every session is ended).
    pub tokens_valid_after: Option<DateTime<Utc>>,
}

/// A user's role, as the API shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum, serde::Deserialize)]
#[oai(rename_all = "lowercase")]
#[serde(rename_all = "lowercase")]
pub enum RoleName {
    /// A regular user.
    User,
    /// An administrator.
    Admin,
}

impl From<Role> for RoleName {
    fn from(role: Role) -> Self {
        match role {
            Role::User => Self::User,
            Role::Admin => Self::Admin,
        }
    }
}

impl From<RoleName> for Role {
    fn from(role: RoleName) -> Self {
        match role {
            RoleName::User => Self::User,
            RoleName::Admin => Self::Admin,
        }
    }
}

/// A user account as its owner (or an admin) sees it. Never includes the password hash.
#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct UserProfile {
    /// The user's id.
    pub id: Uuid,
    /// Email address, as registered (unique regardless of case).
    pub email: String,
    /// Public handle (unique regardless of case).
    pub username: String,
    /// What the user may do.
    pub role: RoleName,
    /// Inactive users cannot log in or use tokens.
    pub is_active: bool,
    /// Whether the owner proved they receive mail at `email` (`POST /auth/verify-email/confirm`).
    pub email_verified: bool,
    /// When the account was created.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub created_at: DateTime<Utc>,
    /// When the account last changed.
    #[oai(serialize_with = "common::wire::timestamp")]
    pub updated_at: DateTime<Utc>,
    /// When the user last logged in.
    #[oai(serialize_with = "common::wire::optional_timestamp")]
    pub last_login_at: Option<DateTime<Utc>>,
}

impl poem_openapi::types::Example for UserProfile {
    fn example() -> Self {
        let at = crate::platform::example_time();
        Self {
            id: Uuid::nil(),
            email: "ada@example.com".into(),
            username: "ada".into(),
            role: RoleName::User,
            is_active: true,
            email_verified: true,
            created_at: at,
            updated_at: at,
            last_login_at: Some(at),
        }
    }
}

impl From<UserRow> for UserProfile {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            email: row.email,
            username: row.username,
            role: row.role.into(),
            is_active: row.is_active,
            email_verified: row.email_verified,
            created_at: row.created_at,
            updated_at: row.updated_at,
            last_login_at: row.last_login_at,
        }
    }
}

impl From<&UserRow> for UserProfile {
    fn from(row: &UserRow) -> Self {
        row.clone().into()
    }
}
