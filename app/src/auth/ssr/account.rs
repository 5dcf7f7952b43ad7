//! The signed-in person's own account: changing the password.

use secrecy::{ExposeSecret, SecretString};
use tower_sessions::Session;

use super::super::check_new_password;
use super::passwords::hash_password;
use super::records::user_by_id;
use super::session::{session_error, SessionUser, SESSION_USER};
use super::sign_in::{check_password, reserve_attempt};
use super::Actor;
use crate::error::AppError;
use crate::history::ssr::{append, NewEntry};
use crate::history::Outcome;
use crate::server::AppState;

/// Changes the actor's own password after checking the current one. Other sessions of
/// the account end; `session` (the one making the change) stays signed in.
pub async fn change_password(
    state: &AppState,
    session: &Session,
    actor: &Actor,
    network: &str,
    current: SecretString,
    new: SecretString,
) -> Result<(), AppError> {
    let user_id = actor.user_id.ok_or(AppError::Unauthorized)?;
    check_new_password("new_password", new.expose_secret())?;
    if current.expose_secret() == new.expose_secret() {
        return Err(AppError::invalid(
            "new_password",
            "choose a password different from the current one",
        ));
    }
    let user = user_by_id(&state.pg, user_id)
        .await
        .map_err(AppError::wrap("Failed to load the user"))?
        .ok_or(AppError::Unauthorized)?;
    // The same throttle as sign-in: a stolen session cannot guess the password either.
    let mut attempt =
        Some(reserve_attempt(&state.pg, &user.email, network, state.clock.now()).await?);
    let stored = Some(user.password_hash.clone());
    if !check_password(&state.pg, &mut attempt, current, stored).await? {
        return Err(AppError::invalid(
            "current_password",
            "this is not your current password",
        ));
    }
    if let Some(attempt) = attempt {
        attempt.succeeded(&state.pg).await?;
    }
    let hash = hash_password(new).await?;
    let mut tx = state
        .pg
        .begin()
        .await
        .map_err(AppError::wrap("Failed to begin"))?;
    let generation = sqlx::query_scalar!(
        "update users set password_hash = $2, must_change_password = false,
                session_generation = session_generation + 1, updated_at = now()
         where id = $1 returning session_generation",
        user_id,
        hash.as_str()
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(AppError::wrap("Failed to change the password"))?;
    append(
        &mut tx,
        &NewEntry::new(
            super::UserChanged::Password { user_id },
            format!("{} changed their password", actor.name),
            actor,
            Outcome::Succeeded,
        ),
    )
    .await
    .map_err(AppError::wrap("Failed to record the password change"))?;
    tx.commit()
        .await
        .map_err(AppError::wrap("Failed to commit"))?;

    // A new id for the session that stays: whoever held the old cookie is out too.
    session.cycle_id().await.map_err(session_error)?;
    let signed_in_at = session
        .get::<SessionUser>(SESSION_USER)
        .await
        .map_err(session_error)?
        .and_then(|stored| stored.signed_in_at);
    session
        .insert(
            SESSION_USER,
            SessionUser {
                user_id,
                generation,
                signed_in_at,
            },
        )
        .await
        .map_err(session_error)?;
    Ok(())
}
