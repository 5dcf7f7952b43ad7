//! Accounts as the CLI, first-admin setup and user management create and find them.

use sqlx::{PgConnection, PgPool};

use super::super::{normalize_email, Role, UserRow};
use super::passwords::PasswordHash;
use super::records::user_by_email;
use crate::error::AppError;
use crate::server::unix_ms as ms;

/// An account change, as its history entry records it (`change` names which).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(
    tag = "change",
    rename_all = "snake_case",
    rename_all_fields = "camelCase"
)]
pub enum UserChanged {
    /// The user chose a new password.
    Password {
        user_id: i64,
    },
    /// The first admin, created from the setup link.
    FirstAdmin {
        user_id: i64,
        email: String,
    },
    /// An admin added an account (with a temporary password, or one they chose).
    Add {
        user_id: i64,
        email: String,
        role: Role,
        temporary_password: bool,
    },
    /// An admin changed an account's role.
    Role {
        user_id: i64,
        email: String,
        from: Role,
        to: Role,
    },
    Disable {
        user_id: i64,
        email: String,
    },
    Enable {
        user_id: i64,
        email: String,
    },
}

impl crate::history::ssr::Details for UserChanged {
    fn kind(&self) -> crate::history::EntryKind {
        crate::history::EntryKind::UserChange
    }
}

/// Every account, by email.
pub async fn list_users(pg: &PgPool) -> Result<Vec<UserRow>, AppError> {
    let rows = sqlx::query!(
        "select id, email, role, disabled, must_change_password, created_at, last_login_at
         from users order by email"
    )
    .fetch_all(pg)
    .await
    .map_err(AppError::wrap("Failed to list users"))?;
    Ok(rows
        .into_iter()
        .map(|row| UserRow {
            id: row.id,
            email: row.email,
            role: Role::parse(&row.role).unwrap_or(Role::Operator),
            disabled: row.disabled,
            must_change_password: row.must_change_password,
            created_at: ms(row.created_at),
            last_login_at: row.last_login_at.map(ms),
        })
        .collect())
}

/// How many accounts exist.
pub async fn count_users(pg: &PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar!(r#"select count(*) as "count!" from users"#)
        .fetch_one(pg)
        .await
}

/// The id of the account with `email`, or 404.
pub async fn user_id_by_email(pg: &PgPool, email: &str) -> Result<i64, AppError> {
    let email = normalize_email("email", email)?;
    user_by_email(pg, &email)
        .await
        .map_err(AppError::wrap("Failed to look up an account"))?
        .map(|user| user.id)
        .ok_or(AppError::NotFound {
            what: format!("An account with the email {email}"),
        })
}

/// Inserts an account; a taken email is an `Invalid` error on `email`.
pub async fn insert_user(
    conn: &mut PgConnection,
    email: &str,
    role: Role,
    hash: &PasswordHash,
    must_change_password: bool,
) -> Result<i64, AppError> {
    sqlx::query_scalar!(
        "insert into users (email, password_hash, role, must_change_password)
         values ($1, $2, $3, $4) returning id",
        email,
        hash.as_str(),
        role.as_str(),
        must_change_password
    )
    .fetch_one(conn)
    .await
    .map_err(AppError::unique_or_internal(
        "Failed to add a user",
        &[(
            "users_email_key",
            "email",
            "an account with this email already exists",
        )],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn account_changes_keep_the_shape_earlier_entries_have() {
        // The history is append-only: a reader sees old and new entries side by side,
        // so the typed change writes exactly the keys the untyped one did.
        let value = |change: UserChanged| serde_json::to_value(change).unwrap();
        assert_eq!(
            value(UserChanged::FirstAdmin {
                user_id: 1,
                email: "a@example.com".into()
            }),
            json!({"change": "first_admin", "userId": 1, "email": "a@example.com"})
        );
        assert_eq!(
            value(UserChanged::Add {
                user_id: 2,
                email: "b@example.com".into(),
                role: Role::Manager,
                temporary_password: true
            }),
            json!({"change": "add", "userId": 2, "email": "b@example.com", "role": "manager",
                   "temporaryPassword": true})
        );
        assert_eq!(
            value(UserChanged::Role {
                user_id: 2,
                email: "b@example.com".into(),
                from: Role::Manager,
                to: Role::Admin
            }),
            json!({"change": "role", "userId": 2, "email": "b@example.com", "from": "manager",
                   "to": "admin"})
        );
        assert_eq!(
            value(UserChanged::Password { user_id: 3 }),
            json!({"change": "password", "userId": 3})
        );
    }
}
