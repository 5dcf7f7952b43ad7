//! User management (server only): adding accounts, changing roles, disabling. Admins do
//! it in `/admin/settings/users`, local administrators with `salvage user …`; every
//! change is recorded in the history in the same transaction.

use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgConnection, PgPool};

use crate::auth::ssr::{hash_password, insert_user, Actor, UserChanged};
use crate::auth::{check_new_password, normalize_email, Role};
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::tokens::temporary_password;

/// A new account. Without `password`, a temporary one is generated, returned (to be
/// shown once) and must be changed at first sign-in. Recorded in the history.
pub async fn add_user(
    pg: &PgPool,
    actor: &Actor,
    email: &str,
    role: Role,
    password: Option<SecretString>,
    reason: Option<crate::reason::Reason>,
) -> Result<(i64, Option<String>), AppError> {
    let email = normalize_email("email", email)?;
    let (password, temporary) = match password {
        Some(password) => {
            check_new_password("password", password.expose_secret())?;
            (password, None)
        }
        None => {
            let temporary = temporary_password();
            (SecretString::from(temporary.clone()), Some(temporary))
        }
    };
    let hash = hash_password(password).await?;
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Failed to begin"))?;
    let id = insert_user(&mut tx, &email, role, &hash, temporary.is_some()).await?;
    append(
        &mut tx,
        &NewEntry::new(
            UserChanged::Add {
                user_id: id,
                email: email.clone(),
                role,
                temporary_password: temporary.is_some(),
            },
            format!("Added {email} as {role}"),
            actor,
            Outcome::Succeeded,
        )
        .with_reason(reason),
    )
    .await
    .map_err(AppError::wrap("Failed to record the new user"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, %role, "user added");
    Ok((id, temporary))
}

/// Locks the account row for a change and returns (email, role, disabled).
async fn lock_user(conn: &mut PgConnection, id: i64) -> Result<(String, Role, bool), AppError> {
    let row = sqlx::query!(
        "select email, role, disabled from users where id = $1 for update",
        id
    )
    .fetch_optional(&mut *conn)
    .await
    .map_err(AppError::wrap("Failed to load a user"))?
    .ok_or(AppError::NotFound {
        what: format!("User {id}"),
    })?;
    Ok((
        row.email,
        Role::parse(&row.role).unwrap_or(Role::Operator),
        row.disabled,
    ))
}

/// Refuses a change that would leave no active admin. Run with the admins' rows locked.
async fn keep_an_admin(conn: &mut PgConnection, changing: i64) -> Result<(), AppError> {
    let others = sqlx::query_scalar!(
        r#"select count(*) as "count!" from (select id from users
            where role = 'admin' and not disabled and id <> $1 for update) admins"#,
        changing
    )
    .fetch_one(conn)
    .await
    .map_err(AppError::wrap("Failed to count admins"))?;
    if others == 0 {
        return Err(AppError::Conflict {
            message: "This is the last active admin; make someone else admin first.".into(),
        });
    }
    Ok(())
}

/// Changes a user's role (takes effect on their next request). Recorded in the history.
pub async fn set_role(
    pg: &PgPool,
    actor: &Actor,
    user_id: i64,
    role: Role,
    reason: Option<crate::reason::Reason>,
) -> Result<(), AppError> {
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Failed to begin"))?;
    let (email, old_role, _) = lock_user(&mut tx, user_id).await?;
    if old_role == role {
        return Err(AppError::Conflict {
            message: format!("{email} already has the {role} role."),
        });
    }
    if old_role == Role::Admin {
        keep_an_admin(&mut tx, user_id).await?;
    }
    sqlx::query!(
        "update users set role = $2, updated_at = now() where id = $1",
        user_id,
        role.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(AppError::wrap("Failed to change a role"))?;
    append(
        &mut tx,
        &NewEntry::new(
            UserChanged::Role {
                user_id,
                email: email.clone(),
                from: old_role,
                to: role,
            },
            format!("Changed {email} from {old_role} to {role}"),
            actor,
            Outcome::Succeeded,
        )
        .with_reason(reason),
    )
    .await
    .map_err(AppError::wrap("Failed to record the role change"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, %role, "role changed");
    Ok(())
}

/// Disables (or re-enables) an account. Disabling ends all its sessions at once: the
/// session generation moves on, and the guard refuses every older session.
pub async fn set_disabled(
    pg: &PgPool,
    actor: &Actor,
    user_id: i64,
    disabled: bool,
    reason: Option<crate::reason::Reason>,
) -> Result<(), AppError> {
    let mut tx = pg
        .begin()
        .await
        .map_err(AppError::wrap("Failed to begin"))?;
    let (email, role, was_disabled) = lock_user(&mut tx, user_id).await?;
    if was_disabled == disabled {
        return Err(AppError::Conflict {
            message: format!(
                "{email} is already {}.",
                if disabled { "disabled" } else { "enabled" }
            ),
        });
    }
    if disabled && role == Role::Admin {
        keep_an_admin(&mut tx, user_id).await?;
    }
    sqlx::query!(
        "update users set disabled = $2, session_generation = session_generation + 1,
                updated_at = now() where id = $1",
        user_id,
        disabled
    )
    .execute(&mut *tx)
    .await
    .map_err(AppError::wrap("Failed to change an account"))?;
    let title = format!("{} {email}", if disabled { "Disabled" } else { "Enabled" });
    let change = if disabled {
        UserChanged::Disable {
            user_id,
            email: email.clone(),
        }
    } else {
        UserChanged::Enable {
            user_id,
            email: email.clone(),
        }
    };
    append(
        &mut tx,
        &NewEntry::new(change, title, actor, Outcome::Succeeded).with_reason(reason),
    )
    .await
    .map_err(AppError::wrap("Failed to record the account change"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Failed to commit"))?;
    tracing::info!(actor = %actor.name, user = %email, disabled, "account changed");
    Ok(())
}
