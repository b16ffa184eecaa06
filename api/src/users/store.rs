//! Queries on `users`.

use chrono::{DateTime, Utc};
use common::domain::Role;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use super::model::UserRow;
use crate::error::{ApiError, Constraint, on_constraint};

/// Fields of a new account, already validated.
#[derive(Debug)]
pub struct NewUser<'a> {
    pub email: &'a str,
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: Role,
}

/// The unique indexes on `users`, each a 409 naming its field.
const UNIQUE: &[Constraint] = &[
    ("users_email_key", || ApiError::Conflict {
        detail: "this email address is already registered".into(),
        field: Some("email"),
    }),
    ("users_username_key", || ApiError::Conflict {
        detail: "this username is taken".into(),
        field: Some("username"),
    }),
];

/// Inserts a user; a taken email or username is a 409.
pub async fn insert(db: impl PgExecutor<'_>, user: &NewUser<'_>) -> Result<UserRow, ApiError> {
    sqlx::query_as!(
        UserRow,
        r#"INSERT INTO users (id, email, username, password_hash, role)
           VALUES ($1, $2, $3, $4, $5)
           RETURNING id, email, username, password_hash, role AS "role: Role", is_active,
                     email_verified, created_at, updated_at, last_login_at, tokens_valid_after"#,
        Uuid::now_v7(),
        user.email,
        user.username,
        user.password_hash,
        user.role as Role,
    )
    .fetch_one(db)
    .await
    .map_err(|err| on_constraint(err, UNIQUE))
}

/// The user with this id.
pub async fn find(db: impl PgExecutor<'_>, id: Uuid) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, email, username, password_hash, role AS "role: Role", is_active,
                  email_verified, created_at, updated_at, last_login_at, tokens_valid_after
           FROM users WHERE id = $1"#,
        id,
    )
    .fetch_optional(db)
    .await
}

/// The user with this email, compared case-insensitively.
pub async fn find_by_email(
    db: impl PgExecutor<'_>,
    email: &str,
) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query_as!(
        UserRow,
        r#"SELECT id, email, username, password_hash, role AS "role: Role", is_active,
                  email_verified, created_at, updated_at, last_login_at, tokens_valid_after
           FROM users WHERE lower(email) = lower($1)"#,
        email,
    )
    .fetch_optional(db)
    .await
}

/// Changes to apply to a user; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct UserChanges {
    pub email: Option<String>,
    pub username: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// Applies `changes`; `None` when the user does not exist.
pub async fn update(
    db: impl PgExecutor<'_>,
    id: Uuid,
    changes: &UserChanges,
) -> Result<Option<UserRow>, ApiError> {
    sqlx::query_as!(
        UserRow,
        r#"UPDATE users SET
               email = COALESCE($2, email),
               username = COALESCE($3, username),
               role = COALESCE($4, role),
               is_active = COALESCE($5, is_active),
               -- A new address is unverified until its owner proves it.
               email_verified = email_verified AND ($2::text IS NULL OR lower($2) = lower(email)),
               updated_at = now()
           WHERE id = $1
           RETURNING id, email, username, password_hash, role AS "role: Role", is_active,
                     email_verified, created_at, updated_at, last_login_at, tokens_valid_after"#,
        id,
        changes.email.as_deref(),
        changes.username.as_deref(),
        changes.role.map(Role::as_str),
        changes.is_active,
    )
    .fetch_optional(db)
    .await
    .map_err(|err| on_constraint(err, UNIQUE))
}

/// Marks the account's address verified if it is still `email` (the address the token was
/// sent to); `false` when the account changed its address since (or is gone).
pub async fn mark_email_verified(
    db: impl PgExecutor<'_>,
    id: Uuid,
    email: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query!(
        "UPDATE users SET email_verified = true, updated_at = now()
         WHERE id = $1 AND lower(email) = lower($2)",
        id,
        email,
    )
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores a new password hash.
pub async fn set_password_hash(
    db: impl PgExecutor<'_>,
    id: Uuid,
    password_hash: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query!(
        "UPDATE users SET password_hash = $2, updated_at = now() WHERE id = $1",
        id,
        password_hash,
    )
    .execute(db)
    .await?;
    Ok(())
}

/// Records a successful login.
pub async fn touch_last_login(
    db: impl PgExecutor<'_>,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query!("UPDATE users SET last_login_at = $2 WHERE id = $1", id, at)
        .execute(db)
        .await?;
    Ok(())
}

/// Deletes a user and (by cascade) everything they own; `false` when there was no such user.
pub async fn delete(db: impl PgExecutor<'_>, id: Uuid) -> Result<bool, sqlx::Error> {
    let result = sqlx::query!("DELETE FROM users WHERE id = $1", id)
        .execute(db)
        .await?;
    Ok(result.rows_affected() > 0)
}

/// Counts active administrators, locking their rows so two concurrent demotions or deletions
/// cannot both pass the "not the last admin" check.
pub async fn lock_active_admins(db: impl PgExecutor<'_>) -> Result<usize, sqlx::Error> {
    let ids = sqlx::query_scalar!(
        "SELECT id FROM users WHERE role = 'admin' AND is_active ORDER BY id FOR UPDATE"
    )
    .fetch_all(db)
    .await?;
    Ok(ids.len())
}

/// Filters for the admin's user list.
#[derive(Debug, Default)]
pub struct UserFilter {
    /// Case-insensitive substring of email or username.
    pub search: Option<String>,
    pub role: Option<Role>,
    pub is_active: Option<bool>,
}

/// One page of users, newest first, and the total matching the filter.
pub async fn list(
    db: &PgPool,
    filter: &UserFilter,
    limit: i64,
    offset: i64,
) -> Result<(Vec<UserRow>, i64), sqlx::Error> {
    let pattern = filter.search.as_deref().map(like_pattern);
    let role = filter.role.map(Role::as_str);
    let total = sqlx::query_scalar!(
        r#"SELECT count(*) AS "count!" FROM users
           WHERE ($1::text IS NULL OR email ILIKE $1 OR username ILIKE $1)
             AND ($2::text IS NULL OR role = $2)
             AND ($3::bool IS NULL OR is_active = $3)"#,
        pattern,
        role,
        filter.is_active,
    )
    .fetch_one(db)
    .await?;
    let rows = sqlx::query_as!(
        UserRow,
        r#"SELECT id, email, username, password_hash, role AS "role: Role", is_active,
                  email_verified, created_at, updated_at, last_login_at, tokens_valid_after
           FROM users
           WHERE ($1::text IS NULL OR email ILIKE $1 OR username ILIKE $1)
             AND ($2::text IS NULL OR role = $2)
             AND ($3::bool IS NULL OR is_active = $3)
           ORDER BY created_at DESC, id DESC
           LIMIT $4 OFFSET $5"#,
        pattern,
        role,
        filter.is_active,
        limit,
        offset,
    )
    .fetch_all(db)
    .await?;
    Ok((rows, total))
}

/// `%text%` with LIKE's wildcards in `text` escaped, so a search for `a_b` is literal.
fn like_pattern(text: &str) -> String {
    let escaped = text
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

#[cfg(test)]
mod tests {
    #[test]
    fn like_patterns_escape_wildcards() {
        assert_eq!(super::like_pattern("a_b%c\\"), "%a\\_b\\%c\\\\%");
    }
}
