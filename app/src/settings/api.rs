//! Server functions of user management. Admins only; every change is a history entry.

use leptos::prelude::*;

use super::AddedUser;
use crate::auth::UserRow;
use crate::error::AppError;

/// Every account.
#[server(endpoint = "settings/users")]
pub async fn list_users() -> Result<Vec<UserRow>, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::ManageUsers,
        |state, _| async move { crate::auth::ssr::list_users(&state.pg).await },
    )
    .await
}

/// Adds an account with a temporary password, returned once.
#[server(endpoint = "settings/users/add")]
pub async fn add_user(email: String, role: String, reason: String) -> Result<AddedUser, AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::ManageUsers,
        |state, actor| async move {
            let role = crate::auth::Role::from_input(&role)?;
            let reason = crate::server::optional_reason(&reason)?;
            let (user_id, temporary) =
                crate::settings::ssr::add_user(&state.pg, &actor, &email, role, None, reason)
                    .await?;
            Ok(AddedUser {
                user_id,
                email: crate::auth::normalize_email("email", &email)?,
                temporary_password: crate::format::ShownOnce::new(temporary.unwrap_or_default()),
            })
        },
    )
    .await
}

/// Changes an account's role.
#[server(endpoint = "settings/users/role")]
pub async fn set_user_role(user_id: i64, role: String, reason: String) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::ManageUsers,
        |state, actor| async move {
            let role = crate::auth::Role::from_input(&role)?;
            crate::settings::ssr::set_role(
                &state.pg,
                &actor,
                user_id,
                role,
                crate::server::optional_reason(&reason)?,
            )
            .await
        },
    )
    .await
}

/// Disables (`disabled = true`) or re-enables an account; disabling ends its sessions.
#[server(endpoint = "settings/users/disabled")]
pub async fn set_user_disabled(
    user_id: i64,
    disabled: bool,
    reason: String,
) -> Result<(), AppError> {
    crate::auth::ssr::serve(
        crate::auth::Permission::ManageUsers,
        |state, actor| async move {
            if Some(user_id) == actor.user_id && disabled {
                return Err(AppError::Conflict {
                    message: "You cannot disable your own account.".into(),
                });
            }
            crate::settings::ssr::set_disabled(
                &state.pg,
                &actor,
                user_id,
                disabled,
                crate::server::optional_reason(&reason)?,
            )
            .await
        },
    )
    .await
}
