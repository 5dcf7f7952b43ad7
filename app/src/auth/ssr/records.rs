//! `users` rows as the guard, sign-in and account changes read them.

use sqlx::PgPool;

use super::super::Role;
use super::passwords::PasswordHash;

/// A user row as the guard and sign-in need it.
pub(crate) struct UserRecord {
    pub(crate) id: i64,
    pub(crate) email: String,
    pub(crate) role: Role,
    pub(crate) disabled: bool,
    pub(crate) must_change_password: bool,
    pub(crate) session_generation: i32,
    pub(crate) password_hash: PasswordHash,
}

/// `users` as stored; [`UserRecord`] is its checked form.
pub(crate) struct StoredUser {
    pub(crate) id: i64,
    pub(crate) email: String,
    pub(crate) role: String,
    pub(crate) disabled: bool,
    pub(crate) must_change_password: bool,
    pub(crate) session_generation: i32,
    pub(crate) password_hash: String,
}

impl From<StoredUser> for UserRecord {
    fn from(user: StoredUser) -> Self {
        UserRecord {
            id: user.id,
            email: user.email,
            // The table's check constraint admits only the three role names.
            role: Role::parse(&user.role).unwrap_or(Role::Operator),
            disabled: user.disabled,
            must_change_password: user.must_change_password,
            session_generation: user.session_generation,
            password_hash: PasswordHash::from_stored(user.password_hash),
        }
    }
}

pub(crate) async fn user_by_id(pg: &PgPool, id: i64) -> Result<Option<UserRecord>, sqlx::Error> {
    let user = sqlx::query_as!(
        StoredUser,
        "select id, email, role, disabled, must_change_password, session_generation,
                password_hash
         from users where id = $1",
        id
    )
    .fetch_optional(pg)
    .await?;
    Ok(user.map(UserRecord::from))
}

pub(crate) async fn user_by_email(
    pg: &PgPool,
    email: &str,
) -> Result<Option<UserRecord>, sqlx::Error> {
    let user = sqlx::query_as!(
        StoredUser,
        "select id, email, role, disabled, must_change_password, session_generation,
                password_hash
         from users where lower(email) = $1",
        email
    )
    .fetch_optional(pg)
    .await?;
    Ok(user.map(UserRecord::from))
}
